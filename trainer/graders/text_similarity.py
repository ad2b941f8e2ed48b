"""`text_similarity`: how close the input is to the reference, in [0, 1], by maintained libraries.

| metric | library and call |
|---|---|
| fuzzy_match | rapidfuzz `fuzz.ratio` / 100 (normalized Indel similarity of the two strings) |
| bleu | nltk `sentence_bleu`, 1-4-grams weighted equally, `SmoothingFunction().method1` |
| gleu | nltk `sentence_gleu` (Google BLEU, 1-4-grams) |
| meteor | nltk `meteor_score` (alpha 0.9, beta 3, gamma 0.5; exact, Porter-stem and WordNet matches) |
| rouge_1..5, rouge_l | Google's rouge-score `RougeScorer(["rougeN"/"rougeL"], use_stemmer=True)`, F |
| cosine | cosine of the configured embedding model's vectors (refused when none is configured) |

bleu, gleu and meteor tokenize with nltk's Treebank word tokenizer (`word_tokenize` with
`preserve_line=True`, which needs no downloaded data); rouge-score uses its own tokenizer
(lowercase, alphanumeric tokens).

METEOR's synonym stage needs WordNet, which nltk does not ship and which is never downloaded at run
time: it is used when nltk finds its `wordnet` corpus installed (NLTK_DATA, or
`python -m nltk.downloader wordnet` at deployment); otherwise METEOR matches exact words and Porter
stems only, so a synonym ("big" for "large") does not count and a score can be lower than OpenAI's.

Texts longer than a metric handles in reasonable time (rouge_l is quadratic in pure Python) are not
graded: GradingFailure("truncated_observation_error").
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

from trainer.graders.results import GraderError, GradingFailure

logger = logging.getLogger(__name__)

# nltk warns about zero n-gram counts on short texts; the score (with smoothing) is what counts.
warnings.filterwarnings("ignore", module=r"nltk\.translate\..*")

MAX_CHARS = 100_000
MAX_CHARS_BY_METRIC = {"rouge_l": 10_000}  # ~2 s of LCS at worst on this project's CI machines

_ROUGE_TYPES = {f"rouge_{n}": f"rouge{n}" for n in range(1, 6)} | {"rouge_l": "rougeL"}


def check_metric(metric: str, has_embeddings: bool, param: str) -> None:
    if metric == "cosine" and not has_embeddings:
        raise GraderError(
            "The cosine metric needs an embedding model, and no embedding model is configured on "
            "this server. Use another evaluation_metric (fuzzy_match, bleu, gleu, meteor, rouge_*).",
            param,
        )


def similarity(metric: str, text: str, reference: str) -> float:
    """The score of `text` against `reference` by `metric` (not cosine: see `cosine`)."""
    limit = MAX_CHARS_BY_METRIC.get(metric, MAX_CHARS)
    if len(text) > limit or len(reference) > limit:
        raise GradingFailure(
            "truncated_observation_error",
            f"{metric} grades texts of at most {limit} characters; this one has "
            f"{max(len(text), len(reference))}.",
        )
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return float(fuzz.ratio(text, reference)) / 100.0
    if metric in _ROUGE_TYPES:
        rouge_type = _ROUGE_TYPES[metric]
        return float(_rouge_scorer(rouge_type).score(reference, text)[rouge_type].fmeasure)
    hypothesis, references = _tokens(text), [_tokens(reference)]
    if metric == "bleu":
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        if not hypothesis or not references[0]:
            return 0.0
        return float(sentence_bleu(references, hypothesis, smoothing_function=SmoothingFunction().method1))
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu(references, hypothesis))
    if metric == "meteor":
        from nltk.translate.meteor_score import meteor_score

        if not hypothesis or not references[0]:
            return 0.0
        return float(meteor_score(references, hypothesis, wordnet=wordnet()))
    raise ValueError(f"unknown evaluation_metric {metric!r}")


def cosine(vectors: Sequence[Sequence[float]]) -> float:
    """The cosine of two embeddings, floored at 0 (graders score in [0, 1])."""
    left, right = vectors
    norms = math.sqrt(sum(x * x for x in left)) * math.sqrt(sum(y * y for y in right))
    if norms == 0:
        return 0.0
    return max(0.0, min(1.0, sum(x * y for x, y in zip(left, right, strict=True)) / norms))


def _tokens(text: str) -> list[str]:
    from nltk.tokenize import word_tokenize

    return list(word_tokenize(text, preserve_line=True))


@functools.cache
def _rouge_scorer(rouge_type: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)


class _NoWordNet:
    """METEOR's synonym stage with no WordNet: no synonyms, so exact and stem matches only."""

    def synsets(self, word: str) -> list[Any]:
        return []


@functools.cache
def wordnet() -> Any:
    """nltk's WordNet when its data is installed, else `_NoWordNet` (never a download)."""
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        from nltk.corpus import wordnet as installed

        try:
            installed.ensure_loaded()
            return installed
        except (LookupError, OSError, ValueError) as exc:
            logger.warning("nltk's WordNet could not be loaded (%s); METEOR uses exact and stem matches", exc)
            break
    logger.info("nltk's WordNet is not installed: METEOR matches exact words and stems only")
    return _NoWordNet()
