"""An OpenAI-compatible chat-completions client over plain httpx.

Retries 429, 5xx, connection errors, timeouts and garbled responses with full-jitter
backoff (or the server's Retry-After), all inside one total time bound; other 4xx
answers raise a typed error naming the status and the server's message.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from ragops.errors import ConfigurationError, RagopsError
from ragops.generation.retry import RetryPolicy, is_retryable_status, parse_retry_after
from ragops.generation.sse import sse_data
from ragops.settings import Settings

if TYPE_CHECKING:
    import httpx  # imported where a request is made: a service without an LLM never loads it

log = logging.getLogger(__name__)

Message = Mapping[str, str]
T = TypeVar("T")

# An attempt with less time left than this cannot produce an answer: give up instead.
MIN_ATTEMPT_SECONDS = 0.25
ERROR_BODY_BYTES = 64 * 1024
ERROR_MESSAGE_CHARS = 500


class LLMError(RagopsError):
    """The LLM did not produce an answer."""


class LLMRequestError(LLMError):
    """The server refused the request (a 4xx other than 408/409/425/429); retrying cannot help."""

    def __init__(self, status: int, server_message: str, hint: str = ""):
        self.status = status
        self.server_message = server_message
        text = (
            f"the LLM server answered {status}{_reason(status)}: {server_message or '(no message)'}"
        )
        super().__init__(f"{text}; {hint}" if hint else text)


def _reason(status: int) -> str:
    try:
        return f" {HTTPStatus(status).phrase}"
    except ValueError:
        return ""


class LLMAuthenticationError(LLMRequestError):
    """401 or 403: the API key is missing, wrong or lacks access to the model."""


class LLMNotFoundError(LLMRequestError):
    """404: the base URL or the model name is wrong."""


class LLMResponseError(LLMError):
    """The server's answer was malformed or cut short."""


class LLMUnavailableError(LLMError):
    """Retryable failures outlasted the retries or the total time bound."""

    def __init__(self, message: str, attempts: int):
        self.attempts = attempts
        super().__init__(message)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def to_json(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True)
class ChatDelta:
    """A piece of streamed answer text."""

    text: str


@dataclass(frozen=True)
class ChatResult:
    """A whole completion: the last item of a stream, or what `chat` returns."""

    content: str
    model: str | None
    usage: Usage
    finish_reason: str | None
    attempts: int


