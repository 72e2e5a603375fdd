"""Fitted state as data: the compiled isolation forest scores as scikit-learn's, and an ensemble
stored as data and loaded back scores as the one that was fitted (within 1e-6, on a sample)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from detection.ensemble import ServiceDetector
from detection.forest import CompiledForest
from models.codec import decode, encode
from simulation.physics import ServiceShape, history

END = pd.Timestamp("2026-11-16", tz="UTC")


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_the_compiled_forest_scores_as_scikit_learn(max_features) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(3000, 9))
    forest = IsolationForest(random_state=0, max_features=max_features).fit(train)
    compiled = CompiledForest.from_sklearn(forest)
    sample = np.vstack([rng.normal(size=(400, 9)) * 3, train[:50]])
    sample[5, 2] = np.nan  # a missing value goes where scikit-learn sends it
    np.testing.assert_allclose(compiled.score_samples(sample), forest.score_samples(sample),
                               rtol=0, atol=1e-12)
    again = CompiledForest.from_arrays(compiled.arrays())
    np.testing.assert_array_equal(again.score_samples(sample), compiled.score_samples(sample))


def test_crafted_forest_arrays_are_refused() -> None:
    forest = CompiledForest.from_sklearn(IsolationForest(n_estimators=3, random_state=0)
                                         .fit(np.random.default_rng(1).normal(size=(100, 2))))
    arrays = forest.arrays()
    arrays["left"] = arrays["left"].copy()
    arrays["left"][0, 0] = 10_000
    with pytest.raises(ValueError, match="out of range"):
        CompiledForest.from_arrays(arrays)


@pytest.fixture(scope="module")
def fitted() -> ServiceDetector:
    return ServiceDetector().fit(history(END, 14, ServiceShape(), np.random.default_rng(0)))


def test_an_ensemble_loaded_from_data_scores_as_the_fitted_one(fitted) -> None:
    """Today's scores (the fitted detector, scikit-learn's forest) against the stored one's,
    on a normal day and on an hour of each kind of symptom."""
    loaded = decode(encode(fitted))
    assert isinstance(loaded.members_["iforest"].forest_, CompiledForest)
    day = history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(3))
    frames = [day]
    for metric, change in (("cpu_utilization", 2.0), ("error_count", 30.0), ("response_time", 0.8),
                           ("memory_utilization", 12.0)):
        frame = day.iloc[600:660].copy()
        frame.iloc[30:, frame.columns.get_loc(metric)] *= change if metric == "cpu_utilization" else 1
        if metric != "cpu_utilization":
            frame.iloc[30:, frame.columns.get_loc(metric)] += change
        frames.append(frame)
    for frame in frames:
        before, after = fitted.score(frame).to_numpy(), loaded.score(frame).to_numpy()
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-6, equal_nan=True)
        assert [a.to_dict() for a in loaded.detect(frame)] == [a.to_dict() for a in fitted.detect(frame)]
    assert encode(loaded) == encode(fitted), "stored again, the same bytes"
