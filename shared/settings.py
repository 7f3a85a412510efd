"""Settings for every eventshop process, read from the environment (and `.env`)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The JWT secret `.env.example` ships for local development; a production gateway refuses to start with it.
DEV_JWT_SECRET = "eventshop-dev-only-secret-change-me-in-production"
SIGNING_ALGORITHMS = frozenset(
    {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
_DSN_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):[^@/\s]*@")
# Consumer groups of this environment when not set explicitly: `<KAFKA_TOPIC_PREFIX><name>`, so environments
# that share a Kafka cluster share neither topics nor groups (and never rebalance each other's consumers).
GROUP_NAMES = {"projector_group": "eventshop-projector", "stock_worker_group": "eventshop-stock-worker"}
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_token)=)[^&;#\s]*", re.I)


def mask_dsn(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:***@host` (also `?password=...`), anywhere in `text`.

    For everything that might print a connection string: start-up logs, error messages, /readyz.
    """
    return _QUERY_SECRET.sub(r"\g<head>***", _DSN_PASSWORD.sub(r"\g<head>:***@", text))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Backing services (names as in the original system).
    mysql_dsn: str = Field(
        "mysql+asyncmy://eventshop:eventshop@127.0.0.1:3306/eventshop",
        description="write model (SQLAlchemy async URL); its password is masked in logs and never shown by /readyz",
    )
    mongo_uri: str = Field(
        "mongodb://127.0.0.1:27017/eventshop",
        description="read model (MongoDB or FerretDB); the path names the database",
    )
    kafka_brokers: str = Field("127.0.0.1:9092", description="comma-separated bootstrap servers")
    kafka_topic_prefix: str = Field(
        "",
        description="prepended to every topic name and to the default consumer group names: one setting isolates an "
        "environment",
    )
    # A new topic's layout (shared/kafka/topics.py); 0 follows the cluster's size. Existing topics are only checked.
    kafka_topic_partitions: int = Field(
        0,
        ge=0,
        description="partitions of a topic eventshop creates; `0`: 3 on a single broker, 12 on a cluster "
        "(Deployment: running on a Kafka cluster). Existing topics are never changed, only checked",
    )
    kafka_replication_factor: int = Field(
        0,
        ge=0,
        description="replicas of each partition of a topic eventshop creates; `0`: 1 on a single broker, else 3 (a "
        "cluster of two brokers sets 2)",
    )
    kafka_min_insync_replicas: int = Field(
        0,
        ge=0,
        description="`min.insync.replicas` of a topic eventshop creates (replicas that must have an event before it "
        "is acked); `0`: one less than the replicas, at least 1 (2 of 3)",
    )

    # Outbox relay.
    outbox_poll_interval: float = Field(
        0.5,
        gt=0,
        description="longest idle wait of the relay between polls, in seconds (a commit in the same process wakes "
        "it at once)",
    )
    outbox_batch_size: int = Field(500, ge=1, le=10_000, description="rows per relay batch (1..10000)")
    outbox_completion: Literal["mark", "delete"] = Field(
        "mark",
        description="what the relay does with a row Kafka acked: `mark` sets `published_at` and keeps the row for "
        "`OUTBOX_RETENTION_SECONDS` (audit trail, re-publish by clearing `published_at`); `delete` removes it at "
        "once (no audit trail; since marks are written in place, 1.0-1.1x the relay throughput of `mark`)",
    )
    outbox_retention_seconds: float = Field(
        7 * 24 * 3600, ge=0, description="published outbox rows older than this are purged (`mark`; 7 days)"
    )
    outbox_purge_batch: int = Field(
        1000,
        ge=1,
        description="rows deleted per purge statement (old published rows, expired idempotency keys, old processed "
        "events)",
    )

    idempotency_ttl_seconds: float = Field(24 * 3600, gt=0, description="how long an idempotency key is remembered")
    # The stock worker's dedup rows must outlive every copy of their event that can still be delivered: Kafka
    # keeps a message up to log.retention (7 days) plus the age of its segment (segment.ms, 7 days), and a
    # republished outbox row (kept 7 days) starts that again: 21 days at most, so 30 is safe (docs/operations.md).
    processed_events_retention_seconds: float = Field(
        30 * 24 * 3600,
        gt=0,
        description="how long the stock worker remembers an event it handled (30 days: above the 21 days an event "
        "can still be delivered, Operations)",
    )

    # Reservations (the stock worker): an unpaid RESERVED order expires at its deadline and gives its stock back.
    order_reservation_ttl_seconds: float = Field(
        15 * 60,
        ge=0,
        description="how long a RESERVED order waits for its payment before it EXPIRES and its stock goes back; "
        "`0`: new reservations never expire",
    )
    order_expiry_poll_interval: float = Field(
        1.0,
        gt=0,
        description="longest wait, in seconds, between the expirer's looks for due reservations (at once again "
        "after a full batch)",
    )
    order_expiry_batch: int = Field(100, ge=1, le=10_000, description="due orders expired per transaction")

    # Consumers: retry with exponential backoff, then the DLQ.
    consumer_retries: int = Field(5, ge=0, description="retries of a failing message before it goes to `<topic>.dlq`")
    consumer_retry_initial: float = Field(1.0, ge=0, description="first backoff in seconds (doubles, with jitter)")
    consumer_retry_max: float = Field(16.0, ge=0, description="longest backoff in seconds")
    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a consumer group without committed offsets starts"
    )
    projector_group: str = Field(
        "",
        description="consumer group of the projectors; empty: `<KAFKA_TOPIC_PREFIX>eventshop-projector`; a value "
        "set here is used as it is",
    )
    stock_worker_group: str = Field(
        "",
        description="consumer group of the stock workers; empty: `<KAFKA_TOPIC_PREFIX>eventshop-stock-worker`; a "
        "value set here is used as it is",
    )

    # Gateway.
    host: str = Field("127.0.0.1", description="gateway bind address, and the bind address of `METRICS_PORT`")
    port: int = Field(8000, description="gateway port")
    gateway_workers: int = Field(
        1,
        ge=1,
        description="processes of `eventshop gateway` serving `PORT`, each a whole gateway (`--workers N` overrides "
        "it); `1`: the gateway is this one process. `eventshop all` (so `make run`) always runs one (Deployment)",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="`eventshop relay`, `stock-worker` and `projector` serve Prometheus `/metrics` on this port; "
        "`0`: off (the gateway, and `eventshop all`, serve them on the gateway's `/metrics`)",
    )
    read_wait_timeout: float = Field(
        5.0, ge=0, description="longest `minVersion` wait, in seconds, for the read model before `STALE_READ`"
    )
    ws_keep_alive_seconds: float = Field(10.0, gt=0, description="server keep-alive interval on WebSockets")
    max_query_depth: int = Field(10, ge=1, description="deeper documents are `QUERY_REJECTED`")
    max_query_aliases: int = Field(30, ge=0, description="more aliases are `QUERY_REJECTED`")
    max_query_tokens: int = Field(2000, ge=1, description="longer documents are `QUERY_REJECTED`")
    max_query_directives: int = Field(50, ge=0, description="documents with more directives are `QUERY_REJECTED`")
    trusted_documents: Path | None = Field(
        None,
        description="path of the manifest of trusted documents (JSON, id -> text); set, only those run (GraphQL "
        "guide); empty: any document runs",
    )
    max_body_bytes: int = Field(100_000, ge=1024, description="larger HTTP request bodies get 413")
    request_timeout: float = Field(15.0, gt=0, description="HTTP requests running longer, in seconds, get 504")
    allowed_origins: str = Field("", description="comma-separated browser origins allowed by CORS")
    max_subscriptions_per_connection: int = Field(20, ge=1, description="subscriptions one WebSocket may hold")
    persisted_queries_max: int = Field(
        1000, ge=0, description="automatic persisted queries remembered per gateway (LRU); `0` turns APQ off"
    )
    totals_max_age_seconds: float = Field(
        2.0,
        ge=0,
        description="longest a gateway reuses a connection's `totalCount` when its feed announced no change of that "
        "view (GraphQL guide, paging); `0`: counted for every page",
    )

    # Security (issue 6): who may call what, and how often.
    env: str = Field(
        "development",
        description="deployment environment; `production` refuses the development JWT secret and secrets under 32 "
        "bytes, and warns if introspection is on",
    )
    auth_enabled: bool = Field(
        True,
        description="require bearer JWTs; `false` makes every caller an admin (local experiments only, warned at "
        "start-up)",
    )
    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC secret for HS256/384/512 tokens and `eventshop token`; unset by default (`.env.example` "
        "has a development value)",
    )
    jwt_public_key_file: Path | None = Field(None, description="PEM public key for RS*/PS*/ES* tokens")
    jwt_jwks_file: Path | None = Field(None, description="local JWKS file, keys chosen by `kid`; never fetched")
    jwt_algorithms: str = Field(
        "HS256,RS256,ES256", description="accepted signing algorithms, comma-separated; `none` is always refused"
    )
    jwt_issuer: str = Field("eventshop", description="required `iss` claim")
    jwt_audience: str = Field("eventshop", description="required `aud` claim")
    jwt_leeway: float = Field(30.0, ge=0, le=300, description="seconds of clock skew allowed on exp/nbf/iat (0..300)")
    # Mutation budgets per kind of caller (gateway/limits.py): a token bucket per client, refilled at the rate
    # up to the burst. Customers and anonymous callers fall back to MUTATION_RATE/BURST; admin and service
    # tokens are unlimited unless SERVICE_MUTATION_RATE is set. A rate of 0 is unlimited.
    mutation_rate: float = Field(
        5.0,
        gt=0,
        description="mutations per second refilled into each client's bucket, for customers and anonymous callers "
        "whose own rate is unset",
    )
    mutation_burst: int = Field(
        20, ge=1, description="mutations a client may send at once, where a role's own burst is unset"
    )
    customer_mutation_rate: float | None = Field(
        None, ge=0, description="per customer token (`sub`); empty: `MUTATION_RATE`; `0` = unlimited"
    )
    customer_mutation_burst: int | None = Field(None, ge=1, description="per customer token; empty: `MUTATION_BURST`")
    anonymous_mutation_rate: float | None = Field(
        None, ge=0, description="per client IP without a valid token; empty: `MUTATION_RATE`; `0` = unlimited"
    )
    anonymous_mutation_burst: int | None = Field(None, ge=1, description="per client IP; empty: `MUTATION_BURST`")
    service_mutation_rate: float | None = Field(
        None, ge=0, description="per admin or service token (`sub`); empty or `0` = unlimited"
    )
    service_mutation_burst: int | None = Field(
        None,
        ge=1,
        description="per admin or service token, when `SERVICE_MUTATION_RATE` is set; empty: `MUTATION_BURST`",
    )
    max_ws_connections_per_client: int = Field(
        100,
        ge=1,
        description="open WebSockets and Server-Sent Events streams per client IP; extra ones get 429",
    )
    graphql_introspection: bool = Field(
        True,
        description="allow `__schema`/`__type`; turn off in production (field suggestions go with it)",
    )

    # Local devstack.
    state_dir: Path = Field(Path(".devstack"), description="devstack data and logs")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "eventshop", description="devstack downloads (Kafka jars, FerretDB build)"
    )
    kafka_version: str = Field("3.9.1", description="Kafka version devstack provisions")
    devstack_kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="brokers devstack runs: `1` (service `kafka`), or a KRaft cluster `kafka-1`..`kafka-N` on the "
        "first N `KAFKA_BROKERS` addresses, or with one address on it and every second port after it (9092, 9094, "
        "9096); each broker's controller listens on its port + 1",
    )
    ferretdb_version: str = Field(
        "v1.24.2",
        description="FerretDB version devstack builds (with `devstack/patches/ferretdb-<version>-eventshop.patch`)",
    )
    ferretdb_postgresql_url: str = Field(
        "postgres://eventshop:eventshop@127.0.0.1:5433/ferretdb",
        description="the PostgreSQL database FerretDB stores the read model in (devstack starts a private cluster "
        "there)",
    )

    log_level: str = Field("INFO", description="log level")
    log_json: bool = Field(False, description="JSON log lines (structlog) instead of key=value")

    # Tracing (OpenTelemetry): off by default. The OTLP exporter also reads the standard OTEL_EXPORTER_OTLP_*
    # variables (headers, timeout, compression) from the environment, and the SDK OTEL_TRACES_SAMPLER.
    otel_enabled: bool = Field(
        False,
        description="create OpenTelemetry spans and export them (Operations, tracing); off, nothing is created and "
        "no exporter runs",
    )
    otel_exporter: Literal["otlp", "console", "none"] = Field(
        "otlp",
        description="`otlp` (OTLP over HTTP/protobuf), `console` (spans as JSON on stdout) or `none` (spans "
        "propagate, nothing exported)",
    )
    otel_service_name: str = Field(
        "",
        description="`service.name`; empty: `gateway`, `relay`, `stock-worker`, `projector`, or `eventshop` for "
        "`eventshop all`",
    )
    otel_exporter_otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP base URL, spans go to `<url>/v1/traces`; empty: the exporter's default, "
        "`http://localhost:4318`",
    )

    def topic(self, name: str) -> str:
        """The Kafka topic of a catalog name in this environment."""
        return f"{self.kafka_topic_prefix}{name}"

    @model_validator(mode="after")
    def _groups_follow_the_prefix(self) -> Settings:
        return self._name_groups()

    def _name_groups(self) -> Settings:
        """A group not set (or set empty) is named after the environment; an explicit name is kept as it is."""
        for name, group in GROUP_NAMES.items():
            if name not in self.model_fields_set or not getattr(self, name).strip():
                object.__setattr__(self, name, self.topic(group))  # frozen: set once, while validating
                self.model_fields_set.discard(name)  # still derived: a copy with another prefix follows it
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Settings:
        """As pydantic's, but derived group names follow a new KAFKA_TOPIC_PREFIX (validators do not run here)."""
        return super().model_copy(update=update, deep=deep)._name_groups()

    @field_validator(
        "jwt_secret",
        "jwt_public_key_file",
        "jwt_jwks_file",
        "customer_mutation_rate",
        "customer_mutation_burst",
        "anonymous_mutation_rate",
        "anonymous_mutation_burst",
        "service_mutation_rate",
        "service_mutation_burst",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_algorithms")
    @classmethod
    def _signing_algorithms_only(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if any(name.lower() == "none" for name in names):
            raise ValueError("the `none` algorithm is never accepted")
        unknown = sorted(set(names) - SIGNING_ALGORITHMS)
        if unknown or not names:
            raise ValueError(f"unsupported JWT algorithms {unknown}; choose from {sorted(SIGNING_ALGORITHMS)}")
        return ",".join(names)

    @property
    def jwt_algorithm_list(self) -> list[str]:
        return self.jwt_algorithms.split(",")

    @property
    def is_production(self) -> bool:
        return self.env.strip().lower() in ("production", "prod")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:  # type: ignore[override]
        """repr/str never show a DSN password (SecretStr already hides jwt_secret)."""
        for name, value in super().__repr_args__():
            yield name, mask_dsn(value) if isinstance(value, str) else value

    @property
    def payment_window(self) -> timedelta | None:
        """How long a reservation waits for its payment; None: for ever."""
        ttl = self.order_reservation_ttl_seconds
        return timedelta(seconds=ttl) if ttl > 0 else None

    @property
    def kafka_bootstrap(self) -> list[str]:
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]

    @property
    def mongo_database(self) -> str:
        from pymongo.uri_parser import parse_uri

        return parse_uri(self.mongo_uri).get("database") or "eventshop"
