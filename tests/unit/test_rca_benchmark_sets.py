"""How the benchmark scores a labelled set: what counts as right, abstained and harmful."""

from __future__ import annotations

from rca.diagnosis import Diagnosis
from rca.playbook import load_playbook
from training.rca_benchmark import LabelledSet, choose_floor, harmful_actions, score_set

PLAYBOOK = load_playbook()


class Fixed:
    """A classifier that answers the cause written in the features, with its confidence."""

    def diagnose(self, features: dict) -> Diagnosis:
        return Diagnosis.from_cause(PLAYBOOK, features["say"], features.get("p", 1.0), "", [])


def labelled(pairs: list[tuple[str, str]], folds: list[str] | None = None) -> LabelledSet:
    truths = [t for t, _ in pairs]
    accepts = [(t,) for t in truths]
    harmful = [tuple(sorted(harmful_actions(t, PLAYBOOK))) if t != "unknown" else
               ("scale_up", "restart_tasks", "rollback") for t in truths]
    return LabelledSet("s", [{"say": s} for _, s in pairs], truths, accepts, harmful,
                       [str(i) for i in range(len(pairs))], folds)


def test_unknown_on_a_fault_free_case_is_right_and_on_a_fault_is_abstention() -> None:
    got = score_set(Fixed(), labelled([("unknown", "unknown"), ("high_cpu", "unknown"),
                                       ("high_cpu", "high_cpu"), ("slow_response", "memory_leak")]), PLAYBOOK)
    assert got.exact == 0.5
    assert got.abstained == 1 / 3                 # one of three faulty cases answered unknown
    assert got.answered_accuracy == 2 / 3         # right among the three it answered
    assert got.harmful == 1                       # a restart for a slow response


def test_a_scale_up_on_an_error_case_is_harmful_an_alert_never_is() -> None:
    got = score_set(Fixed(), labelled([("error_rate_high", "high_cpu"),
                                       ("error_rate_high", "error_rate_low")]), PLAYBOOK)
    assert got.harmful == 1 and got.exact == 0.0


def test_the_floor_is_chosen_on_the_other_groups_only() -> None:
    pairs = [("high_cpu", "high_cpu")] * 4 + [("unknown", "high_cpu")] * 2
    chosen = choose_floor(Fixed(), labelled(pairs, ["a", "a", "b", "b", "a", "b"]), PLAYBOOK)
    assert [row["held_out"] for row in chosen] == ["a", "b"]
    assert all(row["n"] == 3 and row["harmful"] == 1 for row in chosen)
