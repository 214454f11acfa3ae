"""Tenant isolation in PostgreSQL itself: raw SQL as the API's role sees one collection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from ragops.access import keys
from ragops.db.database import APP_ROLE, collection_scope, ensure_pgvector
from ragops.db.migrate import migrate

COLLECTIONS = ("alpha", "beta")
# Values a caller might try in place of a collection name.
FORGED = ["", "%", "*", "alpha,beta", "alpha' OR '1'='1", "ALPHA", " alpha", "beta\t"]


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """The owner's connection to a migrated database holding two collections' rows."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        ensure_pgvector(connection)
        migrate(connection)
        for collection in COLLECTIONS:
            document = connection.execute(
                """INSERT INTO documents (collection, source, status, metadata)
                   VALUES (%s, %s, 'ready', '{"team": "x"}') RETURNING id""",
                (collection, f"s3://bucket/{collection}.md"),
            ).fetchone()
            assert document is not None
            connection.execute(
                """INSERT INTO chunks (document_id, collection, ordinal, content, token_count,
                                       embedding)
                   VALUES (%s, %s, 0, %s, 3, array_fill(0.1, ARRAY[384])::vector)""",
                (document[0], collection, f"secret of {collection}"),
            )
        yield connection


def _as_app(conn: psycopg.Connection, setting: str | None) -> None:
    """Take on the API's role in the current transaction, with or without a collection."""
    conn.execute("SELECT set_config('role', %s, true)", (APP_ROLE,))
    if setting is not None:
        conn.execute("SELECT set_config('ragops.collection', %s, true)", (setting,))


def _visible(conn: psycopg.Connection) -> tuple[set[str], set[str]]:
    documents = {r[0] for r in conn.execute("SELECT collection FROM documents").fetchall()}
    chunks = {r[0] for r in conn.execute("SELECT content FROM chunks").fetchall()}
    return documents, chunks


def test_the_app_role_sees_only_the_collection_its_transaction_names(
    conn: psycopg.Connection,
) -> None:
    with collection_scope(conn, "alpha"):
        assert _visible(conn) == ({"alpha"}, {"secret of alpha"})
        assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
    with collection_scope(conn, "beta"):
        assert _visible(conn) == ({"beta"}, {"secret of beta"})
    # Outside the transaction the login's own view is back (the admin path).
    assert _visible(conn)[0] == set(COLLECTIONS)


@pytest.mark.parametrize("setting", [None, *FORGED])
def test_an_absent_or_forged_collection_setting_sees_nothing(
    conn: psycopg.Connection, setting: str | None
) -> None:
    with conn.transaction():
        _as_app(conn, setting)
        assert _visible(conn) == (set(), set())
        counted = conn.execute("SELECT count(*) FROM chunks WHERE collection = 'beta'")
        assert counted.fetchone() == (0,)


LEXICAL_MATCHES = """
SELECT m.collection, m.hits FROM ragops_lexical_matches(
    ARRAY[to_tsquery('english', 'secret'), to_tsquery('english', 'alpha'),
          to_tsquery('english', 'beta')]) AS m"""


def test_full_text_matches_stop_at_the_collection_as_the_policy_does(
    conn: psycopg.Connection,
) -> None:
    """The function reads past row-level security (to use the GIN index) and applies the
    policy's condition itself: the text of both collections matches, one is returned."""
    for collection in COLLECTIONS:
        with collection_scope(conn, collection):
            assert conn.execute(LEXICAL_MATCHES).fetchall() == [(collection, 2)]
    # The owner's own view, outside any scope, is not widened by it either.
    assert conn.execute(LEXICAL_MATCHES).fetchall() == []


# Migration 0003's signature, still called by query code deployed before migration 0004.
EARLIER_LEXICAL_MATCHES = """
SELECT m.collection, m.hits FROM ragops_lexical_matches(
    to_tsquery('english', 'secret | alpha | beta'),
    ARRAY[to_tsquery('english', 'secret'), to_tsquery('english', 'alpha'),
          to_tsquery('english', 'beta')]) AS m"""


def test_the_earlier_full_text_function_answers_alike_during_a_deployment(
    conn: psycopg.Connection,
) -> None:
    for collection in COLLECTIONS:
        with collection_scope(conn, collection):
            assert conn.execute(EARLIER_LEXICAL_MATCHES).fetchall() == [(collection, 2)]
            assert conn.execute(LEXICAL_MATCHES).fetchall() == [(collection, 2)]


@pytest.mark.parametrize("setting", [None, *FORGED])
def test_full_text_matches_follow_an_absent_or_forged_setting_to_nothing(
    conn: psycopg.Connection, setting: str | None
) -> None:
    with conn.transaction():
        _as_app(conn, setting)
        assert conn.execute(LEXICAL_MATCHES).fetchall() == []


