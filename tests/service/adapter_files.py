"""Base model folders and LoRA adapter zips for tests of service/weights/, written directly with
numpy and safetensors (no model is loaded): a Llama-shaped base with its linear weights, and an
adapter whose config and tensors can be bent to each way an import can be wrong."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save, save_file

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def linear_shapes(hidden: int, layers: int) -> dict[str, tuple[int, int]]:
    """module path -> (out, in) of a Llama-shaped base: 2 heads of hidden/2, 1 KV head, MLP 2x."""
    head_dim, intermediate = hidden // 2, 2 * hidden
    per_layer = {
        "self_attn.q_proj": (hidden, hidden),
        "self_attn.k_proj": (head_dim, hidden),
        "self_attn.v_proj": (head_dim, hidden),
        "self_attn.o_proj": (hidden, hidden),
        "mlp.gate_proj": (intermediate, hidden),
        "mlp.up_proj": (intermediate, hidden),
        "mlp.down_proj": (hidden, intermediate),
    }
    return {f"model.layers.{i}.{name}": shape for i in range(layers) for name, shape in per_layer.items()}


def write_base(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shapes = linear_shapes(hidden, layers)
    tensors = {f"{module}.weight": np.zeros(shape, np.float16) for module, shape in shapes.items()}
    tensors["model.embed_tokens.weight"] = np.zeros((64, hidden), np.float16)
    save_file(tensors, str(folder / "model.safetensors"))
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "num_hidden_layers": layers}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return folder


def adapter_config(r: int = 8, targets: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "/somewhere/on/a/laptop",
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.05,
        "target_modules": targets or ["q_proj", "v_proj"],
        "bias": "none",
        "modules_to_save": None,
        **overrides,
    }


def adapter_tensors(
    hidden: int = 32, layers: int = 2, r: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj")
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors = {}
    for module, (out, inp) in linear_shapes(hidden, layers).items():
        if module.rsplit(".", 1)[-1] in targets:
            tensors[f"base_model.model.{module}.lora_A.weight"] = rng.standard_normal((r, inp), np.float32)
            tensors[f"base_model.model.{module}.lora_B.weight"] = rng.standard_normal((out, r), np.float32)
    return tensors


def adapter_files(
    config: dict[str, Any] | None = None, tensors: dict[str, np.ndarray] | None = None
) -> dict[str, bytes]:
    """The files of an adapter folder, by name (with a tokenizer)."""
    weights = adapter_tensors() if tensors is None else tensors
    return {
        "adapter_config.json": json.dumps(config or adapter_config()).encode(),
        "adapter_model.safetensors": save(weights),
        "tokenizer_config.json": b'{"model_max_length": 128}',
        "chat_template.jinja": CHAT_TEMPLATE.encode(),
        "README.md": b"# peft's own card, not kept",
    }


def zip_bytes(files: dict[str, bytes], root: str = "", compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """`files` zipped, under the folder `root` (e.g. "my-adapter/") or at the top level."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(root + name, data)
    return buffer.getvalue()
