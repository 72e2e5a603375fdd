"""The fleet scorer gives every service the scores its own detector gives, in one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.ensemble import ServiceDetector
from detection.fleet import FleetScorer
from detection.zscore import RobustZDetector
from models.codec import decode, encode
from simulation.physics import ServiceShape, history

END = pd.Timestamp("2026-11-16", tz="UTC")


@pytest.fixture(scope="module")
def detectors() -> dict:
    out = {}
    for i in range(2):
        past = history(END, 14, ServiceShape(), np.random.default_rng(i))
        fitted = ServiceDetector().fit(past)
        out[f"fresh-{i}"] = fitted                      # scikit-learn's forest, as fitted
        out[f"loaded-{i}"] = decode(encode(fitted))     # the forest as node arrays, as loaded
        out[f"z-{i}"] = RobustZDetector().fit(past)
    three_days = history(END, 3, ServiceShape(), np.random.default_rng(5))
    out["cold"] = ServiceDetector().fit(three_days)   # a cold-start seasonal model: scored alone
    return out


def frames_for(names, start: int = 600) -> dict[str, pd.DataFrame]:
    day = history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(9))
    window = day.iloc[start:start + 16]
    out = {}
    for i, name in enumerate(names):
        frame = window * (1 + 0.02 * i)
        if i % 3 == 1:
            frame.iloc[10:, frame.columns.get_loc("cpu_utilization")] *= 2.5   # a surge
            frame.iloc[4, frame.columns.get_loc("error_count")] = np.nan        # a missing point
        if i % 3 == 2:
            frame.iloc[12:, frame.columns.get_loc("error_count")] += 40          # an error storm
            frame = frame.drop(columns=["memory_utilization"])                  # a metric not read
        out[name] = frame
    return out


def test_every_service_gets_its_own_detectors_scores(detectors) -> None:
    scorer = FleetScorer(detectors)
    assert set(scorer.alone) == {"cold"}, "only the cold-start model is scored by itself"
    frames = frames_for(detectors)
    for newest in (None, 3):
        scores = scorer.score(frames, newest=newest)
        for name, frame in frames.items():
            own = detectors[name].score(frame)
            own = own.iloc[len(own) - newest:] if newest else own
            got = scores[name]
            assert list(got.columns) == list(own.columns) and got.index.equals(own.index)
            np.testing.assert_allclose(got.to_numpy(), own.to_numpy(), rtol=0, atol=1e-9,
                                       equal_nan=True, err_msg=name)
    surge = scores["loaded-1"]["cpu_utilization"]
    assert (surge > detectors["loaded-1"].threshold_).all(), "the surge is found in the fleet pass"


def test_a_request_for_some_services_gets_their_own_scores(detectors) -> None:
    scorer = FleetScorer(detectors)
    names = ["loaded-1", "fresh-0"]    # two of the group's four, not in the group's order
    frames = frames_for(names)
    blocks = scorer.score_stacked(frames)
    assert [sorted(b.names) for b in blocks] == [sorted(names)], "scored together, as a part of their group"
    scores = scorer.score(frames)
    for name in names:
        np.testing.assert_allclose(scores[name].to_numpy(), detectors[name].score(frames[name]).to_numpy(),
                                   rtol=0, atol=1e-9, equal_nan=True, err_msg=name)


def test_a_frame_on_another_index_is_scored_by_its_detector(detectors) -> None:
    names = ["loaded-0", "loaded-1"]
    frames = frames_for(names)
    frames["loaded-1"] = frames_for(["loaded-1"], start=700)["loaded-1"]
    scores = FleetScorer({n: detectors[n] for n in names}).score(frames)
    for name in names:
        np.testing.assert_allclose(scores[name].to_numpy(), detectors[name].score(frames[name]).to_numpy(),
                                   rtol=0, atol=1e-9, equal_nan=True)


def test_every_service_gets_its_own_detectors_anomalies(detectors) -> None:
    frames = frames_for(detectors)
    scorer = FleetScorer(detectors)
    for newest in (None, 4):
        found = scorer.detect(frames, newest=newest)
        for name, frame in frames.items():
            own = detectors[name].detect(frame)
            if newest:
                own = [a for a in own if a.timestamp >= frame.index[-newest]]
            assert [a.to_dict() for a in found[name]] == [a.to_dict() for a in own], name
    assert found["loaded-1"] and found["z-1"], "the surge is an anomaly for both kinds of model"


def test_a_warmed_scorer_scores_its_first_window_without_stacking_anything(detectors, monkeypatch) -> None:
    import numba

    import detection.streaming as streaming
    import detection.streaming_stack as streaming_stack
    from detection import kernels

    names = ["loaded-0", "loaded-1"]
    served = {n: decode(encode(detectors[n])) for n in names}   # live streams of their own
    scorer = FleetScorer(served)
    kernel_names = ["forest_depths", "forest_features", "count_at_least", "calibrate", "judge_trials",
                    "seasonal_centres", "seasonal_deviation", "streaming_gate", "streaming_raw"]
    dispatchers = [getattr(kernels, name) for name in kernel_names]
    called: dict[str, set] = {name: set() for name in kernel_names}

    def recorded(name, kernel):   # the argument types each kernel is called with
        def call(*args):
            called[name].add(tuple(numba.typeof(a) for a in args))
            return kernel(*args)
        return call

    for name, kernel in zip(kernel_names, dispatchers, strict=True):
        monkeypatch.setattr(kernels, name, recorded(name, kernel))
    scorer.warm()   # what `aiops serve` does before its first request
    warmed = {name: set(types) for name, types in called.items()}
    compiled = [list(d.signatures) for d in dispatchers]

    def no_new_stack(*args, **kwargs):
        raise AssertionError("a stack was made on the first window, after warm()")

    monkeypatch.setattr(streaming._Together, "__init__", no_new_stack)
    monkeypatch.setattr(streaming_stack.StreamStack, "__init__", no_new_stack)
    frames = frames_for(names)
    scores = scorer.score(frames)
    monkeypatch.undo()
    assert [list(d.signatures) for d in dispatchers] == compiled, "a kernel was compiled for the first window"
    for name in kernel_names:   # whatever compiled earlier in this process: warm() used the same types
        assert called[name] <= warmed[name], f"{name} is called with types warm() does not load"
        assert called[name], f"the window did not call {name}"
    for name in names:
        own = decode(encode(detectors[name])).score(frames[name])
        np.testing.assert_allclose(scores[name].to_numpy(), own.to_numpy(), rtol=0, atol=1e-9,
                                   equal_nan=True, err_msg=name)


def test_the_forests_past_mean_is_numpys_nanmean_without_touching_the_warnings_filters() -> None:
    import warnings

    from detection.fleet import _nan_mean, _sliding

    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 70, 5)) * 10.0 ** rng.integers(-3, 6, size=(4, 70, 5))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[1, 10:50] = np.nan                       # windows with nothing in them
    for length in (1, 9, 30):
        windows = _sliding(values, 1, length)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmean(windows, axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # an all-NaN window must not warn
            got = _nan_mean(windows)
        np.testing.assert_array_equal(got, expected, err_msg=str(length))
        assert np.isnan(got[1, 40]).all()
