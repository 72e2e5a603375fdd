"""The load benchmark's client does not pause to collect garbage while it sends."""

from __future__ import annotations

import gc

from harness.loadbench import _no_client_pauses


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_client_collects_no_garbage_while_it_sends_and_restores_the_collector_after() -> None:
    collections: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        with _no_client_pauses():
            collections.clear()
            kept = [_Cycle() for _ in range(200_000)]   # would trigger collections of every age
            assert collections == [] and not gc.isenabled()
        assert gc.isenabled() and collections, "collected again once the run is over"
        gc.disable()
        try:
            with _no_client_pauses():
                pass
            assert not gc.isenabled(), "a collector switched off before stays off"
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(seen)
    assert len(kept) == 200_000
