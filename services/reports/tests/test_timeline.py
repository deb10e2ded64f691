"""The timeline picture and CSV of a video's tracks."""
import csv
import io

import numpy as np
from PIL import Image

from ferkit.vision import CLASSES
from services.reports.timeline import COLOURS, MAX_ROWS, figure_size, timeline_csv, timeline_png
from services.reports.tracks import link_tracks


def tracks_of(people: int, samples: int = 40, label_of=lambda person, k: "happy") -> list[dict]:
    frames = []
    for k in range(samples):
        faces = []
        for person in range(people):
            label = label_of(person, k)
            scores = [0.05] * len(CLASSES)
            scores[CLASSES.index(label)] = 0.7
            faces.append({"box": [20 + 130 * person + k, 40, 90, 110], "label": label, "scores": scores})
        frames.append((k * 0.25, faces))
    return link_tracks(frames, CLASSES)


def colour_pixels(png: bytes, hex_colour: str) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).sum(axis=2) < 12).sum())


def test_the_picture_has_one_row_per_face_coloured_by_expression():
    tracks = tracks_of(2, label_of=lambda person, k: "happy" if person == 0 else ("sad" if k < 20 else "surprise"))
    png = timeline_png(tracks, CLASSES, duration_s=10.0)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == figure_size(2) == (1000, image.size[1])
    happy, sad, surprise, angry = (colour_pixels(png, COLOURS[c]) for c in ("happy", "sad", "surprise", "angry"))
    # One full row of happy; half a row each of sad and surprise; angry only in the legend's swatch.
    assert happy > 10_000 and 4_000 < sad < happy * 0.75 and 4_000 < surprise < happy * 0.75
    assert angry < 500


def test_more_faces_make_a_taller_picture_up_to_a_limit():
    sizes = [Image.open(io.BytesIO(timeline_png(tracks_of(n, samples=8), CLASSES, 2.0))).size for n in (1, 4, 8)]
    assert sizes[0][1] < sizes[1][1] < sizes[2][1] and {w for w, _ in sizes} == {1000}
    crowd = tracks_of(MAX_ROWS + 5, samples=4)
    assert len(crowd) == MAX_ROWS + 5
    assert Image.open(io.BytesIO(timeline_png(crowd, CLASSES, 1.0))).size == figure_size(MAX_ROWS)


def test_no_face_is_still_a_picture():
    png = timeline_png([], CLASSES, duration_s=12.0)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.size == figure_size(0)
    # No bars and no legend (neutral's grey is left out: the message's anti-aliased grey text has it).
    assert all(colour_pixels(png, COLOURS[c]) == 0 for c in CLASSES if c != "neutral")


def test_csv_has_one_row_per_point_with_the_scores_in_class_order():
    tracks = tracks_of(2, samples=6)
    rows = list(csv.reader(io.StringIO(timeline_csv(tracks, CLASSES))))
    assert rows[0] == ["track", "t", "x", "y", "width", "height", "label", *CLASSES]
    assert len(rows) - 1 == sum(len(t["points"]) for t in tracks) == 12
    first = rows[1]
    assert first[:7] == ["1", "0.000", "20", "40", "90", "110", "happy"]
    assert [float(v) for v in first[7:]] == tracks[0]["points"][0]["scores"]
    assert {row[0] for row in rows[1:]} == {"1", "2"}
    assert timeline_csv([], CLASSES).splitlines() == [",".join(["track", "t", "x", "y", "width", "height", "label", *CLASSES])]
