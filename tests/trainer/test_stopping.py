"""SIGTERM means "checkpoint and exit", however many arrive and whenever they do.

The storms reproduce issue 10: back-to-back SIGTERMs (as a killed gateway's parent-death signal
delivers them, once per exiting gateway thread) used to deadlock the trainer inside its own handler.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.strict_format import jsonl, training_examples
from tests.trainer.test_sft import write_spec
from trainer.checkpoints import checkpoint_step, latest_checkpoint
from trainer.stopping import EXIT_STOPPED_AT_ONCE

STOP_DEADLINE_S = 60  # trainer/stopping.py's default


def _storm(pid: int, seconds: float = 1.0) -> None:
    """SIGTERMs back to back for `seconds`, as in the issue's reproduction."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return


def _run_with_storm(
    spec_path: Path, when: Callable[[dict[str, Any]], bool] | None, watch_dir: Path | None = None
) -> tuple[int, list[dict[str, Any]], float]:
    """Run the trainer and storm it when an event matches `when`, or (with `watch_dir`) as soon as a
    checkpoint folder appears there without its trainer_state.json (a save in progress). Returns the
    exit status, the events, and the seconds from the storm's start to the exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stormed_at: list[float] = []

    def storm() -> None:
        stormed_at.append(time.monotonic())
        _storm(process.pid)

    if watch_dir is not None:

        def watch() -> None:
            while process.poll() is None:
                saving = [
                    p for p in watch_dir.glob("checkpoint-*") if not (p / "trainer_state.json").exists()
                ]
                if saving:
                    storm()
                    return
                time.sleep(0.001)

        threading.Thread(target=watch, daemon=True).start()
    assert process.stdout is not None
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        if when is not None and not stormed_at and when(events[-1]):
            storm()
    status = process.wait(timeout=STOP_DEADLINE_S + 120)
    assert stormed_at, f"the storm never started; events: {events[-3:]}"
    return status, events, time.monotonic() - stormed_at[0]


@pytest.fixture
def spec(tiny_model: Path, tmp_path: Path) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(training_examples(24)))
    return write_spec(tiny_model, data, tmp_path / "out", n_epochs=3, batch_size=1)


def _assert_usable_checkpoint(out: Path, events: list[dict[str, Any]]) -> None:
    stopped = events[-1]
    assert stopped["event"] == "stopped", events[-3:]
    latest = latest_checkpoint(out / "checkpoints")
    assert latest is not None and stopped["checkpoint"] == str(latest)
    assert checkpoint_step(latest) == stopped["step"]
    assert (latest / "adapter_model.safetensors").is_file()


def test_storm_mid_training_saves_a_checkpoint_and_exits(spec: Path, tmp_path: Path) -> None:
    status, events, took = _run_with_storm(spec, lambda e: e["event"] == "metrics" and e["step"] == 3)
    assert status == 0 and took < STOP_DEADLINE_S
    _assert_usable_checkpoint(tmp_path / "out", events)


def test_storm_during_a_checkpoint_save(spec: Path, tmp_path: Path) -> None:
    status, events, took = _run_with_storm(spec, None, watch_dir=tmp_path / "out" / "checkpoints")
    assert status == 0 and took < STOP_DEADLINE_S
    _assert_usable_checkpoint(tmp_path / "out", events)


def test_storm_during_model_load_exits_without_training(spec: Path) -> None:
    # The first event is the training plan, printed after the data is read and before the model loads.
    status, events, took = _run_with_storm(spec, lambda e: e.get("message", "").startswith("Training on"))
    assert status == 0 and took < STOP_DEADLINE_S
    assert events[-1] == {"event": "stopped", "step": 0, "checkpoint": None}
    assert not [e for e in events if e["event"] == "metrics"]


def test_storm_during_the_post_training_check_finishes(spec: Path, tmp_path: Path) -> None:
    status, events, took = _run_with_storm(spec, lambda e: e.get("message", "").startswith("Trained "))
    assert status == 0 and took < STOP_DEADLINE_S
    assert events[-1]["event"] == "result"  # training was over: the adapter is kept


def _script(body: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A small Python process using the trainer's StopRequest, printing "ready" once installed."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    process = subprocess.Popen(
        [sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def test_requests_close_together_are_one_and_the_loop_goes_on(tmp_path: Path) -> None:
    # The main thread spends its time inside threading.Event.set(), where the old handler (which
    # called Event.set() itself) deadlocked on a second signal.
    process = _script(
        """
        import threading, time
        from trainer.stopping import StopRequest
        stop = StopRequest()
        stop.install()
        print("ready", flush=True)
        event = threading.Event()
        while not stop.is_set():
            event.set()
        end = time.monotonic() + 1.5  # keeps working (as a checkpoint save does) through the storm
        while time.monotonic() < end:
            event.set()
        print("finished", flush=True)
        """,
        tmp_path,
    )
    _storm(process.pid)
    out, _ = process.communicate(timeout=30)
    assert (process.returncode, out) == (0, "finished\n")


def test_a_request_after_the_window_exits_at_once(tmp_path: Path) -> None:
    process = _script(
        """
        import time
        from trainer.stopping import StopRequest
        StopRequest(repeat_window_s=0.2).install()
        print("ready", flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == EXIT_STOPPED_AT_ONCE


def test_the_deadline_ends_a_trainer_stuck_outside_python(tmp_path: Path) -> None:
    # A trainer that never looks at the request (a step that hangs): the kernel ends it.
    process = _script(
        """
        import time
        from trainer.stopping import StopRequest
        StopRequest(deadline_s=1).install()
        print("ready", flush=True)
        while True:
            time.sleep(100)
        """,
        tmp_path,
    )
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == -signal.SIGALRM
    assert time.monotonic() - started < 5