def test_full_text_matches_are_for_the_app_role_only(conn: psycopg.Connection) -> None:
    role = f"t_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        denied = pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="function ragops_lexical_matches"
        )
        with denied, conn.transaction():
            conn.execute("SELECT set_config('role', %s, true)", (role,))
            conn.execute("SELECT set_config('ragops.collection', 'alpha', true)")
            conn.execute(LEXICAL_MATCHES)
    finally:
        conn.execute(f'DROP ROLE "{role}"')


def test_ids_of_another_collection_find_nothing_and_delete_nothing(
    conn: psycopg.Connection,
) -> None:
    beta = conn.execute("SELECT id FROM documents WHERE collection = 'beta'").fetchone()
    assert beta is not None
    with collection_scope(conn, "alpha"):
        assert conn.execute("SELECT * FROM documents WHERE id = %s", beta).fetchall() == []
        assert conn.execute("SELECT * FROM chunks WHERE document_id = %s", beta).fetchall() == []
        deleted = conn.execute("DELETE FROM documents WHERE id = %s RETURNING id", beta)
        assert deleted.fetchall() == []
        # A join, a subquery and a filter on metadata all stop at the policy.
        joined = conn.execute(
            """SELECT c.content FROM chunks c JOIN documents d ON d.id = c.document_id
               WHERE d.metadata @> '{"team": "x"}' OR c.collection IN ('alpha', 'beta')"""
        ).fetchall()
        assert joined == [("secret of alpha",)]
    assert conn.execute("SELECT count(*) FROM chunks WHERE document_id = %s", beta).fetchone() == (
        1,
    )


def test_the_app_role_may_not_write_rows_or_move_them_to_its_collection(
    conn: psycopg.Connection,
) -> None:
    statements = [
        "INSERT INTO documents (collection, source, status) VALUES ('alpha', 'x', 'ready')",
        "UPDATE documents SET collection = 'alpha'",
        "UPDATE chunks SET content = 'changed'",
        "DELETE FROM chunks",
        "TRUNCATE documents CASCADE",
    ]
    for statement in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), collection_scope(conn, "alpha"):
            conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM chunks").fetchone() == (2,)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE documents DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE chunks NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY documents_of_collection ON documents",
        "CREATE POLICY everything ON chunks USING (true)",
        "ALTER ROLE ragops_app BYPASSRLS",
        "SELECT key_hash FROM api_keys",
        "SELECT * FROM api_request_windows",
        "UPDATE api_keys SET revoked_at = NULL",
    ],
)
def test_the_app_role_cannot_lift_the_policies_or_read_the_keys(
    conn: psycopg.Connection, statement: str
) -> None:
    keys.create_key(conn, "beta", "another tenant's key")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), collection_scope(conn, "alpha"):
        conn.execute(statement)


def test_turning_row_security_off_is_an_error_not_a_bypass(conn: psycopg.Connection) -> None:
    with collection_scope(conn, "alpha"):
        conn.execute("SET LOCAL row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT * FROM documents")


def test_the_app_role_owns_nothing_and_has_no_bypass(conn: psycopg.Connection) -> None:
    role = conn.execute(
        """SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb
           FROM pg_roles WHERE rolname = %s""",
        (APP_ROLE,),
    ).fetchone()
    assert role == (False, False, False, False, False)
    owned = conn.execute(
        """SELECT count(*) FROM pg_class
           WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)""",
        (APP_ROLE,),
    ).fetchone()
    assert owned == (0,)
    secured = conn.execute(
        """SELECT relname, relrowsecurity FROM pg_class
           WHERE relname IN ('documents', 'chunks', 'api_keys', 'api_request_windows')
           ORDER BY relname"""
    ).fetchall()
    assert secured == [
        ("api_keys", True),
        ("api_request_windows", True),
        ("chunks", True),
        ("documents", True),
    ]


def test_a_key_is_found_only_by_its_own_hash(conn: psycopg.Connection) -> None:
    _, secret = keys.create_key(conn, "beta", "tenant b")
    with collection_scope(conn, "alpha"):
        grant = keys.authenticate(conn, secret)
        assert grant is not None
        assert grant.collection == "beta"
        # Knowing the table's shape is no help: the function matches one exact hash.
        for guess in ["", "%", "' OR '1'='1", keys.key_hash(secret)[:-1]]:
            row = conn.execute("SELECT * FROM ragops_authenticate(%s)", (guess,)).fetchall()
            assert row == []


def test_the_migration_is_safe_to_apply_in_a_second_database(
    conn: psycopg.Connection, server_url: str
) -> None:
    """The role is cluster-wide: a second database's migration finds it and reuses it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(**info), autocommit=True) as other:
            ensure_pgvector(other)
            assert "access" in [m.name for m in migrate(other)]
            with collection_scope(other, "alpha"):
                assert _visible(other) == (set(), set())
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
