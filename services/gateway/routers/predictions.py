"""Predictions: upload a photo, get every face's expression; the caller's history and annotated images.

An upload is checked here first (header only: size, format, dimensions, frames), then the inference
service decodes and classifies it, the reports service stores the result, and the auth service counts
the analysis. Nothing is stored for a refused upload."""
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fer.v1 import auth_pb2, common_pb2, inference_pb2, reports_pb2
from ferkit import images
from ferkit.vision import CLASSES
from services.gateway.security import current_user
from services.gateway.upstreams import upstream

router = APIRouter(prefix="/predictions", tags=["predictions"])
MAX_NOTES = 2000
# REST values of the `mode` form field -> the inference service's FaceMode.
MODES = {"detect": inference_pb2.FACE_MODE_DETECT, "face": inference_pb2.FACE_MODE_FACE}


class FaceOut(BaseModel):
    box: list[int] = Field(description="[x, y, width, height] in pixels of the uploaded image.")
    label: str = Field(description="The most likely expression (lower-case class name).")
    scores: dict[str, float] = Field(description="Probability of each expression; they sum to 1.")
    detection_score: float = Field(description="The detector's confidence; 0 when the whole image was taken as one face.")
    uncertain: bool = Field(
        default=False,
        description="The top score is below the model's threshold: the label is the best guess, not a confident answer.",
    )


class ModelOut(BaseModel):
    name: str
    version: int


class TimingsOut(BaseModel):
    decode_ms: float
    detect_ms: float
    infer_ms: float
    annotate_ms: float
    total_ms: float


class PredictionOut(BaseModel):
    id: str
    created_at: datetime
    faces: list[FaceOut]
    model: ModelOut
    timings: TimingsOut
    annotated_url: str
    message: str = Field(description="A remark for the user, e.g. when no face was found; empty otherwise.")
    notes: str
    filename: str
    image_width: int
    image_height: int

    @classmethod
    def from_result(cls, result: reports_pb2.Result, request: Request) -> "PredictionOut":
        classes = list(result.model.classes) or list(CLASSES)
        return cls(
            id=result.id,
            created_at=result.created_at.ToDatetime(timezone.utc),
            faces=[
                FaceOut(
                    box=[f.box.x, f.box.y, f.box.width, f.box.height],
                    label=f.label,
                    scores={name: round(float(p), 6) for name, p in zip(classes, f.scores)},
                    detection_score=round(float(f.detection_score), 4),
                    uncertain=f.uncertain,
                )
                for f in result.faces
            ],
            model=ModelOut(name=result.model.name, version=result.model.version),
            timings=TimingsOut(
                decode_ms=result.timings.decode_ms,
                detect_ms=result.timings.detect_ms,
                infer_ms=result.timings.infer_ms,
                annotate_ms=result.timings.annotate_ms,
                total_ms=result.timings.total_ms,
            ),
            annotated_url=str(request.url_for("get_annotated_image", prediction_id=result.id).path),
            message=result.message,
            notes=result.notes,
            filename=result.filename,
            image_width=result.image_width,
            image_height=result.image_height,
        )


class PredictionPage(BaseModel):
    items: list[PredictionOut]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last page.")
    total: int


@router.post("", status_code=201, response_model=PredictionOut, responses={413: {}, 415: {}, 422: {}, 503: {}})
async def create_prediction(
    request: Request,
    file: UploadFile = File(description="A photo (JPEG, PNG, WebP, BMP, TIFF or GIF)."),
    notes: str = Form("", max_length=MAX_NOTES),
    mode: Literal["detect", "face"] = Form(
        "detect",
        description="detect: find every face (a small image, such as a 48x48 face crop, is taken as one face); "
        "face: the whole image is one face (a face crop or a tight portrait).",
    ),
    user: auth_pb2.User = Depends(current_user),
) -> PredictionOut:
    inference, reports = upstream(request, "inference"), upstream(request, "reports")
    data = await file.read()
    limits = images.ImageLimits(max_bytes=request.app.state.settings.max_upload_bytes)
    try:
        info = await run_in_threadpool(images.probe, data, limits)
    except images.ImageError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    reply = await inference.PredictImage(inference_pb2.PredictImageRequest(image=data, annotate=True, mode=MODES[mode]))
    saved = await reports.SaveResult(
        reports_pb2.SaveResultRequest(
            owner_id=user.id,
            notes=notes,
            filename=(file.filename or "")[:255],
            original_image=data,
            original_content_type=info.content_type,
            annotated_png=reply.annotated_png,
            model=reply.model,
            faces=reply.faces,
            timings=reply.timings,
            image_width=reply.image_width,
            image_height=reply.image_height,
            message=reply.message,
        )
    )
    await request.app.state.upstreams.auth.RecordUsage(auth_pb2.RecordUsageRequest(user_id=user.id, count=1))
    return PredictionOut.from_result(saved, request)


@router.get("", response_model=PredictionPage)
async def list_predictions(
    request: Request,
    page_size: int = Query(20, ge=1, le=100),
    page_token: str = Query("", max_length=512),
    user: auth_pb2.User = Depends(current_user),
) -> PredictionPage:
    """The caller's history, newest first."""
    page = await upstream(request, "reports").ListResults(
        reports_pb2.ListResultsRequest(owner_id=user.id, page=common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    )
    return PredictionPage(
        items=[PredictionOut.from_result(r, request) for r in page.results],
        next_page_token=page.page.next_page_token,
        total=page.page.total,
    )


@router.get("/{prediction_id}", response_model=PredictionOut, responses={404: {}})
async def get_prediction(prediction_id: str, request: Request, user: auth_pb2.User = Depends(current_user)) -> PredictionOut:
    result = await upstream(request, "reports").GetResult(reports_pb2.GetResultRequest(owner_id=user.id, id=prediction_id))
    return PredictionOut.from_result(result, request)


@router.get("/{prediction_id}/annotated.png", response_class=Response, responses={200: {"content": {"image/png": {}}}, 404: {}})
async def get_annotated_image(prediction_id: str, request: Request, user: auth_pb2.User = Depends(current_user)) -> Response:
    image = await upstream(request, "reports").GetAnnotatedImage(reports_pb2.GetResultRequest(owner_id=user.id, id=prediction_id))
    return Response(
        image.content,
        media_type=image.content_type or "image/png",
        headers={"Content-Disposition": f'inline; filename="{image.filename or "annotated.png"}"', "Cache-Control": "private, max-age=3600"},
    )
