"""boto3 clients from one factory, and the local AWS endpoint (a moto server on loopback).

Clients honour the standard AWS environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...)
with botocore's standard retry mode, and are never made at import time.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"


@dataclass
class ClientFactory:
    """Makes boto3 clients from one session, with standard retries and an optional endpoint.

    Parameters
    ----------
    region : the region; AWS_REGION / AWS_DEFAULT_REGION / the profile when None.
    profile : a named profile; AWS_PROFILE when None.
    endpoint_url : a local endpoint; AWS_ENDPOINT_URL (honoured by boto3 itself) when None.
    max_attempts : botocore standard-mode retries after the first attempt (its ``max_attempts``
        setting counts retries: 5 means at most 6 attempts per call).
    """

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict = field(default_factory=dict, init=False, repr=False)

    def session(self) -> boto3.session.Session:
        if self._session is None:
            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            self._session = boto3.session.Session(profile_name=self.profile,
                                                  region_name=region or None)
            if self._session.region_name is None:
                self._session = boto3.session.Session(profile_name=self.profile,
                                                      region_name=DEFAULT_REGION)
        return self._session

    def client(self, service: str):
        """A cached client for ``service`` (``ecs``, ``cloudwatch``, ``sns``, ``ses`` ...)."""
        if service not in self._clients:
            config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts},
                            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)
            kwargs = {"config": config}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            self._clients[service] = self.session().client(service, **kwargs)
        return self._clients[service]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_aws(env: bool = True) -> Iterator[str]:
    """Start a moto server on 127.0.0.1 at a free port and yield its endpoint URL.

    With ``env``, the standard AWS variables point at it (fake credentials, a region, the
    endpoint) for the duration, so every client the factory makes talks to it; they are
    restored afterwards.
    """
    from moto.server import (
        ThreadedMotoServer,  # a test/demo dependency, not needed on real AWS
    )

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per API call
    _serialize_moto_dynamodb_writes()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _LOCAL_ENV}
    try:
        if env:
            os.environ.pop("AWS_PROFILE", None)
            os.environ.update(_local_env(endpoint))
        yield endpoint
    finally:
        if env:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        server.stop()


_MOTO_WRITES = threading.RLock()   # a transaction calls the other writes inside it


def _serialize_moto_dynamodb_writes() -> None:
    """Make the emulator's DynamoDB writes atomic, as DynamoDB's are.

    moto checks a write's condition and then applies it without a lock, and its server answers
    each request on a thread of its own, so two racing conditional writes (or transactions) can
    both pass their conditions: something real DynamoDB never allows (transactions are
    serializable, a conditional write is atomic). Every write goes through one lock here, on the
    local endpoint only; code that talks to AWS is unchanged.
    """
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
        method = getattr(DynamoDBBackend, name, None)
        if method is None or getattr(method, "_serialized", False):
            continue

        def locked(self, *args, __method=method, **kwargs):
            with _MOTO_WRITES:
                return __method(self, *args, **kwargs)

        locked._serialized = True
        setattr(DynamoDBBackend, name, functools.wraps(method)(locked))


_LOCAL_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
              "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def _local_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": DEFAULT_REGION, "AWS_DEFAULT_REGION": DEFAULT_REGION}


def reset_local_aws(endpoint: str) -> None:
    """Clear all state of a moto server (``POST /moto-api/reset``)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"),
                           timeout=10).read()
