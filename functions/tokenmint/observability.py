"""One Logger for every function, and the audit trail: one structured event per security decision.

Audit events name the client, never a secret or a token (only its ``jti``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(service="tokenmint")


def audit(action: str, outcome: str, **fields: Any) -> None:
    """Log ``action`` (e.g. ``token.issued``) with its outcome and non-secret details."""
    logger.info(action, extra={"audit": True, "action": action, "outcome": outcome,
                               **{k: v for k, v in fields.items() if v is not None}})
