"""boto3 clients from one factory, and the local AWS endpoint (a moto server on loopback).

Clients honour the standard AWS environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...)
with botocore's standard retry mode, and are never made at import time.
"""

from __future__ import annotations

import copy
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
    prepare_local_dynamodb()
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
_NO_TABLE_COPY = threading.local()   # set while a transaction keeps its own undo log


def prepare_local_dynamodb() -> None:
    """Make the emulator's DynamoDB (moto, in this process) fit for long runs that share a table.

    Call it before the server answers its first request (:func:`local_aws` does; so does
    ``aiops simulate run``). Three changes, on the local endpoint only, to moto's DynamoDB and
    nothing else; code that talks to AWS is unchanged:

    - writes are serialized, so conditions hold as on DynamoDB (:func:`_serialize_moto_dynamodb_writes`);
    - moto forgets the DynamoDB objects it made once nothing uses them
      (:func:`_untrack_moto_dynamodb_models`): it used to keep every one, copies included;
    - a transaction undoes only the items it wrote when it is cancelled
      (:func:`_transactions_undo_their_items`) instead of copying the whole table first.
    """
    _untrack_moto_dynamodb_models()
    _transactions_undo_their_items()
    _serialize_moto_dynamodb_writes()


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


def _untrack_moto_dynamodb_models() -> None:
    """Stop moto from keeping every DynamoDB table and item object it ever made.

    moto's ``BaseModel.__new__`` appends each new model object to its class's
    ``instances_tracked`` list (for its web dashboard) and never takes it out. Its DynamoDB
    makes model objects on every request: a copy of each item a read answers, a copy of the
    item an update replaces and, for every item of a ``TransactWriteItems``, a copy of the
    whole table (its undo state). All of them stayed alive, so a server whose table grows keeps
    a full table per transaction item: ``aiops benchmark ha`` reached 21.6 GB at 187
    incidents. DynamoDB's model objects are made untracked here (the tables and items the
    server holds stay alive because the server holds them); other services' are unchanged
    (moto's S3 reads its list to close files on reset).
    """
    from moto.core.common_models import BaseModel

    if getattr(BaseModel.__new__, "_untracked", False):
        return
    tracked = BaseModel.__new__

    def __new__(cls, *args, **kwargs):
        if cls.__module__.startswith("moto.dynamodb."):
            return object.__new__(cls)
        return tracked(cls, *args, **kwargs)

    __new__._untracked = True
    BaseModel.__new__ = staticmethod(__new__)


class _CopiesButNotTables:
    """moto's DynamoDB module's ``copy``, which leaves tables uncopied inside an undo-logged
    transaction (:func:`_transactions_undo_their_items`) and copies everything else as ``copy`` does."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_NO_TABLE_COPY, "on", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _transactions_undo_their_items() -> None:
    """A cancelled ``TransactWriteItems`` puts back the items it wrote, not a copy of the table.

    moto deep-copies the whole table once per item of a transaction before writing anything,
    and puts the copy back if one of the items fails: the time of every transaction grows with
    the table (hundreds of milliseconds once it holds a few thousand items). Here the items the
    transaction names are copied instead (an item is at most 400 KB; a transaction at most 100),
    moto writes them as it does, and if it cancels the transaction they are restored: the same
    all-or-nothing, at the cost of the transaction's own items.
    """
    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType

    method = models.DynamoDBBackend.transact_write_items
    if getattr(method, "_undo_logged", False):
        return
    models.copy = _CopiesButNotTables()

    def transact_write_items(self, transact_items: list[dict[str, Any]]) -> None:
        with _MOTO_WRITES:
            before = []   # (table, hash key, range key, the item before, None if absent)
            for entry in transact_items:
                try:
                    op = next(iter(entry.values()))
                    table = self.tables[op["TableName"]]
                    key = op["Item"] if "Item" in op else op["Key"]
                    hash_key = DynamoType(key[table.hash_key_attr])
                    range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                    item = table.get_item(hash_key, range_key)
                except Exception:  # noqa: BLE001 - a malformed item: moto refuses it before any write
                    continue
                before.append((table, hash_key, range_key, copy.deepcopy(item)))
            _NO_TABLE_COPY.on = True
            try:
                return method(self, transact_items)
            except BaseException:
                for table, hash_key, range_key, item in reversed(before):
                    _put_back(table, hash_key, range_key, item)
                raise
            finally:
                _NO_TABLE_COPY.on = False

    transact_write_items._undo_logged = True
    models.DynamoDBBackend.transact_write_items = functools.wraps(method)(transact_write_items)


def _put_back(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Restore one item of a moto table as it was (``item`` None: it did not exist). A table
    with a range key keeps its partitions in a ``defaultdict`` and never drops an empty one,
    as moto's own writes and deletes do."""
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
    elif item is None:
        table.items[hash_key].pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


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
