"""Settings for every eventshop process, read from the environment (and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Backing services (names as in the original system).
    mysql_dsn: str = "mysql+asyncmy://eventshop:eventshop@127.0.0.1:3306/eventshop"
    mongo_uri: str = "mongodb://127.0.0.1:27017/eventshop"
    kafka_brokers: str = "127.0.0.1:9092"

    # Outbox relay.
    outbox_poll_interval: float = Field(0.5, gt=0, description="max seconds between outbox polls")
    outbox_batch_size: int = Field(500, ge=1, le=10_000)
    outbox_retention_seconds: float = Field(7 * 24 * 3600, ge=0)
    outbox_purge_batch: int = Field(1000, ge=1)

    idempotency_ttl_seconds: float = Field(24 * 3600, gt=0, description="how long idempotency keys are kept")

    # Consumers: retry with exponential backoff, then the DLQ.
    consumer_retries: int = Field(5, ge=0)
    consumer_retry_initial: float = Field(1.0, ge=0)
    consumer_retry_max: float = Field(16.0, ge=0)
    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a consumer group without committed offsets starts"
    )
    projector_group: str = "eventshop-projector"
    stock_worker_group: str = "eventshop-stock-worker"

    # Gateway.
    host: str = "127.0.0.1"
    port: int = 8000
    read_wait_timeout: float = Field(5.0, ge=0, description="max seconds minVersion waits for the read model")
    ws_keep_alive_seconds: float = Field(10.0, gt=0)
    max_query_depth: int = Field(10, ge=1)
    max_query_aliases: int = Field(30, ge=0)
    max_query_tokens: int = Field(2000, ge=1)
    max_body_bytes: int = Field(100_000, ge=1024, description="largest accepted HTTP request body")
    request_timeout: float = Field(15.0, gt=0, description="seconds before an HTTP request is cut off")
    allowed_origins: str = Field("", description="comma-separated origins allowed by CORS (browsers)")
    max_subscriptions_per_connection: int = Field(20, ge=1)

    # Local devstack.
    state_dir: Path = Path(".devstack")
    cache_dir: Path = Path.home() / ".cache" / "eventshop"
    kafka_version: str = "3.9.1"
    ferretdb_version: str = "v1.24.2"

    log_level: str = "INFO"
    log_json: bool = False

    @property
    def kafka_bootstrap(self) -> list[str]:
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]

    @property
    def mongo_database(self) -> str:
        from pymongo.uri_parser import parse_uri

        return parse_uri(self.mongo_uri).get("database") or "eventshop"
