"""Model bundles: what is saved loads back the same; a tampered bundle is refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from models.bundle import (
    BundleError,
    bundle_digest,
    dump_state,
    load_bundle,
    load_state,
    save_bundle,
    version_problems,
)


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


def test_the_manifest_names_features_metrics_and_figures(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {"detector": "robust_z"}, tmp_path / "b", metrics=["cpu_utilization"],
                       data_window=("2026-11-01T00:00:00+00:00", "2026-11-03T23:59:00+00:00"),
                       evaluation={"f1": 0.9})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["feature_names"] == ["cpu_utilization"]
    assert manifest["evaluation"] == {"f1": 0.9}
    assert manifest["data_window"]["end"].startswith("2026-11-03")
    assert load_bundle(path).digest == bundle_digest(path)


def test_the_same_model_gives_the_same_bytes(tmp_path, fitted) -> None:
    one = save_bundle(fitted, {"t": 4}, tmp_path / "one", metrics=["cpu_utilization"], data_window=("a", "b"))
    two = save_bundle(load_state(dump_state(fitted)), {"t": 4}, tmp_path / "two",
                      metrics=["cpu_utilization"], data_window=("a", "b"), state=dump_state(fitted))
    assert bundle_digest(one) == bundle_digest(two)


def test_a_bundle_from_other_package_versions_is_refused(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {}, tmp_path / "b", metrics=["cpu_utilization"], data_window=("a", "b"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["packages"]["scikit-learn"] = "0.24.2"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"fitted with scikit-learn 0\.24\.2 \(this environment has"):
        load_bundle(path)
    assert load_bundle(path, check_versions=False).config == {}


def test_patch_releases_still_load() -> None:
    installed = {"numpy": "2.4.6", "scikit-learn": "1.9.1", "pandas": "3.1.1"}
    assert version_problems({"numpy": "2.1.0", "scikit-learn": "1.9.0", "pandas": "3.0.0"}, installed) == []
    assert version_problems({"scikit-learn": "1.8.2"}, installed) == [
        "scikit-learn 1.8.2 (this environment has 1.9.1)"]
    assert version_problems({"numpy": "1.26.4"}, installed) == ["numpy 1.26.4 (this environment has 2.4.6)"]


def test_a_replaced_manifest_is_refused_when_the_store_knows_the_digest(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {}, tmp_path / "b", metrics=["cpu_utilization"], data_window=("a", "b"))
    recorded = bundle_digest(path)
    save_bundle(fitted, {"other": True}, path, metrics=["cpu_utilization"], data_window=("a", "b"))
    load_bundle(path)  # consistent on its own ...
    with pytest.raises(BundleError, match="does not match the digest its model store recorded"):
        load_bundle(path, expected_digest=recorded)  # ... but not the bundle that was published


def test_a_manifest_that_is_not_json_is_named(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {}, tmp_path / "b", metrics=["cpu_utilization"], data_window=("a", "b"))
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        load_bundle(path)
