"""DynamoDB's typed JSON (AttributeValue) to Python values and back, as boto3's TypeSerializer and
TypeDeserializer do it for the types this table stores.

Written here so that no function imports boto3: botocore alone is enough for the calls, and
`import boto3` costs ~30 ms of every cold start (it pulls in s3transfer and the resource layer).
tests/unit/test_attribute_values.py checks this codec against boto3's on generated values.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

# DynamoDB numbers: up to 38 significant digits (boto3's DYNAMODB_CONTEXT).
_NUMBERS = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


def serialize(value: Any) -> dict[str, Any]:
    """One AttributeValue. Floats are refused, as boto3 refuses them: use int or Decimal."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, (int, Decimal)):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, bytearray)):
        return {"B": bytes(value)}
    if isinstance(value, (list, tuple)):
        return {"L": [serialize(item) for item in value]}
    if isinstance(value, Mapping):
        return {"M": {str(name): serialize(item) for name, item in value.items()}}
    if isinstance(value, (set, frozenset)) and value:
        if all(isinstance(item, str) for item in value):
            return {"SS": list(value)}
        if all(isinstance(item, (int, Decimal)) and not isinstance(item, bool) for item in value):
            return {"NS": [_number(item) for item in value]}
        if all(isinstance(item, (bytes, bytearray)) for item in value):
            return {"BS": [bytes(item) for item in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def deserialize(attribute: Mapping[str, Any]) -> Any:
    """The Python value of one AttributeValue: numbers as Decimal, sets as set, as boto3 gives them."""
    if len(attribute) != 1:
        raise TypeError("an AttributeValue has exactly one type")
    ((kind, value),) = attribute.items()
    if kind == "S" or kind == "BOOL":
        return value
    if kind == "N":
        return _NUMBERS.create_decimal(value)
    if kind == "NULL":
        return None
    if kind == "B":
        return bytes(value)
    if kind == "L":
        return [deserialize(item) for item in value]
    if kind == "M":
        return {name: deserialize(item) for name, item in value.items()}
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {_NUMBERS.create_decimal(item) for item in value}
    if kind == "BS":
        return {bytes(item) for item in value}
    raise TypeError(f"unknown AttributeValue type {kind}")


def _number(value: int | Decimal) -> str:
    number = _NUMBERS.create_decimal(value)
    if not number.is_finite():
        raise TypeError("DynamoDB numbers must be finite")
    return str(number)
