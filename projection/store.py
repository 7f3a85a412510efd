"""Read-model connection: the client, and the indexes of every view ensured before anything reads or writes."""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import Doc
from projection.kinds import VIEW_DOCUMENTS
from shared.store_metrics import MongoMetrics

__all__ = ["Doc", "connect_read_model"]


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
