"""Many streaming states moved together score as each moved alone: the fleet's path is the
detector's path, only vectorised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.ensemble import ServiceDetector
from detection.streaming import StreamingUnivariateDetector, score_together
from detection.streaming_stack import StreamStack
from models.codec import decode, encode
from simulation.physics import ServiceShape, history

END = pd.Timestamp("2026-11-16", tz="UTC")


def series_set(count: int, days: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Daily shapes with noise, some quantised, gaps, a surge each at its own time."""
    t = np.arange(days * 288)
    out = []
    for s in range(count):
        x = 50 + 20 * np.sin(2 * np.pi * t / 288 + s) + rng.normal(0, 1 + s % 3, len(t))
        if s % 4 == 0:
            x = np.round(x)
        x[rng.random(len(t)) < 0.01] = np.nan
        x[len(t) - 200 + 7 * s: len(t) - 180 + 7 * s] += 30
        out.append(x)
    return out


def test_a_stack_moves_each_series_as_its_own_state_would() -> None:
    rng = np.random.default_rng(3)
    days, cut = 10, 9 * 288
    index = pd.date_range("2026-11-02", periods=days * 288, freq="5min", tz="UTC")
    data = series_set(10, days, rng)
    states = []
    for n, x in enumerate(data):
        start = 8 * 288 + 250 if n == 9 else 0  # the last series is young: its windows still fill
        detector = StreamingUnivariateDetector()
        detector.fit_predict_stream(x[start:cut], index[start:cut])
        states.append(detector.stream_state())
    alone = [s.copy() for s in states]
    stack = StreamStack.of([s.copy() for s in states])
    seconds = (index.asi8 // 10**9).astype(float)
    fired = 0
    for r in range(cut, len(index)):
        values = np.array([x[r] for x in data])
        rows = [state.update(float(v), seconds[r]) for state, v in zip(alone, values, strict=True)]
        surprise, residual = stack.update(np.arange(len(data)), values, seconds[r])
        np.testing.assert_allclose(surprise, [row.surprise for row in rows], rtol=0, atol=1e-9)
        np.testing.assert_allclose(residual, [row.residual for row in rows], rtol=0, atol=1e-9)
        fired += int((surprise > 2).sum())
    assert fired > 0  # the surges were seen: the comparison covers large surprises too
    for n, state in enumerate(alone):
        mine = stack.state(n).to_dict()
        for name, value in state.to_dict()["scalars"].items():
            assert mine["scalars"][name] == pytest.approx(value, nan_ok=True), name


def test_a_trial_answers_what_an_update_would_and_moves_nothing() -> None:
    rng = np.random.default_rng(4)
    days = 9
    index = pd.date_range("2026-11-02", periods=days * 288, freq="5min", tz="UTC")
    states = []
    for x in series_set(6, days, rng):
        detector = StreamingUnivariateDetector()
        detector.fit_predict_stream(x, index)
        states.append(detector.stream_state())
    stack = StreamStack.of(states)
    rows = np.array([4, 0, 2, 5])
    start = float(index[-1].timestamp()) + 300

    def updated(values: np.ndarray, at: float) -> tuple[np.ndarray, np.ndarray]:
        mark = stack.mark(rows)
        try:
            return stack.update(rows, values, at)
        finally:
            stack.restore(mark)

    before = {name: ring.copy() for name, ring in stack.arrays.items()}
    for values in (np.array([55.0, 48.0, np.nan, 51.0]), np.array([250.0, 49.0, 52.0, -80.0])):
        surprise, residual, done = stack.trial(rows, values, start)
        want_surprise, want_residual = updated(values, start)
        assert done.tolist() == (~np.isnan(values)).tolist(), "mature series with a value are answered"
        np.testing.assert_array_equal(surprise[done], want_surprise[done])
        np.testing.assert_array_equal(residual[done], want_residual[done])
    assert surprise[0] > 2 and surprise[3] > 2, "the far values are surprising"
    for name, ring in stack.arrays.items():
        np.testing.assert_array_equal(ring, before[name], err_msg=name)
    # the state moves: a trial of a bucket asked before answers for the moved state
    later = start + 300
    values = np.array([250.0, 49.0, 52.0, -80.0])
    first, _, _ = stack.trial(rows, values, later)
    stack.update(rows, values, start)
    surprise, _, done = stack.trial(rows, values, later)
    np.testing.assert_array_equal(surprise[done], updated(values, later)[0][done])
    assert surprise[0] < first[0], "after one surge the second is less surprising"


def test_a_stack_refuses_states_of_other_settings() -> None:
    index = pd.date_range("2026-11-02", periods=3000, freq="5min", tz="UTC")
    x = np.sin(np.arange(3000) / 50.0)
    five = StreamingUnivariateDetector()
    five.fit_predict_stream(x, index)
    hourly = StreamingUnivariateDetector(history="20D")
    hourly.fit_predict_stream(x, index)
    with pytest.raises(ValueError, match="different settings"):
        StreamStack.of([five.stream_state(), hourly.stream_state()])


@pytest.fixture(scope="module")
def fitted() -> list[ServiceDetector]:
    pasts = [history(END, 14, ServiceShape(), np.random.default_rng(i)) for i in range(3)]
    return [ServiceDetector().fit(past) for past in pasts]


def test_members_scored_together_give_each_members_own_scores(fitted) -> None:
    day = history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(9))
    day.iloc[300:, day.columns.get_loc("response_time")] *= 1.6  # a slow dependency from 05:00
    frames = [day * (1 + 0.03 * i) for i in range(3)]
    frames[1].iloc[200:260, frames[1].columns.get_loc("cpu_utilization")] += 30
    metrics = list(fitted[0].metrics_)
    alone = [decode(encode(d)).members_["streaming"] for d in fitted]  # independent live streams
    together = np.empty(3, dtype=object)
    together[:] = [decode(encode(d)).members_["streaming"] for d in fitted]
    for start in range(240, 340):  # the watcher's ticks: 16-minute windows a minute apart
        window = [f.iloc[start:start + 16].copy() for f in frames]
        if start % 7 == 0:  # a minute CloudWatch publishes late, for one service
            window[2].iloc[-1, 0] = np.nan
        chosen = [2, 0] if start % 11 == 0 else [0, 1, 2]  # some ticks score only some services
        own = np.stack([alone[s].score(window[s]).to_numpy() for s in chosen])
        values = np.stack([window[s].to_numpy() for s in chosen])
        got = score_together(together[chosen], metrics, values, window[0].index)
        np.testing.assert_allclose(got, own, rtol=0, atol=1e-9, equal_nan=True, err_msg=str(start))
    assert np.nanmax(got) > 0
    # a what-if window from before the live streams' present is judged aside, for both paths
    past = [f.iloc[100:116] for f in frames]
    own = np.stack([m.score(w).to_numpy() for m, w in zip(alone, past, strict=True)])
    got = score_together(together, metrics, np.stack([w.to_numpy() for w in past]), past[0].index)
    np.testing.assert_allclose(got, own, rtol=0, atol=1e-9, equal_nan=True)
    assert np.isfinite(got).any()
    again = score_together(together, metrics, np.stack([w.to_numpy() for w in past]), past[0].index)
    np.testing.assert_array_equal(again, got)  # judged on trial updates, put back: nothing moved
    # and the one-service path reads the stacked stream: the next window, scored by a member alone
    nxt = frames[0].iloc[340:356]
    np.testing.assert_allclose(together[0].score(nxt).to_numpy(), alone[0].score(nxt).to_numpy(),
                               rtol=0, atol=1e-9, equal_nan=True)


