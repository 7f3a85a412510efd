"""Trusted documents: in production the gateway runs only the operations its own clients were built with.

The manifest is a JSON object from document id to document text, the format of GraphQL Codegen's client preset
(`persisted-documents.json`) and of Relay's persisted queries: `{"sha256:<hex>": "query ... { ... }"}` (the
`sha256:` prefix may be left out). Each id is the SHA-256 of its text, checked when the manifest is loaded.
`eventshop trusted-documents build` writes one from the clients' `.graphql` files (and merges manifests).

A client names a document by `documentId` (the GraphQL-over-HTTP convention for persisted documents) or by
an APQ hash (`extensions.persistedQuery.sha256Hash`, Apollo's link with a manifest); a request carrying the
text runs only if the text's hash is in the manifest. Nothing else runs, and nothing is registered: with a
manifest, APQ's "send the text once, then the hash" is refused (gateway/persisted.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from graphql import GraphQLSchema, parse, validate
from graphql.error import GraphQLError

PREFIX = "sha256:"


class ManifestError(Exception):
    """A manifest or a client document that cannot be trusted as it is; the message names which."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def document_key(document_id: str) -> str:
    """A document id as the manifest keys it: the hex digest, lower case, without the `sha256:` prefix."""
    key = document_id.strip().lower()
    return key.removeprefix(PREFIX)


class TrustedDocuments:
    """The documents of one manifest, by the SHA-256 of their text."""

    def __init__(self, documents: Mapping[str, str]) -> None:
        self.documents = dict(documents)

    def __len__(self) -> int:
        return len(self.documents)

    def get(self, document_id: str) -> str | None:
        return self.documents.get(document_key(document_id))

    def trusts(self, text: str) -> bool:
        return sha256_hex(text) in self.documents

    @classmethod
    def load(cls, path: Path) -> TrustedDocuments:
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: cannot read the manifest ({exc})") from exc
        return cls(checked(manifest, str(path)))

    def write(self, path: Path) -> None:
        manifest = {f"{PREFIX}{key}": text for key, text in sorted(self.documents.items())}
        path.write_text(json.dumps(manifest, indent=2) + "\n")


def checked(manifest: object, source: str) -> dict[str, str]:
    """The manifest's documents by hex digest; every id must be the SHA-256 of its text."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{source}: a manifest is a JSON object of document id -> document text")
    documents: dict[str, str] = {}
    for document_id, text in manifest.items():
        if not isinstance(text, str) or sha256_hex(text) != document_key(document_id):
            raise ManifestError(f"{source}: {document_id} is not the SHA-256 of its document")
        documents[document_key(document_id)] = text
    return documents


def build(schema: GraphQLSchema, sources: Iterable[Path]) -> TrustedDocuments:
    """A manifest of the clients' documents: each `.graphql`/`.gql` file is one document, as the client sends
    it (the text is hashed as it is), and must be valid against `schema`; a `.json` file is a manifest whose
    documents are merged (checked the same way)."""
    documents: dict[str, str] = {}
    for path in sorted(_files(sources)):
        if path.suffix == ".json":
            for key, text in TrustedDocuments.load(path).documents.items():
                _check_document(schema, text, f"{path} ({PREFIX}{key})")
                documents[key] = text
            continue
        text = path.read_text()
        _check_document(schema, text, str(path))
        documents[sha256_hex(text)] = text
    return TrustedDocuments(documents)


def _files(sources: Iterable[Path]) -> Iterable[Path]:
    for source in sources:
        if source.is_dir():
            yield from (p for p in source.rglob("*") if p.suffix in (".graphql", ".gql"))
        else:
            yield source


def _check_document(schema: GraphQLSchema, text: str, source: str) -> None:
    try:
        errors = validate(schema, parse(text))
    except GraphQLError as exc:
        errors = [exc]
    if errors:
        raise ManifestError(f"{source}: not a valid document for this schema: {errors[0].message}")
