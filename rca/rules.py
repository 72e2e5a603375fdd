"""The rule classifier: the response matrix read as ordered rules over incident features.

This is the skeleton's classifier; a trained one implements the same ``diagnose`` seam. Rules
are checked in order of how specific the signature is: a leak first (memory climbs whatever
else happens), then CPU with errors, then errors alone (split at the playbook's boundary), then
CPU alone, then latency alone.

A memory rise that comes with a surge of requests the CPU shows too is load, not a leak: a
task's memory follows the requests it holds, and a sensitive detector flags that step (the
ensemble's forest blames the steadiest metric for a minute where everything moved). A leak
brings no extra requests. Such an incident goes on to the CPU rows; an OOM kill is not
weighed here (the trained classifier's guards do that).
"""

from __future__ import annotations

import math

from rca.diagnosis import Diagnosis, Evidence
from rca.features import Features
from rca.playbook import Playbook

CPU, MEMORY, ERRORS, LATENCY = "cpu_utilization", "memory_utilization", "error_count", "response_time"
REQUESTS = "request_count"


class RuleClassifier:
    """Chooses the playbook row from which metrics are anomalous.

    Parameters
    ----------
    playbook : the response matrix (error boundary, severities, actions).
    threshold : the detector score above which a metric counts as anomalous.
    """

    def __init__(self, playbook: Playbook, threshold: float = 4.0):
        self.playbook = playbook
        self.threshold = threshold

    def _score(self, features: Features, metric: str) -> float:
        """The metric's detector score; a payload's anomaly (flagged, no score) counts as 1 over."""
        z = features.get(f"{metric}_z", 0.0)
        if math.isnan(z):
            return self.threshold + 1.0 if features.get(f"{metric}_anomalous", 0.0) >= 1 else 0.0
        return z

    def _anomalous(self, features: Features, metric: str) -> bool:
        return self._score(features, metric) > self.threshold

    def _confidence(self, features: Features, metrics: list[str]) -> float:
        """Logistic in the weakest deciding score's margin over the threshold."""
        margin = min(self._score(features, m) for m in metrics) - self.threshold
        return 1.0 / (1.0 + math.exp(-margin))

    def diagnose(self, features: Features) -> Diagnosis:
        """The playbook row whose signature the features show, or ``unknown``."""
        cause, drivers = self._match(features)
        if cause == "unknown":
            return Diagnosis.from_cause(self.playbook, "unknown", 0.0,
                                        "No anomaly pattern of the playbook matched.", [])
        evidence = [Evidence(f"{m}", features.get(f"{m}_value", math.nan),
                             features.get(f"{m}_expected")) for m in drivers]
        return Diagnosis.from_cause(self.playbook, cause, self._confidence(features, drivers),
                                    self._explain(cause, features), evidence)

    def _load_driven(self, features: Features) -> bool:
        """More requests than expected, anomalously so, with the CPU anomalous too."""
        rose = features.get(f"{REQUESTS}_log_ratio", 0.0)
        return (self._anomalous(features, REQUESTS) and math.isfinite(rose) and rose > 0
                and self._anomalous(features, CPU))

    def _match(self, features: Features) -> tuple[str, list[str]]:
        if self._anomalous(features, MEMORY) and not self._load_driven(features):
            return "memory_leak", [MEMORY]
        if self._anomalous(features, CPU) and self._anomalous(features, ERRORS):
            return "high_cpu_with_errors", [CPU, ERRORS]
        if self._anomalous(features, ERRORS):
            high = features.get("errors_in_period", 0.0) > self.playbook.error_boundary
            return ("error_rate_high" if high else "error_rate_low"), [ERRORS]
        if self._anomalous(features, CPU):
            return "high_cpu", [CPU]
        if self._anomalous(features, LATENCY):
            return "slow_response", [LATENCY]
        return "unknown", []

    def _explain(self, cause: str, f: Features) -> str:
        def show(metric: str, unit: str = "", fmt: str = ".0f") -> str:
            return (f"{format(f.get(f'{metric}_value', math.nan), fmt)}{unit} "
                    f"(expected {format(f.get(f'{metric}_expected', math.nan), fmt)}{unit})")
        boundary = self.playbook.error_boundary
        return {
            "memory_leak": f"Memory is at {show(MEMORY, '%')} and climbing "
                           f"{f.get(f'{MEMORY}_slope', 0.0):.2f} points a minute: a leak heading for OOM.",
            "high_cpu_with_errors": f"CPU is at {show(CPU, '%')} with {show(ERRORS)} errors a period: "
                                    "the service is overloaded and failing requests.",
            "error_rate_high": f"{f.get('errors_in_period', 0):.0f} errors in the last period, more than "
                               f"{boundary}, with CPU normal: a bad change is failing requests.",
            "error_rate_low": f"{f.get('errors_in_period', 0):.0f} errors in the last period (at most "
                              f"{boundary}) with CPU normal: worth a look at the logs.",
            "high_cpu": f"CPU is at {show(CPU, '%')} without errors: more load than the tasks absorb.",
            "slow_response": f"Response time is {show(LATENCY, 's', '.2f')} with CPU normal: "
                             "a slow dependency or queueing.",
        }[cause]
