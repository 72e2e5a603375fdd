"""Training data from files and sources: gaps, missing metrics, cold starts, the held-back tail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rca.payload import PayloadError
from training.datasets import (
    DatasetError,
    FrameSource,
    PerMetricSource,
    build_dataset,
    read_history_file,
    select_service,
    split_tail,
)
from training.metric_files import MetricFileError


def frame(days: float = 3, start: str = "2026-11-02") -> pd.DataFrame:
    index = pd.date_range(start, periods=int(days * 1440), freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1, len(index)),
                         "error_count": rng.poisson(0.3, len(index)).astype(float)}, index=index)


def test_gaps_become_explicit_and_are_reported() -> None:
    history = frame().drop(frame().index[100:400])
    dataset = build_dataset(history, freq=pd.Timedelta("1min"))
    assert len(dataset.frame) == 3 * 1440, "a regular grid from the first to the last point"
    assert dataset.frame["cpu_utilization"].isna().sum() == 300
    assert any("cpu_utilization 6.9% missing" in note for note in dataset.notes())


def test_missing_and_thin_metrics_are_dropped_with_the_reason() -> None:
    history = frame()
    history["memory_utilization"] = np.nan
    history.loc[history.index[1000:], "error_count"] = np.nan
    dataset = build_dataset(history, ["cpu_utilization", "memory_utilization", "error_count",
                                      "response_time"])
    assert dataset.metrics == ["cpu_utilization"]
    assert dataset.dropped["response_time"] == "no history (not in the source)"
    assert dataset.dropped["memory_utilization"] == "no history (every point missing)"
    assert dataset.dropped["error_count"].startswith("only 23% of the window observed")


def test_no_history_at_all_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="no metric history: nothing to learn from"):
        build_dataset(pd.DataFrame(), ["cpu_utilization"])
    with pytest.raises(DatasetError, match="usable rows; at least 60 needed"):
        build_dataset(frame().iloc[:10])


def test_the_newest_day_is_held_back() -> None:
    dataset = build_dataset(frame(days=3))
    split = split_tail(dataset, pd.Timedelta(days=1), pd.Timedelta(days=1))
    assert len(split.train) == 2 * 1440 and len(split.tail) == 1440
    assert split.train.index[-1] < split.tail.index[0]


def test_a_cold_start_keeps_everything_and_says_evaluation_is_skipped() -> None:
    dataset = build_dataset(frame(days=1.5))
    split = split_tail(dataset, pd.Timedelta(days=1), pd.Timedelta(days=1))
    assert split.tail is None and len(split.train) == 1.5 * 1440
    assert "too little to hold back" in split.note and "evaluation skipped" in split.note


def test_csv_and_parquet_files_with_several_services(tmp_path) -> None:
    one, two = frame(days=1), frame(days=1) + 10
    table = pd.concat([one.assign(service="api"), two.assign(service="web")]).rename_axis("timestamp")
    table.reset_index().to_csv(tmp_path / "h.csv", index=False)
    table.reset_index().to_parquet(tmp_path / "h.parquet")
    for name in ("h.csv", "h.parquet"):
        loaded = read_history_file(tmp_path / name)
        web = select_service(loaded, "any", "web")
        assert list(web.columns) == ["cpu_utilization", "error_count"]
        assert web["cpu_utilization"].mean() == pytest.approx(two["cpu_utilization"].mean())
        assert str(web.index.tz) == "UTC"
    with pytest.raises(DatasetError, match="no rows for any/db; services in it: api, web"):
        select_service(read_history_file(tmp_path / "h.csv"), "any", "db")


def test_bad_files_are_named_with_the_line_to_fix(tmp_path) -> None:
    with pytest.raises(MetricFileError, match="no such file"):
        read_history_file(tmp_path / "none.csv")
    (tmp_path / "no_ts.csv").write_text("cpu\n1\n")
    with pytest.raises(MetricFileError, match="needs a header with a timestamp column; the columns are cpu"):
        read_history_file(tmp_path / "no_ts.csv")
    (tmp_path / "text.csv").write_text("timestamp,cpu\n2026-11-02T00:00Z,1\n2026-11-02T00:01Z,high\n")
    with pytest.raises(MetricFileError, match="text.csv: line 3: cpu 'high' is not a number"):
        read_history_file(tmp_path / "text.csv")
    (tmp_path / "bad_ts.csv").write_text("timestamp,cpu\nyesterday,1\n")
    with pytest.raises(MetricFileError, match="line 2: timestamp 'yesterday' is not a date/time"):
        read_history_file(tmp_path / "bad_ts.csv")
    (tmp_path / "header.csv").write_text("timestamp,cpu\n")
    with pytest.raises(MetricFileError, match="has a header but no data rows"):
        read_history_file(tmp_path / "header.csv")


def test_one_reader_for_every_command_that_takes_a_metric_file(tmp_path) -> None:
    """Training, the root-cause window and detect read the same file the same way: the same
    stamps, missing markers as NaN, and the same error for the same bad cell."""
    from service.diagnose import read_window_file
    from service.file_detection import UnusableInput, read_series

    (tmp_path / "m.csv").write_text("Timestamp , cpu_utilization\n2026-11-02 00:00,5\n"
                                    "2026-11-02T00:01:00Z,NA\n2026-11-02T00:02:00+00:00,7\n")
    history = read_history_file(tmp_path / "m.csv")
    window = read_window_file(tmp_path / "m.csv", "window")
    assert list(history.index) == list(window.index) == list(pd.date_range("2026-11-02", periods=3,
                                                                           freq="min", tz="UTC"))
    np.testing.assert_array_equal(history["cpu_utilization"], [5, np.nan, 7])
    np.testing.assert_array_equal(window["cpu_utilization"], [5, np.nan, 7])
    (tmp_path / "v.csv").write_text("timestamp,value\n2026-11-02 00:00,1\n2026-11-02 00:01,high\n")
    (tmp_path / "w.csv").write_text("timestamp,cpu_utilization\n2026-11-02 00:00,1\n2026-11-02 00:01,high\n")
    with pytest.raises(UnusableInput, match="^line 3: value 'high' is not a number$"):
        read_series(tmp_path / "v.csv")
    with pytest.raises(PayloadError, match="^window: line 3: cpu_utilization 'high' is not a number$"):
        read_window_file(tmp_path / "w.csv", "window")


def test_a_per_metric_source_reports_each_metric() -> None:
    history = frame(days=1)
    seen: list[str] = []
    source = PerMetricSource({m: FrameSource(history[[m]]) for m in history.columns})
    out = source.read(history.index[0], history.index[-1] + pd.Timedelta("1min"), on_metric=seen.append)
    assert seen == ["cpu_utilization", "error_count"]
    pd.testing.assert_frame_equal(out, history, check_names=False, check_freq=False)
