"""Multivariate isolation forest over feature windows of one service's aligned metrics.

Each minute becomes one row of features, three per metric:

* ``value``: the metric itself (the forest learns which combinations are normal, e.g. CPU
  that goes with the request rate);
* ``z``: its deviation from the hour-of-week seasonal baseline, in baseline spreads;
* ``change``: the value minus the mean of the previous ``change_window`` (a short-window
  change, so a sudden jump stands out even where the level is still plausible).

Every feature uses the point and its past only, so a live score never depends on what comes
later. A missing point (or a metric absent from the frame) is taken as normal: its value is
the baseline's expectation, its z and change are 0; it can neither raise nor hide the others'
score. A row with no metric at all scores NaN.

The forest is scikit-learn's ``IsolationForest``; its ``score_samples`` (higher = more normal)
is negated once, here, so the detector's score is higher = more anomalous.

Attribution. The forest gives one score per minute. ``culprit`` names the metric whose ``z`` or
``change`` feature deviates most, either way, each measured in robust spreads of its own
training values (median, scaled MAD). When that metric's largest deviation is in its harmless
direction (CPU far below its baseline) no metric is named: the unusual minute is not a symptom,
and handing its score to the runner-up would blame a metric that did nothing. This is the rule the
ensemble uses to hand the forest's score to one metric.

Cost (measured for ``aiops benchmark training``, 14 days x 5 metrics): the forest is about half
of the ensemble's fit: 0.11-0.13 s to fit 100 trees, 0.07 s to score the 20,160 training
minutes. scikit-learn's fit cost is mostly per tree (each tree's 256 rows are drawn as sample
weights over all rows, plus estimator cloning), so fitting on fewer rows saves little (a
quarter for a tenth of them). Fewer trees would: 50 trees halve it, but the forest alone then
found 11% fewer simulated faults at full strength and a third fewer at a fifth of it
(averaged over three random states; replays of ``scripts/bench_detectors.py``'s faults on 4
services), so the default stays scikit-learn's 100. ``n_jobs`` stays 1: training already fits
one service per core, and threads inside a worker would only contend with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import IsolationForest

from detection.baseline import MAD_TO_SIGMA, SeasonalBaseline, fitted_baseline
from detection.frames import MetricFrameError, check_metric_frame
from detection.metrics import MetricSpec, spec_for
from detection.seasonal import mask_ranges
from detection.zscore import by_direction, deviation_z

MIN_ROWS = 60
ATTRIBUTING = ("z", "change")


def window_features(frame: pd.DataFrame, baseline: SeasonalBaseline, metrics: list[str],
                    change_window: str) -> pd.DataFrame:
    """Feature rows (``metric:value``, ``metric:z``, ``metric:change``) for ``frame``'s minutes.

    ``frame`` is a checked metric frame (sorted UTC index); metrics it lacks are imputed.
    """
    columns = {}
    for metric in metrics:
        exp = baseline.expected(metric, frame.index)
        values = frame[metric] if metric in frame.columns else pd.Series(np.nan, index=frame.index)
        past = values.rolling(change_window, closed="left", min_periods=1).mean()
        raw = values.to_numpy()
        missing = np.isnan(raw)
        columns[f"{metric}:value"] = np.where(missing, exp.centre, raw)
        columns[f"{metric}:z"] = np.where(missing, 0.0, deviation_z(raw, exp, tolerant=True))
        columns[f"{metric}:change"] = np.nan_to_num(raw - past.to_numpy(), nan=0.0)
    return pd.DataFrame(columns, index=frame.index)


class IsolationForestDetector:
    """An isolation forest on the service's feature windows; score higher = more anomalous.

    Parameters
    ----------
    n_estimators, max_samples, max_features, random_state, n_jobs : passed to scikit-learn's
        ``IsolationForest`` (a fixed ``random_state`` makes a retrain reproducible).
    change_window : the past the ``change`` feature compares each point with.
    contamination : the share of training minutes above the fitted threshold when
        ``threshold`` is None.
    threshold : a fixed raw-score threshold instead of the quantile.
    baseline : an unfitted SeasonalBaseline for the ``z`` features (a copy is fitted), or a
        fitted one wrapped in scikit-learn's ``FrozenEstimator``, used as it is (the ensemble
        shares its own this way, fitted once on the same history and exclusions).
    specs : metric specs (directions for attribution, floors for the baseline).
    """

    def __init__(self, n_estimators: int = 100, max_samples: int | str = "auto",
                 max_features: float = 1.0, change_window: str = "5min",
                 contamination: float = 0.001, threshold: float | None = None,
                 random_state: int | None = 0, n_jobs: int | None = None,
                 baseline: SeasonalBaseline | None = None,
                 specs: dict[str, MetricSpec] | None = None):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.change_window = change_window
        self.contamination = contamination
        self.threshold = threshold
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.baseline = baseline
        self.specs = specs

    def fit(self, history: pd.DataFrame, exclude: list[tuple] | None = None) -> "IsolationForestDetector":
        """Fit the baseline and the forest on ``history``; ``exclude`` ranges are left out."""
        if not 0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"threshold must be positive or None, got {self.threshold}")
        try:
            pd.Timedelta(self.change_window)
        except ValueError:
            raise ValueError(f"change_window must be a duration like '5min', "
                             f"got {self.change_window!r}") from None
        frame = check_metric_frame(history, min_rows=2)
        masked = mask_ranges(frame, exclude)
        usable = masked.notna().any(axis=1)
        if int(usable.sum()) < MIN_ROWS:
            raise MetricFrameError(f"the isolation forest needs at least {MIN_ROWS} minutes of "
                                   f"history; got {int(usable.sum())}")
        self.baseline_ = fitted_baseline(self.baseline, frame, exclude, self.specs)
        self.metrics_ = list(frame.columns)
        # every row's features, as ``features`` gives them for the masked history (the ensemble
        # attributes the training scores with them); like the training scores, not stored
        self.training_features_ = window_features(masked, self.baseline_, self.metrics_,
                                                  self.change_window)
        features = self.training_features_[usable]
        self.feature_names_ = list(features.columns)
        # scikit-learn checks each tree's drawn sample weights (counts, always finite) for
        # infinity, 5% of the fit; the forest never checks its input's (it takes NaN and inf)
        with sklearn.config_context(assume_finite=True):
            self.forest_ = IsolationForest(
                n_estimators=self.n_estimators, max_samples=self.max_samples,
                max_features=self.max_features, random_state=self.random_state,
                n_jobs=self.n_jobs).fit(features.to_numpy())
        self.feature_centre_ = features.median()
        scale = MAD_TO_SIGMA * (features - self.feature_centre_).abs().median()
        # numpy's standard deviation, not pandas': with bottleneck installed pandas sums naively
        # and the last bits would depend on the environment
        std = pd.Series(np.std(features.to_numpy(), axis=0, ddof=1), index=features.columns)
        scale = scale.where(scale > 0, std).where(lambda s: s > 0, 1.0)
        self.feature_scale_ = scale.fillna(1.0)
        self._process_training_scores(pd.Series(self._raw(features), index=features.index))
        return self

    def _process_training_scores(self, scores: pd.Series) -> None:
        """The training scores, the threshold and how it was derived, as fitted attributes."""
        self.training_scores_ = scores
        if self.threshold is not None:
            self.threshold_, self.threshold_method_ = float(self.threshold), f"fixed at {self.threshold:g}"
        else:
            q = 1.0 - self.contamination
            self.threshold_ = float(scores.quantile(q))
            self.threshold_method_ = f"training-score quantile {q:g}"

    def _raw(self, features: pd.DataFrame) -> np.ndarray:
        return -self.forest_.score_samples(features[self.feature_names_].to_numpy())

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise RuntimeError("IsolationForestDetector is not fitted; call fit(history) first")

    def features(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The feature rows of ``frame`` and which rows hold any data (checked input)."""
        self._check_fitted()
        frame = check_metric_frame(frame)
        unknown = [c for c in frame.columns if c not in self.metrics_]
        if unknown:
            raise KeyError(f"the isolation forest was not fitted on metric(s) {', '.join(unknown)}; "
                           f"fitted: {', '.join(self.metrics_)}")
        present = frame.notna().any(axis=1).to_numpy()
        return window_features(frame, self.baseline_, self.metrics_, self.change_window), present

    def score(self, frame: pd.DataFrame) -> pd.Series:
        """One raw score per minute of ``frame`` (higher = more anomalous; NaN for empty rows)."""
        features, present = self.features(frame)
        return pd.Series(np.where(present, self._raw(features), np.nan), index=features.index,
                         name="iforest")

    def predict(self, frame: pd.DataFrame) -> pd.Series:
        """Whether each minute's score is above the fitted threshold."""
        return self.score(frame).gt(self.threshold_)

    def deviation(self, frame: pd.DataFrame, direction: bool = True) -> pd.DataFrame:
        """Per metric, how far its ``z`` or ``change`` feature is out, in robust spreads:
        in its bad direction only (``direction=True``) or either way."""
        features, _ = self.features(frame)
        return self._deviation(features, direction)

    def _deviation(self, features: pd.DataFrame, direction: bool = True) -> pd.DataFrame:
        return pd.DataFrame(self._deviations(self._standardised(features), direction),
                            index=features.index, columns=self.metrics_)

    def _standardised(self, features: pd.DataFrame) -> list[list[np.ndarray]]:
        """Per metric, its ``z`` and ``change`` features in robust spreads of their training
        values (signed)."""
        out = []
        for metric in self.metrics_:
            names = [f"{metric}:{kind}" for kind in ATTRIBUTING]
            out.append([(features[n].to_numpy() - self.feature_centre_[n]) / self.feature_scale_[n]
                        for n in names])
        return out

    def _deviations(self, standardised: list[list[np.ndarray]], direction: bool) -> np.ndarray:
        """(rows, metrics): each metric's larger standardised feature, in its bad direction
        only (``direction``) or either way."""
        columns = []
        for metric, parts in zip(self.metrics_, standardised, strict=True):
            way = spec_for(metric, self.specs).direction if direction else "both"
            columns.append(np.maximum.reduce([by_direction(part, way) for part in parts]))
        return np.column_stack(columns)

    def _culprit(self, features: pd.DataFrame) -> np.ndarray:
        """Column position of each row's culprit metric, -1 where none is named (see module)."""
        standardised = self._standardised(features)
        either = self._deviations(standardised, direction=False)
        bad = self._deviations(standardised, direction=True)
        top = either.argmax(axis=1)
        rows = np.arange(len(top))
        named = (bad[rows, top] > 0) & (bad[rows, top] >= either[rows, top] * (1 - 1e-9))
        return np.where(named, top, -1)

    def culprit(self, frame: pd.DataFrame) -> pd.Series:
        """The metric each minute's score is attributed to, or None (the rule is in the module)."""
        features, _ = self.features(frame)
        position = self._culprit(features)
        names = np.array(self.metrics_, dtype=object)[np.maximum(position, 0)]
        return pd.Series(np.where(position >= 0, names, None), index=features.index, name="culprit")
