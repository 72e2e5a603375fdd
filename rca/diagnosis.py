"""The RCA output contract and the classifier seam."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

from rca.features import Features
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
    """What the platform believes happened and what the playbook says to do about it."""

    root_cause: str
    severity: str
    auto_action: str
    manual_action: str
    confidence: float
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

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
