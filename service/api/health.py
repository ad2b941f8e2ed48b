from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import ComponentsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The gateway process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(c: ComponentsDep) -> JSONResponse:
    """Every engine answers: requests can be served."""
    ready = await c.fleet.all_healthy()
    return JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)
