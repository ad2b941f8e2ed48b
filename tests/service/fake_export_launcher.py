"""An `ExportLauncher` (service/exports/launcher.py) whose processes the test drives by hand: it
says how each one ends (its zip written, an error reported, a crash). Kill behaves as a real
process's: it ends at once with signal 9."""

from __future__ import annotations

import asyncio
import io

from service.exports.launcher import ExportEnd, ExportTask
from trainer import storage
from trainer.events import ErrorEvent
from trainer.export_events import ExportedEvent, partial_zip


class FakeExportProcess:
    def __init__(self, task: ExportTask) -> None:
        self.task = task
        self.killed = False
        self._end: ExportEnd | None = None
        self._ended = asyncio.Event()

    # -- what the test does ------------------------------------------------------------------------

    def write_partial(self) -> None:
        """Half a zip, where the real process writes one before renaming it."""
        partial_zip(self.task.out).parent.mkdir(parents=True, exist_ok=True)
        partial_zip(self.task.out).write_bytes(b"PK half")

    def succeed(self, data: bytes = b"PK a zip") -> None:
        storage.write_stream(self.task.out, io.BytesIO(data))
        exported = ExportedEvent(bytes=len(data), shards=1, dtype="bfloat16", seconds=0.5)
        self._finish(ExportEnd(0, exported=exported))

    def fail(self, code: str, message: str) -> None:
        self._finish(ExportEnd(1, error=ErrorEvent(code=code, message=message)))

    def crash(self, returncode: int = -9) -> None:
        self._finish(ExportEnd(returncode))

    @property
    def ended(self) -> bool:
        return self._end is not None

    def _finish(self, end: ExportEnd) -> None:
        if self._end is None:
            self._end = end
            self._ended.set()

    # -- the ExportProcess contract ----------------------------------------------------------------

    async def wait(self) -> ExportEnd:
        await self._ended.wait()
        assert self._end is not None
        return self._end

    def kill(self) -> None:
        if self._end is None:
            self.killed = True
            self._finish(ExportEnd(-9))


class FakeExportLauncher:
    def __init__(self) -> None:
        self.processes: list[FakeExportProcess] = []
        self.cleaned: list[str] = []

    async def start(self, task: ExportTask) -> FakeExportProcess:
        process = FakeExportProcess(task)
        self.processes.append(process)
        return process

    def clean(self, export_id: str) -> None:
        self.cleaned.append(export_id)

    def of(self, export_id: str) -> list[FakeExportProcess]:
        return [p for p in self.processes if p.task.export_id == export_id]

    @property
    def live(self) -> list[FakeExportProcess]:
        return [p for p in self.processes if not p.ended]
