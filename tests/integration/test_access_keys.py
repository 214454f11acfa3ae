"""API keys on the admin path, their lookup with its cache, and the shared rate limit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg_pool
import pytest

from ragops.access import keys
from ragops.access.auth import Authenticator, Principal
from ragops.access.ratelimit import WINDOW_SECONDS, count_request, enforce_rate_limit
from ragops.cli import main
from ragops.db.database import Database, connect
from ragops.errors import AuthenticationError, NotFoundError, RateLimitedError
from ragops.settings import Settings


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = connect(settings)
    yield database
    database.close()


def test_only_a_hash_and_a_short_prefix_of_a_key_are_stored(db: Database) -> None:
    with db.pool.connection() as conn:
        record, secret = keys.create_key(conn, "handbook", "ci")
        stored = conn.execute("SELECT prefix, key_hash, name FROM api_keys").fetchall()

    assert re.fullmatch(r"rgo_[A-Za-z0-9_-]{43}", secret)
    assert stored == [(secret[:12], keys.key_hash(secret), "ci")]
    assert secret not in str(stored[0][1])
    assert record.collection == "handbook"
    assert record.prefix == secret[:12]


def test_each_key_is_new(db: Database) -> None:
    with db.pool.connection() as conn:
        secrets = {keys.create_key(conn, "a")[1] for _ in range(20)}
    assert len(secrets) == 20


def test_a_key_authenticates_until_it_is_revoked(db: Database) -> None:
    with db.pool.connection() as conn:
        record, secret = keys.create_key(conn, "handbook")
        grant = keys.authenticate(conn, secret)
        assert grant == keys.KeyGrant(record.id, "handbook")
        used = keys.list_keys(conn)[0].last_used_at
        assert used is not None

        revoked = keys.revoke_key(conn, record.prefix)

        assert revoked.revoked_at is not None
        assert keys.authenticate(conn, secret) is None
        assert keys.list_keys(conn) == []
        assert [k.id for k in keys.list_keys(conn, include_revoked=True)] == [record.id]


def test_revoking_an_unknown_key_names_it(db: Database) -> None:
    with db.pool.connection() as conn, pytest.raises(NotFoundError, match="rgo_nothing"):
        keys.revoke_key(conn, "rgo_nothing")


def _authenticator_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"rate_limit_per_minute": 0, **changes})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cached_lookups(
    db: Database, settings: Settings
) -> tuple[Clock, Authenticator, Settings, keys.ApiKey, str]:
    """An authenticator on a test clock that trusts a lookup for 30 s, and a new key."""
    clock = Clock()
    config = _authenticator_settings(settings, auth_cache_seconds=30)
    with db.pool.connection() as conn:
        record, secret = keys.create_key(conn, "handbook")
    return clock, Authenticator(clock), config, record, secret


def test_a_revoked_key_keeps_working_only_until_the_cache_expires(
    db: Database, settings: Settings
) -> None:
    clock, authenticator, config, record, secret = _cached_lookups(db, settings)
    headers = {"authorization": f"Bearer {secret}"}

    principal = authenticator.authenticate(db, config, headers)
    assert principal == Principal(("handbook",), f"key:{record.id}")
    with db.pool.connection() as conn:
        keys.revoke_key(conn, str(record.id))

    clock.now += 29
    assert authenticator.authenticate(db, config, headers) == principal
    clock.now += 2
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        authenticator.authenticate(db, config, headers)


def test_a_remembered_key_is_answered_without_the_database(
    db: Database, settings: Settings
) -> None:
    """With no request to count, a key looked up a moment ago needs no connection."""
    clock, authenticator, config, record, secret = _cached_lookups(db, settings)
    headers = {"x-api-key": secret}
    unknown = {"x-api-key": "rgo_" + "B" * 43}
    assert authenticator.remembered(config, headers) is None
    principal = authenticator.authenticate(db, config, headers)
    assert principal == Principal(("handbook",), f"key:{record.id}")
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        authenticator.authenticate(db, config, unknown)

    db.close()  # from here on, any database use would fail
    assert authenticator.remembered(config, headers) == principal
    assert authenticator.authenticate(db, config, headers) == principal
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        authenticator.remembered(config, unknown)
    with pytest.raises(AuthenticationError, match="malformed"):
        authenticator.remembered(config, {"x-api-key": "sk-other"})
    # A request to count, or a lookup too old to trust, needs the database again.
    counted = config.model_copy(update={"rate_limit_per_minute": 10})
    assert authenticator.remembered(counted, headers) is None
    clock.now += 31
    assert authenticator.remembered(config, headers) is None
    with pytest.raises(psycopg_pool.PoolClosed):
        authenticator.authenticate(db, config, headers)


def test_with_no_cache_a_revocation_takes_effect_at_once(db: Database, settings: Settings) -> None:
    authenticator = Authenticator()
    config = _authenticator_settings(settings, auth_cache_seconds=0)
    with db.pool.connection() as conn:
        record, secret = keys.create_key(conn, "handbook")
    headers = {"x-api-key": secret}
    assert authenticator.authenticate(db, config, headers).collections == ("handbook",)
    with db.pool.connection() as conn:
        keys.revoke_key(conn, str(record.id))
    with pytest.raises(AuthenticationError):
        authenticator.authenticate(db, config, headers)


def test_counting_a_request_does_not_wait_for_the_wal_flush(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter's commit is asynchronous; the count itself is still shared and enforced."""
    seen: list[str] = []

    def counting(conn: psycopg.Connection, subject: str, per_minute: int) -> None:
        row = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
        assert row is not None
        seen.append(row[0])
        enforce_rate_limit(conn, subject, per_minute)

    monkeypatch.setattr("ragops.access.auth.enforce_rate_limit", counting)
    config = _authenticator_settings(settings, rate_limit_per_minute=1, auth_cache_seconds=0)
    with db.pool.connection() as conn:
        _, secret = keys.create_key(conn, "handbook")
    headers = {"x-api-key": secret}
    Authenticator().authenticate(db, config, headers)
    with pytest.raises(RateLimitedError):
        Authenticator().authenticate(db, config, headers)
    assert seen == ["off", "off"]
    with db.pool.connection() as conn:
        assert conn.execute("SELECT current_setting('synchronous_commit')").fetchone() == ("on",)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "an API key is required"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "Bearer"),
        ({"authorization": "Bearer"}, "Bearer"),
        ({"x-api-key": "sk-something-else"}, "malformed"),
        ({"x-api-key": "rgo_" + "A" * 43}, "unknown or revoked"),
    ],
)
def test_unusable_credentials_are_refused_with_the_reason(
    db: Database, settings: Settings, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(AuthenticationError, match=message):
        Authenticator().authenticate(db, _authenticator_settings(settings), headers)


def test_the_rate_limit_counts_per_subject_in_the_database(db: Database) -> None:
    with db.pool.connection() as conn:
        counts = [count_request(conn, "key:a")[0] for _ in range(3)]
        other, remaining = count_request(conn, "key:b")
        assert counts == [1, 2, 3]
        assert other == 1
        assert 0 < remaining <= WINDOW_SECONDS

        enforce_rate_limit(conn, "key:c", per_minute=2)
        enforce_rate_limit(conn, "key:c", per_minute=2)
        with pytest.raises(RateLimitedError, match="RAGOPS_RATE_LIMIT_PER_MINUTE") as refused:
            enforce_rate_limit(conn, "key:c", per_minute=2)
    assert 1 <= refused.value.retry_after <= WINDOW_SECONDS


def test_a_counter_from_an_earlier_window_starts_again(db: Database) -> None:
    with db.pool.connection() as conn:
        for _ in range(5):
            count_request(conn, "key:old")
        conn.execute(
            "UPDATE api_request_windows SET window_start = window_start - interval '1 hour'"
        )
        assert count_request(conn, "key:old")[0] == 1


def test_two_processes_share_one_limit(settings: Settings) -> None:
    """Two pools stand in for two Lambda instances: the count is the database's."""
    first, second = connect(settings), connect(settings)
    try:
        with first.pool.connection() as conn:
            _, secret = keys.create_key(conn, "handbook")
        config = _authenticator_settings(settings, rate_limit_per_minute=3)
        headers = {"x-api-key": secret}
        Authenticator().authenticate(first, config, headers)
        Authenticator().authenticate(second, config, headers)
        Authenticator().authenticate(first, config, headers)
        with pytest.raises(RateLimitedError):
            Authenticator().authenticate(second, config, headers)
    finally:
        first.close()
        second.close()


# --- the CLI -------------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_keys_commands_create_list_and_revoke(
    cli_env: Path, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    status, out, err = _run(capsys, "keys", "create", "--collection", "handbook", "--name", "ci")
    assert status == 0, err
    secret = out.strip()
    assert keys.is_well_formed(secret)
    assert "shown only now" in err

    status, out, _ = _run(capsys, "keys", "list")
    assert status == 0
    assert secret[:12] in out
    assert secret not in out
    assert "handbook" in out

    status, out, _ = _run(capsys, "keys", "list", "--json")
    (listed,) = json.loads(out)["keys"]
    assert listed["prefix"] == secret[:12]
    assert "key" not in listed

    status, out, _ = _run(capsys, "keys", "revoke", secret[:12])
    assert status == 0
    assert "revoked" in out
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert keys.authenticate(conn, secret) is None
    assert json.loads(_run(capsys, "keys", "list", "--json")[1])["keys"] == []


@pytest.mark.parametrize(
    ("collection", "named"), [("", "--collection"), ("x" * 201, "200"), ("a\x00b", "NUL")]
)
def test_keys_create_refuses_an_unusable_collection(
    cli_env: Path, capsys: pytest.CaptureFixture[str], collection: str, named: str
) -> None:
    status, out, err = _run(capsys, "keys", "create", "--collection", collection)
    assert status == 2
    assert out == ""
    assert named in err


def test_keys_revoke_of_an_unknown_key_fails_naming_it(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _run(capsys, "keys", "revoke", "rgo_missing")
    assert status == 1
    assert "rgo_missing" in err
