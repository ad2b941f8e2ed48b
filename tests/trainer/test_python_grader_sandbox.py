"""The python grader's sandbox (trainer/graders/sandbox.py, confinement.py) on this machine: a
normal grader returns its float; one cannot read the data folder, reach a listening server, start
processes, run past its time limit or allocate past its memory limit. Needs bubblewrap (`make
sandbox` installs it) and user namespaces, as production does."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainer.graders import GraderError, GradingContext, Sample, Sandbox, SandboxLimits, grade, validate
from trainer.graders.results import GradeResult

pytestmark = pytest.mark.anyio

SECRET = "the-secret-42"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.txt").write_text(SECRET)
    (tmp_path / "visible.txt").write_text("visible")
    return data


@pytest.fixture
def context(data_dir: Path) -> GradingContext:
    # The test's folder is bound read-only into the sandbox on purpose, with the data folder inside
    # it: the data folder must stay hidden even then.
    limits = SandboxLimits(
        time_limit_s=3.0, hidden_paths=(data_dir,), extra_binds=(data_dir.parent,), max_concurrent=2
    )
    return GradingContext(sandbox=Sandbox(limits))


async def _grade(
    context: GradingContext, source: str, sample: str = "42", item: object = None
) -> GradeResult:
    grader = validate({"type": "python", "name": "py", "source": source}, context)
    return await grade(
        grader, Sample.from_text(sample), item if item is not None else {"answer": 42}, context
    )


async def test_a_normal_grader_returns_its_float(context: GradingContext) -> None:
    source = (
        "import json, math\n"
        "def grade(sample, item):\n"
        "    print('noise on stdout does not spoil the result')\n"
        "    return float(sample['output_json'] == item['answer']) * math.sqrt(0.25)\n"
    )
    result = await _grade(context, source)
    assert (result.reward, result.errors.any, result.type) == (0.5, False, "python")


async def test_it_sees_the_sample_text_and_may_use_third_party_packages(context: GradingContext) -> None:
    source = (
        "from rapidfuzz import fuzz\n"
        "def grade(sample, item):\n"
        "    return fuzz.ratio(sample['output_text'], item['ref']) / 100\n"
    )
    assert (await _grade(context, source, "kitten", {"ref": "sitting"})).reward == pytest.approx(8 / 13)


async def test_it_cannot_read_the_data_folder(context: GradingContext, data_dir: Path) -> None:
    source = (
        "import os\n"
        "def grade(sample, item):\n"
        f"    assert open({str(data_dir.parent / 'visible.txt')!r}).read() == 'visible'\n"
        f"    assert os.listdir({str(data_dir)!r}) == []\n"
        f"    return len(open({str(data_dir / 'secret.txt')!r}).read())\n"
    )
    result = await _grade(context, source)
    assert result.reward == 0.0
    details = result.errors.python_grader_runtime_error_details or ""
    assert "FileNotFoundError" in details and SECRET not in details


async def test_it_cannot_read_files_outside_its_sandbox(context: GradingContext) -> None:
    source = "def grade(sample, item):\n    return len(open('/etc/hostname').read())\n"
    result = await _grade(context, source)
    assert result.errors.python_grader_runtime_error
    assert "FileNotFoundError" in (result.errors.python_grader_runtime_error_details or "")


@pytest.fixture
def listening_server() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    yield server
    server.close()


async def test_it_cannot_reach_a_listening_local_server(
    context: GradingContext, listening_server: socket.socket
) -> None:
    port = listening_server.getsockname()[1]
    source = (
        "import socket\n"
        "def grade(sample, item):\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n"
        "    return 1.0\n"
    )
    result = await _grade(context, source)
    assert (result.reward, result.errors.python_grader_runtime_error) == (0.0, True)
    with pytest.raises(TimeoutError):
        listening_server.accept()  # nothing ever connected


async def test_it_cannot_start_processes(context: GradingContext) -> None:
    source = "import os\ndef grade(sample, item):\n    os.fork()\n    return 1.0\n"
    result = await _grade(context, source)
    assert "PermissionError" in (result.errors.python_grader_runtime_error_details or "")
    threads = (
        "import threading\n"
        "def grade(sample, item):\n"
        "    out = []\n"
        "    t = threading.Thread(target=lambda: out.append(1.0))\n"
        "    t.start(); t.join()\n"
        "    return out[0]\n"
    )
    assert (await _grade(context, threads)).reward == 1.0  # threads are not processes


async def test_an_endless_loop_is_stopped_at_the_time_limit(context: GradingContext) -> None:
    started = time.monotonic()
    result = await _grade(context, "def grade(sample, item):\n    while True:\n        pass\n")
    assert time.monotonic() - started < 3.0 + 2.0
    assert (result.reward, result.errors.python_grader_runtime_error) == (0.0, True)
    assert "time limit" in (result.errors.python_grader_runtime_error_details or "")


async def test_allocating_4_gb_is_stopped_by_the_memory_limit(context: GradingContext) -> None:
    result = await _grade(context, "def grade(sample, item):\n    return len(bytearray(4 * 1024**3))\n")
    assert (result.reward, result.errors.python_grader_runtime_error) == (0.0, True)
    assert "MemoryError" in (result.errors.python_grader_runtime_error_details or "")


@pytest.mark.parametrize(
    ("source", "details"),
    [
        ("def grade(sample, item):\n    return 1 / 0\n", "ZeroDivisionError"),
        ("def grade(sample, item):\n    return 'high'\n", "not a number"),
        ("def grade(sample, item):\n    return float('nan')\n", "not a finite number"),
        ("import os\ndef grade(sample, item):\n    os._exit(0)\n", "without a result"),
    ],
)
async def test_runtime_errors_are_reported(context: GradingContext, source: str, details: str) -> None:
    result = await _grade(context, source)
    assert (result.reward, result.errors.python_grader_runtime_error) == (0.0, True)
    assert details in (result.errors.python_grader_runtime_error_details or "")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def grade(sample, item)\n    return 1\n", "does not compile"),
        ("def other(sample, item):\n    return 1\n", "must define a function grade"),
        ("x = '\0'", "does not compile"),  # a NUL byte
    ],
)
def test_invalid_sources_are_refused_before_running(
    context: GradingContext, source: str, message: str
) -> None:
    with pytest.raises(GraderError, match=message) as error:
        validate({"type": "python", "name": "py", "source": source}, context)
    assert error.value.param == "grader.source"


def test_without_a_sandbox_python_graders_are_refused() -> None:
    missing = GradingContext(sandbox=Sandbox(SandboxLimits(bwrap="/nonexistent/bwrap")))
    source = "def grade(sample, item):\n    return 1.0\n"
    with pytest.raises(GraderError, match="bubblewrap") as error:
        validate({"type": "python", "name": "py", "source": source}, missing)
    assert error.value.param == "grader.type"
    with pytest.raises(GraderError, match="no sandbox"):
        validate({"type": "python", "name": "py", "source": source}, GradingContext())


async def test_it_cannot_see_the_servers_environment(
    context: GradingContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENTUNE_API_KEY", SECRET)
    source = (
        "import os\n"
        "def grade(sample, item):\n"
        "    seen = str(dict(os.environ))\n"
        "    for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
        "        seen += open(f'/proc/{pid}/environ', 'rb').read().decode()\n"
        f"    return float({SECRET!r} in seen)\n"
    )
    result = await _grade(context, source)
    assert (result.reward, result.errors.any) == (0.0, False)
