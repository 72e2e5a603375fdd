"""A fitted isolation forest as plain arrays, scored by a small vectorised evaluator.

scikit-learn's ``IsolationForest`` is the fitting engine; once fitted, everything its
``score_samples`` needs is a handful of per-node arrays (children, split feature, threshold,
which way a missing value goes) and, per leaf, the path length it stands for. ``CompiledForest``
holds exactly those arrays, padded to one node count so every tree is a row of one table, and
walks all trees for all rows at once with numpy:

* it can be stored as numbers (``models.codec`` writes its arrays to ``.npz``, loaded with
  ``allow_pickle=False``), so loading a model never runs code from the file;
* it scores as scikit-learn does: rows are cast to float32 as the trees were grown on, a value
  goes left when ``x <= threshold`` (and a missing one where the tree learnt to send it), and
  the score is ``-2 ** (-mean path length / c(max_samples))``: equal to scikit-learn's within
  floating-point summation order (``tests/unit/test_forest.py``: within 1e-12);
* forests of many services can be stacked (``stack``) and walked together, which is what a
  fleet-wide scorer needs: one pass instead of one call per service.
"""

from __future__ import annotations

import numpy as np

EULER_GAMMA = float(np.euler_gamma)


def average_path_length(n: np.ndarray) -> np.ndarray:
    """The average path length of an unsuccessful search in a binary tree of ``n`` samples
    (scikit-learn's ``_average_path_length``): 0 for n <= 1, 1 for n == 2."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class CompiledForest:
    """The arrays of a fitted isolation forest and its ``score_samples`` (higher = more normal,
    as scikit-learn's; ``IsolationForestDetector`` negates it once).

    Attributes
    ----------
    left, right : (trees, nodes) int32 child indices, -1 at a leaf (and in padding).
    feature : (trees, nodes) int32 input column of each split (already mapped through the
        tree's feature subset).
    threshold : (trees, nodes) float64 split thresholds.
    missing_left : (trees, nodes) bool, where a missing value goes left.
    leaf_depth : (trees, nodes) float64, at each leaf its depth plus the average path length of
        the samples it holds, minus one (what scikit-learn adds per tree).
    denominator : number of trees times the average path length of ``max_samples``.
    n_features_in_ : the number of input columns.
    max_depth_ : the deepest leaf, so a walk needs at most this many steps.
    """

    def __init__(self, left, right, feature, threshold, missing_left, leaf_depth,
                 denominator: float, n_features_in: int):
        self.left = np.ascontiguousarray(left, dtype=np.int32)
        self.right = np.ascontiguousarray(right, dtype=np.int32)
        self.feature = np.ascontiguousarray(feature, dtype=np.int32)
        self.threshold = np.ascontiguousarray(threshold, dtype=np.float64)
        self.missing_left = np.ascontiguousarray(missing_left, dtype=bool)
        self.leaf_depth = np.ascontiguousarray(leaf_depth, dtype=np.float64)
        self.denominator = float(denominator)
        self.n_features_in_ = int(n_features_in)
        self.max_depth_ = _max_depth(self.left, self.right)

    @classmethod
    def from_sklearn(cls, forest) -> "CompiledForest":
        """The arrays of a fitted ``sklearn.ensemble.IsolationForest``."""
        trees = [est.tree_ for est in forest.estimators_]
        n_features = int(forest.n_features_in_)
        size = max(t.node_count for t in trees)
        shape = (len(trees), size)
        left, right = np.full(shape, -1, np.int32), np.full(shape, -1, np.int32)
        feature, threshold = np.zeros(shape, np.int32), np.zeros(shape, np.float64)
        missing_left, depth = np.zeros(shape, bool), np.zeros(shape, np.float64)
        samples, nodes = np.zeros(shape, np.float64), np.zeros(shape, bool)
        subsample = forest._max_features != n_features
        for i, (tree, features) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
            n = tree.node_count
            left[i, :n], right[i, :n] = tree.children_left, tree.children_right
            columns = np.asarray(features) if subsample else np.arange(n_features)
            split = tree.children_left >= 0
            feature[i, :n] = np.where(split, columns[np.where(split, tree.feature, 0)], 0)
            threshold[i, :n] = tree.threshold
            missing = getattr(tree, "missing_go_to_left", None)
            if missing is not None:
                missing_left[i, :n] = np.asarray(missing, dtype=bool)
            depth[i, :n], samples[i, :n], nodes[i, :n] = tree.compute_node_depths(), tree.n_node_samples, True
        # every tree's path lengths in one pass (elementwise: the same figures as tree by tree)
        leaf_depth = np.where(nodes, depth + average_path_length(samples) - 1.0, 0.0)
        denominator = len(trees) * float(average_path_length(np.array([forest._max_samples]))[0])
        return cls(left, right, feature, threshold, missing_left, leaf_depth, denominator, n_features)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything that defines the forest, as plain arrays (what a bundle stores)."""
        return {"left": self.left, "right": self.right, "feature": self.feature,
                "threshold": self.threshold, "missing_left": self.missing_left,
                "leaf_depth": self.leaf_depth,
                "meta": np.array([self.denominator, self.n_features_in_], dtype=np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "CompiledForest":
        """The forest ``arrays`` describes, after checking the shapes agree."""
        shape = np.shape(arrays["left"])
        for name in ("right", "feature", "threshold", "missing_left", "leaf_depth"):
            if np.shape(arrays[name]) != shape or len(shape) != 2:
                raise ValueError(f"forest array {name} has shape {np.shape(arrays[name])}, "
                                 f"expected {shape} (2-d)")
        denominator, n_features = (float(v) for v in np.asarray(arrays["meta"], dtype=float)[:2])
        children = np.concatenate([np.ravel(arrays["left"]), np.ravel(arrays["right"])])
        if children.size and (children.max() >= shape[1] or children.min() < -1):
            raise ValueError("forest child index out of range")
        features = np.asarray(arrays["feature"])
        if features.size and (features.min() < 0 or features.max() >= n_features):
            raise ValueError("forest split feature out of range")
        return cls(arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"],
                   arrays["missing_left"], arrays["leaf_depth"], denominator, int(n_features))

    def path_lengths(self, X: np.ndarray) -> np.ndarray:
        """(trees, rows): the path length each tree gives each row (leaf depth + correction)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected rows of {self.n_features_in_} features, got shape {X.shape}")
        n_trees, n_nodes = self.left.shape
        n_rows = X.shape[0]
        # flat indices into the raveled (trees, nodes) tables: np.take on 1-d arrays is the
        # cheapest gather numpy has
        base = (np.arange(n_trees, dtype=np.int64) * n_nodes)[:, None]
        at = np.broadcast_to(base, (n_trees, n_rows)).copy()
        row_offset = (np.arange(n_rows, dtype=np.int64) * X.shape[1])[None, :]
        flat_x = X.ravel()
        left, right = self.left.ravel(), self.right.ravel()
        feature, threshold = self.feature.ravel(), self.threshold.ravel()
        missing_left = self.missing_left.ravel()
        has_nan = bool(np.isnan(flat_x).any())
        for _ in range(self.max_depth_):
            child = np.take(left, at)
            inner = child >= 0
            if not inner.any():
                break
            value = np.take(flat_x, row_offset + np.take(feature, at))
            go_left = value <= np.take(threshold, at)
            if has_nan:
                go_left = np.where(np.isnan(value), np.take(missing_left, at), go_left)
            step = np.where(go_left, child, np.take(right, at))
            at = np.where(inner, base + step, at)
        return np.take(self.leaf_depth.ravel(), at)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``IsolationForest.score_samples``: ``-2 ** (-mean path / c)``."""
        X = np.asarray(X, dtype=np.float32)
        chunk = 256  # rows per walk: keeps the (trees, rows) working arrays in cache
        depths = (np.concatenate([self.path_lengths(X[i:i + chunk]).sum(axis=0)
                                  for i in range(0, len(X), chunk)])
                  if len(X) > chunk else self.path_lengths(X).sum(axis=0))
        if self.denominator == 0:
            return -np.ones(len(depths))
        return -(2.0 ** (-depths / self.denominator))


def _max_depth(left: np.ndarray, right: np.ndarray) -> int:
    """The number of steps that reaches every leaf (0 for single-leaf trees); a cycle in
    crafted arrays is refused rather than walked forever."""
    frontier = np.zeros(left.shape, dtype=bool)
    if left.size == 0:
        return 0
    frontier[:, 0] = True
    steps = 0
    while True:
        idx = np.nonzero(frontier & (left >= 0))
        if not len(idx[0]):
            return steps
        frontier = np.zeros(left.shape, dtype=bool)
        frontier[idx[0], left[idx]] = True
        frontier[idx[0], right[idx]] = True
        steps += 1
        if steps > left.shape[1]:
            raise ValueError("forest arrays contain a cycle")