def test_threads_scoring_live_and_what_if_windows_at_once_get_the_serial_scores(fitted) -> None:
    """The API scores in a thread pool while the watcher ticks: what-if windows (trial updates put
    back) and the live stream's windows interleaved across threads give what one thread gives."""
    from concurrent.futures import ThreadPoolExecutor

    day = history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(5))
    day.iloc[200:, day.columns.get_loc("response_time")] *= 1.6  # within the live windows
    metrics = list(fitted[0].metrics_)
    past = day.iloc[100:116]

    def members() -> np.ndarray:
        out = np.empty(3, dtype=object)
        out[:] = [decode(encode(d)).members_["streaming"] for d in fitted]
        return out

    def what_if(group: np.ndarray) -> np.ndarray:
        return score_together(group, metrics, np.stack([past.to_numpy()] * 3), past.index)

    def tick(group: np.ndarray, window: pd.DataFrame) -> np.ndarray:
        return score_together(group, metrics, np.stack([window.to_numpy()] * 3), window.index)

    def primed() -> np.ndarray:  # the live streams have passed the what-if window
        group = members()
        tick(group, day.iloc[120:136])
        return group

    live = [day.iloc[s:s + 16] for s in range(121, 240)]
    serial_group = primed()
    expected_live = [tick(serial_group, w) for w in live]
    expected_what_if = what_if(primed())
    group = primed()
    with ThreadPoolExecutor(4) as pool:
        asides = [pool.submit(what_if, group) for _ in range(60)]
        for window, expected in zip(live, expected_live, strict=True):
            np.testing.assert_array_equal(tick(group, window), expected)
        for aside in asides:
            np.testing.assert_array_equal(aside.result(), expected_what_if)
    assert np.nanmax(expected_live[-1]) > 0 and np.isfinite(expected_what_if).any()


def test_the_compiled_trial_judges_as_the_numpy_judge_does_at_the_edges() -> None:
    """``_judge_trials`` (one compiled loop, a binary search of the sorted rings) against
    ``_judge`` (numpy, counting the rings), value for value: a flat series (a range of width
    0), values on the range's ends, far outside it (the excess capped), below zero, and
    quantised values that tie with the channels' rings."""
    rng = np.random.default_rng(8)
    days = 9
    index = pd.date_range("2026-11-02", periods=days * 288, freq="5min", tz="UTC")
    flat = np.full(days * 288, 7.0)
    states = []
    for x in [*series_set(4, days, rng), flat]:
        detector = StreamingUnivariateDetector()
        detector.fit_predict_stream(x, index)
        states.append(detector.stream_state())
    stack = StreamStack.of(states)
    rows = np.arange(len(states))
    start = float(index[-1].timestamp()) + 300
    e = stack._expect(rows, np.full(len(rows), start))
    assert e.ok.all(), "every series is mature"
    stack._know_range(e.rows)
    ends = [stack.high[rows], stack.low[rows]]
    for values in (*ends, np.full(len(rows), 7.0), np.full(len(rows), 1e9), np.full(len(rows), -3.0),
                   np.round(stack.high[rows]) + 1, rng.normal(50, 25, len(rows))):
        want = stack._judge(e, values)
        surprise, residual = stack._judge_trials(e, values)
        np.testing.assert_array_equal(residual, want.residual)
        np.testing.assert_allclose(surprise, want.surprise, rtol=1e-14, atol=0)
    far = stack._judge_trials(e, np.full(len(rows), 1e9))[0]
    assert (far > 2).all(), "a value far outside every range is surprising"
