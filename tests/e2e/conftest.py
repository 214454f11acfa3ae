"""End to end through the Lambda handlers: moto for S3/SQS, everything else real.

Each test gets a fresh database, and the process-wide caches the functions read
(settings, service, S3 client) are cleared around it, exactly as a new Lambda
execution environment would start.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from moto import mock_aws

from ragops import resources
from ragops.access.keys import create_key
from ragops.db.database import ensure_pgvector
from ragops.db.migrate import migrate
from ragops.dev.aws import LOCAL_REGION, LocalResources, create_resources
from ragops.dev.definitions import load_definition
from ragops.dev.worker import sqs_event
from ragops.resources import get_service
from ragops.settings import get_settings

EVENTS = Path(__file__).resolve().parents[1] / "events"
HTTP_API_EVENT = json.loads((EVENTS / "http-api-proxy.json").read_text())
S3_PUT_EVENT = json.loads((EVENTS / "s3-put.json").read_text())
S3_DELETE_EVENT = json.loads((EVENTS / "s3-delete.json").read_text())


@dataclass
class ApiCredentials:
    """The API key `query_api` and `http_event` send unless told otherwise."""

    key: str | None = None


CREDENTIALS = ApiCredentials()


def create_api_key(database_url: str, collection: str = "default") -> str:
    """A key for `collection`, made on the admin path (the database migrated first)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_pgvector(conn)
        migrate(conn)
        _, secret = create_key(conn, collection, "tests")
    return secret


def api_headers(key: str | None = None) -> dict[str, str]:
    """The Authorization header carrying `key` (by default the test's key)."""
    secret = key or CREDENTIALS.key
    assert secret, "no API key: use the lambda_env fixture"
    return {"authorization": f"Bearer {secret}"}


def reset_process_resources() -> None:
    """Forget the settings, the service (closing its pool) and the S3 client."""
    if get_service.cache_info().currsize:
        get_service().close()
    get_service.cache_clear()
    get_settings.cache_clear()
    resources._s3_client.cache_clear()


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, model_dir: Path, tmp_path: Path
) -> Iterator[None]:
    """The functions' environment over a fresh database, with cold process caches."""
    env = {
        "RAGOPS_DATABASE_URL": database_url,
        "RAGOPS_MODEL_DIR": str(model_dir),
        "RAGOPS_DATA_DIR": str(tmp_path / "data"),
        "RAGOPS_POOL_MIN_SIZE": "0",
        "RAGOPS_POOL_MAX_SIZE": "2",
        # Small chunks: a few sentences make several chunks, so chunk sets can be compared.
        "RAGOPS_CHUNK_TOKENS": "48",
        "RAGOPS_CHUNK_OVERLAP": "8",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in (
        "RAGOPS_API_BASE_PATH",
        "RAGOPS_S3_ENDPOINT_URL",
        "RAGOPS_SQS_ENDPOINT_URL",
        "RAGOPS_MAX_QUERY_CHARS",
        "RAGOPS_AUTH",
        "RAGOPS_AUTH_CACHE_SECONDS",
        "RAGOPS_JWT_COLLECTIONS_CLAIM",
        "RAGOPS_RATE_LIMIT_PER_MINUTE",
        "RAGOPS_MAX_REQUEST_BYTES",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    reset_process_resources()
    # Auth is on, as deployed: requests carry a key for the default collection.
    CREDENTIALS.key = create_api_key(database_url)
    yield
    CREDENTIALS.key = None
    reset_process_resources()


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object the handlers and Powertools read."""

    function_name: str = "ragops-ingest"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = f"arn:aws:lambda:{LOCAL_REGION}:123456789012:function:ragops-ingest"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def is_test_event(body: str) -> bool:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return False
    return isinstance(payload, dict) and payload.get("Event") == "s3:TestEvent"


@dataclass
class Stack:
    """The bucket, queue and dead-letter queue of template.yaml, on moto."""

    resources: LocalResources
    s3: Any
    sqs: Any

    @property
    def bucket(self) -> str:
        return self.resources.bucket

    def receive(self, expected: int, queue_url: str | None = None) -> list[dict[str, Any]]:
        """`expected` object messages, after deleting the s3:TestEvent S3 sends first."""
        url = queue_url or self.resources.queue_url
        messages: list[dict[str, Any]] = []
        for _ in range(10):
            if len(messages) >= expected:
                break
            response = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            for message in response.get("Messages", []):
                if is_test_event(message["Body"]):
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    messages.append(message)
        assert len(messages) == expected, [m["Body"] for m in messages]
        return messages

    def ingest(
        self, messages: list[dict[str, Any]], queue_url: str | None = None
    ) -> dict[str, Any]:
        """Hand messages to the ingest function as Lambda's SQS poller would, deleting successes."""
        from functions.ingest.app import handler

        url = queue_url or self.resources.queue_url
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        result: dict[str, Any] = handler(
            sqs_event(messages, arn["Attributes"]["QueueArn"], LOCAL_REGION), LambdaContext()
        )
        failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return result

    def put_and_ingest(self, key: str, body: bytes) -> dict[str, Any]:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        result = self.ingest(self.receive(1))
        assert result == {"batchItemFailures": []}
        return result

    def source(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@pytest.fixture
def stack(lambda_env: None) -> Iterator[Stack]:
    """template.yaml's bucket, queues and notifications, created under moto's mock_aws."""
    import boto3

    with mock_aws():
        local = create_resources(None, load_definition())
        yield Stack(
            local,
            boto3.client("s3", region_name=LOCAL_REGION),
            boto3.client("sqs", region_name=LOCAL_REGION),
        )


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any


def http_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    base64_body: bool = False,
    query: dict[str, str] | None = None,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
    authenticated: bool = True,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, from `sam local generate-event`.

    It carries the test's API key unless `authenticated` is False; `headers` add to it.
    """
    event = copy.deepcopy(HTTP_API_EVENT)
    event["rawPath"] = path
    event["routeKey"] = "$default"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(query or {})
    event["queryStringParameters"] = dict(query or {})
    event.pop("cookies", None)
    event.pop("pathParameters", None)
    event["headers"] = {"accept": "application/json", "host": "api.example.com"}
    if authenticated and CREDENTIALS.key:
        event["headers"].update(api_headers())
    event["headers"].update(headers or {})
    text = raw_body if raw_body is not None else None if body is None else json.dumps(body)
    if text is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    else:
        event["headers"]["content-type"] = "application/json"
        event["body"] = base64.b64encode(text.encode()).decode() if base64_body else text
        event["isBase64Encoded"] = base64_body
    return event


def call_api(handler: Any, event: dict[str, Any]) -> ApiResponse:
    response = handler(event, LambdaContext(function_name="ragops-query"))
    text = response.get("body", "")
    if response.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    headers = response.get("headers") or {}
    body = json.loads(text) if "json" in headers.get("content-type", "") and text else text
    return ApiResponse(response["statusCode"], headers, body)


def query_api(method: str, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
    """Invoke the query function's handler (looked up now: tests may reload the module)."""
    import functions.query.app

    return call_api(functions.query.app.handler, http_event(method, path, body, **kwargs))
