"""Model stores: numbered, immutable bundle versions per model name, and aliases onto them.

Two stores share one interface (``ModelStore``): a local directory store (this module) and the
MLflow model registry (``models.mlflow_store``). A version is a verified bundle plus what was
recorded when it was published (its digest, evaluation, the MLflow run); an alias
(``champion``, ``challenger``) names the version that plays that part. Publishing the same
bundle twice returns the existing version, so a job that runs twice adds nothing.

The scoring side loads the champion with ``load_champion``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from models.bundle import Bundle, BundleError, bundle_digest, load_bundle
from models.signing import Trust

CHAMPION = "champion"
CHALLENGER = "challenger"
REGISTRY_FILE = "registry.json"


class ModelStoreError(BundleError):
    """A store could not find, publish or load a model; the message says which and why."""


def model_name(cluster: str, service: str) -> str:
    """The one name a service's model has in every store (and its bundle directory)."""
    return f"{cluster}--{service}"


@dataclass(frozen=True)
class ModelVersion:
    """One published bundle and what its store knows about it."""

    name: str
    version: int
    digest: str
    aliases: tuple[str, ...] = ()
    created_at: str = ""
    run_id: str | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return out


class ModelStore(Protocol):
    """What the pipeline and the scoring side need from a store."""

    kind: str
    trust: Trust

    def versions(self, name: str) -> list[ModelVersion]: ...

    def get(self, name: str, *, alias: str | None = None,
            version: int | None = None) -> ModelVersion | None: ...

    def load(self, name: str, *, alias: str | None = None, version: int | None = None) -> Bundle: ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...


def _one_of(alias: str | None, version: int | None) -> None:
    if (alias is None) == (version is None):
        raise ValueError("name a model version by exactly one of alias or version")


