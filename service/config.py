"""The one settings object. Read once at start-up (environment, then CLI flags) and passed down."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENTUNE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to SQLite in the data folder."
    )
    storage_url: str | None = Field(
        default=None,
        description="Where files, checkpoints and adapters are stored: s3://bucket/prefix (credentials "
        "and endpoint from the AWS_* variables); defaults to the data folder.",
        pattern=r"^s3://[^/]+(/.*)?$",
    )

    # The base model: a hub id or a local folder. Its served name defaults to the value as given (as vLLM).
    model: str = DEFAULT_MODEL
    served_model_name: str | None = None
    # Several base models, each with its own engines: a JSON/YAML file (service/engine/models_file.py).
    # When set, it replaces model / served_model_name / engine_url.
    models_file: Path | None = None

    # Access control. When set, every /v1 request needs `Authorization: Bearer <key>`.
    api_key: SecretStr | None = None
    organization: str = Field(default="default", description="Organization that owns everything for now.")
    # Access hardening (issue 9; service/auth.py, service/access.py). insecure_no_auth: serve open
    # on purpose (callers without a valid key act as the default organization); without it a server
    # with no key at all starts only on a loopback address. Body caps are enforced while streaming
    # (413): file uploads may carry a 512 MiB file plus multipart framing, other bodies are JSON.
    # engine_api_key: sent to engine_url engines (managed engines get a random key per start).
    insecure_no_auth: bool = False
    max_upload_body_bytes: int = 513 * 1024 * 1024
    max_request_body_bytes: int = 16 * 1024 * 1024
    engine_api_key: SecretStr | None = None
    # Uploads API (service/uploads.py), OpenAI's limits by default: a file of up to 8 GB sent in
    # parts of up to 64 MB (a part's request body may carry 1 MiB of multipart framing more), an
    # upload not completed within an hour expiring with its parts.
    upload_max_bytes_total: int = Field(default=8 * 1024**3, ge=0)
    upload_part_max_bytes: int = Field(default=64 * 1024**2, ge=1)
    upload_expiry_s: int = Field(default=3600, ge=1)
    # Adapter imports (POST /v1/models/import, service/weights/): the zip's size, and the most its
    # kept files may decompress to (the request body may carry 1 MiB of multipart framing more).
    import_max_bytes: int = Field(default=2 * 1024**3, ge=1)

    # Serving engine: a managed vLLM subprocess unless engine_url names one already running.
    engine_url: str | None = None
    engine_port: int | None = Field(
        default=None, description="Port of the managed engine; free one if unset."
    )
    engine_startup_timeout_s: float = 900.0
    # Managed engines for the base model (a models file sets this per model). Requests for an
    # adapter go to the replica that rendezvous hashing prefers for its name, so each adapter is
    # loaded on one replica, unless that replica is saturated: running at least
    # max(route_min_in_flight, route_load_factor x the mean per replica) requests, when the request
    # spills to the next replica in the adapter's order (consistent hashing with bounded loads).
    # Base-model requests go to the least busy replica. "round_robin" ignores adapters (a baseline
    # for bench/serving.py --replicas).
    engine_replicas: int = Field(default=1, ge=1, le=64)
    engine_routing: Literal["affinity", "round_robin"] = "affinity"
    engine_route_load_factor: float = Field(default=1.25, ge=1.0)
    engine_route_min_in_flight: int = Field(default=8, ge=1)
    # Where managed replicas run: processes of this gateway ("local"), or Ray actors ("ray",
    # service/engine/ray_engine.py): one detached actor per replica, named after its base model, so
    # every gateway of a cluster shares them and a restarted gateway finds its engines running. Ray
    # places each where `ray_engine_resources` are free and starts it again when it dies.
    engine_placement: Literal["local", "ray"] = "local"
    ray_client_address: str = "ray://127.0.0.1:10001"  # Ray Client (the head's client server)
    ray_engine_resources: dict[str, float] = Field(default_factory=lambda: {"GPU": 1.0})
    # LoRA capacity. max_loras: adapters in one batch (GPU slots); max_adapters: adapters loaded in
    # the engine at once (vLLM's max_cpu_loras), least recently used evicted beyond it.
    engine_max_lora_rank: int = 64
    engine_max_loras: int = 4
    engine_max_adapters: int = 16
    # vLLM's tool-call parser for the model's family (hermes, llama3_json, mistral, ...): enables
    # `tools` with tool_choice "auto"/"required"/named. "auto": picked from the model's chat template
    # (service/engine/tool_calls.py); "none": tools only with tool_choice "none".
    engine_tool_call_parser: str = "auto"
    # JSON output (response_format json_schema / json_object, named tool calls) without free
    # whitespace: a small or weak model can otherwise pad a reply with spaces until max_tokens.
    engine_compact_json: bool = True
    # How far vLLM constrains tool calls: "parameter" pins every call's arguments to the function's
    # schema (as if each tool were `strict: true`), so a named tool_choice always returns arguments
    # that parse; "auto" only for tools marked strict (vLLM's default); "function": markup and name.
    engine_tool_strict_level: Literal["auto", "function", "parameter"] = "parameter"
    engine_health_interval_s: float = 2.0
    engine_max_model_len: int | None = None
    engine_gpu_memory_utilization: float | None = None
    engine_cpu_kvcache_gib: int = 2
    # vLLM's CPU build: the nice value of the engine core process, which spins while it waits for
    # its worker and otherwise starves the gateway on a machine whose cores are all busy
    # (service/engine/cpu_priority.py); 0 leaves it as it is.
    engine_cpu_scheduler_nice: int = Field(default=10, ge=0, le=19)
    engine_extra_args: list[str] = Field(default_factory=list)

    # Training.
    max_concurrent_jobs: int = 1
    # Memory a trainer needs (GiB); estimated from the base model's size when unset. A job that
    # would not fit in the free memory waits in `queued` (see service/jobs/capacity.py).
    trainer_memory_gib: float | None = None
    scheduler_poll_s: float = 1.0
    # With no job queued, checking or running here, the scheduler looks every this many seconds
    # (jobs created or resumed through this gateway wake it at once; other gateways' are seen then).
    scheduler_idle_poll_s: float = Field(default=5.0, gt=0)
    # A trainer that dies without reporting (killed, crashed, its node lost) is started again from
    # its latest checkpoint this many times before the job fails (as a Kubernetes Job's backoffLimit).
    trainer_max_retries: int = Field(default=2, ge=0)
    # Where trainers run: child processes of this gateway ("local"), or jobs on a Ray cluster ("ray",
    # service/jobs/ray_executor.py: its Job API address, the resources one trainer asks for, and the
    # Python with opentune installed on the Ray nodes; default: this gateway's).
    executor: Literal["local", "ray"] = "local"
    ray_address: str = "http://127.0.0.1:8265"
    ray_trainer_resources: dict[str, float] = Field(default_factory=lambda: {"CPU": 1.0})
    ray_python: str | None = None
    # Several gateways on one database (cluster mode): each running job is owned by one gateway under
    # a lease it renews every lease/3 seconds; another gateway adopts the job once the lease has
    # expired. gateway_id names this gateway (default: host name and port, so that a gateway started
    # again in the same place adopts its own jobs at once instead of after the lease).
    gateway_id: str | None = None
    job_lease_s: float = Field(default=30.0, ge=1.0)
    # How long a trainer asked to stop (pause, cancel, shutdown) gets to save a checkpoint and exit.
    trainer_stop_grace_s: float = Field(default=30.0, gt=0)
    # Merged exports (POST /v1/models/{model}/exports, service/exports/): export processes at once
    # on this gateway; starts of one export (its process died, or its gateway stopped, mid-way)
    # before it fails; the RAM one needs in GiB (estimated from its base's weights when unset: it
    # merges on the CPU); the size of its safetensors shards; exports queued or running at once
    # per organization.
    export_max_concurrent: int = Field(default=1, ge=1)
    export_max_attempts: int = Field(default=3, ge=1)
    export_memory_gib: float | None = None
    export_max_shard_size: str = Field(default="5GB", pattern=r"^\d+(KB|MB|GB)$")
    max_unfinished_exports_per_org: int = Field(default=4, ge=1)
    # Untrusted training files (issue 9): validated in a child process (trainer/inspect_files.py)
    # with this address-space limit, killed after this many seconds; either failure fails that job.
    file_check_memory_gib: float = 4.0
    file_check_timeout_s: float = 300.0
    # Python graders (trainer/graders/sandbox.py): each runs in a bubblewrap sandbox, stopped after
    # this many seconds or at this address-space size; at most this many at once per gateway.
    python_grader_time_limit_s: float = Field(default=10.0, gt=0, le=600)
    python_grader_memory_mib: int = Field(default=512, ge=64)
    python_grader_max_concurrent: int = Field(default=2, ge=1)
    # Model graders (score_model, label_model) of reinforcement jobs: the trainer calls this
    # gateway's POST /v1/chat/completions (service/grader_tokens.py), at most this many calls at once
    # per job (never more than chat_max_concurrent_per_org), at trainer_gateway_url: this gateway's
    # address as trainers reach it (default: http://127.0.0.1:{port} for a loopback or any-address
    # host, else http://{host}:{port}); in cluster mode, one the Ray nodes reach (a load balancer).
    model_grader_max_concurrent: int = Field(default=8, ge=1, le=64)
    trainer_gateway_url: str | None = Field(default=None, pattern=r"^https?://[^/]+(/.*)?$")
    # The `cosine` metric of text_similarity graders: an OpenAI-compatible embeddings API (its base
    # URL, e.g. http://embedder:8000/v1, serving embeddings_model), called by the gateway and by
    # reinforcement jobs' trainers (so it must be reachable from where trainers run). Unset: cosine
    # is refused with a 400.
    embeddings_url: str | None = Field(default=None, pattern=r"^https?://[^/]+(/.*)?$")
    embeddings_model: str | None = None
    embeddings_api_key: SecretStr | None = None
    # Evaluation report (service/jobs/evaluator.py): a job with a validation file ends with the base
    # and the fine-tuned model answering its first eval_max_prompts prompts (greedy, at most
    # eval_max_tokens tokens each), given up (a warning, the job still succeeds) after eval_timeout_s:
    # the most it adds to a job. eval_max_prompts 0: no evaluation.
    eval_max_prompts: int = Field(default=50, ge=0, le=1000)
    eval_max_tokens: int = Field(default=256, ge=1, le=8192)
    eval_timeout_s: float = Field(default=120.0, gt=0, le=3600)

    # GET /metrics (service/metrics.py) answers only callers with a valid API key.
    metrics_require_key: bool = False

    # Webhooks (service/webhooks/): endpoints must be https and public addresses, unless this is set
    # (local use: http, and private or loopback addresses). A failed delivery is tried again after
    # first_retry_s, then x4 each time (at most 4 h apart), max_attempts times in all.
    webhooks_allow_http: bool = False
    webhooks_max_attempts: int = Field(default=10, ge=1)
    webhooks_first_retry_s: float = Field(default=5.0, gt=0)
    webhooks_timeout_s: float = Field(default=10.0, gt=0)
    webhooks_poll_s: float = Field(default=2.0, gt=0)
    webhooks_max_endpoints_per_org: int = Field(default=20, ge=1)

    # Per-organization limits (issue 9: one organization must not exhaust the server for the others).
    # Jobs in validating_files, queued, running or paused at once.
    max_active_jobs_per_org: int = 20
    max_files_per_org: int = 1000
    max_stored_bytes_per_org: int = 100 * 1024**3
    # Upper bound on a job's trained tokens, checked at creation as training-file bytes x n_epochs
    # (a byte-level tokenizer makes at most one token per byte; "auto" epochs count as 3).
    max_trained_tokens_per_job: int = 1_000_000_000
    max_integrations_bytes: int = 16 * 1024  # a job's `integrations`, as JSON
    # Chat and text completions: in-flight requests per organization, and caps on one request.
    chat_max_concurrent_per_org: int = 8
    chat_max_n: int = 8  # choices per request: `n` and `best_of`
    chat_max_tokens: int = 8192  # `max_tokens` / `max_completion_tokens`

    @property
    def model_name(self) -> str:
        """The name clients use for the base model."""
        return self.served_model_name or self.model

    @property
    def organization_id(self) -> str:
        return f"org-{self.organization}"

    @property
    def resolved_gateway_id(self) -> str:
        return self.gateway_id or f"{socket.gethostname()}:{self.port}"

    @property
    def resolved_trainer_gateway_url(self) -> str:
        if self.trainer_gateway_url:
            return self.trainer_gateway_url.rstrip("/")
        host = self.host
        if host in ("", "0.0.0.0"):  # any address: loopback is one of them
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'opentune.db'}"

    @property
    def storage_root(self) -> str:
        """The storage location (trainer/storage.py) that files and job folders live under."""
        return (self.storage_url or "").rstrip("/") or str(self.data_dir.resolve())
