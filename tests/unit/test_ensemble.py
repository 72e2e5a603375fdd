"""ServiceDetector: the calibrated ensemble, held to RobustZDetector's contract and on faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.ensemble import EnsembleConfig, ServiceDetector
from detection.frames import MetricFrameError
from detection.zscore import RobustZDetector
from models.codec import decode, encode
from simulation.physics import ServiceShape, history

# Not checked with sklearn's parametrize_with_checks: it fits on metric DataFrames on a
# DatetimeIndex and scores per metric, an API sklearn's checks do not speak. Its calibrators
# (TailCalibrator) are checked in test_postprocess.py.

CPU, ERRORS, LATENCY, MEMORY = "cpu_utilization", "error_count", "response_time", "memory_utilization"
END = pd.Timestamp("2026-11-16", tz="UTC")


def weekly_history(days: int = 14, seed: int = 0) -> pd.DataFrame:
    """The same series test_detection.py holds RobustZDetector to."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-11-02", periods=days * 1440, freq="1min", tz="UTC")
    working = (index.hour >= 9) & (index.hour < 17)
    return pd.DataFrame({
        CPU: np.where(working, 60.0, 10.0) + rng.normal(0, 1, len(index)),
        LATENCY: 0.2 + rng.normal(0, 0.005, len(index)),
        ERRORS: rng.poisson(0.2, len(index)).astype(float),
    }, index=index)


@pytest.fixture(scope="module")
def detector() -> ServiceDetector:
    return ServiceDetector().fit(weekly_history())


@pytest.fixture(scope="module")
def service() -> ServiceDetector:
    return ServiceDetector().fit(history(END, 14, ServiceShape(), np.random.default_rng(0)))


def live(values: dict, start: str = "2026-11-16 10:00") -> pd.DataFrame:
    n = len(next(iter(values.values())))
    return pd.DataFrame(values, index=pd.date_range(start, periods=n, freq="1min", tz="UTC"))


# ------------------------------------------------------------------ the RobustZDetector contract
def test_it_offers_what_the_watcher_and_training_use(detector) -> None:
    reference = RobustZDetector().fit(weekly_history())
    for name in ("fit", "score", "detect", "expected_frame", "within_baseline", "threshold",
                 "specs", "metrics_", "baseline_"):
        assert hasattr(detector, name) and hasattr(reference, name)
    assert detector.metrics_ == reference.metrics_
    assert detector.baseline_.resolution_ == "hour_of_week"
    assert 0 < detector.threshold < 1 and detector.skipped_ == {}
    index = pd.date_range("2026-11-16 08:00", periods=5, freq="1h", tz="UTC")
    pd.testing.assert_frame_equal(detector.expected_frame(index, [CPU, "disk_io"]),
                                  reference.expected_frame(index, [CPU, "disk_io"]))


def test_detector_flags_a_rise_with_its_expected_value_and_ignores_a_drop(detector) -> None:
    frame = live({CPU: [61.0, 95.0, 2.0], LATENCY: [0.2] * 3, ERRORS: [0.0] * 3})
    found = detector.detect(frame)
    assert [(a.metric, a.timestamp) for a in found] == [(CPU, frame.index[1])]
    anomaly = found[0]
    assert anomaly.render() == "CPU: 95% (expected 60%)"
    assert anomaly.lower < 60 < anomaly.upper < 95
    assert detector.threshold < anomaly.score <= 1
    assert {"zscore", "seasonal"} <= set(anomaly.to_dict()["members"])


def test_errors_need_more_than_a_stray_one(detector) -> None:
    assert [a.value for a in detector.detect(live({ERRORS: [2.0, 12.0]}))] == [12.0]


def test_within_baseline_reads_the_median_not_one_noisy_minute(detector) -> None:
    one_spike = live({CPU: [60.0, 99.0, 61.0]})
    still_high = live({CPU: [90.0, 99.0, 61.0]})
    assert detector.within_baseline(one_spike, [CPU]) == {CPU: True}
    assert detector.within_baseline(still_high, [CPU]) == {CPU: False}


def test_scores_are_per_metric_in_0_1_and_missing_points_stay_missing(detector) -> None:
    frame = live({CPU: [60.0, np.nan, 61.0], ERRORS: [0.0, 1.0, np.nan]})
    scores = detector.score(frame)
    assert list(scores.columns) == [CPU, ERRORS]
    assert scores.isna().to_numpy().tolist() == [[False, False], [True, False], [False, True]]
    assert scores.stack().dropna().between(0, 1).all()


