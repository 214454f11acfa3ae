"""Shared fixtures: the real ONNX models and a real (embedded) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ragops.models.build import BuildRequest, build_models
from ragops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# Connection options that make the planner take the HNSW index even where an exact scan of
# a small table would be cheaper.
PREFER_HNSW = "-c enable_seqscan=off -c enable_bitmapscan=off -c enable_sort=off"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The built models: RAGOPS_MODEL_DIR if set, else .ragops/models; built if missing."""
    path = Path(os.environ.get("RAGOPS_MODEL_DIR") or REPO / ".ragops" / "models")
    build_models(BuildRequest(model_dir=path))
    return path


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An admin URL to a real PostgreSQL with pgvector.

    RAGOPS_TEST_DATABASE_URL points the suite at an existing server; otherwise an
    embedded PostgreSQL starts in a temporary folder for this session.
    """
    external = os.environ.get("RAGOPS_TEST_DATABASE_URL")
    if external:
        return external
    from ragops.db.embedded import embedded_database_url

    return embedded_database_url(tmp_path_factory.mktemp("pg"))


def _database_url(server_url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """A new, empty database for one test (so store-wide state never leaks between tests)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _database_url(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def settings(database_url: str, model_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        model_dir=model_dir,
        data_dir=tmp_path / "data",
        pool_min_size=0,
        pool_max_size=2,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def service(settings: Settings) -> Iterator[object]:
    from ragops.service import Service

    svc = Service(settings)
    yield svc
    svc.close()


def ragops_env(database_url: str, model_dir: Path, data_dir: Path) -> dict[str, str]:
    """The environment a `ragops` command needs to run against a test's database."""
    return {
        "RAGOPS_DATABASE_URL": database_url,
        "RAGOPS_MODEL_DIR": str(model_dir),
        "RAGOPS_DATA_DIR": str(data_dir),
        "RAGOPS_POOL_MIN_SIZE": "0",
        "RAGOPS_POOL_MAX_SIZE": "2",
    }


@pytest.fixture
def cli_env(
    database_url: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """This process's environment set for in-process `ragops` commands; returns the work dir.

    Every other RAGOPS_ variable goes, and the work dir is the test's own folder, so
    relative paths resolve there and no stray .env is read.
    """
    for name in list(os.environ):
        if name.startswith("RAGOPS_"):
            monkeypatch.delenv(name)
    for name, value in ragops_env(database_url, model_dir, tmp_path / "data").items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path
