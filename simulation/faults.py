"""The faults the simulator can inject: one for each row of the response matrix.

Each fault is data: how it bends the service's physics, and how long it lasts if nobody acts.
What ends it early is the physics itself: more tasks absorb extra load, new tasks carry no
leaked memory, the previous task-definition revision has no bad deploy's errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Fault:
    """One kind of fault.

    Parameters
    ----------
    name : the fault's id (``load_surge`` ...).
    description : what it stands for, in a sentence.
    expected_cause : the root cause the platform should name.
    load_factor : requests multiply by this.
    overload_errors : errors a minute when tasks carry the extra load's full share, fading to
        none as more tasks take it (requests time out once a task is 15% over its usual share).
    leak_per_minute : memory points a minute leaked by tasks that were running when it began.
    extra_errors : errors a minute, whatever the tasks do (a trickle of failing requests).
    deploy_errors : errors a minute while tasks run the bad revision this fault deploys.
    latency_add : seconds added to every response (a slow dependency).
    duration : minutes it lasts if nothing removes it (None: until remediated).
    escalates : the playbook's action cannot fix it, so the right outcome is an escalation.
    """

    name: str
    description: str
    expected_cause: str
    load_factor: float = 1.0
    overload_errors: float = 0.0
    leak_per_minute: float = 0.0
    extra_errors: float = 0.0
    deploy_errors: float = 0.0
    latency_add: float = 0.0
    duration: int | None = None
    escalates: bool = False


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("load_surge", "50% more traffic; the tasks have headroom", "high_cpu",
          load_factor=1.5, duration=90),
    Fault("overload_errors", "50% more traffic than the tasks can serve without timeouts",
          "high_cpu_with_errors", load_factor=1.5, overload_errors=25.0, duration=90),
    Fault("memory_leak", "a leak in the running tasks, heading for OOM", "memory_leak",
          leak_per_minute=1.5),
    Fault("error_trickle", "a few failing requests a minute (<10)", "error_rate_low",
          extra_errors=6.0, duration=12),
    Fault("bad_deploy", "a new revision that fails many requests (>10 a minute)", "error_rate_high",
          deploy_errors=30.0),
    Fault("slow_dependency", "a downstream dependency answers 0.8 s late, then recovers",
          "slow_response", latency_add=0.8, duration=14),
    Fault("dependency_outage", "a downstream dependency stays 0.8 s late: scaling cannot fix it",
          "slow_response", latency_add=0.8, escalates=True),
)}

MATRIX_FAULTS = tuple(name for name, f in FAULTS.items() if not f.escalates)


@dataclass
class ActiveFault:
    """A fault in progress: when it began and, for a bad deploy, the revision it shipped."""

    fault: Fault
    start: pd.Timestamp
    bad_revision: int | None = None

    def active(self, now: pd.Timestamp) -> bool:
        duration = self.fault.duration
        return now >= self.start and (duration is None or now < self.start + pd.Timedelta(minutes=duration))


def get_fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise KeyError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}") from None
