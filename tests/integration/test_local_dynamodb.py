"""The local endpoint's DynamoDB (moto, patched by ``service.aws.prepare_local_dynamodb``): a
cancelled transaction writes nothing, and the emulator keeps no copies of what it answered, so a
long benchmark on one table runs in the memory its table needs."""

from __future__ import annotations

import gc

import pytest
from botocore.exceptions import ClientError

from service.aws import ClientFactory, reset_local_aws
from service.dynamo_store import create_table

pytestmark = pytest.mark.integration

TABLE = "local-dynamodb"


@pytest.fixture()
def ddb(endpoint):
    reset_local_aws(endpoint)
    client = ClientFactory().client("dynamodb")
    create_table(client, TABLE)
    for name in ("a", "c"):
        client.put_item(TableName=TABLE, Item={"pk": {"S": name}, "sk": {"S": "x"}, "v": {"N": "1"}})
    return client


def _items(client) -> dict[str, dict]:
    return {i["pk"]["S"]: i for i in client.scan(TableName=TABLE, ConsistentRead=True)["Items"]}


def _update(name: str, expression: str, values: dict) -> dict:
    return {"Update": {"TableName": TABLE, "Key": {"pk": {"S": name}, "sk": {"S": "x"}},
                       "UpdateExpression": expression, "ExpressionAttributeValues": values}}


def _put(name: str, **extra) -> dict:
    return {"Put": {"TableName": TABLE, "Item": {"pk": {"S": name}, "sk": {"S": "x"}}, **extra}}


def test_a_cancelled_transaction_writes_none_of_its_items(ddb) -> None:
    before = _items(ddb)
    with pytest.raises(ClientError) as cancelled:
        ddb.transact_write_items(TransactItems=[
            _update("a", "SET v = :two", {":two": {"N": "2"}}),
            _put("b"),
            _put("d", ConditionExpression="attribute_exists(pk)"),   # fails: there is no d
            {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "c"}, "sk": {"S": "x"}}}},   # after it
            _put("e")])
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _items(ddb) == before, "a changed back, b and e never there, c still there"


def test_a_transaction_refused_halfway_writes_nothing(ddb) -> None:
    with pytest.raises(ClientError) as refused:
        ddb.transact_write_items(TransactItems=[
            _put("b"),
            _update("a", "SET v = v + :s", {":s": {"S": "?"}})])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert sorted(_items(ddb)) == ["a", "c"] and _items(ddb)["a"]["v"] == {"N": "1"}


def test_a_transaction_that_passes_writes_every_item(ddb) -> None:
    ddb.transact_write_items(TransactItems=[
        _put("b", ConditionExpression="attribute_not_exists(pk)"),
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "c"}, "sk": {"S": "x"}}}}])
    assert sorted(_items(ddb)) == ["a", "b"]


def test_the_emulator_keeps_no_copy_of_a_table_or_an_item(ddb) -> None:
    """moto used to keep every model object it made: a whole copy of the table per transaction
    item, a copy of every item a read answered."""
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    taken = _put("a", ConditionExpression="attribute_not_exists(pk)")
    for n in range(20):
        ddb.transact_write_items(TransactItems=[_put(f"n{n}"), _put(f"m{n}")])
        with pytest.raises(ClientError):
            ddb.transact_write_items(TransactItems=[taken])
        ddb.query(TableName=TABLE, KeyConditionExpression="pk = :a",
                  ExpressionAttributeValues={":a": {"S": "a"}}, ConsistentRead=True)
    stored = len(_items(ddb))
    gc.collect()
    alive = gc.get_objects()
    assert sum(isinstance(o, Table) for o in alive) == 1
    assert sum(isinstance(o, Item) for o in alive) <= stored
