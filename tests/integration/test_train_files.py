"""``aiops train`` from history files for several services (a watch config names them), and
``aiops models`` to list, compare and promote by hand, on the local store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from models.bundle import load_bundle
from models.signing import Trust, local_key
from simulation.physics import ServiceShape, history

pytestmark = pytest.mark.integration
END = pd.Timestamp("2026-11-20", tz="UTC")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three days of two services in one CSV (and Parquet), and a watch config naming both."""
    root = tmp_path_factory.mktemp("files")
    frames = [history(END, 3, ServiceShape(peak_rpm=rpm), np.random.default_rng(i))
              .assign(cluster="prod", service=name)
              for i, (name, rpm) in enumerate([("api", 3000.0), ("web", 9000.0)])]
    table = pd.concat(frames).rename_axis("timestamp").reset_index()
    table.to_csv(root / "history.csv", index=False)
    table.to_parquet(root / "history.parquet")
    (root / "watch.toml").write_text('[[services]]\ncluster = "prod"\nservice = "api"\n\n'
                                     '[[services]]\ncluster = "prod"\nservice = "web"\n')
    return root


def run(root, *args: str):
    return CliRunner().invoke(cli, ["--data-dir", str(root / "data"), *args], catch_exceptions=False)


def test_every_service_of_a_watch_config_is_trained_from_a_file(files, tmp_path) -> None:
    done = run(tmp_path, "train", "--config", str(files / "watch.toml"), "--from-parquet",
               str(files / "history.parquet"), "--days", "2", "--detector", "robust_z", "--no-tracking",
               "--json")
    assert done.exit_code == 0, done.output
    results = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(results) == {"prod--api", "prod--web"}
    assert all(r["status"] == "champion" and r["evaluation"]["events"] == 8 for r in results.values())
    trust = Trust(local_key(tmp_path / "data", create=False), "tests")
    api, web = (load_bundle(tmp_path / "data" / "models" / n, trust=trust)
                for n in ("prod--api", "prod--web"))
    assert web.model.expected_frame(pd.DatetimeIndex([END]), ["request_count"]).iloc[0, 0] > \
        2 * api.model.expected_frame(pd.DatetimeIndex([END]), ["request_count"]).iloc[0, 0], \
        "each service learnt its own traffic"


def test_models_list_compare_and_promote_by_hand(files, tmp_path) -> None:
    common = ["--cluster", "prod", "--service", "api", "--from-csv", str(files / "history.csv"),
              "--days", "2", "--detector", "robust_z", "--no-tracking"]
    assert run(tmp_path, "train", *common).exit_code == 0
    worse = run(tmp_path, "train", *common, "--threshold", "40")
    assert worse.exit_code == 0 and "challenger" in worse.stdout and "below the champion's" in worse.stdout
    compared = run(tmp_path, "models", "compare", "--cluster", "prod", "--service", "api")
    assert "champion v1" in compared.stdout and "challenger v2" in compared.stdout
    assert "the same evaluation" in compared.stdout
    listed = run(tmp_path, "models", "list", "--json")
    assert [(v["version"], v["aliases"]) for v in json.loads(listed.stdout)] == [
        (1, ["champion"]), (2, ["challenger"])]
    promoted = run(tmp_path, "models", "promote", "--cluster", "prod", "--service", "api", "2")
    assert promoted.exit_code == 0, promoted.output
    trust = Trust(local_key(tmp_path / "data", create=False), "tests")
    assert load_bundle(tmp_path / "data" / "models" / "prod--api", trust=trust).model.threshold == 40
    missing = run(tmp_path, "models", "promote", "--cluster", "prod", "--service", "api", "9")
    assert missing.exit_code == 1 and "has no version 9" in missing.output


def test_bad_input_is_one_line(files, tmp_path) -> None:
    several = run(tmp_path, "train", "--service", "api", "--service", "web", "--no-tracking")
    assert several.exit_code == 2 and "several --service values need --config" in several.output
    unknown = run(tmp_path, "train", "--cluster", "prod", "--service", "db", "--from-csv",
                  str(files / "history.csv"), "--no-tracking")
    assert unknown.exit_code == 1
    assert unknown.output.startswith("aiops: error: ") and unknown.output.count("\n") == 1
    assert "history.csv has no rows for prod/db; services in it: api, web" in unknown.output
    too_short = run(tmp_path, "train", "--cluster", "prod", "--service", "api", "--from-csv",
                    str(files / "history.csv"), "--end", "2026-11-17T00:30:00Z", "--no-tracking")
    assert too_short.exit_code == 1
    assert "prod/api: history unusable: metric frame has 30 usable rows; at least 60 needed" \
        in too_short.output
