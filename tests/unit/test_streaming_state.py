"""The streaming detector's live path: a state warmed once, then fed one row at a time."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from detection.streaming import StreamingUnivariateDetector
from detection.streaming_state import StreamState


def messy_series(n: int = 2600, step: str = "5min") -> tuple[np.ndarray, pd.DatetimeIndex]:
    """A daily cycle with noise, a level shift, a spike, missing values, a duplicate
    timestamp and a three-hour gap: what a live metric can look like."""
    rng = np.random.default_rng(3)
    stamps = pd.date_range("2026-03-02", periods=n, freq=step, tz="UTC").to_series()
    hours = (stamps.index.hour + stamps.index.minute / 60).to_numpy()
    values = np.where((hours >= 8) & (hours < 18), 70.0, 25.0) + rng.normal(0, 2, n)
    values = np.round(values, 1)  # quantised, as CloudWatch percentages are: ties happen
    values[1900:1990] += 15
    values[2300] = 400
    values[[120, 1500, 2201]] = np.nan
    stamps.iloc[800] = stamps.iloc[799]
    stamps.iloc[2000:] += pd.Timedelta("3h")
    return values, pd.DatetimeIndex(stamps.to_numpy())


def live_after(values: np.ndarray, stamps: pd.DatetimeIndex, cut: int, state: StreamState | None = None):
    detector = StreamingUnivariateDetector()
    detector.fit_predict_stream(values[:cut], stamps[:cut])
    state = state or detector.stream_state()
    return [state.update(float(v), t) for v, t in zip(values[cut:], stamps[cut:], strict=True)], state


@pytest.mark.parametrize("cut", [40, 700, 1950])
def test_feeding_rows_one_at_a_time_gives_the_replay_of_the_whole_series(cut: int) -> None:
    values, stamps = messy_series()
    full = StreamingUnivariateDetector()
    scores = full.fit_predict_stream(values, stamps)
    rows, _ = live_after(values, stamps, cut)
    np.testing.assert_allclose([r.score for r in rows], scores[cut:], rtol=0, atol=1e-9)
    evidence = full.evidence_.iloc[cut:]
    np.testing.assert_allclose([r.surprise for r in rows], evidence["surprise"], rtol=0, atol=1e-9)
    np.testing.assert_allclose([r.residual for r in rows], evidence["residual"], rtol=0, atol=1e-9)
    assert (scores[cut:] > 0.5).any() or cut > 2300  # the spike and the shift are alarms after any cut


def test_one_minute_rows_keep_a_month_and_follow_the_replay_too() -> None:
    values, stamps = messy_series(n=3 * 1440, step="1min")
    scores = StreamingUnivariateDetector().fit_predict_stream(values, stamps)
    rows, state = live_after(values, stamps, 3 * 1440 - 300)
    np.testing.assert_allclose([r.score for r in rows], scores[-300:], rtol=0, atol=1e-9)
    assert state.config.history == 30 * 1440  # the durations became one-minute rows


def test_the_state_is_plain_data_that_survives_json_and_npz() -> None:
    values, stamps = messy_series()
    detector = StreamingUnivariateDetector()
    scores = detector.fit_predict_stream(values, stamps)
    cut = 2100
    warm = StreamingUnivariateDetector()
    warm.fit_predict_stream(values[:cut], stamps[:cut])
    data = warm.stream_state().to_dict()
    # settings and counters as JSON, arrays as .npz: nothing that needs pickle
    meta = json.loads(json.dumps({"config": data["config"], "scalars": data["scalars"]}))
    buffer = io.BytesIO()
    np.savez(buffer, **data["arrays"])
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as arrays:
        restored = StreamState.from_dict({**meta, "arrays": dict(arrays)})
    rows, _ = live_after(values, stamps, cut, restored)
    np.testing.assert_allclose([r.score for r in rows], scores[cut:], rtol=0, atol=1e-9)


def test_a_state_saved_before_min_z_judges_as_it_did_and_min_z_is_followed_live() -> None:
    """A bundle's state from before ``min_z`` existed has none in its config: it keeps judging by
    the channels alone, as the detector that made it did; a state made with ``min_z`` scores 0
    live wherever the replay does (rows less than ``min_z`` spreads off)."""
    values, stamps = messy_series()
    cut = 1950
    for min_z in (0.0, 3.0):
        full = StreamingUnivariateDetector(min_z=min_z)
        scores = full.fit_predict_stream(values, stamps)
        warm = StreamingUnivariateDetector(min_z=min_z)
        warm.fit_predict_stream(values[:cut], stamps[:cut])
        data = warm.stream_state().to_dict()
        if min_z == 0.0:  # as saved before the setting existed
            del data["config"]["min_z"]
        rows, _ = live_after(values, stamps, cut, StreamState.from_dict(data))
        np.testing.assert_allclose([r.score for r in rows], scores[cut:], rtol=0, atol=1e-9)
        np.testing.assert_allclose([r.surprise for r in rows], full.evidence_["surprise"].iloc[cut:],
                                   rtol=0, atol=1e-9)
        small = np.abs(full.evidence_["z"].to_numpy()) < 3.0
        gated = (full.evidence_["surprise"].to_numpy()[small] > 0).any()
        assert gated == (min_z == 0.0)  # without it, rows under 3 spreads carry the channels' surprise


def test_states_of_series_with_one_sampling_have_the_same_shapes_so_they_stack() -> None:
    values, stamps = messy_series()
    shapes = []
    for n in (900, 2500):
        detector = StreamingUnivariateDetector()
        detector.fit_predict_stream(values[:n], stamps[:n])
        shapes.append({k: v.shape for k, v in detector.stream_state().to_dict()["arrays"].items()})
    assert shapes[0] == shapes[1]


def test_what_the_live_state_refuses_is_named() -> None:
    values, stamps = messy_series()
    detector = StreamingUnivariateDetector()
    detector.fit_predict_stream(values[:10], None)
    with pytest.raises(ValueError, match="timestamps"):
        detector.stream_state()
    detector.fit_predict_stream(values[:10], stamps[:10])
    with pytest.raises(ValueError, match="20 rows"):
        detector.stream_state()
    with pytest.raises(RuntimeError, match="fit_predict_stream first"):
        StreamingUnivariateDetector().stream_state()
    detector.fit_predict_stream(values[:500], stamps[:500])
    state = detector.stream_state()
    with pytest.raises(ValueError, match="infinite"):
        state.update(float("inf"), stamps[500])
    broken = state.to_dict()
    broken["arrays"]["x"] = broken["arrays"]["x"][:-1]
    with pytest.raises(ValueError, match="'x' has shape"):
        StreamState.from_dict(broken)
    with pytest.raises(ValueError, match="not a streaming detector state"):
        StreamState.from_dict({"config": {}})


@pytest.mark.parametrize("cut,history", [(40, "30D"), (2100, "30D"), (2100, "2D")])
def test_a_compact_state_is_the_padded_one_without_its_padding(cut: int, history: str) -> None:
    """What a bundle stores since the arrays hold only the rows seen (``to_dict(compact=True)``,
    the member's ``states_``) is the same state as the NaN-padded arrays older bundles hold:
    both load, to the same rings and figures, and score the rows after alike. A 2-day history
    has wrapped its rings by then (nothing to trim); 30 days has not."""
    values, stamps = messy_series()
    warm = StreamingUnivariateDetector(history=history)
    warm.fit_predict_stream(values[:cut], stamps[:cut])
    padded, compact = warm.stream_state().to_dict(), warm._state_data()
    assert compact["config"] == padded["config"] and compact["scalars"] == padded["scalars"]
    for name, full in padded["arrays"].items():
        kept = compact["arrays"][name]
        assert kept.shape[:-1] == full.shape[:-1] and kept.shape[-1] <= full.shape[-1]
        assert kept.tobytes() == full[..., full.shape[-1] - kept.shape[-1]:].tobytes()
        assert np.isnan(full[..., :full.shape[-1] - kept.shape[-1]]).all()
    if history == "30D":
        assert compact["arrays"]["x"].shape[-1] < padded["arrays"]["x"].shape[-1]
    again = StreamState.from_dict(padded).to_dict(compact=True)
    for name in padded["arrays"]:
        assert again["arrays"][name].tobytes() == compact["arrays"][name].tobytes()
    scored = [live_after(values, stamps, cut, StreamState.from_dict(data))[0] for data in (padded, compact)]
    assert [r.score for r in scored[0]] == [r.score for r in scored[1]]
    assert [r.residual for r in scored[0]] == [r.residual for r in scored[1]]


def test_arrays_of_neither_length_are_refused() -> None:
    values, stamps = messy_series()
    detector = StreamingUnivariateDetector()
    detector.fit_predict_stream(values[:500], stamps[:500])
    compact = detector._state_data()
    compact["arrays"]["absolute"] = compact["arrays"]["absolute"][1:]
    with pytest.raises(ValueError, match="'absolute' has shape"):
        StreamState.from_dict(compact)
