"""The PDF report (reportlab, A4), laid out from the same document the JSON report carries. On a
result: annotated image, the faces with all scores, a bar chart per face, the notes, model and time
stamps. On a batch: the labels over all faces and a row per photo. On a video: the timeline chart and
a row per face followed (when, its dominant expression, its share of each)."""
import io
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

# Binary streams, not ASCII85: without reportlab's C accelerator the pure-Python encoder costs more
# than the whole layout, and the file is a quarter larger.
rl_config.useA85 = 0

MARGIN = 18 * mm
# The frame keeps 6 pt of padding on each side; tables this wide line up with the text.
FRAME_WIDTH = A4[0] - 2 * MARGIN - 12
IMAGE_MAX_HEIGHT = 105 * mm
PRINT_MAX_PX = 1600
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
ACCENT = colors.HexColor("#2f6fde")
RULE = colors.HexColor("#cbd2d9")
ZEBRA = colors.HexColor("#f5f7fa")

# DejaVu Sans where the system has it (covers Latin, Greek, Cyrillic: notes are free text); otherwise
# Bitstream Vera, which ships inside reportlab, so the layout never depends on the machine.
_FONT_CANDIDATES = [
    (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")),
    (Path("/usr/share/fonts/TTF/DejaVuSans.ttf"), Path("/usr/share/fonts/TTF/DejaVuSans-Bold.ttf")),
]


def _register_fonts() -> tuple[str, str]:
    if "ReportSans" not in pdfmetrics.getRegisteredFontNames():
        import reportlab

        vera = Path(reportlab.__file__).parent / "fonts"
        regular, bold = next(
            ((r, b) for r, b in _FONT_CANDIDATES if r.is_file() and b.is_file()), (vera / "Vera.ttf", vera / "VeraBd.ttf")
        )
        pdfmetrics.registerFont(TTFont("ReportSans", str(regular)))
        pdfmetrics.registerFont(TTFont("ReportSans-Bold", str(bold)))
        pdfmetrics.registerFontFamily("ReportSans", normal="ReportSans", bold="ReportSans-Bold")
    return "ReportSans", "ReportSans-Bold"


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _register_fonts()
    base = ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=13, textColor=INK, alignment=TA_LEFT)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=bold, fontSize=19, leading=23, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", parent=base, textColor=MUTED, fontSize=10, spaceAfter=8),
        "h2": ParagraphStyle("h2", parent=base, fontName=bold, fontSize=12.5, leading=16, spaceBefore=10, spaceAfter=5, textColor=ACCENT),
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=10.5, textColor=MUTED),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=11),
        "cellbold": ParagraphStyle("cellbold", parent=base, fontName=bold, fontSize=8.5, leading=11),
        "key": ParagraphStyle("key", parent=base, fontName=bold, fontSize=9, textColor=MUTED),
        "head": ParagraphStyle("head", parent=base, fontName=bold, fontSize=7.5, leading=10, textColor=MUTED),
    }


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}%"


def _annotated_image(png: bytes) -> Image:
    with PILImage.open(io.BytesIO(png)) as probe:
        probe.load()  # a corrupt or truncated image fails here, not halfway through the PDF
        picture = probe.convert("RGB")
    width, height = picture.size
    # Embedded as JPEG at no more than ~230 dpi across the page: a photo as flate-compressed pixels
    # would make every report megabytes large.
    picture.thumbnail((PRINT_MAX_PX, PRINT_MAX_PX), PILImage.Resampling.LANCZOS)
    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG", quality=88, optimize=True)
    jpeg.seek(0)
    scale = min(FRAME_WIDTH / width, IMAGE_MAX_HEIGHT / height)
    picture = Image(jpeg, width=width * scale, height=height * scale)
    picture.hAlign = "CENTER"
    return picture


