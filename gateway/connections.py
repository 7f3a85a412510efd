"""Relay cursor connections: a page of a read model's query as `edges`, `nodes`, `pageInfo` and `totalCount`,
and what a connection field reads of its query (is `first` given, is `totalCount` asked for)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from gateway.context import Info
from projection.queries import D, Page


@strawberry.type(description="Where a page of a connection lies (Relay cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="More items follow this page. Exact after `first`; after `last` it is false (not looked up)."
    )
    has_previous_page: bool = strawberry.field(
        description="More items precede this page. Exact after `last`; after `first` it is false (not looked up)."
    )
    start_cursor: str | None = strawberry.field(description="The cursor of the first edge; null on an empty page.")
    end_cursor: str | None = strawberry.field(description="The cursor of the last edge; null on an empty page.")


NodeT = TypeVar("NodeT")


@strawberry.type
class Edge(Generic[NodeT]):
    """A node and its cursor (pass it as `after` or `before`); `Edge[User]` is `UserEdge` in the schema."""

    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    """A Relay cursor connection; `Connection[User]` is named `UserConnection` in the schema. `nodes` is
    `edges { node }` without the cursors."""

    nodes: list[NodeT]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]
    cursors: strawberry.Private[Callable[[], list[str]]]

    @strawberry.field
    def edges(self) -> list[Edge[NodeT]]:
        return [Edge(cursor=cursor, node=node) for cursor, node in zip(self.cursors(), self.nodes, strict=True)]

    @strawberry.field
    async def total_count(self) -> int:
        """Counted only when asked for: on a large collection the count costs more than the page."""
        return await self.count()


def counted_from_start(info: Info, first: int, last: int | None) -> int | None:
    """`first` as the read model takes it: None when paging from the end (`last`) and the query left `first` at
    its default; when the query gives both, they go on, and the read model refuses them (BAD_USER_INPUT)."""
    if last is None:
        return first
    field = info.selected_fields[0]
    given = isinstance(field, SelectedField) and field.arguments.get("first") is not None
    return first if given else None


def asks_for_total(info: Info) -> bool:
    """Whether the query selects `totalCount` on this connection (directly or in a fragment). A miss only
    costs time: an unasked-for total is still read when the field resolves."""

    def found(selections: list[Selection]) -> bool:
        for selection in selections:
            if isinstance(selection, SelectedField) and selection.name == "totalCount":
                return True
            if isinstance(selection, FragmentSpread | InlineFragment) and found(selection.selections):
                return True
        return False

    return any(found(field.selections) for field in info.selected_fields)


def connection(page: Page[D], node: Callable[[D], NodeT]) -> Connection[NodeT]:
    return Connection(
        nodes=[node(doc) for doc in page.documents],
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.start_cursor,
            end_cursor=page.end_cursor,
        ),
        count=page.count,
        cursors=lambda: [page.cursor_of(doc) for doc in page.documents],
    )
