"""The customer a command acts for: a customer moves only their own orders (staff and services act for no
customer and move any)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import Forbidden, NotFound


@dataclass(frozen=True)
class Customer:
    """A customer's user id, and the operation they called, as a refusal names it."""

    user_id: int
    operation: str

    def require_owner(self, order_id: int, owner: int | None) -> None:
        """The order (`owner`: its user id, None when it never existed) must be this customer's: NOT_FOUND when
        there is no such order, FORBIDDEN when it is another user's (not hidden: order ids are sequential, so
        hiding them would protect nothing)."""
        if owner is None:
            raise NotFound(f"order {order_id} not found", field="id")
        if owner != self.user_id:
            raise Forbidden(f"{self.operation}: order {order_id} belongs to another user", field="id")
