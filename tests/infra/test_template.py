"""template.yaml: it survives the real SAM transform and cfn-lint, and keeps its wiring.

The structural checks read the transformed template, i.e. what CloudFormation deploys.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SUFFIXES = {".txt", ".md", ".pdf", ".html"}
HANDLERS = {
    "IngestFunction": "functions.ingest.app.handler",
    "QueryFunction": "functions.query.app.handler",
    "HealthFunction": "functions.health.app.handler",
}
ROUTES = {
    "POST /v1/query": "QueryFunction",
    "POST /v1/search": "QueryFunction",
    "GET /v1/documents": "QueryFunction",
    "GET /v1/documents/{id}": "QueryFunction",
    "DELETE /v1/documents/{id}": "QueryFunction",
    "GET /v1/ingest/stats": "QueryFunction",
    "GET /docs": "QueryFunction",
    "GET /docs/{proxy+}": "QueryFunction",
    "GET /health": "HealthFunction",
}
LAMBDA_MAX_TIMEOUT = 900
HTTP_API_MAX_INTEGRATION_TIMEOUT = 30


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "validate_template", REPO / "infra" / "validate_template.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validator = _load_validator()


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """The CloudFormation template the SAM transform produces."""
    transformed: dict[str, Any] = validator.transform_template(validator.load_template())
    return transformed


def _resource(cfn: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource: dict[str, Any] = cfn["Resources"][logical_id]
    return resource


def _props(cfn: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = _resource(cfn, logical_id)["Properties"]
    return props


def _value(cfn: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter a {"Ref": ...} names."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return cfn["Parameters"][value["Ref"]]["Default"]
    return value


def _ingest_mapping(cfn: dict[str, Any]) -> dict[str, Any]:
    mappings = [
        r["Properties"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "IngestFunction"}
    ]
    assert len(mappings) == 1
    mapping: dict[str, Any] = mappings[0]
    return mapping


def test_template_transforms_and_lints_clean() -> None:
    assert validator.validate() == []


def test_queue_visibility_outlasts_six_ingest_timeouts(cfn: dict[str, Any]) -> None:
    timeout = int(_props(cfn, "IngestFunction")["Timeout"])
    window = int(_ingest_mapping(cfn)["MaximumBatchingWindowInSeconds"])
    assert int(_props(cfn, "IngestQueue")["VisibilityTimeout"]) >= 6 * timeout + window


def test_ingest_reports_partial_batch_failures(cfn: dict[str, Any]) -> None:
    mapping = _ingest_mapping(cfn)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"]


def test_ingest_concurrency_is_reserved_and_the_poller_stays_within_it(cfn: dict[str, Any]) -> None:
    reserved = _value(cfn, _props(cfn, "IngestFunction").get("ReservedConcurrentExecutions"))
    assert reserved is not None
    assert int(reserved) >= 1
    poller = _value(cfn, _ingest_mapping(cfn)["ScalingConfig"]["MaximumConcurrency"])
    assert int(poller) <= int(reserved)


def test_failed_messages_go_to_the_dead_letter_queue(cfn: dict[str, Any]) -> None:
    queue = _props(cfn, "IngestQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert int(_value(cfn, redrive["maxReceiveCount"])) >= 1
    dlq = _props(cfn, "IngestDeadLetterQueue")
    assert int(dlq["MessageRetentionPeriod"]) > int(queue["MessageRetentionPeriod"])


def test_bucket_notifies_created_and_removed_for_every_supported_suffix(
    cfn: dict[str, Any],
) -> None:
    configs = _props(cfn, "DocumentsBucket")["NotificationConfiguration"]["QueueConfigurations"]
    covered = set()
    for config in configs:
        assert config["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
        (rule,) = config["Filter"]["S3Key"]["Rules"]
        assert rule["Name"] == "suffix"
        covered.add((config["Event"], rule["Value"]))
    events = {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    assert covered == {(event, suffix) for event in events for suffix in SUFFIXES}


def test_queue_policy_names_the_bucket_it_notifies_for(cfn: dict[str, Any]) -> None:
    bucket = _resource(cfn, "DocumentsBucket")
    assert bucket["DependsOn"] in ("IngestQueuePolicy", ["IngestQueuePolicy"])
    bucket_name = bucket["Properties"]["BucketName"]["Fn::Sub"]
    (statement,) = _props(cfn, "IngestQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    source_arn = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source_arn == "arn:${AWS::Partition}:s3:::" + bucket_name
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_every_function_runs_the_image_with_its_handler(cfn: dict[str, Any]) -> None:
    functions = {
        logical_id: r
        for logical_id, r in cfn["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert set(functions) == set(HANDLERS)
    for logical_id, function in functions.items():
        props = function["Properties"]
        assert props["PackageType"] == "Image"
        assert props["ImageConfig"]["Command"] == [HANDLERS[logical_id]]
        assert props["Architectures"] == ["x86_64"]
        assert function["Metadata"]["Dockerfile"] == "infra/Dockerfile"
        assert function["Metadata"]["DockerContext"] == "."


def test_timeouts_fit_lambda_and_http_api_limits(cfn: dict[str, Any]) -> None:
    for logical_id in HANDLERS:
        assert int(_props(cfn, logical_id)["Timeout"]) <= LAMBDA_MAX_TIMEOUT
    for logical_id in ("QueryFunction", "HealthFunction"):
        assert int(_props(cfn, logical_id)["Timeout"]) < HTTP_API_MAX_INTEGRATION_TIMEOUT


def test_http_api_routes_reach_their_functions(cfn: dict[str, Any]) -> None:
    routes = {}
    for path, operations in _props(cfn, "HttpApi")["Body"]["paths"].items():
        for method, operation in operations.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            function = uri.split("${")[-1].split(".Arn}")[0]
            routes[f"{method.upper()} {path}"] = function
    assert routes == ROUTES
