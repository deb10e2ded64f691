"""The video job: what one delivery does with a video id.

A delivery is a slice of at most `job_slice_s`: the stored upload is spooled to a local file (kept for
the next slice of the same video on this process), frames are sampled from `frames_done` on
(media.sample_frames seeks there: a resumed video is not decoded from the start), and each group of
`video_frames_per_request` frames goes to the inference service in one PredictFrames call, so all their
faces reach Triton together. Each group's faces and the new `frames_done` are committed together, with
a conditional UPDATE on the old `frames_done`: a duplicate delivery racing this one stores nothing and
stops. Decoding the next group overlaps the analysis of this one. When the frames run out, the faces
are linked into tracks (tracks.TrackLinker) and the video is done.

The inference service unreachable: the video waits (a back-off, as batches) and resumes where it was.
A video that breaks the decoder mid-way, or frames the inference service refuses, fail the video with
the reason. So does one whose slices keep ending without an answer (a decoder that crashes the worker,
say: the broker would hand it to the next worker forever): each claim counts one unfinished slice, each
answered slice and each stored group clears the count, and a claim past
`video_max_unfinished_slices` fails the video.
"""
import asyncio
import logging
import os
import tempfile
import time
from collections import OrderedDict
from itertools import islice

import grpc
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from fer.v1 import inference_pb2
from ferkit.db import utcnow
from ferkit.vision import CLASSES
from services.reports import media
from services.reports.config import Settings
from services.reports.metrics import VIDEO_FRAMES, VIDEOS
from services.reports.models import Video, VideoChunk, VideoFrame
from services.reports.outcomes import ACTIVE, TRANSIENT, JobResult, Outcome, unclaimed, wait_for_upstreams
from services.reports.tracks import TrackLinker

log = logging.getLogger(__name__)

# Spooled files a process keeps for the next slices of their videos (each up to video_max_bytes).
SPOOL_KEEP = 2


def frame_faces(answer, scale: float, width: int, height: int) -> list[dict]:
    """One PredictFrames answer's faces with their boxes in the video's pixels (the sampled frame was
    reduced by `scale`)."""
    faces = []
    for face in answer.faces:
        b = face.box
        x0, y0 = max(0, round(b.x / scale)), max(0, round(b.y / scale))
        x1, y1 = round((b.x + b.width) / scale), round((b.y + b.height) / scale)
        if width and height:  # rounding may step a pixel outside the picture
            x1, y1 = min(width, x1), min(height, y1)
        faces.append({
            "box": [x0, y0, max(1, x1 - x0), max(1, y1 - y0)],
            "label": face.label,
            "scores": [round(float(s), 6) for s in face.scores],
            "detection_score": round(float(face.detection_score), 6),
        })
    return faces


# Linkers of running videos this process has answered for, by id: (the next frame index to feed, the
# linker). A page polls a running video every few seconds; each poll reads and links only the frames
# stored since the one before.
_LINKERS: OrderedDict[str, tuple[int, TrackLinker]] = OrderedDict()
LINKERS_KEEP = 16


async def stored_tracks(session, video: Video) -> list[dict]:
    """The video's tracks: the final ones once done, else linked from the frames stored so far."""
    if video.tracks is not None:
        _LINKERS.pop(video.id, None)
        return video.tracks
    # Taken out while in use: a concurrent call for the same video starts a linker of its own.
    start, linker = _LINKERS.pop(video.id, (0, None))
    linker = linker or TrackLinker()
    rows = (await session.execute(
        select(VideoFrame.index, VideoFrame.t, VideoFrame.faces)
        .where(VideoFrame.video_id == video.id, VideoFrame.index >= start).order_by(VideoFrame.index)
    )).all()

    def link() -> list[dict]:
        for _, t, faces in rows:  # (not row.t: a Row's .t is the row itself, typed)
            linker.add(t, faces)
        return linker.tracks(video.model_classes or list(CLASSES))

    tracks = await asyncio.to_thread(link)
    _LINKERS[video.id] = (rows[-1][0] + 1 if rows else start, linker)
    while len(_LINKERS) > LINKERS_KEEP:
        _LINKERS.popitem(last=False)
    return tracks


