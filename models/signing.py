"""Signed model bundles: an HMAC-SHA256 over ``manifest.json``, checked before anything is read.

The manifest holds the sha256 of every other file of a bundle, so one signature over the
manifest's bytes pins the whole bundle. ``manifest.sig`` holds it as JSON::

    {"algorithm": "HMAC-SHA256", "key_id": "<first 16 hex of sha256(key)>", "signature": "<hex>"}

``key_id`` only helps the error message tell "signed with another key" from "tampered with"; it
says nothing usable about the key.

Where the key comes from is decided at the edges and handed in (``Trust``, ``SigningKey``):
``AIOPS_SIGNING_KEY`` in the environment, AWS Secrets Manager when ``AIOPS_SIGNING_SECRET_ID``
is set (``service.signing``; this package never talks to AWS), else a key generated once into
the data directory (``local_key``: ``<data dir>/signing.key``, mode 0600), which is what makes
the demo and a first ``aiops train`` work with nothing configured.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ALGORITHM = "HMAC-SHA256"
SIGNATURE = "manifest.sig"
KEY_FILE = "signing.key"
KEY_ENV = "AIOPS_SIGNING_KEY"
SECRET_ENV = "AIOPS_SIGNING_SECRET_ID"
ALLOW_UNSIGNED_ENV = "AIOPS_ALLOW_UNSIGNED"
MIN_KEY_BYTES = 32


class SignatureError(ValueError):
    """A bundle whose signature is missing, wrong, or cannot be checked; the message says which."""


@dataclass(frozen=True)
class SigningKey:
    """The secret that signs and checks bundles, and where it came from (for messages)."""

    secret: bytes
    source: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise SignatureError(f"the signing key from {self.source} is {len(self.secret)} bytes; "
                                 f"at least {MIN_KEY_BYTES} are needed (e.g. `openssl rand -hex 32`)")

    @classmethod
    def from_text(cls, text: str, source: str) -> "SigningKey":
        return cls(text.strip().encode("utf-8"), source)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey(source={self.source!r}, key_id={self.key_id!r})"


@dataclass(frozen=True)
class Trust:
    """How a loader checks bundles: the key, whether unsigned bundles pass, and its own name.

    Parameters
    ----------
    key : the signing key; None when none is configured (a signed bundle is then refused,
        saying so).
    loader : who is loading (``aiops watch``, ``aiops serve``, ``MLflow pyfunc``...); every
        refusal names it, so an operator knows which process said no.
    allow_unsigned : accept a bundle without a valid signature (``--allow-unsigned``,
        ``AIOPS_ALLOW_UNSIGNED=1``), for local experiments only: the bundle's files are still
        checked against its manifest, and nothing in it is ever unpickled, but nothing proves
        who wrote it.
    """

    key: SigningKey | None
    loader: str
    allow_unsigned: bool = False

    def named(self, loader: str) -> "Trust":
        return Trust(self.key, loader, self.allow_unsigned)


def signature_of(manifest: bytes, key: SigningKey) -> dict:
    """The content of ``manifest.sig`` for these manifest bytes."""
    mac = hmac.new(key.secret, manifest, hashlib.sha256).hexdigest()
    return {"algorithm": ALGORITHM, "key_id": key.key_id, "signature": mac}


def write_signature(directory: Path, manifest: bytes, key: SigningKey) -> None:
    (Path(directory) / SIGNATURE).write_text(json.dumps(signature_of(manifest, key), indent=2,
                                                        sort_keys=True) + "\n")


def verify(directory: Path, manifest: bytes, trust: Trust) -> bool:
    """Check ``manifest.sig`` against ``manifest`` (the bytes of manifest.json).

    Returns True when the signature is valid, False when it is not but ``trust`` allows
    unsigned bundles; raises ``SignatureError`` naming the loader otherwise.
    """
    where = f"{trust.loader}: model bundle {directory}"
    problem = _problem(Path(directory), manifest, trust.key)
    if problem is None:
        return True
    if trust.allow_unsigned:
        print(f"aiops: warning: {where} {problem}; loaded anyway because unsigned bundles are "
              "allowed (--allow-unsigned / AIOPS_ALLOW_UNSIGNED)", file=sys.stderr)
        return False
    raise SignatureError(f"{where} {problem}; refusing to load it. Retrain it with `aiops train` "
                         f"under the key this process uses, or pass --allow-unsigned (set "
                         f"{ALLOW_UNSIGNED_ENV}=1) for a local experiment")


def _problem(directory: Path, manifest: bytes, key: SigningKey | None) -> str | None:
    return _problem_of(directory / SIGNATURE, manifest, key)


def _problem_of(path: Path, manifest: bytes, key: SigningKey | None) -> str | None:
    if not path.is_file():
        return f"is not signed (no {path.name})"
    try:
        recorded = json.loads(path.read_text())
        algorithm, key_id, mac = recorded["algorithm"], recorded["key_id"], recorded["signature"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"has an unreadable signature ({path.name})"
    if algorithm != ALGORITHM:
        return f"is signed with {algorithm!r}, not {ALGORITHM}"
    if key is None:
        return (f"is signed, but no signing key is configured here (set {KEY_ENV} or "
                f"{SECRET_ENV}, or keep the data directory's {KEY_FILE})")
    expected = signature_of(manifest, key)["signature"]
    if hmac.compare_digest(str(mac), expected):
        return None
    if key_id != key.key_id:
        return (f"is signed with another key (key id {key_id}; the key from {key.source} has "
                f"id {key.key_id})")
    return "does not match its signature (modified after signing)"


def sign_file(path: Path, key: SigningKey) -> Path:
    """Sign one file that is a model on its own (the root-cause model's JSON): ``<name>.sig``
    beside it, the same HMAC over the file's bytes."""
    path = Path(path)
    target = path.with_name(path.name + ".sig")
    target.write_text(json.dumps(signature_of(path.read_bytes(), key), indent=2, sort_keys=True) + "\n")
    return target


def verify_file(path: Path, trust: Trust) -> bool:
    """Check ``<name>.sig`` against the file's bytes; as ``verify`` (True, False when allowed
    unsigned, else ``SignatureError`` naming the loader)."""
    path = Path(path)
    data = path.read_bytes()
    signature = path.with_name(path.name + ".sig")
    where = f"{trust.loader}: model file {path}"
    problem = _problem_of(signature, data, trust.key)
    if problem is None:
        return True
    if trust.allow_unsigned:
        print(f"aiops: warning: {where} {problem}; loaded anyway because unsigned models are "
              "allowed (--allow-unsigned / AIOPS_ALLOW_UNSIGNED)", file=sys.stderr)
        return False
    raise SignatureError(f"{where} {problem}; refusing to load it")


# --------------------------------------------------------------------------- where keys live
def key_from_environment(environ: Mapping[str, str] | None = None) -> SigningKey | None:
    """``AIOPS_SIGNING_KEY`` when set (its UTF-8 bytes, at least 32 of them), else None."""
    environ = os.environ if environ is None else environ
    text = environ.get(KEY_ENV, "").strip()
    return SigningKey.from_text(text, KEY_ENV) if text else None


def allow_unsigned_from_environment(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(ALLOW_UNSIGNED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def local_key(data_dir: str | Path, *, create: bool,
              announce: Callable[[str], None] | None = None) -> SigningKey | None:
    """The data directory's own key (``<data dir>/signing.key``), generated when ``create``.

    A generated key is 32 random bytes (hex), written with mode 0600 so only its owner reads
    it; ``announce`` (stderr by default) is told once, when it is made. A key file that other
    users may read or write is refused: whoever can change it can sign a bundle.
    """
    path = Path(data_dir) / KEY_FILE
    if path.is_file():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SignatureError(f"the signing key {path} is readable or writable by other users "
                                 f"(mode {mode:o}); `chmod 600 {path}`")
        return SigningKey.from_text(path.read_text(), str(path))
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
    say = announce or (lambda line: print(line, file=sys.stderr))
    say(f"aiops: generated a signing key for model bundles at {path} (mode 0600); set "
        f"{KEY_ENV} or {SECRET_ENV} to sign with your own")
    return SigningKey.from_text(text, str(path))


def trust_from_environment(loader: str, data_dir: str | Path | None = None,
                           environ: Mapping[str, str] | None = None) -> Trust:
    """A loader's trust from the environment alone: ``AIOPS_SIGNING_KEY``, else the data
    directory's key file (never created here), and ``AIOPS_ALLOW_UNSIGNED``.

    For processes with no settings of their own (an MLflow pyfunc served by ``mlflow``); the
    application resolves its key with ``service.signing`` (which adds Secrets Manager).
    """
    environ = os.environ if environ is None else environ
    key = key_from_environment(environ)
    if key is None and data_dir is not None:
        key = local_key(data_dir, create=False)
    return Trust(key, loader, allow_unsigned_from_environment(environ))
