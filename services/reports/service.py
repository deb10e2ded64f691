"""The ReportsService gRPC servicer: the results history, report requests, and erasing a deleted account's data."""
import asyncio
import logging

import grpc
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import undefer

from fer.v1 import auth_pb2, common_pb2, inference_pb2, reports_pb2, reports_pb2_grpc
from ferkit import images
from ferkit.db import is_id, to_timestamp
from ferkit.paging import decode_cursor, encode_cursor
from ferkit.vision import CLASSES
from services.reports.annotate import result_png
from services.reports.config import Settings
from services.reports.erasure import erase_owner
from services.reports.metrics import JOBS
from services.reports.models import FORMATS, Report, Result

log = logging.getLogger(__name__)



def result_to_proto(row: Result) -> reports_pb2.Result:
    return reports_pb2.Result(
        id=row.id,
        owner_id=row.owner_id,
        created_at=to_timestamp(row.created_at),
        model=common_pb2.ModelRef(name=row.model_name, version=row.model_version, classes=row.model_classes),
        faces=[
            common_pb2.FacePrediction(
                box=common_pb2.Box(x=f["box"][0], y=f["box"][1], width=f["box"][2], height=f["box"][3]),
                label=f["label"],
                scores=f["scores"],
                detection_score=f.get("detection_score", 0.0),
                uncertain=bool(f.get("uncertain", False)),
            )
            for f in row.faces
        ],
        timings=common_pb2.Timings(**row.timings),
        notes=row.notes,
        filename=row.filename,
        image_width=row.image_width,
        image_height=row.image_height,
        message=row.message,
        has_annotated_image=row.has_annotated_image,
    )


def report_to_proto(row: Report) -> reports_pb2.Report:
    return reports_pb2.Report(
        id=row.id,
        owner_id=row.owner_id,
        result_id=row.result_id,
        format=row.format,
        status=row.status,
        error=row.error,
        attempts=row.attempts,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        filename=row.filename,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
    )


def _faces_from_request(request: reports_pb2.SaveResultRequest, classes: list[str]) -> list[dict]:
    faces = []
    for i, face in enumerate(request.faces):
        if len(face.scores) != len(classes):
            raise ValueError(f"face {i} has {len(face.scores)} scores; the model has {len(classes)} classes")
        if face.box.width <= 0 or face.box.height <= 0:
            raise ValueError(f"face {i} needs a box with a positive width and height")
        faces.append(
            {
                "box": [face.box.x, face.box.y, face.box.width, face.box.height],
                "label": face.label or classes[max(range(len(classes)), key=lambda k: face.scores[k])],
                # float32 on the wire; rounded so the JSON holds what the model said, not binary noise.
                "scores": [round(float(s), 6) for s in face.scores],
                "detection_score": round(float(face.detection_score), 6),
                "uncertain": bool(face.uncertain),
            }
        )
    return faces


