"""GET /metrics on the shared server, scraped and parsed with prometheus_client's parser after a
job and some chat traffic: the values move by what the test did, routes are templates, and no
label carries a key, an organization or an id."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import Server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "opentune.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exposition(server: Server) -> str:
    response = httpx.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def scrape(server: Server) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition(server)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


def test_metrics_count_jobs_requests_and_adapters(server: Server, client: OpenAI) -> None:
    before = scrape(server)
    file = client.files.create(
        file=("m.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
    )
    done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    for _ in range(3):
        client.chat.completions.create(
            model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    client.fine_tuning.jobs.retrieve(job.id)
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"route": "/v1/chat/completions", "method": "POST", "status": "200"}
    assert grew("opentune_http_requests_total", **chat) >= 3
    assert grew("opentune_http_request_duration_seconds_count", route="/v1/chat/completions") >= 3
    job_route = {"route": "/v1/fine_tuning/jobs/{job_id}", "method": "GET", "status": "200"}
    assert grew("opentune_http_requests_total", **job_route) >= 2  # polled by wait_for_job, then once
    assert value(after, "opentune_jobs", status="succeeded") >= 1
    assert grew("opentune_job_duration_seconds_count", status="succeeded") == 1
    assert grew("opentune_job_queue_wait_seconds_count") == 1
    assert grew("opentune_trained_tokens_total") == done.trained_tokens
    assert grew("opentune_adapter_loads_total", base=BASE_MODEL, outcome="ok") >= 1
    assert grew("opentune_adapter_load_seconds_count", base=BASE_MODEL) >= 1
    assert value(after, "opentune_adapters_loaded", base=BASE_MODEL) >= 1
    assert value(after, "opentune_engine_up", base=BASE_MODEL) == 1
    labels = json.dumps(sorted({v for (_, found) in after for _, v in found}))
    for secret in (API_KEY, job.id, file.id, done.organization_id):
        assert secret not in labels


def test_unknown_paths_are_one_label_not_many(server: Server) -> None:
    for path in ("/nope/1", "/nope/2", "/v1/fine_tuning/jobs/ftjob-doesnotexist"):
        httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {API_KEY}"})
    routes = {
        dict(found).get("route") for (name, found) in scrape(server) if name == "opentune_http_requests_total"
    }
    assert "unmatched" in routes and not any(r and "nope" in r for r in routes)
    assert not any(r and "doesnotexist" in r for r in routes)


def test_the_grafana_dashboard_queries_only_metrics_that_exist(server: Server) -> None:
    # Every name a query can use: samples (`_total`, `_bucket`, ...) and families, even a labelled
    # one with no sample yet (no job running now).
    exposed = {name for name, _ in scrape(server)}
    for family in text_string_to_metric_families(exposition(server)):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        exposed |= {family.name + suffix for suffix in suffixes}
    queries = [
        t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel.get("targets", [])
    ]
    assert queries
    for query in queries:
        used = {word for word in _identifiers(query) if word.startswith("opentune_")}
        assert used and used <= exposed, f"{query}: {used - exposed} not exposed"


def _identifiers(query: str) -> list[str]:
    import re

    return re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", query)
