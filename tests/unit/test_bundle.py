"""Model bundles: what is saved loads back the same; every tampering is refused before anything
in the bundle is decoded, with the loader named; nothing in a bundle can run code."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import models.bundle as bundle_module
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
from models.signing import SigningKey, Trust, local_key
from tests.fakes import TEST_KEY, trusting

LOADER = "aiops watch"


@pytest.fixture()
def fitted() -> RobustZDetector:
    index = pd.date_range("2026-11-01", periods=3 * 1440, freq="1min", tz="UTC")
    rng = np.random.default_rng(1)
    return RobustZDetector().fit(pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1, len(index))},
                                              index=index))


@pytest.fixture()
def saved(tmp_path, fitted) -> Path:
    return save_bundle(fitted, {"threshold": 4.0}, tmp_path / "b", key=TEST_KEY,
                       metrics=["cpu_utilization"], data_window=("a", "b"))


@pytest.fixture()
def decoded(monkeypatch) -> list:
    """Records every attempt to decode a bundle's state: a refusal must come before any."""
    calls: list = []
    real = bundle_module.load_state

    def spy(state, kind=bundle_module.DETECTOR):
        calls.append(kind)
        return real(state, kind)

    monkeypatch.setattr(bundle_module, "load_state", spy)
    return calls


class Marker:
    """A pickle whose loading would create a file: proof that code ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def rewrite_manifest(path: Path, **changes) -> None:
    """What an attacker without the key can do: recompute every hash and rewrite the manifest."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["sha256"] = {name: hashlib.sha256((path / name).read_bytes()).hexdigest()
                          for name in changes.pop("files", manifest["sha256"])}
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_bundle_loads_back_and_scores_the_same(saved, fitted) -> None:
    loaded = load_bundle(saved, trust=trusting(LOADER))
    live = pd.DataFrame({"cpu_utilization": [30.0, 80.0]},
                        index=pd.date_range("2026-11-05", periods=2, freq="1min", tz="UTC"))
    pd.testing.assert_frame_equal(loaded.model.score(live), fitted.score(live))
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["metrics"] == ["cpu_utilization"] and manifest["kind"] == "detector"
    assert set(manifest["sha256"]) == {"config.json", "state.npz"}
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "manifest.json", "manifest.sig",
                                                       "state.npz"]
    assert manifest["packages"]["scikit-learn"] != "absent" and loaded.signed


def test_a_flipped_byte_in_the_state_is_refused_before_decoding(saved, decoded) -> None:
    state = saved / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{LOADER}: .*state.npz does not match its sha256"):
        load_bundle(saved, trust=trusting(LOADER))
    assert decoded == []


def test_an_edited_config_is_refused(saved, decoded) -> None:
    (saved / "config.json").write_text('{"threshold": 0.1}')
    with pytest.raises(BundleError, match=f"{LOADER}: .*config.json does not match its sha256"):
        load_bundle(saved, trust=trusting(LOADER))
    rewrite_manifest(saved)  # ... and with the manifest's hashes recomputed: its signature fails
    with pytest.raises(BundleError, match=f"{LOADER}: .*does not match its signature"):
        load_bundle(saved, trust=trusting(LOADER))
    assert decoded == []


def test_a_manifest_swapped_in_from_another_bundle_is_refused(tmp_path, saved, fitted, decoded) -> None:
    other = save_bundle(fitted, {"threshold": 9.0}, tmp_path / "other", key=TEST_KEY,
                        metrics=["cpu_utilization"], data_window=("a", "b"))
    for name in ("manifest.json", "manifest.sig"):  # validly signed, but for other files
        shutil.copy(other / name, saved / name)
    with pytest.raises(BundleError, match=f"{LOADER}: .*config.json does not match its sha256"):
        load_bundle(saved, trust=trusting(LOADER))
    shutil.copy(other / "manifest.json", saved / "manifest.json")
    (saved / "manifest.sig").write_text((tmp_path / "other" / "manifest.sig").read_text()
                                        .replace('"signature": "', '"signature": "00'))
    with pytest.raises(BundleError, match="does not match its signature"):
        load_bundle(saved, trust=trusting(LOADER))
    assert decoded == []


