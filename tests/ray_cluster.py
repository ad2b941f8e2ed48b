"""A real Ray cluster on this machine for tests: a head node (which runs no trainer) and worker nodes
offering the custom resource `trainer` (or `engine`, for engine replicas), each a `ray start
--block` process in its own process group, so that a test can kill one as a lost node. Ray's own
CLI from this virtualenv."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RayCluster:
    address: str  # the head's GCS, for `ray start --address`
    dashboard_url: str  # the Job Submission API
    client_address: str  # Ray Client (ray://), for engine replicas as actors
    logs: Path
    env: dict[str, str]  # the nodes' environment (e.g. S3 credentials: trainers read it)
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_trainer_node(self, resource: str = "trainer") -> subprocess.Popen[bytes]:
        log = (self.logs / f"node-{len(self.nodes)}.log").open("wb")
        command = [RAY, "start", f"--address={self.address}", "--num-cpus=1"]
        command += [f'--resources={{"{resource}": 1}}']
        command += ["--object-store-memory=80000000", "--disable-usage-stats", "--block"]
        # Its own agent port: the Job API reads a job's log through the agent of the job's node, and
        # nodes sharing a machine cannot all take the default one.
        command += [f"--dashboard-agent-listen-port={_free_port()}"]
        node = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        self.nodes.append(node)
        return node

    def kill_node(self, node: subprocess.Popen[bytes]) -> None:
        """The node is lost: its raylet, workers and whatever they run, at once."""
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()

    def wait_for_trainer_nodes(self, count: int, timeout_s: float = 120, resource: str = "trainer") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.nodes and self.nodes[-1].poll() is not None:
                raise RuntimeError(f"a Ray node exited: see {self.logs}")
            try:
                found = httpx.get(f"{self.dashboard_url}/api/v0/nodes?detail=1", timeout=5).json()
                nodes = found["data"]["result"]["result"]
                alive = [n for n in nodes if n["state"] == "ALIVE" and resource in n["resources_total"]]
                if len(alive) >= count:
                    return
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"fewer than {count} Ray trainer nodes after {timeout_s} s")


@contextmanager
def ray_cluster(
    logs: Path,
    trainer_nodes: int = 2,
    env_overrides: dict[str, str] | None = None,
    engine_nodes: int = 0,
) -> Iterator[RayCluster]:
    env = {**os.environ, **(env_overrides or {})}
    port, dashboard_port, client_port = _free_port(), _free_port(), _free_port()
    head = [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard_port}"]
    head += [f"--ray-client-server-port={client_port}"]
    head += ["--dashboard-host=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000"]
    head += [
        "--disable-usage-stats",
        "--include-dashboard=true",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]
    done = subprocess.run(head, capture_output=True, text=True, timeout=180, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"ray start --head failed:\n{done.stdout}\n{done.stderr}")
    cluster = RayCluster(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", f"ray://127.0.0.1:{client_port}", logs, env
    )
    try:
        # One at a time: nodes starting together on two busy cores time out registering.
        for count in range(1, trainer_nodes + 1):
            cluster.add_trainer_node()
            cluster.wait_for_trainer_nodes(count)
        for count in range(1, engine_nodes + 1):
            cluster.add_trainer_node("engine")
            cluster.wait_for_trainer_nodes(count, resource="engine")
        yield cluster
    finally:
        for node in cluster.nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
