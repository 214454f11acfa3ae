"""The store on a real PostgreSQL: its embedding model, re-embedding, migrations, pgvector."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg import sql
from tests.conftest import PREFER_HNSW

from ragops.cli import main as cli_main
from ragops.db.database import Database, connect, ensure_pgvector
from ragops.db.documents import DocumentVersion
from ragops.db.migrate import available_migrations, migrate
from ragops.db.store import (
    INDEX_NAME,
    IndexParameters,
    check_store_model,
    column_dimension,
    index_parameters,
    rebuild_index,
    reembed,
    stored_model,
)
from ragops.errors import DatabaseSetupError, StoreModelMismatchError
from ragops.ingest.document import embedding_text
from ragops.models import Models
from ragops.service import Service
from ragops.settings import Settings

HANDBOOK = b"""## Refunds
Customers can ask for their money back within 30 days of buying a plan.

## Backups
The database is copied every night and its snapshots are kept for 35 days.

## Holidays
Every employee gets 25 days of paid vacation each year, plus public holidays.
"""
HANDBOOK_SOURCE = "s3://docs/handbook.md"


def ingest_handbook(service: Service) -> uuid.UUID:
    version = DocumentVersion("default", HANDBOOK_SOURCE, size_bytes=len(HANDBOOK))
    outcome = service.ingestor.ingest_bytes(HANDBOOK, version, name="handbook.md")
    assert outcome.status == "ingested", outcome.error
    assert outcome.document_id is not None
    return outcome.document_id


def stored_chunks(db: Database) -> list[tuple[int, str, npt.NDArray[np.float32]]]:
    with db.pool.connection() as conn:
        rows = conn.execute("SELECT id, heading, content, embedding FROM chunks ORDER BY id")
        return [
            (id_, embedding_text(heading, content), vector.to_numpy())
            for id_, heading, content, vector in rows
        ]


def with_options(url: str, options: str) -> str:
    return psycopg.conninfo.make_conninfo(url, options=options)


@pytest.fixture
def fp32_settings(settings: Settings) -> Settings:
    assert settings.embedder_variant == "int8"
    return settings.model_copy(update={"embedder_variant": "fp32"})


# --- the store's model -------------------------------------------------------------------


def test_first_open_records_model_and_dimension(settings: Settings) -> None:
    service = Service(settings)
    try:
        with service.db.pool.connection() as conn:
            recorded = stored_model(conn)
            width = column_dimension(conn)
        manifest = service.models.manifest.embedder
        assert recorded == (f"{manifest.id}@int8", manifest.dimension)
        assert width == manifest.dimension
    finally:
        service.close()

    again = Service(settings)
    try:
        with again.db.pool.connection() as conn:
            count = conn.execute("SELECT count(*) FROM store_info").fetchone()
            assert stored_model(conn) == recorded
        assert count == (1,)
    finally:
        again.close()


def test_other_embedder_variant_is_refused(settings: Settings, fp32_settings: Settings) -> None:
    service = Service(settings)
    try:
        ingest_handbook(service)
        int8_id = service.models.embedder_id
    finally:
        service.close()

    other = Service(fp32_settings)
    fp32_id = other.models.embedder_id
    assert fp32_id != int8_id
    with pytest.raises(StoreModelMismatchError) as raised:
        _ = other.db
    message = str(raised.value)
    assert int8_id in message
    assert fp32_id in message
    assert "ragops reembed" in message
    other.close()


def test_first_open_with_another_dimension_resizes_the_empty_store(settings: Settings) -> None:
    db = connect(settings)
    try:
        with db.pool.connection() as conn:
            check_store_model(conn, "example/tiny-embedder", 8)
            assert stored_model(conn) == ("example/tiny-embedder", 8)
            assert column_dimension(conn) == 8
            not_null = conn.execute(
                """SELECT attnotnull FROM pg_attribute
                   WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"""
            ).fetchone()
            assert not_null == (True,)
            assert _hnsw_index_on_embedding(conn)
    finally:
        db.close()


def _hnsw_index_on_embedding(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        """SELECT indexdef FROM pg_indexes
           WHERE tablename = 'chunks' AND indexname = 'chunks_embedding_idx'"""
    ).fetchone()
    return row is not None and "hnsw (embedding vector_cosine_ops)" in str(row[0])


# --- re-embedding ------------------------------------------------------------------------


def _reembed_with_library(settings: Settings) -> None:
    models = Models.from_settings(settings)
    db = connect(settings)
    try:
        with db.pool.connection() as conn:
            done = reembed(conn, models.embedder_id, models.dimension, models.embedder.embed)
            total = conn.execute("SELECT count(*) FROM chunks").fetchone()
        assert total == (done,)
    finally:
        db.close()


def _reembed_with_cli(
    settings: Settings,
    chunks: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(settings.data_dir.parent)
    monkeypatch.setenv("RAGOPS_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("RAGOPS_MODEL_DIR", str(settings.model_dir))
    monkeypatch.setenv("RAGOPS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGOPS_EMBEDDER_VARIANT", settings.embedder_variant)
    assert cli_main(["reembed"]) == 0
    assert f"re-embedded {chunks} chunks" in capsys.readouterr().out


@pytest.mark.parametrize("via", ["library", "cli"])
def test_reembed_moves_the_store_to_the_new_model(
    settings: Settings,
    fp32_settings: Settings,
    via: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = Service(settings)
    try:
        document_id = ingest_handbook(old)
        before = stored_chunks(old.db)
    finally:
        old.close()
    assert len(before) == 3

    if via == "library":
        _reembed_with_library(fp32_settings)
    else:
        _reembed_with_cli(fp32_settings, len(before), monkeypatch, capsys)

    new = Service(fp32_settings)
    try:
        after = stored_chunks(new.db)
        assert [(i, t) for i, t, _ in after] == [(i, t) for i, t, _ in before]
        expected = new.models.embedder.embed([text for _, text, _ in after])
        for (_, _, vector), want, (_, _, old_vector) in zip(after, expected, before, strict=True):
            assert np.allclose(vector, want, atol=1e-5)
            assert not np.allclose(vector, old_vector, atol=1e-5)

        with new.db.pool.connection() as conn:
            assert stored_model(conn) == (new.models.embedder_id, new.models.dimension)
            recorded = conn.execute(
                "SELECT embedding_model FROM documents WHERE id = %s", (document_id,)
            ).fetchone()
            assert recorded == (new.models.embedder_id,)
            assert _hnsw_index_on_embedding(conn)

        question = "how long can I get my money back?"
        searcher = new.searcher
        results = searcher.search(searcher.request(question, mode="vector", rerank=False)).results
        assert results[0].heading == "Refunds"
        refunds = next(i for i, (_, text, _) in enumerate(after) if text.startswith("Refunds"))
        cosine = float(np.dot(expected[refunds], new.models.embedder.embed_query(question)))
        assert results[0].scores["vector_score"] == pytest.approx(cosine, abs=1e-4)
        version = DocumentVersion("default", HANDBOOK_SOURCE, size_bytes=len(HANDBOOK))
        again = new.ingestor.ingest_bytes(HANDBOOK, version, name="handbook.md")
        assert again.status == "unchanged"
    finally:
        new.close()


def test_searches_keep_running_while_reembed_embeds(
    settings: Settings, fp32_settings: Settings
) -> None:
    # A search that has to wait for a lock gives up after two seconds instead of hanging.
    reader_settings = settings.model_copy(
        update={"database_url": with_options(str(settings.database_url), "-c lock_timeout=2000")}
    )
    reader = Service(reader_settings)
    models = Models.from_settings(fp32_settings)
    seen: list[str | None] = []

    def embed_while_searching(texts: list[str]) -> npt.NDArray[np.float32]:
        request = reader.searcher.request("money back", mode="hybrid", rerank=False)
        seen.extend(r.heading for r in reader.searcher.search(request).results)
        return models.embedder.embed(texts)

    try:
        ingest_handbook(reader)
        db = connect(fp32_settings)
        try:
            with db.pool.connection() as conn:
                reembed(conn, models.embedder_id, models.dimension, embed_while_searching)
        finally:
            db.close()
    finally:
        reader.close()
    assert seen
    assert seen[0] == "Refunds"


# --- the vector index --------------------------------------------------------------------


def _embedding_indexes(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    """Every index on chunks' embedding (name, valid), whatever its name."""
    rows = conn.execute(
        """SELECT c.relname, i.indisvalid FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = 'chunks'::regclass AND a.attname = 'embedding'
           ORDER BY 1"""
    ).fetchall()
    return [(str(name), bool(valid)) for name, valid in rows]


