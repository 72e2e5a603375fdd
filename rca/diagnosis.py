"""The RCA output contract and the classifier seam."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Protocol

from detection.forecast import OomForecast
from rca.features import Features
from rca.outcomes import TrackRecord
from rca.playbook import Playbook


@dataclass(frozen=True)
class Evidence:
    """A feature that drove the decision, with what was seen and what was expected.

    ``contribution``: how much the chosen cause's probability falls when this feature is made
    unremarkable (a trained classifier fills it; rules leave it None).
    """

    feature: str
    value: float
    expected: float | None = None
    contribution: float | None = None


@dataclass(frozen=True)
class Diagnosis:
    """What the platform believes happened and what the playbook says to do about it.

    ``time_to_oom``: for a memory leak, when memory reaches its limit at the current trend (the
    watcher adds it; a diagnosis of a payload has none). ``track_record``: how the automatic action
    fared against this cause on this service before (the watcher adds it). Both are left out of
    :meth:`to_dict` when absent, so the diagnosis contract of the doors is unchanged.
    """

    root_cause: str
    severity: str
    auto_action: str
    manual_action: str
    confidence: float
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)
    time_to_oom: OomForecast | None = None
    track_record: TrackRecord | None = None

    def to_dict(self) -> dict:
        extras = ("time_to_oom", "track_record")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in extras}
        out["evidence"] = [asdict(e) for e in self.evidence]
        for name in extras:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name).to_dict()
        return out

    def with_track_record(self, record: TrackRecord | None) -> "Diagnosis":
        """This diagnosis stating its action's past success rate for the cause on this service."""
        if record is None:
            return self
        return replace(self, track_record=record,
                       explanation=f"{self.explanation} Past outcomes: {record.summary()}.".strip())

    def with_forecast(self, forecast: OomForecast | None) -> "Diagnosis":
        """This diagnosis carrying ``forecast``, its explanation ending with it in words."""
        if forecast is None:
            return self
        return replace(self, time_to_oom=forecast,
                       explanation=f"{self.explanation} Time to OOM: {forecast.summary()}.".strip())

    @classmethod
    def from_cause(cls, playbook: Playbook, cause_id: str, confidence: float, explanation: str,
                   evidence: list[Evidence]) -> "Diagnosis":
        """A diagnosis whose severity and actions come from the playbook's row for the cause."""
        row = playbook.cause(cause_id)
        return cls(cause_id, row.severity.value, row.auto_action.value, row.manual_action,
                   round(float(confidence), 3), explanation, evidence)


class RootCauseClassifier(Protocol):
    """Maps an incident's features onto a row of the playbook."""

    def diagnose(self, features: Features) -> Diagnosis: ...
