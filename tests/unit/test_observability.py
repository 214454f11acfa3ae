"""Logs, metrics and tracing hooks on their own: no database, no models."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from ragops.api.observe import RequestObserver, request_id
from ragops.observability import metrics, tracing
from ragops.observability.logs import JsonFormatter, configure_service_logging, log_fields
from ragops.observability.metrics import (
    DOCUMENTS,
    INGEST_CHUNKS,
    QUERIES,
    STAGE_LATENCY,
    EmfRecorder,
    PrometheusRegistry,
    with_emf_metrics,
)
from ragops.observability.tracing import Span, XRayHook, report_stage, stage

REPO = Path(__file__).resolve().parents[2]

# --- logs ------------------------------------------------------------------------------------


@contextmanager
def service_logging(level: str = "INFO") -> Iterator[logging.Handler]:
    """The service's logging configuration for a while, then the test process's again."""
    root, ragops_logger = logging.getLogger(), logging.getLogger("ragops")
    handlers, root_level, ragops_level = list(root.handlers), root.level, ragops_logger.level
    try:
        yield configure_service_logging(level)
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        ragops_logger.setLevel(ragops_level)


@pytest.fixture
def json_logs() -> Iterator[None]:
    with service_logging():
        yield


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_a_log_line_is_one_json_object_with_bound_fields_and_extras(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("ragops.test")
    with log_fields(request_id="req-1"):
        log.info("searched %d", 3, extra={"collection": "handbook", "timings_ms": {"embed": 1.5}})
    log.info("outside")
    log.debug("not at INFO")
    first, second = stderr_lines(capsys)
    assert first["message"] == "searched 3"
    assert first["level"] == "INFO"
    assert first["logger"] == "ragops.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timestamp"])
    assert first["request_id"] == "req-1"
    assert first["collection"] == "handbook"
    assert first["timings_ms"] == {"embed": 1.5}
    assert "request_id" not in second


def test_an_exception_is_logged_with_its_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.getLogger("ragops.test").makeRecord(
            "ragops.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR"
    assert "ValueError: bad value" in entry["exception"]


def test_configuring_again_keeps_the_one_json_handler_and_changes_the_level() -> None:
    root = logging.getLogger()
    with service_logging("INFO") as first:
        assert root.handlers == [first]
        assert root.level == logging.WARNING
        assert configure_service_logging("DEBUG") is first
        assert root.handlers == [first]
        assert logging.getLogger("ragops").level == logging.DEBUG


# --- request ids -----------------------------------------------------------------------------


@get("/echo", sync_to_thread=False)
def echo() -> dict[str, str]:
    return {"ok": "yes"}


@get("/broken", sync_to_thread=False)
def broken() -> None:
    raise RuntimeError("boom")


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    app = Litestar([echo, broken], middleware=[RequestObserver()], logging_config=None)
    with TestClient(app) as test_client:
        yield test_client


def test_a_valid_incoming_request_id_is_kept_and_echoed(
    client: TestClient[Litestar], json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    response = client.get("/echo", headers={"X-Request-Id": "client-42"})
    assert response.headers["x-request-id"] == "client-42"
    (line,) = stderr_lines(capsys)
    assert line["request_id"] == "client-42"
    assert (line["route"], line["status"], line["level"]) == ("/echo", 200, "INFO")


def test_an_unusable_incoming_request_id_is_replaced(client: TestClient[Litestar]) -> None:
    response = client.get("/echo", headers={"X-Request-Id": "has spaces {and} braces"})
    uuid.UUID(response.headers["x-request-id"])
    assert client.get("/echo").headers["x-request-id"] != response.headers["x-request-id"]


def test_a_server_error_is_logged_at_error_with_the_request_id(
    client: TestClient[Litestar], json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    response = client.get("/broken")
    assert response.status_code == 500
    lines = [line for line in stderr_lines(capsys) if line["logger"] == "ragops.api"]
    assert [(line["level"], line["status"]) for line in lines] == [("ERROR", 500)]
    assert lines[0]["request_id"] == response.headers["x-request-id"]


def test_api_gateways_request_id_wins_over_the_header() -> None:
    scope: Any = {
        "headers": [(b"x-request-id", b"client-42")],
        "aws.event": {"requestContext": {"requestId": "gw-7"}},
    }
    assert request_id(scope) == "gw-7"


# --- Prometheus ------------------------------------------------------------------------------


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, from the text exposition format."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def test_counters_add_up_per_label_set() -> None:
    registry = PrometheusRegistry()
    for status in ("200", "200", "400"):
        registry.record(QUERIES, route="/v1/search", mode="hybrid", status=status)
    registry.record(INGEST_CHUNKS, 7)
    text = registry.render()
    values = samples(text)
    assert values['ragops_queries_total{route="/v1/search",mode="hybrid",status="200"}'] == 2
    assert values['ragops_queries_total{route="/v1/search",mode="hybrid",status="400"}'] == 1
    assert values["ragops_ingest_chunks_total"] == 7
    assert "# TYPE ragops_queries_total counter" in text
    # Declared metrics are described even before anything is recorded.
    assert "# TYPE ragops_ingest_failures_total counter" in text


def test_histograms_are_cumulative_in_seconds() -> None:
    registry = PrometheusRegistry()
    for ms in (3.0, 40.0, 40.0, 120_000.0):
        registry.record(STAGE_LATENCY, ms, route="/v1/search", stage="rerank")
    values = samples(registry.render())
    series = 'ragops_stage_duration_seconds_{}{{route="/v1/search",stage="rerank"{}}}'
    assert values[series.format("bucket", ',le="0.005"')] == 1
    assert values[series.format("bucket", ',le="0.025"')] == 1
    assert values[series.format("bucket", ',le="0.05"')] == 3
    assert values[series.format("bucket", ',le="60.0"')] == 3
    assert values[series.format("bucket", ',le="+Inf"')] == 4
    assert values[series.format("count", "")] == 4
    assert values[series.format("sum", "")] == pytest.approx(120.083)


def test_label_values_are_escaped_and_gauges_rendered() -> None:
    registry = PrometheusRegistry()
    registry.record(QUERIES, route='/a"b\\c', mode="hybrid", status="200")
    text = registry.render({DOCUMENTS: {("pending",): 2, ("ready",): 5}})
    assert 'route="/a\\"b\\\\c"' in text
    assert "# TYPE ragops_documents gauge" in text
    assert samples(text)['ragops_documents{status="pending"}'] == 2


def test_a_metric_recorded_with_the_wrong_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="ragops_queries_total takes labels"):
        PrometheusRegistry().record(QUERIES, route="/v1/search")


# --- CloudWatch EMF --------------------------------------------------------------------------


@pytest.fixture
def powertools_metrics_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


def emf_objects(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]


def test_emf_has_one_object_per_label_set_with_labels_as_dimensions(
    powertools_metrics_enabled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    emf = EmfRecorder(service="ragops-test")
    emf.record(QUERIES, route="/v1/search", mode="lexical", status="200")
    emf.record(STAGE_LATENCY, 12.5, route="/v1/search", stage="embed")
    emf.record(STAGE_LATENCY, 7.5, route="/v1/search", stage="embed")
    emf.flush()
    objects = {tuple(sorted(o)): o for o in emf_objects(capsys.readouterr().out)}
    assert len(objects) == 2
    queries = next(o for o in objects.values() if "Queries" in o)
    (directive,) = queries["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ragops"
    assert sorted(directive["Dimensions"][0]) == ["mode", "route", "service", "status"]
    assert directive["Metrics"] == [{"Name": "Queries", "Unit": "Count"}]
    assert (queries["mode"], queries["service"], queries["Queries"]) == (
        "lexical",
        "ragops-test",
        [1.0],
    )
    latency = next(o for o in objects.values() if "StageLatency" in o)
    assert latency["StageLatency"] == [12.5, 7.5]
    assert latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Milliseconds"
    emf.flush()
    assert capsys.readouterr().out == ""


def test_a_handler_invocation_flushes_its_own_metrics_and_an_empty_one_stays_silent(
    powertools_metrics_enabled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    process = PrometheusRegistry()
    metrics.set_recorder(process)
    try:

        def handler(event: dict[str, int], context: object) -> str:
            if event["chunks"]:
                metrics.record(INGEST_CHUNKS, event["chunks"])
            return "done"

        invoke = with_emf_metrics(handler, service="ragops-test")
        assert invoke({"chunks": 4}, None) == "done"
        (emitted,) = emf_objects(capsys.readouterr().out)
        assert emitted["IngestChunks"] == [4.0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            invoke({"chunks": 0}, None)
        assert capsys.readouterr().out == ""
        # Inside the invocation the EMF recorder took the metrics, not the process's registry.
        assert "ragops_ingest_chunks_total" not in samples(process.render())
    finally:
        metrics.set_recorder(metrics.NullRecorder())


# --- tracing ---------------------------------------------------------------------------------


class RecordingHook:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float | None]] = []

    def start(self, span: Span) -> None:
        self.events.append(("start", span.name, span.duration_ms))

    def end(self, span: Span) -> None:
        self.events.append(("end", span.name, span.duration_ms))


@pytest.fixture
def hook() -> Iterator[RecordingHook]:
    recording = RecordingHook()
    tracing.add_hook(recording)
    yield recording
    tracing.remove_hook(recording)


def test_a_stage_is_started_and_ended_with_its_duration(hook: RecordingHook) -> None:
    with stage("search", route="/v1/search") as span:
        report_stage("embed", span.start, 4.0)
    assert [(e, n) for e, n, _ in hook.events] == [
        ("start", "search"),
        ("start", "embed"),
        ("end", "embed"),
        ("end", "search"),
    ]
    assert hook.events[2][2] == 4.0
    assert span.duration_ms is not None
    assert span.duration_ms >= 0
    assert span.attributes == {"route": "/v1/search"}


def test_a_stage_records_the_error_and_raises_it(hook: RecordingHook) -> None:
    with pytest.raises(KeyError), stage("ingest_object") as span:
        raise KeyError("x")
    assert span.error == "KeyError"
    assert hook.events[-1][:2] == ("end", "ingest_object")


def test_a_failing_hook_never_fails_the_stage(hook: RecordingHook) -> None:
    class Broken:
        def start(self, span: Span) -> None:
            raise RuntimeError("tracer down")

        def end(self, span: Span) -> None:
            raise RuntimeError("tracer down")

    broken_hook = Broken()
    tracing.add_hook(broken_hook)
    try:
        with stage("search"):
            pass
    finally:
        tracing.remove_hook(broken_hook)
    assert ("end", "search") in [(e, n) for e, n, _ in hook.events]


def test_stage_works_as_a_decorator(hook: RecordingHook) -> None:
    @stage("parse")
    def parse() -> int:
        return 3

    assert parse() == 3
    assert [n for _, n, _ in hook.events] == ["parse", "parse"]


def test_xray_tracing_without_the_sdk_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_xray_hook", None)
    monkeypatch.setitem(sys.modules, "aws_xray_sdk", None)
    monkeypatch.setitem(sys.modules, "aws_xray_sdk.core", None)
    assert tracing.configure_tracing("xray") is False
    assert tracing.configure_tracing("off") is False


class FakeSubsegment:
    def __init__(self, name: str):
        self.name = name
        self.start_time = 0.0
        self.annotations: dict[str, Any] = {}
        self.error = False

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def add_error_flag(self) -> None:
        self.error = True


class FakeXRayRecorder:
    """begin_subsegment / end_subsegment as aws_xray_sdk's recorder offers them."""

    def __init__(self) -> None:
        self.open: list[FakeSubsegment] = []
        self.ended: list[tuple[FakeSubsegment, float]] = []

    def begin_subsegment(self, name: str) -> FakeSubsegment:
        self.open.append(FakeSubsegment(name))
        return self.open[-1]

    def end_subsegment(self, end_time: float) -> None:
        self.ended.append((self.open.pop(), end_time))


