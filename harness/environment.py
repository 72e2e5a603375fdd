"""What every simulated environment of the harness shares: a context whose resources (the local
AWS endpoint, clients, files) close together, also when starting it fails half-way."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Self


class SimulatedEnvironment:
    """Enter to start it (``_start`` registers what it opens on ``self._stack``); exit to close all."""

    _stack: ExitStack

    def _start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._stack = ExitStack()
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