def test_detector_names_what_is_wrong_with_its_input() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        ServiceDetector().score(weekly_history(days=1))
    small = ServiceDetector().fit(weekly_history(days=2))
    index = pd.date_range("2026-11-16", periods=2, freq="1min", tz="UTC")
    with pytest.raises(KeyError, match="disk_io"):
        small.score(pd.DataFrame({"disk_io": [1.0, 2.0]}, index=index))
    with pytest.raises(MetricFrameError, match="finite"):
        small.score(pd.DataFrame({CPU: [1.0, np.inf]}, index=index))
    with pytest.raises(MetricFrameError, match="DatetimeIndex"):
        small.score(pd.DataFrame({CPU: [1.0, 2.0]}))
    with pytest.raises(ValueError, match="threshold"):
        ServiceDetector(threshold=4.0).fit(weekly_history(days=1))
    with pytest.raises(ValueError, match="unknown ensemble config key"):
        ServiceDetector({"treshold": 0.9}).fit(weekly_history(days=1))
    with pytest.raises(ValueError, match="combiner"):
        ServiceDetector({"combiner": "median"}).fit(weekly_history(days=1))
    with pytest.raises(ValueError, match="member"):
        ServiceDetector({"members": {"lstm": 1.0}}).fit(weekly_history(days=1))


def test_unsorted_and_duplicate_timestamps_score_like_the_clean_frame(detector) -> None:
    frame = live({CPU: [60.0, 95.0, 61.0, 62.0]})
    messy = pd.concat([frame.iloc[::-1], frame.iloc[[1]]])
    pd.testing.assert_frame_equal(detector.score(messy), detector.score(frame), check_freq=False)


def test_too_little_history_leaves_members_out_and_says_why() -> None:
    one_day = ServiceDetector().fit(weekly_history(days=1))
    assert "seasonal" in one_day.skipped_ and "two periods" in one_day.skipped_["seasonal"]
    assert "iforest" in one_day.members_
    hour = ServiceDetector().fit(weekly_history(days=1).iloc[:30])
    assert set(hour.skipped_) == {"seasonal", "iforest", "shift", "streaming"}
    assert [a.metric for a in hour.detect(live({CPU: [95.0]}, "2026-11-03 10:00"))] == [CPU]


def test_a_constant_history_is_usable() -> None:
    index = pd.date_range("2026-11-02", periods=3 * 1440, freq="1min", tz="UTC")
    flat = ServiceDetector().fit(pd.DataFrame({CPU: 20.0, LATENCY: 0.1}, index=index))
    found = flat.detect(live({CPU: [20.0, 20.3, 45.0], LATENCY: [0.1] * 3}, "2026-11-05 10:00"))
    assert [(a.metric, a.value) for a in found] == [(CPU, 45.0)]


# ------------------------------------------------------------------ faults on the simulated service
def next_day(seed: int = 1) -> pd.DataFrame:
    return history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(seed))


def test_a_normal_day_raises_no_alarm(service) -> None:
    assert service.alarms(next_day()) == []


@pytest.mark.parametrize(("fault", "metric"), [("spike", CPU), ("level_shift", LATENCY),
                                               ("slow_drift", MEMORY)])
def test_injected_faults_open_one_alarm_naming_the_metric(service, fault: str, metric: str) -> None:
    day = next_day()
    column = day.columns.get_loc(metric)
    if fault == "spike":
        day.iloc[600:604, column] += 12.0
    elif fault == "level_shift":
        day.iloc[600:660, column] += 0.05
    else:
        day.iloc[600:660, column] += np.linspace(0, 10, 60)   # a leak, +1 point every 6 min
    alarms = service.alarms(day)
    assert len(alarms) == 1
    alarm = alarms[0]
    assert metric in alarm.metrics
    assert day.index[600] <= alarm.opened_at <= day.index[600 + (30 if fault == "slow_drift" else 3)]
    anomaly = next(a for a in service.detect(day.loc[alarm.start:alarm.end]) if a.metric == metric)
    assert anomaly.value > anomaly.upper and anomaly.expected == pytest.approx(
        service.expected_frame(pd.DatetimeIndex([anomaly.timestamp]), [metric]).iloc[0, 0])


