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
    ordered = np.sort(ring, axis=1)
    valid = (~np.isnan(ordered)).sum(axis=1)
    u = np.array([ordered[3, 17], 0.5, 0.2, np.nan])          # a value in the ring: counted too
    for got, want in zip(kernels.count_at_least_sorted(ordered, valid, rows, u),
                         kernels.count_at_least(ring, rows, u), strict=True):
        np.testing.assert_array_equal(got, want)


def test_the_forest_walk_gives_scikit_learns_path_lengths() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(2000, 6))
    forest = IsolationForest(n_estimators=40, random_state=0).fit(train)
    compiled = CompiledForest.from_sklearn(forest)
    X = np.concatenate([rng.normal(size=(50, 6)) * 3, np.full((1, 6), np.nan)]).astype(np.float32)
    arrays = [a[None] for a in (compiled.left, compiled.right, compiled.feature,
                                np.where(compiled.left >= 0, compiled.threshold, compiled.leaf_depth),
                                compiled.missing_left)]
    depths = kernels.forest_depths(*arrays, np.array([0, 0]), np.stack([X, X[::-1]]))
    want = -np.log2(-forest.score_samples(X[:-1])) * compiled.denominator
    np.testing.assert_allclose(depths[0, :-1], want, rtol=1e-12)
    np.testing.assert_array_equal(depths[1], depths[0][::-1])


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
