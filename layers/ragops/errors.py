"""Typed errors; each message tells the user what to fix."""

from __future__ import annotations


class RagopsError(Exception):
    """Base class for every error ragops raises on purpose."""


class ConfigurationError(RagopsError):
    """The service is configured in a way that cannot work."""


class ModelsNotBuiltError(ConfigurationError):
    """The ONNX models are missing or do not match their manifest."""


class DatabaseSetupError(ConfigurationError):
    """The database lacks something ragops needs (pgvector, privileges)."""


class StoreModelMismatchError(ConfigurationError):
    """The store was embedded with another model than the one configured."""


class IngestError(RagopsError):
    """A file could not be ingested; the message names the reason."""


class UnsupportedFileTypeError(IngestError):
    pass


class LimitExceededError(IngestError):
    """A file is over one of the ingest limits; the message names the setting."""


class FileTooLargeError(LimitExceededError):
    pass


class ParseError(IngestError):
    pass


class EmptyDocumentError(IngestError):
    pass


class StaleVersionError(IngestError):
    """A newer version of the source is already stored; this one is dropped."""


class NotFoundError(RagopsError):
    """A document or collection that does not exist."""


class InvalidQueryError(RagopsError):
    """A search request that cannot be answered as asked."""


class EvalDataError(RagopsError):
    """An evaluation dataset or baseline file that cannot be used; names the file and line."""


class AuthenticationError(RagopsError):
    """No usable credentials: a missing, malformed, unknown or revoked API key."""


class ForbiddenError(RagopsError):
    """Valid credentials that do not grant what the request asks for (another collection)."""


class RateLimitedError(RagopsError):
    """Too many requests for one key in the current window."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
