"""The LLM client against a fault-injecting server (retries, bounds, typed errors) and the
real llama.cpp server (completion, stream, usage)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from ragops.errors import ConfigurationError
from ragops.generation.llm import (
    ChatDelta,
    ChatResult,
    LLMAuthenticationError,
    LLMClient,
    LLMNotFoundError,
    LLMRequestError,
    LLMResponseError,
    LLMUnavailableError,
    shared_http_client,
)
from ragops.generation.retry import RetryPolicy
from ragops.settings import Settings
from tests.generation.servers import (
    ANSWER,
    FaultServer,
    LocalLLM,
    complete,
    malformed_json,
    slow,
    status,
    stream_tokens,
    trickle,
)

MESSAGES = [{"role": "user", "content": "How much is a loaf of rye?"}]
# Timing assertions allow this much beyond a bound (thread wake-ups, a loaded machine).
SLACK = 0.5


def client(
    base_url: str,
    *,
    retries: int = 3,
    read: float = 2.0,
    total: float = 10.0,
    retry_after_max: float = 5.0,
    **kwargs: Any,
) -> LLMClient:
    return LLMClient(
        base_url,
        read_timeout=read,
        connect_timeout=1.0,
        total_timeout=total,
        policy=RetryPolicy(retries, 0.05, 0.2, retry_after_max),
        **kwargs,
    )


def collect(stream: Iterator[ChatDelta | ChatResult]) -> tuple[list[str], ChatResult]:
    deltas: list[str] = []
    for item in stream:
        if isinstance(item, ChatDelta):
            deltas.append(item.text)
        else:
            return deltas, item
    raise AssertionError("the stream ended without a result")


# --- success and the request sent ------------------------------------------------------------


def test_chat_sends_an_openai_request_and_reads_the_answer(fault_server: FaultServer) -> None:
    plan = fault_server.plan(complete())
    llm = client(plan.base_url, api_key="sk-test-123", model="tiny")
    result = llm.chat(MESSAGES)
    assert result.content == ANSWER
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (40, 12)
    assert result.attempts == 1
    sent = plan.requests[0]
    assert sent["headers"]["Authorization"] == "Bearer sk-test-123"
    assert sent["body"]["messages"] == MESSAGES
    assert sent["body"]["model"] == "tiny"
    assert sent["body"]["temperature"] == 0.0
    assert sent["body"]["stream"] is False
    assert "sk-test-123" not in repr(llm)


def test_stream_yields_deltas_then_the_whole_answer_with_usage(fault_server: FaultServer) -> None:
    plan = fault_server.plan(complete())
    deltas, result = collect(client(plan.base_url).stream(MESSAGES))
    assert len(deltas) > 3
    assert "".join(deltas) == result.content == ANSWER
    assert result.usage.completion_tokens == 12
    assert plan.requests[0]["body"]["stream_options"] == {"include_usage": True}


def test_settings_configure_the_client(fault_server: FaultServer) -> None:
    plan = fault_server.plan(complete())
    settings = Settings(
        llm_base_url=plan.base_url + "/",
        llm_api_key=SecretStr("sk-from-settings"),
        llm_model="m",
        llm_max_tokens=33,
        _env_file=None,  # type: ignore[call-arg]
    )
    llm = LLMClient.from_settings(settings)
    assert llm.http is shared_http_client() is shared_http_client()
    llm.chat(MESSAGES)
    assert plan.requests[0]["body"]["max_tokens"] == 33
    assert plan.requests[0]["headers"]["Authorization"] == "Bearer sk-from-settings"
    with pytest.raises(ConfigurationError, match="RAGOPS_LLM_BASE_URL"):
        LLMClient("localhost:8080/v1")


# --- retries -------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_honoured(fault_server: FaultServer) -> None:
    limited = status(429, "slow down", {"Retry-After": "0.3"})
    plan = fault_server.plan(limited, limited, complete())
    started = time.monotonic()
    result = client(plan.base_url).chat(MESSAGES)
    assert result.content == ANSWER
    assert plan.attempts == 3
    assert result.attempts == 3
    assert time.monotonic() - started >= 0.6


def test_429_with_an_http_date_retry_after(fault_server: FaultServer) -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
    plan = fault_server.plan(status(429, "later", {"Retry-After": past}), complete())
    assert client(plan.base_url).chat(MESSAGES).attempts == 2


def test_a_retry_after_beyond_the_cap_gives_up_at_once(fault_server: FaultServer) -> None:
    plan = fault_server.plan(status(429, "come back tomorrow", {"Retry-After": "86400"}))
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="RAGOPS_LLM_RETRY_AFTER_MAX") as info:
        client(plan.base_url).chat(MESSAGES)
    assert plan.attempts == 1
    assert info.value.attempts == 1
    assert "429" in str(info.value)
    assert "come back tomorrow" in str(info.value)
    assert time.monotonic() - started < 1.0


def test_5xx_is_retried_until_the_retries_run_out(fault_server: FaultServer) -> None:
    plan = fault_server.plan(status(500, "model crashed"))
    with pytest.raises(LLMUnavailableError, match="500 Internal Server Error: model crashed"):
        client(plan.base_url, retries=2).chat(MESSAGES)
    assert plan.attempts == 3


def test_a_503_then_success(fault_server: FaultServer) -> None:
    plan = fault_server.plan(status(503, "loading"), complete())
    deltas, result = collect(client(plan.base_url).stream(MESSAGES))
    assert result.content == ANSWER == "".join(deltas)
    assert plan.attempts == 2


def test_connection_errors_are_retried_within_the_bound() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="ConnectError") as info:
        client(f"http://127.0.0.1:{port}/v1", retries=2).chat(MESSAGES)
    assert info.value.attempts == 3
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_json_is_retried_then_reported(
    fault_server: FaultServer, streaming: bool
) -> None:
    plan = fault_server.plan(malformed_json())
    llm = client(plan.base_url, retries=2)
    with pytest.raises(LLMUnavailableError, match="malformed JSON"):
        collect(llm.stream(MESSAGES)) if streaming else llm.chat(MESSAGES)
    assert plan.attempts == 3


def test_malformed_json_once_then_a_good_answer(fault_server: FaultServer) -> None:
    plan = fault_server.plan(malformed_json(), complete())
    assert client(plan.base_url).chat(MESSAGES).content == ANSWER
    assert plan.attempts == 2


# --- streams that break --------------------------------------------------------------------


def test_a_stream_truncated_after_tokens_is_an_error_not_a_retry(
    fault_server: FaultServer,
) -> None:
    plan = fault_server.plan(stream_tokens(["According ", "to ", "[1]"], end="truncate"))
    stream = client(plan.base_url).stream(MESSAGES)
    received = [next(stream), next(stream), next(stream)]
    assert received == [ChatDelta("According "), ChatDelta("to "), ChatDelta("[1]")]
    with pytest.raises(LLMResponseError, match="truncated"):
        next(stream)
    assert plan.attempts == 1  # tokens already went out: a retry would repeat them


def test_a_malformed_chunk_after_tokens_is_an_error(fault_server: FaultServer) -> None:
    plan = fault_server.plan(stream_tokens(["Hello"], end="malformed"))
    with pytest.raises(LLMResponseError, match="malformed JSON in a stream chunk"):
        collect(client(plan.base_url).stream(MESSAGES))


def test_a_stream_cut_before_any_token_is_retried(fault_server: FaultServer) -> None:
    plan = fault_server.plan(stream_tokens([], end="truncate"), complete())
    deltas, result = collect(client(plan.base_url).stream(MESSAGES))
    assert "".join(deltas) == result.content == ANSWER
    assert plan.attempts == 2


# --- time bounds ---------------------------------------------------------------------------


def test_a_response_slower_than_the_read_timeout_is_retried(fault_server: FaultServer) -> None:
    plan = fault_server.plan(slow(5.0), complete())
    started = time.monotonic()
    result = client(plan.base_url, read=0.3).chat(MESSAGES)
    assert result.content == ANSWER
    assert plan.attempts == 2
    assert time.monotonic() - started < 0.3 + 0.2 + SLACK


@pytest.mark.parametrize("streaming", [False, True])
def test_slow_responses_never_run_past_the_total_bound(
    fault_server: FaultServer, streaming: bool
) -> None:
    plan = fault_server.plan(slow(30.0))
    llm = client(plan.base_url, read=0.4, total=1.5, retries=10)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match=r"ReadTimeout|RAGOPS_LLM_TOTAL_TIMEOUT"):
        collect(llm.stream(MESSAGES)) if streaming else llm.chat(MESSAGES)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + SLACK
    assert plan.attempts >= 2


@pytest.mark.parametrize("streaming", [False, True])
def test_a_trickling_server_is_cut_off_at_the_total_bound(
    fault_server: FaultServer, streaming: bool
) -> None:
    # Each byte arrives well within the read timeout, so only the total bound can end this.
    plan = fault_server.plan(trickle(0.1))
    llm = client(plan.base_url, read=1.0, total=1.2, retries=3)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="RAGOPS_LLM_TOTAL_TIMEOUT"):
        collect(llm.stream(MESSAGES)) if streaming else llm.chat(MESSAGES)
    assert time.monotonic() - started < 1.2 + SLACK
    assert plan.attempts == 1


# --- errors that retrying cannot fix -------------------------------------------------------


def test_401_raises_a_clear_authentication_error_without_retrying(
    fault_server: FaultServer,
) -> None:
    plan = fault_server.plan(status(401, "Incorrect API key provided: sk-wr***ng"))
    with pytest.raises(LLMAuthenticationError) as info:
        client(plan.base_url, api_key="sk-wrong").chat(MESSAGES)
    assert info.value.status == 401
    assert info.value.server_message == "Incorrect API key provided: sk-wr***ng"
    message = str(info.value)
    assert "401 Unauthorized" in message
    assert "RAGOPS_LLM_API_KEY" in message
    assert plan.attempts == 1


@pytest.mark.parametrize(
    ("code", "error", "hint"),
    [
        (403, LLMAuthenticationError, "RAGOPS_LLM_API_KEY"),
        (404, LLMNotFoundError, "RAGOPS_LLM_BASE_URL"),
        (400, LLMRequestError, "400 Bad Request: context too long"),
    ],
)
def test_other_client_errors_are_typed_and_not_retried(
    fault_server: FaultServer, code: int, error: type[LLMRequestError], hint: str
) -> None:
    plan = fault_server.plan(status(code, "context too long"))
    with pytest.raises(error, match=hint) as info:
        collect(client(plan.base_url).stream(MESSAGES))
    assert info.value.status == code
    assert plan.attempts == 1


def test_a_wrong_path_names_the_base_url(fault_server: FaultServer) -> None:
    with pytest.raises(LLMNotFoundError, match="it usually ends in /v1"):
        client(fault_server.address).chat(MESSAGES)


# --- the real server -----------------------------------------------------------------------


def test_real_server_completion_counts_usage(local_llm: LocalLLM) -> None:
    llm = LLMClient(local_llm.base_url, max_tokens=16, http=httpx.Client())
    result = llm.chat([{"role": "user", "content": "Say hello."}])
    assert result.content.strip()
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0
    assert result.finish_reason in ("stop", "length")


def test_real_server_stream_matches_its_final_result(local_llm: LocalLLM) -> None:
    llm = LLMClient(local_llm.base_url, max_tokens=16)
    deltas, result = collect(llm.stream([{"role": "user", "content": "Name a colour."}]))
    assert deltas
    assert "".join(deltas) == result.content
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0


def test_a_service_without_an_llm_never_imports_httpx() -> None:
    code = "import sys, ragops.generation.answerer; print('httpx' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
