"""Read-model connection and the version-gated write every projector relies on."""

from __future__ import annotations

from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from projection.documents import VIEW_DOCUMENTS

Doc = dict[str, Any]
"""A document as pymongo reads and writes it: a view's stored form (`ViewDocument.stored()`), a filter, a reply.
The one definition; everything typed is a view document (projection/documents.py)."""


async def connect_read_model(uri: str, database: str) -> tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]]:
    """Connect, initialise Beanie and ensure the indexes of every view.

    Indexes are created one `createIndexes` call each (idempotent): FerretDB v1 drops the connection
    when one call names several indexes that already exist, which Beanie's own index sync does.
    """
    client: AsyncMongoClient[Doc] = AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    db = client[database]
    try:
        await bind_documents(db)
        for document in VIEW_DOCUMENTS:
            for index in document.Settings.indexes:  # one per call: FerretDB v1 fails on a batch that exists
                await db[document.Settings.name].create_indexes([index])
    except BaseException:
        await client.close()
        raise
    return client, db


async def bind_documents(db: AsyncDatabase[Doc]) -> None:
    """Initialise Beanie's view documents on `db`, indexes untouched: Beanie refuses to build a document
    (`UserView(...)`, `model_validate`) before, and every process that builds or reads views builds them."""
    await init_beanie(database=db, document_models=VIEW_DOCUMENTS, skip_indexes=True)


async def upsert_if_newer(collection: AsyncCollection[Doc], document: Doc) -> bool:
    """Replace the view with `document` (a view's stored form) only when its `version` is newer than the stored one.

    One round trip, found by `_id` (an index lookup on MongoDB and on the patched FerretDB). When the stored
    version is the same or newer the filter misses, the upsert collides on `_id`, and the duplicate-key
    error means "stale event, skip" (False).
    """
    try:
        await collection.replace_one(
            {"_id": document["_id"], "version": {"$lt": document["version"]}}, document, upsert=True
        )
    except DuplicateKeyError:
        return False
    return True
