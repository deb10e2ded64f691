"""The ReportsService gRPC servicer: the results history, batches of photos, videos, report requests, and
erasing a deleted account's data."""
import asyncio
import csv
import io
import logging
import math
import tempfile

import grpc
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import undefer

from fer.v1 import auth_pb2, common_pb2, inference_pb2, reports_pb2, reports_pb2_grpc
from ferkit import images
from ferkit.db import as_utc, is_id, to_timestamp
from ferkit.limits import ARCHIVE_MAX_MEMBERS
from ferkit.paging import decode_cursor, encode_cursor
from ferkit.vision import CLASSES
from services.reports import media
from services.reports.amqp import Job
from services.reports.analysis import UpstreamError, analyse_and_store, check_input, new_result
from services.reports.annotate import result_png
from services.reports.batches import batch_items, batch_items_and_results
from services.reports.config import Settings
from services.reports.erasure import erase_owner
from services.reports.metrics import BATCHES, JOBS, VIDEOS
from services.reports.models import FORMATS, Batch, BatchItem, Report, Result, Video, VideoChunk
from services.reports.outcomes import ACTIVE
from services.reports.timeline import timeline_csv, timeline_png
from services.reports.videos import stored_tracks

log = logging.getLogger(__name__)

# The upload is stored in pieces of this size (video_chunks), whatever size the caller streamed.
STORED_CHUNK_BYTES = 1024 * 1024
TIMELINE_FORMATS = ("png", "csv")
# A spreadsheet runs a cell that starts with one of these as a formula: file names are the caller's text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _box(box) -> common_pb2.Box:
    return common_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3])


