"""UserProjector: `user.*` events -> UserView. Orders show their user from this view (read time), so a rename
writes one document, however many orders the user has."""

from __future__ import annotations

from projection.documents import UserView
from projection.projectors.base import Projector
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


class UserProjector(Projector[UserEvent]):
    view_type = UserView

    topics = frozenset({Topic.USER_CREATED, Topic.USER_UPDATED, Topic.USER_DELETED})

    def view(self, event: UserEvent) -> UserView:
        return user_document(event.data)
