"""The model registry: every version with its metadata and published files (any logged-in user); load,
promote and roll back (administrators)."""
import html
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from markdown_it import MarkdownIt
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse, Response

from fer.v1 import common_pb2, inference_pb2
from services.gateway.deps import AdminUser, CurrentUser, ModelsStub
from services.gateway.openapi import errors
from services.gateway.responses import file_response
from services.gateway.schemas import from_message

router = APIRouter(prefix="/models", tags=["models"])
# A version number as the registry stores it (int64 on the wire): a larger one is a 422, not a failed call.
VersionNumber = Annotated[int, Path(ge=1, le=2**63 - 1)]
MarkdownFormat = Annotated[Literal["html", "raw"], Query(alias="format", description="html: rendered (the default); raw: the markdown.")]
# CommonMark and its tables, with raw HTML off: a report's text is escaped, never markup, and links keep
# markdown-it's own refusal of javascript:, vbscript: and file: URLs.
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
# The rendered page runs nothing and loads nothing but images of its own origin (the confusion matrix).
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=3600",
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:.25rem .5rem}}img{{max-width:100%}}</style>
</head><body>
{body}</body></html>
"""


class ModelVersionOut(BaseModel):
    name: str
    version: int
    state: str = Field(description="available (on disk), loading, ready (served by Triton) or unavailable.")
    promoted: bool = Field(description="Whether this version answers predictions by default.")
    metadata: dict[str, Any] = Field(description="The version's metadata.json: classes, input, metrics, training config.")

    @classmethod
    def from_proto(cls, version: inference_pb2.ModelVersion) -> "ModelVersionOut":
        try:
            metadata = json.loads(version.metadata_json) if version.metadata_json else {}
        except json.JSONDecodeError:
            metadata = {}
        return from_message(cls, version, metadata=metadata)


class ModelList(BaseModel):
    models: list[ModelVersionOut]


@router.get("", response_model=ModelList)
async def list_models(user: CurrentUser, models: ModelsStub) -> ModelList:
    listed = await models.ListModels(common_pb2.Empty())
    return ModelList(models=[ModelVersionOut.from_proto(v) for v in listed.versions])


@router.post("/{name}/versions/{version:int}:promote", response_model=ModelVersionOut, responses=errors(400, 404))
async def promote_version(name: str, version: VersionNumber, admin: AdminUser, models: ModelsStub) -> ModelVersionOut:
    """Loads the version (if needed) and makes it the one that answers by default."""
    return ModelVersionOut.from_proto(await models.PromoteModel(inference_pb2.ModelVersionRequest(name=name, version=version)))


@router.post("/{name}/versions/{version:int}:load", response_model=ModelVersionOut, responses=errors(400, 404))
async def load_version(name: str, version: VersionNumber, admin: AdminUser, models: ModelsStub) -> ModelVersionOut:
    """Serves a version beside the promoted one (ask for it by number), e.g. to compare before promoting."""
    return ModelVersionOut.from_proto(await models.LoadModel(inference_pb2.ModelVersionRequest(name=name, version=version)))


@router.post("/{name}:rollback", response_model=ModelVersionOut, responses=errors(400, 404))
async def rollback(name: str, admin: AdminUser, models: ModelsStub) -> ModelVersionOut:
    """Serves the previously promoted version again."""
    return ModelVersionOut.from_proto(await models.RollbackModel(inference_pb2.RollbackModelRequest(name=name)))


async def _model_file(models, name: str, version: int, file: str) -> inference_pb2.ModelFile:
    return await models.GetModelFile(inference_pb2.ModelFileRequest(name=name, version=version, file=file))


def _markdown_response(found: inference_pb2.ModelFile, form: str, filename: str, title: str) -> Response:
    if form == "raw":
        return file_response(found.content, found.content_type, filename, default=filename)
    body = MARKDOWN.render(found.content.decode("utf-8", errors="replace"))
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), headers=HTML_HEADERS)


@router.get("/{name}/versions/{version:int}/confusion_matrix.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **errors(404)})
async def confusion_matrix(name: str, version: VersionNumber, user: CurrentUser, models: ModelsStub) -> Response:
    """The confusion matrix the version was evaluated with (rows: true class, columns: predicted)."""
    found = await _model_file(models, name, version, "confusion_matrix.png")
    return file_response(found.content, found.content_type, f"{name}-{version}-confusion_matrix.png", default="confusion_matrix.png")


@router.get("/{name}/versions/{version:int}/report", response_class=Response,
            responses={200: {"content": {"text/html": {}, "text/markdown": {}}}, **errors(404)})
async def evaluation_report(name: str, version: VersionNumber, user: CurrentUser, models: ModelsStub,
                            form: MarkdownFormat = "html") -> Response:
    """The version's evaluation report (report.md): accuracy and macro-F1 per split, per-class figures,
    published results to compare with."""
    found = await _model_file(models, name, version, "report.md")
    return _markdown_response(found, form, f"{name}-{version}-report.md", f"Evaluation report: {name} version {version}")


@router.get("/{name}/versions/{version:int}/card", response_class=Response,
            responses={200: {"content": {"text/html": {}, "text/markdown": {}}}, **errors(404)})
async def model_card(name: str, version: VersionNumber, user: CurrentUser, models: ModelsStub,
                     form: MarkdownFormat = "html") -> Response:
    """The version's model card (MODEL_CARD.md): intended use, data, figures, calibration, limits."""
    found = await _model_file(models, name, version, "MODEL_CARD.md")
    return _markdown_response(found, form, f"{name}-{version}-MODEL_CARD.md", f"Model card: {name} version {version}")
