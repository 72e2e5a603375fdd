"""Save and load a fitted detector as ``config.json`` + ``state.joblib`` + ``manifest.json``.

The manifest holds the package versions it was fitted with, the metrics, the data window and
a sha256 of every file; loading checks every hash and refuses a tampered bundle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib

FILES = ("config.json", "state.joblib")
PACKAGES = ("numpy", "pandas", "scikit-learn", "statsmodels", "joblib")


class BundleError(ValueError):
    """A bundle that cannot be loaded, with the file and the reason."""


@dataclass(frozen=True)
class Bundle:
    """A loaded model: what it was configured with, the fitted object, and its manifest."""

    config: dict
    model: Any
    manifest: dict
    path: Path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def save_bundle(model: Any, config: dict, directory: str | Path, *, metrics: list[str],
                data_window: tuple[str, str]) -> Path:
    """Write the bundle into ``directory`` (created) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    joblib.dump(model, directory / "state.joblib")
    manifest = {"packages": _versions(), "metrics": metrics,
                "data_window": {"start": data_window[0], "end": data_window[1]},
                "sha256": {name: _sha256(directory / name) for name in FILES}}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return directory


def load_bundle(directory: str | Path) -> Bundle:
    """Load a bundle after checking that every file is there and matches its hash."""
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"no model bundle at {directory} (manifest.json missing)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    for name in FILES:
        path = directory / name
        if not path.is_file():
            raise BundleError(f"model bundle {directory} lacks {name}")
        if _sha256(path) != manifest.get("sha256", {}).get(name):
            raise BundleError(f"model bundle {directory}: {name} does not match its sha256 in "
                              "manifest.json (modified or corrupt); refusing to load it")
    config = json.loads((directory / "config.json").read_text())
    return Bundle(config, joblib.load(directory / "state.joblib"), manifest, directory)
