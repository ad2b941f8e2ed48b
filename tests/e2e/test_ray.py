"""Trainers on a real Ray cluster (OPENTUNE_EXECUTOR=ray): a head and two trainer nodes on this
machine, a gateway using the session server's engine by URL, the stock SDK. A trainer whose node is
lost resumes from its checkpoint on the other node; a gateway killed and started again re-attaches
to the trainer still running on Ray instead of starting a new one."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.engine_key import engine_api_key
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants
from tests.e2e.server import Server, running_server
from tests.ray_cluster import RayCluster, ray_cluster
from tests.strict_format import jsonl, training_examples

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


@pytest.fixture(scope="module")
def ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    with ray_cluster(tmp_path_factory.mktemp("ray-logs"), trainer_nodes=2) as cluster:
        yield cluster


def _gateway_env(server: Server, ray: RayCluster) -> dict[str, str]:
    return {
        "OPENTUNE_EXECUTOR": "ray",
        "OPENTUNE_RAY_ADDRESS": ray.dashboard_url,
        "OPENTUNE_RAY_TRAINER_RESOURCES": json.dumps({"CPU": 1, "trainer": 1}),
        "OPENTUNE_ENGINE_API_KEY": engine_api_key(server.engine_url),
    }


def _node_running(ray: RayCluster, job_id: str, timeout_s: float = 300) -> int:
    """The index of the Ray node whose processes include the job's trainer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for index, node in enumerate(ray.nodes):
            if node.poll() is None and any(
                f"/{job_id}/spec.json" in command for command in descendants(node.pid).values()
            ):
                return index
        time.sleep(0.2)
    raise AssertionError(f"no Ray node runs a trainer for {job_id}")


def _create(client: OpenAI, examples: int, epochs: int) -> str:
    data = jsonl(training_examples(examples))
    file = client.files.create(file=("ray.jsonl", io.BytesIO(data)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file.id,
        hyperparameters={"n_epochs": epochs, "batch_size": 1, "learning_rate_multiplier": 10},
    )
    return job.id


def _has_checkpoint(client: OpenAI, job_id: str) -> bool:
    return bool(client.fine_tuning.jobs.checkpoints.list(job_id).data)


def _messages(client: OpenAI, job_id: str) -> list[str]:
    return [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=1000).data]


def test_a_trainer_whose_node_is_lost_resumes_on_another_node(
    server: Server, ray: RayCluster, tiny_model: Path, tmp_path: Path
) -> None:
    args = ["--engine-url", server.engine_url]
    with running_server(
        tiny_model, BASE_MODEL, tmp_path, API_KEY, extra_args=args, env_overrides=_gateway_env(server, ray)
    ) as gateway:
        client = OpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0)
        job_id = _create(client, examples=40, epochs=4)
        wait_for_job(client, job_id, until=lambda job: job.status == "running")
        assert not any(f"/{job_id}/spec.json" in c for c in descendants(gateway.process.pid).values())
        wait_for_job(client, job_id, until=lambda _: _has_checkpoint(client, job_id))
        lost = _node_running(ray, job_id)
        ray.kill_node(ray.nodes[lost])

        done = wait_for_job(client, job_id)
        assert done.status == "succeeded", done.error
        messages = _messages(client, job_id)
        [retry] = [m for m in messages if m.startswith("The trainer stopped unexpectedly")]
        assert retry.endswith("attempt 2 of 3")
        resumed_from = int(retry.split("retrying from step ")[1].split(",")[0])
        # The lost node's last lines never reached the gateway: the trainer may have saved later
        # checkpoints than the last one it reported. It continues from the latest on disk.
        assert resumed_from >= 40 and f"Resuming from the checkpoint at step {resumed_from}" in messages
        reply = client.chat.completions.create(
            model=done.fine_tuned_model or "", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )
        assert reply.model == done.fine_tuned_model
    ray.add_trainer_node()  # for the next test
    ray.wait_for_trainer_nodes(2)


def test_a_restarted_gateway_re_attaches_to_its_trainer_on_ray(
    server: Server, ray: RayCluster, tiny_model: Path, tmp_path: Path
) -> None:
    args = ["--engine-url", server.engine_url]
    env = _gateway_env(server, ray)
    with running_server(
        tiny_model, BASE_MODEL, tmp_path, API_KEY, extra_args=args, env_overrides=env
    ) as first:
        client = OpenAI(base_url=f"{first.url}/v1", api_key=API_KEY, max_retries=0)
        job_id = _create(client, examples=12, epochs=3)
        wait_for_job(client, job_id, until=lambda _: _has_checkpoint(client, job_id))
        port = int(first.url.rsplit(":", 1)[1])
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    _node_running(ray, job_id, timeout_s=5)  # the trainer did not die with the gateway

    # The same gateway (same port, so the same gateway id) started again takes its job back at once.
    with running_server(
        tiny_model, BASE_MODEL, tmp_path, API_KEY, extra_args=args, env_overrides=env, port=port
    ) as second:
        client = OpenAI(base_url=f"{second.url}/v1", api_key=API_KEY, max_retries=0)
        done = wait_for_job(client, job_id)
        assert done.status == "succeeded", done.error
        messages = _messages(client, job_id)
        assert messages.count("Fine-tuning job started") == 1  # re-attached, not started again
        assert not any("continues from" in m for m in messages)
        events = client.fine_tuning.jobs.list_events(job_id, limit=1000).data
        steps = [e.data["step"] for e in events if e.type == "metrics"]
        assert sorted(steps) == list(range(1, 37))  # each step recorded once, replayed ones skipped
