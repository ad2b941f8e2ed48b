"""The API description: generated from the app, then told the truth about errors and auth.

FastAPI documents a 422 `HTTPValidationError` for every operation with parameters; opentune answers
400 with OpenAI's error envelope instead (service/errors.py), needs a bearer key on /v1, and may
answer 401 or 404. `opentune openapi > openapi.yaml` writes it (`make openapi`).
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.protocol.errors import ErrorResponse

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_ERRORS = {
    "400": "Invalid request (OpenAI's error envelope; `param` names the field).",
    "401": "Missing or wrong API key.",
    "404": "No such object, or it belongs to another organization.",
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    components["securitySchemes"] = {"ApiKeyAuth": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path.startswith("/v1"):
                operation["security"] = [{"ApiKeyAuth": []}]
                for status, description in _ERRORS.items():
                    responses.setdefault(
                        status,
                        {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}},
                    )
    app.openapi_schema = schema
    return schema


def render(app: FastAPI) -> str:
    """The description as YAML (`opentune openapi > openapi.yaml`, `make openapi`)."""
    return yaml.safe_dump(app.openapi(), sort_keys=False, allow_unicode=True)
