"""Where the application's model-signing key comes from, and each loader's trust.

In order: ``AIOPS_SIGNING_KEY`` (``Settings.signing_key``); the AWS Secrets Manager secret
``AIOPS_SIGNING_SECRET_ID`` names (read through the one boto3 client factory, once per process;
the Lambda and the ECS tasks use this); else the data directory's own key file
(``<data dir>/signing.key``, mode 0600), which training generates the first time it needs one
and says so on stderr. Loaders never generate a key: a process without one refuses signed
bundles, saying where a key is looked for.

``models/`` takes the key as a value (``models.signing.Trust``) and never talks to AWS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.signing import SignatureError, SigningKey, Trust, local_key
from service.settings import Settings

if TYPE_CHECKING:  # boto3 is imported only when a secret is read
    from service.aws import ClientFactory


class SigningKeyError(SignatureError):
    """The configured key could not be read (the secret, its permissions, its length)."""


def signing_key(settings: Settings, *, create: bool = False,
                factory: ClientFactory | None = None) -> SigningKey | None:
    """The key to sign and check bundles with, or None when none is configured.

    ``create`` generates the data directory's key when nothing else is configured (training).
    """
    if settings.signing_key is not None:
        return SigningKey.from_text(settings.signing_key.get_secret_value(), "AIOPS_SIGNING_KEY")
    if settings.signing_secret_id:
        secret_id = settings.signing_secret_id
        if secret_id not in _FROM_SECRETS:
            if factory is None:
                from service.aws import ClientFactory

                factory = ClientFactory()
            _FROM_SECRETS[secret_id] = _secret_key(secret_id, factory)
        return _FROM_SECRETS[secret_id]
    return local_key(settings.data_dir, create=create)


_FROM_SECRETS: dict[str, SigningKey] = {}  # one Secrets Manager read per secret and process
# What reading the key from Secrets Manager needs (deploy/iam-policy.json grants it on that secret).
IAM_PERMISSIONS = ("secretsmanager:GetSecretValue",)


def _secret_key(secret_id: str, factory: ClientFactory) -> SigningKey:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = factory.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as exc:
        raise SigningKeyError(f"cannot read the model signing key from Secrets Manager secret "
                              f"{secret_id!r} (AIOPS_SIGNING_SECRET_ID): {exc}") from None
    text = answer.get("SecretString")
    if text is None:
        raw = answer.get("SecretBinary") or b""
        return SigningKey(bytes(raw), f"Secrets Manager secret {secret_id}")
    return SigningKey.from_text(text, f"Secrets Manager secret {secret_id}")


def bundle_trust(settings: Settings, loader: str, *, allow_unsigned: bool = False,
                 create: bool = False, factory: ClientFactory | None = None) -> Trust:
    """How ``loader`` checks the bundles it loads: the configured key, and whether unsigned
    bundles pass (``--allow-unsigned`` or ``AIOPS_ALLOW_UNSIGNED``)."""
    return Trust(signing_key(settings, create=create, factory=factory), loader,
                 allow_unsigned or settings.allow_unsigned)
