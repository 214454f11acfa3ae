"""Health function: GET /health."""

from mangum import Mangum

from ragops.api.app import create_health_app
from ragops.settings import get_settings

app = create_health_app()
handler = Mangum(app, lifespan="off", api_gateway_base_path=get_settings().api_base_path or "/")
