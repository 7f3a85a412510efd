"""How a long operation (rebuild, seed) reports how far it is: a rich progress bar on the command line."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, label: str, total: int | None) -> None: ...

    def advance(self, label: str, amount: int) -> None: ...


class NoProgress:
    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, label: str, amount: int) -> None:
        pass