def _bar_chart(face: dict, classes: list[str], font: str, bold: str, width: float) -> Drawing:
    height = 50 * mm
    drawing = Drawing(width, height)
    chart = HorizontalBarChart()
    chart.x, chart.y = 17 * mm, 5 * mm
    chart.width, chart.height = width - 30 * mm, height - 14 * mm
    # reportlab draws the first category at the bottom; reversed, the chart reads top-down in class order.
    names = list(reversed(classes))
    chart.data = [[100.0 * face["scores"][name] for name in names]]
    chart.categoryAxis.categoryNames = names
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 7.5
    chart.categoryAxis.labels.dx = -2
    chart.categoryAxis.strokeColor = RULE
    chart.valueAxis.valueMin, chart.valueAxis.valueMax, chart.valueAxis.valueStep = 0, 100, 25
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.valueAxis.strokeColor = RULE
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = colors.HexColor("#e4e7eb")
    chart.bars.strokeColor = None
    chart.bars[0].fillColor = colors.HexColor("#9aa5b1")
    chart.barWidth = 4
    chart.groupSpacing = 2.2
    top = names.index(face["label"]) if face["label"] in names else None
    if top is not None:
        chart.bars[(0, top)].fillColor = ACCENT
    chart.barLabelFormat = "%.1f"
    chart.barLabels.fontName = font
    chart.barLabels.fontSize = 6.5
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 2
    drawing.add(chart)
    caption = f"Face {face['index']}: {face['label']} ({_pct(face['confidence'])})" + (", uncertain" if face.get("uncertain") else "")
    drawing.add(String(0, height - 5 * mm, caption, fontName=bold, fontSize=9, fillColor=INK))
    return drawing


def _faces_table(faces: list[dict], classes: list[str], s: dict) -> Table:
    header = [Paragraph("#", s["head"]), Paragraph("Expression", s["head"]), Paragraph("Box x, y, w×h", s["head"])]
    header += [Paragraph(name.capitalize(), s["head"]) for name in classes]
    rows = [header]
    for face in faces:
        box = face["box"]
        row = [
            Paragraph(str(face["index"]), s["cell"]),
            Paragraph(escape(face["label"]) + ("<br/><i>uncertain</i>" if face.get("uncertain") else ""), s["cellbold"]),
            Paragraph(f"{box['x']}, {box['y']}, {box['width']}×{box['height']}", s["cell"]),
        ]
        row += [Paragraph(_pct(face["scores"][n]), s["cellbold"] if n == face["label"] else s["cell"]) for n in classes]
        rows.append(row)
    fixed = [7 * mm, 20 * mm, 28 * mm]
    score_width = (FRAME_WIDTH - sum(fixed)) / max(1, len(classes))
    return _grid(rows, fixed + [score_width] * len(classes))


