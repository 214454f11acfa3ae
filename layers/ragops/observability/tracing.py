"""Tracing hooks: each stage of the work is a span handed to the registered hooks.

No hook is registered by default, so a stage costs two clock reads. With
`RAGOPS_TRACING=xray` the Lambda functions add an X-Ray hook (subsegments), if
aws_xray_sdk is installed; without it, tracing stays off with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

TracingMode = Literal["off", "xray"]
Attribute = str | int | float | bool


@dataclass
class Span:
    """One stage: its name, when it started (epoch seconds) and, once ended, its duration."""

    name: str
    start: float
    attributes: dict[str, Attribute] = field(default_factory=dict)
    duration_ms: float | None = None
    error: str | None = None
    # What a hook keeps between start and end (a subsegment), by hook.
    handles: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def end(self) -> float:
        return self.start + (self.duration_ms or 0.0) / 1000


class TraceHook(Protocol):
    def start(self, span: Span) -> None: ...

    def end(self, span: Span) -> None: ...


_lock = threading.Lock()
_hooks: tuple[TraceHook, ...] = ()


def add_hook(hook: TraceHook) -> None:
    global _hooks
    with _lock:
        _hooks = (*_hooks, hook)


def remove_hook(hook: TraceHook) -> None:
    global _hooks
    with _lock:
        _hooks = tuple(h for h in _hooks if h is not hook)


@contextmanager
def stage(name: str, **attributes: Attribute) -> Iterator[Span]:
    """Time the block as the span `name`; also usable as a decorator."""
    span = Span(name, time.time(), dict(attributes))
    hooks = _hooks
    _notify(hooks, "start", span)
    started = time.perf_counter()
    try:
        yield span
    except BaseException as exc:
        span.error = type(exc).__name__
        raise
    finally:
        span.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        _notify(reversed(hooks), "end", span)


def report_stage(name: str, start: float, duration_ms: float, **attributes: Attribute) -> Span:
    """A stage timed by the code that ran it (the searcher's timings_ms), as an ended span."""
    span = Span(name, start, dict(attributes), duration_ms=duration_ms)
    hooks = _hooks
    _notify(hooks, "start", span)
    _notify(reversed(hooks), "end", span)
    return span


def _notify(hooks: Iterable[TraceHook], event: str, span: Span) -> None:
    for hook in hooks:
        try:
            getattr(hook, event)(span)
        except Exception:  # a tracer's failure must never fail the work it watches
            log.warning("tracing hook %r failed on %s of %s", hook, event, span.name, exc_info=True)


class XRayHook:
    """Each span as an X-Ray subsegment of the invocation's segment."""

    def __init__(self, recorder: Any):
        self.recorder = recorder

    def start(self, span: Span) -> None:
        subsegment = self.recorder.begin_subsegment(span.name)
        if subsegment is None:  # no segment to attach to (not sampled, no context)
            return
        subsegment.start_time = span.start
        for key, value in span.attributes.items():
            subsegment.put_annotation(key, value)
        span.handles[id(self)] = subsegment

    def end(self, span: Span) -> None:
        subsegment = span.handles.pop(id(self), None)
        if subsegment is None:
            return
        if span.error:
            subsegment.add_error_flag()
            subsegment.put_annotation("error", span.error)
        self.recorder.end_subsegment(end_time=span.end)


_xray_hook: XRayHook | None = None


def configure_tracing(mode: TracingMode) -> bool:
    """Register the hooks `mode` asks for; whether tracing is on. Idempotent."""
    global _xray_hook
    if mode != "xray":
        return False
    if _xray_hook is not None:
        return True
    try:
        # About 0.6 s to import: paid only when tracing is asked for.
        from aws_xray_sdk.core import xray_recorder
    except ImportError:
        log.warning("RAGOPS_TRACING=xray, but aws_xray_sdk is not installed: tracing is off")
        return False
    _xray_hook = XRayHook(xray_recorder)
    add_hook(_xray_hook)
    return True
