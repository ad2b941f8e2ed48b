"""`opentune serve` with a model it cannot load exits at once with one clear line."""

import os
import subprocess
import sys
from pathlib import Path


def _serve(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "service", "serve", "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_unloadable_hub_model_gives_one_clear_line(tmp_path: Path) -> None:
    result = _serve("--model", "no-such-org/no-such-model", tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no-such-org/no-such-model" in lines[0] and "--model /path/to/model" in lines[0]


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    result = _serve("--model", str(tmp_path), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "no config.json" in result.stderr
