"""The dashboard's static page (service/api/dashboard.py), served by the real app without starting
it: no key, no database, no engine needed to load the page. What the page does in a browser is
tests/e2e/test_dashboard.py's business."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.dashboard import ASSETS, STATIC_DIR
from service.app import create_app
from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def http() -> TestClient:
    # A server that requires a key on /v1: the page itself must still load without one. Not entered
    # as a context manager, so the lifespan (database, engines) never starts.
    return TestClient(create_app(Settings(api_key=SecretStr("sk-unit-dashboard"))))


def test_the_bare_path_redirects_relatively_to_the_page(http: TestClient) -> None:
    response = http.get("/dashboard", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "dashboard/"


def test_the_page_is_served_as_html_with_a_strict_policy(http: TestClient) -> None:
    response = http.get("/dashboard/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == (STATIC_DIR / "index.html").read_text()
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("asset", "content_type"),
    [("dashboard.js", "text/javascript; charset=utf-8"), ("dashboard.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_with_their_content_type(http: TestClient, asset: str, content_type: str) -> None:
    response = http.get(f"/dashboard/{asset}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (STATIC_DIR / asset).read_bytes()


def test_every_file_the_page_loads_is_served_and_nothing_comes_from_elsewhere(http: TestClient) -> None:
    page = (STATIC_DIR / "index.html").read_text()
    references = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    local = [ref for ref in references if not ref.startswith("data:")]
    assert sorted(local) == sorted(ASSETS)  # relative names only: no CDN, no absolute path
    for ref in local:
        assert http.get(f"/dashboard/{ref}").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/nope.js",
        "/dashboard/index.html",  # the page is served at /dashboard/ only
        "/dashboard/..%2Fapi%2Fdashboard.py",
        "/dashboard/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/dashboard/../app.py",
        "/dashboard/a/b.js",
    ],
)
def test_unknown_paths_are_a_plain_404(http: TestClient, path: str) -> None:
    response = http.get(path, follow_redirects=False)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["message"]
    for leak in (str(STATIC_DIR), str(ROOT), "service/", "Traceback"):
        assert leak not in response.text


def test_the_script_never_parses_html_nor_stores_the_key_outside_the_session() -> None:
    script = (STATIC_DIR / "dashboard.js").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code, f"{sink}: API text must reach the page as text nodes only"
    for store in ("localStorage", "document.cookie", "indexedDB"):
        assert store not in code, f"{store}: the key lives in sessionStorage only"
    assert "sessionStorage" in code


def test_a_package_install_carries_every_dashboard_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["service"]
    files = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.iterdir() if p.is_file()]
    assert files
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), f"{name} is not package data"
