"""DPO through the real trainer process: the preference margin grows on pairs it did not train on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.strict_format import held_out_prompts, training_examples
from trainer.spec import TrainingSpec

PREFERRED = '{"label": "neutral"}'
REJECTED = "I am not sure about that."


def _pairs(prompts: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "input": {"messages": [{"role": "user", "content": p}]},
            "preferred_output": [{"role": "assistant", "content": PREFERRED}],
            "non_preferred_output": [{"role": "assistant", "content": REJECTED}],
        }
        for p in prompts
    ]


def _logprob(model: Any, tokenizer: Any, prompt: str, reply: str) -> float:
    """Sum of log-probabilities of the reply's tokens after the prompt, under the chat template."""
    messages = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": reply}], tokenize=False)
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    return float(logps[len(head_ids) - 1 :].gather(1, targets[len(head_ids) - 1 :, None]).sum())


def _margin(model: Any, tokenizer: Any) -> float:
    prompts = held_out_prompts()
    return sum(
        _logprob(model, tokenizer, p, PREFERRED) - _logprob(model, tokenizer, p, REJECTED) for p in prompts
    )


def test_dpo_raises_the_preference_margin_on_held_out_pairs(tiny_model: Path, tmp_path: Path) -> None:
    prompts = [str(e["messages"][0]["content"]) for e in training_examples(24, seed=3)]  # type: ignore[index]
    train = tmp_path / "pairs.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in _pairs(prompts)))
    spec = TrainingSpec(
        job_id="ftjob-dpo",
        base_model=str(tiny_model),
        training_file=train,
        output_dir=tmp_path / "out",
        method="dpo",
        beta=0.1,
        n_epochs=3,
        batch_size=4,
        learning_rate=3e-3,
        seed=1,
    )
    spec_path = tmp_path / "spec.json"
    spec.write(spec_path)
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(spec_path)], capture_output=True, text=True, timeout=600
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr[-3000:]
    assert events[-1]["event"] == "result", events[-3:]
    assert events[-1]["trained_tokens"] > 0
    assert any(e.get("message", "").startswith("Adapter check:") for e in events)
    assert sum(e["event"] == "metrics" for e in events) == 18  # 24 pairs / 4 x 3 epochs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    before = _margin(base, tokenizer)
    tuned = PeftModel.from_pretrained(base, str(spec.adapter_dir))
    after = _margin(tuned, tokenizer)
    assert after > before + 1.0, (before, after)
    saved = json.loads((spec.adapter_dir / "adapter_config.json").read_text())
    assert saved["r"] == 16 and not (spec.adapter_dir / "ref").exists(), "only the trained adapter is saved"
