"""The backtest replays history through the live watcher's decision path: the same minutes read
from CloudWatch by the watcher `aiops watch` builds give the same decisions; and `aiops backtest`
prints per day what automation would have done, scores it against labels and runs what-ifs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from detection.zscore import RobustZDetector
from harness.backtestbench import live_decisions, simulate_history
from harness.cli import cli
from models.bundle import save_bundle
from models.signing import local_key
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.backtest import Scenario, decisions, replay
from service.guardrails import GuardrailConfig
from service.settings import ServiceTarget, Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim():
    return simulate_history(days=1, seed=2)


def test_the_backtest_decides_as_the_live_watcher_on_the_same_history(sim) -> None:
    detector = RobustZDetector().fit(sim.training)
    playbook = load_playbook()
    classifier = RuleClassifier(playbook)
    base = Scenario("as configured", Settings(), GuardrailConfig(), playbook)
    surge = sim.labels[0]
    index = sim.history.index
    window = sim.history[(index >= surge.start - pd.Timedelta(minutes=40))
                         & (index <= surge.end + pd.Timedelta(minutes=20))]
    replayed = decisions(replay(window, detector, classifier, ServiceTarget(), base, sim.deployments,
                                operator=None).store)
    live = live_decisions(window, sim.deployments, detector, classifier, ServiceTarget(), base)
    assert replayed == live
    assert replayed and replayed[0]["cause"] == "high_cpu"
    assert (replayed[0]["action"], replayed[0]["outcome"]) == ("scale_up", "would run")


def test_aiops_backtest_prints_days_scores_and_what_ifs(sim, tmp_path) -> None:
    detector = RobustZDetector().fit(sim.training)
    bundle = tmp_path / "bundle"
    data = tmp_path / "data"   # the bundle is signed with the data directory's key, as aiops train does
    save_bundle(detector, {"detector": "robust_z"}, bundle, key=local_key(data, create=True),
                metrics=list(sim.training.columns),
                data_window=(sim.training.index[0].isoformat(), sim.training.index[-1].isoformat()))
    surge = sim.labels[0]
    index = sim.history.index
    window = sim.history[(index >= surge.start - pd.Timedelta(minutes=30))
                         & (index <= surge.end + pd.Timedelta(minutes=30))]
    history = tmp_path / "history.csv"
    window.rename_axis("timestamp").reset_index().to_csv(history, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame([{"start": lab.start.isoformat(), "end": lab.end.isoformat(), "cause": lab.cause}
                  for lab in sim.labels]).to_csv(labels, index=False)
    args = ["--data-dir", str(tmp_path / "data"), "backtest", "--history", str(history),
            "--labels", str(labels), "--bundle", str(bundle), "--set", "open_after=3,group_window=3",
            "--set", "threshold=1000"]
    result = CliRunner().invoke(cli, args + ["--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    configured, stricter, deaf = report["scenarios"]
    assert configured["scores"]["actions"] >= 1 and configured["scores"]["action_precision"] == 1.0
    assert deaf["scores"]["incidents"] == 0 and deaf["scores"]["action_recall"] == 0.0, \
        "a threshold nothing reaches opens nothing"
    assert configured["per_day"][0]["incidents"] == configured["scores"]["incidents"]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "action precision" in text.output and "threshold=1000" in text.output
    assert "no ECS call was made" in text.output

    bad = CliRunner().invoke(cli, args[:-2] + ["--set", "thresold=5"])
    assert bad.exit_code == 1 and "unknown setting" in bad.output and "Traceback" not in bad.output
