"""Batches: many photos in one upload (repeated `files`, a ZIP `archive`, or both), analysed in the
background by the reports service; each photo becomes a prediction in the caller's history, counted
like a single upload.

Here, before anything is sent: the count and the bytes are capped, the archive is read in memory
(services/gateway/archives.py), and every photo gets the same header check as POST /predictions. A file
that is not a usable photo does not fail the batch: it becomes an item with its reason. A batch with no
usable photo at all is a 422."""
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fer.v1 import common_pb2, reports_pb2
from ferkit import images
from ferkit.limits import ARCHIVE_MAX_MEMBERS, ARCHIVE_MAX_RATIO, NOTES_MAX_CHARS
from services.gateway.archives import ArchiveError, ArchiveLimits, Member, read_members
from services.gateway.config import Settings
from services.gateway.deps import CurrentUser, ReportsStub, SettingsDep
from services.gateway.openapi import errors
from services.gateway.responses import conflict_on_precondition, file_response
from services.gateway.routers.predictions import MODES
from services.gateway.schemas import Page, Progress, from_message

router = APIRouter(prefix="/batches", tags=["batches"])
# How many skipped files a 422 for "no usable photo" names (the rest are counted).
REASONS_SHOWN = 3


class Accepted(BaseModel):
    id: str
    status: str = Field(description="queued: poll GET /batches/{id} until done (or failed).")


class QueuedItem(BaseModel):
    filename: str
    status: Literal["queued"]


class DoneItem(BaseModel):
    filename: str
    status: Literal["done"]
    prediction_id: str = Field(description="The prediction made from this photo (GET /predictions/{id}).")
    faces: int = Field(description="Faces found in the photo.")


class FailedItem(BaseModel):
    filename: str
    status: Literal["failed"]
    error: str = Field(description="Why this file was skipped or its analysis failed.")


BatchItemOut = Annotated[QueuedItem | DoneItem | FailedItem, Field(discriminator="status")]


def item_out(item: reports_pb2.BatchItem) -> QueuedItem | DoneItem | FailedItem:
    if item.status == "done":
        return DoneItem(filename=item.filename, status="done", prediction_id=item.result_id, faces=item.faces)
    if item.status == "failed":
        return FailedItem(filename=item.filename, status="failed", error=item.error or "failed")
    return QueuedItem(filename=item.filename, status="queued")


class BatchSummaryOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"] = Field(
        description="done: every item is finished (a failed photo is an item's error); failed: the batch itself could not run.")
    progress: Progress
    failed: int = Field(description="Items that failed or were skipped.")
    error: str | None = Field(description="Why the batch failed, when it did.")
    notes: str
    created_at: datetime
    updated_at: datetime
    csv_url: str = Field(description="One row per face of every analysed photo (GET it once the batch is done).")

    @classmethod
    def summary_fields(cls, batch: reports_pb2.Batch, request: Request) -> dict:
        return {
            "progress": Progress(done=batch.done, total=batch.total),
            "error": batch.error or None,
            "csv_url": str(request.url_for("get_batch_csv", batch_id=batch.id).path),
        }

    @classmethod
    def from_proto(cls, batch: reports_pb2.Batch, request: Request) -> "BatchSummaryOut":
        return from_message(cls, batch, **cls.summary_fields(batch, request))


class BatchOut(BatchSummaryOut):
    items: list[BatchItemOut] = Field(
        description="The photos in upload order (the files, then the archive's members), then the files skipped on upload.")

    @classmethod
    def from_proto(cls, batch: reports_pb2.Batch, request: Request) -> "BatchOut":
        return from_message(cls, batch, items=[item_out(item) for item in batch.items], **cls.summary_fields(batch, request))


class BatchPage(Page[BatchSummaryOut]):
    pass


def too_large(message: str) -> HTTPException:
    return HTTPException(status_code=413, detail=message)


def sort_photos(candidates: list[Member], limits: images.ImageLimits) -> tuple[list[reports_pb2.BatchPhoto], list[reports_pb2.BatchItem]]:
    """Each candidate's header checked as an upload's is: (photos to analyse, items skipped with why)."""
    photos, skipped = [], []
    for member in candidates:
        if member.data is None:
            skipped.append(reports_pb2.BatchItem(filename=member.name, status="failed", error=member.error or "skipped"))
            continue
        try:
            info = images.probe(member.data, limits)
        except images.ImageError as exc:
            skipped.append(reports_pb2.BatchItem(filename=member.name, status="failed", error=str(exc)))
            continue
        photos.append(reports_pb2.BatchPhoto(filename=member.name, image=member.data, content_type=info.content_type))
    return photos, skipped


