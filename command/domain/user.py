"""The user: a name and a normalised email (unique among live users: the database's index says so)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from command.domain.aggregate import Aggregate, require_utc
from command.validation import normalize_email, require_text
from shared.errors import BadUserInput
from shared.events import UserCreated, UserDeleted, UserSnapshot, UserUpdated


@dataclass(frozen=True)
class NewUser:
    """A user the rules accept, before the database gives it its id."""

    name: str
    email: str
    at: datetime

    @classmethod
    def register(cls, name: str | None, email: str | None, now: datetime) -> NewUser:
        return cls(require_text(name, "name"), normalize_email(email), require_utc(now))

    def created(self, user_id: int) -> tuple[User, UserCreated]:
        """The user under the id the database gave it, and the event that announces it."""
        state = UserSnapshot(
            id=user_id, version=1, created_at=self.at, updated_at=self.at, name=self.name, email=self.email
        )
        user = User(state)
        return user, user._record(UserCreated.of(state))


@dataclass(frozen=True)
class UserChanges:
    """The fields an update sets (None: left as it is), each valid."""

    name: str | None = None
    email: str | None = None

    @classmethod
    def of(cls, name: str | None, email: str | None) -> UserChanges:
        if name is None and email is None:
            raise BadUserInput("give at least one of name, email", field="input")
        return cls(
            name=None if name is None else require_text(name, "name"),
            email=None if email is None else normalize_email(email),
        )


@dataclass
class User(Aggregate[UserSnapshot]):
    deleted = UserDeleted

    def change(self, changes: UserChanges, now: datetime, expected_version: int | None = None) -> list[UserUpdated]:
        """`user.updated`, or no event when the user already has these values."""
        self.require_version(expected_version)
        state = self._revise(asdict(changes), now)
        return [] if state is None else [self._record(UserUpdated.of(state))]
