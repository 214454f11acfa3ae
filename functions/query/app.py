"""Query function: the HTTP API behind API Gateway."""

from mangum import Mangum

from ragops.api.app import create_query_app
from ragops.observability.logs import configure_service_logging, running_in_lambda
from ragops.observability.metrics import with_emf_metrics
from ragops.observability.tracing import configure_tracing
from ragops.resources import get_service
from ragops.settings import get_settings

settings = get_settings()
if running_in_lambda():  # imported elsewhere (tests), the host's logging stays as it is
    configure_service_logging(settings.log_level)
configure_tracing(settings.tracing)
app = create_query_app()
# Lifespan off: Mangum would run startup and shutdown on every invocation. The pool opens
# on the first request; pool and model sessions live as long as the container.
handler = with_emf_metrics(
    Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path or "/"),
    service="ragops-query",
)
# Open the model sessions while the runtime finishes its init (Lambda gives init full CPU).
get_service().prefetch_models()
