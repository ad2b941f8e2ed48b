"""Stopping on request: SIGTERM means "save a checkpoint at the next step and exit".

The handler only records the request. Python runs signal handlers in the main thread between
bytecodes, so a handler that takes a lock deadlocks when a second signal arrives while the first is
inside it: `threading.Event.set()` did exactly that (issue 10). Several SIGTERMs close together are
normal here: when the gateway is killed, the kernel re-sends the parent-death signal each time the
gateway thread that holds the trainer exits and hands it to the next still-running thread, so a
trainer gets one SIGTERM per exiting gateway thread within milliseconds.

So: requests within `repeat_window_s` of the first are the same request; one after that (someone
asking again, deliberately) exits at once; and `deadline_s` after the first, the kernel ends the
process (SIGALRM's default action), checkpoint or not, even if Python itself is stuck.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

# Exit status of a trainer that was asked twice to stop and did not wait for its checkpoint.
EXIT_STOPPED_AT_ONCE = 3


class StopRequest:
    """Read by the training loop (`is_set`) at each step; set by SIGTERM (`install`)."""

    def __init__(self, deadline_s: int = 60, repeat_window_s: float = 5.0) -> None:
        self.deadline_s = deadline_s
        self.repeat_window_s = repeat_window_s
        self.requested_at: float | None = None  # monotonic time of the first request

    def is_set(self) -> bool:
        return self.requested_at is not None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)

    def answered(self) -> None:
        """The run is over (stopped or done): ignore further requests. Python puts the default
        action (die) back while it shuts down, so a late SIGTERM would otherwise turn a clean exit
        into a kill."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Nothing here may take a lock or allocate much: assignments and system calls only.
        now = time.monotonic()
        if self.requested_at is None:
            self.requested_at = now
            signal.alarm(self.deadline_s)
        elif now - self.requested_at > self.repeat_window_s:
            os._exit(EXIT_STOPPED_AT_ONCE)
