import re

from service.jobs.hyperparameters import default_epochs, resolve_hyperparameters
from service.jobs.naming import checkpoint_model_name, fine_tuned_model_name


def test_fine_tuned_name_has_openai_shape() -> None:
    name = fine_tuned_model_name("Qwen/Qwen2.5-0.5B-Instruct", "acme", "recipes")
    assert re.fullmatch(r"ft:Qwen/Qwen2\.5-0\.5B-Instruct:acme:recipes:[A-Za-z0-9]{8}", name)


def test_fine_tuned_name_without_suffix_has_empty_slot() -> None:
    assert fine_tuned_model_name("base", "acme", None, model_id="AbCd1234") == "ft:base:acme::AbCd1234"


def test_names_are_not_reused() -> None:
    assert len({fine_tuned_model_name("b", "o", "s") for _ in range(200)}) == 200


def test_checkpoint_name() -> None:
    assert checkpoint_model_name("ft:b:o:s:AbCd1234", 30) == "ft:b:o:s:AbCd1234:ckpt-step-30"


def test_auto_epochs_follow_openai_rule() -> None:
    assert default_epochs(10) == 10  # tiny sets see about 100 examples
    assert default_epochs(100) == 3
    assert default_epochs(20_000) == 1
    assert default_epochs(1) == 25


def test_resolve_keeps_explicit_values_and_fills_auto() -> None:
    resolved = resolve_hyperparameters({"n_epochs": 2, "batch_size": "auto"}, n_examples=50)
    assert (resolved.n_epochs, resolved.batch_size, resolved.learning_rate_multiplier) == (2, 1, 1.0)
    assert resolved.learning_rate == 2e-4
    assert resolve_hyperparameters({"learning_rate_multiplier": 5}, 50).learning_rate == 1e-3
