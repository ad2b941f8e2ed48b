"""service/processes.py: where children run. Trainers lead their own session; engines lead their
own process group inside the gateway's session (so a yield in vLLM's spin loops makes way for the
gateway under autogroup scheduling: serving_process_options)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.processes import child_process_options, serving_process_options

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, /proc")


def _started(options: dict[str, object]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "30"], **options)  # type: ignore[call-overload]


def test_an_engine_leads_its_own_process_group_in_the_gateways_session() -> None:
    child = _started(serving_process_options(VLLM_API_KEY="k"))
    try:
        assert os.getpgid(child.pid) == child.pid  # stopping it can signal its whole group
        assert os.getsid(child.pid) == os.getsid(0)
    finally:
        child.kill()
        child.wait()


def test_a_trainer_leads_its_own_session() -> None:
    child = _started(child_process_options())
    try:
        assert os.getsid(child.pid) == child.pid == os.getpgid(child.pid)
    finally:
        child.kill()
        child.wait()
