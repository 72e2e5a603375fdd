"""A streaming single-metric detector: three kinds of evidence, each judged by its own rarity.

``StreamingUnivariateDetector`` follows the streaming protocol of
``detection.streaming_baseline``: one call over a whole series whose score at row ``i`` uses
rows ``0..i`` only. It is what ``aiops detect`` and ``aiops benchmark nab`` run, and, as
``StreamingMember`` (end of this module), the ``streaming`` member of the ``ServiceDetector``
that ``aiops train`` fits and ``aiops watch`` runs: one detection core. Live, the member does
not replay: ``stream_state()`` keeps the detector's memory after a replay and
``detection.streaming_state.StreamState.update`` scores the next row from it, giving the scores
the replay of the longer series would have given.

How a row is scored
-------------------
1. **Expectation and residual.** Two predictors forecast each row from earlier rows only: the
   median of the previous ``window`` rows (level), and for each of ``seasonal_periods`` the
   median of the values at the same phase in the previous ``seasonal_cycles`` cycles (each the
   median of a few rows around that instant, so a one-row jitter in a daily job does not count
   as a miss). The predictor with the smaller mean absolute error over the previous ``window``
   rows is used, so daily shapes are followed where they exist and ignored where they do not.
   The residual is divided by a robust spread of the previous ``window`` residuals: ``z``.
2. **Three evidence channels**, each a number per row, higher = more unusual:

   * ``range``: how far the value lies outside the range of the previous ``history`` rows, in
     units of ``range_tolerance`` times that range (0 inside it). This is Numenta's "spatial
     anomaly" rule, the one that catches a value never seen before the moment it arrives.
   * ``shift``: the largest standardised mean of the (clipped) ``z`` over the last ``k`` rows,
     ``sqrt(k) |mean|``, over ``shift_windows`` -- a scan statistic for a change of level of
     unknown duration.
   * ``sustained``: the median ``|z|`` of the last ``sustained_window`` rows: at least half of
     them are off. Isolated spikes cannot raise it; a level shift, a lost daily cycle or a burst
     of volatility does.

3. **Calibration by rarity.** Each channel's value is ranked among its own previous
   ``history`` values: the surprise is ``-log10`` of the fraction of earlier rows that were at
   least as extreme (the empirical tail probability). Beyond the largest value seen, a Pareto
   tail with index ``tail_index`` continues it, so a value ten times the previous record is
   rarer than one that just equals it. This is the "anomaly likelihood" idea of Numenta's HTM
   detector (alarm by tail probability of recent behaviour against its own history), made
   non-parametric: a metric that spikes every day learns that spikes are ordinary, and a
   quiet metric alarms on its first spike. The row's surprise is the largest of the three.
4. **Alarm suppression.** A row reports its surprise only when it beats every surprise of
   the previous ``refractory`` rows (and, within ``refractory`` rows of the previous report,
   the previous report by at least ``min_gain``); all other rows score 0. One event therefore
   gives one alarm, whatever threshold a reader applies, and a creeping trend does not re-alarm
   on every new record.
5. **Score.** ``score = surprise / (surprise + score_scale)``, in [0, 1): 0.5 means a tail
   probability of ``10 ** -score_scale`` (about one row in 3,000 by default), which is also
   the default ``threshold`` for the 0/1 ``anomaly`` decision.

Global choices, and why
------------------------
Every length is a duration (``window`` = a day, ``refractory`` = 12 h, ``sustained_window`` =
4 h: long enough that isolated spikes cannot fill half of it, short enough to flag a shift
inside NAB's windows; ``shift_windows`` 30 min to 16 h, ``history`` = 30 days as HTM's
likelihood, ``warmup`` = 12.5 h), turned into rows with the series' own sampling period: the
median step of its first ``SAMPLING_ROWS`` rows (or ``sampling_period`` when given; 5 minutes
without timestamps). One-minute ECS metrics and five-minute CloudWatch or NAB series are
therefore judged over the same stretches of time, and rarity is counted per five minutes of
time, not per row, so a record of the last month is as surprising at either sampling (a NAB
series interpolated to one-minute rows alarms within minutes of the same times:
``tests/unit/test_streaming.py``). The other choices: ``range_tolerance`` = 0.05 (HTM's),
``seasonal_periods`` = a day and a week (the cycles of service traffic; the weekly one only
competes once a week of history exists), ``tail_index`` = 6. They are fixed once for the
whole NAB development subset, never per file; the benchmark prints their cross-validated
figures (thresholds chosen without the file scored), and ``scripts/nab_sensitivity.py`` how
those move when each choice is halved or doubled. ``tail_index`` was 3 until those figures
showed the whole plateau from 4.5 to 12 above it (leave-one-file-out Low FP 68-70 against 63;
Standard 71.7-72.3 against 71.2); 6 is inside the plateau, not its best point.

What carries over from HTM and ARTime
-------------------------------------
Both hold up on NAB files they never saw, and neither is tuned per file: both learn from the
stream as it comes (HTM's sequence memory; ARTime's adaptive-resonance categories, created as
the series changes) and both judge a row by how unusual it is *for this series*. HTM's
anomaly likelihood is the part that carries over whole: the alarm is a tail probability of
recent behaviour against the series' own history, so one threshold means the same on a quiet
series and a noisy one. Here every channel is ranked against its own history (step 3), every
expectation is re-estimated from the recent past (step 1), and no setting is per file. What
does not carry over is their learnt temporal patterns (HTM's sequences, ARTime's categories);
the seasonal predictors stand in for the daily and weekly shapes that service metrics have.

Defined behaviour on awkward input
----------------------------------
The rows of the first ``warmup`` (at least ``SAMPLING_ROWS`` rows) only feed the statistics,
and calibration needs half as many earlier scored rows, so roughly the first ``1.5 * warmup``
score 0. NaN values are missing rows: they score 0 and are left out of every statistic. A
constant series scores 0 everywhere (nothing is ever unusual); the first value to leave a constant stretch is
maximally surprising. Duplicate, missing, unevenly spaced and even out-of-order timestamps are
accepted: the durations become row counts once (at the measured sampling period), and the
seasonal look-up uses the running maximum of the timestamps. Infinite values are refused with a ValueError.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import bottleneck as bn
import numpy as np
import pandas as pd

from detection.rolling import rolling_count, rolling_max, rolling_median, rolling_min
from detection.streaming_state import settle
from detection.zscore import DIRECTION_CODES

if TYPE_CHECKING:
    from detection.streaming_state import StreamConfig, StreamState

MAD_TO_SIGMA = 1.4826  # median absolute deviation of a normal distribution, in standard deviations
CHANNELS = ("range", "shift", "sustained")
MAX_EXCESS = 1000.0  # range excess, in tolerances, beyond which every value is equally surprising
DURATIONS = ("window", "history", "sustained_window", "refractory", "warmup")
REFERENCE_STEP = 300.0  # seconds: the step rarity is counted in, and the sampling assumed without timestamps
SAMPLING_ROWS = 20  # the first rows whose median step is the sampling period (the warm-up is never shorter)
SEASONAL_HALF_WIDTH = "10min"  # a past instant of a cycle is the median of the rows this close to it
# the least training history the ensemble member accepts: every phase of the week a week before
# it is judged, plus a day. With three days (a weekend and a Monday) a normal Tuesday raised
# alarms for hundreds of minutes: the member cannot tell a new day type from a fault until it has
# seen each. With exactly seven days ending Monday 13:00 the weekly predictor had no Monday
# morning to repeat and no errors of its own to be chosen by, so the daily one judged Monday by
# the weekend: a normal Monday afternoon was a record rise (tests/unit/test_cold_start.py).
MIN_MEMBER_HISTORY = pd.Timedelta("8D")
# The ensemble member judges the means of 5-minute buckets of finer data: NAB's sampling, where
# the detector's settings were chosen by cross-validation, so the member watching a one-minute
# service runs at the sampling it is benchmarked at. Its state and work are 5x smaller than at one
# minute (about 0.4 MB a series for the 30-day history), which is what lets a fleet of thousands
# of series keep one in memory; a sustained symptom is seen at most one bucket later, and the
# other members still judge every minute.
RESOLUTION = "5min"


@dataclass(frozen=True)
class _Rows:
    """The duration settings as row counts at one sampling period (``step`` seconds)."""

    step: float
    window: int
    history: int
    shift_windows: tuple[int, ...]
    sustained_window: int
    refractory: int
    warmup: int
    seasonal_half_width: int

    @property
    def unit(self) -> float:
        """How many reference steps one row stands for."""
        return self.step / REFERENCE_STEP


def _duration(value, name: str) -> float:
    """``value`` (a pandas duration such as ``"4h"``) in seconds; a ValueError naming ``name``."""
    seconds = _text_seconds(value) if isinstance(value, str) else _any_seconds(value)
    if isinstance(value, (int, float, np.number)) or not seconds > 0:
        raise ValueError(f"{name} must be a positive duration such as '4h', got {value!r}")
    return seconds


def _any_seconds(value) -> float:
    """``pd.Timedelta(value)`` in seconds, NaN for what is not a duration."""
    try:
        return pd.Timedelta(value).total_seconds()
    except (ValueError, TypeError):
        return float("nan")


@functools.lru_cache(maxsize=256)
def _text_seconds(value: str) -> float:
    """``_any_seconds`` of a duration's text, parsed once: a fit reads the same dozen settings
    (``"1D"``, ``"4h"``, ...) some 25 times a metric, 3.5 us of pandas parsing each."""
    return _any_seconds(value)


@functools.lru_cache(maxsize=64)
def _period_seconds(period) -> float:
    """A seasonal period (a pandas offset such as ``"1D"``) in seconds, parsed once."""
    return pd.Timedelta(pd.tseries.frequencies.to_offset(period)).total_seconds()


class StreamingUnivariateDetector:
    """Streaming anomaly scores in [0, 1] for one metric; see the module docstring.

    Parameters
    ----------
    Every length is a duration (a pandas string such as ``"4h"``), made rows with the
    series' sampling period.

    window : the stretch before a row that makes its level expectation and residual spread
        (at least 10 rows).
    seasonal_periods : periods (pandas offsets such as ``"1D"``) whose same-phase values may
        predict a row; empty for none.
    seasonal_cycles : past cycles of each period whose values are combined (median).
    history : the stretch each channel is ranked against, and the range is taken over.
    shift_windows : durations over which the ``shift`` scan averages ``z``.
    sustained_window : the stretch whose median ``|z|`` is the ``sustained`` channel.
    z_clip : ``|z|`` is clipped here before the ``shift`` averages, so one spike cannot pass
        for a shift.
    range_tolerance : fraction of the historical range a value must exceed it by to count.
    tail_index : Pareto index of the tail beyond the largest value seen (larger = a record
        must be further beyond the old one to be much more surprising).
    refractory : time after a report during which a weaker or equal surprise is not reported.
    min_gain : within ``refractory`` of a report, how much more surprising (log10 units) a row
        must be to be reported again.
    warmup : the first stretch, which only feeds the statistics before residuals are scored.
    score_scale : the surprise (``-log10`` tail probability) that maps to score 0.5.
    min_z : a row's surprise counts only when the row itself is this many spreads off its
        expectation (``|z|``); 0 for none. The channels remember: after an error storm the shift
        channel's windows (up to 16 hours) still average it in, and without this a later row of
        ordinary noise (``|z|`` about 2) borrowed their surprise. Three sigma, not tuned; on
        the NAB dev subset it changes the cross-validated scores by under a point (README).
    threshold : the score at or above which a row is an anomaly, in (0, 1).
    sampling_period : the series' sampling period; None measures it from the timestamps.
    """

    def __init__(self, window: str = "1D", seasonal_periods: Sequence[str] = ("1D", "7D"),
                 seasonal_cycles: int = 3, history: str = "30D",
                 shift_windows: Sequence[str] = ("30min", "1h", "2h", "4h", "8h", "16h"),
                 sustained_window: str = "4h", z_clip: float = 5.0, range_tolerance: float = 0.05,
                 tail_index: float = 6.0, refractory: str = "12h", min_gain: float = 0.1,
                 warmup: str = "750min", score_scale: float = 3.5, min_z: float = 3.0,
                 threshold: float = 0.5, sampling_period: str | None = None):
        self.window = window
        self.seasonal_periods = seasonal_periods
        self.seasonal_cycles = seasonal_cycles
        self.history = history
        self.shift_windows = shift_windows
        self.sustained_window = sustained_window
        self.z_clip = z_clip
        self.range_tolerance = range_tolerance
        self.tail_index = tail_index
        self.refractory = refractory
        self.min_gain = min_gain
        self.warmup = warmup
        self.score_scale = score_scale
        self.min_z = min_z
        self.threshold = threshold
        self.sampling_period = sampling_period

    # ----------------------------------------------------------------------------------------
    # scikit-learn conventions

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in (
            "window", "seasonal_periods", "seasonal_cycles", "history", "shift_windows",
            "sustained_window", "z_clip", "range_tolerance", "tail_index", "refractory",
            "min_gain", "warmup", "score_scale", "min_z", "threshold", "sampling_period")}

    def set_params(self, **params) -> "StreamingUnivariateDetector":
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"unknown parameter {name!r} for StreamingUnivariateDetector")
            setattr(self, name, value)
        return self

    def _validate(self) -> None:
        for name in DURATIONS:
            _duration(getattr(self, name), name)
        if isinstance(self.shift_windows, str) or not list(self.shift_windows):
            raise ValueError(f"shift_windows must be a non-empty list of durations such as ['1h'], "
                             f"got {self.shift_windows!r}")
        for window in self.shift_windows:
            _duration(window, "shift_windows")
        if self.sampling_period is not None:
            _duration(self.sampling_period, "sampling_period")
        cycles = self.seasonal_cycles
        if not (isinstance(cycles, (int, np.integer)) and not isinstance(cycles, bool) and cycles >= 1):
            raise ValueError(f"seasonal_cycles must be an integer >= 1, got {cycles!r}")
        for name in ("z_clip", "range_tolerance", "tail_index", "score_scale"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("min_gain", "min_z"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < np.inf):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if isinstance(self.seasonal_periods, str):
            raise ValueError("seasonal_periods must be a list of periods such as ['1D'], "
                             f"not the string {self.seasonal_periods!r}")
        for period in self.seasonal_periods:
            try:
                seconds = _period_seconds(period)
            except (ValueError, TypeError):
                raise ValueError(f"seasonal period {period!r} is not a pandas offset such as '1D'") from None
            if seconds <= 0:
                raise ValueError(f"seasonal period {period!r} must be positive")

    def _rows(self, step: float) -> "_Rows":
        """Every duration setting as a row count at a sampling period of ``step`` seconds."""
        def rows(duration, low: int) -> int:
            return max(low, int(round(_duration(duration, "") / step)))

        return _Rows(step=step, window=rows(self.window, 10), history=rows(self.history, 20),
                     shift_windows=tuple(sorted({rows(k, 1) for k in self.shift_windows})),
                     sustained_window=rows(self.sustained_window, 1),
                     refractory=rows(self.refractory, 1),
                     warmup=rows(self.warmup, SAMPLING_ROWS),
                     seasonal_half_width=rows(SEASONAL_HALF_WIDTH, 0))

    # ----------------------------------------------------------------------------------------
    # The protocol

    def fit_predict_stream(self, values: np.ndarray, timestamps: pd.DatetimeIndex | None) -> np.ndarray:
        """Scores in [0, 1] for every row; row ``i`` depends on rows ``0..i`` only.

        Also sets ``threshold_`` (the score at or above which a row is an anomaly),
        ``evidence_`` (a DataFrame of each channel's surprise and the combined ``surprise``,
        row for row, 0 on missing rows; ``z``, the signed standardised residual, NaN on
        missing and warm-up rows; ``residual``, value minus expectation), ``n_rows_``,
        ``sampling_period_`` and ``rows_`` (every
        duration setting as the row count used).
        """
        self._validate()
        x = np.asarray(values, dtype=float)
        if x.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {x.shape}")
        if timestamps is not None and len(timestamps) != len(x):
            raise ValueError(f"{len(x)} values but {len(timestamps)} timestamps")
        if np.isinf(x).any():
            raise ValueError(f"values hold infinity at row {int(np.flatnonzero(np.isinf(x))[0])}")
        present = ~np.isnan(x)
        evidence = np.zeros((len(x), len(CHANNELS)))
        surprise = np.zeros(len(x))
        seconds = every = None
        if timestamps is not None:
            every = _seconds(pd.DatetimeIndex(timestamps))
            seconds = every[present]
        rows = self._rows(self._sampling_seconds(seconds))
        signed = np.full(len(x), np.nan)
        residual = np.full(len(x), np.nan)
        if present.any():
            channels, signed[present], residual[present] = self._channels(x[present], seconds, rows)
            evidence[present] = channels
            surprise[present] = channels.max(axis=1)
            if self.min_z > 0:  # the row itself must be off (StreamState.update does the same)
                surprise[present] *= np.nan_to_num(np.abs(signed[present])) >= self.min_z
        reported, last_row, last_value = _suppress(surprise, present, rows.refractory, self.min_gain)
        scores = reported / (reported + self.score_scale)
        self.threshold_ = float(self.threshold)
        self.evidence_ = pd.DataFrame({**{name: evidence[:, i] for i, name in enumerate(CHANNELS)},
                                       "surprise": surprise, "z": signed, "residual": residual})
        self.n_rows_ = len(x)
        self.sampling_period_ = pd.Timedelta(seconds=rows.step)
        self.rows_ = rows
        self._tail = {"surprise": surprise, "last_row": last_row, "last_value": last_value,
                      "rows": len(x), "present": int(present.sum()), "timestamps": timestamps is not None,
                      "max_seconds": float(np.max(every)) if every is not None and len(x) else -np.inf}
        if not present.any():
            self._internals = None
        return scores

    def stream_state(self) -> "StreamState":
        """The detector's memory after the series ``fit_predict_stream`` scored last.

        ``state.update(value, timestamp)`` then scores the rows that follow one at a time, as
        the batch run over the longer series would have (``detection.streaming_state``).
        Needs timestamps and at least ``SAMPLING_ROWS`` present rows (the sampling period is
        measured on them, unless ``sampling_period`` is set).
        """
        from detection.streaming_state import StreamState

        return StreamState.from_dict(self._state_data())

    def _state_data(self) -> dict:
        """``stream_state()`` as the plain data ``StreamState.to_dict(compact=True)`` gives:
        each array holds the rows it keeps that were seen (no NaN padding at the front), what
        ``StreamState.from_dict`` reads. The ensemble member keeps this, without building the
        state's rings only to unroll them again."""
        if not hasattr(self, "_tail"):
            raise RuntimeError("StreamingUnivariateDetector has not scored a series yet; "
                               "call fit_predict_stream first")
        tail = self._tail
        if not tail["timestamps"]:
            raise ValueError("the live state needs timestamps (the seasonal look-ups read them)")
        if self.sampling_period is None and tail["present"] < SAMPLING_ROWS:
            raise ValueError(f"the live state needs {SAMPLING_ROWS} rows with values first "
                             "(the sampling period is measured on them)")
        config = self._stream_config(self.rows_)
        lengths = config.lengths()
        internals = self._internals or {}
        arrays = {}
        for name, shape in lengths.items():
            if name == "surprise":
                series = tail["surprise"]
            elif name in internals:
                series = internals[name]
            else:  # no present row yet
                series = np.empty(shape[:-1] + (0,))
            arrays[name] = np.array(series[..., max(0, series.shape[-1] - shape[-1]):], dtype=float)
        absolute = arrays["absolute"]
        # summed at the ring's full length, NaN in front, as states always were: numpy sums in
        # pairs of blocks, and without the padding the blocks (and the last bit) would move
        padded = np.full(lengths["absolute"], np.nan)
        padded[len(padded) - len(absolute):] = absolute
        scalars = {"present": tail["present"], "rows": tail["rows"], "max_seconds": tail["max_seconds"],
                   "since_report": tail["rows"] - tail["last_row"], "last_report": tail["last_value"],
                   "abs_sum": float(np.nansum(padded)),
                   "abs_count": int(np.count_nonzero(~np.isnan(absolute))),
                   "shift_count": int(np.count_nonzero(~np.isnan(arrays["shift"]))),
                   "sustained_count": int(np.count_nonzero(~np.isnan(arrays["sustained"])))}
        return {"config": config.to_dict(), "scalars": scalars, "arrays": arrays}

    def _stream_config(self, rows: "_Rows") -> "StreamConfig":
        from detection.streaming_state import StreamConfig

        periods = tuple(_period_seconds(p) for p in self.seasonal_periods)
        return StreamConfig(step=rows.step, window=rows.window, history=rows.history,
                            shift_windows=rows.shift_windows, sustained_window=rows.sustained_window,
                            refractory=rows.refractory, warmup=rows.warmup,
                            seasonal_half_width=rows.seasonal_half_width, periods=periods,
                            cycles=int(self.seasonal_cycles), z_clip=float(self.z_clip),
                            range_tolerance=float(self.range_tolerance), tail_index=float(self.tail_index),
                            min_gain=float(self.min_gain), score_scale=float(self.score_scale),
                            reference_step=REFERENCE_STEP, min_z=float(self.min_z))

    def _sampling_seconds(self, seconds: np.ndarray | None) -> float:
        """The sampling period in seconds: set, else the median step of the first rows.

        Only the first ``SAMPLING_ROWS`` present rows are looked at, all of them inside the
        warm-up (which is never shorter), so no scored row depends on a later one.
        """
        if self.sampling_period is not None:
            return _duration(self.sampling_period, "sampling_period")
        if seconds is not None:
            steps = np.diff(seconds[:SAMPLING_ROWS])
            steps = steps[np.isfinite(steps) & (steps > 0)]
            if steps.size:
                return float(np.median(steps))
        return REFERENCE_STEP

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """The 0/1 anomaly decision for scores from ``fit_predict_stream``."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError("StreamingUnivariateDetector has not scored a series yet; "
                               "call fit_predict_stream first")
        return (np.asarray(scores) >= self.threshold_).astype(int)

    # ----------------------------------------------------------------------------------------
    # The computation, on the present (non-missing) rows only

    def _channels(self, x: np.ndarray, seconds: np.ndarray | None,
                  rows: "_Rows") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each channel's surprise (-log10 tail probability) per row, shape (rows, 3), the
        signed standardised residual ``z`` (NaN in the warm-up) and the residual itself."""
        z, residual, predictors = self._standardised_residual(x, seconds, rows)
        z[: rows.warmup] = np.nan  # too little history yet: neither scored nor used as reference
        scored = ~np.isnan(z)
        outside = _range_excess(x, rows.history, rows.warmup)
        clipped = pd.Series(np.clip(z, -self.z_clip, self.z_clip))
        shift = np.max([np.abs(clipped.rolling(k, min_periods=k).mean().to_numpy()) * np.sqrt(k)
                        for k in rows.shift_windows], axis=0)
        sustained = rolling_median(np.abs(z), rows.sustained_window, rows.sustained_window)
        min_reference = max(2, rows.warmup // 2)
        count = np.minimum(np.arange(1, len(x) + 1), rows.history)
        # beyond the widened range, an exponential tail in units of the tolerance: p = e^-excess / n
        with np.errstate(invalid="ignore", over="ignore"):
            excess = np.minimum((outside - self.range_tolerance) / self.range_tolerance, MAX_EXCESS)
        range_surprise = np.where(excess > 0, np.log10(1.0 + (count - 1) * rows.unit)
                                  + excess / np.log(10), 0.0)
        shift = settle(np.where(scored, shift, np.nan))  # ties broken alike live (see settle)
        sustained = settle(np.where(scored, sustained, np.nan))
        around = self._around if self._around is not None else rolling_median(
            x, 2 * rows.seasonal_half_width + 1, 1, center=True)
        self._internals = {"x": x, "seconds": seconds, "around": around, "residuals": predictors,
                           "absolute": np.abs(residual),
                           "z": z, "shift": shift, "sustained": sustained}
        return np.column_stack([
            range_surprise,
            _rarity(shift, rows.history, min_reference, self.tail_index, rows.unit),
            _rarity(sustained, rows.history, min_reference, self.tail_index, rows.unit),
        ]), z, residual

    def _standardised_residual(self, x: np.ndarray, seconds: np.ndarray | None,
                               rows: "_Rows") -> tuple[np.ndarray, np.ndarray]:
        """Residual against the better of the level and seasonal predictors, in robust spreads
        (``z``), and in the series' own unit."""
        w = rows.window
        min_periods = max(3, w // 10)
        level = _past(rolling_median(x, w, min_periods))
        residuals = [x - level]
        self._around = None
        if seconds is not None and len(self.seasonal_periods):
            around, step = _seasonal_inputs(x, seconds, rows.seasonal_half_width)  # shared by periods
            self._around = around
            for period in self.seasonal_periods:
                period_s = _period_seconds(period)
                residuals.append(x - _seasonal_expectation(seconds, period_s, self.seasonal_cycles,
                                                           rows.seasonal_half_width, around, step))
        predictors = np.vstack(residuals)
        if len(residuals) == 1:
            residual = residuals[0]
        else:
            errors = np.vstack([_past(pd.Series(np.abs(r)).rolling(w, min_periods=min_periods).mean())
                                for r in residuals])
            errors[np.isnan(np.vstack(residuals))] = np.nan
            errors[1:][np.isnan(errors[1:])] = np.inf  # a seasonal predictor must prove itself
            errors[0] = np.nan_to_num(errors[0], nan=0.0)
            best = np.argmin(settle(errors), axis=0)
            residual = predictors[best, np.arange(len(x))]
        absolute = pd.Series(np.abs(residual))
        spread = np.fmax(MAD_TO_SIGMA * _past(rolling_median(np.abs(residual), w, min_periods)),
                         0.5 * _past(absolute.rolling(w, min_periods=min_periods).mean()))
        # a long-run floor, so a stretch of identical values does not make the next wiggle infinite
        spread = np.fmax(spread, 0.1 * _past(absolute.rolling(rows.history, min_periods=min_periods).mean()))
        spread = np.fmax(spread, 1e-9 * (1.0 + np.nan_to_num(np.abs(level))))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.clip(residual / spread, -1e9, 1e9), residual, predictors


# --------------------------------------------------------------------------------------------
# Helpers (pure functions of earlier rows)


def _past(rolling_result: pd.Series | np.ndarray) -> np.ndarray:
    """A rolling statistic that includes the current row, moved on one row: earlier rows only."""
    values = np.asarray(rolling_result, dtype=float)
    return np.concatenate([[np.nan], values[:-1]]) if len(values) else values


def _bucket(seconds: np.ndarray, width: float) -> np.ndarray:
    """The start of the ``width``-second bucket (aligned to the epoch) of each timestamp."""
    return np.floor(seconds / width) * width


def _seconds(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Seconds since the epoch as floats, made non-decreasing by a running maximum (causal).
    An aware index holds UTC epoch values in any zone: read as they are."""
    raw = timestamps.as_unit("s").asi8.astype(float)
    raw[timestamps.isna()] = np.nan
    return np.fmax.accumulate(np.where(np.isnan(raw), -np.inf, raw))


def _seasonal_inputs(x: np.ndarray, seconds: np.ndarray, half_width: int) -> tuple[np.ndarray, np.ndarray]:
    """What every seasonal period's look-up reads: the median of the rows within ``half_width``
    of each row (``around``), and the look-up's tolerance, the median of the last 25 steps."""
    n = len(x)
    steps = np.diff(seconds, prepend=seconds[0] if n else 0.0)
    steps = np.where(np.isfinite(steps), steps, np.nan)
    step = np.nan_to_num(rolling_median(steps, 25, 1), nan=0.0, posinf=0.0)
    around = rolling_median(x, 2 * half_width + 1, 1, center=True)
    return around, step


def _seasonal_expectation(seconds: np.ndarray, period: float, cycles: int, half_width: int,
                          around: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Median, over the previous ``cycles`` periods, of the values around the same instant.

    Each past instant contributes the median of the rows within ``half_width`` of it
    (``around``, from ``_seasonal_inputs``), all of them earlier than the row being predicted;
    it counts only if a row lies within one recent sampling step (``step``) of the instant.
    NaN where no past cycle is available.
    """
    n = len(seconds)
    rows = np.arange(n)
    candidates = np.full((cycles, n), np.nan)
    for c in range(1, cycles + 1):
        target = seconds - c * period
        j = np.searchsorted(seconds, target, side="right") - 1
        jj = np.clip(j, 0, None)
        ok = (j >= 0) & (target - seconds[jj] <= step) & (jj + half_width < rows)
        candidates[c - 1] = np.where(ok, around[jj], np.nan)
    # bottleneck's nanmedian: NaN for an all-NaN column without numpy's warning, and a
    # seventh of the cost of sorting the few rows of every column
    return bn.nanmedian(candidates, axis=0)


def _range_excess(x: np.ndarray, history: int, warmup: int) -> np.ndarray:
    """How far each value lies outside the range of the previous ``history`` rows.

    As a fraction of that range; 0 inside it or before ``warmup`` earlier rows exist, and
    infinite for a value that leaves a constant history.
    """
    high = _past(rolling_max(x, history, warmup))
    low = _past(rolling_min(x, history, warmup))
    width = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        outside = np.fmax(x - high, low - x) / width
    # leaving a constant history is as far outside as a value can be
    outside = np.where((width == 0) & (x != high), np.inf, outside)
    return np.nan_to_num(outside, nan=0.0)


def _rarity(u: np.ndarray, history: int, min_reference: int, tail_index: float,
            unit: float = 1.0) -> np.ndarray:
    """``-log10`` of the empirical probability that an earlier value was at least ``u``.

    Ranked among the previous ``history - 1`` non-missing values, each counted as ``unit``
    reference rows (so the probability is per reference step of time, whatever the sampling:
    a record of the last month is as rare at one-minute rows as at five-minute ones); beyond
    the largest of them a
    Pareto tail with index ``tail_index`` continues the estimate (capped at 3 decades, so a
    collapse of the spread cannot produce absurd figures). 0 where ``u`` is missing or fewer
    than ``min_reference`` earlier values exist.
    """
    series = pd.Series(u)
    rolling = series.rolling(history, min_periods=min_reference + 1)
    rank = rolling.rank(method="min").to_numpy()  # 1 + earlier values strictly below u
    count = rolling_count(u, history, min_reference + 1)
    at_least = count - rank  # earlier values >= u
    earlier = count - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        surprise = -np.log10((at_least * unit + 1) / (earlier * unit + 1))
        record = _past(rolling_max(u, history - 1, min_reference))
        beyond = np.where((at_least == 0) & (record > 0),
                          np.minimum(tail_index * np.log10(np.maximum(u / record, 1.0)), 3.0), 0.0)
    return np.nan_to_num(surprise + np.nan_to_num(beyond), nan=0.0, posinf=0.0, neginf=0.0)


def _suppress(surprise: np.ndarray, present: np.ndarray, refractory: int,
              min_gain: float) -> tuple[np.ndarray, int, float]:
    """Keep a row's surprise only where it opens or clearly escalates an alarm; 0 elsewhere.

    A row is reported when its surprise beats every surprise of the previous ``refractory``
    rows and, if the last report is within ``refractory`` rows, beats that report by
    ``min_gain``. Depends on earlier rows only, and never on a threshold. Also returns the
    last report's row and surprise (the live state's memory of it).
    """
    recent = _past(rolling_max(surprise, refractory, 1))
    candidates = np.flatnonzero(present & (surprise > np.nan_to_num(recent, nan=0.0)) & (surprise > 0))
    reported = np.zeros(len(surprise))
    last_row, last_value = -refractory, -np.inf
    for i in candidates:
        if i - last_row >= refractory or surprise[i] > last_value + min_gain:
            reported[i] = surprise[i]
            last_row, last_value = i, surprise[i]
    return reported, int(last_row), float(last_value)


# --------------------------------------------------------------------------------------------
# The same detector as a member of the service's ensemble


_SPEC_ROWS: "weakref.WeakKeyDictionary[StreamingMember, dict]" = weakref.WeakKeyDictionary()


def _spec_rows(member: "StreamingMember", metrics: Sequence[str], metric_of: np.ndarray
               ) -> tuple[np.ndarray, ...]:
    """Per row (of metric ``metrics[metric_of[k]]``), what the member's gate and raw score
    read of its metric's spec: the direction code, ``spread_floor``'s minimum spread and
    Poisson flag, and the minutes a bucket's mean stands for (a count's bucket mean is its
    total over them). The per-metric values are made once per member and metrics (a window
    asks again)."""
    known = _SPEC_ROWS.setdefault(member, {})
    key = tuple(metrics)
    if key not in known:
        from detection.metrics import spec_for

        specs = [spec_for(metric, member.specs) for metric in key]
        width = getattr(member, "width_", None)
        known[key] = (
            np.array([DIRECTION_CODES[s.direction] for s in specs], dtype=np.int8),
            np.array([s.min_spread for s in specs], dtype=float),
            np.array([s.count for s in specs], dtype=bool),
            np.array([width / member.step_ if width is not None and s.count else 1.0 for s in specs]))
    return tuple(values[metric_of] for values in known[key])


class StreamingMember:
    """``StreamingUnivariateDetector`` per metric, as a member of ``ServiceDetector``.

    This is how the detector that ``aiops benchmark nab`` replays watches a service: the same
    class with the same settings. ``fit`` runs it over each metric's training history as one
    stream (vectorised; those are the training scores) and keeps its memory at the end, a
    ``StreamState`` per metric (plain arrays and numbers: ``state_dict``/``from_state_dict``).
    ``score`` then moves that memory on one row at a time: the watcher's tick costs one
    update per metric and new minute, never a replay of the history.

    Its raw score is the row's surprise (``-log10`` tail probability, before the alarm
    suppression, which is the watcher's grouping's job here) when the residual lies in the
    metric's bad direction by more than the metric's floor (``spread_floor``, as for every
    member), 0 otherwise: a CPU drop after a scale-up, or 20.3% after a month at 20%, is no
    symptom. (The surprise itself is 0 where the row is less than the detector's ``min_z``
    spreads off: a bucket of ordinary noise after an error storm is no symptom either.)

    Which rows ``score(frame)`` judges, and from what memory:

    * rows later than any the member has judged continue the live stream (the watcher's path:
      each tick's window overlaps the last one by 15 minutes and adds a minute);
    * rows it has judged already, with the same value, get the score they got (so the
      overlapping windows, and the verification's, are consistent);
    * a frame the live stream has passed and whose values it did not see (a what-if, a
      replay of another scenario) is judged on a copy of the memory at the end of training,
      and the live stream is left as it was; within such a frame, rows that arrive late or
      changed after they were judged get NaN (the member is silent on them: the stream
      judged what it saw);
    * missing values are skipped (a minute CloudWatch has not published yet is judged when
      it arrives).

    ``reset()`` puts the live stream back at the end of training (independent scenarios in
    time order, as the detector benchmark plays them). Pickling keeps the fitted memory only.

    Parameters
    ----------
    specs : metric specs (directions).
    **params : StreamingUnivariateDetector settings (its defaults otherwise).
    """

    CACHE_ROWS = 1024  # judged rows (or buckets) remembered per metric (the read window is 16)
    CARRY_SHARE = 0.5  # a minute carries its bucket's score while it shows half the bucket's excess

    def __init__(self, specs: dict | None = None, resolution: str | None = RESOLUTION, **params):
        self.specs = specs
        self.resolution = resolution
        self.params = params

    def _detector(self) -> StreamingUnivariateDetector:
        return StreamingUnivariateDetector(**self.params)

    # the ensemble's helpers are imported where used: ``aiops detect`` and the NAB replay load
    # this module alone, and statsmodels (behind mask_ranges) would double their start-up
    def fit(self, history: pd.DataFrame, exclude: list[tuple] | None = None) -> "StreamingMember":
        """Score the training history as one stream per metric and keep each stream's memory."""
        from detection.frames import MetricFrameError, check_metric_frame
        from detection.seasonal import mask_ranges

        if "context" in self.params:
            raise ValueError("the streaming member keeps a state, not a context: drop 'context' "
                             "from the ensemble's streaming settings")
        self._detector()._validate()
        frame = mask_ranges(check_metric_frame(history, min_rows=2), exclude)
        head = frame.index[:SAMPLING_ROWS + 1]
        step = (head[1:] - head[:-1]).median() if len(head) > 1 else pd.Timedelta(0)
        covered = frame.index[-1] - frame.index[0] + step  # the last row stands for one step
        if covered < MIN_MEMBER_HISTORY:
            # its training scores calibrate it, and it judges by rarity against its history: a
            # history without every day of the week makes the first unseen day type look unheard of
            raise MetricFrameError(f"the streaming member needs {MIN_MEMBER_HISTORY.days} days of history "
                                   f"(a week before every day it judges); this one covers {covered}")
        self.metrics_ = list(frame.columns)
        self.step_ = float(step.total_seconds())
        width = _duration(self.resolution, "resolution") if self.resolution is not None else 0.0
        self.width_ = width if width > self.step_ else None  # data this coarse is judged as it is
        coarse, rows = self._coarse(frame)
        stamps, take = pd.DatetimeIndex(coarse.index), np.maximum(rows, 0)
        scores, states = {}, {}
        for metric in self.metrics_:
            detector = self._detector()
            x = coarse[metric].to_numpy(dtype=float)
            detector.fit_predict_stream(x, stamps)
            evidence = detector.evidence_
            residual = evidence["residual"].to_numpy()
            raw = self._raw(metric, x, residual, evidence["surprise"].to_numpy())
            fine = frame[metric].to_numpy(dtype=float)
            if self.width_ is None:
                scores[metric] = raw
            else:  # each minute carries its bucket's score while it shows the symptom itself
                keep = (rows >= 0) & ~np.isnan(fine)
                scores[metric] = self._gate(metric, fine, self._spread(raw, take, keep),
                                            self._spread(x - residual, take, keep),
                                            self._spread(x, take, keep))
            try:
                states[metric] = detector._state_data()
            except ValueError as exc:  # too few values to measure the sampling period
                raise MetricFrameError(f"the streaming member cannot follow {metric}: {exc}") from None
        self.training_scores_ = pd.DataFrame(scores, index=frame.index)
        # plain data (numbers, lists, float arrays of the rows seen): what a model bundle stores
        self.states_ = states
        self.reset()
        return self

    def _coarse(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The frame the detector judges (the complete buckets' means, stamped with their
        starts, or the frame itself when it is not bucketed), and for each row of ``frame``
        the position in it of the bucket whose score the row carries (-1: none)."""
        if self.width_ is None:
            return frame, np.arange(len(frame))
        seconds = _seconds(pd.DatetimeIndex(frame.index))
        starts = _bucket(seconds, self.width_)
        complete = seconds[-1] >= starts[-1] + self.width_ - self.step_  # the last row closes it
        means = frame.groupby(starts).mean()
        if not complete:
            means = means.iloc[:-1]
        keys = means.index.to_numpy()
        carried = self._closing(seconds)
        rows = np.full(len(carried), -1)
        if len(keys):
            positions = np.minimum(np.searchsorted(keys, carried), len(keys) - 1)
            rows = np.where(keys[positions] == carried, positions, -1)
        index = pd.to_datetime(keys.astype("int64"), unit="s", utc=True)
        return means.set_axis(index), rows

    def _closing(self, seconds: np.ndarray) -> np.ndarray:
        """The start of the latest bucket whose last row is at or before each timestamp: the
        member's judgement a minute carries (a bucket is judged at its last row and holds
        until the next one closes, so every minute has one, at most a bucket old)."""
        return _bucket(seconds + self.step_, self.width_) - self.width_

    @staticmethod
    def _spread(values: np.ndarray, take: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Each row's carried bucket value (``values[take]``) where it has one and is not
        missing itself (``keep``); NaN elsewhere."""
        return np.where(keep, values[take], np.nan) if len(values) else np.full(len(keep), np.nan)

    def _raw(self, metric: str, x: np.ndarray, residual: np.ndarray, surprise: np.ndarray) -> np.ndarray:
        """The member's raw score: the surprise where the value is off the bad way beyond the floor."""
        return self._raw_rows([metric], np.zeros(len(x), dtype=np.intp), x, residual, surprise)

    def _raw_rows(self, metrics: Sequence[str], metric_of: np.ndarray, x: np.ndarray,
                  residual: np.ndarray, surprise: np.ndarray) -> np.ndarray:
        """``_raw`` of rows of several metrics at once (row ``k`` is of ``metrics[metric_of[k]]``)."""
        # a move smaller than the metric's floor (the spread every member grants it: 0.5 points of
        # CPU, one error, 10 ms) is no symptom, however rare it is for a metric that stood still.
        # A count's bucket mean stands for the bucket's total: one error in five minutes is one
        # error, so its floor is the total's floor over the minutes it holds
        from detection.kernels import streaming_raw

        direction, min_spread, count, minutes = _spec_rows(self, metrics, metric_of)
        return streaming_raw(*(np.ascontiguousarray(a, dtype=float) for a in (x, residual, surprise)),
                             direction, min_spread, count, minutes)

    # ----------------------------------------------------------------------------- live state
    # The live streams are not the member's fitted state: they live beside it (``_LIVE``), so a
    # bundle, a pickle or a copy of a fitted member holds the memory at the end of training only.
    def _live(self) -> "_Live":
        live = _LIVE.get(self)
        if live is None:
            self._check_fitted()
            live = _LIVE[self] = _Live(self.states_)
        return live

    def reset(self) -> "StreamingMember":
        """Put the live stream back at the end of the training history."""
        _LIVE.pop(self, None)
        return self

    def live_end(self) -> pd.Timestamp:
        """The latest time every metric's live stream has judged (its last row, or its last
        bucket's end)."""
        self._check_fitted()
        live = self._live()
        seconds = min(live.live(metric).last_seconds for metric in self.metrics_)
        width = getattr(self, "width_", None)
        if width is not None:  # a bucket is stamped with its start and judged at its last row
            seconds += width - self.step_
        return pd.Timestamp(int(seconds), unit="s", tz="UTC")

    def state_dict(self) -> dict:
        """The fitted memory as plain data: ``{metric: StreamState.to_dict(compact=True)}``
        (numbers, lists and float arrays; JSON for the rest, ``.npz`` for the arrays)."""
        self._check_fitted()
        return self.states_

    @classmethod
    def from_state_dict(cls, states: dict, specs: dict | None = None, **params) -> "StreamingMember":
        """A fitted member from ``state_dict()`` (its training scores are not kept)."""
        from detection.streaming_state import StreamState

        member = cls(specs=specs, **params)
        member.states_ = {metric: StreamState.from_dict(data).to_dict(compact=True)
                          for metric, data in states.items()}
        member.metrics_ = list(member.states_)
        return member

    def _check_fitted(self) -> None:
        if not hasattr(self, "states_"):
            raise RuntimeError("StreamingMember is not fitted; call fit(history) first")

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw scores per metric of ``frame`` (see the class docstring for which memory)."""
        from detection.frames import check_known_metrics

        self._check_fitted()
        frame = check_known_metrics(frame, self.metrics_, "streaming member")
        seconds = _seconds(pd.DatetimeIndex(frame.index)) if len(frame) else np.zeros(0)
        with _LIVE_LOCK:
            scores = {metric: self._score_metric(metric, frame[metric].to_numpy(dtype=float), seconds)
                      for metric in frame.columns}
        return pd.DataFrame(scores, index=frame.index)

    def _score_metric(self, metric: str, x: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Raw scores of one metric's rows: each row's own, or the bucket it carries (``_closing``)."""
        width = getattr(self, "width_", None)  # bundles made before buckets judge every row
        if width is None or not len(x):
            return self._score_points(metric, x, seconds)[0]
        means, starts = self._buckets(x, seconds, width)
        raw, expected = self._score_points(metric, means, starts)
        carried = self._closing(seconds)
        positions = np.minimum(np.searchsorted(starts, carried), max(len(starts) - 1, 0))
        inside = (starts[positions] == carried) if len(starts) else np.zeros(len(x), dtype=bool)
        out = np.where(inside, raw[positions] if len(raw) else np.nan, np.nan)
        centre = np.where(inside, expected[positions] if len(raw) else np.nan, np.nan)
        level = np.where(inside, means[positions] if len(raw) else np.nan, np.nan)
        if not inside.all():  # a bucket judged before this window: what it got then
            seen = self._live().seen_of(metric)
            for k in np.flatnonzero(~inside):
                level[k], out[k], centre[k] = seen.get(float(carried[k]), (np.nan, np.nan, np.nan))
        return self._gate(metric, x, out, centre, level)

    def _gate(self, metric: str, x: np.ndarray, carried: np.ndarray, expected: np.ndarray,
              level: np.ndarray) -> np.ndarray:
        """A minute keeps the score of the bucket it carries only while it still shows the
        symptom itself: off the bad way from the bucket's expectation beyond the metric's floor
        (for a count, its one-minute floor: one stray error is no symptom) and by at least
        ``CARRY_SHARE`` of the bucket's own excess (``level``, its mean, minus the expectation).
        A symptom that has ended is not carried into the minutes after it: a fixed service
        would otherwise look sick for up to a bucket more, and after an overload fixed by hand
        (two minutes at 48% CPU in a bucket, then 34-36% against 34%) the minutes a little
        above normal carried the overload's score and opened a second incident."""
        return self._gate_rows([metric], np.zeros(len(x), dtype=np.intp), x, carried, expected, level)

    def _gate_rows(self, metrics: Sequence[str], metric_of: np.ndarray, x: np.ndarray,
                   carried: np.ndarray, expected: np.ndarray, level: np.ndarray) -> np.ndarray:
        """``_gate`` of rows of several metrics at once (row ``k`` of every array is of
        ``metrics[metric_of[k]]``; the arrays may have more axes after the rows')."""
        from detection.kernels import streaming_gate

        direction, min_spread, count, _ = _spec_rows(self, metrics, metric_of)
        rows = (len(x), int(np.prod(np.shape(x)[1:])))   # the later axes as one
        out = streaming_gate(*(np.ascontiguousarray(a, dtype=float).reshape(rows)
                               for a in (x, carried, expected, level)),
                             direction, min_spread, count, float(self.CARRY_SHARE))
        return out.reshape(np.shape(x))

    def _buckets(self, x: np.ndarray, seconds: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
        """The means and starts of the window's buckets that can be judged: wholly inside the
        window, and closed (a value of the metric at or after the bucket's last row has
        arrived; a minute CloudWatch has not published yet keeps it open)."""
        starts_of_rows = _bucket(seconds, width)
        starts, rows = np.unique(starts_of_rows, return_inverse=True)
        sums = np.bincount(rows, weights=np.nan_to_num(x), minlength=len(starts))
        counts = np.bincount(rows, weights=~np.isnan(x), minlength=len(starts))
        present = seconds[~np.isnan(x)]
        latest = present.max() if len(present) else -np.inf
        judged = (latest >= starts + width - self.step_) & (starts >= seconds[0]) & (counts > 0)
        return sums[judged] / counts[judged], starts[judged]

    def _score_points(self, metric: str, x: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores of rows (or bucket means) and the expectation each was judged against."""
        streams = self._live()
        live = streams.live(metric)
        seen = streams.seen_of(metric)
        present = np.flatnonzero(~np.isnan(x))
        end = live.last_seconds
        continues = any(seconds[k] > end or seen.get(seconds[k], (None,))[0] == x[k] for k in present)
        if not continues and len(present):
            # a frame the live stream has passed and never saw: judged after training, aside
            return self._judge(metric, x, seconds, present, streams.fitted(metric), None)
        try:
            return self._judge(metric, x, seconds, present, live, seen)
        finally:
            streams.keep(metric, live)

    def _judge(self, metric: str, x: np.ndarray, seconds: np.ndarray, present: np.ndarray,
               state, seen: dict | None) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``state`` the rows after its end; the raw score of every row of the frame, and
        its expectation (value minus residual)."""
        surprise = np.full(len(x), np.nan)
        residual = np.full(len(x), np.nan)
        done = np.full(len(x), np.nan)
        expected = np.full(len(x), np.nan)
        for k in present:
            at = float(seconds[k])
            if at > state.last_seconds:
                row = state.update(float(x[k]), at)
                surprise[k], residual[k] = row.surprise, row.residual
                if seen is not None:
                    seen[at] = (float(x[k]), np.nan, np.nan)  # scored below
            elif seen is not None and at in seen and seen[at][0] == x[k]:
                _, done[k], expected[k] = seen[at]
        fresh = ~np.isnan(surprise)
        out = done
        if fresh.any():
            out[fresh] = self._raw(metric, x[fresh], residual[fresh], surprise[fresh])
            expected[fresh] = x[fresh] - residual[fresh]
            if seen is not None:
                for k in np.flatnonzero(fresh):
                    seen[float(seconds[k])] = (float(x[k]), float(out[k]), float(expected[k]))
                seen.trim(self.CACHE_ROWS)
        return out, expected


class _Seen(dict):
    """One metric's judged rows (or buckets): timestamp -> (value, raw score, expectation),
    oldest first."""

    def trim(self, limit: int) -> None:
        while len(self) > limit:
            del self[next(iter(self))]


class _Live:
    """A fitted member's live streams: per metric the state moved on by the rows judged, and
    the scores those rows got (``StreamingMember.CACHE_ROWS`` of them). A metric judged with
    other services' (``score_together``) lives in their shared stack instead (its slot)."""

    def __init__(self, states: dict):
        self.states = states
        self.streams: dict[str, object] = {}
        self.seen: dict[str, _Seen] = {}
        self.slots: dict[str, tuple[_Together, int]] = {}

    def fitted(self, metric: str):
        """A fresh copy of the state at the end of training."""
        from detection.streaming_state import StreamState

        return StreamState.from_dict(self.states[metric])

    def live(self, metric: str):
        """The live state (a view of its stack's rows, for a stacked metric: ``keep`` it after)."""
        if metric in self.slots:
            together, n = self.slots[metric]
            return together.stack.state(n)
        if metric not in self.streams:
            self.streams[metric] = self.fitted(metric)
        return self.streams[metric]

    def keep(self, metric: str, state) -> None:
        """After ``live(metric)`` moved: a stacked metric's numbers go back to its stack."""
        if metric in self.slots:
            together, n = self.slots[metric]
            together.stack.put(n, state)

    def seen_of(self, metric: str):
        if metric in self.slots:
            return _StackedSeen(*self.slots[metric])
        return self.seen.setdefault(metric, _Seen())

    def move_to(self, metric: str, together: "_Together", n: int) -> None:
        """Hand the metric's live state and judged rows to a stack (already copied into row ``n``)."""
        for at, judged in list(self.seen_of(metric).items()):
            together.remember(at, np.array([n]), *(np.array([v]) for v in judged))
        self.streams.pop(metric, None)
        self.seen.pop(metric, None)
        self.slots[metric] = (together, n)


class _StackedSeen:
    """One stacked series' judged buckets, kept in its stack's shared table (``_Seen``'s use)."""

    def __init__(self, together: "_Together", n: int):
        self.together, self.n = together, n

    def get(self, at: float, default=None):
        row = self.together.judged.get(at)
        if row is None or np.isnan(row[self.n, 0]):
            return default
        return float(row[self.n, 0]), float(row[self.n, 1]), float(row[self.n, 2])

    def __contains__(self, at: float) -> bool:
        return self.get(at) is not None

    def __getitem__(self, at: float) -> tuple[float, float, float]:
        judged = self.get(at)
        if judged is None:
            raise KeyError(at)
        return judged

    def __setitem__(self, at: float, judged: tuple[float, float, float]) -> None:
        self.together.remember(at, np.array([self.n]), *(np.array([v]) for v in judged))

    def items(self):
        return [(at, pair) for at in list(self.together.judged) if (pair := self.get(at)) is not None]

    def trim(self, limit: int) -> None:
        self.together.trim(limit)


class _Together:
    """Members judged together: their metrics' live states rows of one ``StreamStack``, and the
    buckets judged, by start: series x (value, raw score, expectation) (NaN: not judged)."""

    BUCKETS = 64  # judged buckets remembered: 5 hours of 5-minute buckets, 1.5 kB a series

    def __init__(self, members: Sequence["StreamingMember"], metrics: list[str]):
        from detection.streaming_stack import StreamStack

        self.metrics = list(metrics)
        self.lives = [member._live() for member in members]
        first = self.lives[0].live(self.metrics[0])
        self.stack = StreamStack(first.config, len(members) * len(metrics))
        self.judged: dict[float, np.ndarray] = {}
        for s, live in enumerate(self.lives):
            for j, metric in enumerate(self.metrics):
                n = s * len(self.metrics) + j
                state = live.live(metric)
                self.stack.fill(n, state)
                live.move_to(metric, self, n)

        self.position = {id(live): s for s, live in enumerate(self.lives)}

    def rows_of(self, members: Sequence["StreamingMember"], metrics: list[str]) -> np.ndarray | None:
        """The stack's series of these members' metrics (member by member, metric by metric),
        or None if one of them is not (or no longer: reset, moved) in this stack."""
        if list(metrics) != self.metrics:
            return None
        found = []
        for member in members:
            live = _LIVE.get(member)
            s = self.position.get(id(live)) if live is not None else None
            if s is None or live.slots.get(self.metrics[0], (None,))[0] is not self:
                return None
            found.append(s)
        return (np.array(found)[:, None] * len(self.metrics) + np.arange(len(self.metrics))).ravel()

    def fitted(self):
        """The members' memories at the end of training, stacked like the live ones (made on
        the first window that needs them: one the live streams passed without seeing it)."""
        if getattr(self, "_fitted", None) is None:
            from detection.streaming_stack import StreamStack

            self._fitted = StreamStack(self.stack.config, len(self.stack))
            for s, live in enumerate(self.lives):
                for j, metric in enumerate(self.metrics):
                    self._fitted.fill(s * len(self.metrics) + j, live.fitted(metric))
        return self._fitted

    def remember(self, at: float, rows: np.ndarray, values: np.ndarray, scores: np.ndarray,
                 expected: np.ndarray) -> None:
        table = self.judged.get(at)
        if table is None:
            table = self.judged[at] = np.full((len(self.stack), 3), np.nan)
        table[rows, 0], table[rows, 1], table[rows, 2] = values, scores, expected

    def trim(self, limit: int = 0) -> None:
        """Keep the latest ``BUCKETS`` judged buckets (a window and a verification need four)."""
        while len(self.judged) > self.BUCKETS:
            del self.judged[next(iter(self.judged))]


_LIVE: "weakref.WeakKeyDictionary[StreamingMember, _Live]" = weakref.WeakKeyDictionary()
# The live streams (and the stacks they share) move one scoring at a time: the API scores in a
# thread pool, the watcher in its own thread, and a what-if's trial updates are put back after
# it; two of them interleaved would judge a bucket twice or restore over another's update.
_LIVE_LOCK = threading.RLock()


# --------------------------------------------------------------------------------------------
# Many services' members at once: the fleet's tick

def score_together(members: np.ndarray, metrics: list[str], values: np.ndarray,
                   index: pd.DatetimeIndex) -> np.ndarray:
    """Raw member scores (services x rows x metrics) of many services' windows on one index, as
    each member's ``score`` gives them, their live streams moved as one ``StreamStack``.

    ``members``: fitted ``StreamingMember``, the same ones in the same order each tick (the
    stack is made on first use, and again only when they change or one is ``reset``);
    ``values``: services x rows x metrics. Members that judge their own rows (not buckets),
    or buckets of different widths, are scored one by one.
    """
    with _LIVE_LOCK:
        return _score_together(members, metrics, values, index)


def _score_together(members: np.ndarray, metrics: list[str], values: np.ndarray,
                    index: pd.DatetimeIndex) -> np.ndarray:
    first = members[0]
    width = getattr(first, "width_", None)
    alike = width is not None and all(
        getattr(m, "width_", None) == width and m.step_ == first.step_ and m.specs == first.specs
        and list(m.metrics_) == list(metrics) for m in members)
    if not alike:
        return np.stack([m.score(pd.DataFrame(values[s], index=index, columns=metrics)).to_numpy(dtype=float)
                         for s, m in enumerate(members)])
    together, series = _together(members, metrics)
    services, length, count = values.shape
    flat = np.ascontiguousarray(values.transpose(0, 2, 1)).reshape(services * count, length)
    scores = _judge_buckets(first, together, series, flat, _seconds(index))
    return np.where(np.isnan(flat), np.nan, scores).reshape(services, count, length).transpose(0, 2, 1)


def _together(members: Sequence["StreamingMember"], metrics: list[str]) -> tuple["_Together", np.ndarray]:
    """The stack these members' live streams are rows of (made, and the streams moved into
    it, when they are not all in one yet), and their rows in it. Under ``_LIVE_LOCK``."""
    live = _LIVE.get(members[0])
    together = live.slots[metrics[0]][0] if live is not None and metrics[0] in live.slots else None
    series = together.rows_of(members, metrics) if together is not None else None
    if series is None:
        together = _Together(members, metrics)
        series = np.arange(len(members) * len(metrics))
    return together, series


def stack_together(members: Sequence["StreamingMember"], metrics: list[str]) -> None:
    """Stack these members' live streams and fitted memories now, as the first
    ``score_together`` of them (or of a window the live streams passed) would: a server does it
    at start-up, so its first request is not the one that waits for it."""
    first = members[0]
    if getattr(first, "width_", None) is None:   # judged one by one: nothing to stack
        return
    with _LIVE_LOCK:
        together, _ = _together(members, metrics)
        together.fitted()


def _judge_buckets(member: StreamingMember, together: _Together, rows: np.ndarray, flat: np.ndarray,
                   seconds: np.ndarray) -> np.ndarray:
    """``StreamingMember._score_metric`` for many stacked series at once (row ``k`` of ``flat``
    is the stack's series ``rows[k]``): each row's carried bucket score."""
    width, step = member.width_, member.step_
    stack, count = together.stack, len(together.metrics)
    starts, inverse = np.unique(_bucket(seconds, width), return_inverse=True)
    present = ~np.isnan(flat)
    latest = np.where(present, seconds[None, :], -np.inf).max(axis=1)
    bucket_scores = np.full((len(flat), len(starts)), np.nan)
    bucket_expected = np.full((len(flat), len(starts)), np.nan)
    bucket_means = np.full((len(flat), len(starts)), np.nan)
    judged_in = np.zeros((len(flat), len(starts)), dtype=bool)
    judged_any = np.zeros(len(flat), dtype=bool)
    continues = np.zeros(len(flat), dtype=bool)
    metric_of = np.arange(len(flat)) % count
    for b, start in enumerate(starts.tolist()):
        columns = inverse == b
        counts = present[:, columns].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(present[:, columns], flat[:, columns], 0.0).sum(axis=1) / counts
        judged = (latest >= start + width - step) & (start >= seconds[0]) & (counts > 0)
        if not judged.any():
            continue
        judged_in[:, b] = judged
        judged_any |= judged
        bucket_means[:, b] = means
        new = judged & (start > stack.last_seconds()[rows])
        known = together.judged.get(start)
        known = known[rows] if known is not None else None
        same = judged & ~new & (known[:, 0] == means if known is not None else False)
        continues |= new | same
        if known is not None:
            bucket_scores[same, b], bucket_expected[same, b] = known[same, 1], known[same, 2]
        fresh = np.flatnonzero(new)
        if len(fresh):
            surprise, residual = stack.update(rows[fresh], means[fresh], start)
            raw = member._raw_rows(together.metrics, metric_of[fresh], means[fresh], residual, surprise)
            bucket_scores[fresh, b] = raw
            bucket_expected[fresh, b] = means[fresh] - residual
            together.remember(start, rows[fresh], means[fresh], raw, bucket_expected[fresh, b])
    together.trim()
    aside = np.flatnonzero(judged_any & ~continues)
    if len(aside):  # windows the live streams passed without seeing them: judged from training's end
        bucket_scores[aside], bucket_expected[aside] = _judge_aside(
            member, together, rows[aside], flat[aside], seconds, starts, inverse, judged_in[aside],
            aside % count)
    carried = member._closing(seconds)
    out = np.full(flat.shape, np.nan)
    centre = np.full(flat.shape, np.nan)
    level = np.full(flat.shape, np.nan)
    for c in np.unique(carried).tolist():
        known = together.judged.get(c)  # what the bucket got when it was judged, in any window
        nothing = np.full(len(flat), np.nan)
        mean = known[rows, 0] if known is not None else nothing
        value = known[rows, 1] if known is not None else nothing
        expected = known[rows, 2] if known is not None else nothing
        b = int(np.searchsorted(starts, c))
        if b < len(starts) and starts[b] == c:  # judged from this window, where it could be
            mean = np.where(judged_in[:, b], bucket_means[:, b], mean)
            value = np.where(judged_in[:, b], bucket_scores[:, b], value)
            expected = np.where(judged_in[:, b], bucket_expected[:, b], expected)
        out[:, carried == c] = value[:, None]
        centre[:, carried == c] = expected[:, None]
        level[:, carried == c] = mean[:, None]
    return member._gate_rows(together.metrics, metric_of, flat, out, centre, level)


def _judge_aside(member: StreamingMember, together: _Together, rows: np.ndarray, flat: np.ndarray,
                 seconds: np.ndarray, starts: np.ndarray, inverse: np.ndarray, judged_in: np.ndarray,
                 metric_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bucket scores (and expectations) of windows judged aside: on the stacked memories at
    the end of training, each bucket a trial update that is put back afterwards
    (``StreamStack.mark``/``restore``), so neither the live streams nor the fitted memories move."""
    fitted = together.fitted()
    scores = np.full((len(rows), len(starts)), np.nan)
    expected = np.full((len(rows), len(starts)), np.nan)
    marks = []
    present = ~np.isnan(flat)
    moved = np.zeros(len(rows), dtype=bool)   # by a trial update of an earlier bucket
    try:
        for b, start in enumerate(starts.tolist()):
            columns = inverse == b
            fresh = np.flatnonzero(judged_in[:, b] & (start > fitted.last_seconds()[rows]))
            if not len(fresh):
                continue
            means = (np.where(present[fresh][:, columns], flat[fresh][:, columns], 0.0).sum(axis=1)
                     / present[fresh][:, columns].sum(axis=1))
            surprise, residual = np.zeros(len(fresh)), np.full(len(fresh), np.nan)
            # a series' last bucket, on the fitted state itself: judged without moving it
            last = ~moved[fresh] & ~judged_in[fresh, b + 1:].any(axis=1)
            surprise[last], residual[last], done = fitted.trial(rows[fresh[last]], means[last], start)
            last[last] = done
            update = ~last
            if update.any():
                marks.append(fitted.mark(rows[fresh[update]]))
                surprise[update], residual[update] = fitted.update(rows[fresh[update]], means[update], start)
                moved[fresh[update]] = True
            expected[fresh, b] = means - residual
            scores[fresh, b] = member._raw_rows(together.metrics, metric_of[fresh], means, residual, surprise)
    finally:
        for mark in reversed(marks):
            fitted.restore(mark)
    return scores, expected



def stacked_state_bytes() -> int:
    """Bytes of the live states stacked in this process (``score_together``'s stacks)."""
    stacks = {id(together): together.stack for live in list(_LIVE.values())
              for together, _ in live.slots.values()}
    return sum(a.nbytes for stack in stacks.values() for a in stack.arrays.values())