def result_to_proto(row: Result) -> reports_pb2.Result:
    return reports_pb2.Result(
        id=row.id,
        owner_id=row.owner_id,
        created_at=to_timestamp(row.created_at),
        model=common_pb2.ModelRef(name=row.model_name, version=row.model_version, classes=row.model_classes),
        faces=[
            common_pb2.FacePrediction(
                box=_box(f["box"]),
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
        result_id=row.result_id or "",
        batch_id=row.batch_id or "",
        video_id=row.video_id or "",
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


def batch_to_proto(row: Batch, items: list[BatchItem] = ()) -> reports_pb2.Batch:
    return reports_pb2.Batch(
        id=row.id,
        owner_id=row.owner_id,
        status=row.status,
        error=row.error,
        done=row.done,
        total=row.total,
        failed=row.failed,
        notes=row.notes,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        items=[
            reports_pb2.BatchItem(filename=item.filename, status=item.status, result_id=item.result_id or "", error=item.error,
                                  faces=item.faces)
            for item in items
        ],
    )


def track_to_proto(track: dict) -> reports_pb2.Track:
    return reports_pb2.Track(
        track=track["track"],
        dominant_label=track["dominant_label"],
        share=track["share"],
        start_t=track["start_t"],
        end_t=track["end_t"],
        points=[reports_pb2.TrackPoint(t=p["t"], box=_box(p["box"]), label=p["label"], scores=p["scores"]) for p in track["points"]],
    )


def video_to_proto(row: Video, tracks: list[dict] = ()) -> reports_pb2.Video:
    return reports_pb2.Video(
        id=row.id,
        owner_id=row.owner_id,
        status=row.status,
        error=row.error,
        filename=row.filename,
        notes=row.notes,
        fps=row.fps,
        duration_s=row.duration_s,
        width=row.width,
        height=row.height,
        frames_done=row.frames_done,
        frames_total=row.frames_total,
        model=common_pb2.ModelRef(name=row.model_name, version=row.model_version, classes=row.model_classes or []),
        tracks=[track_to_proto(t) for t in tracks],
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        size_bytes=row.size_bytes,
    )


def _stem(filename: str, default: str) -> str:
    return (filename.rsplit(".", 1)[0] or default) if filename else default


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def batch_csv(items: list[BatchItem], results: dict[str, Result]) -> str:
    """One row per face of each finished photo: filename, face (1-based), box, label, the scores in the
    model's class order, error; a photo without a face has one row with an empty label, a failed photo
    one row with its error. Photos still queued are left out."""
    classes = next((list(r.model_classes) for r in results.values() if r.model_classes), list(CLASSES))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["filename", "face", "x", "y", "width", "height", "label", *classes, "error"])
    blank_scores = [""] * len(classes)
    for item in items:
        name = _cell(item.filename)
        result = results.get(item.result_id or "")
        if item.status == "failed" or (item.status == "done" and result is None):
            writer.writerow([name, "", "", "", "", "", "", *blank_scores, _cell(item.error or "the result was deleted")])
        elif item.status == "done" and not result.faces:
            writer.writerow([name, "", "", "", "", "", "", *blank_scores, ""])
        elif item.status == "done":
            for index, face in enumerate(result.faces, start=1):
                by_class = dict(zip(result.model_classes, face["scores"]))
                writer.writerow([name, index, *face["box"], face["label"], *(by_class.get(c, "") for c in classes), ""])
    return out.getvalue()


class ReportsServicer(reports_pb2_grpc.ReportsServiceServicer):
    def __init__(self, settings: Settings, sessions: async_sessionmaker, dispatcher, inference=None, auth=None) -> None:
        self.settings = settings
        self.sessions = sessions
        # InferenceServiceStub and AuthServiceStub for AnalyzeImage; None where this deployment has none.
        self.inference = inference
        self.auth = auth
        # Hands jobs to whoever runs them: RabbitMQ, or the in-process queue (services.reports.dispatch).
        self.dispatcher = dispatcher

    # --- shared -------------------------------------------------------------------------------

    @staticmethod
    async def _owned_or_abort(session, model, owner_id: str, row_id: str, context, *options):
        row = None
        if owner_id and is_id(row_id):
            row = await session.scalar(select(model).where(model.id == row_id, model.owner_id == owner_id).options(*options))
        if row is None:
            # Another owner's row and a missing one look the same.
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{model.__name__.lower()} not found")
        return row

    async def _page(self, session, model, owner_id: str, page: common_pb2.PageRequest, context) -> tuple[list, common_pb2.PageInfo]:
        """One page of the owner's rows, newest first, keyset-paginated on (created_at, id): pages stay
        stable while new rows arrive."""
        size = page.page_size or self.settings.default_page_size
        if not 0 < size <= self.settings.max_page_size:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be between 1 and {self.settings.max_page_size}")
        query = select(model).where(model.owner_id == owner_id)
        if page.page_token:
            try:
                stamp, row_id = decode_cursor(page.page_token)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            query = query.where(or_(model.created_at < stamp, and_(model.created_at == stamp, model.id < row_id)))
        rows = list(await session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(size + 1)))
        total = await session.scalar(select(func.count()).select_from(model).where(model.owner_id == owner_id))
        more = len(rows) > size
        rows = rows[:size]
        token = encode_cursor(rows[-1].created_at, rows[-1].id) if more else ""
        return rows, common_pb2.PageInfo(next_page_token=token, total=total)

    async def _dispatch(self, job: Job) -> None:
        try:
            await self.dispatcher.submit(job)
        except Exception:  # noqa: BLE001 - the row is saved: the re-publisher sends it, the caller gets its id
            log.exception("%s %s saved but not handed over yet", job.kind, job.id)

    async def _require_analysis(self, context) -> None:
        if self.inference is None or self.auth is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this deployment has no inference or auth service to analyse with")

    # --- results history ----------------------------------------------------------------------

    async def _result_or_abort(self, session, owner_id: str, result_id: str, context, *options) -> Result:
        return await self._owned_or_abort(session, Result, owner_id, result_id, context, *options)

    async def SaveResult(self, request, context):
        try:
            row = new_result(self.settings, request.owner_id, request.notes, request.filename, request.original_image,
                             request.original_content_type, request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        async with self.sessions() as session:
            session.add(row)
            await session.commit()
        return result_to_proto(row)

    async def AnalyzeImage(self, request, context):
        await self._require_analysis(context)
        try:
            # Checked before the photo is analysed: a refused request costs no inference.
            check_input(self.settings, request.owner_id, request.notes, request.filename)
            row = await analyse_and_store(
                self.settings, self.sessions, self.inference, self.auth,
                owner_id=request.owner_id, image=request.image, content_type=request.content_type,
                filename=request.filename, notes=request.notes, mode=request.mode,
            )
        except UpstreamError as exc:
            # The upstream's answer is the caller's answer (a bad image, an unknown model, a deleted account).
            await context.abort(exc.code, exc.details)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return result_to_proto(row)

    async def GetResult(self, request, context):
        async with self.sessions() as session:
            return result_to_proto(await self._result_or_abort(session, request.owner_id, request.id, context))

    async def ListResults(self, request, context):
        async with self.sessions() as session:
            rows, page = await self._page(session, Result, request.owner_id, request.page, context)
        return reports_pb2.ListResultsResponse(results=[result_to_proto(r) for r in rows], page=page)

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
        return reports_pb2.FileContent(content=png, content_type="image/png", filename=f"{_stem(row.filename, 'result')}-annotated.png")

    # --- batches ------------------------------------------------------------------------------

    def _check_batch(self, request: reports_pb2.CreateBatchRequest) -> None:
        """The request's limits, as the gateway checks them (the service may be called directly);
        raises ValueError with the reason."""
        s = self.settings
        if not is_id(request.owner_id):
            raise ValueError("owner_id must be an account id")
        check_input(s, request.owner_id, request.notes, "")
        if request.mode not in inference_pb2.FaceMode.values():
            raise ValueError(f"unknown mode {request.mode}; use detect or face")
        if not request.photos:
            raise ValueError("send at least one photo")
        if len(request.photos) > s.batch_max_photos:
            raise ValueError(f"at most {s.batch_max_photos} photos per batch ({len(request.photos)} sent)")
        if len(request.skipped) > ARCHIVE_MAX_MEMBERS:
            raise ValueError(f"at most {ARCHIVE_MAX_MEMBERS} skipped files per batch")
        total = 0
        for number, photo in enumerate(request.photos, start=1):
            if not photo.image:
                raise ValueError(f"photo {number} ({photo.filename[:100]}) is empty")
            if len(photo.image) > s.image_max_bytes:
                raise ValueError(f"photo {number} ({photo.filename[:100]}) is larger than {s.image_max_bytes // (1024 * 1024)} MiB")
            total += len(photo.image)
        if total > s.batch_max_bytes:
            raise ValueError(f"the photos of a batch may weigh {s.batch_max_bytes // (1024 * 1024)} MiB together ({total} bytes sent)")
        for entry in [*request.photos, *request.skipped]:
            if "\x00" in entry.filename or "\x00" in getattr(entry, "error", ""):
                raise ValueError("file names and reasons must not contain NUL characters")

    async def CreateBatch(self, request, context):
        await self._require_analysis(context)
        try:
            self._check_batch(request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        skipped = len(request.skipped)
        batch = Batch(owner_id=request.owner_id, notes=request.notes, mode=request.mode, total=len(request.photos) + skipped,
                      done=skipped, failed=skipped, status="queued", published=False)
        items = [
            BatchItem(position=i, filename=p.filename[:255], content_type=p.content_type[:100], image=p.image, status="queued",
                      error="", faces=0)
            for i, p in enumerate(request.photos)
        ] + [
            # What the caller could not send (not an image, a path outside the archive...): a failed item each.
            BatchItem(position=len(request.photos) + i, filename=s.filename[:255], content_type="", image=b"", status="failed",
                      error=(s.error or "skipped")[:1000], faces=0)
            for i, s in enumerate(request.skipped)
        ]
        # The batch and every photo first, in one transaction: if publishing fails below, the
        # re-publisher sends the job later. Never lost.
        async with self.sessions() as session:
            session.add(batch)
            await session.flush()
            await session.execute(insert(BatchItem), [
                {"batch_id": batch.id, "position": it.position, "filename": it.filename, "content_type": it.content_type,
                 "image": it.image, "status": it.status, "error": it.error, "faces": 0}
                for it in items
            ])
            await session.commit()
        BATCHES.labels("queued").inc()
        await self._dispatch(Job("batch", batch.id))
        return batch_to_proto(batch, items)

    async def GetBatch(self, request, context):
        async with self.sessions() as session:
            batch = await self._owned_or_abort(session, Batch, request.owner_id, request.id, context)
            return batch_to_proto(batch, await batch_items(session, batch.id))

    async def ListBatches(self, request, context):
        async with self.sessions() as session:
            rows, page = await self._page(session, Batch, request.owner_id, request.page, context)
        return reports_pb2.ListBatchesResponse(batches=[batch_to_proto(b) for b in rows], page=page)

    async def GetBatchCsv(self, request, context):
        async with self.sessions() as session:
            batch = await self._owned_or_abort(session, Batch, request.owner_id, request.id, context)
            if batch.status in ACTIVE:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"the batch is {batch.status} ({batch.done} of {batch.total} photos finished)")
            items, results = await batch_items_and_results(session, batch.id)
        content = batch_csv(items, results).encode("utf-8")
        filename = f"fer-batch-{as_utc(batch.created_at):%Y%m%d-%H%M%S}-{batch.id[:8]}.csv"
        return reports_pb2.FileContent(content=content, content_type="text/csv; charset=utf-8", filename=filename)

    # --- videos -------------------------------------------------------------------------------

    def _check_video_header(self, first: reports_pb2.VideoChunk) -> float:
        """The first chunk's owner and options; returns the fps to sample at. Raises ValueError."""
        if not is_id(first.owner_id):
            raise ValueError("owner_id must be an account id")
        check_input(self.settings, first.owner_id, first.notes, first.filename)
        fps = first.fps or self.settings.video_default_fps
        if not (math.isfinite(fps) and 0 < fps <= self.settings.video_max_fps):
            raise ValueError(f"fps must be more than 0 and at most {self.settings.video_max_fps:g}")
        return fps

    async def UploadVideo(self, request_iterator, context):
        """Spools the stream to a temporary file (memory stays one chunk whatever the size), checks it,
        then stores the row, the file in 1 MiB chunks and the count of one analysis in one transaction."""
        await self._require_analysis(context)
        first, fps, size = None, 0.0, 0
        with tempfile.NamedTemporaryFile(prefix="fer-upload-", dir=self.settings.spool_dir or None) as spool:
            async for chunk in request_iterator:
                if first is None:
                    first = chunk
                    try:
                        fps = self._check_video_header(chunk)
                    except ValueError as exc:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                size += len(chunk.data)
                if size > self.settings.video_max_bytes:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        f"the video is larger than {self.settings.video_max_bytes // (1024 * 1024)} MiB")
                spool.write(chunk.data)
            if first is None or size == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send the video's bytes")
            spool.flush()
            try:
                info = await asyncio.to_thread(media.probe, spool.name, self.settings.video_max_seconds)
            except media.VideoError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            row = Video(
                owner_id=first.owner_id, status="queued", error="", filename=first.filename[:255], content_type=first.content_type[:100],
                notes=first.notes, fps=fps, duration_s=info.duration_s, width=info.width, height=info.height,
                frames_total=media.frames_total(info.duration_s, fps), frames_done=0, size_bytes=size, model_name="",
                model_version=0, model_classes=[], tracks=None, attempts=0, published=False,
            )
            try:
                async with self.sessions() as session:
                    session.add(row)
                    await session.flush()
                    spool.seek(0)
                    seq = 0
                    # One chunk in memory at a time; Core inserts keep nothing in the session.
                    while data := await asyncio.to_thread(spool.read, STORED_CHUNK_BYTES):
                        await session.execute(insert(VideoChunk).values(video_id=row.id, seq=seq, data=data))
                        seq += 1
                    # Counted inside the transaction: if the account is gone or auth is down, nothing is stored.
                    await self.auth.RecordUsage(auth_pb2.RecordUsageRequest(user_id=first.owner_id, count=1))
                    await session.commit()
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or exc.code().name.lower())
        VIDEOS.labels("queued").inc()
        await self._dispatch(Job("video", row.id))
        return video_to_proto(row)

    async def GetVideo(self, request, context):
        async with self.sessions() as session:
            video = await self._owned_or_abort(session, Video, request.owner_id, request.id, context)
            return video_to_proto(video, await stored_tracks(session, video))

    async def ListVideos(self, request, context):
        async with self.sessions() as session:
            rows, page = await self._page(session, Video, request.owner_id, request.page, context)
        return reports_pb2.ListVideosResponse(videos=[video_to_proto(v) for v in rows], page=page)

    async def GetVideoTimeline(self, request, context):
        """The tracks so far while the video runs, the final ones once it is done."""
        fmt = request.format.lower()
        if fmt not in TIMELINE_FORMATS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"format must be one of {', '.join(TIMELINE_FORMATS)}")
        async with self.sessions() as session:
            video = await self._owned_or_abort(session, Video, request.owner_id, request.id, context)
            tracks = await stored_tracks(session, video)
        classes = video.model_classes or list(CLASSES)
        stem = f"{_stem(video.filename, 'video')}-timeline"
        if fmt == "png":
            content = await asyncio.to_thread(timeline_png, tracks, classes, video.duration_s)
            return reports_pb2.FileContent(content=content, content_type="image/png", filename=f"{stem}.png")
        return reports_pb2.FileContent(content=timeline_csv(tracks, classes).encode("utf-8"), content_type="text/csv; charset=utf-8",
                                       filename=f"{stem}.csv")

    # --- reports ------------------------------------------------------------------------------

    async def _report_or_abort(self, session, owner_id: str, report_id: str, context, *options) -> Report:
        return await self._owned_or_abort(session, Report, owner_id, report_id, context, *options)

    async def RequestReport(self, request, context):
        fmt = request.format.lower()
        if fmt not in FORMATS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"format must be one of {', '.join(FORMATS)}")
        subjects = [(model, row_id) for model, row_id in ((Result, request.result_id), (Batch, request.batch_id), (Video, request.video_id))
                    if row_id]
        if len(subjects) != 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name exactly one of result_id, batch_id and video_id")
        (model, subject_id), = subjects
        async with self.sessions() as session:
            subject = await self._owned_or_abort(session, model, request.owner_id, subject_id, context)
            if model is not Result and subject.status in ACTIVE:
                # A report is a record of the finished analysis, not of one half done.
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"the {model.__name__.lower()} is {subject.status}; ask for its report once it is done")
            # The row first: if publishing fails below, the re-publisher sends it later. Never lost.
            row = Report(owner_id=request.owner_id, result_id=request.result_id or None, batch_id=request.batch_id or None,
                         video_id=request.video_id or None, format=fmt, status="queued", published=False)
            session.add(row)
            await session.commit()
        JOBS.labels("queued").inc()
        await self._dispatch(Job("report", row.id))
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
        erased = await erase_owner(self.sessions, request.owner_id)
        return reports_pb2.EraseOwnerResponse(results=erased.results, reports=erased.reports, batches=erased.batches, videos=erased.videos)
