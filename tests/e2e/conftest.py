"""One real opentune server per test session: uvicorn, a vLLM engine on the tiny model, trainers.

Engine start-up costs ~30 s and training ~1 min on CI's 2 cores, so every end-to-end test shares it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.server import Server, ServerStartError, running_server

API_KEY = "sk-test-e2e-key"
BASE_MODEL = "tiny"


@pytest.fixture(scope="session")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("opentune-data")
    try:
        with running_server(tiny_model, BASE_MODEL, data_dir, API_KEY) as started:
            yield started
    except ServerStartError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
