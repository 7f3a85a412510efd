"""Read-model connection and the version-gated write every projector relies on."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from projection.documents import VIEW_DOCUMENTS
from shared.store_metrics import MongoMetrics

Doc = dict[str, Any]
"""A document as pymongo reads and writes it: a view's stored form (`ViewDocument.stored()`), a filter, a reply.
The one definition; everything typed is a view document (projection/documents.py)."""


async def connect_read_model(uri: str, database: str) -> tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]]:
    """Connect and ensure the indexes of every view.

    Indexes are created one `createIndexes` call each (idempotent): FerretDB v1 drops the connection
    when one call names several indexes that already exist.
    """
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        uri, tz_aware=True, serverSelectionTimeoutMS=5000, event_listeners=[MongoMetrics()]
    )
    db = client[database]
    try:
        for document in VIEW_DOCUMENTS:
            for index in document.indexes:  # one per call: FerretDB v1 fails on a batch that exists
                await db[document.collection].create_indexes([index])
    except BaseException:
        await client.close()
        raise
    return client, db


DUPLICATE_KEY = 11000


async def upsert_many_if_newer(collection: AsyncCollection[Doc], documents: list[Doc]) -> list[bool]:
    """Replace each view with its `document` (a view's stored form, `_id`s distinct) only when its `version` is newer
    than the stored one, all in one round trip (one unordered `update` command); for each, whether it was written.

    Each is found by `_id` (an index lookup on MongoDB and on the patched FerretDB). When the stored version is the
    same or newer the filter misses, the upsert collides on `_id`, and that update's duplicate-key error means
    "stale event, skip" (False). Any other error raises."""
    if not documents:
        return []
    requests = [ReplaceOne({"_id": d["_id"], "version": {"$lt": d["version"]}}, d, upsert=True) for d in documents]
    try:
        await collection.bulk_write(requests, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        stale = {error["index"] for error in errors}
        return [i not in stale for i in range(len(documents))]
    return [True] * len(documents)
