"""Model bundles: what is saved loads back the same; a tampered bundle is refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from models.bundle import BundleError, load_bundle, save_bundle


@pytest.fixture()
def fitted() -> RobustZDetector:
    index = pd.date_range("2026-11-01", periods=3 * 1440, freq="1min", tz="UTC")
    rng = np.random.default_rng(1)
    return RobustZDetector().fit(pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1, len(index))},
                                              index=index))


def test_a_bundle_loads_back_and_scores_the_same(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {"threshold": 4.0}, tmp_path / "b", metrics=["cpu_utilization"],
                       data_window=("a", "b"))
    loaded = load_bundle(path)
    live = pd.DataFrame({"cpu_utilization": [30.0, 80.0]},
                        index=pd.date_range("2026-11-05", periods=2, freq="1min", tz="UTC"))
    pd.testing.assert_frame_equal(loaded.model.score(live), fitted.score(live))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["metrics"] == ["cpu_utilization"] and set(manifest["sha256"]) == {
        "config.json", "state.joblib"}
    assert manifest["packages"]["scikit-learn"] != "absent"


def test_a_tampered_file_is_refused(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {"threshold": 4.0}, tmp_path / "b", metrics=["cpu_utilization"],
                       data_window=("a", "b"))
    (path / "config.json").write_text('{"threshold": 0.1}')
    with pytest.raises(BundleError, match="config.json does not match its sha256"):
        load_bundle(path)


def test_a_missing_bundle_says_where_it_looked(tmp_path) -> None:
    with pytest.raises(BundleError, match="no model bundle at"):
        load_bundle(tmp_path / "nowhere")
