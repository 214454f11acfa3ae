"""Retry-After parsing, the backoff schedule and the SSE parser: pure functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ragops.generation.retry import RetryPolicy, is_retryable_status, parse_retry_after
from ragops.generation.sse import sse_data

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
        ("Sun, 01 Mar 2026 12:00:10 GMT", 10.0),
        (format_datetime(NOW - timedelta(minutes=5), usegmt=True), 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("Mon, 99 Foo 2026 99:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


class Highest(random.Random):
    """Always draws the top of the range, so the ceilings of the schedule show."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_ceilings_double_up_to_the_maximum() -> None:
    policy = RetryPolicy(max_retries=6, backoff_base=0.5, backoff_max=5.0, retry_after_max=30)
    assert [policy.backoff(n, Highest()) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_is_full_jitter_within_the_ceiling() -> None:
    policy = RetryPolicy(max_retries=3, backoff_base=1.0, backoff_max=8.0, retry_after_max=30)
    rng = random.Random(7)
    draws = [policy.backoff(2, rng) for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in draws)
    assert min(draws) < 0.5
    assert max(draws) > 3.5


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=3, backoff_base=1.0, backoff_max=8.0, retry_after_max=10)
    assert policy.delay(0, 7.0) == 7.0
    assert policy.delay(0, 0.0) == 0.0
    assert policy.delay(0, 11.0) is None
    assert policy.delay(1, None, Highest()) == 2.0


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_retryable_statuses(code: int, retryable: bool) -> None:
    assert is_retryable_status(code) is retryable


def test_sse_data_joins_lines_skips_comments_and_keeps_an_unterminated_event() -> None:
    lines = [
        ": keep-alive",
        "event: message",
        'data: {"a":',
        "data:1}",
        "",
        "",
        "id: 7",
        "data: [DONE]",
    ]
    assert list(sse_data(lines)) == ['{"a":\n1}', "[DONE]"]
