"""LoRA settings from job metadata: only what the engine can serve is accepted."""

import pytest

from service.errors import InvalidRequest
from service.jobs.training_options import parse_training_options


def test_defaults_without_metadata() -> None:
    options = parse_training_options(None, max_lora_rank=64)
    assert (options.lora.r, options.lora.alpha, options.max_seq_length) == (16, 32, 2048)
    assert options.lora.target_modules == "all-linear"


def test_valid_options_are_applied() -> None:
    options = parse_training_options(
        {
            "team": "x",
            "opentune.lora_rank": "32",
            "opentune.lora_dropout": "0.1",
            "opentune.lora_target_modules": "v_proj, q_proj",
            "opentune.max_seq_length": "4096",
        },
        max_lora_rank=64,
    )
    assert (options.lora.r, options.lora.alpha, options.lora.dropout) == (32, 64, 0.1)
    assert options.lora.target_modules == ["q_proj", "v_proj"]
    assert options.max_seq_length == 4096


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"opentune.lora_rank": "12"}, "cannot be served"),  # not one of vLLM's ranks
        ({"opentune.lora_rank": "128"}, "max LoRA rank 64"),  # above the engine's max rank
        ({"opentune.lora_rank": "big"}, "must be an integer"),
        ({"opentune.lora_target_modules": "lm_head"}, "cannot be served"),
        ({"opentune.lora_target_modules": "embed_tokens,q_proj"}, "cannot be served"),
        ({"opentune.lora_dropout": "1.5"}, "dropout"),
        ({"opentune.packing_magic": "1"}, "Unknown training option"),
    ],
)
def test_unservable_or_unknown_options_are_refused(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_training_options(metadata, max_lora_rank=64)
    assert message in err.value.message
    assert err.value.param == f"metadata.{next(iter(metadata))}"
