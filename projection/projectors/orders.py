"""OrderProjector: `order.*` events -> OrderView.

Every order event carries the full order, so any of them can create the view (events that arrive
before their `order.created` are not dropped). The view is written by order events only: the user's
current name and email are read from the users view when the order is read (`Order.user`); the snapshot
the order event carried is kept only for the moment before that user's view exists.
"""

from __future__ import annotations

from projection.documents import OrderView
from projection.projectors.base import Projector
from shared.events import OrderEvent


class OrderProjector(Projector[OrderEvent]):
    view_type = OrderView
