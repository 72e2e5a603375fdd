"""ServiceDetector: the hour-of-week z-score, the seasonal residual model, the isolation forest,
the level shift and the streaming detector, calibrated onto one [0, 1] scale and combined, as a
drop-in for RobustZDetector.

How a point is scored:

1. Each member scores it raw, higher = more anomalous: ``zscore`` (robust z against the
   hour-of-week baseline, ``RobustZDetector``), ``seasonal`` (residual against the robust STL
   fit, ``SeasonalResidualDetector``), ``iforest`` (one multivariate score per minute,
   ``IsolationForestDetector``), ``shift`` (the last minutes' level against the minutes before
   them, ``LevelShiftDetector``: a step needs no calendar, so it is seen where the seasonal
   members must tolerate a level the history cannot tell, e.g. a weekend judged by weekdays;
   it needs the minutes before a point, so score a window, not a single row), ``streaming``
   (the surprise of ``detection.streaming.StreamingUnivariateDetector``, the detector
   ``aiops benchmark nab`` replays: ``StreamingMember`` fits it per metric on the training
   history and keeps its state, which each scored minute moves on by one row;
   ``fit_predict_stream`` replays it alone on one series).
2. Each member's raw score is calibrated per metric by a ``TailCalibrator`` fitted on that
   member's training scores, so 0.999 means the same for every member and metric: about one
   normal training point in a thousand scores higher.
3. The forest's calibrated score is handed to one metric per minute, its culprit: the metric
   whose seasonal deviation or short-term change is largest in robust spreads, provided it is
   out in its bad direction (``IsolationForestDetector.culprit``). For the other metrics, and
   for every metric when the culprit only moved the harmless way, the forest is silent (left
   out of the combination, not counted as a 0).
4. Per metric the members are combined on the surprise scale ``-log(1 - calibrated)``: ``max``
   (default; the most surprised member decides, each scaled by ``weight / max weight``) or
   ``mean`` (weighted over the members that spoke).
5. With ``recalibrate`` the combination is calibrated again on the training combinations, so
   the final score is again a [0, 1] tail probability and taking the largest of three does
   not inflate the false-alarm rate. ``threshold`` applies to this final score.
6. The ``additive`` members (``streaming`` by default) are left out of steps 4-5: the final
   score is the larger of step 5's and their weighted calibrated score. Inside the max and the
   recalibration, a fifth member raised the level every member must reach (on the simulator a
   weak load surge was found 2 minutes later); added afterwards it only adds evidence: the
   threshold and every score of the others are unchanged, so nothing they find comes later.

Drop-in contract (what the watcher and training use): ``fit(history, exclude=None)``,
``score(frame)`` (per-metric DataFrame), ``detect(frame)`` (per-point anomalies above the
threshold; stateless, so the watcher's own grouping still applies), ``expected_frame``,
``within_baseline``, ``threshold``, ``specs``, ``metrics_``, ``baseline_``. Anomaly scores and
``threshold`` are on the calibrated [0, 1] scale, so a RuleClassifier built with
``threshold=detector.threshold`` compares like with like. ``alarms(frame)`` applies the
configured alarm grouping to a longer frame (replays, benchmarks, evaluation).

An anomaly's ``expected`` is the hour-of-week baseline centre; its band is the range the
baseline member, calibrated, keeps under the ensemble's threshold (``band_z_`` spreads either
side, beyond the baseline's tolerance); its ``members`` list what each member scored.

Cold start (less than two weeks of history): the z-score member and the forest's ``z``
features measure a deviation from the edge of the baseline's tolerance
(``SeasonalBaseline.tolerance_``: two day-type uncertainties where a slot's level was carried
over from the other day type, 0 elsewhere). Their calibrators learn from training z's, and a
carried-over slot has no training point by definition, so a z of 1.3 that the fixed-threshold
z-score shrugs off would read as a one-in-ten-thousand surprise here: without the tolerance a
Monday judged by a Sunday-only history had a third of its quiet minutes over the threshold.

With too little history for a member (the seasonal model needs two days, the forest an hour)
that member is left out and the reason is kept in ``skipped_``; the z-score always runs.

Fitting cost (``aiops benchmark training`` fits 200 services of 5 metrics x 14 days): the
hour-of-week baseline is fitted once and shared with the forest's ``z`` features
(``FrozenEstimator``); the seasonal model's and the forest's training scores, computed while
they fit, are the calibrators' training scores (not scored again). Every calibrator sees every
training minute: calibrating on every other minute would save a sixth of the fit, but the
final threshold's tail is mostly isolated minutes, so half the minutes is half the tail
points: on 16 simulated services the rate of normal minutes above 0.9999 went from 5.2e-5 to
6.1e-5 and varied more between services (the same scores, a noisier threshold).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import pandas as pd
from sklearn.frozen import FrozenEstimator

from detection.anomaly import Anomaly
from detection.baseline import SeasonalBaseline
from detection.frames import MetricFrameError, check_known_metrics, check_metric_frame
from detection.iforest import IsolationForestDetector
from detection.metrics import MetricSpec, spec_for
from detection.postprocess import Alarm, AlarmGrouper, GroupingConfig, TailCalibrator
from detection.seasonal import SeasonalResidualDetector, mask_ranges
from detection.shift import LevelShiftDetector
from detection.streaming import StreamingMember, StreamingUnivariateDetector
from detection.zscore import RobustZDetector

MEMBERS = ("zscore", "seasonal", "iforest", "shift", "streaming")
STREAMING_WEIGHT = 1.0  # the streaming member's weight by default (see the README's "Detectors")
COMBINERS = ("max", "mean")


@dataclass(frozen=True)
class EnsembleConfig:
    """What the ensemble runs and how it decides; plain data, JSON-ready via ``to_dict``.

    Parameters
    ----------
    members : member name -> weight (``zscore``, ``seasonal``, ``iforest``, ``shift``,
        ``streaming``); weight 0 or absent turns a member off (the z-score's baseline is still
        fitted: it gives expected values).
    combiner : ``max`` or ``mean`` of the weighted calibrated member scores.
    threshold : the final [0, 1] score above which a point is anomalous.
    calibration : TailCalibrator settings (``n_quantiles``, ``tail_quantile``, ``fallback_scale``).
    recalibrate : calibrate the combined score again on the training combinations.
    grouping : alarm grouping for ``alarms``; None makes each anomalous point an alarm.
    additive : members whose calibrated score is not combined and recalibrated with the others
        but added as evidence afterwards: the final score is the larger of the others' final
        score and theirs (weighted). They can raise a point's score, never lower it, and they
        leave the threshold where the others put it, so nothing the others detect comes later.
    baseline, seasonal, iforest, shift, streaming : keyword settings of SeasonalBaseline,
        SeasonalResidualDetector, IsolationForestDetector, LevelShiftDetector and
        StreamingMember (StreamingUnivariateDetector's settings).
    """

    members: dict[str, float] = field(default_factory=lambda: {
        **{m: 1.0 for m in MEMBERS}, "shift": 0.5, "streaming": STREAMING_WEIGHT})
    additive: tuple[str, ...] = ("streaming",)
    combiner: str = "max"
    threshold: float = 0.9999
    calibration: dict = field(default_factory=dict)
    recalibrate: bool = True
    grouping: GroupingConfig | None = field(default_factory=GroupingConfig)
    baseline: dict = field(default_factory=dict)
    seasonal: dict = field(default_factory=dict)
    iforest: dict = field(default_factory=dict)
    shift: dict = field(default_factory=dict)
    streaming: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "EnsembleConfig":
        """Build from plain data (e.g. parsed JSON); unknown keys are an error naming them."""
        if not isinstance(data, dict):
            raise TypeError(f"ensemble config must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ensemble config key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        values = dict(data)
        if isinstance(values.get("grouping"), dict):
            grouping = values["grouping"]
            allowed = {f.name for f in fields(GroupingConfig)}
            if set(grouping) - allowed:
                raise ValueError(f"unknown grouping key(s) {', '.join(sorted(set(grouping) - allowed))}; "
                                 f"known: {', '.join(sorted(allowed))}")
            values["grouping"] = GroupingConfig(**grouping)
        if isinstance(values.get("additive"), list):
            values["additive"] = tuple(values["additive"])
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain data that ``from_dict`` reads back."""
        return asdict(self)

    def checked(self) -> "EnsembleConfig":
        """Self, after checking every value; raises ValueError naming the bad one."""
        unknown = sorted(set(self.members) - set(MEMBERS))
        if unknown:
            raise ValueError(f"unknown ensemble member(s) {', '.join(unknown)}; known: {', '.join(MEMBERS)}")
        weights = list(self.members.values())
        if any(not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0 for w in weights) \
                or not any(w > 0 for w in weights):
            raise ValueError(f"member weights must be finite and >= 0, at least one > 0; got {self.members}")
        unknown = sorted(set(self.additive) - set(MEMBERS))
        if isinstance(self.additive, str) or unknown:
            raise ValueError(f"additive must list ensemble members ({', '.join(MEMBERS)}); "
                             f"got {self.additive!r}")
        if self.combiner not in COMBINERS:
            raise ValueError(f"combiner must be one of {', '.join(COMBINERS)}, got {self.combiner!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold is a calibrated score and must be in (0, 1), got {self.threshold}")
        allowed = {"n_quantiles", "tail_quantile", "fallback_scale"}
        extra = sorted(set(self.calibration) - allowed)
        if extra:
            raise ValueError(f"unknown calibration key(s) {', '.join(extra)}; "
                             f"known: {', '.join(sorted(allowed))}")
        if self.grouping is not None:
            if not isinstance(self.grouping, GroupingConfig):
                raise ValueError("grouping must be a GroupingConfig, a dict of its fields, or None")
            self.grouping.checked()
        return self

    def weight(self, member: str) -> float:
        return float(self.members.get(member, 0.0))


def _coerce(config) -> EnsembleConfig:
    if config is None:
        return EnsembleConfig()
    if isinstance(config, EnsembleConfig):
        return config
    if isinstance(config, dict):
        return EnsembleConfig.from_dict(config)
    raise TypeError(f"config must be an EnsembleConfig, a dict or None, got {type(config).__name__}")


class ServiceDetector:
    """The ensemble detector of one service (see the module docstring for the rules).

    Parameters
    ----------
    config : an EnsembleConfig, a dict of its fields, or None for the defaults.
    specs : metric specs (labels, units, directions, floors), shared by every member.
    threshold : overrides ``config.threshold`` (so ``ServiceDetector(threshold=...)`` reads
        like ``RobustZDetector(threshold=...)``); a calibrated score in (0, 1), not a z.
    """

    def __init__(self, config: EnsembleConfig | dict | None = None,
                 specs: dict[str, MetricSpec] | None = None, threshold: float | None = None):
        self.config = config
        self.specs = specs
        self.threshold = threshold

    @property
    def threshold(self) -> float:
        """The calibrated [0, 1] score above which a point is an anomaly."""
        if self._threshold is not None:
            return float(self._threshold)
        return float(_coerce(self.config).threshold)

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = value

    # ----------------------------------------------------------------------------- fitting
    def fit(self, history: pd.DataFrame, exclude: list[tuple] | None = None) -> "ServiceDetector":
        """Fit every configured member on ``history``, then the calibrators and the band."""
        config = _coerce(self.config)
        if self._threshold is not None:
            config = replace(config, threshold=self._threshold)
        config = config.checked()
        frame = check_metric_frame(history, min_rows=2)
        self.config_ = config
        baseline = SeasonalBaseline(specs=self.specs, **config.baseline)
        self.zscore_ = RobustZDetector(baseline=baseline, specs=self.specs).fit(frame, exclude=exclude)
        self.baseline_ = self.zscore_.baseline_
        self.metrics_ = list(self.baseline_.metrics_)
        self.members_: dict[str, object] = {"zscore": self.zscore_}
        self.skipped_: dict[str, str] = {}
        # the forest's z features use this same baseline, fitted once (not refitted inside it)
        makers = {"seasonal": lambda: SeasonalResidualDetector(specs=self.specs, **config.seasonal),
                  "iforest": lambda: IsolationForestDetector(
                      specs=self.specs, baseline=FrozenEstimator(self.baseline_), **config.iforest),
                  "shift": lambda: LevelShiftDetector(
                      specs=self.specs, baseline=FrozenEstimator(self.baseline_), **config.shift),
                  "streaming": lambda: StreamingMember(specs=self.specs, **config.streaming)}
        for name, make in makers.items():
            if config.weight(name) <= 0:
                continue
            try:
                self.members_[name] = make().fit(frame, exclude=exclude)
            except MetricFrameError as exc:
                self.skipped_[name] = str(exc)
        training = mask_ranges(frame, exclude)
        raw, culprit = self._raw_scores(training, fitting=True)
        self.calibrators_ = {name: TailCalibrator(**config.calibration) for name in raw}
        surprises = self._surprises(raw, culprit, fitting=True)
        self._process_training_scores(self._combine(surprises, training), surprises)
        return self

    def _additive(self, names) -> list[str]:
        """The members among ``names`` added after the combination (none if all would be)."""
        config = self.config_
        added = [n for n in names if n in config.additive and config.weight(n) > 0]
        rest = [n for n in names if n not in added and config.weight(n) > 0]
        return added if rest else []

    def _process_training_scores(self, combined: pd.DataFrame,
                                 surprises: dict[str, pd.DataFrame] | None = None) -> None:
        """Final calibrator, training scores, threshold and band, as fitted attributes.

        ``combined`` is the training combination on the surprise scale (see ``_surprises``),
        without the additive members, whose ``surprises`` are added to the final score.
        """
        config = self.config_
        if config.recalibrate:
            self.final_ = TailCalibrator(**config.calibration)
            final = pd.DataFrame(self.final_.fit_transform(combined.to_numpy()), index=combined.index,
                                 columns=combined.columns)
        else:
            self.final_ = None
            final = self._finalize(combined)
        final = self._add(final, surprises or {})
        if self.final_ is not None:
            level = self.final_.inverse_transform(np.full((1, len(self.metrics_)), config.threshold))[0]
        else:
            level = np.full(len(self.metrics_), -np.log1p(-config.threshold))
        self.training_scores_ = final
        self.threshold_ = float(config.threshold)
        rate = float(np.nanmean(final.to_numpy() > self.threshold_))
        added = self._additive(self.members_)
        combined_names = [n for n in self.members_ if n not in added]
        self.threshold_method_ = (f"calibrated score {self.threshold_:g} "
                                  f"({'recalibrated ' if config.recalibrate else ''}{config.combiner} of "
                                  f"{', '.join(combined_names)}"
                                  f"{''.join(f'; then the larger with {n}' for n in added)}); "
                                  f"{rate:.2%} of training points above")
        # the z-score member's raw z whose surprise reaches the combined level at the threshold
        as_calibrated = -np.expm1(-np.maximum(level, 0.0))
        z = self.calibrators_["zscore"].inverse_transform(as_calibrated[None, :])[0]
        self.band_z_ = pd.Series(np.maximum(z, 0.0), index=self.metrics_)

    # ----------------------------------------------------------------------------- scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "calibrators_"):
            raise RuntimeError("ServiceDetector is not fitted; call fit(history) first")

    def _raw_scores(self, frame: pd.DataFrame,
                    fitting: bool = False) -> tuple[dict[str, pd.DataFrame], np.ndarray | None]:
        """Each member's raw scores on ``frame`` (all fitted metrics as columns), and the
        forest's culprit per row (column position, -1 for none; None without a forest).

        ``fitting``: ``frame`` is the (masked) training history, which the seasonal model and
        the forest have already scored while fitting; their training scores are reused.
        """
        culprit = None
        full = frame.reindex(columns=self.metrics_)
        raw = {"zscore": self.zscore_.score(full, tolerant=True)}
        if "seasonal" in self.members_:
            seasonal = self.members_["seasonal"]
            raw["seasonal"] = (seasonal.training_scores_.reindex(columns=self.metrics_) if fitting
                               else seasonal.score(full))
        for name in ("shift", "streaming"):
            if name in self.members_:
                member = self.members_[name]
                raw[name] = (member.training_scores_.reindex(columns=self.metrics_) if fitting
                             else member.score(full))
        if "iforest" in self.members_:
            forest = self.members_["iforest"]
            if fitting:  # the forest scored exactly these rows when it fitted (empty rows: NaN)
                features = forest.training_features_
                scores = forest.training_scores_.reindex(features.index).to_numpy()
            else:
                features, present = forest.features(frame)
                scores = np.where(present, forest._raw(features), np.nan)
            raw["iforest"] = pd.DataFrame({"iforest": scores}, index=features.index)
            culprit = forest._culprit(features)
        return raw, culprit

    def _surprises(self, raw: dict[str, pd.DataFrame], culprit: np.ndarray | None,
                   fitting: bool = False) -> dict[str, pd.DataFrame]:
        """Calibrated member scores per metric on the surprise scale, ``-log(1 - calibrated)``;
        the forest's only under its culprit metric. ``fitting``: ``raw`` are the training
        scores, and each calibrator is fitted on its member's while calibrating them.

        Members are combined on this scale because calibrated scores are bounded: the largest
        of three near-1 values has no exponential tail left for the final calibration to fit,
        while surprises of calibrated scores are about Exp(1) and stay exact where the
        calibrated score rounds to 1.
        """
        out = {}
        for name, scores in raw.items():
            calibrator = self.calibrators_[name]
            values = (calibrator.fit_surprise if fitting else calibrator.surprise)(scores.to_numpy())
            if name == "iforest":
                table = np.full((len(scores), len(self.metrics_)), np.nan)
                rows = np.flatnonzero(culprit >= 0)
                table[rows, culprit[rows]] = values[rows, 0]
                out[name] = pd.DataFrame(table, index=scores.index, columns=self.metrics_)
            else:
                out[name] = pd.DataFrame(values, index=scores.index, columns=self.metrics_)
        return out

    def _combine(self, surprises: dict[str, pd.DataFrame], frame: pd.DataFrame) -> pd.DataFrame:
        config = self.config_
        added = self._additive(surprises)
        names = [n for n in surprises if config.weight(n) > 0 and n not in added]
        weights = np.array([config.weight(n) for n in names])[:, None, None]
        stack = np.stack([surprises[n].to_numpy() for n in names])
        with np.errstate(invalid="ignore"):
            if config.combiner == "max":  # fmax passes NaN over: the members that spoke
                combined = np.fmax.reduce(stack * weights / weights.max(), axis=0)
            else:
                spoke = ~np.isnan(stack)
                total = np.where(spoke, stack * weights, 0.0).sum(axis=0)
                combined = total / np.where(spoke, weights, 0.0).sum(axis=0)
        missing = frame.reindex(columns=self.metrics_).isna().to_numpy()
        combined[missing] = np.nan
        return pd.DataFrame(combined, index=frame.index, columns=self.metrics_)

    def _add(self, final: pd.DataFrame, surprises: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """The final scores raised to each additive member's weighted calibrated score."""
        added = self._additive(surprises)
        if not added:
            return final
        config = self.config_
        top = max(config.weight(n) for n in surprises if config.weight(n) > 0)
        values = final.to_numpy().copy()
        missing = np.isnan(values)
        for name in added:
            extra = -np.expm1(-surprises[name].reindex(columns=final.columns).to_numpy()
                              * config.weight(name) / top)
            values = np.fmax(values, extra)
        values[missing] = np.nan
        return pd.DataFrame(values, index=final.index, columns=final.columns)

    def _parts(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame]:
        """(final scores, calibrated member scores, checked frame) for ``frame``'s metrics."""
        self._check_fitted()
        frame = check_known_metrics(frame, self.metrics_, "baseline")
        surprises = self._surprises(*self._raw_scores(frame))
        final = self._add(self._finalize(self._combine(surprises, frame)), surprises)
        columns = list(frame.columns)
        calibrated = {n: -np.expm1(-s[columns]) for n, s in surprises.items()}
        return final[columns], calibrated, frame

    def _finalize(self, combined: pd.DataFrame) -> pd.DataFrame:
        """The combined surprise as a [0, 1] score: recalibrated, or read back as a probability."""
        values = combined.to_numpy()
        out = self.final_.transform(values) if self.final_ is not None else -np.expm1(-values)
        return pd.DataFrame(out, index=combined.index, columns=combined.columns)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Final calibrated [0, 1] scores for every known metric in ``frame`` (NaN if missing)."""
        return self._parts(frame)[0]

    def member_scores(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Each member's calibrated scores for ``frame`` (the forest's under its culprit only)."""
        return self._parts(frame)[1]

    def detect(self, frame: pd.DataFrame) -> list[Anomaly]:
        """Every point of ``frame`` scoring above the threshold, as an explained Anomaly."""
        scores, members, frame = self._parts(frame)
        found: list[Anomaly] = []
        for metric in scores.columns:
            hits = scores.index[scores[metric].to_numpy() > self.threshold_]
            if len(hits) == 0:
                continue
            exp = self.baseline_.expected(metric, hits)
            width = float(self.band_z_[metric])
            tolerance = np.broadcast_to(exp.tolerance, exp.centre.shape)
            for i, ts in enumerate(hits):
                centre, half = exp.centre[i], tolerance[i] + width * exp.spread[i]
                said = {name: float(part.at[ts, metric]) for name, part in members.items()
                        if not np.isnan(part.at[ts, metric])}
                found.append(Anomaly.build(metric, ts, frame.at[ts, metric], centre,
                                           centre - half, centre + half,
                                           scores.at[ts, metric], self.specs, members=said))
        return sorted(found, key=lambda a: (a.timestamp, a.metric))

    def alarms(self, frame: pd.DataFrame, metrics: list[str] | None = None) -> list[Alarm]:
        """Alarms over ``frame``, grouped as configured; health metrics unless ``metrics``."""
        scores = self.score(frame)
        chosen = metrics if metrics is not None else [m for m in scores.columns
                                                      if spec_for(m, self.specs).health]
        grouping = self.config_.grouping or GroupingConfig(min_points=1, window="1ns", cooldown="0s")
        return AlarmGrouper(grouping).group(scores[[m for m in chosen if m in scores.columns]],
                                            self.threshold_)

    # ----------------------------------------------------------------------------- one series
    def fit_predict_stream(self, values: np.ndarray, timestamps: pd.DatetimeIndex | None) -> np.ndarray:
        """Univariate streaming mode: one series scored from its first row, row ``i`` from rows
        ``0..i`` only (the protocol of ``detection.streaming_baseline``; ``aiops benchmark nab``).

        A single series with no training history can only be judged by the ensemble's
        ``streaming`` member, so this replays exactly that member's detector, with the settings
        ``config.streaming`` gives it, and its own alarm suppression (one alarm per event: the
        watcher's grouping does this
        for a service). The members fitted on a history (hour-of-week z, STL residual, forest,
        level shift) are not in it. Sets ``stream_``, the detector run (its ``threshold_``,
        ``evidence_``, ``predict``).
        """
        self.stream_ = self.stream_detector()
        return self.stream_.fit_predict_stream(values, timestamps)

    def stream_detector(self) -> StreamingUnivariateDetector:
        """A fresh detector as the ``streaming`` member runs it for each metric."""
        settings = dict(_coerce(self.config).streaming)
        settings.pop("resolution", None)  # the member's bucketing, not the detector's
        return StreamingUnivariateDetector(**settings)

    def reset(self) -> "ServiceDetector":
        """Put the streaming member's live stream back at the end of training (see
        ``StreamingMember``): for replays of independent scenarios, not for the watcher."""
        self._check_fitted()
        if "streaming" in self.members_:
            self.members_["streaming"].reset()
        return self

    def stream_end(self) -> pd.Timestamp | None:
        """Where the streaming member's live stream is: the latest minute it has judged for
        every metric (None without the member). A watcher that (re)starts later than this
        feeds it the minutes between (``catch_up``), as if it had watched them."""
        self._check_fitted()
        if "streaming" not in self.members_:
            return None
        return self.members_["streaming"].live_end()

    def catch_up(self, frame: pd.DataFrame) -> None:
        """Move the streaming member's live stream on by ``frame``'s rows (minutes it missed:
        a restart, a take-over, a new model). The other members keep no live state."""
        self._check_fitted()
        if "streaming" in self.members_ and len(frame):
            self.members_["streaming"].score(frame.reindex(columns=self.metrics_))

    def expected_frame(self, index: pd.DatetimeIndex, metrics: list[str]) -> pd.DataFrame:
        """The hour-of-week baseline centre of each fitted metric in ``metrics`` at ``index``."""
        self._check_fitted()
        return self.zscore_.expected_frame(index, metrics)

    def within_baseline(self, frame: pd.DataFrame, metrics: list[str]) -> dict[str, bool]:
        """Per metric, whether the median score of ``frame`` is under the threshold.

        Verification uses this: a single noisy minute should neither pass nor fail a fix.
        """
        scores = self.score(frame[[m for m in metrics if m in frame.columns]])
        return {m: bool(np.nanmedian(scores[m].to_numpy()) <= self.threshold_)
                for m in scores.columns if scores[m].notna().any()}
