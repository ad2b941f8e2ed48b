"""Managed engine replicas as Ray actors (`OPENTUNE_ENGINE_PLACEMENT=ray`).

Each replica is a detached, named actor (`EngineHost`) holding one vLLM server on the node where
Ray placed it (`OPENTUNE_RAY_ENGINE_RESOURCES`, one GPU by default). The actor exits with its
engine, and Ray starts it again (max_restarts=-1), on the same node or, when the node is lost, on
another: the gateway follows it by asking the actor where its engine now listens (`RayEngine`).

Named and detached, the actors belong to the cluster, not to a gateway: every gateway of a
cluster serves through the same replicas, a restarted gateway finds them running (no engine
start-up), and stopping a gateway leaves them up. The name carries a digest of the engine's
arguments, so a changed configuration starts new replicas (the old ones are the operator's to
stop: `ray stop`, or `ray.kill` by name in namespace "opentune").

Adapters in object storage are copied on the engine's node, by the actor (`RayAdapterStage`),
into its own cache: vLLM loads a LoRA adapter from a local folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.config import Settings
from service.engine.adapter_cache import AdapterCache
from service.engine.client import EngineClient
from service.engine.process import (
    calm_engine_core,
    engine_arguments,
    engine_environment,
    free_port,
    vllm_command,
)
from service.errors import EngineStartError
from service.ids import random_token
from service.metrics import ENGINE_RESTARTS
from service.processes import serving_process_options

logger = logging.getLogger(__name__)

NAMESPACE = "opentune"
_CALL_TIMEOUT_S = 30.0
_connect_lock = threading.Lock()


class EngineHost:
    """The actor: runs on a Ray node, with one vLLM server as its child. Ray starts a new one (and
    so a new engine, on a new port with a new key) whenever it dies."""

    def __init__(
        self, arguments: list[str], env: dict[str, str], cache_entries: int, scheduler_nice: int = 0
    ) -> None:
        import ray

        ip = ray.util.get_node_ip_address()
        port = free_port(ip)
        self.api_key = random_token(40)
        self.url = f"http://{ip}:{port}"
        folder = Path(tempfile.mkdtemp(prefix="opentune-engine-"))
        self.cache = AdapterCache(folder / "adapters", max_entries=cache_entries)
        self.log_path = folder / "engine.log"
        with self.log_path.open("ab") as log:
            # Dies with this actor's worker (PR_SET_PDEATHSIG, service/processes.py).
            self.process = subprocess.Popen(
                vllm_command(sys.executable, ip, port) + arguments,
                stdout=log,
                stderr=subprocess.STDOUT,
                **serving_process_options(**env, VLLM_API_KEY=self.api_key),
            )
        threading.Thread(target=self._exit_with_engine, daemon=True).start()
        self.scheduler_nice = scheduler_nice
        self._engine_core_calm = False

    def _exit_with_engine(self) -> None:
        status = self.process.wait()
        logger.error("vLLM exited with status %s; see %s", status, self.log_path)
        os._exit(1)  # the actor goes with its engine, so that Ray starts both again

    def address(self) -> tuple[str, str]:
        """Where the engine listens, and its key. (Gateways ask every few seconds: once vLLM's
        engine core is there, its priority is lowered, as for a local engine.)"""
        if not self._engine_core_calm:
            self._engine_core_calm = calm_engine_core(self.process.pid, self.scheduler_nice)
        return self.url, self.api_key

    def stage_adapter(self, location: str) -> str:
        """A folder on this node with the adapter at `location` (copied from object storage)."""
        return self.cache.local_path(location)


def _ray(address: str, attempts: int = 3) -> Any:
    """The `ray` module, connected to the cluster through Ray Client (once per process).

    Ray Client's server can refuse the first connection after a client went away without
    disconnecting (a gateway killed): Ray 2.60 then fails once, after ~40 s, and the next works."""
    import ray

    with _connect_lock:
        for attempt in range(1, attempts + 1):
            if ray.is_initialized():
                break
            try:
                ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
            except ConnectionError as exc:
                logger.warning("Ray Client connection %d/%d failed: %s", attempt, attempts, str(exc)[-200:])
                if attempt == attempts:
                    raise
    return ray


def _disconnect() -> None:
    import ray

    with _connect_lock:
        if ray.is_initialized():
            ray.shutdown()


def actor_name(served_name: str, index: int, arguments: list[str], env: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([arguments, env], sort_keys=True).encode()).hexdigest()[:10]
    return f"opentune-engine-{served_name}-{index}-{digest}"


class RayEngine:
    """Replica `index` of a base model on the Ray cluster, seen from a gateway: finds or creates
    its actor, points the replica's client at wherever the engine listens, and follows it there."""

    def __init__(self, settings: Settings, model_path: Path, served_name: str, index: int) -> None:
        self.settings = settings
        self.arguments = engine_arguments(settings, model_path, served_name)
        # The key is the actor's own (VLLM_API_KEY, per start): not part of what names the replica.
        self.env = {k: v for k, v in engine_environment(settings, "").items() if k != "VLLM_API_KEY"}
        self.name = actor_name(served_name, index, self.arguments, self.env)
        self.served_name = served_name
        self.url = ""
        self._actor: Any = None

    def _get_or_create(self) -> Any:
        ray = _ray(self.settings.ray_client_address)
        resources = dict(self.settings.ray_engine_resources)
        options = {
            "name": self.name,
            "lifetime": "detached",
            "get_if_exists": True,
            "max_restarts": -1,
            "num_gpus": resources.pop("GPU", 0),
            "num_cpus": resources.pop("CPU", 0),
            "resources": resources,
        }
        host = ray.remote(EngineHost)
        entries = 4 * self.settings.engine_max_adapters
        nice = self.settings.engine_cpu_scheduler_nice
        return host.options(**options).remote(self.arguments, self.env, entries, nice)

    def call(self, method: str, *args: Any, timeout_s: float = _CALL_TIMEOUT_S) -> Any:
        """Call the actor (blocking: run it in a thread)."""
        ray = _ray(self.settings.ray_client_address)
        return ray.get(getattr(self._actor, method).remote(*args), timeout=timeout_s)

    async def start(self, client: EngineClient) -> None:
        """Find the replica's actor (or create it) and wait until its engine answers."""
        self._actor = await asyncio.to_thread(self._get_or_create)
        deadline = time.monotonic() + self.settings.engine_startup_timeout_s
        while time.monotonic() < deadline:
            try:
                await self._follow(client)
                if await client.is_healthy():
                    logger.info("Engine ready at %s (Ray actor %s)", self.url, self.name)
                    return
            except Exception as exc:  # the actor is being placed or started again
                logger.info("Engine %s not ready yet: %s", self.name, str(exc)[:200])
            await asyncio.sleep(1.0)
        raise EngineStartError(
            f"the Ray engine {self.name} did not become ready within "
            f"{self.settings.engine_startup_timeout_s:.0f} s (are {self.settings.ray_engine_resources} "
            "free on a node?)"
        )

    async def _follow(self, client: EngineClient) -> bool:
        """Point `client` at the engine's current address; True if it moved (a new engine)."""
        url, key = await asyncio.to_thread(self.call, "address")
        if url == self.url:
            return False
        self.url = url
        client.point_at(url, key)
        return True

    async def supervise(self, client: EngineClient, on_restart: Callable[[], None]) -> None:
        """Follow the engine: out of rotation while its actor or engine does not answer; when Ray
        started it again (a new address), its adapters are gone (`on_restart`) and it rejoins once
        it answers."""
        while True:
            await asyncio.sleep(self.settings.engine_health_interval_s)
            try:
                moved = await self._follow(client)
            except Exception as exc:  # actor restarting, node lost, Ray Client reconnecting
                if client.available:
                    logger.warning("Engine %s unreachable through Ray: %s", self.name, str(exc)[:200])
                client.available = False
                continue
            if moved:
                logger.warning("Engine %s started again by Ray, at %s", self.name, self.url)
                ENGINE_RESTARTS.labels(self.served_name).inc()
                client.available = False
                on_restart()
            healthy = await client.is_healthy()
            if healthy and not client.available:
                logger.info("Engine ready at %s (Ray actor %s)", self.url, self.name)
            elif client.available and not healthy:
                logger.warning("Engine %s failed its health check: out of rotation", self.name)
            client.available = healthy

    async def stop(self) -> None:
        """The replica is the cluster's, shared with other gateways (see the module doc): it stays.
        Only this gateway's connection ends (cleanly: the next gateway connects at once)."""
        await asyncio.to_thread(_disconnect)


class RayAdapterStage:
    """Adapters staged on the Ray engine's node (AdapterRegistry's `cache`)."""

    def __init__(self, engine: RayEngine) -> None:
        self.engine = engine

    def local_path(self, location: str) -> str:
        return str(self.engine.call("stage_adapter", location, timeout_s=600.0))
