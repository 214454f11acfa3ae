"""Query function: the HTTP API behind API Gateway."""

from mangum import Mangum

from ragops.api.app import create_query_app
from ragops.settings import get_settings

app = create_query_app()
# Lifespan off: Mangum would run startup and shutdown on every invocation. The pool and
# model sessions open lazily on the first request and live as long as the container.
handler = Mangum(app, lifespan="off", api_gateway_base_path=get_settings().api_base_path or "/")
