"""One Logger and one Metrics for every function, and the audit trail: one structured event per
security decision, from which the business metrics are derived.

Audit events name the client, never a secret or a token (only its ``jti``). Metric dimensions are
low-cardinality by construction: an OAuth error code from a fixed set, an AWS service and
operation, a registration action; never a client id, an address or a ``jti``.
"""

from __future__ import annotations

import contextvars
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "tokenmint"
logger = Logger(service="tokenmint")

# The error codes a denial is counted under (RFC 6749 §5.2, 6750 §3.1, 7591 §3.2.2, 8707, 9449, and
# the authorizer's own); any other outcome counts as "other", so no client can invent a dimension value.
REASONS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "invalid_target", "invalid_token", "insufficient_scope", "invalid_client_metadata",
    "invalid_software_statement", "unapproved_software_statement", "unsupported_response_type",
    "unsupported_token_type", "invalid_dpop_proof", "use_dpop_nonce", "access_denied", "slow_down",
    "temporarily_unavailable", "server_error", "unconfigured_route",
})
DENIALS = frozenset({"token.denied", "token.revocation_denied", "token.introspection_denied",
                     "registration.denied", "resource.denied", "authorizer.denied"})
REGISTRATION_ACTIONS = {"registration.created": "created", "registration.updated": "updated",
                        "registration.deleted": "deleted"}


class _Emf(AmazonCloudWatchEMFProvider):
    """Powertools' CloudWatch EMF provider, with three changes:

    - a metric may carry dimensions of its own (``add_dimensioned``). EMF gives a document one value
      per dimension name, so each distinct set of values is one more document at flush; with
      ``aggregate`` the document also declares the ``service``-only set, so one alarm sees the total;
    - an invocation without metrics prints nothing (powertools warns each time);
    - a process that does not publish (``publish(False)``: the CLI, ``tokenmint serve``) collects
      nothing: powertools would print a full set of 100 values even when disabled.
    """

    def __init__(self) -> None:
        super().__init__(namespace=NAMESPACE, metric_set={}, dimension_set={}, metadata_set={},
                         default_dimensions={})
        self.enabled = True
        self._groups: dict[tuple[Any, ...], AmazonCloudWatchEMFProvider] = {}

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        if self.enabled:
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)

    def add_dimensioned(self, name: str, unit: str, value: float, dimensions: dict[str, str],
                        aggregate: bool = False) -> None:
        if not self.enabled:
            return
        key = (self.service, aggregate, *dimensions.items())
        group = self._groups.get(key)
        if group is None:
            group = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=self.service, metric_set={},
                                                dimension_set={}, metadata_set={}, default_dimensions={})
            for dimension, dimension_value in dimensions.items():
                group.add_dimension(name=dimension, value=dimension_value)
            if aggregate and self.service:
                group.add_dimensions(service=self.service)
            self._groups[key] = group
        group.add_metric(name=name, unit=unit, value=value)

    def add_cold_start_metric(self, context: Any) -> None:
        if self.enabled:
            super().add_cold_start_metric(context=context)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        # A group keeps its dimensions for the next invocation (there are few: they are bounded),
        # sparing a provider's construction per group and invocation.
        filled = [group for group in self._groups.values() if group.metric_set]
        if self.enabled and not is_metrics_disabled():
            for provider in ([self] if self.metric_set else []) + filled:
                print(json.dumps(provider.serialize_metric_set(), separators=(",", ":")))
        for group in filled:
            group.metric_set.clear()
        self.clear_metrics()


# The ``service`` dimension is POWERTOOLS_SERVICE_NAME: template.yaml sets it to the stack's name,
# so that two stacks in one account and region keep their metrics (and alarms) apart.
_emf = _Emf()
metrics = Metrics(namespace=NAMESPACE, provider=_emf)


def publish(enabled: bool) -> None:
    """Whether this process collects and prints metrics (EMF on stdout). On in Lambda; off in the
    CLI, whose stdout is its user's, and in ``tokenmint serve`` unless POWERTOOLS_METRICS_DISABLED=false."""
    _emf.enabled = enabled
    _emf.clear_metrics()
    _emf._groups.clear()


def dependency_call(dependency: str, operation: str, milliseconds: float, throttled: int = 0) -> None:
    """One AWS call as its caller saw it (retries included), and how many of its attempts were throttled."""
    dimensions = {"Dependency": dependency, "Operation": operation}
    _emf.add_dimensioned("DependencyLatency", "Milliseconds", milliseconds, dimensions)
    if throttled:
        _emf.add_dimensioned("DependencyThrottled", "Count", throttled, dimensions, aggregate=True)


def _count(action: str, outcome: str) -> None:
    """The business metrics, derived from the audit trail so that handlers stay as they are."""
    if action == "token.issued":
        _emf.add_metric("TokensIssued", "Count", 1)
    elif action == "token.revoked":
        _emf.add_metric("Revocations", "Count", 1)
    elif action in DENIALS:
        reason = outcome if outcome in REASONS else "other"
        _emf.add_dimensioned("AuthFailures", "Count", 1, {"Reason": reason}, aggregate=True)
    elif action in REGISTRATION_ACTIONS:
        _emf.add_dimensioned("Registrations", "Count", 1, {"Action": REGISTRATION_ACTIONS[action]})


# -- the audit trail --------------------------------------------------------------------------------
AuditSink = Callable[[dict[str, Any]], None]
_sinks: list[AuditSink] = []
_request_source: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("request_source")


def audit(action: str, outcome: str, **fields: Any) -> None:
    """Record ``action`` (e.g. ``token.issued``) with its outcome and non-secret details: a
    structured log line, the metrics it implies, and every installed sink (the embedded backend's
    audit table). The request's source IP and user agent are added when the caller did not name them."""
    event = {"action": action, "outcome": outcome}
    event.update((k, v) for k, v in _request_source.get({}).items() if fields.get(k) is None)
    event.update((k, v) for k, v in fields.items() if v is not None)
    logger.info(action, extra={"audit": True, **event})
    _count(action, outcome)
    if _sinks:
        record = {"at": round(time.time(), 3), **event}
        for sink in list(_sinks):
            try:
                sink(record)
            except Exception as exc:  # noqa: BLE001 - the trail is best effort here; the request's outcome is not
                logger.warning("audit event not stored", extra={"action": action, "error": repr(exc)})


def install_audit_sink(sink: AuditSink) -> None:
    """Also hand every audit event to ``sink`` (it must be quick and safe from any thread)."""
    if sink not in _sinks:
        _sinks.append(sink)


def remove_audit_sink(sink: AuditSink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def audit_source(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """Decorator of a ``lambda_handler``: the API Gateway request's source IP and user agent go
    with every audit event of the invocation, whichever code records it."""
    @functools.wraps(handler)
    def decorated(event: dict, context: Any) -> Any:
        http = ((event or {}).get("requestContext") or {}).get("http") or {}
        source = {"source_ip": http.get("sourceIp"), "user_agent": (http.get("userAgent") or "")[:256] or None}
        token = _request_source.set({k: v for k, v in source.items() if v})
        try:
            return handler(event, context)
        finally:
            _request_source.reset(token)
    return decorated


def log_to(stream: IO[str] = sys.stderr, level: str = "INFO") -> None:
    """Send the structured log (audit lines included) to ``stream`` at ``level``: the CLI keeps its
    stdout for its own output."""
    handler = logger.registered_handler
    if hasattr(handler, "setStream"):
        handler.setStream(stream)
    logger.setLevel(level)
