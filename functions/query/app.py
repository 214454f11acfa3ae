"""Query function: the HTTP API behind API Gateway."""

from mangum import Mangum

from ragops.api.app import create_query_app
from ragops.resources import get_service
from ragops.settings import get_settings

app = create_query_app()
# Lifespan off: Mangum would run startup and shutdown on every invocation. The pool opens
# on the first request; pool and model sessions live as long as the container.
handler = Mangum(app, lifespan="off", api_gateway_base_path=get_settings().api_base_path or "/")
# Open the model sessions while the runtime finishes its init (Lambda gives init full CPU).
get_service().prefetch_models()
