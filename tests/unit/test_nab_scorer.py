"""The NAB scorer: NAB's rules on hand-made series, and the peers' published figures reproduced."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.nab import (
    PEERS,
    PROFILES,
    NabCorpus,
    CrossValidation,
    NabError,
    cv_folds,
    load_corpus,
    load_peer_scores,
    read_series,
    score_corpus,
    Sweep,
)


def nab_root() -> Path:
    """The shared NAB corpus beside the checkout, or AIOPS_NAB_ROOT."""
    env = os.environ.get("AIOPS_NAB_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab"


needs_corpus = pytest.mark.skipif(
    not (nab_root() / "labels" / "combined_windows.json").is_file(),
    reason=f"NAB corpus not found at {nab_root()} (set AIOPS_NAB_ROOT to the folder)")

# Standard / Low FP / Low FN on the 28-file subset, threshold optimised on it (README of the corpus).
PEER_FIGURES = {
    "numenta": (72.30, 69.12, 75.98),
    "contextOSE": (71.61, 67.25, 75.52),
    "ARTime": (69.81, 59.97, 75.24),
    "randomCutForest": (53.71, 44.87, 60.09),
    "windowedGaussian": (26.52, 2.24, 37.12),
}


@pytest.fixture(scope="module")
def corpus() -> NabCorpus:
    return load_corpus(nab_root())


@needs_corpus
@pytest.mark.parametrize("detector", PEERS)
def test_scorer_reproduces_each_peers_published_figures(corpus: NabCorpus, detector: str) -> None:
    results = score_corpus(corpus, load_peer_scores(corpus, detector))
    got = tuple(results[p].score for p in PROFILES)
    assert got == pytest.approx(PEER_FIGURES[detector], abs=0.01)


@needs_corpus
def test_corpus_loads_28_files_with_36_windows_and_their_data(corpus: NabCorpus) -> None:
    assert len(corpus.files) == 28 and corpus.window_count == 36
    assert "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv" in corpus.files
    series = read_series(corpus, "artificialWithAnomaly/art_daily_jumpsup.csv")
    assert list(series.columns) == ["timestamp", "value"]
    assert len(series) == len(corpus.timestamps["artificialWithAnomaly/art_daily_jumpsup.csv"])
    start, end = corpus.windows["artificialWithAnomaly/art_daily_jumpsup.csv"][0]
    assert start in set(series["timestamp"]) and end in set(series["timestamp"])


# ---- NAB's rules on a hand-made corpus -------------------------------------------------------

ROWS = 200  # probation: the first 30 rows


def corpus_of(**windows: tuple[int, int] | None) -> NabCorpus:
    """One file per keyword, ROWS five-minute rows each, with at most one window (row bounds)."""
    index = pd.date_range("2024-01-01", periods=ROWS, freq="5min")
    files = tuple(f"folder/{name}.csv" for name in windows)
    return NabCorpus(
        root=None, files=files, timestamps={f: index for f in files},
        windows={f: ([] if w is None else [(index[w[0]], index[w[1]])])
                 for f, w in zip(files, windows.values(), strict=True)})


def scores_at(corpus: NabCorpus, **hits: list[int]) -> dict[str, pd.DataFrame]:
    """Score 1.0 at the given rows of each file, 0 elsewhere."""
    out = {}
    for f in corpus.files:
        values = np.zeros(ROWS)
        values[hits.get(Path(f).stem, [])] = 1.0
        out[f] = pd.DataFrame({"timestamp": corpus.timestamps[f], "anomaly_score": values})
    return out


def raw(corpus: NabCorpus, scores, profile: str = "standard", threshold: float | None = None) -> float:
    fixed = None if threshold is None else {profile: threshold}
    return score_corpus(corpus, scores, profiles=(profile,), thresholds=fixed)[profile].raw_score


def test_an_early_detection_in_a_window_scores_more_than_a_late_one() -> None:
    corpus = corpus_of(a=(100, 119))
    at_left_edge = raw(corpus, scores_at(corpus, a=[100]))
    halfway = raw(corpus, scores_at(corpus, a=[110]))
    at_right_edge = raw(corpus, scores_at(corpus, a=[119]))
    assert at_left_edge == pytest.approx(1.0)  # the full tpWeight
    assert at_left_edge > halfway > at_right_edge > 0


def test_a_detection_outside_windows_costs_the_fp_weight() -> None:
    corpus = corpus_of(a=None, b=(100, 119))
    assert raw(corpus, scores_at(corpus, a=[60]), threshold=0.5) == pytest.approx(-1.0 - 0.11)
    assert raw(corpus, scores_at(corpus, a=[60]), "reward_low_FP_rate", 0.5) == pytest.approx(-1.0 - 0.22)
    # Before the first window of a file: the full weight; just after a window: less.
    assert raw(corpus, scores_at(corpus, b=[60]), threshold=0.5) == pytest.approx(-1.0 - 0.11)
    just_after = raw(corpus, scores_at(corpus, b=[121]), threshold=0.5)
    far_after = raw(corpus, scores_at(corpus, b=[199]), threshold=0.5)
    assert -1.0 - 0.11 < just_after < -1.0
    assert far_after == pytest.approx(-1.0 - 0.11)  # more than 3 window widths past it


def test_only_the_first_detection_in_a_window_counts() -> None:
    corpus = corpus_of(a=(100, 119))
    once = raw(corpus, scores_at(corpus, a=[104]))
    many = raw(corpus, scores_at(corpus, a=[104, 108, 112, 119]))
    assert many == pytest.approx(once)


def test_a_missed_window_costs_the_fn_weight() -> None:
    corpus = corpus_of(a=(100, 119))
    assert raw(corpus, scores_at(corpus), "standard") == pytest.approx(-1.0)
    assert raw(corpus, scores_at(corpus), "reward_low_FN_rate") == pytest.approx(-2.0)


def test_the_probationary_period_is_not_scored() -> None:
    corpus = corpus_of(a=(100, 119))
    quiet = raw(corpus, scores_at(corpus, a=[100]), threshold=0.5)
    assert raw(corpus, scores_at(corpus, a=[0, 10, 29, 100]), threshold=0.5) == pytest.approx(quiet)
    assert raw(corpus, scores_at(corpus, a=[30, 100]), threshold=0.5) == pytest.approx(quiet - 0.11)
    early_window = corpus_of(a=(5, 20))  # entirely inside the probationary period
    result = score_corpus(early_window, scores_at(early_window), profiles=("standard",))["standard"]
    assert result.windows_scored == 0 and result.raw_score == 0.0


def test_null_detector_normalises_to_0_and_perfect_detector_to_100() -> None:
    corpus = corpus_of(a=(100, 119), b=(60, 79), c=None)
    null = {f: frame.assign(anomaly_score=0.5) for f, frame in scores_at(corpus).items()}
    perfect = scores_at(corpus, a=[100], b=[60])
    for profile in PROFILES:
        assert score_corpus(corpus, null)[profile].score == pytest.approx(0.0)
        result = score_corpus(corpus, perfect)[profile]
        assert result.score == pytest.approx(100.0)
        assert (result.threshold, result.windows_detected, result.fp) == (1.0, 2, 0)


def test_the_threshold_is_chosen_over_the_whole_corpus() -> None:
    """A mid score that catches a window in one file but false-alarms in two others is not worth it."""
    corpus = corpus_of(a=(100, 119), b=None, c=None)
    scores = scores_at(corpus, a=[100])
    for f, hits in (("folder/b.csv", [50, 60, 70, 80, 90, 100, 110, 120, 130, 140]),
                    ("folder/c.csv", [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])):
        scores[f].loc[hits, "anomaly_score"] = 0.9
    best = score_corpus(corpus, scores, profiles=("standard",))["standard"]
    assert best.threshold == 1.0 and best.fp == 0 and best.score == pytest.approx(100.0)
    lower = score_corpus(corpus, scores, profiles=("standard",), thresholds={"standard": 0.9})["standard"]
    assert lower.fp == 20 and lower.raw_score == pytest.approx(1.0 - 20 * 0.11)


def test_bad_scores_get_a_clear_error_naming_the_file() -> None:
    corpus = corpus_of(a=(100, 119), b=None)
    good = scores_at(corpus)
    with pytest.raises(NabError, match="no scores for 1 corpus file"):
        score_corpus(corpus, {"folder/a.csv": good["folder/a.csv"]})
    with pytest.raises(NabError, match=r"folder/b.csv: 199 scores for 200 rows"):
        score_corpus(corpus, {**good, "folder/b.csv": good["folder/b.csv"].iloc[1:]})
    broken = good["folder/b.csv"].copy()
    broken.loc[7, "anomaly_score"] = np.nan
    with pytest.raises(NabError, match=r"folder/b.csv: anomaly_score must be a number in \[0, 1\]; row 7"):
        score_corpus(corpus, {**good, "folder/b.csv": broken})
    shifted = good["folder/b.csv"].assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta("1min"))
    with pytest.raises(NabError, match="row 0 has timestamp"):
        score_corpus(corpus, {**good, "folder/b.csv": shifted})


def test_a_folder_without_a_corpus_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(NabError, match="no NAB corpus at"):
        load_corpus(tmp_path)


# ---- cross-validation: thresholds chosen without the files scored --------------------------------


def test_a_detector_that_needs_no_tuning_keeps_its_score_under_cross_validation() -> None:
    corpus = corpus_of(a=(100, 119), b=(60, 79), c=(140, 159), d=None)
    perfect = scores_at(corpus, a=[100], b=[60], c=[140])
    assert CrossValidation(corpus, perfect).leave_one_file_out() == pytest.approx(dict.fromkeys(PROFILES, 100.0))
    folds = CrossValidation(corpus, perfect).folds([["folder/a.csv", "folder/d.csv"], ["folder/b.csv"]])
    assert [r.score for r in folds["standard"]] == pytest.approx([100.0, 100.0])


def test_a_window_only_the_whole_corpus_threshold_catches_is_missed_when_its_file_is_held_out() -> None:
    corpus = corpus_of(a=(100, 119), b=(60, 79), c=(140, 159), d=None)
    scores = scores_at(corpus, b=[60], c=[140])
    scores["folder/a.csv"].loc[100, "anomaly_score"] = 0.6  # caught only at threshold 0.6 ...
    scores["folder/d.csv"].loc[[50, 90], "anomaly_score"] = 0.7  # ... which costs two false alarms
    fitted = score_corpus(corpus, scores, profiles=("standard",))["standard"]
    assert fitted.threshold == 0.6 and fitted.windows_detected == 3
    # held out, a is scored at the threshold b, c and d call for (1.0): its window is missed;
    # held out, d is scored at the threshold a, b and c call for (0.6): its two false alarms count
    cv = CrossValidation(corpus, scores, profiles=("standard",))
    lofo = cv.leave_one_file_out()["standard"]
    missed_a = score_corpus(corpus, scores, profiles=("standard",), thresholds={"standard": 1.0})["standard"]
    two_false_alarms = 100 * 2 * 0.11 / (missed_a.perfect_score - missed_a.null_score)
    assert lofo == pytest.approx(missed_a.score - two_false_alarms) and lofo < fitted.score
    held_out_a = cv.folds([["folder/a.csv"]])["standard"][0]
    assert held_out_a.threshold == 1.0 and held_out_a.raw_score == pytest.approx(-1.0)  # missed


def test_folds_hold_windows_and_cover_every_file_once_per_repeat() -> None:
    corpus = corpus_of(a=(100, 119), b=(60, 79), c=(140, 159), d=None, e=None)
    folds = cv_folds(corpus, k=3, repeats=2, seed=1)
    assert len(folds) == 6
    for repeat in (folds[:3], folds[3:]):
        assert sorted(f for fold in repeat for f in fold) == sorted(corpus.files)
    assert all(any(corpus.windows[f] for f in fold) for fold in folds)
    with pytest.raises(NabError, match="holds no labelled window"):
        CrossValidation(corpus, scores_at(corpus)).folds([["folder/d.csv"]])
    with pytest.raises(NabError, match="4 folds need at least 4 files with labelled windows"):
        cv_folds(corpus, k=4)


def test_a_held_out_file_is_scored_at_the_threshold_that_is_best_on_the_others_among_all() -> None:
    """The threshold is chosen among the few where some file gains (fast); it must be the one a
    sweep of every threshold on the other files alone picks (score_corpus on them)."""
    windows = {"a": (100, 119), "b": (60, 79), "c": (140, 159), "d": None}
    corpus = corpus_of(**windows)
    rng = np.random.default_rng(5)
    scores = {f: frame.assign(anomaly_score=np.round(rng.random(len(frame)) ** 8, 3))
              for f, frame in scores_at(corpus).items()}
    sweep = Sweep(corpus)
    cv = CrossValidation(corpus, scores, sweep=sweep)
    for held in "abc":
        others = corpus_of(**{k: w for k, w in windows.items() if k != held})
        best = score_corpus(others, {f: scores[f] for f in others.files})
        for profile in PROFILES:
            assert cv.folds([[f"folder/{held}.csv"]])[profile][0].threshold == best[profile].threshold
    assert score_corpus(corpus, scores, sweep=sweep) == score_corpus(corpus, scores)