class ReportsServicer(reports_pb2_grpc.ReportsServiceServicer):
    def __init__(self, settings: Settings, sessions: async_sessionmaker, dispatcher, inference=None, auth=None) -> None:
        self.settings = settings
        self.sessions = sessions
        # InferenceServiceStub and AuthServiceStub for AnalyzeImage; None where this deployment has none.
        self.inference = inference
        self.auth = auth
        # Hands report ids to the workers: RabbitMQ, or the in-process queue (services.reports.dispatch).
        self.dispatcher = dispatcher

    # --- results history ----------------------------------------------------------------------

    @staticmethod
    async def _owned_or_abort(session, model, owner_id: str, row_id: str, context, *options):
        row = None
        if owner_id and is_id(row_id):
            row = await session.scalar(select(model).where(model.id == row_id, model.owner_id == owner_id).options(*options))
        if row is None:
            # Another owner's row and a missing one look the same.
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{model.__tablename__[:-1]} not found")
        return row

    async def _result_or_abort(self, session, owner_id: str, result_id: str, context, *options) -> Result:
        return await self._owned_or_abort(session, Result, owner_id, result_id, context, *options)

    def _check_input(self, owner_id: str, notes: str, filename: str) -> None:
        """What the caller sends besides the photo; raises ValueError with the reason."""
        if not owner_id:
            raise ValueError("owner_id is required")
        if len(notes) > self.settings.max_notes_chars:
            raise ValueError(f"notes must have at most {self.settings.max_notes_chars} characters")
        if "\x00" in notes or "\x00" in filename:
            raise ValueError("notes and the file name must not contain NUL characters")

    def _new_result(self, owner_id: str, notes: str, filename: str, original: bytes, content_type: str, prediction) -> Result:
        """The row for one analysed photo; `prediction` is a PredictImageResponse or a SaveResultRequest
        (both carry model, faces, timings, image size and message). Raises ValueError on bad input."""
        self._check_input(owner_id, notes, filename)
        classes = list(prediction.model.classes) or list(CLASSES)
        t = prediction.timings
        return Result(
            owner_id=owner_id,
            model_name=prediction.model.name,
            model_version=prediction.model.version,
            model_classes=classes,
            faces=_faces_from_request(prediction, classes),
            timings={
                "decode_ms": t.decode_ms,
                "detect_ms": t.detect_ms,
                "infer_ms": t.infer_ms,
                "annotate_ms": t.annotate_ms,
                "total_ms": t.total_ms,
            },
            notes=notes,
            message=prediction.message,
            filename=filename[:255],
            image_width=prediction.image_width,
            image_height=prediction.image_height,
            original_content_type=content_type[:100],
            original_image=original,
            annotated_png=b"",
            has_annotated_image=bool(original),
        )

    async def SaveResult(self, request, context):
        try:
            row = self._new_result(request.owner_id, request.notes, request.filename, request.original_image,
                                   request.original_content_type, request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        async with self.sessions() as session:
            session.add(row)
            await session.commit()
        return result_to_proto(row)

    async def AnalyzeImage(self, request, context):
        if self.inference is None or self.auth is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this deployment has no inference or auth service to analyse with")
        try:
            # Checked before the photo is analysed: a refused request costs no inference.
            self._check_input(request.owner_id, request.notes, request.filename)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            prediction = await self.inference.PredictImage(inference_pb2.PredictImageRequest(image=request.image, mode=request.mode))
            row = self._new_result(request.owner_id, request.notes, request.filename, request.image, request.content_type, prediction)
            async with self.sessions() as session:
                session.add(row)
                await session.flush()
                # Counted inside the transaction: if the account is gone or auth is down, nothing is stored.
                await self.auth.RecordUsage(auth_pb2.RecordUsageRequest(user_id=request.owner_id, count=1))
                await session.commit()
        except grpc.aio.AioRpcError as exc:
            # The upstream's answer is the caller's answer (a bad image, an unknown model, a deleted account).
            await context.abort(exc.code(), exc.details() or exc.code().name.lower())
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return result_to_proto(row)

    async def GetResult(self, request, context):
        async with self.sessions() as session:
            return result_to_proto(await self._result_or_abort(session, request.owner_id, request.id, context))

    async def ListResults(self, request, context):
        """Newest first, keyset-paginated on (created_at, id): pages stay stable while new results arrive."""
        size = request.page.page_size or self.settings.default_page_size
        if not 0 < size <= self.settings.max_page_size:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be between 1 and {self.settings.max_page_size}")
        query = select(Result).where(Result.owner_id == request.owner_id)
        if request.page.page_token:
            try:
                stamp, row_id = decode_cursor(request.page.page_token)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            query = query.where(or_(Result.created_at < stamp, and_(Result.created_at == stamp, Result.id < row_id)))
        async with self.sessions() as session:
            rows = list(await session.scalars(query.order_by(Result.created_at.desc(), Result.id.desc()).limit(size + 1)))
            total = await session.scalar(select(func.count()).select_from(Result).where(Result.owner_id == request.owner_id))
        more = len(rows) > size
        rows = rows[:size]
        return reports_pb2.ListResultsResponse(
            results=[result_to_proto(r) for r in rows],
            page=common_pb2.PageInfo(next_page_token=encode_cursor(rows[-1].created_at, rows[-1].id) if more else "", total=total),
        )

    async def GetAnnotatedImage(self, request, context):
        async with self.sessions() as session:
            row = await self._result_or_abort(session, request.owner_id, request.id, context,
                                              undefer(Result.annotated_png), undefer(Result.original_image))
            if not row.has_annotated_image:
                await context.abort(grpc.StatusCode.NOT_FOUND, "this result has no annotated image")
            if not row.annotated_png:
                # Drawn once, on the first request, then kept: never on the upload's path.
                try:
                    row.annotated_png = await asyncio.to_thread(result_png, row, self.settings.annotated_max_side)
                except images.ImageError as exc:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the stored photo cannot be drawn: {exc}")
                await session.commit()
            png = row.annotated_png
        stem = (row.filename.rsplit(".", 1)[0] or "result") if row.filename else "result"
        return reports_pb2.FileContent(content=png, content_type="image/png", filename=f"{stem}-annotated.png")

    # --- reports ------------------------------------------------------------------------------

    async def _report_or_abort(self, session, owner_id: str, report_id: str, context, *options) -> Report:
        return await self._owned_or_abort(session, Report, owner_id, report_id, context, *options)

    async def RequestReport(self, request, context):
        fmt = request.format.lower()
        if fmt not in FORMATS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"format must be one of {', '.join(FORMATS)}")
        async with self.sessions() as session:
            await self._result_or_abort(session, request.owner_id, request.result_id, context)
            # The row first: if publishing fails below, the re-publisher sends it later. Never lost.
            row = Report(owner_id=request.owner_id, result_id=request.result_id, format=fmt, status="queued", published=False)
            session.add(row)
            await session.commit()
        JOBS.labels("queued").inc()
        try:
            await self.dispatcher.submit(row.id)
        except Exception:  # noqa: BLE001 - the row is saved: the re-publisher sends it, the caller gets its id
            log.exception("report %s saved but not handed over yet", row.id)
        return report_to_proto(row)

    async def GetReport(self, request, context):
        async with self.sessions() as session:
            return report_to_proto(await self._report_or_abort(session, request.owner_id, request.id, context))

    async def GetReportFile(self, request, context):
        async with self.sessions() as session:
            row = await self._report_or_abort(session, request.owner_id, request.id, context, undefer(Report.file))
        if row.status != "done" or row.file is None:
            detail = f"report is {row.status}" + (f": {row.error}" if row.status == "failed" and row.error else "")
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, detail)
        return reports_pb2.FileContent(content=row.file, content_type=row.content_type, filename=row.filename)

    async def EraseOwner(self, request, context):
        if not is_id(request.owner_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "owner_id must be an account id")
        results, reports = await erase_owner(self.sessions, request.owner_id)
        return reports_pb2.EraseOwnerResponse(results=results, reports=reports)
