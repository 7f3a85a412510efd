"""UserProjector: `user.*` events -> UserView. Orders show their user from this view (read time), so a rename
writes one document, however many orders the user has."""

from __future__ import annotations

from projection.documents import UserView
from projection.projectors.base import Projector
from shared.events import UserEvent


class UserProjector(Projector[UserEvent]):
    view_type = UserView