def test_rebuilt_index_has_the_new_parameters_serves_search_and_survives_reembed(
    settings: Settings, fp32_settings: Settings
) -> None:
    hnsw_first = settings.model_copy(
        update={"database_url": with_options(str(settings.database_url), PREFER_HNSW)}
    )
    service = Service(hnsw_first)
    try:
        ingest_handbook(service)
        with service.db.pool.connection() as conn:
            assert index_parameters(conn) == IndexParameters(16, 64)  # the migration's
            # What an interrupted rebuild leaves behind is cleared first.
            conn.execute("CREATE INDEX chunks_embedding_idx_rebuilt ON chunks (id)")
            seconds = rebuild_index(conn, IndexParameters(m=8, ef_construction=32), "64MB")
            assert seconds > 0
            assert index_parameters(conn) == IndexParameters(8, 32)
            assert _embedding_indexes(conn) == [(INDEX_NAME, True)]
            leftover = conn.execute("SELECT to_regclass('chunks_embedding_idx_rebuilt')").fetchone()
            assert leftover == (None,)
            plan = conn.execute(
                "EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 3",
                (service.models.embedder.embed_query("refund"),),
            ).fetchall()
            assert any(INDEX_NAME in row[0] for row in plan), plan
        searcher = service.searcher
        question = "how long can I get my money back?"
        results = searcher.search(searcher.request(question, mode="vector", rerank=False)).results
        assert results[0].heading == "Refunds"
    finally:
        service.close()

    _reembed_with_library(fp32_settings)
    db = connect(fp32_settings)
    try:
        with db.pool.connection() as conn:
            assert index_parameters(conn) == IndexParameters(8, 32)
            assert _hnsw_index_on_embedding(conn)
    finally:
        db.close()


