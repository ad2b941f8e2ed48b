"""Finding the base model's files: a local folder, or a hub id fetched once into the hub cache."""

from __future__ import annotations

from pathlib import Path

from service.errors import ModelUnavailable


def resolve_model_path(model: str) -> Path:
    """A local folder with the model's files, or ModelUnavailable with a one-line reason."""
    local = Path(model).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelUnavailable(f"'{model}' is a folder but has no config.json; it is not a model folder")
        return local.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                model,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
            )
        )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(
            f"cannot load model '{model}' ({type(exc).__name__}: {reason}). Without access to the "
            "Hugging Face hub, pass a local model folder: opentune serve --model /path/to/model"
        ) from exc
