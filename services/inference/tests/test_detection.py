"""Face detection on a real photo (scikit-image's astronaut), with RetinaFace and with the Haar fallback,
in worker processes; boxes come back in the coordinates of the image they were given."""
import numpy as np
import pytest
from skimage import data as skdata

from services.inference.detection import FaceDetector
from services.inference.tests.helpers import iou

# Where the astronaut's face is in the 512x512 photo (x, y, w, h), by eye.
FACE = (175, 50, 100, 130)


@pytest.mark.parametrize("kind", ["retinaface", "haar"])
async def test_finds_the_astronauts_face(kind):
    detector = FaceDetector(kind, workers=1)
    await detector.start()
    try:
        assert detector.backend == kind
        photo = skdata.astronaut()
        faces = await detector.detect(photo)
        assert len(faces) == 1, faces
        assert iou(faces[0].box, FACE) > 0.4, faces[0]
        landmarks = faces[0].landmarks
        if kind == "retinaface":
            # Five points in the photo's pixels, inside the box: the eyes (image-left first) above the
            # nose, the nose above the mouth's corners.
            x, y, w, h = faces[0].box
            assert len(landmarks) == 5 and all(x <= px <= x + w and y <= py <= y + h for px, py in landmarks), landmarks
            (lx, ly), (rx, ry), (_, ny), (_, my1), (_, my2) = landmarks
            assert lx < rx and max(ly, ry) < ny < min(my1, my2)
        else:
            assert landmarks == (), "the Haar cascade gives no landmarks: its faces stay unaligned"
        # (A photo larger than detector_max_side is decoded reduced first: test_service checks its boxes.)
        assert await detector.detect(np.full((300, 400, 3), 127, dtype=np.uint8)) == []
    finally:
        detector.close()