class LocalModelStore:
    """Bundle versions in a directory: ``ROOT/NAME/vN/`` and ``ROOT/NAME/registry.json``.

    ``registry.json`` holds every version's digest and information and the aliases; it is
    rewritten atomically under a file lock, so two jobs publishing at once cannot lose a
    version. Version directories are never modified after publication.

    Parameters
    ----------
    root : the store's directory.
    trust : the signing key and the loader's name (``models.signing.Trust``): every bundle is
        checked against it when published and when loaded, and training signs with its key.
    """

    kind = "local"

    def __init__(self, root: str | Path, trust: Trust):
        self.root = Path(root)
        self.trust = trust

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid model name {name!r}")
        return self.root / name

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[dict]:
        """The registry of ``name``, locked; written back atomically when the block succeeds."""
        directory = self._dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            registry = self._read(name)
            yield registry
            tmp = directory / f".{REGISTRY_FILE}.tmp"
            tmp.write_text(json.dumps(registry, indent=2, sort_keys=True))
            os.replace(tmp, directory / REGISTRY_FILE)

    def _read(self, name: str) -> dict:
        path = self._dir(name) / REGISTRY_FILE
        if not path.is_file():
            return {"name": name, "aliases": {}, "versions": {}}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelStoreError(f"model registry {path} is not valid JSON: {exc}") from None

    def _version(self, name: str, registry: dict, number: int) -> ModelVersion:
        entry = registry["versions"][str(number)]
        aliases = tuple(sorted(a for a, v in registry["aliases"].items() if v == number))
        return ModelVersion(name, number, entry["digest"], aliases, entry.get("created_at", ""),
                            entry.get("run_id"), str(self._dir(name) / f"v{number}"),
                            entry.get("info", {}))

    def names(self) -> list[str]:
        """Every model name with a registry in this store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / REGISTRY_FILE).is_file())

    def versions(self, name: str) -> list[ModelVersion]:
        registry = self._read(name)
        return [self._version(name, registry, int(n)) for n in sorted(registry["versions"], key=int)]

    def get(self, name: str, *, alias: str | None = None,
            version: int | None = None) -> ModelVersion | None:
        _one_of(alias, version)
        registry = self._read(name)
        number = registry["aliases"].get(alias) if alias is not None else version
        if number is None or str(number) not in registry["versions"]:
            return None
        return self._version(name, registry, int(number))

    def publish(self, name: str, bundle_dir: str | Path, *, created_at: str = "",
                run_id: str | None = None, info: dict | None = None) -> ModelVersion:
        """Copy a verified bundle in as the next version.

        The same bundle again (same digest) returns its existing version, with ``info`` merged
        into what is recorded about it (the figures of the newest evaluation it met).
        """
        load_bundle(bundle_dir, trust=self.trust)  # never publish what cannot be loaded back
        digest = bundle_digest(bundle_dir)
        with self._locked(name) as registry:
            for number, entry in registry["versions"].items():
                if entry["digest"] == digest:
                    entry["info"] = {**entry.get("info", {}), **(info or {})}
                    return self._version(name, registry, int(number))
            number = max((int(n) for n in registry["versions"]), default=0) + 1
            directory = self._dir(name)
            staging = _staging_dir(directory, ".staging-")
            for path in Path(bundle_dir).iterdir():
                if path.is_file():
                    shutil.copy2(path, staging / path.name)
            os.replace(staging, directory / f"v{number}")
            registry["versions"][str(number)] = {"digest": digest, "created_at": created_at,
                                                 "run_id": run_id, "info": info or {}}
            return self._version(name, registry, number)

    def annotate(self, name: str, version: int, **info) -> None:
        """Add to what is recorded about a version (e.g. its MLflow run and version)."""
        with self._locked(name) as registry:
            entry = registry["versions"].get(str(version))
            if entry is None:
                raise ModelStoreError(f"model {name} has no version {version}")
            entry["info"] = {**entry.get("info", {}), **info}
            if "run_id" in info:
                entry["run_id"] = info["run_id"]

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with self._locked(name) as registry:
            if str(version) not in registry["versions"]:
                raise ModelStoreError(f"model {name} has no version {version}")
            registry["aliases"][alias] = int(version)

    def delete_alias(self, name: str, alias: str) -> None:
        with self._locked(name) as registry:
            registry["aliases"].pop(alias, None)

    def load(self, name: str, *, alias: str | None = None, version: int | None = None) -> Bundle:
        """Load a version after checking it is the bundle that was published."""
        found = self.get(name, alias=alias, version=version)
        if found is None:
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise ModelStoreError(f"model {name} has no {what} in the local store {self.root}")
        return load_bundle(found.source, trust=self.trust, expected_digest=found.digest)

    def export(self, name: str, version: int, directory: str | Path) -> Path:
        """Replace ``directory`` with a copy of a version (the service's deployed bundle).

        The copy is made beside the target and swapped in by rename, so a reader sees the old
        bundle or the new one, never half of each.
        """
        found = self.get(name, version=version)
        if found is None:
            raise ModelStoreError(f"model {name} has no version {version}")
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = _staging_dir(target.parent, f".{target.name}.new-")
        for path in Path(found.source).iterdir():
            shutil.copy2(path, staging / path.name)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "bundle")
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target


def _staging_dir(parent: Path, prefix: str) -> Path:
    """A fresh directory beside its final place (same filesystem, so a rename moves it),
    readable like any other directory (mkdtemp makes it owner-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    return path


def load_champion(store: ModelStore, name: str, fallback_dir: str | Path | None = None) -> Bundle:
    """The bundle the scoring side should use for model ``name``.

    The store's ``champion``; when the store has none, the bundle in ``fallback_dir`` (the
    service's deployed bundle, which ``aiops baseline`` also writes), checked with the store's
    trust. Errors name both places.
    """
    try:
        return store.load(name, alias=CHAMPION)
    except ModelStoreError as exc:
        if fallback_dir is None or not (Path(fallback_dir) / "manifest.json").is_file():
            where = f" and no bundle at {fallback_dir}" if fallback_dir is not None else ""
            raise ModelStoreError(f"{exc}{where}; train one with `aiops train`") from None
        return load_bundle(fallback_dir, trust=store.trust)
