"""One typed settings object for the whole service.

Sources, strongest first: keyword arguments, ``LEGALSTREAM_*`` environment
variables (nested sections with ``__``, e.g. ``LEGALSTREAM_BUS__BACKEND=redis``),
the TOML file named by ``--config`` / ``LEGALSTREAM_CONFIG``, then
``config/default.toml``, then the defaults below. docs/configuration.md lists
every field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.toml"


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    #: uvicorn worker processes for `legalstream serve`; more than one needs
    #: `rag.store = "qdrant"` (the embedded Qdrant Edge store belongs to one
    #: process) and the Redis bus (docs/deploy.md).
    workers: int = 1
    #: uvicorn WebSocket implementation; bench/fanout.py measured the choices.
    ws_impl: Literal["websockets-sansio", "websockets", "wsproto", "auto"] = "websockets-sansio"
    #: Largest inbound frame; larger ones close the connection with 1009.
    max_frame_bytes: int = 64 * 1024
    max_query_chars: int = 4000
    #: Concurrent runs one connection may have.
    max_runs_per_connection: int = 4
    #: Frames buffered per connection before it counts as a slow consumer.
    send_queue_size: int = 1024
    #: Seconds without any inbound message before the server closes (0: never).
    idle_timeout: float = 300.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    per_message_deflate: bool = False
    max_connections: int = 10_000
    #: Seconds a client has to send a request head (from connecting, or from a
    #: keep-alive request's first byte); past it the connection gets 408.
    request_head_timeout: float = 10.0
    #: Largest request head (request line and headers); larger gets 431.
    max_request_head_bytes: int = 64 * 1024
    #: Connections whose request head is not complete yet, per client address;
    #: past it, that address's new connections are reset at once.
    max_unfinished_requests_per_ip: int = 256
    #: The same, all addresses together.
    max_unfinished_requests: int = 4096
    #: The listen backlog; also how many connections one turn of the event loop
    #: accepts at most (asyncio), so it bounds how long a flood of connection
    #: attempts can hold everything else up.
    backlog: int = 512
    #: Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are
    #: believed (e.g. ["127.0.0.1"] behind a local nginx; "*" believes anyone).
    #: Empty: forwarded headers are ignored and the peer's address is the client's.
    forwarded_allow_ips: list[str] = Field(default_factory=list)
    #: Seconds given to runs to finish on shutdown before they are cancelled.
    shutdown_grace: float = 5.0
    #: Processes that `legalstream serve` owns: allocations between young-generation
    #: garbage collections (Python's default, 700, made the collector a third of
    #: the server's CPU under streaming load). 0 keeps Python's setting.
    gc_threshold: int = 10_000
    #: After startup, exempt everything then alive (CrewAI, the index, the app)
    #: from garbage collection, so collections scan only what requests make.
    gc_freeze: bool = True


class BusSettings(BaseModel):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Key prefix in Redis, so several deployments can share one server.
    redis_prefix: str = "legalstream"
    #: Events kept per run for replay/resume (memory bus and Redis MAXLEN).
    history_per_run: int = 10_000
    #: Finished runs whose history the memory bus keeps.
    history_runs: int = 1_000
    #: Seconds a finished run's history is kept in Redis.
    retention_seconds: int = 24 * 3600
    #: Buffer of one subscription before it is dropped as too slow.
    subscriber_buffer: int = 4096
    #: Heartbeat period of a worker's connection list in Redis.
    heartbeat_seconds: float = 2.0


class RunSettings(BaseModel):
    #: Runs in flight at once in this process (worker threads); a run keeps its
    #: place until its final event is published.
    max_concurrent: int = 16
    #: Runs waiting for a worker thread before new queries get ``server_busy``.
    max_queued: int = 256
    #: Seconds a run keeps going after its client disconnects, for resume.
    resume_grace_seconds: float = 0.0
    #: Hard limit on one run's duration: past it the run ends with code ``timeout``.
    timeout_seconds: float = 300.0
    #: Seconds a cancelled or timed-out run's thread has to end the run; past
    #: them it is stuck in a library call, and the run manager ends the run
    #: itself (final frame, place freed) and writes the thread off.
    cancel_grace_seconds: float = 0.5
    #: Stuck threads written off at once (a replacement starts for each);
    #: unset: ``max_concurrent``. Past it a stuck thread keeps its place.
    max_stuck_threads: int | None = None
    #: Secret that signs run ids, so a resume can tell a lost history from a
    #: wrong id. Every worker of a deployment needs the same one; unset: derived
    #: from auth.secret, or kept in <rag.data_dir>/run-id.key.
    id_secret: str | None = None


class RagSettings(BaseModel):
    data_dir: Path = REPO_ROOT / ".data"
    store: Literal["edge", "qdrant"] = "edge"
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    #: qdrant-client local mode path (tests, small deployments); ":memory:" works.
    qdrant_path: str | None = None
    collection: str = "legal_chunks"
    embed_model: str = "minilm-onnx"
    #: Texts per onnxruntime call when ingesting: small batches are faster for clause-sized
    #: units on small CPUs (measured in docs/retrieval.md, Speed).
    embed_batch_size: int = 4
    top_k: int = 5
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    #: Longest retrieval unit in characters: a lead-in with its items is one unit only when
    #: it fits; a longer clause is cut at sentence ends.
    chunk_size: int = 1200
    #: Not used since units are clauses (they carry context spans instead of overlap).
    chunk_overlap: int = 150
    sample_corpus: Path = REPO_ROOT / "data" / "sample"
    ingest_sample_on_start: bool = True
    #: Reciprocal-rank-fusion constant (score = Σ w/(k + rank)) when ``fusion = "rrf"``.
    rrf_k: int = 10
    #: RRF weights of the (dense, bm25) arms; None weighs them equally.
    rrf_weights: tuple[float, float] | None = None
    #: How hybrid search fuses its arms: "convex" (weighted sum of min-max normalised
    #: scores) or "rrf" (reciprocal rank). docs/retrieval.md: chosen with `make eval`.
    fusion: Literal["convex", "rrf"] = "convex"
    #: Weights of the (dense, bm25) arms in convex fusion.
    fusion_weights: tuple[float, float] = (1.0, 1.0)
    #: Hybrid hits scoring below this share of the best hit are not returned (None: all k).
    min_score_ratio: float | None = 0.4
    #: The same for a question routed to the one document it names (measured on both
    #: eval sets: docs/retrieval.md).
    named_min_score_ratio: float | None = 0.5
    #: A question that names one document of the case is answered from that document.
    route_documents: bool = True
    #: Candidates each hybrid arm fetches before fusion.
    prefetch: int = 40
    #: BM25 IDF computed over the queried case only (Edge and Qdrant server).
    bm25_idf_per_case: bool = True
    #: onnxruntime intra-op threads for embeddings (0: onnxruntime's default).
    embed_threads: int = 0


class LLMOptions(BaseModel):
    #: An OpenAI-compatible server (llama.cpp, Ollama, vLLM): http://host:port/v1.
    #: Works without ``api_key`` (a placeholder key is sent).
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.0
    #: Whole-call deadline of one LLM request, from sending it to the end of the
    #: reply (a server that trickles tokens cannot outlast it); also the per-read timeout.
    timeout: float = 60.0
    #: Most tokens one reply may have; a reply cut there fails the run's check
    #: (code ``truncated_answer``). Unset: the provider's own limit.
    max_tokens: int | None = 1024
    stream: bool = True
    max_retries: int = 0


class AuthSettings(BaseModel):
    """Who may connect (docs/security.md)."""

    #: "none": everyone is an anonymous admin; only allowed when bound to loopback.
    mode: Literal["none", "jwt"] = "none"
    #: Accepted JWT algorithms: HS256 (``secret``) and/or RS256/ES256 (``public_key_file``
    #: or ``jwks_file``). A token whose header names another algorithm is refused.
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    secret: str | None = None
    #: PEM public key for RS*/ES*/PS*/EdDSA tokens.
    public_key_file: Path | None = None
    #: JWKS document (``{"keys": [...]}``); the token's ``kid`` picks the key.
    jwks_file: Path | None = None
    audience: str | None = None
    issuer: str | None = None
    #: Clock skew tolerated on ``exp``/``nbf``/``iat``.
    leeway_seconds: int = 10
    #: Scopes of a token that carries no ``scope``/``scopes`` claim.
    default_scopes: list[str] = Field(default_factory=lambda: ["query"])
    #: Exact ``Origin`` values allowed on WebSocket handshakes; empty: any origin.
    allowed_origins: list[str] = Field(default_factory=list)
    #: Lifetime of a ``POST /ws/ticket`` ticket (single use).
    ticket_ttl_seconds: int = 30
    #: Accept ``?token=`` on the handshake (least preferred: URLs end up in logs).
    allow_query_token: bool = True


class LimitSettings(BaseModel):
    """Rate limits per user and per client IP (``limits`` strings, moving windows)."""

    #: Enforce the limits below; unset: on with auth mode "jwt", off with "none".
    enabled: bool | None = None

    #: WebSocket handshakes per client IP (refused with HTTP 429).
    connects_per_minute: str = "120/minute"
    #: WebSocket handshakes per authenticated user (refused with HTTP 429).
    user_connects_per_minute: str = "120/minute"
    #: Queries (WebSocket and ``POST /query``) per user and per client IP.
    queries_per_minute: str = "60/minute"
    #: Runs one user may have going at once in this process.
    max_concurrent_runs_per_user: int = 8
    #: Open WebSocket connections per user in this process.
    max_connections_per_user: int = 100
    #: Ticket requests (``POST /ws/ticket``) per user.
    tickets_per_minute: str = "60/minute"
    #: Replays and resumes (WebSocket ``replay``/``resume``, ``GET /runs/{id}/events``) per user.
    replays_per_minute: str = "60/minute"
    #: Bytes of stored history those may send per user (32 MiB a minute).
    replay_bytes_per_minute: str = "33554432/minute"
    #: Storage of the counters: "auto" is Redis when the bus is Redis, memory otherwise.
    storage: Literal["auto", "memory", "redis"] = "auto"


class AuditSettings(BaseModel):
    """The audit log: one JSON line per query (docs/security.md, "Audit log")."""

    enabled: bool = True
    #: File to append to; unset: stderr.
    path: Path | None = None


class AguiSettings(BaseModel):
    """The AG-UI endpoints (docs/agui.md)."""

    enabled: bool = True
    #: ``POST <path>`` starts a run; ``GET <path>/runs/{run_id}`` resumes one.
    path: str = "/agui"
    #: Seconds without an event after which an SSE stream gets a keepalive comment.
    keepalive_seconds: float = 15.0


class CaseFileSettings(BaseModel):
    """Case files over HTTP: uploads and their ingest (docs/casefiles.md)."""

    #: Largest uploaded file; a larger one gets 413 ``file_too_large``.
    max_file_bytes: int = 20 * 1024 * 1024
    #: Largest upload request (all its files); a larger one gets 413 ``upload_too_large``.
    max_upload_bytes: int = 50 * 1024 * 1024
    #: Most files in one upload.
    max_files: int = 20
    #: File suffixes an upload may have (what the loaders read); others get 415.
    allowed_suffixes: list[str] = Field(
        default_factory=lambda: [".md", ".markdown", ".txt", ".pdf", ".docx", ".html", ".htm"]
    )
    #: Upload jobs waiting for the ingest worker before new uploads get 503 ``ingest_busy``.
    queue_size: int = 8
    #: Seconds one upload job may take (parse, embed, index); past it the job fails.
    job_timeout_seconds: float = 600.0
    #: Seconds without an event after which the progress stream gets a keepalive comment.
    keepalive_seconds: float = 15.0
    #: Events buffered per progress subscriber before it is dropped as too slow.
    subscriber_buffer: int = 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEGALSTREAM_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    server: ServerSettings = ServerSettings()
    bus: BusSettings = BusSettings()
    runs: RunSettings = RunSettings()
    rag: RagSettings = RagSettings()
    #: "offline" (extractive backend) or any CrewAI model id, e.g. "openai/gpt-4o-mini".
    llm: str = "offline"
    llm_options: LLMOptions = LLMOptions()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    audit: AuditSettings = AuditSettings()
    agui: AguiSettings = AguiSettings()
    casefiles: CaseFileSettings = CaseFileSettings()
    log_level: str = "info"
    #: CrewAI telemetry/tracing; off unless an operator turns it on.
    crewai_telemetry: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [p for p in (DEFAULT_CONFIG, _extra_config()) if p is not None and p.exists()]
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, files))

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from the files and environment, with ``config`` as extra TOML."""
        if config is not None:
            os.environ["LEGALSTREAM_CONFIG"] = str(config)
        return cls(**overrides)


def _extra_config() -> Path | None:
    value = os.environ.get("LEGALSTREAM_CONFIG")
    return Path(value) if value else None
