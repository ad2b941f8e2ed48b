"""Prometheus metrics of one gateway process, served at `GET /metrics` (service/api/health.py).

Counters and histograms are process-wide (`REGISTRY`) and counted where things happen: HTTP
requests (`HttpMetricsMiddleware`, by route template, never a raw path or id), job transitions
(JobStore.transition calls `observe_transition`), adapter loads and evictions (AdapterRegistry),
engine restarts (the engine keepers). Gauges of state (jobs by status, adapters resident, engine
replicas up, running jobs' throughput) are read from the database and the fleet at scrape time
(`render`), so they are true whichever gateway moved the job.

Several gateways: each process exposes its own counters; scrape every gateway (a Prometheus target
per replica, as for vLLM) and `sum` the counters across them. The database-derived gauges
(`opentune_jobs`, `opentune_training_tokens_per_second`, `opentune_webhook_deliveries_pending`)
are the same on every gateway: aggregate them with `max`. No label carries an API key, an
organization or a file name.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.protocol.webhooks import WEBHOOK_EVENT_TYPES

if TYPE_CHECKING:
    from service.engine.fleet import EngineFleet
    from service.jobs.store import JobStore
    from service.webhooks.outbox import Outbox

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "opentune_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "opentune_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte (streams included), by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
JOB_QUEUE_WAIT = Histogram(
    "opentune_job_queue_wait_seconds",
    "Time from a job's creation to its trainer's first start.",
    buckets=(1, 5, 15, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "opentune_job_duration_seconds",
    "Time from a job's creation to its end, by final status.",
    ["status"],
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 48 * 3600),
    registry=REGISTRY,
)
TRAINED_TOKENS = Counter(
    "opentune_trained_tokens", "Tokens trained by succeeded jobs (their trained_tokens).", registry=REGISTRY
)
ADAPTER_LOADS = Counter(
    "opentune_adapter_loads",
    "Adapters loaded into an engine, by base model and outcome (ok, error).",
    ["base", "outcome"],
    registry=REGISTRY,
)
ADAPTER_EVICTIONS = Counter(
    "opentune_adapter_evictions",
    "Adapters unloaded to stay under the per-engine cap (least recently used).",
    ["base"],
    registry=REGISTRY,
)
ADAPTER_LOAD_SECONDS = Histogram(
    "opentune_adapter_load_seconds",
    "Time to make an adapter servable: copy from storage if needed, then vLLM's load_lora_adapter.",
    ["base"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ENGINE_RESTARTS = Counter(
    "opentune_engine_restarts",
    "Managed engine replicas started again after they died or stopped answering.",
    ["base"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "opentune_webhook_deliveries",
    "Webhook delivery attempts, by event type and outcome (delivered, retrying, failed: given up).",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
for _event_type in WEBHOOK_EVENT_TYPES:  # series at 0 from the start, so rates and alerts work
    for _outcome in ("delivered", "retrying", "failed"):
        WEBHOOK_DELIVERIES.labels(_event_type, _outcome)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "opentune_webhook_delivery_seconds",
    "Time of one webhook delivery attempt, until the endpoint's answer (or the failure).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)


def observe_transition(
    target: str, created_at: int, terminal: bool, first_start: bool, trained_tokens: int | None
) -> None:
    """A job moved to `target` (JobStore.transition); `trained_tokens` when it succeeded."""
    age = max(0.0, time.time() - created_at)
    if first_start:
        JOB_QUEUE_WAIT.observe(age)
    if terminal:
        JOB_DURATION.labels(target).observe(age)
    if trained_tokens:
        TRAINED_TOKENS.inc(trained_tokens)


def render(jobs: JobStore, fleet: EngineFleet, outbox: Outbox) -> bytes:
    """The exposition text: the counters above plus the state gauges, read now (blocking: the
    database is queried)."""
    state = CollectorRegistry(auto_describe=True)
    by_status = Gauge("opentune_jobs", "Jobs by status (from the database).", ["status"], registry=state)
    for status, count in jobs.count_by_status().items():
        by_status.labels(status).set(count)
    throughput = Gauge(
        "opentune_training_tokens_per_second",
        "Running jobs' training throughput, from their latest metrics event (from the database).",
        ["job"],
        registry=state,
    )
    for job_id, rate in jobs.running_throughput().items():
        throughput.labels(job_id).set(rate)
    resident = Gauge("opentune_adapters_loaded", "Adapters resident in engines.", ["base"], registry=state)
    up = Gauge(
        "opentune_engine_up", "Engine replicas in rotation (0: the model is down).", ["base"], registry=state
    )
    for base in fleet:
        for counter in (ENGINE_RESTARTS, ADAPTER_EVICTIONS):
            counter.labels(base.name)  # a series at 0 from the start, so rates and alerts work
        resident.labels(base.name).set(sum(len(r.adapters.resident) for r in base.replicas))
        up.labels(base.name).set(sum(1 for r in base.replicas if r.available))
    pending = Gauge(
        "opentune_webhook_deliveries_pending",
        "Webhook deliveries waiting to be sent or retried (from the database).",
        registry=state,
    )
    pending.set(outbox.pending())
    return generate_latest(REGISTRY) + generate_latest(state)


class HttpMetricsMiddleware:
    """Counts every HTTP request by the route that served it (its template, e.g.
    `/v1/fine_tuning/jobs/{job_id}`; "unmatched" when none did, or a request was refused before
    routing: no key, body too large)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any response: what the server will answer

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = _route_template(scope)
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_DURATION.labels(route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
