"""Bearer-token auth for the HTTP API's mutating endpoints (FastAPI's own ``HTTPBearer`` scheme).

Tokens come from the settings (``AIOPS_API_TOKENS``); a request must send one of them as
``Authorization: Bearer TOKEN``. Tokens are compared in constant time. With no token configured
the mutating endpoints are closed (every request is 401 and says why), unless the app was made
with ``insecure_no_auth=True``, which ``aiops serve --insecure-no-auth`` asks for explicitly.
Read-only endpoints (score, rca, incidents, health, metrics) need no token.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

_BEARER = HTTPBearer(auto_error=False, description="One of the tokens in AIOPS_API_TOKENS.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers=_CHALLENGE)


def token_matches(given: str, tokens: Sequence[SecretStr]) -> bool:
    """Whether ``given`` is one of ``tokens``; every token is compared, in constant time."""
    given_bytes = given.encode()
    found = False
    for token in tokens:
        found |= secrets.compare_digest(given_bytes, token.get_secret_value().encode())
    return found


def bearer_auth(tokens: Sequence[SecretStr], insecure_no_auth: bool = False) -> Callable[..., None]:
    """The dependency that guards a mutating route.

    Parameters
    ----------
    tokens : the accepted tokens.
    insecure_no_auth : accept every request when no token is configured (never on a shared host).
    """
    tokens = list(tokens)
    open_door = insecure_no_auth and not tokens

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER)) -> None:  # noqa: B008
        if open_door:
            return
        if not tokens:
            raise _unauthorized("this server has no API token configured, so mutating endpoints are "
                                "closed; set AIOPS_API_TOKENS")
        if credentials is None:
            raise _unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN'")
        if not token_matches(credentials.credentials, tokens):
            raise _unauthorized("invalid bearer token")

    return require_token
