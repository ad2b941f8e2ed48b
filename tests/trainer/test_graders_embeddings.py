"""The cosine metric through a configured OpenAI-compatible embeddings API (trainer/graders/
embeddings.py), as the gateway and a reinforcement job's trainer use it.

The embeddings server is the operator's, outside the product: tests/service/fake_embedder.py's on
uvicorn, whose vector for a text is its letter counts over "abc", so cosines are worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.server import free_port
from tests.service.fake_embedder import Embedder
from tests.service.threaded_server import serve_in_thread
from trainer.graders import EmbeddingsEndpoint, EndpointEmbedder, GradingContext, Sample, grade, validate

pytestmark = pytest.mark.anyio

KEY = "emb-secret"


@pytest.fixture
def embedder() -> Iterator[tuple[Embedder, str]]:
    server = Embedder()
    with serve_in_thread(server.app()) as url:
        yield server, f"{url}/v1"


def _cosine(input_text: str, reference: str) -> dict[str, Any]:
    return {
        "type": "text_similarity",
        "name": "similar",
        "input": input_text,
        "reference": reference,
        "evaluation_metric": "cosine",
    }


def _context(url: str) -> GradingContext:
    return GradingContext(
        embed=EndpointEmbedder(EmbeddingsEndpoint(url=url, model="embed-small", api_key=KEY))
    )


async def test_cosine_scores_with_the_configured_embedding_model(embedder: tuple[Embedder, str]) -> None:
    server, url = embedder
    context = _context(url)
    # "aab" -> (2, 1, 0), "b" -> (0, 1, 0): cosine 1 / sqrt(5).
    grader = validate(_cosine("{{sample.output_text}}", "{{item.reference}}"), context)
    result = await grade(grader, Sample.from_text("aab"), {"reference": "b"}, context)
    assert result.reward == pytest.approx(1 / math.sqrt(5))
    assert not result.errors.any
    # "abc" against itself: 1.
    same = await grade(grader, Sample.from_text("abc"), {"reference": "cab"}, context)
    assert same.reward == pytest.approx(1.0)
    [first, _] = server.requests
    assert first["body"] == {"model": "embed-small", "input": ["aab", "b"]}
    assert first["authorization"] == f"Bearer {KEY}"


async def test_an_embedding_model_that_fails_scores_zero_with_an_error_naming_no_address(
    embedder: tuple[Embedder, str],
) -> None:
    server, url = embedder
    server.status = 503
    context = _context(url)
    grader = validate(_cosine("a", "b"), context)
    result = await grade(grader, Sample.from_text(""), {}, context)
    assert result.reward == 0.0 and result.errors.other_error

    unreachable = _context(f"http://127.0.0.1:{free_port()}/v1")
    result = await grade(grader, Sample.from_text(""), {}, unreachable)
    assert result.reward == 0.0 and result.errors.other_error
    assert "127.0.0.1" not in repr(result)


def test_the_key_is_not_in_the_endpoints_repr() -> None:
    endpoint = EmbeddingsEndpoint(url="http://embedder/v1", model="m", api_key=KEY)
    assert KEY not in repr(endpoint)
