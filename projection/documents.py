"""The documents of the read model, as pydantic models. Money is integer cents; `version` gates every write.

Plain pydantic, not Beanie: every read and write here is one pymongo call on a collection the caller hands in
(a process holds several read models: rebuild's fresh collections, the tests' labs, the bench), and Beanie binds
each document class to the one database `init_beanie` saw last. A `find_one` by `_id` through Beanie also measured
1.24 ms against 0.88 ms through pymongo on the same store.

A view is derived from its aggregate's snapshot (`ViewDocument.of`): every field of the snapshot is stored by name
(`projection/stored.py`), and a view declares only what the read model itself adds or needs by name: the fields its
indexes and queries use, and the ones it derives (a lower-cased name to search). Reading a view gives the snapshot
back (`ViewDocument.snapshot`), what the gateway shows.

Each view is written by its own aggregate's events only, by `_id`. The indexes name the queries of
`projection/queries.py` they serve, on MongoDB and on the patched FerretDB alike (devstack/ferretdb.py): every
filtered, sorted page walks one of them to its limit instead of reading the collection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from projection.stored import StoredForm
from shared.construct import construct
from shared.events import AggregateType, OrderSnapshot, OrderStatus, OrderUser, ProductSnapshot, Snapshot, UserSnapshot

S = TypeVar("S", bound=Snapshot)

Doc = dict[str, Any]
"""A document as pymongo reads and writes it: a view's stored form (`ViewDocument.stored()`), a filter, a reply.
The one definition; everything typed is a view document."""


class ViewDocument(BaseModel, Generic[S]):
    """What every view is: its aggregate's id as `_id`, the aggregate's version (which gates every write), whether
    the aggregate is deleted (a deleted view stays, so that an older event cannot bring it back), and the fields of
    its snapshot (undeclared here: kept as stored, read back by `snapshot`)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    kind: ClassVar[AggregateType]
    collection: ClassVar[str]
    indexes: ClassVar[list[IndexModel]]
    """Each names the queries of `projection/queries.py` it serves."""
    snapshot_type: ClassVar[type[Any]]
    cents_names: ClassVar[dict[str, str]] = {}
    """Money fields stored under another name than `<name>_cents`."""
    derived: ClassVar[dict[str, tuple[str, Callable[[Any], Any]]]] = {}
    """Fields the view adds, each stored after the field it is derived from: source -> (name, how)."""
    as_of_event: ClassVar[frozenset[str]] = frozenset()
    """Fields that hold another aggregate as of this aggregate's newest event (verify does not compare them)."""

    id: int = Field(alias="_id")
    version: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = False

    @classmethod
    def of(cls, snapshot: Snapshot) -> Self:
        """The view of a write-side snapshot of its kind (the projector's, rebuild's, verify's)."""
        fields: dict[str, Any] = {
            "_id": snapshot.id,
            "version": snapshot.version,
            "created_at": snapshot.created_at,
            "updated_at": snapshot.updated_at,
            "deleted": snapshot.deleted_at is not None,
        }
        for name, value in stored_form(cls).store(snapshot).items():
            fields[name] = value
            if name in cls.derived:
                derived_name, derive = cls.derived[name]
                fields[derived_name] = derive(value)
        return cls.model_validate(fields)

    def snapshot(self) -> S:
        """The aggregate as its view shows it. A view keeps whether its aggregate is deleted, not when: the
        snapshot of a deleted view has no `deleted_at` (readers are shown live views only)."""
        values = stored_form(type(self)).read({**self.__dict__, **(self.__pydantic_extra__ or {})})
        base = {"id": self.id, "version": self.version, "created_at": self.created_at, "updated_at": self.updated_at}
        return construct(self.snapshot_type, values, **base)  # type: ignore[no-any-return]

    def stored(self) -> Doc:
        """The document as MongoDB stores it (`_id`, BSON types): what is written and announced, in the order of its
        snapshot's fields."""
        dumped = self.model_dump(by_alias=True)
        return {name: dumped.pop(name) for name in stored_order(type(self)) if name in dumped} | dumped


@cache
def stored_form(view: type[ViewDocument[Any]]) -> StoredForm:
    """How a view stores its snapshot's own fields (the base ones are `ViewDocument`'s)."""
    return StoredForm(view.snapshot_type, view.cents_names, skip=Snapshot.model_fields)


@cache
def stored_order(view: type[ViewDocument[Any]]) -> tuple[str, ...]:
    names = ["_id", "version", "created_at", "updated_at", "deleted"]
    for field in stored_form(view).fields:
        names.append(field.stored_name)
        if field.stored_name in view.derived:
            names.append(view.derived[field.stored_name][0])
    return tuple(names)


def lower(text: str) -> str:
    return text.lower()


class UserView(ViewDocument[UserSnapshot]):
    kind = AggregateType.USER
    snapshot_type = UserSnapshot
    derived = {"name": ("name_lc", lower)}

    name_lc: str
    email: str

    collection = "users"
    indexes = [
        # users(first) walks `_id`; users(search): one prefix range on each of these, then `_id` order
        IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("deleted", ASCENDING), ("email", ASCENDING)]),
    ]


def has_stock(stock: int) -> bool:
    """stock > 0, kept with the stock: `inStock` is an equality an index counts, not a range on a number."""
    return stock > 0


class ProductView(ViewDocument[ProductSnapshot]):
    kind = AggregateType.PRODUCT
    snapshot_type = ProductSnapshot
    derived = {"name": ("name_lc", lower), "stock": ("in_stock", has_stock)}

    name_lc: str
    price_cents: int
    in_stock: bool

    collection = "products"
    indexes = [
        # products(orderBy: ID_ASC | NEWEST) walks `_id`; NAME_ASC and search: this one
        IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
        # PRICE_ASC, PRICE_DESC (backwards) and price ranges
        IndexModel([("deleted", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)]),
        # inStock and its count
        IndexModel([("deleted", ASCENDING), ("in_stock", ASCENDING), ("_id", ASCENDING)]),
    ]


class OrderView(ViewDocument[OrderSnapshot]):
    kind = AggregateType.ORDER
    snapshot_type = OrderSnapshot
    cents_names = {"total_amount": "total_cents"}
    as_of_event = frozenset({"user"})

    user_id: int
    user: OrderUser
    """The user as of this order's newest event; readers show the users view's current one (`current_user`)."""
    status: OrderStatus

    collection = "orders"
    indexes = [
        # orders(userId), User.orders (with a status too: the rows of one user are few); orders() walks `_id`
        IndexModel([("deleted", ASCENDING), ("user_id", ASCENDING), ("_id", DESCENDING)]),
        # orders(status)
        IndexModel([("deleted", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)]),
    ]


View = ViewDocument[Any]
"""Any view document (the registry of kinds, `projection/kinds.py`, lists them)."""