class _RetryableError(Exception):
    """A failure another attempt may not have."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


_shared_client: httpx.Client | None = None
_shared_lock = threading.Lock()


def shared_http_client() -> httpx.Client:
    """One connection pool per process, created on first use and reused by warm invocations."""
    global _shared_client
    if _shared_client is None:
        import httpx

        with _shared_lock:
            if _shared_client is None:
                _shared_client = httpx.Client(
                    limits=httpx.Limits(max_connections=20, max_keepalive_connections=10)
                )
    return _shared_client


class LLMClient:
    """Chat completions against one OpenAI-compatible endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        total_timeout: float = 120.0,
        policy: RetryPolicy | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        http: httpx.Client | None = None,
        rng: random.Random | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"RAGOPS_LLM_BASE_URL must be an http(s) URL ending in /v1, got {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.policy = policy or RetryPolicy(3, 0.5, 8.0, 30.0)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._headers = {"Accept": "application/json, text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http = http
        self._rng = rng

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.Client | None = None) -> LLMClient:
        if not settings.llm_base_url:
            raise ConfigurationError("no LLM configured: set RAGOPS_LLM_BASE_URL")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        if key is None and settings.llm_api_key_secret_arn:
            key = _secret_value(settings.llm_api_key_secret_arn)
        return cls(
            settings.llm_base_url,
            api_key=key,
            model=settings.llm_model,
            connect_timeout=settings.llm_connect_timeout,
            read_timeout=settings.llm_read_timeout,
            total_timeout=settings.llm_total_timeout,
            policy=RetryPolicy(
                settings.llm_max_retries,
                settings.llm_backoff_base,
                settings.llm_backoff_max,
                settings.llm_retry_after_max,
            ),
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            http=http,
        )

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return f"LLMClient({self.base_url!r}, model={self.model!r})"

    @property
    def http(self) -> httpx.Client:
        return self._http or shared_http_client()

    def chat(self, messages: Sequence[Message], max_tokens: int | None = None) -> ChatResult:
        """One completion, retried as needed within the total time bound."""
        body = self._body(messages, max_tokens, stream=False)
        with closing(self._attempts(body, _read_completion)) as attempts:
            return next(attempts)

    def stream(
        self, messages: Sequence[Message], max_tokens: int | None = None
    ) -> Generator[ChatDelta | ChatResult, None, None]:
        """Text deltas as they arrive, then one ChatResult with the whole text and usage.

        Failures before the first delta are retried like `chat`; after it, the error is raised.
        """
        body = self._body(messages, max_tokens, stream=True)
        return self._attempts(body, _read_stream)

    def _body(
        self, messages: Sequence[Message], max_tokens: int | None, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [dict(m) for m in messages],
            "temperature": self.temperature,
            "max_tokens": max_tokens or self.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.model:
            body["model"] = self.model
        return body

    def _attempts(
        self,
        body: dict[str, Any],
        read: Callable[[httpx.Response, int], Iterator[T]],
    ) -> Generator[T, None, None]:
        import httpx

        deadline = time.monotonic() + self.total_timeout
        attempt = 0
        while True:
            attempt += 1
            delivered = False
            try:
                with self._send(body, deadline) as response:
                    for item in read(response, attempt):
                        delivered = True
                        yield item
                return
            except LLMResponseError as exc:
                if delivered:
                    raise
                failure = _RetryableError(str(exc))
            except httpx.HTTPError as exc:
                if delivered:
                    raise self._broken(exc, deadline, attempt) from exc
                failure = _RetryableError(_describe(exc))
            except _RetryableError as exc:
                failure = exc
            self._wait_or_give_up(failure, attempt, deadline)

    @contextmanager
    def _send(self, body: dict[str, Any], deadline: float) -> Iterator[httpx.Response]:
        import httpx

        remaining = deadline - time.monotonic()
        timeout = httpx.Timeout(
            connect=min(self.connect_timeout, remaining),
            read=min(self.read_timeout, remaining),
            write=min(self.read_timeout, remaining),
            pool=min(self.connect_timeout, remaining),
        )
        with (
            self.http.stream(
                "POST", self.url, json=body, headers=self._headers, timeout=timeout
            ) as response,
            _cut_off_at(response, deadline),
        ):
            if response.status_code >= 400:
                self._raise_for_status(response)
            yield response

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        message = _server_message(response)
        if is_retryable_status(status):
            reason = f"{status} {response.reason_phrase}" + (f": {message}" if message else "")
            raise _RetryableError(reason, parse_retry_after(response.headers.get("Retry-After")))
        if status in (401, 403):
            raise LLMAuthenticationError(status, message, "check RAGOPS_LLM_API_KEY")
        if status == 404:
            raise LLMNotFoundError(
                status,
                message,
                f"check RAGOPS_LLM_BASE_URL ({self.base_url}; it usually ends in /v1) "
                "and RAGOPS_LLM_MODEL",
            )
        raise LLMRequestError(status, message)

    def _wait_or_give_up(self, failure: _RetryableError, attempt: int, deadline: float) -> None:
        what = f"the LLM at {self.base_url} failed {attempt} time(s), last with {failure.reason}"
        if attempt > self.policy.max_retries:
            raise LLMUnavailableError(f"{what}; no retries left", attempt)
        delay = self.policy.delay(attempt - 1, failure.retry_after, self._rng)
        if delay is None:
            raise LLMUnavailableError(
                f"{what}; it asks to retry after {failure.retry_after:.0f} s, more than "
                f"RAGOPS_LLM_RETRY_AFTER_MAX ({self.policy.retry_after_max:g} s)",
                attempt,
            )
        if time.monotonic() + delay + MIN_ATTEMPT_SECONDS > deadline:
            raise LLMUnavailableError(
                f"{what}; no time left within RAGOPS_LLM_TOTAL_TIMEOUT ({self.total_timeout:g} s)",
                attempt,
            )
        log.warning("%s; retrying in %.2f s", what, delay)
        time.sleep(delay)

    def _broken(self, exc: httpx.HTTPError, deadline: float, attempts: int) -> LLMError:
        if time.monotonic() >= deadline:
            return LLMUnavailableError(
                f"the LLM stream outlasted RAGOPS_LLM_TOTAL_TIMEOUT ({self.total_timeout:g} s)",
                attempts,
            )
        return LLMUnavailableError(f"the LLM stream broke off: {_describe(exc)}", attempts)


@contextmanager
def _cut_off_at(response: httpx.Response, deadline: float) -> Iterator[None]:
    """Shut the connection down at the deadline, so a server trickling bytes cannot hold us."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if not isinstance(sock, socket.socket):
        yield
        return
    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), _shutdown, (sock,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    # The plain-socket method even for TLS: it wakes a blocked read without touching SSL state.
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _server_message(response: httpx.Response) -> str:
    """The error message in the body: OpenAI's {"error": {"message"}}, other JSON, or text."""
    raw = b""
    for chunk in response.iter_bytes():
        raw += chunk
        if len(raw) >= ERROR_BODY_BYTES:
            break
    text = raw.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:ERROR_MESSAGE_CHARS]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail") or json.dumps(error)
        return str(error)[:ERROR_MESSAGE_CHARS]
    return text[:ERROR_MESSAGE_CHARS]


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise LLMResponseError(f"malformed JSON in {what}: {text[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise LLMResponseError(f"{what} is not a JSON object: {text[:200]!r}")
    if payload.get("error"):
        error = payload["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise LLMResponseError(f"the LLM server reported an error in {what}: {message}")
    return payload


def _usage(payload: Mapping[str, Any]) -> Usage | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _read_completion(response: httpx.Response, attempt: int) -> Iterator[ChatResult]:
    payload = _parse_json(response.read().decode("utf-8", "replace"), "the completion")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMResponseError("the completion has no choices")
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    yield ChatResult(
        content=content if isinstance(content, str) else "",
        model=payload.get("model"),
        usage=_usage(payload) or Usage(),
        finish_reason=choices[0].get("finish_reason"),
        attempts=attempt,
    )


def _read_stream(response: httpx.Response, attempt: int) -> Iterator[ChatDelta | ChatResult]:
    parts: list[str] = []
    model: str | None = None
    usage = Usage()
    finish_reason: str | None = None
    for data in sse_data(response.iter_lines()):
        if data.strip() == "[DONE]":
            yield ChatResult("".join(parts), model, usage, finish_reason, attempt)
            return
        chunk = _parse_json(data, "a stream chunk")
        model = chunk.get("model") or model
        usage = _usage(chunk) or usage
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                raise LLMResponseError(f"a stream chunk has a malformed choice: {data[:200]!r}")
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
                yield ChatDelta(text)
            finish_reason = choice.get("finish_reason") or finish_reason
    raise LLMResponseError("the stream ended before `data: [DONE]` (truncated)")


def _secret_value(secret_arn: str) -> str:
    """The API key held in a Secrets Manager secret (read once per process)."""
    import boto3

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    return str(secret["SecretString"]).strip()
