"""Predictions: upload a photo, get every face's expression; the caller's history and annotated images.

An upload is checked here first (header only: size, format, dimensions, frames), then travels once, to
the reports service, which has the inference service classify it, stores the result and has the auth
service count it (stored and counted, or neither). Nothing is stored for a refused upload. The annotated
image is drawn when it is first asked for, not on the upload's path."""
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fer.v1 import common_pb2, inference_pb2, reports_pb2
from ferkit import images
from ferkit.limits import NOTES_MAX_CHARS
from ferkit.vision import CLASSES
from services.gateway.deps import CurrentUser, ReportsStub, SettingsDep
from services.gateway.openapi import errors
from services.gateway.responses import file_response
from services.gateway.schemas import Page, from_message

router = APIRouter(prefix="/predictions", tags=["predictions"])
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

    @classmethod
    def from_proto(cls, face: common_pb2.FacePrediction, classes: list[str]) -> "FaceOut":
        return from_message(
            cls,
            face,
            box=[face.box.x, face.box.y, face.box.width, face.box.height],
            scores={name: round(float(p), 6) for name, p in zip(classes, face.scores)},
            detection_score=round(float(face.detection_score), 4),
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
        return from_message(
            cls,
            result,
            faces=[FaceOut.from_proto(face, classes) for face in result.faces],
            model=from_message(ModelOut, result.model),
            timings=from_message(TimingsOut, result.timings),
            annotated_url=str(request.url_for("get_annotated_image", prediction_id=result.id).path),
        )


class PredictionPage(Page[PredictionOut]):
    pass


@router.post("", status_code=201, response_model=PredictionOut, responses=errors(404, 413, 415))
async def create_prediction(
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    reports: ReportsStub,
    file: UploadFile = File(description="A photo (JPEG, PNG, WebP, BMP, TIFF or GIF)."),
    notes: str = Form("", max_length=NOTES_MAX_CHARS),
    mode: Literal["detect", "face"] = Form(
        "detect",
        description="detect: find every face (a small image, such as a 48x48 face crop, is taken as one face); "
        "face: the whole image is one face (a face crop or a tight portrait).",
    ),
) -> PredictionOut:
    data = await file.read()
    try:
        info = await run_in_threadpool(images.probe, data, images.ImageLimits(max_bytes=settings.max_upload_bytes))
    except images.ImageError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    # One call: reports has inference classify the photo, stores the result and counts it.
    saved = await reports.AnalyzeImage(
        reports_pb2.AnalyzeImageRequest(
            owner_id=user.id,
            image=data,
            content_type=info.content_type,
            filename=(file.filename or "")[:255],
            notes=notes,
            mode=MODES[mode],
        )
    )
    return PredictionOut.from_result(saved, request)


@router.get("", response_model=PredictionPage)
async def list_predictions(
    request: Request,
    user: CurrentUser,
    reports: ReportsStub,
    page_size: int = Query(20, ge=1, le=100),
    page_token: str = Query("", max_length=512),
) -> PredictionPage:
    """The caller's history, newest first."""
    page = await reports.ListResults(
        reports_pb2.ListResultsRequest(owner_id=user.id, page=common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    )
    return PredictionPage.of([PredictionOut.from_result(result, request) for result in page.results], page.page)


@router.get("/{prediction_id}", response_model=PredictionOut, responses=errors(404))
async def get_prediction(prediction_id: str, request: Request, user: CurrentUser, reports: ReportsStub) -> PredictionOut:
    result = await reports.GetResult(reports_pb2.GetResultRequest(owner_id=user.id, id=prediction_id))
    return PredictionOut.from_result(result, request)


@router.get("/{prediction_id}/annotated.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **errors(400, 404)})
async def get_annotated_image(prediction_id: str, user: CurrentUser, reports: ReportsStub) -> Response:
    image = await reports.GetAnnotatedImage(reports_pb2.GetResultRequest(owner_id=user.id, id=prediction_id))
    return file_response(image.content, image.content_type or "image/png", image.filename, default="annotated.png")
