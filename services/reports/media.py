"""Videos with PyAV (FFmpeg in its wheels): check an upload, then sample frames from it as a stream.

`probe()` refuses what the service cannot analyse with one clear line (VideoError). `sample_frames()`
decodes frame after frame and keeps only the sampled ones, reduced and JPEG-encoded, so memory stays
the same whatever the video's length; it resumes at a sample index by seeking, so a job interrupted
halfway does not decode the start again.
"""
from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

# Demuxer names as FFmpeg reports them; anything else (a photo, an audio file, a raw stream) is refused.
CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
# A frame a little before the sample time still counts as at it: WebM stores times in whole
# milliseconds (2/15 s is written 0.133), so exact comparisons would skip frames.
TIME_TOLERANCE_S = 1e-3
# A phone stores a portrait video as landscape pixels plus a display rotation; PIL's transpose that
# turns the pixels upright, keyed by FFmpeg's rotation (degrees counterclockwise).
UPRIGHT = {90: Image.Transpose.ROTATE_90, -90: Image.Transpose.ROTATE_270, 270: Image.Transpose.ROTATE_270,
           180: Image.Transpose.ROTATE_180, -180: Image.Transpose.ROTATE_180}


class VideoError(ValueError):
    """A video the service cannot analyse, or one that broke while being decoded."""


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    # Upright (display) size: the pixels boxes are given in.
    width: int
    height: int
    codec: str
    container: str


@dataclass(frozen=True)
class SampledFrame:
    index: int
    # Seconds from the start of the video (the decoded frame's own time).
    t: float
    jpeg: bytes
    # The JPEG's side / the video's side: a box on the JPEG divided by it is in the video's pixels.
    scale: float

    def in_video(self, box) -> list[int]:
        """A box (x, y, width, height) found on the JPEG, in the video's pixels."""
        return [round(v / self.scale) for v in box]


def frames_total(duration_s: float, fps: float) -> int:
    """How many samples a video of duration_s gives at fps: one at each k / fps before its end. The
    stream may end a little earlier than its container says, so sample_frames can give fewer."""
    return max(1, math.ceil(duration_s * fps - 1e-6))


def _open(path: str | Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"not a video file FFmpeg can read ({_reason(exc)})") from None
    if not CONTAINERS & set(container.format.name.split(",")):
        container.close()
        raise VideoError(f"a {container.format.name!r} file is not a video; send MP4, WebM, MOV or AVI")
    return container


def _reason(exc: Exception) -> str:
    """FFmpeg's own words, without the file name PyAV appends."""
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    for stream in container.streams.video:
        # An MP4's cover art is a one-picture "video" stream: never the one to analyse.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise VideoError("the file has no video stream")


def _origin(stream) -> float:
    """The stream's first timestamp in seconds: sample times count from it."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _duration(container, stream, max_seconds: float) -> float:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    # A browser's MediaRecorder WebM has no duration in its header: read the packets (no decoding)
    # up to the limit; past it, the exact length does not matter.
    origin, end = _origin(stream), 0.0
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base) - origin)
            if end > max_seconds:
                break
    container.seek(0)
    return end


def probe(path: str | Path, max_seconds: float) -> VideoInfo:
    """What the video is, or VideoError with one line saying why it cannot be analysed: not a video,
    no video stream, a stream that does not decode, no duration, or longer than max_seconds."""
    with _open(path) as container:
        stream = _video_stream(container)
        try:
            duration = _duration(container, stream, max_seconds)
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"the {stream.codec_context.name} video stream cannot be decoded ({_reason(exc)})") from None
        if first is None:
            raise VideoError("the video stream has no frame that decodes")
        if duration <= 0:
            raise VideoError("the video has zero duration")
        if duration > max_seconds:
            raise VideoError(f"the video is {duration:.0f} s long; at most {max_seconds:g} s is allowed")
        width, height = first.width, first.height
        if first.rotation in (90, -90, 270):
            width, height = height, width
        return VideoInfo(duration_s=duration, width=width, height=height, codec=stream.codec_context.name,
                         container=container.format.name)


def _seek(container, stream, target_s: float, origin: float) -> None:
    """Position the demuxer at the keyframe at or before target_s (decoding must start at a keyframe)."""
    try:
        container.seek(int((origin + target_s) / stream.time_base), stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        # A file without an index cannot seek: decode from the start (slower, same samples).
        container.seek(0)


def _decoded(container, stream, start_s: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from the start, frame) from the keyframe before start_s on. Some demuxers land after
    the asked time (an inexact index): then decode from the start, so a resumed run gives the same
    frames as a full one."""
    origin = _origin(stream)
    if start_s > 0:
        _seek(container, stream, start_s, origin)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            return
        if first.time is None or first.time - origin <= start_s + TIME_TOLERANCE_S:
            yield (first.time - origin if first.time is not None else start_s), first
            yield from _timed(frames, origin, first.time - origin if first.time is not None else start_s, stream)
            return
        container.seek(0)
    yield from _timed(container.decode(stream), origin, None, stream)