def test_a_failed_rebuild_keeps_the_old_index_and_the_next_one_clears_what_it_left(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    service = Service(settings)
    try:
        ingest_handbook(service)
        with (
            service.db.pool.connection() as conn,
            psycopg.connect(str(settings.database_url)) as writer,
        ):
            # An open write on chunks: the concurrent build waits for it after it has
            # entered its (not yet valid) index in the catalog, and gives up at the timeout;
            # so does the drop of that index.
            writer.execute("UPDATE chunks SET ordinal = ordinal WHERE false")
            conn.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                rebuild_index(conn, IndexParameters(m=8, ef_construction=32), "48MB")
            assert "left the unfinished index chunks_embedding_idx_rebuilt" in caplog.text
            # The build's memory was the session's only while it ran.
            assert conn.execute("SHOW maintenance_work_mem").fetchone() != ("48MB",)
            assert index_parameters(conn) == IndexParameters(16, 64)
            assert (INDEX_NAME, True) in _embedding_indexes(conn)
            searcher = service.searcher
            request = searcher.request("money back", mode="vector", rerank=False)
            assert searcher.search(request).results[0].heading == "Refunds"

            writer.rollback()
            conn.execute("RESET lock_timeout")
            rebuild_index(conn, IndexParameters(m=8, ef_construction=32), "48MB")
            assert index_parameters(conn) == IndexParameters(8, 32)
            assert _embedding_indexes(conn) == [(INDEX_NAME, True)]
    finally:
        service.close()


@pytest.mark.parametrize(
    ("m", "ef_construction", "named"),
    [
        (1, 64, "m must be between 2 and 100"),
        (16, 1001, "ef_construction must be between"),
        (32, 40, "at least twice m (64)"),
    ],
)
def test_out_of_range_index_parameters_are_refused_by_name(
    m: int, ef_construction: int, named: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        IndexParameters(m=m, ef_construction=ef_construction)


def test_index_command_shows_and_rebuilds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = Service(settings)
    try:
        ingest_handbook(service)
    finally:
        service.close()
    monkeypatch.chdir(settings.data_dir.parent)
    monkeypatch.setenv("RAGOPS_DATABASE_URL", str(settings.database_url))

    assert cli_main(["index"]) == 0
    shown = capsys.readouterr().out
    assert re.search(
        rf"{INDEX_NAME}: HNSW, m = 16, ef_construction = 64, 3 vectors, [1-9]\d* kB\n", shown
    ), shown

    assert cli_main(["index", "--m", "12", "--ef-construction", "48"]) == 0
    rebuilt = capsys.readouterr().out
    assert f"rebuilt {INDEX_NAME} in " in rebuilt
    assert "m = 12, ef_construction = 48, 3 vectors" in rebuilt

    assert cli_main(["index", "--m", "12"]) == 0
    assert "nothing to do" in capsys.readouterr().out

    # ef_construction stays 48, under twice the asked m: refused before anything is built.
    assert cli_main(["index", "--m", "30"]) == 2
    refused = capsys.readouterr().err
    assert "ef_construction must be at least twice m (60), not 48" in refused
    db = connect(settings)
    try:
        with db.pool.connection() as conn:
            assert index_parameters(conn) == IndexParameters(12, 48)
    finally:
        db.close()


# --- migrations and pgvector -------------------------------------------------------------


def _schema(conn: psycopg.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        """SELECT c.relname, c.relkind::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' ORDER BY 1"""
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def test_migrations_apply_once(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_pgvector(conn)
        first = migrate(conn)
        schema = _schema(conn)
        second = migrate(conn)
        assert [m.version for m in first] == [m.version for m in available_migrations()]
        assert first
        assert second == []
        assert _schema(conn) == schema
        applied = conn.execute("SELECT count(*) FROM ragops_migrations").fetchone()
        assert applied == (len(first),)


def _advisory_locks(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_changed_migration_is_refused(database_url: str, settings: Settings) -> None:
    first = available_migrations()[0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_pgvector(conn)
        migrate(conn)
        conn.execute(
            "UPDATE ragops_migrations SET checksum = %s WHERE version = %s",
            ("0" * 64, first.version),
        )
        with pytest.raises(DatabaseSetupError, match=f"{first.version:04d}_{first.name}"):
            migrate(conn)
        assert _advisory_locks(conn) == 0
    with pytest.raises(DatabaseSetupError, match="was changed after it was applied"):
        connect(settings)


@pytest.fixture
def limited_role(server_url: str) -> Iterator[tuple[str, str]]:
    """A new database owned by the admin and a login role that is neither owner nor superuser."""
    suffix = uuid.uuid4().hex[:10]
    role, dbname = f"app_{suffix}", f"t_app_{suffix}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield dbname, role
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_missing_create_extension_right_is_reported(
    server_url: str, limited_role: tuple[str, str], settings: Settings
) -> None:
    dbname, role = limited_role
    url = psycopg.conninfo.make_conninfo(server_url, dbname=dbname, user=role)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.info.user == role
        with pytest.raises(DatabaseSetupError) as raised:
            ensure_pgvector(conn)
    message = str(raised.value)
    assert "CREATE EXTENSION vector" in message
    assert role in message
    assert dbname in message

    with pytest.raises(DatabaseSetupError, match="CREATE EXTENSION vector"):
        connect(settings.model_copy(update={"database_url": url}))


def test_missing_create_table_right_is_reported(
    server_url: str, limited_role: tuple[str, str], settings: Settings
) -> None:
    dbname, role = limited_role
    with psycopg.connect(
        psycopg.conninfo.make_conninfo(server_url, dbname=dbname), autocommit=True
    ) as admin:
        admin.execute("CREATE EXTENSION vector")
    url = psycopg.conninfo.make_conninfo(server_url, dbname=dbname, user=role)
    with pytest.raises(DatabaseSetupError) as raised:
        connect(settings.model_copy(update={"database_url": url}))
    message = str(raised.value)
    assert role in message
    assert "GRANT CREATE ON SCHEMA public" in message


def test_pooled_connections_keep_no_session_state_and_scopes_set_the_search_settings(
    settings: Settings,
) -> None:
    """A proxy that pools by transaction (RDS Proxy) pins a connection whose session was
    changed; the HNSW settings are set per scoped transaction instead."""
    sql_settings = (
        "SELECT current_setting('hnsw.ef_search', true), "
        "current_setting('hnsw.iterative_scan', true), current_setting('plan_cache_mode'), "
        "current_user"
    )
    db = connect(settings.model_copy(update={"ef_search": 123}))
    try:
        with db.scoped("default") as conn:
            scoped = conn.execute(sql_settings).fetchone()
            assert scoped == ("123", "relaxed_order", "force_custom_plan", "ragops_app")
        for _ in range(2):  # the connection the scope used, and any other
            with db.pool.connection() as conn:
                ef_search, iterative, plans, user = conn.execute(sql_settings).fetchone() or ()
                assert ef_search != "123"
                assert iterative != "relaxed_order"
                assert plans == "auto"
                assert user != "ragops_app"
    finally:
        db.close()


@pytest.mark.parametrize(("threshold", "prepared"), [(0, False), (2, True)])
def test_prepare_threshold_zero_prepares_nothing_on_the_server(
    settings: Settings, threshold: int, prepared: bool
) -> None:
    db = connect(settings.model_copy(update={"db_prepare_threshold": threshold}))
    try:
        with db.pool.connection() as conn:
            for _ in range(5):
                conn.execute("SELECT count(*) FROM documents WHERE collection = %s", ("x",))
            count = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
            assert count is not None
            assert (count[0] > 0) is prepared
    finally:
        db.close()
