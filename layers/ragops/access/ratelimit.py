"""Per-key rate limits, counted in PostgreSQL so every process (every Lambda) shares them.

A fixed window a minute long, one upsert per request (`ragops_count_request`, migration
0002). A fixed window lets a client send up to twice the rate across a window boundary; in
exchange it costs one row per key and no clean-up.
"""

from __future__ import annotations

import math

import psycopg

from ragops.errors import RateLimitedError

WINDOW_SECONDS = 60


def count_request(conn: psycopg.Connection, subject: str) -> tuple[int, float]:
    """Count a request of `subject`: requests in this window so far, seconds until it ends."""
    row = conn.execute(
        "SELECT requests, retry_after FROM ragops_count_request(%s, %s)",
        (subject, WINDOW_SECONDS),
    ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def enforce_rate_limit(conn: psycopg.Connection, subject: str, per_minute: int) -> None:
    """Count the request; past `per_minute` in this window, refuse it with when to retry."""
    requests, remaining = count_request(conn, subject)
    if requests > per_minute:
        retry_after = max(1, math.ceil(remaining))
        raise RateLimitedError(
            f"rate limit exceeded: {per_minute} requests a minute per key "
            f"(RAGOPS_RATE_LIMIT_PER_MINUTE); retry in {retry_after} s",
            retry_after=retry_after,
        )
