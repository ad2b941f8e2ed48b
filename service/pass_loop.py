"""A background loop of passes in one asyncio task, for the gateway's pipelines (the job scheduler,
service/jobs/scheduler.py; the export runner, service/exports/runner.py): a pass, then a pause
of `pause_s()` seconds that `wake()` (from any thread) cuts short."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class PassLoop:
    def __init__(
        self, name: str, run_pass: Callable[[], Awaitable[None]], pause_s: Callable[[], float]
    ) -> None:
        self.name = name
        self.run_pass = run_pass
        self.pause_s = pause_s  # asked after each pass: a busy pipeline looks sooner than an idle one
        self._wake = asyncio.Event()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Run the next pass now (callable from request handlers' worker threads)."""
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # Python 3.11's wait_for can swallow a cancellation that arrives as its timeout fires (the
        # loop then never ended and shutdown hung); asyncio.timeout does not, and the flag ends it too.
        while not self._stopping:
            self._wake.clear()
            await self.run_pass()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.pause_s()):
                    await self._wake.wait()
