"""Which detector the pipeline fits is configuration: a name and its parameters.

The configuration is JSON (it is the bundle's ``config.json``), so a bundle says how its model
was built and ``build_detector`` can build the same one again. Every detector here has the
interface the watcher scores with: ``fit(history, exclude=None)``, ``score``, ``detect``,
``expected_frame``, ``within_baseline``, ``threshold``, ``specs``, ``metrics_``.
"""

from __future__ import annotations

from typing import Any


class DetectorConfigError(ValueError):
    """A detector configuration naming an unknown detector or parameter."""


def _robust_z(params: dict) -> Any:
    from detection.zscore import RobustZDetector

    return RobustZDetector(**params)


def _ensemble(params: dict) -> Any:
    from detection.ensemble import ServiceDetector

    return ServiceDetector(**params)


def _ensemble_defaults(params: dict) -> dict:
    """The ensemble's full configuration, so a bundle records every setting it was fitted with
    (not only those that differed from the defaults of the day)."""
    from detection.ensemble import EnsembleConfig

    try:
        config = EnsembleConfig.from_dict(params.get("config") or {}).checked().to_dict()
    except (TypeError, ValueError) as exc:
        raise DetectorConfigError(f"bad ensemble configuration: {exc}") from None
    threshold = params.get("threshold")
    if threshold is not None and not 0 < threshold < 1:
        raise DetectorConfigError(f"the ensemble's threshold is a calibrated score in (0, 1), got "
                                  f"{threshold} (a z-score threshold belongs to robust_z)")
    return {**params, "config": config}


BUILDERS = {
    "robust_z": _robust_z,   # per-metric hour-of-week baselines, robust z-scores: "the baselines"
    "ensemble": _ensemble,   # baselines + seasonal (STL) residuals + isolation forest, post-processed
}
DEFAULT_DETECTOR = "ensemble"
BASELINES_ONLY = "robust_z"  # what `aiops baseline` rebuilds


def detector_config(kind: str = DEFAULT_DETECTOR, **params: Any) -> dict:
    """A JSON-ready configuration for detector ``kind`` with ``params`` (None values dropped)."""
    if kind not in BUILDERS:
        raise DetectorConfigError(f"unknown detector {kind!r}; known: {', '.join(BUILDERS)}")
    params = {k: v for k, v in params.items() if v is not None}
    if kind == "ensemble":
        params = _ensemble_defaults(params)
    return {"detector": kind, "params": params}


def build_detector(config: dict) -> Any:
    """An unfitted detector from a configuration made by ``detector_config``."""
    kind = config.get("detector")
    if kind not in BUILDERS:
        raise DetectorConfigError(f"unknown detector {kind!r}; known: {', '.join(BUILDERS)}")
    try:
        return BUILDERS[kind](dict(config.get("params", {})))
    except TypeError as exc:
        raise DetectorConfigError(f"bad parameters for detector {kind!r}: {exc}") from None


def fit_detector(config: dict, history, exclude: list[tuple] | None = None) -> Any:
    """Build the configured detector and fit it on ``history``; a module-level function, so
    parallel workers (joblib, dask) can run it."""
    return build_detector(config).fit(history, exclude=exclude)
