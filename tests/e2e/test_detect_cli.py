"""``aiops detect`` as a user runs it: a file, a folder mirrored, and input it cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.e2e


def aiops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def write_metric(path: Path, n: int = 1500, spike_at: int | None = 1200, seed: int = 0) -> Path:
    values = 40 + np.random.default_rng(seed).normal(0, 1, n)
    if spike_at is not None:
        values[spike_at] = 95.0
    stamps = pd.date_range("2024-05-01", periods=n, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"timestamp": stamps, "value": np.round(values, 3)}).to_csv(path, index=False)
    return path


def test_a_file_gets_a_score_and_a_decision_per_row(tmp_path: Path) -> None:
    source = write_metric(tmp_path / "cpu.csv")
    done = aiops("detect", str(source), "-o", str(tmp_path / "scored.csv"))
    assert done.returncode == 0, done.stderr
    assert "Wrote 1 file(s), 1500 rows, 1 anomalies" in done.stdout
    scored = pd.read_csv(tmp_path / "scored.csv")
    original = pd.read_csv(source)
    assert list(scored.columns) == ["timestamp", "value", "anomaly_score", "anomaly"]
    pd.testing.assert_frame_equal(scored[["timestamp", "value"]], original)
    assert scored["anomaly_score"].between(0, 1).all()
    assert scored.index[scored["anomaly"] == 1].tolist() == [1200]


def test_a_folder_is_mirrored_with_progress_on_stderr(tmp_path: Path) -> None:
    inputs = tmp_path / "metrics"
    write_metric(inputs / "a.csv", seed=1)
    write_metric(inputs / "svc" / "b.csv", spike_at=None, seed=2)
    (inputs / "notes.txt").write_text("not a metric")
    done = aiops("detect", str(inputs), "-o", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.csv"))
    assert written == ["a.csv", "svc/b.csv"]
    assert "[1/2] a.csv: 1500 rows, 1 anomalies" in done.stderr
    assert "[2/2] svc/b.csv: 1500 rows" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["files"] == 2 and summary["rows"] == 3000 and summary["unusable"] == []


def test_an_unusable_file_is_named_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-05-01 00:00:00,1.5\n2024-05-01 00:05:00,high\n")
    done = aiops("detect", str(bad), "-o", str(tmp_path / "out.csv"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"aiops: error: {bad}: line 3: value 'high' is not a number"]
    assert not (tmp_path / "out.csv").exists()


def test_in_a_folder_each_unusable_file_is_named_and_the_usable_ones_still_written(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    rows = "\n".join(f"2024-05-01 {h:02d}:{m:02d}:00,7" for h in range(24) for m in range(0, 60, 5))
    files = {
        "empty.csv": ("", "the file is empty"),
        "no_header.csv": ("1,2\n3,4\n", "needs a header with timestamp and value columns"),
        "header_only.csv": ("timestamp,value\n", "has a header but no data rows"),
        "one_row.csv": ("timestamp,value\n2024-05-01,1\n", "has a single data row"),
        "text.csv": ("timestamp,value\n2024-05-01 00:00,1\n2024-05-01 00:05,abc\n",
                     "line 3: value 'abc' is not a number"),
        "infinite.csv": ("timestamp,value\n2024-05-01 00:00,1\n2024-05-01 00:05,inf\n",
                         "line 3: value 'inf' is infinite"),
        "bad_time.csv": ("timestamp,value\nyesterday,1\n2024-05-01 00:05,2\n",
                         "line 2: timestamp 'yesterday' is not a date/time"),
        "all_missing.csv": ("timestamp,value\n2024-05-01 00:00,\n2024-05-01 00:05,nan\n",
                            "has no values, only missing ones"),
    }
    for name, (text, _) in files.items():
        (inputs / name).write_text(text)
    (inputs / "constant.csv").write_text("timestamp,value\n" + rows + "\n")
    write_metric(inputs / "holes.csv")
    holes = pd.read_csv(inputs / "holes.csv")
    holes.loc[[300, 301], "value"] = np.nan
    holes.to_csv(inputs / "holes.csv", index=False)

    done = aiops("detect", str(inputs), "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    for name, (_, reason) in files.items():
        assert f"{name}: unusable, {reason}" in done.stderr, name
    assert "constant.csv: constant series (every value is 7): every score is 0" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("aiops: error: 8 of 10 file(s) unusable")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["constant.csv", "holes.csv"]
    constant = pd.read_csv(tmp_path / "out" / "constant.csv")
    assert (constant["anomaly_score"] == 0).all() and len(constant) == 288
    scored = pd.read_csv(tmp_path / "out" / "holes.csv")
    assert scored.loc[[300, 301], "anomaly_score"].tolist() == [0.0, 0.0]
    assert scored.index[scored["anomaly"] == 1].tolist() == [1200]
