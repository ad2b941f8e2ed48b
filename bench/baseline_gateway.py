"""The gateway as it was before the relay work of issue 13, for bench/relay_cost.py's "before" row.

Commit 2097c1e^ (BASELINE_COMMIT) relayed through httpx (pure-Python h11 parsing, one SSE event
per chunk) under uvicorn's pure-Python defaults (asyncio loop, h11 server; uvloop and httptools
were not installed then). Its tree is extracted with `git archive` into a temporary folder and
started from there with this virtual environment, pointed at the engine the current gateway
manages, so both relays stream from the same vLLM in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.server import Server, running_server

REPOSITORY = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "2097c1e^"
BASELINE_LABEL = "opentune before (2097c1e^: httpx relay, asyncio loop, h11)"

# uvicorn picks uvloop and httptools when they are installed (they are now): the baseline ran
# without them, so its uvicorn.run is told to use the pure-Python ones.
_LAUNCHER = """
import runpy, sys, uvicorn
_run = uvicorn.run
def run(*args, **kwargs):
    _run(*args, **{**kwargs, "loop": "asyncio", "http": "h11"})
uvicorn.run = run
sys.argv = ["service", *sys.argv[1:]]
runpy.run_module("service", run_name="__main__")
"""


def available() -> bool:
    """Whether this checkout has the baseline commit (a shallow clone may not)."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{BASELINE_COMMIT}^{{commit}}"],
        cwd=REPOSITORY,
        capture_output=True,
    )
    return found.returncode == 0


@contextmanager
def baseline_gateway(model_dir: Path, engine_url: str, engine_key: str, key: str) -> Iterator[Server]:
    """The baseline gateway, ready, relaying to the running engine at `engine_url`."""
    with tempfile.TemporaryDirectory(prefix="opentune-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", BASELINE_COMMIT, "service", "trainer"],
            cwd=REPOSITORY,
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        with running_server(
            model_dir,
            "tiny",
            Path(tmp) / "data",
            key,
            extra_args=["--engine-url", engine_url],
            env_overrides={
                "OPENTUNE_ENGINE_API_KEY": engine_key,
                "OPENTUNE_CHAT_MAX_CONCURRENT_PER_ORG": "64",
                "PYTHONPATH": str(tree),
            },
            launcher=(sys.executable, "-c", _LAUNCHER),
            cwd=tree,
        ) as server:
            yield server
