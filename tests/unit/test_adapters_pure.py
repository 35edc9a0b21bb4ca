"""Adapter logic that needs no AWS: the registry cache and the classification of AWS failures."""

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from support.fakes import InMemoryStore
from tokenmint.adapters.aws.clients import is_unavailable
from tokenmint.adapters.cache import CachedResourceStore
from tokenmint.ports import UnavailableError


class FlakyRegistry(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def list_resources(self):
        if self.down:
            raise UnavailableError("DynamoDB query is unavailable")
        return super().list_resources()


def test_given_the_registry_is_throttled_when_the_snapshot_is_stale_then_it_keeps_serving_for_a_while():
    registry, now = FlakyRegistry(), [0.0]
    registry.add_resource("https://api.example.com/", "read")
    cache = CachedResourceStore(registry, lambda: now[0], ttl=30, min_reload_interval=1, max_stale=300)
    assert cache.get_resource("https://api.example.com/")
    registry.down = True
    now[0] = 31
    assert cache.get_resource("https://api.example.com/")  # stale but served
    now[0] = 299
    assert cache.list_resources()
    now[0] = 301
    with pytest.raises(UnavailableError):
        cache.list_resources()
    registry.down = False
    assert cache.get_resource("https://api.example.com/")


@pytest.mark.parametrize("exc, unavailable", [
    (ConnectionClosedError(endpoint_url="https://dynamodb"), True),
    (EndpointConnectionError(endpoint_url="https://kms"), True),
    (ReadTimeoutError(endpoint_url="https://kms"), True),
    (ClientError({"Error": {"Code": "ThrottlingException"}}, "Sign"), True),
    (ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetItem"), True),
    (ClientError({"Error": {"Code": "AccessDeniedException"}}, "Sign"), False),
    (ClientError({"Error": {"Code": "ValidationException"}}, "GetItem"), False),
])
def test_given_an_aws_failure_when_classified_then_only_transient_ones_mean_retry_later(exc, unavailable):
    assert is_unavailable(exc) is unavailable