def test_the_ensemble_catches_a_slow_drift_before_the_plain_z_score(service) -> None:
    day = next_day()
    day.iloc[600:660, day.columns.get_loc(MEMORY)] += np.linspace(0, 10, 60)
    plain = RobustZDetector().fit(history(END, 14, ServiceShape(), np.random.default_rng(0)))
    first = service.score(day)[MEMORY].gt(service.threshold).iloc[600:].idxmax()
    first_plain = plain.score(day)[MEMORY].gt(plain.threshold).iloc[600:].idxmax()
    assert first < first_plain


# ------------------------------------------------------------------ configuration and persistence
def test_configuration_switches_members_and_post_processing(tmp_path) -> None:
    hist = weekly_history(days=3)
    only_z = ServiceDetector({"members": {"zscore": 1.0}, "grouping": None}).fit(hist)
    assert list(only_z.members_) == ["zscore"]
    frame = live({CPU: [95.0, 60.0, 96.0]}, "2026-11-05 10:00")
    assert len(only_z.alarms(frame)) == 2                     # no grouping: one per point
    mean = ServiceDetector({"combiner": "mean", "recalibrate": False,
                            "grouping": {"min_points": 2, "window": "3min", "cooldown": "10min"}}).fit(hist)
    assert len(mean.alarms(frame)) == 1
    config = EnsembleConfig.from_dict(mean.config_.to_dict())
    assert config == mean.config_
    path = tmp_path / "state.npz"
    path.write_bytes(encode(mean))   # what a bundle stores: data, never a pickle
    pd.testing.assert_frame_equal(decode(path.read_bytes()).score(frame), mean.score(frame))


# ------------------------------------------------------------------ one detection core
def fourteen_days() -> pd.DataFrame:
    return history(END, 14, ServiceShape(), np.random.default_rng(0))


@pytest.fixture(scope="module")
def streaming() -> ServiceDetector:
    """The default ensemble: its streaming member is on."""
    detector = ServiceDetector().fit(fourteen_days())
    assert "streaming" in detector.members_
    return detector


def test_the_nab_benchmark_replays_the_detector_the_ensemble_runs_per_metric(streaming) -> None:
    from detection.streaming import StreamingUnivariateDetector

    series = next_day()[CPU]
    stamps = pd.DatetimeIndex(series.index)
    values = series.to_numpy()
    univariate = ServiceDetector().fit_predict_stream(values, stamps)
    alone = StreamingUnivariateDetector().fit_predict_stream(values, stamps)
    np.testing.assert_array_equal(univariate, alone)
    # live, the member moves its state on from the end of training, one 5-minute bucket at a
    # time, and judges as the same detector replaying the whole history's buckets as one stream
    member = streaming.members_["streaming"].reset()
    day = next_day()
    day.iloc[60:, day.columns.get_loc(CPU)] += 15.0  # a rise: rows the member scores above 0
    ticks = [member.score(day.iloc[start:start + 16]) for start in range(0, 120)]
    newest = pd.concat([t.iloc[[-1]] for t in ticks])[CPU]
    assert newest.notna().all()  # every minute carries the judgement of the latest bucket closed
    both = pd.concat([fourteen_days()[CPU], day[CPU].iloc[:135]])
    means = both.groupby(both.index.floor("5min")).mean()
    replayed = StreamingUnivariateDetector()
    replayed.fit_predict_stream(means.to_numpy(), pd.DatetimeIndex(means.index))
    evidence = replayed.evidence_
    raw = member._raw(CPU, means.to_numpy(), evidence["residual"].to_numpy(), evidence["surprise"].to_numpy())
    five = pd.Timedelta("5min")
    carried = (newest.index + pd.Timedelta("1min")).floor("5min") - five  # closed at or before it
    centre = (means - evidence["residual"].to_numpy()).loc[carried].to_numpy()
    expected = pd.Series(raw, index=means.index).loc[carried].to_numpy()
    # a minute carries its bucket's score while it is itself off the bad way beyond CPU's floor
    outward = day[CPU].loc[newest.index].to_numpy() - centre > 0.5
    np.testing.assert_allclose(newest.to_numpy(), np.where(outward, expected, 0.0), rtol=0, atol=1e-9)
    rise = newest.index >= day.index[64]  # the bucket of minutes 60-64 closes at minute 64
    assert (newest[~rise] == 0).all() and (newest[rise] > 0).all()
    # each window overlaps the one before by 15 minutes: a row keeps the score it got, and the
    # rows that carry one bucket have its score or 0
    for before, after in zip(ticks, ticks[1:], strict=False):
        kept, again = before[CPU].iloc[1:], after[CPU].iloc[:-1]
        pd.testing.assert_series_equal(again[kept.notna()], kept[kept.notna()])
        bucket = (after.index + pd.Timedelta("1min")).floor("5min")
        for start in bucket.unique():
            assert after[CPU][bucket == start].dropna().pipe(lambda v: v[v > 0]).nunique() <= 1


