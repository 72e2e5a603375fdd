"""The compiled loops give what the numpy code they replace gives, value for value."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from detection import kernels
from detection.forest import CompiledForest


def test_interpolation_is_numpys_both_ways() -> None:
    rng = np.random.default_rng(0)
    xp = np.sort(rng.normal(size=(6, 50)), axis=1)
    xp[2, 10:20] = xp[2, 10]                                  # repeated quantiles
    xp[3, :] = 1.5                                            # one value only
    fp = np.linspace(0.0, 1.0, 50)
    x = np.concatenate([rng.normal(size=(6, 30)) * 2, xp[:, :5], xp[:, -3:], np.full((6, 1), np.nan),
                        np.full((6, 1), 1.5)], axis=1)
    for r in range(6):
        want = np.interp(x[r], xp[r], fp)
        np.testing.assert_array_equal([kernels._interp_one(v, xp[r], fp) for v in x[r]], want,
                                      err_msg=f"row {r}")
        mirrored = np.interp(-x[r], -xp[r][::-1], -fp[::-1])      # read backwards in place
        np.testing.assert_array_equal([kernels._interp_one(-v, xp[r], fp, True) for v in x[r]], mirrored,
                                      err_msg=f"row {r}, mirrored")


def test_at_least_counts_and_largest_skip_missing_entries() -> None:
    rng = np.random.default_rng(1)
    ring = rng.exponential(size=(5, 300))
    ring[1, 100:] = np.nan
    ring[4, :] = np.nan
    rows = np.array([3, 1, 4, 1])
    u = np.array([1.0, 0.5, 0.2, np.nan])
    count, largest = kernels.count_at_least(ring, rows, u)
    want = [np.count_nonzero(ring[r] >= v) for r, v in zip(rows, u, strict=True)]
    np.testing.assert_array_equal(count, want)
    np.testing.assert_array_equal(largest[:2], [np.nanmax(ring[3]), np.nanmax(ring[1])])
    assert largest[2] == -np.inf, "a ring with no value has no largest"


def test_the_stacked_forest_walk_gives_scikit_learns_scores() -> None:
    from detection.fleet import StackedForests

    rng = np.random.default_rng(2)
    forests, compiled = [], []
    for seed in range(2):
        train = rng.normal(size=(2000, 6)) * (1 + seed)
        forests.append(IsolationForest(n_estimators=40, random_state=seed).fit(train))
        compiled.append(CompiledForest.from_sklearn(forests[-1]))
    # a forest whose nodes are not in pre-order (one saved by another tool, say): the same walk
    first = compiled[0]
    n = first.left.shape[1]
    order = np.concatenate([[0], rng.permutation(np.arange(1, n))])
    new = np.argsort(order)
    moved = [np.where(a[:, order] >= 0, new[np.maximum(a[:, order], 0)], -1)
             for a in (first.left, first.right)]
    shuffled = CompiledForest(*moved, first.feature[:, order], first.threshold[:, order],
                              first.missing_left[:, order], first.leaf_depth[:, order],
                              first.denominator, first.n_features_in_)
    stacked = StackedForests([compiled[0], compiled[1], shuffled])
    X = (rng.normal(size=(3, 60, 6)) * 2.5).astype(np.float32)
    X[:, :5] = forests[0].estimators_[0].tree_.threshold[:5].astype(np.float32)[:, None]  # on the splits
    got = stacked.score_samples(X)
    for k, forest in enumerate([forests[0], forests[1], forests[0]]):
        np.testing.assert_allclose(got[k], forest.score_samples(X[k]), rtol=0, atol=1e-12, err_msg=str(k))
    some = stacked.of_services(np.array([2, 1]))
    np.testing.assert_array_equal(some.score_samples(X[[2, 1]]), got[[2, 1]])


def test_the_stacked_walk_sends_a_missing_feature_the_way_its_split_says() -> None:
    from detection.fleet import StackedForests

    rng = np.random.default_rng(5)
    fitted = CompiledForest.from_sklearn(
        IsolationForest(n_estimators=30, random_state=0).fit(rng.normal(size=(1000, 4))))
    sides = [CompiledForest(fitted.left, fitted.right, fitted.feature, fitted.threshold,
                            rng.random(fitted.left.shape) < share, fitted.leaf_depth,
                            fitted.denominator, fitted.n_features_in_) for share in (0.0, 0.5, 1.0)]
    X = rng.normal(size=(3, 40, 4)).astype(np.float32)
    X[:, ::3, 1] = np.nan
    X[:, ::5, 3] = np.nan
    got = StackedForests(sides).score_samples(X)
    for k, forest in enumerate(sides):
        np.testing.assert_allclose(got[k], forest.score_samples(X[k]), rtol=0, atol=1e-12, err_msg=str(k))
    assert not np.allclose(got[0], got[2])   # the side a missing value takes changes the score


def test_stacked_calibrators_give_each_calibrators_own_surprise_and_transform() -> None:
    from detection.fleet import _Calibrators
    from detection.postprocess import TailCalibrator

    rng = np.random.default_rng(5)
    fitted = []
    for s in range(3):
        train = np.abs(rng.standard_t(3, size=(5000, 4))) * (s + 1)
        train[:, 3] = np.round(train[:, 3])                     # many equal values: ties
        fitted.append(TailCalibrator().fit(train))
    x = np.abs(rng.standard_t(3, size=(3, 40, 4))) * 3
    x[:, 0, :] = 0.0                                            # the bottom of every table
    x[1, 1, 2] = np.nan
    x[2, 2, :] = 1e6                                            # far in every tail
    stacked = _Calibrators.of(fitted)
    for k in range(3):
        np.testing.assert_allclose(stacked.surprise(x)[k], fitted[k].surprise(x[k]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(stacked.transform(x)[k], fitted[k].transform(x[k]), rtol=0, atol=1e-12)
    some = stacked.of_services(np.array([2, 0]))                # a request for two of them
    np.testing.assert_allclose(some.surprise(x[[2, 0]])[0], fitted[2].surprise(x[2]), rtol=0, atol=1e-12)


def test_seasonal_centres_are_numpys_interpolation_and_mean() -> None:
    """The seasonal member's expected value: on one shared grid, np.interp of each curve at
    each used cycle, their mean summed in numpy's order (over 8 cycles numpy sums in eight
    running sums, then pairs them), or the curve at t itself when no cycle is used."""
    rng = np.random.default_rng(2)
    grid = np.sort(rng.uniform(0, 100, 40))
    grid[10:13] = grid[10]                                        # repeated grid points
    curves = rng.normal(50, 10, (7, 40)) * 10 ** rng.uniform(-3, 3, (7, 1))
    curves[3, 20:22] = np.nan                                     # a gap in one curve
    t = np.array([grid[0] - 1, grid[5], 37.3, grid[-1] + 5, np.nan, 61.0])
    for cycles in (3, 14):
        at = np.concatenate([rng.uniform(-10, 110, (len(t), cycles - 1)), grid[[10]].repeat(len(t))[:, None]],
                            axis=1)
        use = rng.random((len(t), cycles)) < 0.7
        use[1] = False                                            # no cycle used: the curve at t
        got = kernels.seasonal_centres(t, at, use, grid, curves)
        for c in range(len(curves)):
            vals = np.array([[np.interp(x, grid, curves[c]) for x in row] for row in at])
            total = (vals * use).sum(axis=1)
            count = use.sum(axis=1)
            own = np.interp(t, grid, curves[c])
            want = np.where(count > 0, 1.0 * total / np.maximum(count, 1), own)
            np.testing.assert_array_equal(got[c], want, err_msg=f"curve {c}, {cycles} cycles")


def _edgy(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values around a metric's floor, with zeros, negatives, NaN and both infinities."""
    values = rng.normal(0, 3, shape) * 10 ** rng.uniform(-2, 2, shape)
    flat = values.reshape(-1)
    picks = rng.choice(len(flat), size=len(flat) // 3, replace=False)
    flat[picks] = rng.choice([0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, 0.5], size=len(picks))
    return values


def _floors(centre, min_spread, count):
    """baseline.spread_floors(centre, 0.0, min_spread, count), as the members called it."""
    from detection.baseline import spread_floors

    return spread_floors(centre, 0.0, min_spread, count)


def test_the_streaming_gate_and_raw_score_are_the_numpy_steps_value_for_value() -> None:
    """What the streaming member's gate and raw score were in numpy (nan_to_num of the
    expectation and of the outward move, the spec's floor with the Poisson term for counts,
    a count's floor over the minutes its bucket mean stands for), against the kernels on
    values with NaN, infinities, zeros and negatives, every direction, counts or not."""
    from detection.zscore import by_directions

    rng = np.random.default_rng(5)
    rows = 60
    direction = rng.integers(0, 3, rows).astype(np.int8)
    min_spread = rng.choice([0.0, 0.5, 1.0, 10.0], rows)
    count = rng.random(rows) < 0.5
    x, carried, expected, level = (_edgy(rng, (rows, 7)) for _ in range(4))
    x[count] = np.abs(x[count])
    with np.errstate(invalid="ignore", over="ignore"):
        floor = _floors(np.nan_to_num(expected), min_spread[:, None], count[:, None])
        outward = np.nan_to_num(by_directions(x - expected, direction[:, None]), nan=0.0)
        symptom = np.nan_to_num(by_directions(level - expected, direction[:, None]), nan=0.0)
        shows = (outward > floor) & (outward >= 0.5 * symptom)
        kept = np.where(shows, carried, np.where(np.isnan(carried), np.nan, 0.0))
        want = np.where(np.isnan(x), np.nan, kept)
    got = kernels.streaming_gate(x, carried, expected, level, direction, min_spread, count, 0.5)
    np.testing.assert_array_equal(got, want)
    assert 0 < np.count_nonzero(got == carried) < np.count_nonzero(~np.isnan(carried))   # both ways

    minutes = np.where(count, 5.0, 1.0)
    x, residual, surprise = x[:, 0], _edgy(rng, (rows,)), np.abs(_edgy(rng, (rows,)))
    with np.errstate(invalid="ignore", over="ignore"):
        floor = _floors((x - residual) * minutes, min_spread, count) / minutes
        outward = np.nan_to_num(by_directions(residual, direction), nan=0.0)
        want = np.where(np.isnan(x), np.nan, np.where(outward > floor, surprise, 0.0))
    got = kernels.streaming_raw(x, residual, surprise, direction, min_spread, count, minutes)
    np.testing.assert_array_equal(got, want)
    assert 0 < np.count_nonzero(got == surprise) < np.count_nonzero(~np.isnan(x))


def test_the_forests_features_and_culprits_are_the_numpy_steps_value_for_value() -> None:
    """The isolation forest's features and culprit metric as the fleet scorer made them in
    numpy (the value or the centre where missing, the tolerant z or 0, the change with
    nan_to_num; the metric furthest off by its z or change, by numpy's argmax, named only when
    that far the bad way), against the kernel, with missing values, NaN and infinite
    features, ties and every direction."""
    from detection.zscore import by_directions

    rng = np.random.default_rng(7)
    s, r, m = 6, 9, 5
    values, tolerant_z, past = (_edgy(rng, (s, r, m)) for _ in range(3))
    centre = rng.normal(10, 3, (s, r, m))
    feature_centre, feature_scale = rng.normal(0, 1, (s, 3 * m)), np.abs(rng.normal(1, 0.5, (s, 3 * m)))
    feature_scale[0, 4] = 0.0                                       # a constant training feature
    values[1, 2] = values[1, 2, 0]                                  # every metric the same: ties
    tolerant_z[1, 2], past[1, 2] = 0.0, 0.0
    direction = rng.integers(0, 3, (s, m))
    values[2, 0], past[2, 0], tolerant_z[2, 0] = 5.0, 5.0, 1.5      # a row exactly at the training centre
    feature_centre[2, 1::3], feature_centre[2, 2::3] = 1.5, 0.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        missing = np.isnan(values)
        changes = np.nan_to_num(values - past, nan=0.0)
        want = np.stack([np.where(missing, centre, values), np.where(missing, 0.0, tolerant_z), changes],
                        axis=-1).reshape(s, r, 3 * m)
        kinds = ((want.reshape(s, r, m, 3) - feature_centre.reshape(s, 1, m, 3))
                 / feature_scale.reshape(s, 1, m, 3))[..., 1:]
        codes = direction[:, None, :]
        either = np.maximum.reduce([by_directions(kinds[..., i], np.zeros_like(codes)) for i in range(2)])
        bad = np.maximum.reduce([by_directions(kinds[..., i], codes) for i in range(2)])
        top = either.argmax(axis=2)
        pick = np.take_along_axis(bad, top[..., None], axis=2)[..., 0]
        best = np.take_along_axis(either, top[..., None], axis=2)[..., 0]
        culprits = np.where((pick > 0) & (pick >= best * (1 - 1e-9)), top, -1)
        walked = want.astype(np.float32)   # what the forest walks (beyond float32: infinite)
    features, culprit = kernels.forest_features(values, centre, tolerant_z, past, feature_centre,
                                                feature_scale, direction)
    np.testing.assert_array_equal(features, walked)
    np.testing.assert_array_equal(culprit, culprits)
    assert np.isnan(either).any() and (culprits == -1).any() and (culprits >= 1).any()
    assert culprit[2, 0] == -1                                      # nothing off: no culprit


def test_the_trials_median_by_selection_is_numpys_median() -> None:
    from detection.kernels import _median_in_place

    rng = np.random.default_rng(4)
    for size in [1, 2, 3, 4, 5, 47, 48, 49, 240, 241]:
        for draw in range(30):
            a = np.abs(rng.normal(size=size)) * 10.0 ** rng.integers(-3, 4)
            if draw % 3 == 0:
                a = np.round(a, 1)                      # ties
            if draw % 5 == 0:
                a[rng.random(size) < 0.3] = np.inf
            if draw % 7 == 0:
                a[:] = a[0]                             # all equal
            expected = np.median(a)
            assert _median_in_place(a.copy()) == expected, (size, draw)


def test_the_seasonal_deviation_is_the_numpy_steps_value_for_value() -> None:
    """Against ``_Group._seasonal``'s numpy: the hour's spread floored (relative, min_spread,
    Poisson for counts), the residual zeroed near the centre, in spreads, by direction; with
    NaN, infinities, zeros, negatives, a value on its centre and every direction."""
    from detection.baseline import spread_floors
    from detection.zscore import by_directions

    rng = np.random.default_rng(6)
    services, rows, metrics = 3, 7, 6
    centre = rng.normal(20, 30, (services * metrics, rows))
    centre[0, :3] = [np.nan, np.inf, 0.0]
    centre[4, 2] = -np.inf
    values = rng.normal(20, 40, (services, rows, metrics))
    values[0, 3, 0] = np.nan
    values[1, 1, 1] = np.inf
    values[2, 0, 3] = centre[2 * metrics + 3, 0] * (1 + 1e-10)      # within 1e-9 of its centre
    values[2, 1, 2] = centre[2 * metrics + 2, 1]                     # on it
    spread = rng.uniform(0, 5, (services, metrics, 24))
    spread[1, 2] = 0.0
    spread[2, 4, :5] = np.nan
    hour = rng.integers(0, 24, rows)
    min_spread = rng.uniform(0, 2, (services, metrics))
    count = rng.random((services, metrics)) < 0.5
    relative = np.array([0.0, 0.05, 0.2])
    direction = np.array([[0, 1, 2, 0, 1, 2]] * services)

    got = kernels.seasonal_deviation(centre, values, spread, hour, min_spread, count, relative, direction)

    mid = centre.reshape(services, metrics, rows).transpose(0, 2, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        width = spread_floors(mid, spread[:, :, hour].transpose(0, 2, 1), min_spread[:, None, :],
                              count[:, None, :], relative[:, None, None])
        resid = values - mid
        resid = np.where(np.abs(resid) <= 1e-9 * np.maximum(1.0, np.abs(mid)), 0.0, resid)
        resid = np.sign(resid) * np.maximum(np.abs(resid) - 0.0 * np.abs(mid), 0.0)
        want = by_directions(resid / width, direction[:, None, :])
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any() and np.isinf(got).any() and (got == 0).any()
