"""Metrics: what the service counts and times, and where the numbers go.

Code records through `record(metric, value, **labels)`. Where it goes is the process's
choice: nowhere by default (the CLI), an in-process Prometheus registry rendered at
`GET /metrics` under `ragops dev`, or CloudWatch EMF lines on stdout in the Lambda functions
(`with_emf_metrics`), flushed after every invocation.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from aws_lambda_powertools.metrics import EphemeralMetrics

NAMESPACE = "ragops"


# NamedTuples: much cheaper than frozen dataclasses to create at import (cold start).
class Metric(NamedTuple):
    """A recorded metric: its Prometheus and CloudWatch names, and the labels it takes.

    Values are counts, or milliseconds for histograms (Prometheus gets seconds).
    """

    kind: Literal["counter", "histogram"]
    prometheus_name: str
    cloudwatch_name: str
    help: str
    labels: tuple[str, ...] = ()

    @property
    def cloudwatch_unit(self) -> str:
        return "Milliseconds" if self.kind == "histogram" else "Count"


class Gauge(NamedTuple):
    """A value read when /metrics is scraped, not recorded as things happen."""

    prometheus_name: str
    help: str
    labels: tuple[str, ...] = ()


QUERIES = Metric(
    "counter",
    "ragops_queries_total",
    "Queries",
    "Search and answer requests, by route, search mode and HTTP status.",
    ("route", "mode", "status"),
)
STAGE_LATENCY = Metric(
    "histogram",
    "ragops_stage_duration_seconds",
    "StageLatency",
    "Time a query spent in each stage (embed, retrieve, rerank, generate, total).",
    ("route", "stage"),
)
INGEST_DOCUMENTS = Metric(
    "counter",
    "ragops_ingest_documents_total",
    "IngestDocuments",
    "Bucket object events applied, by outcome (ingested, unchanged, failed, deleted, skipped).",
    ("outcome",),
)
INGEST_CHUNKS = Metric(
    "counter", "ragops_ingest_chunks_total", "IngestChunks", "Chunks written by ingested documents."
)
INGEST_FAILURES = Metric(
    "counter",
    "ragops_ingest_failures_total",
    "IngestFailures",
    "Ingest records (queue messages, direct events) that failed and go back to be retried.",
)
RECORDED = (QUERIES, STAGE_LATENCY, INGEST_DOCUMENTS, INGEST_CHUNKS, INGEST_FAILURES)
DOCUMENTS = Gauge(
    "ragops_documents", "Stored documents by status (pending: ingest under way).", ("status",)
)

# Seconds; a query's stages run from milliseconds (retrieve) to a minute (a slow LLM).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsRecorder(Protocol):
    def record(self, metric: Metric, value: float = 1, **labels: str) -> None:
        """Add `value` to a counter, or observe it (milliseconds) in a histogram."""


class NullRecorder:
    """Records nothing: the default, so code outside a served process pays nothing."""

    def record(self, metric: Metric, value: float = 1, **labels: str) -> None:
        _check_labels(metric, labels)


_process_recorder: MetricsRecorder = NullRecorder()
_invocation_recorder: ContextVar[MetricsRecorder | None] = ContextVar(
    "ragops_metrics_recorder", default=None
)


def set_recorder(recorder: MetricsRecorder) -> None:
    """Where this process's metrics go (`ragops dev`: its Prometheus registry)."""
    global _process_recorder
    _process_recorder = recorder


@contextmanager
def recording_into(recorder: MetricsRecorder) -> Iterator[None]:
    """Send the metrics of the work inside the block (and its threads) to `recorder`."""
    token = _invocation_recorder.set(recorder)
    try:
        yield
    finally:
        _invocation_recorder.reset(token)


def record(metric: Metric, value: float = 1, **labels: str) -> None:
    """Record into the current invocation's recorder, else the process's."""
    (_invocation_recorder.get() or _process_recorder).record(metric, value, **labels)


def _check_labels(metric: Metric, labels: Mapping[str, str]) -> None:
    if set(labels) != set(metric.labels):
        raise ValueError(
            f"{metric.prometheus_name} takes labels {sorted(metric.labels)}, got {sorted(labels)}"
        )


# --- Prometheus ------------------------------------------------------------------------------


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(BUCKETS) if value <= bound), len(BUCKETS))
        self.counts[index] += 1
        self.total += value


LabelValues = tuple[str, ...]


