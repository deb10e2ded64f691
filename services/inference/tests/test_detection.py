"""Face detection on a real photo (scikit-image's astronaut), with RetinaFace and with the Haar fallback,
in worker processes; boxes come back in the coordinates of the photo, also when it was scaled down."""
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from services.inference.detection import FaceDetector

# Where the astronaut's face is in the 512x512 photo (x, y, w, h), by eye.
FACE = (175, 50, 100, 130)


def overlap(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / float(aw * ah + bw * bh - w * h)


@pytest.mark.parametrize("kind", ["retinaface", "haar"])
async def test_finds_the_astronauts_face(kind):
    detector = FaceDetector(kind, workers=1, max_side=1024)
    await detector.start()
    try:
        assert detector.backend == kind
        photo = skdata.astronaut()
        faces = await detector.detect(photo)
        assert len(faces) == 1, faces
        assert overlap(faces[0].box, FACE) > 0.4, faces[0]
        # Four times the size, detected on a copy scaled down to 1024: the box grows with the photo.
        big = np.asarray(Image.fromarray(photo).resize((2048, 2048)))
        scaled = await detector.detect(big)
        assert any(overlap(face.box, tuple(4 * v for v in FACE)) > 0.4 for face in scaled), scaled
        if kind == "retinaface":
            assert len(scaled) == 1, scaled  # Haar, the fallback, may add a false positive
        assert await detector.detect(np.full((300, 400, 3), 127, dtype=np.uint8)) == []
    finally:
        detector.close()
