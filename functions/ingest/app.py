"""Ingest function: S3 object events (direct, in SQS batches, or from EventBridge)."""

from typing import Any

from aws_lambda_powertools import Logger

from ragops.ingest.handler import handle_event

logger = Logger(service="ragops-ingest")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_event(event, context)
