"""Which files of an adapter folder make a servable, portable adapter, wherever it came from (a
trainer's adapter or checkpoint folder, an imported zip)."""

from __future__ import annotations

from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Pickled weights: never loaded (unpickling runs code); an archive with only these is refused.
PICKLED_WEIGHTS = "adapter_model.bin"
MODEL_CARD = "README.md"
# The tokenizer the adapter was trained with, chat template included (trainer/loop.py saves it
# beside the adapter; checkpoints hold it too).
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
    }
)
ADAPTER_FILES = frozenset({ADAPTER_CONFIG, ADAPTER_WEIGHTS}) | TOKENIZER_FILES


def base_reference(name: str, model: str) -> str:
    """What an exported adapter names as its base (`base_model_name_or_path`): the hub id the base
    was loaded from, which anyone can fetch; for a base served from a local folder, its served name
    (a server path means nothing elsewhere and is not the caller's to see)."""
    local = model.startswith(("/", ".", "~")) or Path(model).expanduser().exists()
    return name if local else model
