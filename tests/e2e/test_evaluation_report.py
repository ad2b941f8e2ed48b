"""The evaluation report of a job with a validation file, through the stock openai SDK: base and
fine-tuned model side by side in `eval_report.json` and an event (service/jobs/evaluator.py)."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL
from tests.e2e.jobs import wait_for_job
from tests.strict_format import follows_format, jsonl, training_examples

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

# The strict format with one label: a reference the fine-tuned model can match exactly (with random
# labels, as tests/strict_format.py draws them, it learns the format but not which label).
ANSWER = json.dumps({"label": "neutral"})
SAME = {
    "type": "string_check",
    "name": "same",
    "operation": "eq",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference_answer}}",
}


def _upload(client: OpenAI, name: str, count: int, seed: int) -> str:
    examples: list[dict[str, Any]] = training_examples(count, seed=seed)
    for example in examples:
        example["messages"][1]["content"] = ANSWER
    return client.files.create(file=(name, io.BytesIO(jsonl(examples))), purpose="fine-tune").id


def test_a_job_with_a_validation_file_reports_base_and_fine_tuned_side_by_side(client: OpenAI) -> None:
    assert follows_format(ANSWER)
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, "eval-train.jsonl", 20, seed=0),
        validation_file=_upload(client, "eval-valid.jsonl", 10, seed=3),
        seed=42,
        metadata={"opentune.eval_grader": json.dumps(SAME)},
        hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 15},
    )
    done = wait_for_job(client, job.id)
    job_s = time.monotonic() - started
    assert done.status == "succeeded", done.error

    assert len(done.result_files) == 2
    metrics_file, report_file = (client.files.retrieve(f) for f in done.result_files)
    assert metrics_file.filename == "step_metrics.csv"
    assert (report_file.filename, report_file.purpose) == ("eval_report.json", "fine-tune-results")
    report = json.loads(client.files.content(report_file.id).read())
    base, tuned = report["base"], report["fine_tuned"]
    assert report["n_prompts"] == 10 and report["n_skipped"] == 0 and report["grader"] == "same"
    assert (base["model"], tuned["model"]) == (BASE_MODEL, done.fine_tuned_model)
    assert tuned["exact_match"] > base["exact_match"], report
    assert tuned["grader_mean"] == tuned["exact_match"] and base["grader_mean"] == base["exact_match"]
    assert base["valid_loss"] > tuned["valid_loss"] > 0, report
    assert len(report["examples"]) == 5 and report["examples"][0]["reference"] == ANSWER

    messages = [e.message for e in client.fine_tuning.jobs.list_events(done.id, limit=1000).data]
    assert any(m.startswith("Base model before training: validation loss=") for m in messages)
    evaluation = [m for m in messages if m.startswith("Evaluation: base exact match")]
    assert evaluation and "vs fine-tuned exact match" in evaluation[0], messages
    # What the evaluation added to the job (shown with --log-cli-level=INFO).
    logger.info("Evaluation took %.2f s of a %.1f s job: %s", report["elapsed_s"], job_s, json.dumps(report))
    assert report["elapsed_s"] < 60


def test_a_bad_eval_grader_is_refused_when_the_job_is_created(client: OpenAI) -> None:
    training_file = _upload(client, "eval-bad.jsonl", 10, seed=1)
    for grader, param in [
        ("{not json", "metadata.opentune.eval_grader"),
        (json.dumps({**SAME, "operation": "near"}), "metadata.opentune.eval_grader.operation"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(
                model=BASE_MODEL, training_file=training_file, metadata={"opentune.eval_grader": grader}
            )
        assert refused.value.param == param
