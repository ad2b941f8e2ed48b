"""The frozen baseline of bench/train_throughput.py: plain HF + PEFT + TRL SFTTrainer QLoRA.

NF4 with double quantization, LoRA r=16 on all linear layers, TRL's own tokenization of the chat
data, no packing, no grouping; only batch size, epochs, learning rate and max length are set.
Keep it frozen: it is the denominator of the reported ratios.

    python -m bench.baseline_sft MODEL_DIR DATA.jsonl BATCH EPOCHS MAX_LENGTH  -> one JSON line
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer


def main() -> None:
    model_dir, data, batch, epochs, max_length = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        ),
        dtype=dtype,
        device_map={"": "cuda" if cuda else "cpu"},
    )
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(
                output_dir=output_dir,
                per_device_train_batch_size=batch,
                num_train_epochs=epochs,
                max_length=max_length,
                learning_rate=2e-4,
                logging_steps=10,
                save_strategy="no",
                report_to=[],
                bf16=cuda,
                disable_tqdm=True,
                seed=0,
            ),
            train_dataset=load_dataset("json", data_files=data, split="train"),
            processing_class=tokenizer,
            peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        started = time.perf_counter()
        trainer.train()
        runtime = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(json.dumps({"train_runtime_s": runtime, "peak_memory_bytes": int(peak)}))


if __name__ == "__main__":
    main()
