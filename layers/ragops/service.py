"""The service: settings, database and models wired once and shared by CLI and functions."""

from __future__ import annotations

import threading
from functools import cached_property

from ragops.db.database import Database, connect
from ragops.db.store import check_store_model
from ragops.ingest.pipeline import Ingestor
from ragops.models import Models
from ragops.retrieval.search import Searcher
from ragops.settings import Settings


class Service:
    """Lazily opens the pool and the model sessions, once per process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def models(self) -> Models:
        return Models.from_settings(self.settings)

    @cached_property
    def db(self) -> Database:
        with self._lock:
            db = connect(self.settings)
            try:
                with db.pool.connection() as conn:
                    check_store_model(conn, self.models.embedder_id, self.models.dimension)
            except BaseException:
                db.close()
                raise
            return db

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.db, self.models, self.settings)

    @cached_property
    def searcher(self) -> Searcher:
        return Searcher(self.db, self.models, self.settings)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
