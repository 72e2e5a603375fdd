"""Save and load a fitted model as a signed bundle of data files.

A bundle is a directory::

    config.json     how the model was built (plain JSON)
    state.npz       the fitted state (``models.codec``: arrays + a JSON structure; a root-cause
                    classifier's is ``state.skops``, scikit-learn's safe format, loaded with an
                    explicit list of trusted types)
    manifest.json   kind, package versions, metric and feature names, data window, evaluation
                    figures, and the sha256 of every other file
    manifest.sig    an HMAC-SHA256 of manifest.json's bytes (``models.signing``)

Loading checks, in this order and before any state byte is decoded: the bundle is not an old
pickled one (``state.joblib``: refused with "retrain it"), the signature of manifest.json
(``Trust``: the key and the loader's name, which every refusal carries), the digest a model
store recorded for it (when loaded from a store), the manifest's kind and every file's sha256,
and the package versions. Nothing is ever unpickled: the state is decoded by ``models.codec``
(which may only build the classes it lists) or by skops with a fixed list of trusted types.

The manifest's own sha256 (``bundle_digest``) is what a model store records, so a store can
tell that a whole bundle was swapped for another validly signed one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from models import codec
from models.signing import SignatureError, SigningKey, Trust, verify, write_signature

FORMAT = 2
MANIFEST = "manifest.json"
CONFIG = "config.json"
LEGACY_STATE = "state.joblib"
DETECTOR = "detector"
RCA_CLASSIFIER = "rca_classifier"
STATE_FILES = {DETECTOR: "state.npz", RCA_CLASSIFIER: "state.skops"}
PACKAGES = ("numpy", "pandas", "scikit-learn", "statsmodels", "skops")
# How much of the version must match for stored state to mean the same: the scikit-learn
# estimators a model holds (quantile tables, a classifier's trees) keep their attributes
# within a minor release; the others keep their array formats within a major release.
SAME_MINOR = ("scikit-learn",)
CHECKED = ("numpy", "pandas", "scikit-learn")
# The only types a stored root-cause classifier may contain beyond skops' own safe defaults
# (the classes of rca.classifier.build_model's pipelines; found with skops.io.get_untrusted_types).
RCA_TRUSTED_TYPES = (
    "numpy.dtype",
    "rca.vectorize.FeatureVectorizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


class BundleError(ValueError):
    """A bundle that cannot be loaded, with the loader, the file and the reason."""


@dataclass(frozen=True)
class Bundle:
    """A loaded model: what it was configured with, the fitted object, and its manifest.

    ``source`` says where it came from (a directory, or a ``models:/`` URI for the MLflow
    registry, whose download directory is gone once the model is in memory); ``signed`` is
    False only for a bundle let through by ``--allow-unsigned``.
    """

    config: dict
    model: Any
    manifest: dict
    path: Path
    source: str = ""
    digest: str = ""  # the manifest's sha256, which pins every other file through its hashes
    signed: bool = True

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest.get("metrics", []))

    @property
    def evaluation(self) -> dict:
        return dict(self.manifest.get("evaluation") or {})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_versions() -> dict[str, str]:
    """The installed version of every package a model's stored state depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def dump_state(model: Any, kind: str = DETECTOR) -> bytes:
    """The bytes of the state file for ``model`` (``state.npz``, or ``state.skops`` for a
    root-cause classifier).

    A fit that runs in a worker process returns these bytes rather than the model, so what the
    parent writes is exactly what the worker made, whichever backend ran it.
    """
    if kind == RCA_CLASSIFIER:
        import skops.io

        return skops.io.dumps(model)
    return codec.encode(model)


def load_state(state: bytes, kind: str = DETECTOR) -> Any:
    """The model whose state file bytes are ``state``; decodes data, runs no code from it."""
    if kind == RCA_CLASSIFIER:
        import skops.io

        return skops.io.loads(state, trusted=list(RCA_TRUSTED_TYPES))
    return codec.decode(state)


