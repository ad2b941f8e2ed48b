"""A reinforcement job's response_format constrains the answers GRPO samples: with a JSON schema,
every sampled answer of the random-init tiny model (which otherwise writes noise) is that JSON,
so a grader that parses it scores 1.0 at every step."""

from __future__ import annotations

from pathlib import Path

from tests.rft_job import run_trainer, train_rewards, write_job
from trainer.spec import ReinforcementSettings

PARSES = {
    "type": "python",
    "name": "parses",
    "source": (
        "import json\n"
        "def grade(sample, item):\n"
        "    try:\n"
        "        answer = json.loads(sample['output_text'])\n"
        "    except ValueError:\n"
        "        return 0.0\n"
        "    ok = isinstance(answer, dict) and set(answer) == {'d'} and answer['d'] in range(10)\n"
        "    return 1.0 if ok else 0.0\n"
    ),
}
DIGIT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "digit",
        "schema": {
            "type": "object",
            "properties": {"d": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["d"],
            "additionalProperties": False,
        },
    },
}


def test_sampled_answers_follow_the_json_schema(tiny_model: Path, tmp_path: Path) -> None:
    settings = ReinforcementSettings(
        grader=PARSES, num_generations=2, max_completion_tokens=16, response_format=DIGIT_SCHEMA
    )
    spec = write_job(
        tiny_model, tmp_path / "job", n_epochs=1, batch_size=8, reinforcement=settings, validation_file=None
    )
    status, events, _wall_s, stderr = run_trainer(spec)
    assert status == 0, stderr
    rewards = train_rewards(events)
    assert len(rewards) == 4 and all(r == 1.0 for r in rewards), rewards  # 32 prompts / 8 per step


def test_without_it_the_tiny_model_writes_no_json(tiny_model: Path, tmp_path: Path) -> None:
    settings = ReinforcementSettings(grader=PARSES, num_generations=2, max_completion_tokens=16)
    spec = write_job(
        tiny_model, tmp_path / "job", n_epochs=1, batch_size=16, reinforcement=settings, validation_file=None
    )
    status, events, _wall_s, stderr = run_trainer(spec)
    assert status == 0, stderr
    assert all(r == 0.0 for r in train_rewards(events))
