"""The scheduled key rotation (EventBridge schedule in template.yaml): one idempotent step of the
lifecycle in keys.py each run: create the next key, promote it once pre-published long enough,
retire keys whose tokens have all expired, then disable and schedule their deletion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import runtime
from ..observability import audit, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    actions = runtime.backend().key_ring.rotate(force=bool((event or {}).get("force")))
    for action in actions:
        audit("keys.rotation", "success", detail=action)
    return {"actions": actions}
