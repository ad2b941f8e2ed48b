"""The graders' shapes, as OpenAI's SDK has them (`openai/types/graders/*.py`), discriminated on
`type`. Unknown fields are ignored, as OpenAI does, so a newer SDK's extra fields do not break.

One deliberate difference: a `multi` grader's `graders` is an object of named graders, as OpenAI's
RFT guide writes it (`{"name": {...}, "price": {...}}` with `calculate_output: "(name + price) / 2"`).
The SDK's generated type shows a single grader there, which a formula over names cannot mean; a
single grader is accepted too, named by its own `name`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# OpenAI limits a python grader's source to 256 KB.
MAX_SOURCE_CHARS = 256 * 1024
# Enough for any real formula; bounds the parser's recursion on hostile input.
MAX_FORMULA_CHARS = 1000
MAX_TEXT_CHARS = 1024 * 1024  # one templated string (input, reference, message text)

_Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StringCheckGrader(_Model):
    type: Literal["string_check"]
    name: str
    input: _Text
    reference: _Text
    operation: Literal["eq", "ne", "like", "ilike"]


EvaluationMetric = Literal[
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
]


class TextSimilarityGrader(_Model):
    type: Literal["text_similarity"]
    name: str
    input: _Text
    reference: _Text
    evaluation_metric: EvaluationMetric


class PythonGrader(_Model):
    type: Literal["python"]
    name: str
    source: str = Field(max_length=MAX_SOURCE_CHARS)
    image_tag: str | None = None  # accepted and echoed; graders run on this server's Python


# GraderMessage content parts (openai/types/graders/grader_inputs.py).
class GraderInputText(_Model):
    type: Literal["input_text"]
    text: _Text


class GraderOutputText(_Model):
    type: Literal["output_text"]
    text: _Text


class GraderInputImage(_Model):
    type: Literal["input_image"]
    image_url: _Text
    detail: str | None = None


class GraderInputAudioData(_Model):
    data: str
    format: Literal["mp3", "wav"]


class GraderInputAudio(_Model):
    type: Literal["input_audio"]
    input_audio: GraderInputAudioData


ContentPart = Annotated[
    GraderInputText | GraderOutputText | GraderInputImage | GraderInputAudio, Field(discriminator="type")
]
Content = _Text | ContentPart | list[_Text | ContentPart]


class GraderMessage(_Model):
    role: Literal["user", "assistant", "system", "developer"]
    content: Content
    type: Literal["message"] | None = None


class GraderSamplingParams(_Model):
    max_completions_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: str | None = None  # accepted; the served models take no such setting
    seed: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)


class ScoreModelGrader(_Model):
    type: Literal["score_model"]
    name: str
    model: str
    input: list[GraderMessage] = Field(min_length=1)
    range: list[float] | None = None
    sampling_params: GraderSamplingParams | None = None

    @field_validator("range")
    @classmethod
    def _range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (
            len(value) != 2 or not all(math.isfinite(v) for v in value) or value[0] >= value[1]
        ):
            raise ValueError("range must be two finite numbers [low, high] with low < high")
        return value

    @property
    def score_range(self) -> tuple[float, float]:
        low, high = self.range or (0.0, 1.0)
        return low, high


class LabelModelGrader(_Model):
    type: Literal["label_model"]
    name: str
    model: str
    input: list[GraderMessage] = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _passing_labels(self) -> LabelModelGrader:
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels must be a subset of labels; not in labels: {unknown}")
        return self


SubGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Model):
    type: Literal["multi"]
    name: str
    calculate_output: str = Field(max_length=MAX_FORMULA_CHARS)
    graders: dict[str, SubGrader] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _single_grader(cls, data: Any) -> Any:
        """The SDK's generated shape (one grader, not an object of named ones): named by its name."""
        if isinstance(data, dict):
            graders = data.get("graders")
            if isinstance(graders, dict) and isinstance(graders.get("type"), str):
                return {**data, "graders": {str(graders.get("name", "")): graders}}
        return data


Grader = Annotated[
    StringCheckGrader
    | TextSimilarityGrader
    | PythonGrader
    | ScoreModelGrader
    | LabelModelGrader
    | MultiGrader,
    Field(discriminator="type"),
]
ModelGrader = ScoreModelGrader | LabelModelGrader
