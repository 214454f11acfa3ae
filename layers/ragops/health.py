"""Health checks: database, pgvector, migrations, models against the store, ingest backlog."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ragops.db.database import MIN_PGVECTOR, version_tuple
from ragops.db.documents import status_counts
from ragops.db.migrate import pending_migrations
from ragops.db.store import stored_model
from ragops.errors import RagopsError
from ragops.models.manifest import read_manifest
from ragops.service import Service

HEALTH_CONNECT_SECONDS = 5.0


@dataclass
class HealthReport:
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "degraded" if self.failing else "ok",
            "failing": self.failing,
            "checks": self.checks,
            "documents": self.documents,
        }


def check_health(service: Service) -> HealthReport:
    """Run every check; one failing check never hides the others."""
    report = HealthReport()
    try:
        manifest = read_manifest(service.settings.models_path)
        variant = service.settings.embedder_variant
        configured = f"{manifest.embedder.id}@{variant}"
        ok = variant in manifest.embedder.variants
        report.checks["models"] = {
            "ok": ok,
            "detail": configured if ok else f"embedder variant {variant!r} was not built",
        }
    except RagopsError as exc:
        configured = None
        report.checks["models"] = {"ok": False, "detail": str(exc)}
    # Opening the service's database applies pending migrations, as the other functions do
    # on start; whatever fails here, the checks below name it.
    with contextlib.suppress(psycopg.Error, RagopsError):
        service.db  # noqa: B018
    try:
        with _connection(service) as conn:
            _database_checks(conn, report, configured)
    except (psycopg.Error, RagopsError) as exc:
        report.checks["database"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return report


@contextlib.contextmanager
def _connection(service: Service) -> Iterator[psycopg.Connection]:
    """The service's pool when it opened; else a direct connection, to say what is wrong."""
    if service.db_open:
        # A load balancer gives up after a few seconds: say the database is down before then
        # rather than wait out the pool's 30 s for a connection that will not come.
        with service.db.pool.connection(timeout=HEALTH_CONNECT_SECONDS) as conn:
            yield conn
        return
    from ragops.db.database import resolve_database_url

    url = resolve_database_url(service.settings)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        yield conn


def _database_checks(
    conn: psycopg.Connection, report: HealthReport, configured_model: str | None
) -> None:
    conn.execute("SELECT 1")
    report.checks["database"] = {"ok": True, "detail": str(conn.info.server_version)}
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    version = str(row[0]) if row else None
    report.checks["pgvector"] = {
        "ok": version is not None and version_tuple(version) >= MIN_PGVECTOR,
        "detail": version or "the vector extension is not installed",
    }
    pending = pending_migrations(conn)
    report.checks["migrations"] = {
        "ok": not pending,
        "detail": "up to date"
        if not pending
        else "pending: " + ", ".join(f"{m.version:04d}_{m.name}" for m in pending),
    }
    if pending:
        return
    stored = stored_model(conn)
    if stored is None or configured_model is None:
        report.checks["store_model"] = {"ok": True, "detail": "no model recorded yet"}
    else:
        same = stored[0] == configured_model
        report.checks["store_model"] = {
            "ok": same,
            "detail": stored[0]
            if same
            else f"store holds {stored[0]}, models are {configured_model}: run `ragops reembed`",
        }
    counts = status_counts(conn)
    report.documents = {s: counts.get(s, 0) for s in ("ready", "pending", "failed")}
