"""boto3 clients: created once per process, on first use, with short timeouts and bounded retries."""

from __future__ import annotations

import functools
from typing import Any

# A token request waits on these calls: fail fast and let the client retry. One retry ("standard"
# mode: jittered backoff under 1 s) bounds a call to ~4 s, so even a cold request's four calls end
# in our 503 JSON before the function's timeout (template.yaml: 20 s), never in a bare gateway 5xx.
# DynamoDB GetItem and KMS Sign answer in milliseconds when healthy.
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
MAX_ATTEMPTS = 2

THROTTLING_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "KMSInternalException", "DependencyTimeoutException",
    "KeyUnavailableException", "LimitExceededException",
})


@functools.cache
def aws_client(service: str, region: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"}, tcp_keepalive=True)
    return boto3.session.Session().client(service, region_name=region, config=config)


def is_unavailable(exc: Exception) -> bool:
    """Whether an AWS error means "try again later" rather than a bug or a misconfiguration."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, ReadTimeoutError

    if isinstance(exc, (ConnectionError, HTTPClientError, ReadTimeoutError)):
        return True
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in THROTTLING_CODES
