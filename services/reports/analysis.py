"""Analysing one photo and keeping it: what AnalyzeImage does for an upload, and a batch job for each of
its photos. The inference service classifies the photo, the Result is stored, and the auth service counts
the analysis inside the same transaction: a deleted account or auth down stores nothing."""
from collections.abc import Awaitable, Callable

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fer.v1 import auth_pb2, auth_pb2_grpc, inference_pb2, inference_pb2_grpc
from ferkit.grpc_client import open_channel
from ferkit.vision import CLASSES
from services.reports.config import Settings
from services.reports.models import Result


class UpstreamError(Exception):
    """The inference or the auth service refused or failed the call; `code` and `details` are its answer."""

    def __init__(self, service: str, error: grpc.aio.AioRpcError) -> None:
        self.service = service
        self.code = error.code()
        self.details = error.details() or self.code.name.lower()
        super().__init__(f"{service}: {self.code.name}: {self.details}")


def open_upstreams(settings: Settings) -> tuple[list[grpc.aio.Channel], inference_pb2_grpc.InferenceServiceStub | None,
                                                 auth_pb2_grpc.AuthServiceStub | None]:
    """Channels to the inference and auth services whose addresses are set, and their stubs (None where
    unset). grpc.aio channels belong to the event loop they are made in: call it inside that loop."""
    channels = {name: open_channel(addr, timeout_s=settings.grpc_timeout_s)
                for name, addr in (("inference", settings.inference_addr), ("auth", settings.auth_addr)) if addr}
    inference = inference_pb2_grpc.InferenceServiceStub(channels["inference"]) if "inference" in channels else None
    auth = auth_pb2_grpc.AuthServiceStub(channels["auth"]) if "auth" in channels else None
    return list(channels.values()), inference, auth


def check_input(settings: Settings, owner_id: str, notes: str, filename: str) -> None:
    """What the caller sends besides the photo; raises ValueError with the reason."""
    if not owner_id:
        raise ValueError("owner_id is required")
    if len(notes) > settings.max_notes_chars:
        raise ValueError(f"notes must have at most {settings.max_notes_chars} characters")
    if "\x00" in notes or "\x00" in filename:
        raise ValueError("notes and the file name must not contain NUL characters")


def faces_from_prediction(prediction, classes: list[str]) -> list[dict]:
    faces = []
    for i, face in enumerate(prediction.faces):
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


def new_result(settings: Settings, owner_id: str, notes: str, filename: str, original: bytes, content_type: str, prediction) -> Result:
    """The row for one analysed photo; `prediction` is a PredictImageResponse or a SaveResultRequest
    (both carry model, faces, timings, image size and message). Raises ValueError on bad input."""
    check_input(settings, owner_id, notes, filename)
    classes = list(prediction.model.classes) or list(CLASSES)
    t = prediction.timings
    return Result(
        owner_id=owner_id,
        model_name=prediction.model.name,
        model_version=prediction.model.version,
        model_classes=classes,
        faces=faces_from_prediction(prediction, classes),
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


# Called with the session and the flushed Result before the analysis is counted; False: this photo is
# already stored by someone else (a duplicate delivery), so nothing is kept and nothing counted.
Claim = Callable[[AsyncSession, Result], Awaitable[bool]]


async def analyse_and_store(
    settings: Settings,
    sessions: async_sessionmaker,
    inference,
    auth,
    *,
    owner_id: str,
    image: bytes,
    content_type: str,
    filename: str,
    notes: str,
    mode: int,
    claim: Claim | None = None,
) -> Result | None:
    """Classifies the photo, stores its Result and counts it, all or nothing. Raises UpstreamError (the
    inference service refused the photo, the account is gone, a service is down) or ValueError (bad
    input); returns None when `claim` declined."""
    try:
        prediction = await inference.PredictImage(inference_pb2.PredictImageRequest(image=image, mode=mode))
    except grpc.aio.AioRpcError as exc:
        raise UpstreamError("inference", exc) from None
    row = new_result(settings, owner_id, notes, filename, image, content_type, prediction)
    async with sessions() as session:
        session.add(row)
        await session.flush()
        if claim is not None and not await claim(session, row):
            await session.rollback()
            return None
        try:
            # Counted inside the transaction: if the account is gone or auth is down, nothing is stored.
            await auth.RecordUsage(auth_pb2.RecordUsageRequest(user_id=owner_id, count=1))
        except grpc.aio.AioRpcError as exc:
            raise UpstreamError("auth", exc) from None
        await session.commit()
    return row