def test_a_malicious_pickle_with_a_regenerated_manifest_never_runs(tmp_path, saved, decoded) -> None:
    marker = tmp_path / "pwned"
    (saved / "state.npz").write_bytes(pickle.dumps(Marker(marker)))
    rewrite_manifest(saved)
    with pytest.raises(BundleError, match=f"{LOADER}: .*does not match its signature"):
        load_bundle(saved, trust=trusting(LOADER))
    assert decoded == []
    # even with unsigned bundles allowed, the state is decoded as data: no pickle is ever loaded
    with pytest.raises(BundleError, match="state.npz: not a model state archive"):
        load_bundle(saved, trust=Trust(TEST_KEY, LOADER, allow_unsigned=True))
    # and as an old-style state.joblib beside a regenerated manifest: refused as an old bundle
    (saved / "state.joblib").write_bytes(pickle.dumps(Marker(marker)))
    rewrite_manifest(saved, files=["config.json", "state.joblib"])
    with pytest.raises(BundleError, match="older version of aiops.*retrain it with `aiops train`"):
        load_bundle(saved, trust=Trust(TEST_KEY, LOADER, allow_unsigned=True))
    assert not marker.exists(), "the pickle's code ran"


def test_a_state_naming_a_foreign_class_is_refused_without_building_it() -> None:
    from models.codec import STRUCTURE, _npz_bytes, decode

    structure = json.dumps({"format": 1, "root": {"$obj": "os.system", "id": 0, "state": []}})
    archive = _npz_bytes({STRUCTURE: np.frombuffer(structure.encode(), dtype=np.uint8)})
    with pytest.raises(ValueError, match="'os.system', which is not a type a model may hold"):
        decode(archive)


def test_an_unsigned_bundle_is_refused_unless_allowed(saved, decoded, capsys) -> None:
    (saved / "manifest.sig").unlink()
    with pytest.raises(BundleError, match=rf"{LOADER}: model bundle .* is not signed.*--allow-unsigned"):
        load_bundle(saved, trust=trusting(LOADER))
    assert decoded == []
    loaded = load_bundle(saved, trust=Trust(TEST_KEY, LOADER, allow_unsigned=True))
    assert not loaded.signed and "loaded anyway" in capsys.readouterr().err


def test_another_key_or_no_key_is_named(saved) -> None:
    other = SigningKey(b"another key of at least thirty-two bytes", "AIOPS_SIGNING_KEY")
    with pytest.raises(BundleError, match="signed with another key"):
        load_bundle(saved, trust=Trust(other, LOADER))
    with pytest.raises(BundleError, match="no signing key is configured here"):
        load_bundle(saved, trust=Trust(None, LOADER))


def test_an_old_pickled_bundle_says_to_retrain(tmp_path, fitted) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text("{}")
    (old / "state.joblib").write_bytes(b"\x80\x04K\x01.")
    (old / "manifest.json").write_text(json.dumps({"sha256": {}}))
    with pytest.raises(BundleError, match=f"{LOADER}: .*older version of aiops.*aiops train"):
        load_bundle(old, trust=trusting(LOADER))


def test_a_missing_bundle_says_where_it_looked(tmp_path) -> None:
    with pytest.raises(BundleError, match="no model bundle at"):
        load_bundle(tmp_path / "nowhere", trust=trusting())