def _facts_table(facts: list[tuple[str, str]], s: dict) -> Table:
    table = Table(
        [[Paragraph(k, s["key"]), Paragraph(escape(v), s["body"])] for k, v in facts], colWidths=[34 * mm, FRAME_WIDTH - 34 * mm]
    )
    table.setStyle(TableStyle([("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return table


def _grid(rows: list[list], widths: list[float]) -> Table:
    """A table with a header row (repeated on every page) and zebra rows."""
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
                ("LINEBELOW", (0, -1), (-1, -1), 0.4, RULE),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def _notes(notes: str, s: dict) -> KeepTogether:
    notes = notes.strip()
    return KeepTogether(
        [Paragraph("Notes", s["h2"]), Paragraph(escape(notes).replace("\n", "<br/>") if notes else "No notes.", s["body"])]
    )


def _model(model: dict | None) -> str:
    return f"{model['name']} version {model['version']}" if model else "none yet"


def _result_story(document: dict, annotated_png: bytes, s: dict) -> tuple[list, str, str]:
    font, bold = _register_fonts()
    result, model, faces = document["result"], document["model"], document["faces"]
    classes = model["classes"]
    story = [
        Paragraph("Facial expression report", s["title"]),
        Paragraph(escape(result["filename"] or "Uploaded image"), s["subtitle"]),
    ]
    image = result["image"]
    facts = [
        ("Model", _model(model)),
        ("Analysed", _when(result["analysed_at"])),
        ("Report generated", _when(document["report"]["generated_at"])),
        ("Image", f"{image['width']}×{image['height']} px" + (f", {image['content_type']}" if image["content_type"] else "")),
        ("Faces found", str(len(faces))),
        ("Result id", result["id"]),
        ("Report id", document["report"]["id"]),
    ]
    story += [_facts_table(facts, s), Spacer(1, 6 * mm)]
    if annotated_png:
        story += [_annotated_image(annotated_png), Spacer(1, 2 * mm)]
    if result["message"]:
        story.append(Paragraph(escape(result["message"]), s["small"]))

    story.append(Paragraph("Faces and scores", s["h2"]))
    if faces:
        story.append(_faces_table(faces, classes, s))
        half = (FRAME_WIDTH - 6 * mm) / 2
        charts = [_bar_chart(face, classes, font, bold, half) for face in faces]
        rows = []
        for i in range(0, len(charts), 2):  # two charts a row; a row never splits across pages
            row = Table([charts[i : i + 2] + [""] * (2 - len(charts[i : i + 2]))], colWidths=[half + 3 * mm, half + 3 * mm])
            row.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            rows.append(row)
        story.append(KeepTogether([Paragraph("Scores per face", s["h2"]), rows[0]]))  # no heading alone at a page foot
        story += rows[1:]
    else:
        story.append(Paragraph("No face was found in this image.", s["body"]))

    story.append(_notes(result["notes"], s))
    timings = result["timings_ms"]
    if timings.get("total_ms"):
        parts = ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in timings.items() if v)
        story += [Spacer(1, 4 * mm), Paragraph(f"Processing time: {parts}.", s["small"])]
    return story, f"Facial expression report {document['report']['id']}", result["filename"] or "facial expression analysis"


def _batch_story(document: dict, _picture: bytes, s: dict) -> tuple[list, str, str]:
    """Facts, the labels over all faces, then one row per photo: its faces' labels, or why it failed."""
    batch, summary, photos = document["batch"], document["summary"], document["photos"]
    story = [
        Paragraph("Batch expression report", s["title"]),
        Paragraph(f"{summary['photos']} photos", s["subtitle"]),
        _facts_table([
            ("Model", _model(document["model"])),
            ("Uploaded", _when(batch["created_at"])),
            ("Report generated", _when(document["report"]["generated_at"])),
            ("Photos", f"{summary['analysed']} analysed, {summary['failed']} failed, of {summary['photos']}"),
            ("Faces found", str(summary["faces"])),
            ("Batch id", batch["id"]),
            ("Report id", document["report"]["id"]),
        ], s),
        Paragraph("Expressions over all faces", s["h2"]),
    ]
    if summary["labels"]:
        rows = [[Paragraph(h, s["head"]) for h in ("Expression", "Faces", "Share")]]
        rows += [[Paragraph(escape(label), s["cellbold"]), Paragraph(str(n), s["cell"]), Paragraph(_pct(n / summary["faces"]), s["cell"])]
                 for label, n in summary["labels"].items()]
        story.append(_grid(rows, [50 * mm, 30 * mm, 30 * mm]))
    else:
        story.append(Paragraph("No face was found in these photos.", s["body"]))
    story.append(Paragraph("Photos", s["h2"]))
    rows = [[Paragraph(h, s["head"]) for h in ("#", "File", "Faces", "Expressions (or why the photo failed)")]]
    for photo in photos:
        if photo["status"] == "failed":
            what = Paragraph("<i>" + escape(photo["error"] or "failed") + "</i>", s["cell"])
        elif photo["status"] == "done":
            what = Paragraph(escape(", ".join(face["label"] for face in photo["faces"]) or "no face"), s["cell"])
        else:
            what = Paragraph("not analysed yet", s["cell"])
        rows.append([Paragraph(str(photo["index"]), s["cell"]), Paragraph(escape(photo["filename"]), s["cell"]),
                     Paragraph(str(len(photo["faces"])), s["cell"]), what])
    story.append(_grid(rows, [10 * mm, 62 * mm, 14 * mm, FRAME_WIDTH - 86 * mm]))
    story.append(_notes(batch["notes"], s))
    return story, f"Batch expression report {document['report']['id']}", "facial expression analysis of a batch of photos"


def _timeline_image(png: bytes) -> Image:
    """The chart as drawn (PNG: lines and flat colours stay sharp), scaled to the frame's width."""
    with PILImage.open(io.BytesIO(png)) as probe:
        width, height = probe.size
    scale = min(FRAME_WIDTH / width, 1.6 * IMAGE_MAX_HEIGHT / height)
    picture = Image(io.BytesIO(png), width=width * scale, height=height * scale)
    picture.hAlign = "CENTER"
    return picture


def _video_story(document: dict, timeline_png: bytes, s: dict) -> tuple[list, str, str]:
    """Facts, the timeline picture, then one row per track: when, its dominant expression, its shares."""
    video, summary, tracks = document["video"], document["summary"], document["tracks"]
    classes = document["model"]["classes"] if document["model"] else list(summary["share"])
    story = [
        Paragraph("Video expression report", s["title"]),
        Paragraph(escape(video["filename"] or "Uploaded video"), s["subtitle"]),
        _facts_table([
            ("Model", _model(document["model"])),
            ("Uploaded", _when(video["uploaded_at"])),
            ("Report generated", _when(document["report"]["generated_at"])),
            ("Video", f"{video['duration_s']:.1f} s, {video['width']}×{video['height']} px"),
            ("Frames analysed", f"{video['frames_done']} of {video['frames_total']}, {video['fps']:g} per second"),
            ("Faces followed", str(summary["tracks"])),
            ("Video id", video["id"]),
            ("Report id", document["report"]["id"]),
        ], s),
        Spacer(1, 4 * mm),
    ]
    if timeline_png:
        story += [_timeline_image(timeline_png), Spacer(1, 2 * mm)]
    story.append(Paragraph("Faces followed over time", s["h2"]))
    if tracks:
        header = [Paragraph(h, s["head"]) for h in ("Face", "From–to (s)", "Mostly")] + [Paragraph(c.capitalize(), s["head"]) for c in classes]
        rows = [header]
        for track in tracks:
            rows.append([
                Paragraph(str(track["track"]), s["cell"]),
                Paragraph(f"{track['start_t']:.1f}–{track['end_t']:.1f}", s["cell"]),
                Paragraph(escape(track["dominant_label"]), s["cellbold"]),
                *[Paragraph(_pct(track["share"].get(c, 0.0)), s["cellbold"] if c == track["dominant_label"] else s["cell"]) for c in classes],
            ])
        fixed = [12 * mm, 24 * mm, 20 * mm]
        story.append(_grid(rows, fixed + [(FRAME_WIDTH - sum(fixed)) / max(1, len(classes))] * len(classes)))
    else:
        story.append(Paragraph("No face was found in this video.", s["body"]))
    story.append(_notes(video["notes"], s))
    return story, f"Video expression report {document['report']['id']}", video["filename"] or "facial expression analysis of a video"


STORIES = {"result": _result_story, "batch": _batch_story, "video": _video_story}


def render_pdf(document: dict, picture_png: bytes) -> bytes:
    """The PDF of a report on a result (with its annotated photo), a batch, or a video (with its timeline)."""
    s = _styles()
    font, _ = _register_fonts()
    report_id = document["report"]["id"]
    story, title, subject = STORIES[document.get("kind", "result")](document, picture_png, s)

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.setFillColor(MUTED)
        canvas.setStrokeColor(RULE)
        canvas.line(MARGIN, 12 * mm, A4[0] - MARGIN, 12 * mm)
        canvas.drawString(MARGIN, 8 * mm, f"FER platform · report {report_id}")
        canvas.drawRightString(A4[0] - MARGIN, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=title,
        author="FER platform",
        subject=subject,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
