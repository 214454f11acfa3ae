"""A minimal ordered migration runner.

Why not Alembic or yoyo: the schema is plain SQL with no ORM models to diff, the runner
must be cheap on a Lambda cold start, and it must be safe when many functions start at
once. Numbered .sql files, each applied in its own transaction under an advisory lock and
recorded with a checksum, give exactly that in a page of code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from ragops.errors import DatabaseSetupError

# Any constant works; it only has to be the same for every process migrating this database.
MIGRATION_LOCK_ID = 0x72616700
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("ragops.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute("SELECT version, checksum FROM ragops_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply pending migrations; returns those applied by this call."""
    applied_now = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
    try:
        with conn.transaction():
            conn.execute(
                """CREATE TABLE IF NOT EXISTS ragops_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        done = applied_versions(conn)
        for migration in available_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise DatabaseSetupError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        "it was applied to this database; restore the original file"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO ragops_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied_now.append(migration)
    except psycopg.errors.InsufficientPrivilege as exc:
        # Managed databases often give the app user no CREATE right on the schema.
        user = conn.info.user
        raise DatabaseSetupError(
            f"the database user {user!r} may not create the ragops tables in database "
            f"{conn.info.dbname!r} ({exc.diag.message_primary}); ask an administrator to run "
            f"`GRANT CREATE ON SCHEMA public TO {user};`, or apply the migrations once as the "
            "database owner"
        ) from exc
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


def pending_migrations(conn: psycopg.Connection) -> list[Migration]:
    """Migrations this package ships that the database has not applied."""
    try:
        done = applied_versions(conn)
    except psycopg.errors.UndefinedTable:
        return available_migrations()
    return [m for m in available_migrations() if m.version not in done]
