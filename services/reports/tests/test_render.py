"""The renderers on their own: many faces over several A4 pages, odd text, the JSON schema."""
import io
import json
from datetime import datetime, timezone

from pypdf import PdfReader

from ferkit.vision import CLASSES
from services.reports.models import Report, Result
from services.reports.render_json import SCHEMA_VERSION, build_document, render_json
from services.reports.render_pdf import render_pdf
from tests.fixtures.reports import sample_png

WHEN = datetime(2026, 11, 22, 8, 30, 5, tzinfo=timezone.utc)


def document(n_faces: int, notes: str) -> dict:
    faces = []
    for i in range(n_faces):
        label = CLASSES[i % len(CLASSES)]
        scores = [0.05] * len(CLASSES)
        scores[CLASSES.index(label)] = 0.7
        faces.append({"box": [10 * i, 5 * i, 40, 44], "label": label, "scores": scores, "detection_score": 0.9})
    result = Result(
        id="result-1", owner_id="o", created_at=WHEN, model_name="fer-resnet18", model_version=7, model_classes=list(CLASSES),
        faces=faces, timings={"total_ms": 80.0}, notes=notes, message="", filename="crowd & <friends>.jpg",
        image_width=512, image_height=512, original_content_type="image/jpeg",
    )
    return build_document(result, Report(id="report-1", format="pdf", created_at=WHEN), WHEN)


def test_many_faces_flow_over_pages_and_text_is_escaped():
    notes = "Line one <b>not bold</b> & more\nΚαλημέρα, naïve — second line"
    pdf = PdfReader(io.BytesIO(render_pdf(document(9, notes), sample_png())))
    assert len(pdf.pages) >= 2
    assert all((round(float(p.mediabox.width)), round(float(p.mediabox.height))) == (595, 842) for p in pdf.pages)
    text = " ".join(" ".join(p.extract_text() for p in pdf.pages).split())
    for i in range(9):
        assert f"Face {i + 1}: {CLASSES[i % len(CLASSES)]} (70.0%)" in text
    assert "crowd & <friends>.jpg" in text and "<b>not bold</b> & more" in text and "Καλημέρα, naïve" in text
    assert "fer-resnet18 version 7" in text and "2026-11-22 08:30:05 UTC" in text
    assert f"page {len(pdf.pages)}" in text


def test_json_document_shape():
    doc = json.loads(render_json(document(2, "n"), b""))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["annotated_image"] is None
    assert doc["report"]["generated_at"] == "2026-11-22T08:30:05.000Z"
    assert [f["index"] for f in doc["faces"]] == [1, 2] and doc["faces"][1]["label"] == "disgust"
    assert doc["faces"][0]["scores"] == dict(zip(CLASSES, [0.7] + [0.05] * 6))
    assert doc["result"]["image"] == {"width": 512, "height": 512, "content_type": "image/jpeg"}


def test_uncertain_faces_are_marked_in_json_and_pdf():
    doc = document(2, "")
    doc["faces"][1]["uncertain"] = True
    parsed = json.loads(render_json(doc, b""))
    assert [f["uncertain"] for f in parsed["faces"]] == [False, True]
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(doc, sample_png()))).pages).split())
    assert "Face 2: disgust (70.0%), uncertain" in text
    assert "Face 1: angry (70.0%), uncertain" not in text


def test_stored_uncertain_flag_reaches_the_document():
    result = Result(
        id="r", owner_id="o", created_at=WHEN, model_name="m", model_version=1, model_classes=list(CLASSES),
        faces=[{"box": [0, 0, 4, 4], "label": "sad", "scores": [1 / 7] * 7, "uncertain": True},
               {"box": [0, 0, 4, 4], "label": "sad", "scores": [1 / 7] * 7}],  # stored before the flag existed
        timings={}, notes="", message="", filename="", image_width=4, image_height=4, original_content_type="image/png",
    )
    doc = build_document(result, Report(id="report-2", format="json", created_at=WHEN), WHEN)
    assert [f["uncertain"] for f in doc["faces"]] == [True, False] and doc["summary"]["uncertain"] == 1
