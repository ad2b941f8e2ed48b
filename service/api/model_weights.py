"""Getting a model's weights out and in (issue 16; service/weights/): opentune extensions kept
under /v1/models, included before service/api/models.py, whose `{model:path}` routes would take
these paths."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import StreamingResponse

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.errors import ErrorResponse
from service.protocol.models import Model

router = APIRouter(prefix="/models", tags=["models"])


@router.post("/import")
async def import_model(
    c: ComponentsDep,
    who: PrincipalDep,
    file: Annotated[UploadFile, File(description="A PEFT LoRA adapter folder, zipped.")],
    base_model: Annotated[str, Form(description="The served base model it was trained on.")],
    suffix: Annotated[str | None, Form(description="Up to 64 letters, digits, '-', '_', '.'.")] = None,
) -> Model:
    """Import a LoRA adapter as a model of your organization, `ft:{base}:{org}:{suffix}:{id}`,
    once it is known to be servable on `base_model`."""
    return await c.adapter_imports.import_adapter(
        who.organization_id, file.file, file.filename, base_model, suffix
    )


@router.get(
    "/{model:path}/adapter",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The adapter, zipped."},
        403: {"model": ErrorResponse, "description": "A model shared with your organization, not owned."},
    },
)
def download_adapter(c: ComponentsDep, who: PrincipalDep, model: str) -> StreamingResponse:
    """A fine-tuned model's (or checkpoint's, or imported model's) LoRA adapter as a zip: what
    `peft.PeftModel.from_pretrained` and `vllm serve --lora-modules` load once unzipped, with
    its tokenizer and a model card."""
    archive = c.adapter_downloads.archive(who.organization_id, model)
    disposition = f'attachment; filename="{archive.filename}"'
    return StreamingResponse(
        archive.chunks, media_type="application/zip", headers={"content-disposition": disposition}
    )
