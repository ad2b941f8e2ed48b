"""The export process (`python -m trainer.export`) on the tiny model and a LoRA adapter: the zip it
stores holds bf16 safetensors shards, the config and the tokenizer with its chat template, and
transformers loads them into a model that answers as the peft model (base + adapter) does."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.tiny_model import build_tiny_model
from trainer import storage

PROMPT = [{"role": "user", "content": "Classify: The order arrived late today."}]


def random_adapter(base: Path, dest: Path, seed: int = 0) -> Path:
    """A LoRA on every linear layer with random A and B (peft's default B is zero, which would
    change nothing), scaled so that it changes the tiny model's answers."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(dest)
    return dest


def greedy(model: Any, tokenizer: Any, new_tokens: int = 8) -> list[int]:
    ids = tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    return [int(t) for t in out[0, ids["input_ids"].shape[1] :]]


def run_export(base: Path, adapter: str, out: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.export",
            "--base",
            str(base),
            "--adapter",
            adapter,
            "--out",
            out,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_the_merged_export_answers_as_the_adapter_does(
    tiny_model: Path, tmp_path: Path, storage_root: str
) -> None:
    adapter = random_adapter(tiny_model, tmp_path / "adapter")
    stored_adapter = storage.join(storage_root, "adapter")
    storage.put(adapter, stored_adapter)
    out = storage.join(storage_root, "files", "file-export")

    status, events = run_export(tiny_model, stored_adapter, out, "--max-shard-size", "2MB")

    assert status == 0, events
    result = events[-1]
    assert result["event"] == "exported" and result["dtype"] == "bfloat16" and result["shards"] > 1
    with storage.local_copy(out) as zipped:
        assert zipped.stat().st_size == result["bytes"]
        with zipfile.ZipFile(zipped) as archive:
            names = set(archive.namelist())
            archive.extractall(tmp_path / "merged")
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert len([n for n in names if n.endswith(".safetensors")]) == result["shards"]
    assert not any("/" in name for name in names), "files at the zip's root, so it unzips into a model folder"

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype="auto")
    assert merged.dtype == torch.bfloat16, "the base's own dtype, not upcast"
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_model).chat_template

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype="auto")
    base_answer = greedy(base, tokenizer)
    with_adapter = PeftModel.from_pretrained(base, str(adapter))
    expected = greedy(with_adapter, tokenizer)
    assert expected != base_answer, "the adapter must change the answer for this test to mean anything"
    assert greedy(merged, tokenizer) == expected


def test_a_missing_adapter_is_a_clear_error_and_leaves_no_zip(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "file-export"
    status, events = run_export(
        tiny_model, str(tmp_path / "gone"), str(out), "--scratch", str(tmp_path / "s")
    )
    assert status == 1
    assert events[-1] == {
        "event": "error",
        "code": "adapter_not_found",
        "message": "The model's adapter could not be read.",
        "param": None,
    }
    assert not out.exists() and not out.with_name("file-export.partial").exists()


def test_an_adapter_for_another_model_fails_to_merge(tiny_model: Path, tmp_path: Path) -> None:
    """An adapter whose shapes do not fit the base (here: built on a wider model) is refused."""
    wider = build_tiny_model(
        tmp_path / "wider", hidden_size=320, num_attention_heads=5, num_key_value_heads=5
    )
    adapter = random_adapter(wider, tmp_path / "adapter")
    status, events = run_export(tiny_model, str(adapter), str(tmp_path / "out.zip"))
    assert status == 1 and events[-1]["code"] == "merge_failed", events
    assert not (tmp_path / "out.zip").exists()
