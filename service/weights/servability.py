"""Whether an adapter folder can be served on a base model, decided before anything is stored: a
LoRA config that vLLM implements, a rank the engine accepts, and tensors that fit the base.

Mirrors vLLM's own checks (vllm/lora/peft_helper.py: no DoRA, LoRA bias, modules_to_save, layer
replication, aLoRA, QALoRA or base-modifying inits; rank at most --max-lora-rank) and adds what it
only finds out when loading: every tensor must be a lora_A/lora_B pair on a linear projection that
the base model has (servable modules: service/jobs/training_options.py), shaped for that module's
weight in the base (read from the base's safetensors headers, never its data). Embedding LoRA and
trainable tokens (extra embeddings vLLM cannot load) are refused too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from service.errors import InvalidRequest
from service.jobs.training_options import SERVABLE_TARGET_MODULES
from service.weights.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS

_TENSOR = re.compile(r"base_model\.model\.(?P<module>[A-Za-z0-9_.]+)\.lora_(?P<side>[AB])\.weight")
_PATTERN_KEY = re.compile(r"[A-Za-z0-9_.]+")  # rank_pattern keys: module names, no free regex
_DTYPES = {"F16", "BF16", "F32"}
_SUPPORTED_INITS = {"gaussian", "eva", "orthogonal", "mica", "lora_ga"}  # vLLM's, for string inits


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="file", code="adapter_not_servable")


@dataclass(frozen=True)
class BaseModelShape:
    """A base model's linear layers, as an adapter must fit them."""

    name: str
    linear: dict[str, tuple[int, int]]  # module path -> (out_features, in_features)
    hidden_size: int | None

    @property
    def module_names(self) -> set[str]:
        return {path.rsplit(".", 1)[-1] for path in self.linear}


def base_model_shape(name: str, model_path: Path) -> BaseModelShape:
    linear = _linear_shapes(str(model_path))
    if not linear:
        raise InvalidRequest(
            f"The weights of base model `{name}` cannot be read to check an adapter against them; "
            "adapters cannot be imported onto it.",
            param="base_model",
        )
    try:
        hidden = json.loads((model_path / "config.json").read_text()).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        hidden = None
    return BaseModelShape(name, linear, hidden if isinstance(hidden, int) else None)


@lru_cache(maxsize=16)
def _linear_shapes(model_path: str) -> dict[str, tuple[int, int]]:
    """Every 2-D `.weight` of the base, from its safetensors headers (sharded or not)."""
    folder = Path(model_path)
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = sorted(p.name for p in folder.glob("*.safetensors"))
        shapes: dict[str, tuple[int, int]] = {}
        for file in files:
            with safe_open(str(folder / file), framework="np") as weights:
                for key in weights.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                    shape = weights.get_slice(key).get_shape()
                    if key.endswith(".weight") and len(shape) == 2:
                        shapes[key.removesuffix(".weight")] = (shape[0], shape[1])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return {}
    return shapes


def check_servable(folder: Path, base: BaseModelShape, max_rank: int) -> dict[str, Any]:
    """The adapter's config, once the adapter in `folder` is known to be servable on `base`; a 400
    naming the first problem otherwise."""
    config = _read_config(folder / ADAPTER_CONFIG)
    _check_features(config)
    ranks = _check_ranks(config, max_rank)
    _check_target_modules(config.get("target_modules"), base)
    _check_tensors(folder / ADAPTER_WEIGHTS, base, ranks)
    return config


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        raise _refuse(f"{ADAPTER_CONFIG} is not valid JSON.") from None
    if not isinstance(config, dict):
        raise _refuse(f"{ADAPTER_CONFIG} is not a JSON object.")
    if config.get("peft_type") != "LORA":
        raise _refuse(
            f"{ADAPTER_CONFIG} is not a LoRA config (peft_type is {config.get('peft_type')!r}, not 'LORA')."
        )
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise _refuse(
            f"The adapter's task_type is {config['task_type']!r}; only CAUSAL_LM adapters are served."
        )
    return config