def test_a_symptom_that_ended_is_not_carried_into_the_minutes_after_it(streaming) -> None:
    member = streaming.members_["streaming"].reset()
    day = next_day()
    day.iloc[60:80, day.columns.get_loc(CPU)] += 15.0  # twenty hot minutes, then normal again
    scores = member.score(day.iloc[:100])[CPU]
    assert (scores.iloc[64:80] > 0).all()  # from the close of the bucket 60-64, while it lasts
    assert (scores.iloc[80:84] == 0).all()  # they carry the hot bucket 75-79, but are normal


def test_minutes_a_little_above_normal_after_a_fixed_surge_do_not_carry_its_score(streaming,
                                                                                  monkeypatch) -> None:
    """The calendar sweep's Fri 07:00 false alarm: an overload fixed by hand two minutes into a
    bucket, then minutes 1-2 points above normal (beyond CPU's half-point floor). They carried
    the overload bucket's score and opened a second incident; a minute carries it only while it
    shows at least half the bucket's excess."""
    from detection.streaming import StreamingMember

    member = streaming.members_["streaming"]
    day = next_day()
    cpu = day.columns.get_loc(CPU)
    day.iloc[63:65, cpu] += 30.0  # the bucket of minutes 60-64: 12 points above on average
    day.iloc[65:70, cpu] += 1.5   # then a little above: no symptom of the surge
    assert member.reset().score(day.iloc[:75])[CPU].iloc[64] > 0  # the surge, as its bucket closes
    assert (member.reset().score(day.iloc[:75])[CPU].iloc[65:70] == 0).all()
    monkeypatch.setattr(StreamingMember, "CARRY_SHARE", 0.0)  # carried on any excess beyond the floor
    assert (member.reset().score(day.iloc[:75])[CPU].iloc[65:70] > 0).any()


def test_a_tick_moves_the_streaming_state_by_the_new_minutes_only(streaming, monkeypatch) -> None:
    from detection.streaming_state import StreamState

    member = streaming.members_["streaming"].reset()
    day = next_day()
    member.score(day.iloc[:16])  # judges the buckets of minutes 0-4, 5-9 and 10-14
    calls = []
    original = StreamState.update
    monkeypatch.setattr(StreamState, "update", lambda self, *a: calls.append(a) or original(self, *a))
    member.score(day.iloc[1:17])  # the next tick's read window: no bucket closes
    assert calls == []
    member.score(day.iloc[4:20])  # minute 19 closes 15-19: one row per metric, no replay of history
    assert len(calls) == len(day.columns)
    # a minute CloudWatch had not published yet keeps its bucket open; judged when it arrives
    late = day.iloc[9:25].copy()
    late.iloc[-1, 0] = np.nan
    assert np.isnan(member.score(late)[CPU].iloc[-1])
    calls.clear()
    judged = member.score(day.iloc[10:26])
    assert len(calls) == 1  # the CPU bucket 20-24, now whole
    assert judged[CPU].iloc[-7:-2].notna().all() and judged[CPU].iloc[-7:-2].nunique() == 1


