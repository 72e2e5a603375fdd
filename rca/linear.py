"""A multinomial logistic model stored as plain data (JSON) and evaluated with numpy.

The shipped root-cause model is this: a few hundred numbers (per input column its median for
imputation, its centre and scale, one weight per class, an intercept per class, and a
temperature that calibrates the probabilities), read from JSON and checked on load. Loading
runs no code from the file (no pickle), so a model file from a disk or a store cannot execute
anything; and an answer needs no scikit-learn, only a matrix product.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rca.vectorize import FEATURE_NAMES, model_inputs

FORMAT = "aiops-rca-linear/1"
SHIPPED = Path(__file__).with_name("model-linear-v2.json")   # the model the package ships


class ModelFileError(ValueError):
    """A model file that is not a valid linear root-cause model."""


def design_matrix(features: Sequence[Mapping[str, float]],
                  names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """The model inputs of each incident as rows, columns ``names``; NaN where unknown."""
    rows = [model_inputs(f) for f in features]
    return np.array([[r[n] for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))


@dataclass(frozen=True)
class LinearModel:
    """Softmax over ``coef @ x + intercept`` with x the imputed, scaled inputs and missing flags.

    Attributes
    ----------
    classes : the symptom families, one per row of ``coef``.
    feature_names : the input columns (:data:`rca.vectorize.FEATURE_NAMES` when trained).
    lows, highs : per input column, the training range (after :func:`squash`) it is clipped to:
        a z of 280 on a real service is "very high", not 20 times what training saw.
    medians, centres, scales : per input column, for imputing NaN and standardising.
    coef : (classes, 2 x columns) weights: the scaled inputs, then one "was missing" flag each.
    intercept : (classes,).
    temperature : the logits are divided by it (fitted on out-of-fold predictions).
    meta : how it was trained (seed, services, CV figures), for the record.
    """

    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    lows: np.ndarray
    highs: np.ndarray
    medians: np.ndarray
    centres: np.ndarray
    scales: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    temperature: float = 1.0
    meta: dict | None = None

    @property
    def classes_(self) -> np.ndarray:
        """The classes, as a scikit-learn estimator names them (the classifier reads this)."""
        return np.array(self.classes, dtype=object)

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """Imputed and standardised inputs, followed by the missing-value flags."""
        X = squash(np.asarray(X, dtype=float))
        missing = np.isnan(X)
        filled = np.where(missing, self.medians, np.clip(X, self.lows, self.highs))
        return np.hstack([(filled - self.centres) / self.scales, missing.astype(float)])

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self.inputs(X) @ self.coef.T + self.intercept

    def predict_proba(self, features: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Calibrated class probabilities, one row per incident (columns as :attr:`classes`)."""
        return softmax(self.logits(design_matrix(features, self.feature_names)) / self.temperature)

    def to_dict(self) -> dict:
        def rounded(a: np.ndarray) -> list:
            return np.round(a, 6).tolist()
        return {"format": FORMAT, "classes": list(self.classes), "feature_names": list(self.feature_names),
                "lows": rounded(self.lows), "highs": rounded(self.highs), "medians": rounded(self.medians),
                "centres": rounded(self.centres),
                "scales": rounded(self.scales), "coef": rounded(self.coef),
                "intercept": rounded(self.intercept), "temperature": round(float(self.temperature), 6),
                "meta": self.meta or {}}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: object) -> "LinearModel":
        """Check and build; every inconsistency is a ModelFileError naming the field."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFileError(f"not a linear root-cause model (format must be {FORMAT!r})")
        try:
            classes = tuple(str(c) for c in data["classes"])
            names = tuple(str(n) for n in data["feature_names"])
            arrays = {k: np.asarray(data[k], dtype=float) for k in ("lows", "highs", "medians", "centres",
                                                                    "scales", "coef", "intercept")}
            temperature = float(data["temperature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"model file field missing or malformed: {exc}") from None
        k, d = len(classes), len(names)
        shapes = {"lows": (d,), "highs": (d,), "medians": (d,), "centres": (d,), "scales": (d,),
                  "coef": (k, 2 * d), "intercept": (k,)}
        for key, shape in shapes.items():
            if arrays[key].shape != shape:
                raise ModelFileError(f"{key} has shape {arrays[key].shape}, expected {shape}")
            if not np.all(np.isfinite(arrays[key])):
                raise ModelFileError(f"{key} holds NaN or infinite numbers")
        if np.any(arrays["scales"] <= 0) or not (math.isfinite(temperature) and temperature > 0):
            raise ModelFileError("scales and temperature must be positive")
        unknown = sorted(set(names) - set(FEATURE_NAMES))
        if unknown:
            raise ModelFileError(f"the model reads inputs this version does not make: {unknown[:3]}")
        return cls(classes, names, arrays["lows"], arrays["highs"], arrays["medians"], arrays["centres"],
                   arrays["scales"], arrays["coef"],
                   arrays["intercept"], temperature, dict(data.get("meta") or {}))

    @classmethod
    def load(cls, path: str | Path) -> "LinearModel":
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ModelFileError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ModelFileError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def squash(X: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): z-scores, ratios and slopes span orders of magnitude across services."""
    return np.sign(X) * np.log1p(np.abs(X))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
