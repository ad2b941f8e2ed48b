from fastapi import APIRouter

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.common import DeletedObject
from service.protocol.models import Model, ModelList

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
def list_models(c: ComponentsDep, who: PrincipalDep) -> ModelList:
    return c.catalog.list(who.organization_id)


# `:path` because model names may contain '/' (hub ids), which the SDK sends as %2F.
@router.get("/{model:path}")
def retrieve_model(c: ComponentsDep, who: PrincipalDep, model: str) -> Model:
    return c.catalog.resolve(who.organization_id, model).to_wire()


@router.delete("/{model:path}")
async def delete_model(c: ComponentsDep, who: PrincipalDep, model: str) -> DeletedObject:
    """Delete a fine-tuned model or checkpoint: unloaded from the engine, its files removed."""
    return await c.catalog.delete(who.organization_id, model)
