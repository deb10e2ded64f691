"""PDF and JSON reports on a prediction, a batch or a video: asked for, rendered in the background,
downloaded when done."""
from datetime import datetime
from typing import Literal, Self

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, model_validator

from fer.v1 import reports_pb2
from services.gateway.deps import CurrentUser, ReportsStub
from services.gateway.openapi import errors
from services.gateway.responses import conflict_on_precondition, file_response
from services.gateway.schemas import StrictBody, from_message

router = APIRouter(prefix="/reports", tags=["reports"])
SUBJECTS = ("prediction_id", "batch_id", "video_id")


class ReportIn(StrictBody):
    """What the report is on: exactly one of prediction_id, batch_id and video_id."""

    prediction_id: str | None = Field(None, min_length=1, max_length=64, description="The id of a prediction in the caller's history.")
    batch_id: str | None = Field(None, min_length=1, max_length=64, description="The id of one of the caller's batches.")
    video_id: str | None = Field(None, min_length=1, max_length=64, description="The id of one of the caller's videos.")
    format: Literal["pdf", "json"] = "pdf"

    @model_validator(mode="after")
    def _exactly_one_subject(self) -> Self:
        named = [name for name in SUBJECTS if getattr(self, name) is not None]
        if len(named) != 1:
            raise ValueError(f"name exactly one of {', '.join(SUBJECTS)}" + (f" (got {', '.join(named)})" if named else ""))
        return self


class ReportAccepted(BaseModel):
    id: str
    status: str = Field(description="queued: poll GET /reports/{id} until done (or failed).")


class ReportOut(BaseModel):
    id: str
    prediction_id: str | None = Field(description="What the report is on: one of prediction_id, batch_id and video_id is set.")
    batch_id: str | None
    video_id: str | None
    format: str
    status: Literal["queued", "running", "done", "failed"]
    error: str | None = Field(description="Why the report failed (or why the last attempt did, while it is retried).")
    attempts: int
    created_at: datetime
    updated_at: datetime
    filename: str | None
    size_bytes: int | None
    download_url: str | None

    @classmethod
    def from_proto(cls, report: reports_pb2.Report, request: Request) -> "ReportOut":
        done = report.status == "done"
        return from_message(
            cls,
            report,
            prediction_id=report.result_id or None,
            batch_id=report.batch_id or None,
            video_id=report.video_id or None,
            error=report.error or None,
            filename=report.filename if done else None,
            size_bytes=report.size_bytes if done else None,
            download_url=str(request.url_for("download_report", report_id=report.id).path) if done else None,
        )


@router.post("", status_code=202, response_model=ReportAccepted, responses=errors(404))
async def request_report(body: ReportIn, request: Request, response: Response, user: CurrentUser,
                         reports: ReportsStub) -> ReportAccepted:
    """Asks for a report on one of the caller's predictions, batches or videos; 404 if it is not theirs."""
    report = await reports.RequestReport(
        reports_pb2.RequestReportRequest(owner_id=user.id, result_id=body.prediction_id or "", batch_id=body.batch_id or "",
                                         video_id=body.video_id or "", format=body.format)
    )
    response.headers["Location"] = str(request.url_for("get_report", report_id=report.id).path)
    return ReportAccepted(id=report.id, status=report.status)


@router.get("/{report_id}", response_model=ReportOut, responses=errors(404))
async def get_report(report_id: str, request: Request, user: CurrentUser, reports: ReportsStub) -> ReportOut:
    report = await reports.GetReport(reports_pb2.GetReportRequest(owner_id=user.id, id=report_id))
    return ReportOut.from_proto(report, request)


@router.get(
    "/{report_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "application/json": {}}}, **errors(404, 409)},
)
async def download_report(report_id: str, user: CurrentUser, reports: ReportsStub) -> Response:
    file = await conflict_on_precondition(reports.GetReportFile(reports_pb2.GetReportRequest(owner_id=user.id, id=report_id)))
    return file_response(file.content, file.content_type, file.filename, default="report", disposition="attachment")
