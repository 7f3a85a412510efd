"""UserProjector: `user.*` events -> UserView. Orders show their user from this view (read time), so a rename
writes one document, however many orders the user has."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import UserView
from projection.projectors.base import ViewChange, apply_if_newer
from projection.store import Doc
from shared.events import Topic, UserEvent, UserSnapshot


def user_document(snapshot: UserSnapshot) -> UserView:
    """The UserView of a write-side user snapshot (the projector's, a mutation's answer, rebuild's, verify's)."""
    return UserView(
        id=snapshot.id,
        name=snapshot.name,
        name_lc=snapshot.name.lower(),
        email=snapshot.email,
        version=snapshot.version,
        created_at=snapshot.created_at,
        updated_at=snapshot.updated_at,
        deleted=snapshot.deleted_at is not None,
    )


class UserProjector:
    topics = frozenset({Topic.USER_CREATED, Topic.USER_UPDATED, Topic.USER_DELETED})

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.users = db[UserView.collection]

    async def apply(self, event: UserEvent) -> list[ViewChange]:
        return await apply_if_newer(self.users, user_document(event.data))
