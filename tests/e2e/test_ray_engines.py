"""Engine replicas as Ray actors (OPENTUNE_ENGINE_PLACEMENT=ray) on a real Ray cluster on this
machine: the gateway serves a base model and an adapter through an engine Ray placed on the node
offering `engine`; when that engine dies, Ray starts it again and the gateway follows it to its new
address; a gateway started again finds the running engine instead of starting one."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.e2e.processes import descendants, engine_nice_values, engine_pid
from tests.e2e.server import Server, running_server
from tests.ray_cluster import RayCluster, ray_cluster
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    with ray_cluster(tmp_path_factory.mktemp("ray-logs"), trainer_nodes=0, engine_nodes=1) as cluster:
        yield cluster


def _env(ray: RayCluster) -> dict[str, str]:
    return {
        "OPENTUNE_ENGINE_PLACEMENT": "ray",
        "OPENTUNE_RAY_CLIENT_ADDRESS": ray.client_address,
        "OPENTUNE_RAY_ENGINE_RESOURCES": json.dumps({"engine": 1}),
        "OPENTUNE_ENGINE_HEALTH_INTERVAL_S": "1",
    }


def _ask(client: OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say something."}], max_tokens=4
    )
    return answer.choices[0].message.content or ""


def _ready_lines(server: Server) -> list[str]:
    return re.findall(r"Engine ready at (http://\S+) \(Ray actor", server.log_path.read_text())


def _wait(condition: object, timeout_s: float, what: str, server: Server) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout_s:.0f} s; gateway log:\n{server.log_tail()}")


def test_engine_on_ray_serves_is_restarted_by_ray_and_outlives_the_gateway(
    tiny_model: Path, tmp_path: Path, ray: RayCluster
) -> None:
    data = tmp_path / "data"
    with running_server(tiny_model, BASE_MODEL, data, API_KEY, env_overrides=_env(ray)) as server:
        first_url = server.engine_url
        root = engine_pid(urlparse(first_url).port or 0)
        assert root not in descendants(server.process.pid)  # Ray's, not the gateway's
        client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
        assert _ask(client, BASE_MODEL)
        # The actor lowers its engine core's priority as a local engine's is (cpu_priority.py).
        port = urlparse(first_url).port or 0
        core_nice = lambda: engine_nice_values(port).get("VLLM::EngineCore")  # noqa: E731
        _wait(lambda: core_nice() == {10}, 30, "the engine core at nice 10", server)
        file = client.files.create(
            file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 1, "batch_size": 5}
        )
        model = wait_for_job(client, job.id).fine_tuned_model or ""
        assert _ask(client, model)  # the adapter, staged by the actor on its node

        for pid in [root, *descendants(root)]:  # the engine dies: its actor goes with it
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: len(_ready_lines(server)) >= 2, 300, "the engine was not started again", server)
        assert _ready_lines(server)[-1] != first_url  # a new engine, on a new port
        assert _ask(client, BASE_MODEL) and _ask(client, model)  # the adapter loads again on demand
        moved_url = _ready_lines(server)[-1]

    # The engine is the cluster's: a gateway started again finds it running, at the same address
    # (a new engine would listen on a new port, with a new key).
    with running_server(tiny_model, BASE_MODEL, data, API_KEY, env_overrides=_env(ray)) as again:
        assert again.engine_url == moved_url
        client = OpenAI(base_url=f"{again.url}/v1", api_key=API_KEY, max_retries=0)
        assert _ask(client, model)
