"""The models file and the single-model flags (service/engine/models_file.py): how many engines
each base model gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings
from service.engine.models_file import BaseModelConfig, configured_base_models


def test_replicas_and_urls_add_up(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        "  - {name: a, model: m}\n"
        "  - {name: b, model: m, replicas: 3}\n"
        "  - {name: c, model: m, engine_urls: [http://x:1, http://y:1]}\n"
        "  - {name: d, model: m, engine_url: http://z:1, engine_urls: [http://x:1], replicas: 1}\n"
    )
    configs = configured_base_models(Settings(data_dir=tmp_path, models_file=models, engine_api_key="k"))
    assert [(c.managed_replicas, c.urls) for c in configs] == [
        (1, []),
        (3, []),
        (0, ["http://x:1", "http://y:1"]),
        (1, ["http://z:1", "http://x:1"]),
    ]
    assert all(c.engine_api_key and c.engine_api_key.get_secret_value() == "k" for c in configs)


def test_the_flags_give_one_model_on_managed_replicas_or_one_url(tmp_path: Path) -> None:
    (one,) = configured_base_models(Settings(data_dir=tmp_path, model="m", engine_replicas=2))
    assert (one.managed_replicas, one.urls) == (2, [])
    (by_url,) = configured_base_models(Settings(data_dir=tmp_path, model="m", engine_url="http://e:1"))
    assert (by_url.managed_replicas, by_url.urls) == (0, ["http://e:1"])


@pytest.mark.parametrize(
    "fields",
    [
        {"replicas": 0},
        {"engine_urls": ["http://x:1", "http://x:1"]},
        {"engine_url": "http://x:1", "engine_urls": ["http://x:1"]},
        {"replicas": -1},
    ],
)
def test_a_model_nothing_serves_or_an_engine_twice_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BaseModelConfig(name="a", model="m", **fields)  # type: ignore[arg-type]
