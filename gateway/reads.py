"""Read-your-writes: wait (bounded) until the read model holds at least `minVersion`."""

from __future__ import annotations

import asyncio
import time

from projection.queries import ReadModel
from shared.errors import BadUserInput, StaleRead


async def wait_for_version(read_model: ReadModel, kind: str, doc_id: int, min_version: int, timeout: float) -> None:
    if min_version < 1:
        raise BadUserInput("minVersion must be at least 1", field="minVersion")
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        version = await read_model.version_of(kind, doc_id)
        if version is not None and version >= min_version:
            return
        if time.monotonic() >= deadline:
            raise StaleRead(
                f"{kind} {doc_id} has not reached version {min_version} in the read model "
                f"(now {version}) within {timeout:g}s"
            )
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)
