"""The local model store: numbered versions, aliases, verified loads, the deployed copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from models.bundle import BundleError, load_bundle, save_bundle
from models.store import CHAMPION, LocalModelStore, ModelStoreError, load_champion
from tests.fakes import TEST_KEY, trusting


def bundle(tmp_path, name: str, threshold: float = 4.0):
    index = pd.date_range("2026-11-01", periods=2 * 1440, freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    detector = RobustZDetector(threshold=threshold).fit(
        pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1, len(index))}, index=index))
    return save_bundle(detector, {"threshold": threshold}, tmp_path / name, key=TEST_KEY,
                       metrics=["cpu_utilization"],
                       data_window=(index[0].isoformat(), index[-1].isoformat()))


def test_versions_are_numbered_and_the_same_bundle_is_not_added_twice(tmp_path) -> None:
    store = LocalModelStore(tmp_path / "store", trusting())
    first = store.publish("c--s", bundle(tmp_path, "a"), info={"f1": 0.5})
    again = store.publish("c--s", bundle(tmp_path, "a"), info={"f1": 0.6})
    second = store.publish("c--s", bundle(tmp_path, "b", threshold=5.0))
    assert (first.version, again.version, second.version) == (1, 1, 2)
    assert [v.version for v in store.versions("c--s")] == [1, 2]
    assert store.get("c--s", version=1).info == {"f1": 0.6}, "the newest figures are kept"
    assert store.names() == ["c--s"]


def test_aliases_point_at_versions_and_load_verifies(tmp_path) -> None:
    store = LocalModelStore(tmp_path / "store", trusting())
    store.publish("c--s", bundle(tmp_path, "a"))
    store.set_alias("c--s", CHAMPION, 1)
    assert store.get("c--s", alias=CHAMPION).aliases == ("champion",)
    assert store.load("c--s", alias=CHAMPION).model.threshold == 4.0
    with pytest.raises(ModelStoreError, match="has no version 7"):
        store.set_alias("c--s", CHAMPION, 7)
    with pytest.raises(ModelStoreError, match="no alias 'challenger'"):
        store.load("c--s", alias="challenger")


def test_a_tampered_version_is_refused(tmp_path) -> None:
    store = LocalModelStore(tmp_path / "store", trusting())
    version = store.publish("c--s", bundle(tmp_path, "a"))
    state = tmp_path / "store" / "c--s" / "v1" / "state.npz"
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="state.npz does not match its sha256"):
        store.load("c--s", version=version.version)


def test_a_whole_bundle_swapped_in_is_refused(tmp_path) -> None:
    store = LocalModelStore(tmp_path / "store", trusting())
    store.publish("c--s", bundle(tmp_path, "a"))
    other = bundle(tmp_path, "b", threshold=9.0)
    for path in other.iterdir():
        (tmp_path / "store" / "c--s" / "v1" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(BundleError, match="does not match the digest its model store recorded"):
        store.load("c--s", version=1)


def test_export_replaces_the_deployed_bundle(tmp_path) -> None:
    store = LocalModelStore(tmp_path / "store", trusting())
    store.publish("c--s", bundle(tmp_path, "a"))
    store.publish("c--s", bundle(tmp_path, "b", threshold=5.0))
    target = tmp_path / "models" / "c--s"
    store.export("c--s", 1, target)
    store.export("c--s", 2, target)
    assert load_bundle(target, trust=trusting()).model.threshold == 5.0
    assert sorted(p.name for p in target.parent.iterdir()) == ["c--s"], "no staging left behind"


def test_the_champion_or_the_deployed_bundle_is_what_scoring_loads(tmp_path) -> None:
    store = LocalModelStore(tmp_path / "store", trusting())
    deployed = bundle(tmp_path, "deployed", threshold=6.0)
    assert load_champion(store, "c--s", fallback_dir=deployed).model.threshold == 6.0
    store.publish("c--s", bundle(tmp_path, "a"))
    store.set_alias("c--s", CHAMPION, 1)
    assert load_champion(store, "c--s", fallback_dir=deployed).model.threshold == 4.0
    with pytest.raises(ModelStoreError, match="no alias 'champion'.*and no bundle at"):
        load_champion(store, "other", fallback_dir=tmp_path / "nowhere")


def test_bad_model_names_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        LocalModelStore(tmp_path, trusting()).versions("../etc")
