"""The API key of `ragops dev`: created once for the default collection, reused while valid.

Only its hash is in the database, so the key itself is kept in the data dir (readable by
its owner only) for the next start to print again.
"""

from __future__ import annotations

import os
from pathlib import Path

from ragops.access import keys
from ragops.db.database import Database
from ragops.settings import Settings

KEY_FILE = "dev-api-key"
KEY_NAME = "ragops dev"


def key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def dev_api_key(settings: Settings, db: Database) -> str:
    """The saved key if it still grants the default collection, else a new one, saved."""
    path = key_path(settings)
    saved = path.read_text().strip() if path.is_file() else ""
    with db.pool.connection() as conn:
        if keys.is_well_formed(saved):
            grant = keys.authenticate(conn, saved)
            if grant is not None and grant.collection == settings.default_collection:
                return saved
        _, secret = keys.create_key(conn, settings.default_collection, KEY_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    return secret
