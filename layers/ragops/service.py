"""The service: settings, database and models wired once and shared by CLI and functions."""

from __future__ import annotations

import contextlib
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from ragops.db.database import Database, connect
from ragops.db.store import check_store_model
from ragops.errors import RagopsError
from ragops.models import Models
from ragops.retrieval.search import Searcher
from ragops.settings import Settings

if TYPE_CHECKING:
    from ragops.generation.answerer import Answerer
    from ragops.ingest.pipeline import Ingestor


class Service:
    """Lazily opens the pool and the model sessions, once per process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._db: Database | None = None

    @cached_property
    def models(self) -> Models:
        return Models.from_settings(self.settings)

    @property
    def db(self) -> Database:
        """The pool, opened (and the store's model checked) by the first caller only."""
        if self._db is None:
            with self._lock:
                if self._db is None:
                    self._db = self._open_database()
        return self._db

    def _open_database(self) -> Database:
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
        # Imported here: the query function never ingests, and parsing costs its cold start.
        from ragops.ingest.pipeline import Ingestor

        return Ingestor(self.db, self.models, self.settings)

    @cached_property
    def searcher(self) -> Searcher:
        # The models load in the background while the database connects.
        self.prefetch_models()
        return Searcher(self.db, self.models, self.settings)

    @cached_property
    def answerer(self) -> Answerer:
        from ragops.generation.answerer import Answerer

        return Answerer.from_service(self)

    def prefetch_models(self) -> None:
        """Start opening the model sessions now; errors surface where the models are used."""
        with contextlib.suppress(RagopsError):
            self.models.prefetch()

    @property
    def db_open(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