def test_a_bundle_of_padded_streaming_states_scores_as_the_compact_one(streaming) -> None:
    """The member keeps (and a bundle stores) each state's arrays as far as rows were seen;
    bundles written before hold them NaN-padded to full length. Both load and score alike."""
    import copy

    from detection.streaming_state import StreamState

    compact = decode(encode(streaming))
    padded = copy.deepcopy(streaming)
    states = padded.members_["streaming"].states_
    for metric, data in states.items():
        states[metric] = StreamState.from_dict(data).to_dict()  # as states were stored before
        full, kept = states[metric]["arrays"]["x"], data["arrays"]["x"]
        assert full.shape[-1] > kept.shape[-1]  # 14 days of 5-minute means, 30 days of room
    old = decode(encode(padded))
    day = next_day()
    for window in (day.iloc[:300], day.iloc[280:600]):
        pd.testing.assert_frame_equal(old.score(window), compact.score(window))


def test_the_streaming_member_adds_evidence_and_delays_nothing_the_others_see(streaming) -> None:
    others = ServiceDetector({"members": {m: w for m, w in EnsembleConfig().members.items()
                                          if m != "streaming"}}).fit(fourteen_days())
    assert others.threshold_ == streaming.threshold_
    day = next_day()
    day.iloc[600:660, day.columns.get_loc(LATENCY)] += 0.03  # a small rise
    streaming.reset()
    with_member, without = streaming.score(day), others.score(day)
    assert (with_member.fillna(-1).to_numpy() >= without.fillna(-1).to_numpy()).all()
    members = streaming.member_scores(day.iloc[590:670])
    assert set(members) == set(streaming.members_)


def test_the_streaming_member_sees_a_sustained_rise_and_ignores_a_drop_or_a_wobble(streaming) -> None:
    day = next_day()
    member = streaming.members_["streaming"]
    assert streaming.reset().alarms(day) == []  # with it on, a normal day is still quiet
    up, down = day.copy(), day.copy()
    up.iloc[600:720, up.columns.get_loc(LATENCY)] += 0.05
    down.iloc[600:720, down.columns.get_loc(LATENCY)] -= 0.05
    risen = member.reset().score(up)[LATENCY].iloc[600:720]
    assert risen.max() > np.nanmax(member.training_scores_[LATENCY])  # rarer than any training minute
    assert member.reset().score(down)[LATENCY].iloc[600:720].max() == 0.0  # faster answers: no symptom
    members = {"zscore": 1.0, "streaming": 1.0}
    flat = ServiceDetector({"members": members}).fit(pd.DataFrame({CPU: 20.0}, index=pd.date_range(
        "2026-11-02", periods=8 * 1440, freq="1min", tz="UTC")))
    wobble = flat.members_["streaming"].score(
        live({CPU: [20.3] * 5 + [20.0] * 5 + [45.0] * 5}, "2026-11-10 10:00"))[CPU]
    assert wobble.iloc[4] == 0.0 and wobble.iloc[14] > 0   # under CPU's 0.5-point floor: nothing


def test_after_an_error_storm_the_member_does_not_lend_its_memory_to_base_rate_noise() -> None:
    """The calendar sweep's misdiagnoses: after an error storm the shift channel stays rare for
    over an hour, and a later bucket of ordinary noise (3-4 errors in five minutes) borrowed that
    surprise, so a slow dependency an hour later read as errors. A bucket's surprise counts only
    when the bucket itself is off by the detector's ``min_z`` spreads."""
    from detection.streaming import StreamingMember
    from simulation.physics import Conditions, normal_load, service_metrics

    start, shape = pd.Timestamp("2026-12-05T01:00:00Z"), ServiceShape()
    past = history(start, 14, shape, np.random.default_rng(11))
    index = pd.date_range(start, periods=300, freq="min")
    cond = Conditions(load=normal_load(index, shape), tasks=np.full(len(index), shape.nominal_tasks))
    nights = [service_metrics(index, cond, shape, np.random.default_rng(seed)) for seed in range(10)]
    for night in nights:
        night.iloc[160:172, night.columns.get_loc(ERRORS)] += 30  # the storm, 03:40-03:51

    def after_storm(**params) -> np.ndarray:  # from 04:20, 40 minutes after it began: noise only
        member = StreamingMember(**params).fit(past[[ERRORS]])
        scores = [member.reset().score(night[[ERRORS]])[ERRORS] for night in nights]
        assert all((s.iloc[165:172] > 0).all() for s in scores)  # the storm, from its first bucket's close
        return np.concatenate([s.iloc[200:].fillna(0).to_numpy() for s in scores])

    assert (after_storm() == 0).all()
    assert (after_storm(min_z=0.0) > 0).any()  # without the gate the storm's memory speaks
