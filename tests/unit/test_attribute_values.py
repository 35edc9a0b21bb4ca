"""The table's AttributeValue codec says exactly what boto3's TypeSerializer/TypeDeserializer say
(the functions no longer import boto3; its codec is the reference, and these tests use it)."""

from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from tokenmint.adapters.aws.attribute_values import deserialize, serialize

numbers = st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1) | st.decimals(
    allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20) | st.binary(min_size=1, max_size=20)
sets = (st.sets(st.text(max_size=10), min_size=1, max_size=4)
        | st.sets(st.integers(-1000, 1000), min_size=1, max_size=4)
        | st.sets(st.binary(min_size=1, max_size=8), min_size=1, max_size=4))
values = st.recursive(scalars | sets, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=4), max_leaves=20)


def boto3_plain(value):
    """boto3's deserialized value with its Binary wrapper unwrapped (ours gives bytes)."""
    if isinstance(value, Binary):
        return value.value
    if isinstance(value, list):
        return [boto3_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: boto3_plain(v) for k, v in value.items()}
    if isinstance(value, set):
        return {boto3_plain(v) for v in value}
    return value


def canonical(attribute):
    """Set members come in no particular order."""
    (kind, value), = attribute.items()
    if kind in ("SS", "NS", "BS"):
        return {kind: sorted(value)}
    if kind == "L":
        return {kind: [canonical(v) for v in value]}
    if kind == "M":
        return {kind: {k: canonical(v) for k, v in value.items()}}
    return attribute


@given(values)
def test_serialize_matches_boto3(value):
    assert canonical(serialize(value)) == canonical(TypeSerializer().serialize(value))


@given(values)
def test_deserialize_matches_boto3_and_round_trips(value):
    attribute = TypeSerializer().serialize(value)
    ours = deserialize(attribute)
    assert ours == boto3_plain(TypeDeserializer().deserialize(attribute))
    assert canonical(serialize(ours)) == canonical(attribute)


def test_numbers_come_back_as_decimal_like_boto3():
    assert deserialize({"N": "1700000000"}) == Decimal(1700000000)
    assert isinstance(deserialize({"N": "5"}), Decimal)
    assert deserialize({"M": {"n": {"NS": ["1", "2"]}}}) == {"n": {Decimal(1), Decimal(2)}}


@pytest.mark.parametrize("value", [1.5, float("nan"), Decimal("NaN"), Decimal("Infinity"), object(),
                                   Decimal("1." + "1" * 40), 10**40, [1.5], {"a": {"b": float("inf")}}])
def test_what_boto3_refuses_is_refused(value):
    with pytest.raises((TypeError, ArithmeticError)):
        TypeSerializer().serialize(value)
    with pytest.raises((TypeError, ArithmeticError)):
        serialize(value)


def test_an_empty_set_is_refused_before_dynamodb_would_refuse_it():
    with pytest.raises(TypeError):
        serialize(set())


def test_an_unknown_or_ambiguous_attribute_is_an_error():
    with pytest.raises(TypeError):
        deserialize({"X": "1"})
    with pytest.raises(TypeError):
        deserialize({"S": "a", "N": "1"})
