"""text_similarity metrics against values worked out by hand (the arithmetic is in the comments).

The running example: input (hypothesis) "the cat sat on the mat", reference "the cat sat on a mat";
six tokens each.
"""

from __future__ import annotations

import math

import pytest

from trainer.graders import GraderError, GradingContext, Sample, grade, validate
from trainer.graders.text_similarity import cosine, similarity

pytestmark = pytest.mark.anyio

HYPOTHESIS = "the cat sat on the mat"
REFERENCE = "the cat sat on a mat"


def test_fuzzy_match_is_rapidfuzz_ratio() -> None:
    # Indel similarity: 2 x LCS / (len + len). "kitten" / "sitting": LCS "ittn" = 4 -> 8 / 13.
    assert similarity("fuzzy_match", "kitten", "sitting") == pytest.approx(8 / 13)
    # The running example: 22 and 20 characters, LCS = all of the reference but "a" -> 19:
    # "the cat sat on " (15) + "mat" (3) + the space before it (1) = 19 -> 2 x 19 / 42.
    assert similarity("fuzzy_match", HYPOTHESIS, REFERENCE) == pytest.approx(38 / 42)
    assert similarity("fuzzy_match", "same", "same") == 1.0


def test_bleu() -> None:
    # Clipped n-gram precisions: 1-grams 5/6 ("the" counts once), 2-grams 3/5 (the cat, cat sat,
    # sat on), 3-grams 2/4 (the cat sat, cat sat on), 4-grams 1/3 (the cat sat on); equal lengths,
    # so no brevity penalty: (5/6 x 3/5 x 2/4 x 1/3) ** (1/4) = (1/12) ** 0.25.
    assert similarity("bleu", HYPOTHESIS, REFERENCE) == pytest.approx((1 / 12) ** 0.25)
    assert similarity("bleu", REFERENCE, REFERENCE) == pytest.approx(1.0)
    assert similarity("bleu", "", REFERENCE) == 0.0


def test_gleu() -> None:
    # GLEU = min(precision, recall) over all 1-4-grams: matches 5 + 3 + 2 + 1 = 11 of 6 + 5 + 4 + 3
    # = 18 n-grams on either side -> 11/18.
    assert similarity("gleu", HYPOTHESIS, REFERENCE) == pytest.approx(11 / 18)


def test_meteor() -> None:
    # "the cats sit" against "the cat sat": "the" matches exactly, "cats" matches "cat" by its
    # Porter stem, "sit"/"sat" not at all (nor as WordNet synonyms). P = R = 2/3, so
    # Fmean = P R / (0.9 P + 0.1 R) = 2/3. One chunk of 2 matches: penalty 0.5 x (1/2) ** 3 = 1/16.
    # METEOR = 2/3 x (1 - 1/16) = 0.625.
    assert similarity("meteor", "the cats sit", "the cat sat") == pytest.approx(0.625)
    # Case does not matter to METEOR (it lowercases); identical texts of 3 words: one chunk,
    # penalty 0.5 x (1/3) ** 3 = 1/54.
    assert similarity("meteor", "The Cat Sat", "the cat sat") == pytest.approx(1 - 1 / 54)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("rouge_1", 5 / 6),  # 5 common unigrams ("the" once) of 6 and 6: P = R = F = 5/6
        ("rouge_2", 3 / 5),  # 3 common bigrams of 5 and 5
        ("rouge_3", 2 / 4),  # the cat sat, cat sat on
        ("rouge_4", 1 / 3),  # the cat sat on
        ("rouge_5", 0.0),  # no common 5-gram
        ("rouge_l", 5 / 6),  # LCS "the cat sat on mat" = 5 of 6 and 6
    ],
)
def test_rouge(metric: str, expected: float) -> None:
    assert similarity(metric, HYPOTHESIS, REFERENCE) == pytest.approx(expected)


def test_rouge_stems_and_lowercases() -> None:
    # rouge-score lowercases and, with its stemmer, "Cats" = "cat": 2 of 2 unigrams.
    assert similarity("rouge_1", "Cats running", "cat running") == pytest.approx(1.0)


def test_cosine() -> None:
    assert cosine([[1.0, 0.0], [1.0, 1.0]]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([[1.0, 0.0], [-1.0, 0.0]]) == 0.0  # floored: graders score in [0, 1]


async def test_through_grade_with_templates() -> None:
    grader = validate(
        {
            "type": "text_similarity",
            "name": "t",
            "input": "{{sample.output_text}}",
            "reference": "{{item.reference}}",
            "evaluation_metric": "rouge_2",
        },
        GradingContext(),
    )
    result = await grade(grader, Sample.from_text(HYPOTHESIS), {"reference": REFERENCE}, GradingContext())
    assert result.reward == pytest.approx(0.6)
    assert result.token_usage is None and not result.errors.any


async def test_cosine_is_refused_without_an_embedding_model_and_works_with_one() -> None:
    cosine_grader = {"type": "text_similarity", "name": "c", "input": "a", "reference": "b"}
    with pytest.raises(GraderError, match="no embedding model is configured") as error:
        validate({**cosine_grader, "evaluation_metric": "cosine"}, GradingContext())
    assert error.value.param == "grader.evaluation_metric"

    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if text == "a" else [1.0, 1.0] for text in texts]

    context = GradingContext(embed=embed)
    grader = validate({**cosine_grader, "evaluation_metric": "cosine"}, context)
    assert (await grade(grader, Sample.from_text(""), {}, context)).reward == pytest.approx(1 / math.sqrt(2))


async def test_too_long_a_text_is_not_graded() -> None:
    grader = validate(
        {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}", "reference": "a"}
        | {"evaluation_metric": "rouge_l"},
        GradingContext(),
    )
    result = await grade(grader, Sample.from_text("a " * 20_000), {}, GradingContext())
    assert result.reward == 0.0 and result.errors.truncated_observation_error
