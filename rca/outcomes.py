"""Learned outcomes: how often an action fixed a cause on one service, and when to stop trying it.

Every verification leaves one outcome (service, cause, the action that ran, resolved or not) in the
incident log. This module reads them; it decides nothing about I/O. Pure.

The **track record** of an action for a cause on a service counts its verified outcomes and the
run of failures among the newest of them. The platform skips an action whose newest
``skip_after`` outcomes there all failed (the playbook's ``skip_after_failures``; 0 never skips):
it escalates at once instead of spending another verification window on a fix that does not work
there (a slow dependency that more tasks cannot make faster). A success resets the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol


class Outcome(Protocol):
    """What the track record reads of a verified outcome (``service.action.ActionOutcome``)."""

    cause: str
    action: str
    resolved: bool


@dataclass(frozen=True)
class TrackRecord:
    """How ``action`` fared against ``cause`` on one service: verified outcomes, newest run of failures."""

    cause: str
    action: str
    resolved: int
    failed: int
    failing_streak: int

    @property
    def tried(self) -> int:
        return self.resolved + self.failed

    @property
    def success_rate(self) -> float | None:
        return self.resolved / self.tried if self.tried else None

    def never_works(self, skip_after: int) -> bool:
        """Whether the newest ``skip_after`` outcomes all failed (``skip_after`` 0: never)."""
        return skip_after > 0 and self.failing_streak >= skip_after

    def summary(self) -> str:
        """``scale_up resolved slow_response here 0 of 3 times (0%)``, or that it was never tried."""
        if not self.tried:
            return f"{self.action} has no verified outcome for {self.cause} here yet"
        return (f"{self.action} resolved {self.cause} here {self.resolved} of {self.tried} times "
                f"({self.success_rate:.0%})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrackRecord":
        try:
            return cls(str(data["cause"]), str(data["action"]), int(data["resolved"]),
                       int(data["failed"]), int(data["failing_streak"]))
        except KeyError as exc:
            raise ValueError(f"a track record needs {exc.args[0]}") from None


def track_record(outcomes: Iterable[Outcome], cause: str, action: str) -> TrackRecord:
    """The track record of ``action`` for ``cause`` from a service's outcomes, oldest first."""
    mine = [o.resolved for o in outcomes if o.cause == cause and o.action == action]
    streak = 0
    for resolved in reversed(mine):
        if resolved:
            break
        streak += 1
    return TrackRecord(cause, action, sum(mine), len(mine) - sum(mine), streak)


def track_records(outcomes: Iterable[Outcome], cause: str) -> list[TrackRecord]:
    """Every action's track record for ``cause`` (in the order they were first tried)."""
    outcomes = list(outcomes)
    actions = dict.fromkeys(o.action for o in outcomes if o.cause == cause)
    return [track_record(outcomes, cause, a) for a in actions]
