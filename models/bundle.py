"""Save and load a fitted detector as ``config.json`` + ``state.joblib`` + ``manifest.json``.

The manifest holds the package versions the model was fitted with, its feature and metric
names, the data window, its evaluation figures and a sha256 of every other file. Loading
checks every hash *before* unpickling anything and the package versions against this
environment, and refuses a tampered or incompatible bundle with a message naming the file or
the package at fault.

The manifest cannot hash itself; its own sha256 (``bundle_digest``) is what a model store
records, so a store can tell that a whole bundle was swapped, not only one file.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib

FORMAT = 1
FILES = ("config.json", "state.joblib")
MANIFEST = "manifest.json"
PACKAGES = ("numpy", "pandas", "scikit-learn", "statsmodels", "joblib")
# How much of the version must match for a pickled model to load safely: scikit-learn and
# statsmodels change fitted attributes between minor releases, the others keep their pickles
# readable within a major release.
SAME_MINOR = ("scikit-learn", "statsmodels")


class BundleError(ValueError):
    """A bundle that cannot be loaded, with the file and the reason."""


@dataclass(frozen=True)
class Bundle:
    """A loaded model: what it was configured with, the fitted object, and its manifest.

    ``source`` says where it came from (a directory, or a ``models:/`` URI for the MLflow
    registry, whose download directory is gone once the model is in memory).
    """

    config: dict
    model: Any
    manifest: dict
    path: Path
    source: str = ""
    digest: str = ""  # the manifest's sha256, which pins every other file through its hashes

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest.get("metrics", []))

    @property
    def evaluation(self) -> dict:
        return dict(self.manifest.get("evaluation") or {})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_versions() -> dict[str, str]:
    """The installed version of every package a fitted model's pickle depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def dump_state(model: Any) -> bytes:
    """The bytes of ``state.joblib`` for ``model``.

    A fit that runs in a worker process should return these bytes rather than the model: an
    object unpickled in the parent no longer shares its interned strings, so dumping it again
    gives different (equally valid) bytes, and bundles fitted on different backends would
    differ in their hashes.
    """
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def load_state(state: bytes) -> Any:
    """The model whose ``state.joblib`` bytes are ``state`` (trusted bytes only: this unpickles)."""
    return joblib.load(io.BytesIO(state))


def bundle_digest(directory: str | Path) -> str:
    """The sha256 of a bundle's manifest: one figure that identifies the whole bundle."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"no model bundle at {directory} (manifest.json missing)")
    return _sha256(path)


def _feature_names(model: Any, metrics: list[str]) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else list(metrics)


def save_bundle(model: Any, config: dict, directory: str | Path, *, metrics: list[str],
                data_window: tuple[str, str], feature_names: list[str] | None = None,
                evaluation: dict | None = None, state: bytes | None = None) -> Path:
    """Write the bundle into ``directory`` (created) and return it.

    Parameters
    ----------
    model : the fitted detector (pickled with joblib).
    config : how it was built; ``training.detectors.build_detector`` reads this back.
    metrics : the metric names the model scores.
    data_window : first and last timestamp of the history it was fitted on (ISO 8601).
    feature_names : the model's input columns in order; the model's ``feature_names_in_``
        or ``metrics`` when not given.
    evaluation : the figures of its evaluation, kept with the model they describe.
    state : ``dump_state(model)`` as the fitting process made it (see ``dump_state``).

    Nothing in the manifest depends on the clock, so the same model fitted on the same data
    gives byte-identical files and the same digest (which makes a second run a no-op).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    (directory / "state.joblib").write_bytes(state if state is not None else dump_state(model))
    manifest = {"format": FORMAT, "packages": package_versions(), "metrics": list(metrics),
                "feature_names": feature_names or _feature_names(model, metrics),
                "data_window": {"start": data_window[0], "end": data_window[1]},
                "evaluation": evaluation or {},
                "sha256": {name: _sha256(directory / name) for name in FILES}}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return directory


def version_problems(recorded: dict[str, str], installed: dict[str, str] | None = None) -> list[str]:
    """Each package whose installed version cannot safely load what ``recorded`` pickled."""
    installed = installed or package_versions()
    problems = []
    for name, was in sorted(recorded.items()):
        now = installed.get(name, "absent")
        if was == "absent" or was == now:
            continue
        depth = 2 if name in SAME_MINOR else 1
        if now == "absent" or was.split(".")[:depth] != now.split(".")[:depth]:
            problems.append(f"{name} {was} (this environment has {now})")
    return problems


def load_bundle(directory: str | Path, *, check_versions: bool = True,
                expected_digest: str | None = None) -> Bundle:
    """Load a bundle after checking its files, their hashes and the package versions.

    Parameters
    ----------
    directory : the bundle directory.
    check_versions : refuse a bundle pickled with package versions this environment cannot
        safely load (see ``SAME_MINOR``). Turn off only to inspect an old bundle.
    expected_digest : the manifest's sha256 as a model store recorded it; a different one
        means the bundle was replaced after it was published.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"no model bundle at {directory} (manifest.json missing)")
    digest = _sha256(manifest_path)
    if expected_digest is not None and digest != expected_digest:
        raise BundleError(f"model bundle {directory}: manifest.json does not match the digest its "
                          "model store recorded (replaced after it was published); refusing to load it")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), dict):
        raise BundleError(f"{manifest_path} has no sha256 table; not a model bundle")
    for name in sorted(set(FILES) | set(manifest["sha256"])):
        path = directory / name
        if not path.is_file():
            raise BundleError(f"model bundle {directory} lacks {name}")
        if _sha256(path) != manifest["sha256"].get(name):
            raise BundleError(f"model bundle {directory}: {name} does not match its sha256 in "
                              "manifest.json (modified or corrupt); refusing to load it")
    problems = version_problems(manifest.get("packages", {})) if check_versions else []
    if problems:
        raise BundleError(f"model bundle {directory} was fitted with {', '.join(problems)}; "
                          "refit it (aiops train) or install the versions it was fitted with")
    try:
        config = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{directory / 'config.json'} is not valid JSON: {exc}") from None
    return Bundle(config, joblib.load(directory / "state.joblib"), manifest, directory, str(directory),
                  digest)