def test_the_manifest_names_features_metrics_and_figures(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {"detector": "robust_z"}, tmp_path / "b", key=TEST_KEY,
                       metrics=["cpu_utilization"],
                       data_window=("2026-11-01T00:00:00+00:00", "2026-11-03T23:59:00+00:00"),
                       evaluation={"f1": 0.9})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["feature_names"] == ["cpu_utilization"]
    assert manifest["evaluation"] == {"f1": 0.9}
    assert manifest["data_window"]["end"].startswith("2026-11-03")
    assert load_bundle(path, trust=trusting()).digest == bundle_digest(path)


def test_the_same_model_gives_the_same_bytes(tmp_path, fitted) -> None:
    one = save_bundle(fitted, {"t": 4}, tmp_path / "one", key=TEST_KEY, metrics=["cpu_utilization"],
                      data_window=("a", "b"))
    two = save_bundle(load_state(dump_state(fitted)), {"t": 4}, tmp_path / "two", key=TEST_KEY,
                      metrics=["cpu_utilization"], data_window=("a", "b"), state=dump_state(fitted))
    assert bundle_digest(one) == bundle_digest(two)
    assert dump_state(load_state(dump_state(fitted))) == dump_state(fitted)


def test_a_bundle_from_other_package_versions_is_refused(tmp_path, fitted) -> None:
    path = save_bundle(fitted, {}, tmp_path / "b", key=TEST_KEY, metrics=["cpu_utilization"],
                       data_window=("a", "b"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["packages"]["scikit-learn"] = "0.24.2"
    text = json.dumps(manifest).encode()
    (path / "manifest.json").write_bytes(text)
    from models.signing import write_signature

    write_signature(path, text, TEST_KEY)  # signed by the key holder: only the versions differ
    with pytest.raises(BundleError, match=r"fitted with scikit-learn 0\.24\.2 \(this environment has"):
        load_bundle(path, trust=trusting())
    assert load_bundle(path, trust=trusting(), check_versions=False).config == {}


def test_patch_releases_still_load() -> None:
    installed = {"numpy": "2.4.6", "scikit-learn": "1.9.1", "pandas": "3.1.1"}
    assert version_problems({"numpy": "2.1.0", "scikit-learn": "1.9.0", "pandas": "3.0.0"}, installed) == []
    assert version_problems({"scikit-learn": "1.8.2"}, installed) == [
        "scikit-learn 1.8.2 (this environment has 1.9.1)"]
    assert version_problems({"numpy": "1.26.4"}, installed) == ["numpy 1.26.4 (this environment has 2.4.6)"]


def test_a_replaced_bundle_is_refused_when_the_store_knows_the_digest(saved, fitted) -> None:
    recorded = bundle_digest(saved)
    save_bundle(fitted, {"other": True}, saved, key=TEST_KEY, metrics=["cpu_utilization"],
                data_window=("a", "b"))
    load_bundle(saved, trust=trusting())  # validly signed on its own ...
    with pytest.raises(BundleError, match="does not match the digest its model store recorded"):
        load_bundle(saved, trust=trusting(), expected_digest=recorded)  # ... but not what was published


def test_a_manifest_that_is_not_json_is_named(saved) -> None:
    text = b"{not json"
    (saved / "manifest.json").write_bytes(text)
    from models.signing import write_signature

    write_signature(saved, text, TEST_KEY)
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        load_bundle(saved, trust=trusting())


def test_the_local_key_is_made_once_owner_only_and_said_on_stderr(tmp_path) -> None:
    said: list[str] = []
    key = local_key(tmp_path, create=True, announce=said.append)
    assert (tmp_path / "signing.key").stat().st_mode & 0o777 == 0o600
    assert len(said) == 1 and "signing.key" in said[0]
    assert local_key(tmp_path, create=True, announce=said.append) == key and len(said) == 1
    (tmp_path / "signing.key").chmod(0o644)
    with pytest.raises(ValueError, match="readable or writable by other users"):
        local_key(tmp_path, create=False)
    assert local_key(tmp_path / "empty", create=False) is None


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        SigningKey(b"short", "AIOPS_SIGNING_KEY")
