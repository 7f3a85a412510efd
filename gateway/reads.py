"""Read-your-writes: wait (bounded) until the read model holds at least `minVersion`."""

from __future__ import annotations

from gateway.context import GatewayContext
from shared.errors import BadUserInput, StaleRead
from shared.events import AggregateType


async def wait_for_version(ctx: GatewayContext, kind: AggregateType, doc_id: int, min_version: int | None) -> None:
    """Woken by this instance's `views.changed` feed, not by polling; STALE_READ after the limit."""
    if min_version is None:
        return
    if min_version < 1:
        raise BadUserInput("minVersion must be at least 1", field="minVersion")
    timeout = ctx.settings.read_wait_timeout
    seen = await ctx.feed.wait_for_version(
        kind, doc_id, min_version, lambda: ctx.read_model.version_of(kind, doc_id), timeout
    )
    if seen is None or seen < min_version:
        raise StaleRead(
            f"{kind} {doc_id} has not reached version {min_version} in the read model (now {seen}) within {timeout:g}s",
            current_version=seen,
        )