async def read_uploads(files: list[UploadFile], settings: Settings) -> tuple[list[Member], int]:
    """The uploaded files as candidates (one over the per-image limit is skipped unread), and the bytes read."""
    candidates, total = [], 0
    for index, upload in enumerate(files, start=1):
        name = (upload.filename or f"file-{index}")[:255]
        size = upload.size if upload.size is not None else 0
        if size > settings.max_upload_bytes:
            candidates.append(Member(name, error=f"the image is larger than {settings.max_upload_bytes} bytes"))
            continue
        data = await upload.read()
        total += len(data)
        if total > settings.batch_max_bytes:
            raise too_large(f"the photos of the batch are larger than {settings.batch_max_bytes} bytes in all")
        candidates.append(Member(name, data=data))
    return candidates, total


@router.post("", status_code=202, response_model=Accepted, responses=errors(413))
async def create_batch(
    request: Request,
    response: Response,
    user: CurrentUser,
    settings: SettingsDep,
    reports: ReportsStub,
    files: list[UploadFile] = File(default=[], description="Photos (JPEG, PNG, WebP, BMP, TIFF or GIF), the field repeated."),
    archive: UploadFile | None = File(default=None, description="A ZIP of photos; read in memory, never unpacked to disk."),
    notes: str = Form("", max_length=NOTES_MAX_CHARS),
    mode: Literal["detect", "face"] = Form("detect", description="As for POST /predictions: detect faces, or each photo is one face."),
) -> Accepted:
    """Accepts up to `batch_max_photos` files (uploaded files and archive members together) and
    `batch_max_bytes` of photos (GET /limits); more is a 413. A file that is not a usable photo (not an
    image, too large, a path outside the archive, a ZIP bomb...) becomes a failed item with its reason;
    a batch without a single usable photo is a 422."""
    if not files and archive is None:
        raise HTTPException(status_code=422, detail="send photos as repeated `files` fields, a ZIP as `archive`, or both")
    if len(files) > settings.batch_max_photos:
        raise too_large(f"the batch holds {len(files)} files; at most {settings.batch_max_photos} are accepted")
    candidates, used = await read_uploads(files, settings)
    if archive is not None:
        await archive.seek(0)
        limits = ArchiveLimits(max_members=ARCHIVE_MAX_MEMBERS, max_member_bytes=settings.max_upload_bytes,
                               max_total_bytes=settings.batch_max_bytes, max_ratio=ARCHIVE_MAX_RATIO)
        try:
            candidates += await run_in_threadpool(read_members, archive.file, limits, used)
        except ArchiveError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    if len(candidates) > settings.batch_max_photos:
        raise too_large(f"the batch holds {len(candidates)} files; at most {settings.batch_max_photos} are accepted")
    photos, skipped = await run_in_threadpool(sort_photos, candidates, images.ImageLimits(max_bytes=settings.max_upload_bytes))
    if not photos:
        reasons = "; ".join(f"{item.filename}: {item.error}" for item in skipped[:REASONS_SHOWN])
        more = f" (and {len(skipped) - REASONS_SHOWN} more)" if len(skipped) > REASONS_SHOWN else ""
        raise HTTPException(status_code=422, detail=f"the batch has no usable photo: {reasons}{more}")
    batch = await reports.CreateBatch(
        reports_pb2.CreateBatchRequest(owner_id=user.id, notes=notes, photos=photos, mode=MODES[mode], skipped=skipped)
    )
    response.headers["Location"] = str(request.url_for("get_batch", batch_id=batch.id).path)
    return Accepted(id=batch.id, status=batch.status)


@router.get("", response_model=BatchPage)
async def list_batches(
    request: Request,
    user: CurrentUser,
    reports: ReportsStub,
    page_size: int = Query(20, ge=1, le=100),
    page_token: str = Query("", max_length=512),
) -> BatchPage:
    """The caller's batches, newest first (without their items: GET /batches/{id} has them)."""
    page = await reports.ListBatches(
        reports_pb2.ListBatchesRequest(owner_id=user.id, page=common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    )
    return BatchPage.of([BatchSummaryOut.from_proto(batch, request) for batch in page.batches], page.page)


@router.get("/{batch_id}", response_model=BatchOut, responses=errors(404))
async def get_batch(batch_id: str, request: Request, user: CurrentUser, reports: ReportsStub) -> BatchOut:
    batch = await reports.GetBatch(reports_pb2.GetBatchRequest(owner_id=user.id, id=batch_id))
    return BatchOut.from_proto(batch, request)


@router.get("/{batch_id}/results.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}, **errors(404, 409)})
async def get_batch_csv(batch_id: str, user: CurrentUser, reports: ReportsStub) -> Response:
    """One row per face: filename, face index, box, label and the seven scores; a photo without a face
    has one row with an empty label."""
    csv = await conflict_on_precondition(reports.GetBatchCsv(reports_pb2.GetBatchRequest(owner_id=user.id, id=batch_id)))
    return file_response(csv.content, csv.content_type or "text/csv; charset=utf-8", csv.filename, default="batch.csv",
                         disposition="attachment")
