"""AWS clients: created once per process, on first use, from one botocore session, with short
timeouts and bounded retries, and measured: every call's latency and throttling become metrics
(botocore event hooks). botocore, not boto3: the functions need no resource layer, and importing
boto3 costs ~30 ms of every cold start."""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from ... import observability

# A token request waits on these calls: fail fast and let the client retry. One retry ("standard"
# mode: jittered backoff under 1 s) bounds a call to ~4 s, so even a cold request's four calls end
# in our 503 JSON before the function's timeout (template.yaml: 20 s), never in a bare gateway 5xx.
# DynamoDB GetItem and KMS Sign answer in milliseconds when healthy.
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
MAX_ATTEMPTS = 2
_SESSION_LOCK = threading.Lock()

THROTTLING_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "KMSInternalException", "DependencyTimeoutException",
    "KeyUnavailableException", "LimitExceededException",
})


@functools.cache
def aws_client(service: str, region: str | None = None) -> Any:
    from botocore.config import Config

    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"}, tcp_keepalive=True)
    with _SESSION_LOCK:  # a botocore session is not safe for concurrent client creation
        client = _session().create_client(service, region_name=region, config=config)
    instrument(client)
    return client


@functools.cache
def _session() -> Any:
    """One botocore session for every client: its loader reads the endpoint and service data once.
    (A session per client read it all again: ~20 ms more per cold start.)"""
    import botocore.session

    return botocore.session.get_session()


def reset() -> None:
    """Forget every client and the session (tests: a new moto world, new credentials)."""
    aws_client.cache_clear()
    _session.cache_clear()


# Request-rate throttling: each attempt answered so counts, retried or not (an early warning).
THROTTLED_CODES = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException",
                             "RequestLimitExceeded", "TooManyRequestsException"})
_CALL = "tokenmint_call"  # our key in botocore's per-call context dict


def instrument(client: Any) -> None:
    """Time every call of ``client`` (DependencyLatency: from the call to its answer, retries and
    backoff included, as the function waits for it) and count its throttled attempts
    (DependencyThrottled), by AWS service and operation. Only names and timings: never a parameter
    or a response, so no key, token or table item reaches a metric."""
    events = client.meta.events
    events.register("before-call", _started)
    events.register("response-received", _attempted)
    events.register("after-call", _finished)
    events.register("after-call-error", _finished)


def _started(model: Any, context: dict, **_: Any) -> None:
    context[_CALL] = [str(model.service_model.service_id), model.name, time.perf_counter(), 0]


def _attempted(context: dict, parsed_response: dict | None = None, **_: Any) -> None:
    call = context.get(_CALL)
    if call and parsed_response and parsed_response.get("Error", {}).get("Code") in THROTTLED_CODES:
        call[3] += 1


def _finished(context: dict, **_: Any) -> None:
    call = context.pop(_CALL, None)
    if call:
        dependency, operation, started, throttled = call
        observability.dependency_call(dependency, operation, (time.perf_counter() - started) * 1000, throttled)


def is_unavailable(exc: Exception) -> bool:
    """Whether an AWS error means "try again later" rather than a bug or a misconfiguration."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, ReadTimeoutError

    if isinstance(exc, (ConnectionError, HTTPClientError, ReadTimeoutError)):
        return True
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in THROTTLING_CODES