class PrometheusRegistry:
    """Counters and fixed-bucket histograms in memory, rendered in text format 0.0.4."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[Metric, dict[LabelValues, float]] = {}
        self._histograms: dict[Metric, dict[LabelValues, _Histogram]] = {}

    def record(self, metric: Metric, value: float = 1, **labels: str) -> None:
        _check_labels(metric, labels)
        key = tuple(labels[name] for name in metric.labels)
        with self._lock:
            if metric.kind == "counter":
                series = self._counters.setdefault(metric, {})
                series[key] = series.get(key, 0.0) + value
            else:
                histograms = self._histograms.setdefault(metric, {})
                histogram = histograms.setdefault(key, _Histogram())
                histogram.observe(value / 1000)

    def render(self, gauges: Mapping[Gauge, Mapping[LabelValues, float]] | None = None) -> str:
        """Every recorded metric (declared ones without samples too), then `gauges`."""
        lines: list[str] = []
        with self._lock:
            for metric in RECORDED:
                lines += _header(metric.prometheus_name, metric.help, metric.kind)
                if metric.kind == "counter":
                    for key, count in sorted(self._counters.get(metric, {}).items()):
                        lines.append(_sample(metric.prometheus_name, metric.labels, key, count))
                else:
                    for key, histogram in sorted(self._histograms.get(metric, {}).items()):
                        lines += _histogram_samples(metric, key, histogram)
        for gauge, samples in (gauges or {}).items():
            lines += _header(gauge.prometheus_name, gauge.help, "gauge")
            for key, value in sorted(samples.items()):
                lines.append(_sample(gauge.prometheus_name, gauge.labels, key, value))
        return "\n".join(lines) + "\n"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {escaped}", f"# TYPE {name} {kind}"]


def _histogram_samples(metric: Metric, key: LabelValues, histogram: _Histogram) -> list[str]:
    name, labels = metric.prometheus_name, (*metric.labels, "le")
    lines = []
    cumulative = 0
    for bound, count in zip((*BUCKETS, math.inf), histogram.counts, strict=True):
        cumulative += count
        lines.append(_sample(f"{name}_bucket", labels, (*key, _number(bound)), cumulative))
    lines.append(_sample(f"{name}_sum", metric.labels, key, histogram.total))
    lines.append(_sample(f"{name}_count", metric.labels, key, cumulative))
    return lines


def _sample(name: str, labels: tuple[str, ...], values: LabelValues, value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    pairs = ",".join(f'{label}="{_escape(v)}"' for label, v in zip(labels, values, strict=True))
    return f"{name}{{{pairs}}} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


# --- CloudWatch EMF --------------------------------------------------------------------------


class EmfRecorder:
    """Metrics as CloudWatch Embedded Metric Format, through Powertools.

    Labels become dimensions; each set of label values is one EMF object (with a `service`
    dimension), since every metric in an object shares its dimensions.
    """

    def __init__(self, service: str, namespace: str = NAMESPACE):
        # Imported here, not at module level: only the Lambda functions pay for it.
        from aws_lambda_powertools.metrics import EphemeralMetrics

        self._new_set: Callable[[], EphemeralMetrics] = lambda: EphemeralMetrics(
            namespace=namespace, service=service
        )
        self._lock = threading.Lock()
        self._sets: dict[tuple[tuple[str, str], ...], EphemeralMetrics] = {}

    def record(self, metric: Metric, value: float = 1, **labels: str) -> None:
        _check_labels(metric, labels)
        key = tuple(sorted(labels.items()))
        with self._lock:
            metrics = self._sets.get(key)
            if metrics is None:
                metrics = self._sets[key] = self._new_set()
                for label, label_value in key:
                    metrics.add_dimension(label, label_value)
            metrics.add_metric(
                name=metric.cloudwatch_name, unit=metric.cloudwatch_unit, value=value
            )

    def flush(self) -> None:
        """Print what was recorded since the last flush; nothing (and no warning) if nothing."""
        with self._lock:
            sets, self._sets = self._sets, {}
        for metrics in sets.values():
            metrics.flush_metrics()


LambdaHandler = Callable[[Any, Any], Any]


def with_emf_metrics(handler: LambdaHandler, service: str) -> LambdaHandler:
    """`handler` recording into CloudWatch EMF, printed to stdout after each invocation."""
    emf = EmfRecorder(service)

    def invoke(event: Any, context: Any) -> Any:
        with recording_into(emf):
            try:
                return handler(event, context)
            finally:
                emf.flush()

    return invoke
