"""`python -m service.openapi > openapi.yaml`: the API description, generated from the app itself."""

from __future__ import annotations

import sys
from typing import Any

import yaml

from service.app import create_app
from service.config import Settings


def openapi_document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def render() -> str:
    return yaml.safe_dump(openapi_document(), sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(render())
