"""Ingest function: S3 object events (direct, in SQS batches, or from EventBridge)."""

from typing import Any

from ragops.ingest.handler import handle_event
from ragops.observability.logs import configure_service_logging, log_fields, running_in_lambda
from ragops.observability.metrics import with_emf_metrics
from ragops.observability.tracing import configure_tracing
from ragops.settings import get_settings

settings = get_settings()
if running_in_lambda():  # imported elsewhere (tests), the host's logging stays as it is
    configure_service_logging(settings.log_level)
configure_tracing(settings.tracing)


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with log_fields(request_id=context.aws_request_id):
        return handle_event(event, context)


handler = with_emf_metrics(_handle, service="ragops-ingest")
