"""Which base models this server serves, and on which engines.

One base model comes from `--model` / `--served-model-name` / `--engine-url` /
`--engine-replicas`; several from a models file (`--models-file`, JSON or YAML):

    models:
      - name: qwen-0.5b                       # the name clients use
        model: Qwen/Qwen2.5-0.5B-Instruct     # hub id or local folder (the trainer loads it too)
        replicas: 2                           # vLLM engines started and supervised by us
      - name: llama-8b
        model: /models/llama-3.1-8b-instruct
        engine_urls:                          # vLLMs already running (with --enable-lora)
          - http://10.0.0.5:8000
          - http://10.0.0.6:8000
        engine_api_key: sk-engine-secret      # their --api-key (default: OPENTUNE_ENGINE_API_KEY)

A base model has `replicas` managed engines (default 1 when it names no URL, else 0) plus one per
URL; requests for it are spread over them (service/engine/routing.py). Managed engines get a random
key per start; an engine by URL should be started with `--api-key` (or VLLM_API_KEY), since anyone
who can reach an open one can list and load adapters.
"""

from __future__ import annotations

import yaml
from pydantic import BaseModel, Field, SecretStr, model_validator

from service.config import Settings


class BaseModelConfig(BaseModel):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    replicas: int | None = Field(default=None, ge=0, le=64)
    engine_url: str | None = None  # one engine by URL (the same as a one-item engine_urls)
    engine_urls: list[str] = Field(default_factory=list)
    engine_api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _some_engine(self) -> BaseModelConfig:
        if self.managed_replicas + len(self.urls) == 0:
            raise ValueError(f"{self.name}: replicas is 0 and no engine_urls: nothing would serve it")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError(f"{self.name}: an engine URL is listed twice")
        return self

    @property
    def urls(self) -> list[str]:
        """Every engine by URL, in the order given."""
        return ([self.engine_url] if self.engine_url else []) + self.engine_urls

    @property
    def managed_replicas(self) -> int:
        if self.replicas is not None:
            return self.replicas
        return 0 if self.urls else 1


class ModelsFile(BaseModel):
    models: list[BaseModelConfig] = Field(min_length=1)


def configured_base_models(settings: Settings) -> list[BaseModelConfig]:
    if settings.models_file is None:
        return [
            BaseModelConfig(
                name=settings.model_name,
                model=settings.model,
                engine_url=settings.engine_url,
                replicas=None if settings.engine_url else settings.engine_replicas,
                engine_api_key=settings.engine_api_key,
            )
        ]
    loaded = ModelsFile.model_validate(yaml.safe_load(settings.models_file.read_text()))
    names = [m.name for m in loaded.models]
    if len(set(names)) != len(names):
        raise ValueError(f"{settings.models_file}: model names must be unique, got {names}")
    return [
        m.model_copy(update={"engine_api_key": m.engine_api_key or settings.engine_api_key})
        for m in loaded.models
    ]
