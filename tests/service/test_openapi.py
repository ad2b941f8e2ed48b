from pathlib import Path

from service.openapi import render

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_is_up_to_date() -> None:
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == render(), "openapi.yaml is stale: run `make openapi`"
