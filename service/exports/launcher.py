"""Export processes: `python -m trainer.export`, a child of the gateway, events on stdout.

Each export has a local folder `{data_dir}/exports/{export_id}/`: export.log (the process's stderr,
for the operator) and scratch/ (the merged files while they are zipped; removed after each attempt).
The process dies with the gateway (service/processes.py), never opens a CUDA context
(CUDA_VISIBLE_DEVICES is empty) and gets the gateway's environment without its OPENTUNE_* settings.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from service.processes import child_process_options, signal_group
from trainer.events import ErrorEvent
from trainer.export_events import ExportedEvent, parse_export_event


@dataclass(frozen=True)
class ExportTask:
    """One attempt at one export."""

    export_id: str
    base_path: Path
    adapter: str  # storage location of the adapter folder
    out: str  # storage location of the zip: its file's


@dataclass(frozen=True)
class ExportEnd:
    """How an export process ended: with its zip, with an error it reported, or neither (a crash)."""

    returncode: int | None
    exported: ExportedEvent | None = None
    error: ErrorEvent | None = None


class ExportProcess(Protocol):
    async def wait(self) -> ExportEnd: ...

    def kill(self) -> None: ...


class ExportLauncher(Protocol):
    async def start(self, task: ExportTask) -> ExportProcess: ...

    def clean(self, export_id: str) -> None:
        """Remove what an attempt left locally (its scratch folder; the log stays)."""
        ...


class LocalExportProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def wait(self) -> ExportEnd:
        assert self.process.stdout is not None
        exported: ExportedEvent | None = None
        failure: ErrorEvent | None = None
        async for line in self.process.stdout:
            event = parse_export_event(line)
            if isinstance(event, ExportedEvent):
                exported = event
            elif isinstance(event, ErrorEvent):
                failure = event
        returncode = await self.process.wait()
        signal_group(self.process, signal.SIGKILL)  # anything it started goes with it
        return ExportEnd(returncode, exported if returncode == 0 else None, failure)

    def kill(self) -> None:
        if self.process.returncode is None:
            signal_group(self.process, signal.SIGKILL)


class LocalExportLauncher:
    def __init__(self, work_root: Path, max_shard_size: str) -> None:
        self.work_root = work_root
        self.max_shard_size = max_shard_size

    async def start(self, task: ExportTask) -> LocalExportProcess:
        folder = self.work_root / task.export_id
        self.clean(task.export_id)  # what an interrupted attempt left
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "export.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "trainer.export",
                "--base",
                str(task.base_path),
                "--adapter",
                task.adapter,
                "--out",
                task.out,
                "--scratch",
                str(folder / "scratch"),
                "--max-shard-size",
                self.max_shard_size,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                **child_process_options(PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=""),
            )
        return LocalExportProcess(process)

    def clean(self, export_id: str) -> None:
        shutil.rmtree(self.work_root / export_id / "scratch", ignore_errors=True)
