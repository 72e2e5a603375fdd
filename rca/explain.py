"""One sentence a person understands, per root cause, from the incident's features."""

from __future__ import annotations

import math

from rca.features import Features
from rca.guards import Decision
from rca.playbook import Playbook
from rca.vectorize import CPU, ERRORS, LATENCY, MEMORY, REQUESTS

UNITS = {CPU: ("%", ".0f"), MEMORY: ("%", ".0f"), ERRORS: ("", ".0f"), LATENCY: ("s", ".2f"),
         REQUESTS: ("", ".0f")}


def show(features: Features, metric: str) -> str:
    """``60% (expected 4%)``, or ``60%`` when no expectation is known, or ``unknown``."""
    unit, fmt = UNITS.get(metric, ("", ".3g"))
    value, expected = features.get(f"{metric}_value"), features.get(f"{metric}_expected")
    if value is None or not math.isfinite(value):
        return "unknown"
    text = f"{format(value, fmt)}{unit}"
    if expected is not None and math.isfinite(expected):
        text += f" (expected {format(expected, fmt)}{unit})"
    return text


def _errors(f: Features) -> str:
    value = f.get("errors_in_period")
    return "an unknown number of" if value is None or not math.isfinite(value) else f"{value:.0f}"


def _deployment(f: Features) -> str:
    minutes = f.get("minutes_since_deployment")
    if minutes is None or not math.isfinite(minutes):
        return ""
    return f" (last deployment {minutes:.0f} min ago)"


def sentence(cause: str, f: Features, playbook: Playbook) -> str:
    """What the cause means for this incident, in the incident's own numbers."""
    boundary = playbook.error_boundary
    slope = f.get(f"{MEMORY}_slope")
    climbing = f" and climbing {slope:.2f} points a minute" if slope is not None and slope > 0 else ""
    cpu = f" while CPU is {show(f, CPU)}" if show(f, CPU) != "unknown" else ""
    oom = f.get("oom_stopped_tasks")
    killed = f"; {oom:.0f} task(s) stopped with OutOfMemory" if oom is not None and oom > 0 else ""
    return {
        "high_cpu": f"CPU is at {show(f, CPU)} without errors: more load than the tasks absorb.",
        "high_cpu_with_errors": f"CPU is at {show(f, CPU)} with {_errors(f)} errors in the period: "
                                "the service is overloaded and failing requests.",
        "memory_leak": f"Memory is at {show(f, MEMORY)}{climbing}{killed}: a leak heading for OOM.",
        "error_rate_high": f"{_errors(f)} errors in the last period, more than {boundary}"
                           f"{_deployment(f)}: a bad change is failing requests.",
        "error_rate_low": f"{_errors(f)} errors in the last period (at most {boundary}): worth a look "
                          "at the logs.",
        "slow_response": f"Response time is {show(f, LATENCY)}{cpu}: a slow dependency or queueing.",
    }[cause]


def explain(decision: Decision, f: Features, playbook: Playbook) -> str:
    """The explanation of a decision, saying which guard decided when one did."""
    if decision.rule == "no_anomaly":
        return ("No metric is outside its baseline for two periods or more: nothing to diagnose, "
                "so only an alert.")
    if decision.rule == "onset_not_seen":
        return ("The window starts inside the incident, so what started it is not in the window: "
                "alerting instead of guessing; give a window that starts before the symptoms.")
    if decision.rule == "recent_deployment":
        return (f"{_errors(f)} errors in the last period, more than {playbook.error_boundary}, with a "
                f"deployment {f.get('minutes_since_deployment', math.nan):.0f} min ago: the new "
                "revision is failing requests (recent-deployment rule).")
    if decision.cause != "unknown":
        return sentence(decision.cause, f, playbook)
    guess = decision.guess
    if decision.rule == "no_fault":
        return (f"The symptoms look like a fault-free service's (noise, a blip, a deployment warming up;"
                f" confidence {decision.confidence:.2f}), not like any row of the playbook: alerting "
                "only.")
    if decision.rule == "no_evidence":
        return (f"The pattern resembles {guess}, but its key metric is not outside its baseline; "
                "not acting on it.")
    if decision.rule == "low_confidence":
        needed = playbook.min_confidence_destructive if playbook.cause(guess).auto_action.value in (
            "restart_tasks", "rollback") else playbook.min_confidence
        return (f"Best guess {guess} at confidence {decision.guess_confidence:.2f}, below the "
                f"{needed:.2f} needed to act on it: alerting the on-call engineer instead.")
    return "The pattern matches no row of the playbook well enough: alerting the on-call engineer."