def _timed(frames, origin: float, last: float | None, stream) -> Iterator[tuple[float, av.VideoFrame]]:
    # A frame without a timestamp (rare, broken muxers) is one frame interval after the last one.
    step = 1.0 / float(stream.average_rate) if stream.average_rate else 0.04
    for frame in frames:
        t = frame.time - origin if frame.time is not None else (last + step if last is not None else 0.0)
        last = t
        yield t, frame


def _jpeg(frame: av.VideoFrame, max_side: int, quality: int) -> tuple[bytes, float]:
    scale = min(1.0, max_side / max(frame.width, frame.height))
    width, height = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
    # FFmpeg's scaler reduces and converts to RGB in one pass, without a full-size RGB copy.
    image = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_image()
    transpose = UPRIGHT.get(frame.rotation)
    if transpose is not None:
        image = image.transpose(transpose)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue(), width / frame.width


def sample_frames(path: str | Path, fps: float, start_index: int = 0, max_side: int = 640,
                  quality: int = 90) -> Iterator[SampledFrame]:
    """Sample k is the first decoded frame at or after k / fps, for k from start_index on, upright,
    reduced to at most max_side a side and JPEG-encoded. The video is decoded as a stream: one frame
    in memory at a time. When the video has fewer frames per second than fps, a frame is repeated for
    the samples it covers, so indices stay dense (and start_index = samples done resumes exactly).
    Data that breaks the decoder mid-way raises VideoError saying how far it got."""
    if fps <= 0:
        raise ValueError("fps must be positive")
    if start_index < 0:
        raise ValueError("start_index must be >= 0")
    index, t = start_index, start_index / fps
    with _open(path) as container:
        stream = _video_stream(container)
        # Frame and slice threads: the decoder uses every core while this thread reduces and encodes.
        stream.thread_type = "AUTO"
        frames = _decoded(container, stream, start_index / fps)
        last: tuple[float, av.VideoFrame] | None = None
        while True:
            try:
                item = next(frames, None)
            except av.error.FFmpegError as exc:
                raise VideoError(
                    f"the video could not be decoded past {t:.2f} s (sample {index}): {_reason(exc)}"
                ) from None
            if item is None:
                break
            last = item
            t, frame = item
            if t < index / fps - TIME_TOLERANCE_S:
                continue
            jpeg, scale = _jpeg(frame, max_side, quality)
            while t >= index / fps - TIME_TOLERANCE_S:
                yield SampledFrame(index=index, t=t, jpeg=jpeg, scale=scale)
                index += 1
        if last is None:
            return
        # The last frame shows until the stream ends: it is the sample for the times left before the end
        # (without this a video would give fewer samples than frames_total says).
        t, frame = last
        end = t + _frame_duration(frame, stream)
        if index / fps < end - TIME_TOLERANCE_S:
            jpeg, scale = _jpeg(frame, max_side, quality)
            while index / fps < end - TIME_TOLERANCE_S:
                yield SampledFrame(index=index, t=t, jpeg=jpeg, scale=scale)
                index += 1


def _frame_duration(frame: av.VideoFrame, stream) -> float:
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    return 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