def _check_features(config: dict[str, Any]) -> None:
    """What vLLM does not implement, each refused by name."""
    if config.get("modules_to_save"):
        raise _refuse(
            f"The adapter has modules_to_save {config['modules_to_save']}: fully trained copies of "
            "modules, which vLLM cannot load."
        )
    if config.get("trainable_token_indices"):
        raise _refuse(
            "The adapter trains extra token embeddings (trainable_token_indices), which vLLM cannot load."
        )
    unsupported = {
        "use_dora": "DoRA",
        "lora_bias": "LoRA bias",
        "layer_replication": "layer replication",
        "alora_invocation_tokens": "Activated LoRA",
        "use_qalora": "QALoRA",
        "use_bdlora": "block-diagonal LoRA",
        "target_parameters": "LoRA on parameters (target_parameters)",
    }
    for key, feature in unsupported.items():
        if config.get(key):
            raise _refuse(f"The adapter uses {feature} ({key}), which vLLM does not serve.")
    if config.get("bias", "none") != "none":
        raise _refuse(f"The adapter trains biases (bias={config['bias']!r}), which vLLM does not serve.")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _SUPPORTED_INITS:
        raise _refuse(
            f"The adapter was initialised with {init!r}, which changes the base model's weights; "
            "convert it to a plain LoRA adapter first."
        )
    alpha = config.get("lora_alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0:
        raise _refuse("The adapter's lora_alpha must be a positive number.")


def _check_ranks(config: dict[str, Any], max_rank: int) -> tuple[int, dict[str, int]]:
    """(r, rank_pattern), checked against the engine's max LoRA rank."""
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise _refuse("The adapter's rank r must be a positive integer.")
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict) or not all(
        isinstance(k, str)
        and _PATTERN_KEY.fullmatch(k)
        and isinstance(v, int)
        and not isinstance(v, bool)
        and v >= 1
        for k, v in pattern.items()
    ):
        raise _refuse("The adapter's rank_pattern must map module names to positive integer ranks.")
    highest = max([rank, *pattern.values()])
    if highest > max_rank:
        raise _refuse(
            f"The adapter's LoRA rank {highest} is higher than this server's engine serves "
            f"(max LoRA rank {max_rank})."
        )
    return rank, pattern


def _check_target_modules(targets: object, base: BaseModelShape) -> None:
    if isinstance(targets, str):
        return  # a pattern (or "all-linear"): the tensors say which modules it matched
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise _refuse("The adapter's target_modules must be a list of module names.")
    for target in targets:
        leaf = target.rsplit(".", 1)[-1]
        if leaf not in SERVABLE_TARGET_MODULES:
            raise _refuse(
                f"The adapter targets module {target!r}, which vLLM cannot serve LoRA on; servable: "
                f"{', '.join(sorted(SERVABLE_TARGET_MODULES))}."
            )
        if leaf not in base.module_names:
            raise _refuse(
                f"The adapter targets module {target!r}, which base model `{base.name}` does not have."
            )


def _rank_of(module: str, ranks: tuple[int, dict[str, int]]) -> int:
    """peft's rule (and vLLM's): the first rank_pattern key that ends the module name wins."""
    rank, pattern = ranks
    for key, value in pattern.items():
        if module == key or module.endswith("." + key):
            return value
    return rank


def _check_tensors(path: Path, base: BaseModelShape, ranks: tuple[int, dict[str, int]]) -> None:
    try:
        with safe_open(str(path), framework="np") as weights:
            shapes = {}
            for key in weights.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                tensor = weights.get_slice(key)
                shapes[key] = (tensor.get_shape(), tensor.get_dtype())
    except (SafetensorError, OSError, ValueError) as exc:
        raise _refuse(f"{ADAPTER_WEIGHTS} is not a valid safetensors file ({type(exc).__name__}).") from None
    sides: dict[str, set[str]] = {}
    for key, (shape, dtype) in sorted(shapes.items()):
        match = _TENSOR.fullmatch(key)
        if match is None:
            what = (
                "adapts embeddings (lora_embedding)"
                if "lora_embedding" in key
                else "is not a LoRA A/B weight"
            )
            raise _refuse(f"The adapter's tensor {key[:200]!r} {what}, which vLLM cannot load.")
        module, side = match["module"], match["side"]
        leaf = module.rsplit(".", 1)[-1]
        if leaf not in SERVABLE_TARGET_MODULES:
            raise _refuse(f"The adapter has LoRA weights on {module!r}, which vLLM cannot serve LoRA on.")
        if module not in base.linear:
            raise _refuse(
                f"The adapter has LoRA weights on {module!r}, which base model `{base.name}` does not have."
            )
        if dtype not in _DTYPES:
            raise _refuse(f"The adapter's tensor {key!r} is {dtype}; expected F16, BF16 or F32.")
        out_features, in_features = base.linear[module]
        rank = _rank_of(module, ranks)
        expected = [rank, in_features] if side == "A" else [out_features, rank]
        if list(shape) != expected:
            hidden = f" (hidden size {base.hidden_size})" if base.hidden_size else ""
            raise _refuse(
                f"The adapter's tensor {key!r} has shape {list(shape)}, but base model `{base.name}`{hidden} "
                f"needs {expected} for rank {rank}: the adapter was trained for another base model or rank."
            )
        sides.setdefault(module, set()).add(side)
    if not sides:
        raise _refuse(f"{ADAPTER_WEIGHTS} holds no LoRA weights.")
    for module, found in sides.items():
        if found != {"A", "B"}:
            raise _refuse(f"The adapter has lora_{found.pop()} but not its pair for {module!r}.")