def test_xray_hook_places_subsegments_at_the_spans_times() -> None:
    recorder = FakeXRayRecorder()
    xray = XRayHook(recorder)
    tracing.add_hook(xray)
    try:
        with stage("search") as span:
            report_stage("rerank", 1000.0, 250.0, route="/v1/query")
            assert [s.name for s in recorder.open] == ["search"]
        with pytest.raises(RuntimeError), stage("answer"):
            raise RuntimeError("llm down")
    finally:
        tracing.remove_hook(xray)
    (rerank, rerank_end), (search, search_end), (answer, _) = recorder.ended
    assert (rerank.name, rerank.start_time, rerank_end) == ("rerank", 1000.0, 1000.25)
    assert rerank.annotations == {"route": "/v1/query"}
    assert (search.start_time, search_end) == (span.start, span.end)
    assert answer.error
    assert answer.annotations["error"] == "RuntimeError"


IMPORT_FUNCTIONS = """
import sys
import functions.ingest.app, functions.query.app
from ragops.observability import tracing
print(any(m.startswith("aws_xray_sdk") for m in sys.modules), tracing._xray_hook is not None)
"""


@pytest.mark.parametrize(
    ("tracing_setting", "expected"), [(None, "False False"), ("xray", "True True")]
)
def test_the_functions_import_the_xray_sdk_only_when_tracing_asks_for_it(
    tmp_path: Path, tracing_setting: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGOPS_")}
    env.update(PYTHONPATH=str(REPO), RAGOPS_MODEL_DIR=str(tmp_path / "no-models"))
    if tracing_setting:
        if importlib.util.find_spec("aws_xray_sdk") is None:
            pytest.skip("aws_xray_sdk is not installed")
        env["RAGOPS_TRACING"] = tracing_setting
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_FUNCTIONS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected
