from pathlib import Path

from service.app import create_app
from service.config import Settings
from service.openapi import render

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_is_up_to_date() -> None:
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == render(create_app(Settings())), "openapi.yaml is stale: run `make openapi`"
