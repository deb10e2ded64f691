"""The report's content as one document: the JSON report is this document, the PDF lays it out.

Schema "fer-platform.report", version 1. Consumers check `schema_version`; new fields may appear
within a version, a field's meaning never changes without a new version.
"""
import base64
import hashlib
import json
from collections import Counter
from datetime import datetime

from ferkit.db import as_utc
from services.reports.models import Report, Result

SCHEMA = "fer-platform.report"
SCHEMA_VERSION = 1


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_document(result: Result, report: Report, generated_at: datetime) -> dict:
    """Everything a report says, without the image bytes."""
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
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "report": {
            "id": report.id,
            "format": report.format,
            "requested_at": _iso(report.created_at),
            "generated_at": _iso(generated_at),
        },
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


def render_json(document: dict, annotated_png: bytes) -> bytes:
    """The JSON report: the document plus the annotated image (base64, with its SHA-256)."""
    out = dict(document)
    out["annotated_image"] = (
        {
            "content_type": "image/png",
            "encoding": "base64",
            "sha256": hashlib.sha256(annotated_png).hexdigest(),
            "data": base64.b64encode(annotated_png).decode("ascii"),
        }
        if annotated_png
        else None
    )
    return json.dumps(out, indent=2, ensure_ascii=False).encode("utf-8")
