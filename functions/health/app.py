"""Health function: GET /health."""

from mangum import Mangum

from ragops.api.app import create_health_app
from ragops.observability.logs import configure_service_logging, running_in_lambda
from ragops.settings import get_settings

settings = get_settings()
if running_in_lambda():  # imported elsewhere (tests), the host's logging stays as it is
    configure_service_logging(settings.log_level)
app = create_health_app()
handler = Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path or "/")
