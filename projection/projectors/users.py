"""UserProjector: `user.*` events -> UserView, and the user snapshot inside that user's orders."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import OrderView, UserView
from projection.projectors.base import VIEW_WRITES, Doc, ViewChange, apply_if_newer, parse_time
from shared.events import EventEnvelope, Topic


def user_document(snapshot: Doc) -> Doc:
    """The UserView document for a write-side user snapshot."""
    return {
        "_id": snapshot["id"],
        "name": snapshot["name"],
        "name_lc": snapshot["name"].lower(),
        "email": snapshot["email"],
        "version": snapshot["version"],
        "created_at": parse_time(snapshot["created_at"]),
        "updated_at": parse_time(snapshot["updated_at"]),
        "deleted": snapshot.get("deleted_at") is not None,
    }


class UserProjector:
    topics = frozenset({Topic.USER_CREATED, Topic.USER_UPDATED, Topic.USER_DELETED})

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.users = db[UserView.Settings.name]
        self.orders = db[OrderView.Settings.name]

    async def apply(self, event: EventEnvelope) -> list[ViewChange]:
        data = event.data
        fields = user_document(data)
        del fields["_id"], fields["version"]
        async with VIEW_WRITES.hold(("user", event.aggregate_id)):
            document = await apply_if_newer(self.users, event.aggregate_id, event.aggregate_version, fields)
            # Orders carry a snapshot of their user; refresh those holding an older one.
            await self.orders.update_many(
                {"user_id": event.aggregate_id, "user.version": {"$lt": event.aggregate_version}},
                {
                    "$set": {
                        "user": {
                            "id": data["id"],
                            "name": data["name"],
                            "email": data["email"],
                            "version": event.aggregate_version,
                        }
                    }
                },
            )
        return [] if document is None else [ViewChange("user", document)]
