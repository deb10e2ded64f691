"""The report's content as one document: the JSON report is this document, the PDF lays it out.

Schema "fer-platform.report", version 1. Consumers check `schema_version`; new fields may appear
within a version, a field's meaning never changes without a new version. `kind` says what the report
is on: "result" (one photo), "batch" (many photos) or "video" (faces tracked over time).
"""
import base64
import hashlib
import json
from collections import Counter
from datetime import datetime

from ferkit.db import as_utc
from services.reports.models import Batch, BatchItem, Report, Result, Video

SCHEMA = "fer-platform.report"
SCHEMA_VERSION = 1


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _faces(result: Result) -> list[dict]:
    classes = [str(c) for c in result.model_classes]
    faces = []
    for i, face in enumerate(result.faces, start=1):
        scores = {name: float(score) for name, score in zip(classes, face["scores"])}
        x, y, w, h = face["box"]
        faces.append(
            {
                "index": i,
                "box": {"x": x, "y": y, "width": w, "height": h},
                "label": face["label"],
                "confidence": scores.get(face["label"], max(scores.values(), default=0.0)),
                "scores": scores,
                "detection_score": face.get("detection_score", 0.0),
                # The top score is below the model's threshold: the label is a best guess.
                "uncertain": bool(face.get("uncertain", False)),
            }
        )
    return faces


def _header(kind: str, report: Report, generated_at: datetime) -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "report": {
            "id": report.id,
            "format": report.format,
            "requested_at": _iso(report.created_at),
            "generated_at": _iso(generated_at),
        },
    }


def build_document(result: Result, report: Report, generated_at: datetime) -> dict:
    """Everything a report on one photo says, without the image bytes."""
    classes = [str(c) for c in result.model_classes]
    faces = _faces(result)
    return {
        **_header("result", report, generated_at),
        "result": {
            "id": result.id,
            "analysed_at": _iso(result.created_at),
            "filename": result.filename,
            "image": {"width": result.image_width, "height": result.image_height, "content_type": result.original_content_type},
            "notes": result.notes,
            "message": result.message,
            "timings_ms": dict(result.timings),
        },
        "model": {"name": result.model_name, "version": result.model_version, "classes": classes},
        "summary": {
            "faces": len(faces),
            "labels": dict(Counter(f["label"] for f in faces)),
            "uncertain": sum(f["uncertain"] for f in faces),
        },
        "faces": faces,
    }


def build_batch_document(batch: Batch, items: list[BatchItem], results: dict[str, Result], report: Report,
                         generated_at: datetime) -> dict:
    """A report on a batch: every photo in upload order with its faces (or why it failed), and the
    labels counted over all faces."""
    model = next(({"name": r.model_name, "version": r.model_version, "classes": [str(c) for c in r.model_classes]}
                  for r in results.values()), None)
    photos = []
    for position, item in enumerate(items, start=1):
        result = results.get(item.result_id or "")
        photos.append({
            "index": position,
            "filename": item.filename,
            "status": item.status,
            "result_id": item.result_id or None,
            "error": item.error or None,
            "faces": _faces(result) if result is not None else [],
        })
    labels = Counter(face["label"] for photo in photos for face in photo["faces"])
    return {
        **_header("batch", report, generated_at),
        "batch": {
            "id": batch.id,
            "created_at": _iso(batch.created_at),
            "status": batch.status,
            "notes": batch.notes,
            "error": batch.error or None,
        },
        "model": model,
        "summary": {
            "photos": batch.total,
            "analysed": sum(photo["status"] == "done" for photo in photos),
            "failed": sum(photo["status"] == "failed" for photo in photos),
            "faces": sum(labels.values()),
            "labels": dict(labels.most_common()),
        },
        "photos": photos,
    }


def build_video_document(video: Video, tracks: list[dict], report: Report, generated_at: datetime) -> dict:
    """A report on a video: each track's summary and points (its face at each sampled frame)."""
    classes = [str(c) for c in video.model_classes]
    share = Counter()
    for track in tracks:
        for name, value in zip(classes, track["share"]):
            share[name] += value * len(track["points"])
    points = sum(len(track["points"]) for track in tracks)
    return {
        **_header("video", report, generated_at),
        "video": {
            "id": video.id,
            "filename": video.filename,
            "uploaded_at": _iso(video.created_at),
            "status": video.status,
            "notes": video.notes,
            "duration_s": round(video.duration_s, 3),
            "width": video.width,
            "height": video.height,
            "size_bytes": video.size_bytes,
            "fps": video.fps,
            "frames_done": video.frames_done,
            "frames_total": video.frames_total,
        },
        "model": {"name": video.model_name, "version": video.model_version, "classes": classes} if video.model_name else None,
        "summary": {
            "tracks": len(tracks),
            "faces": points,
            # Of every face seen in every sampled frame, the share of each expression.
            "share": {name: round(share[name] / points, 6) if points else 0.0 for name in classes},
        },
        "tracks": [
            {
                "track": track["track"],
                "start_t": track["start_t"],
                "end_t": track["end_t"],
                "dominant_label": track["dominant_label"],
                "share": {name: round(float(v), 6) for name, v in zip(classes, track["share"])},
                "points": [
                    {"t": p["t"], "box": dict(zip(("x", "y", "width", "height"), p["box"])), "label": p["label"],
                     "scores": {name: float(v) for name, v in zip(classes, p["scores"])}}
                    for p in track["points"]
                ],
            }
            for track in tracks
        ],
    }


# The picture each kind of report carries: the annotated photo, the timeline chart; a batch has none.
PICTURE_KEYS = {"result": "annotated_image", "video": "timeline_image"}


def render_json(document: dict, picture_png: bytes) -> bytes:
    """The JSON report: the document plus its picture (base64, with its SHA-256), where its kind has one."""
    out = dict(document)
    key = PICTURE_KEYS.get(document.get("kind", "result"))
    if key:
        out[key] = (
            {
                "content_type": "image/png",
                "encoding": "base64",
                "sha256": hashlib.sha256(picture_png).hexdigest(),
                "data": base64.b64encode(picture_png).decode("ascii"),
            }
            if picture_png
            else None
        )
    return json.dumps(out, indent=2, ensure_ascii=False).encode("utf-8")
