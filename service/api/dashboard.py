"""`GET /dashboard/`: the web dashboard, one static page (service/dashboard/) that calls the public
/v1 API from the browser with the key the user typed in. Outside /v1 and open: the page holds no
data, and every call it makes needs the key.

Only the page's own files are served, by name from a fixed table: no path from the request ever
reaches the file system, so `../` and the like are simply not found.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard"
INDEX = "index.html"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# The page loads nothing from elsewhere and runs no inline script: even if some API text slipped
# into the page as markup, the browser would not run it.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Small files: always revalidated, so an upgraded server never runs with a stale script.
    "cache-control": "no-cache",
}

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


@router.get("")
def dashboard_root() -> RedirectResponse:
    # Relative, so that the page and its relative asset and API URLs also work behind a proxy
    # that serves the gateway under a path prefix.
    return RedirectResponse("dashboard/", status_code=307)


@router.get("/")
def dashboard_page() -> FileResponse:
    return _file(INDEX, "text/html; charset=utf-8")


@router.get("/{asset}")
def dashboard_asset(asset: str) -> FileResponse:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise NotFound("The dashboard has no such file.")
    return _file(asset, media_type)


def _file(name: str, media_type: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