def bundle_digest(directory: str | Path) -> str:
    """The sha256 of a bundle's manifest: one figure that identifies the whole bundle."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"no model bundle at {directory} (manifest.json missing)")
    return _sha256(path)


def _feature_names(model: Any, metrics: list[str]) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else list(metrics)


def save_bundle(model: Any, config: dict, directory: str | Path, *, key: SigningKey,
                metrics: list[str], data_window: tuple[str, str],
                feature_names: list[str] | None = None, evaluation: dict | None = None,
                state: bytes | None = None, kind: str = DETECTOR) -> Path:
    """Write the bundle into ``directory`` (created), sign it with ``key``, and return it.

    Parameters
    ----------
    model : the fitted model (stored as data, see ``dump_state``).
    config : how it was built; ``training.detectors.build_detector`` reads this back.
    key : the signing key (``models.signing``); every bundle written is signed.
    metrics : the metric names the model scores.
    data_window : first and last timestamp of the history it was fitted on (ISO 8601).
    feature_names : the model's input columns in order; the model's ``feature_names_in_``
        or ``metrics`` when not given.
    evaluation : the figures of its evaluation, kept with the model they describe.
    state : ``dump_state(model, kind)`` as the fitting process made it.
    kind : ``detector`` or ``rca_classifier``: which state format, and what loaders accept.

    Nothing in the manifest depends on the clock, so the same model fitted on the same data
    gives byte-identical files and the same digest (which makes a second run a no-op).
    """
    if kind not in STATE_FILES:
        raise ValueError(f"unknown bundle kind {kind!r}; known: {', '.join(STATE_FILES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (LEGACY_STATE, *STATE_FILES.values()):
        (directory / stale).unlink(missing_ok=True)
    state_file = STATE_FILES[kind]
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    (directory / state_file).write_bytes(state if state is not None else dump_state(model, kind))
    manifest = {"format": FORMAT, "kind": kind, "packages": package_versions(),
                "metrics": list(metrics),
                "feature_names": feature_names or _feature_names(model, metrics),
                "data_window": {"start": data_window[0], "end": data_window[1]},
                "evaluation": evaluation or {},
                "sha256": {name: _sha256(directory / name) for name in (CONFIG, state_file)}}
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8")
    (directory / MANIFEST).write_bytes(text)
    write_signature(directory, text, key)
    return directory


def version_problems(recorded: dict[str, str], installed: dict[str, str] | None = None) -> list[str]:
    """Each package whose installed version may read ``recorded``'s stored state differently."""
    installed = installed or package_versions()
    problems = []
    for name, was in sorted(recorded.items()):
        now = installed.get(name, "absent")
        if name not in CHECKED or was == "absent" or was == now:
            continue
        depth = 2 if name in SAME_MINOR else 1
        if now == "absent" or was.split(".")[:depth] != now.split(".")[:depth]:
            problems.append(f"{name} {was} (this environment has {now})")
    return problems


def load_bundle(directory: str | Path, *, trust: Trust, check_versions: bool = True,
                expected_digest: str | None = None, kind: str = DETECTOR) -> Bundle:
    """Load a bundle after checking its signature, digest, kind, hashes and package versions.

    Parameters
    ----------
    directory : the bundle directory.
    trust : the signing key and the loader's name (``models.signing.Trust``); an unsigned or
        wrongly signed bundle is refused unless it allows unsigned bundles.
    check_versions : refuse a bundle stored with package versions this environment may read
        differently (see ``SAME_MINOR``). Turn off only to inspect an old bundle.
    expected_digest : the manifest's sha256 as a model store recorded it; a different one
        means the bundle was replaced after it was published.
    kind : what the caller can use (``detector`` or ``rca_classifier``); another is refused
        before its state is read.
    """
    directory = Path(directory)
    who = f"{trust.loader}: model bundle {directory}"
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{trust.loader}: no model bundle at {directory} (manifest.json missing)")
    if (directory / LEGACY_STATE).exists():
        raise BundleError(f"{who} was written by an older version of aiops: its state is a pickle "
                          f"({LEGACY_STATE}), which this version never loads because loading a pickle "
                          "can run code; retrain it with `aiops train` (`aiops baseline` for "
                          "baselines, `aiops train-rca` for a root-cause classifier)")
    manifest_bytes = manifest_path.read_bytes()
    try:
        signed = verify(directory, manifest_bytes, trust)
    except SignatureError as exc:
        raise BundleError(str(exc)) from None
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    if expected_digest is not None and digest != expected_digest:
        raise BundleError(f"{who}: manifest.json does not match the digest its model store recorded "
                          "(replaced after it was published); refusing to load it")
    try:
        manifest = json.loads(manifest_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{who}: manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), dict):
        raise BundleError(f"{who}: manifest.json has no sha256 table; not a model bundle")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{who} has format {manifest.get('format')!r}, not {FORMAT}; retrain it "
                          "with `aiops train`")
    if manifest.get("kind") != kind:
        what = "a root-cause classifier" if kind == RCA_CLASSIFIER else "a detector"
        raise BundleError(f"{who} is not {what} (kind {manifest.get('kind')!r}); refusing to load it")
    state_file = STATE_FILES[kind]
    for name in sorted({CONFIG, state_file} | set(manifest["sha256"])):
        path = directory / name
        if Path(name).name != name or not path.is_file():
            raise BundleError(f"{who} lacks {name}")
        if _sha256(path) != manifest["sha256"].get(name):
            raise BundleError(f"{who}: {name} does not match its sha256 in manifest.json "
                              "(modified or corrupt); refusing to load it")
    problems = version_problems(manifest.get("packages", {})) if check_versions else []
    if problems:
        raise BundleError(f"{who} was fitted with {', '.join(problems)}; refit it (aiops train) or "
                          "install the versions it was fitted with")
    try:
        config = json.loads((directory / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{who}: config.json is not valid JSON: {exc}") from None
    try:
        model = load_state((directory / state_file).read_bytes(), kind)
    except codec.CodecError as exc:
        raise BundleError(f"{who}: {state_file}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - skops' refusals come as several exception types
        raise BundleError(f"{who}: {state_file} cannot be read ({type(exc).__name__}: {exc})") from None
    return Bundle(config, model, manifest, directory, str(directory), digest, signed)
