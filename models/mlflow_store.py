"""The MLflow model registry as a model store: versions, ``champion``/``challenger`` aliases.

A version is a pyfunc model whose ``bundle`` artifact is the model bundle, exactly the files
``save_bundle`` wrote; the version's ``bundle_digest`` tag pins the manifest, so a bundle
swapped in the artifact store is refused on load. Loading downloads the version's bundle and
verifies it with ``load_bundle``.

MLflow is imported only when a store is used: it is slow to import and not needed to score.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

from models.bundle import Bundle, BundleError, bundle_digest, load_bundle, package_versions
from models.signing import Trust
from models.store import ModelStoreError, ModelVersion, _one_of

DIGEST_TAG = "bundle_digest"
INFO_TAG = "aiops_info"
ARTIFACT_NAME = "model"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def _quiet_mlflow() -> None:
    """MLflow logs each database migration at INFO; keep CLI output readable.

    Called after MLflow is imported, because importing it sets its logger's level.
    """
    import logging

    import mlflow  # noqa: F401 - configures its loggers; the levels below must come after

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class MlflowModelStore:
    """Model versions in an MLflow registry (a SQLite file, or a tracking server).

    Parameters
    ----------
    tracking_uri : the tracking/registry URI, e.g. ``sqlite:///mlflow.db`` or ``http://host:5000``.
    trust : the signing key and the loader's name (``models.signing.Trust``); a version is
        loaded only when its bundle is signed with that key and its manifest matches the
        ``bundle_digest`` tag recorded at publication (a missing tag is refused too).
    """

    kind = "mlflow"

    def __init__(self, tracking_uri: str, trust: Trust):
        self.tracking_uri = tracking_uri
        self.trust = trust
        self._client = None

    @property
    def client(self):
        if self._client is None:
            _quiet_mlflow()
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _version(self, mv, aliases: dict[str, int] | None = None) -> ModelVersion:
        tags = dict(mv.tags or {})
        try:
            info = json.loads(tags.get(INFO_TAG, "{}"))
        except json.JSONDecodeError:
            info = {}
        if aliases is not None:
            names = [a for a, v in aliases.items() if int(v) == int(mv.version)]
        else:
            names = list(getattr(mv, "aliases", []) or [])
        return ModelVersion(mv.name, int(mv.version), tags.get(DIGEST_TAG, ""), tuple(sorted(names)),
                            _iso(mv.creation_timestamp), mv.run_id, f"models:/{mv.name}/{mv.version}",
                            info)

    def versions(self, name: str) -> list[ModelVersion]:
        found = self.client.search_model_versions(f"name = '{_quote(name)}'")
        if not found:
            return []
        # Search results do not carry aliases; the registered model holds them.
        aliases = dict(getattr(self.client.get_registered_model(name), "aliases", {}) or {})
        return sorted((self._version(mv, aliases) for mv in found), key=lambda v: v.version)

    def get(self, name: str, *, alias: str | None = None,
            version: int | None = None) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        _one_of(alias, version)
        try:
            mv = (self.client.get_model_version_by_alias(name, alias) if alias is not None
                  else self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise
        return self._version(mv)

    def publish(self, name: str, bundle_dir: str | Path, *, info: dict | None = None) -> ModelVersion:
        """Log the bundle as a pyfunc model in the *active* run and register it as a new version.

        A bundle already registered under ``name`` (same digest) is not registered again; its
        recorded information is updated with ``info`` (the figures of this evaluation).
        """
        import mlflow

        digest = bundle_digest(bundle_dir)
        for existing in self.versions(name):
            if existing.digest == digest:
                if info:
                    self.annotate(name, existing.version, **info)
                    return self.get(name, version=existing.version)
                return existing
        requirements = [f"{pkg}=={ver}" for pkg, ver in package_versions().items() if ver != "absent"]
        with warnings.catch_warnings():
            # The wrapper's predict has no type hints on purpose (see models/pyfunc_model.py).
            warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
            logged = mlflow.pyfunc.log_model(name=ARTIFACT_NAME, python_model=str(PYFUNC_CODE),
                                             artifacts={"bundle": str(bundle_dir)},
                                             registered_model_name=name, pip_requirements=requirements)
        number = str(logged.registered_model_version)
        self.client.set_model_version_tag(name, number, DIGEST_TAG, digest)
        if info:
            self.annotate(name, int(number), **info)
        return self._version(self.client.get_model_version(name, number))

    def annotate(self, name: str, version: int, **info) -> None:
        """Merge ``info`` into the version's recorded information (a JSON tag)."""
        current = self.get(name, version=version)
        merged = {**(current.info if current else {}), **info}
        self.client.set_model_version_tag(name, str(version), INFO_TAG,
                                          json.dumps(merged, sort_keys=True, default=str))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException:
            pass  # no such alias: nothing to delete

    def load(self, name: str, *, alias: str | None = None, version: int | None = None) -> Bundle:
        """Download a version's bundle and load it after verifying every file and its digest."""
        import mlflow

        found = self.get(name, alias=alias, version=version)
        if found is None:
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise ModelStoreError(f"model {name} has no {what} in the MLflow registry {self.tracking_uri}")
        uri = f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"
        with tempfile.TemporaryDirectory(prefix="aiops-model-") as tmp:
            # The version's own artifact location: a models:/ URI would be resolved against the
            # process-wide registry URI, not this store's.
            location = self.client.get_model_version_download_uri(name, str(found.version))
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp,
                                                             tracking_uri=self.tracking_uri))
            bundle_dir = local / "artifacts" / "bundle"
            loader = f"{self.trust.loader} (MLflow registry {uri})"
            if not bundle_dir.is_dir():
                raise BundleError(f"{loader}: no bundle artifact; it was not published by aiops train")
            if not found.digest:
                raise BundleError(f"{loader}: version {found.version} has no {DIGEST_TAG} tag (removed, "
                                  "or not published by aiops train), so nothing pins its bundle; "
                                  "refusing to load it. Retrain with `aiops train`")
            bundle = load_bundle(bundle_dir, trust=self.trust.named(loader),
                                 expected_digest=found.digest)
        return Bundle(bundle.config, bundle.model, bundle.manifest, bundle.path, uri, bundle.digest,
                      bundle.signed)


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _iso(millis: int | None) -> str:
    if not millis:
        return ""
    import datetime as dt

    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC).isoformat(timespec="seconds")