class VideoJobs:
    def __init__(self, settings: Settings, sessions: async_sessionmaker, inference=None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.inference = inference
        self._spooled: OrderedDict[str, str] = OrderedDict()

    async def run(self, video_id: str) -> JobResult:
        """One slice; database errors propagate (the caller hands the job back)."""
        video = await self._claim(video_id)
        if video is None:
            self._forget(video_id)
            return await unclaimed(self.sessions, Video, video_id)
        stopped = video.unfinished_slices - 1  # this claim counts itself
        if stopped >= self.settings.video_max_unfinished_slices:
            return await self._fail(video_id, f"the analysis stopped without an answer {stopped} times in a row at "
                                              f"frame {video.frames_done} (the worker crashed or was killed): left failed "
                                              "rather than tried again")
        result = await self._slice(video)
        # Answered: whatever it was, this slice did not stop its worker.
        async with self.sessions() as session:
            await session.execute(update(Video).where(Video.id == video_id).values(unfinished_slices=0))
            await session.commit()
        return result

    async def _slice(self, video: Video) -> JobResult:
        """The frames from `frames_done` on, for `job_slice_s` at most."""
        video_id = video.id
        if self.inference is None:
            log.error("video %s waits: this process has no inference service (REPORTS_INFERENCE_ADDR)", video_id)
            return await wait_for_upstreams(self.sessions, self.settings, Video, video.id, video.attempts,
                                            "no inference service is configured", progress=False)
        path = await self._spool(video_id)
        deadline = time.monotonic() + self.settings.job_slice_s
        size = max(1, min(self.settings.video_frames_per_request, 64))
        frames = media.sample_frames(path, video.fps, start_index=video.frames_done, max_side=self.settings.video_frame_max_side)
        upcoming: asyncio.Future | None = None
        progress = False
        try:
            upcoming = asyncio.ensure_future(asyncio.to_thread(lambda: list(islice(frames, size))))
            while True:
                group = await upcoming
                upcoming = None
                if not group:
                    return await self._finish(video_id)
                # Decoded while this group is analysed.
                upcoming = asyncio.ensure_future(asyncio.to_thread(lambda: list(islice(frames, size))))
                if self.settings.job_step_delay_s:
                    await asyncio.sleep(self.settings.job_step_delay_s)
                try:
                    answer = await self.inference.PredictFrames(inference_pb2.PredictFramesRequest(frames=[f.jpeg for f in group]))
                except grpc.aio.AioRpcError as exc:
                    reason = f"the inference service answered {exc.code().name} ({exc.details()})"
                    if exc.code() in TRANSIENT:
                        return await wait_for_upstreams(self.sessions, self.settings, Video, video.id, video.attempts, reason, progress)
                    return await self._fail(video_id, f"frames {group[0].index}-{group[-1].index}: {reason}")
                if len(answer.frames) != len(group):
                    return await self._fail(video_id, f"the inference service answered {len(answer.frames)} frames for {len(group)}")
                if not await self._store(video, group, answer):
                    log.info("video %s: another delivery is ahead of this one; leaving it the rest", video_id)
                    return JobResult(Outcome.SKIPPED)
                progress = True
                if time.monotonic() >= deadline:
                    return JobResult(Outcome.CONTINUE)
        except media.VideoError as exc:
            return await self._fail(video_id, str(exc))
        finally:
            if upcoming is not None:
                # A decode in a thread cannot be cancelled: let it end before the file is closed.
                await asyncio.gather(upcoming, return_exceptions=True)
            try:
                await asyncio.to_thread(frames.close)
            except ValueError:
                pass  # still decoding in its thread (this task was cancelled at shutdown): it ends with the process

    async def _claim(self, video_id: str) -> Video | None:
        async with self.sessions() as session:
            video = await session.scalar(
                update(Video).where(Video.id == video_id, Video.status.in_(ACTIVE))
                .values(status="running", attempts=Video.attempts + 1, unfinished_slices=Video.unfinished_slices + 1,
                        updated_at=utcnow())
                .returning(Video)
            )
            await session.commit()
        return video

    async def _spool(self, video_id: str) -> str:
        """A local file with the upload, written from its chunks one at a time (or the one kept from the
        previous slice of this video on this process)."""
        if video_id in self._spooled and os.path.exists(self._spooled[video_id]):
            self._spooled.move_to_end(video_id)
            return self._spooled[video_id]
        while len(self._spooled) >= SPOOL_KEEP:
            self._forget(next(iter(self._spooled)))
        descriptor, path = tempfile.mkstemp(prefix="fer-video-", dir=self.settings.spool_dir or None)
        try:
            with os.fdopen(descriptor, "wb") as out:
                async with self.sessions() as session:
                    seq = 0
                    while True:
                        data = await session.scalar(select(VideoChunk.data).where(VideoChunk.video_id == video_id, VideoChunk.seq == seq))
                        if data is None:
                            break
                        out.write(data)
                        seq += 1
        except BaseException:
            os.unlink(path)
            raise
        self._spooled[video_id] = path
        return path

    def _forget(self, video_id: str) -> None:
        path = self._spooled.pop(video_id, None)
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Removes the spooled files (the process is stopping)."""
        for video_id in list(self._spooled):
            self._forget(video_id)

    async def _store(self, video: Video, group: list[media.SampledFrame], answer) -> bool:
        rows = [
            {"video_id": video.id, "index": frame.index, "t": round(frame.t, 4),
             "faces": frame_faces(faces, frame.scale, video.width, video.height)}
            for frame, faces in zip(group, answer.frames)
        ]
        async with self.sessions() as session:
            moved = await session.scalar(
                update(Video)
                .where(Video.id == video.id, Video.status.in_(ACTIVE), Video.frames_done == group[0].index)
                .values(frames_done=group[-1].index + 1, attempts=0, unfinished_slices=0, error="", updated_at=utcnow(),
                        model_name=answer.model.name, model_version=answer.model.version,
                        model_classes=list(answer.model.classes) or list(CLASSES))
                .returning(Video.id)
            )
            if moved is None:
                await session.rollback()
                return False
            await session.execute(insert(VideoFrame), rows)
            await session.commit()
        VIDEO_FRAMES.inc(len(rows))
        return True

    async def _finish(self, video_id: str) -> JobResult:
        async with self.sessions() as session:
            video = await session.get(Video, video_id)
            if video is None:
                return JobResult(Outcome.SKIPPED)  # erased meanwhile
            tracks = await stored_tracks(session, video)
            finished = await session.scalar(
                update(Video).where(Video.id == video_id, Video.status.in_(ACTIVE), Video.frames_done == video.frames_done)
                # The sample count is now known exactly (frames_total was estimated from the duration).
                .values(status="done", error="", tracks=tracks, frames_total=video.frames_done, attempts=0, updated_at=utcnow())
                .returning(Video.id)
            )
            await session.commit()
        # The worker keeps no linker for a finished video.
        _LINKERS.pop(video_id, None)
        self._forget(video_id)
        if finished is None:
            return JobResult(Outcome.SKIPPED)
        VIDEOS.labels("done").inc()
        log.info("video %s done: %d frames, %d track(s)", video_id, video.frames_done, len(tracks))
        return JobResult(Outcome.DONE)

    async def _fail(self, video_id: str, reason: str) -> JobResult:
        async with self.sessions() as session:
            changed = await session.scalar(
                update(Video).where(Video.id == video_id, Video.status.in_(ACTIVE))
                .values(status="failed", error=reason[:1000], updated_at=utcnow()).returning(Video.id)
            )
            await session.commit()
        self._forget(video_id)
        if changed is not None:
            VIDEOS.labels("failed").inc()
            log.error("video %s failed: %s", video_id, reason)
        return JobResult(Outcome.FAILED, error=reason)

    async def unfinished(self) -> list[str]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Video.id).where(Video.status.in_(ACTIVE)).order_by(Video.created_at)))
