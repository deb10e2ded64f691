"""Face alignment and whole-image faces in ferkit.vision: a synthetic face turned by a known angle comes
out of align_and_crop with its eyes level; without landmarks (the Haar fallback) it is crop_face."""
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ferkit.vision import DEFAULT_MARGIN, align_and_crop, crop_face, eye_angle, face_square, whole_face

CENTRE = (100.0, 100.0)
# The upright face, relative to CENTRE: eyes 40 px apart above the centre, a mouth below.
EYES = ((-20.0, -15.0), (20.0, -15.0))
MOUTH = ((-14.0, 28.0), (14.0, 28.0), (14.0, 34.0), (-14.0, 34.0))


def turned(point, degrees: float) -> tuple[float, float]:
    """`point` (relative to CENTRE) turned by `degrees` in image coordinates (y down)."""
    t = math.radians(degrees)
    x, y = point
    return CENTRE[0] + x * math.cos(t) - y * math.sin(t), CENTRE[1] + x * math.sin(t) + y * math.cos(t)


def synthetic_face(degrees: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A light grey image with two dark eyes and a dark mouth, the whole face turned by `degrees`;
    returns it with the landmarks a detector would give (eyes first, image-left one first)."""
    image = Image.new("L", (200, 200), 190)
    draw = ImageDraw.Draw(image)
    eyes = [turned(e, degrees) for e in EYES]
    for x, y in eyes:
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], fill=20)
    draw.polygon([turned(p, degrees) for p in MOUTH], fill=20)
    corners = [turned((-14.0, 31.0), degrees), turned((14.0, 31.0), degrees)]
    return np.asarray(image), [*eyes, turned((0.0, 8.0), degrees), *corners]


def dark_centroids(crop: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """(x, y) centroids of the dark pixels: left eye, right eye (upper half), mouth (lower half)."""
    ys, xs = np.nonzero(crop < 100)
    half = crop.shape[0] / 2
    upper, lower = ys < half, ys >= half
    left, right = upper & (xs < crop.shape[1] / 2), upper & (xs >= crop.shape[1] / 2)
    assert left.any() and right.any() and lower.any(), "eyes and mouth must be in the crop"
    return tuple((xs[m].mean(), ys[m].mean()) for m in (left, right, lower))


BOX = (55, 55, 90, 90)  # what a detector would give around the face, whatever its roll


@pytest.mark.parametrize("degrees", [20.0, -25.0])
def test_align_and_crop_levels_the_eyes(degrees):
    grey, landmarks = synthetic_face(degrees)
    assert eye_angle(landmarks) == pytest.approx(degrees, abs=1e-6)

    unaligned = crop_face(grey, BOX, DEFAULT_MARGIN)
    (lx, ly), (rx, ry), _ = dark_centroids(unaligned)
    assert abs(ry - ly) > 5, "the turned face's eyes are not level without alignment"

    aligned = align_and_crop(grey, BOX, landmarks, DEFAULT_MARGIN)
    assert aligned.shape == (48, 48) and aligned.dtype == np.uint8
    (lx, ly), (rx, ry), (mx, my) = dark_centroids(aligned)
    assert abs(ry - ly) < 1.0, (ly, ry)
    # Upright, not upside down or mirrored: eyes above the mouth, the mouth between them.
    assert my > max(ly, ry) + 10
    assert abs(mx - (lx + rx) / 2) < 1.0
    # Turned about the box's centre: the face stays where the upright face would be.
    upright, _ = synthetic_face(0.0)
    (ulx, uly), (urx, ury), _ = dark_centroids(crop_face(upright, BOX, DEFAULT_MARGIN))
    assert abs(lx - ulx) < 1.0 and abs(ly - uly) < 1.0 and abs(rx - urx) < 1.0


def test_without_landmarks_or_with_level_eyes_it_is_crop_face():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(120, 160), dtype=np.uint8)
    box = (-5, 30, 70, 80)  # partly outside the image: edge padding alike
    for landmarks in (None, [], [(40.0, 50.0), (70.0, 50.0), (55.0, 70.0), (45.0, 85.0), (65.0, 85.0)]):
        np.testing.assert_array_equal(align_and_crop(grey, box, landmarks, 0.1), crop_face(grey, box, 0.1))


def test_a_tiny_roll_reads_the_same_pixels_as_crop_face():
    """The turned crop samples the same grid as crop_face: off by at most rounding."""
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(200, 300), dtype=np.uint8)
    box = (40, 30, 90, 110)
    nearly_level = [(0.0, 0.0), (1e6, 1e-6)]
    diff = np.abs(align_and_crop(grey, box, nearly_level, 0.0, (110, 110)).astype(int) - crop_face(grey, box, 0.0, (110, 110)))
    assert diff.max() <= 1


def test_eye_angle_and_bad_landmarks():
    assert eye_angle([(0, 0), (10, 10)]) == pytest.approx(45.0)
    assert eye_angle([(10, 0), (0, 10)]) == pytest.approx(135.0)
    assert eye_angle([(5, 5), (5, 5)]) == 0.0
    with pytest.raises(ValueError):
        eye_angle([(1, 2)])


def test_default_margin_is_the_detector_box_square():
    assert DEFAULT_MARGIN == 0.0
    assert face_square((10, 20, 30, 40)) == (5, 20, 40)


def test_whole_face_keeps_the_centre_square():
    rng = np.random.default_rng(2)
    crop = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(whole_face(crop), crop)
    wide = rng.integers(0, 256, size=(60, 80), dtype=np.uint8)
    np.testing.assert_array_equal(whole_face(wide, (60, 60)), wide[:, 10:70])
    assert whole_face(wide).shape == (48, 48)
