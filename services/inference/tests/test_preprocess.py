"""The inference servicer's own logic with Triton, the registry and the detector replaced by fakes (no
processes, no Triton): calibrated scores and the uncertain flag, whole-image faces (mode=face and the
small-image rule), alignment of detected faces by their landmarks."""
import io

import numpy as np
import pytest
from PIL import Image

from fer.v1 import inference_pb2
from ferkit import images
from ferkit.tests.test_vision_align import BOX, dark_centroids, synthetic_face
from ferkit.vision import CLASSES, InputSpec, ModelMetadata, align_and_crop, crop_face, normalise, softmax, to_grey, whole_face
from services.inference.config import Settings
from services.inference.detection import Detection
from services.inference.registry import Version
from services.inference.inference_servicer import InferenceServicer, classify


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


class FakeRegistry:
    def __init__(self, metadata: ModelMetadata) -> None:
        self.served = Version(metadata.name, metadata.version, metadata, "{}")

    async def resolve(self, name: str, version: int) -> Version:
        return self.served

    def promoted(self, name: str) -> int:
        return self.served.version


class FakeTriton:
    """Answers each face with the next row of `logits` and keeps what it was sent."""

    def __init__(self, logits) -> None:
        self.logits = np.asarray(logits, dtype=np.float32)
        self.sent: list[np.ndarray] = []

    async def infer_faces(self, model: str, version: int, faces: np.ndarray):
        self.sent.append(faces)
        return self.logits[: len(faces)], version


class FakeDetector:
    def __init__(self, detections: list[Detection]) -> None:
        self.detections = detections
        self.calls = 0

    async def detect(self, rgb: np.ndarray) -> list[Detection]:
        self.calls += 1
        return list(self.detections)


LOGITS = [[0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]


def servicer(detections=(), logits=LOGITS, temperature=1.0, uncertain_below=0.0, **settings):
    metadata = ModelMetadata(name="fer", version=1, architecture="resnet18", temperature=temperature,
                             uncertain_below=uncertain_below)
    return InferenceServicer(Settings(**settings), FakeRegistry(metadata), FakeTriton(logits), FakeDetector(list(detections)))


def test_classify_applies_the_temperature_and_the_threshold():
    metadata = ModelMetadata(name="fer", version=1, architecture="resnet18", temperature=2.0, uncertain_below=0.5)
    logits = np.array(LOGITS, dtype=np.float32)
    scores, uncertain = classify(logits, metadata)
    np.testing.assert_allclose(scores, softmax(logits / 2.0), rtol=1e-6)
    assert not np.allclose(scores, softmax(logits), atol=1e-3)
    # Face 0: 0.77 at T=2 (0.99 at T=1), above 0.5; face 1: 0.21, below it.
    assert scores[0].max() > 0.5 > scores[1].max()
    assert uncertain.tolist() == [False, True]
    # The default threshold (0) never marks a face.
    assert not classify(logits, ModelMetadata(name="fer", version=1, architecture="resnet18"))[1].any()


async def test_uncertain_flag_is_set_when_the_top_score_is_below_the_threshold():
    faces = [Detection(10, 10, 40, 40, 0.99), Detection(60, 10, 40, 40, 0.95)]
    service = servicer(faces, temperature=2.0, uncertain_below=0.5)
    reply = await service.predict_image(inference_pb2.PredictImageRequest(image=png(np.full((120, 160, 3), 90, np.uint8))))
    assert [f.uncertain for f in reply.faces] == [False, True]
    # The label stays the top class, uncertain or not; scores are the calibrated ones.
    assert [f.label for f in reply.faces] == ["happy", "sad"]
    np.testing.assert_allclose([list(f.scores) for f in reply.faces], softmax(np.array(LOGITS) / 2.0), rtol=1e-5)

    crops = await service.predict_crops(inference_pb2.PredictCropsRequest(crops=[png(np.zeros((48, 48), np.uint8))] * 2))
    assert [f.uncertain for f in crops.faces] == [False, True]


@pytest.mark.parametrize("mode", [inference_pb2.FACE_MODE_FACE, inference_pb2.FACE_MODE_UNSPECIFIED, inference_pb2.FACE_MODE_DETECT])
async def test_a_48x48_image_is_one_face_with_the_whole_image_box(mode):
    service = servicer([Detection(1, 1, 20, 20, 0.9)], logits=LOGITS[:1])
    crop = np.random.default_rng(0).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    reply = await service.predict_image(inference_pb2.PredictImageRequest(image=png(crop), mode=mode))
    assert len(reply.faces) == 1
    face = reply.faces[0]
    assert (face.box.x, face.box.y, face.box.width, face.box.height) == (0, 0, 48, 48)
    assert face.detection_score == 0.0 and face.label == "happy"
    assert "one face" in reply.message
    assert service.detector.calls == 0, "a whole-image face is not searched for"
    np.testing.assert_array_equal(service.triton.sent[0], normalise(whole_face(to_grey(Image.fromarray(crop)))[None], InputSpec()))


async def test_mode_face_takes_a_large_photo_whole_and_detect_searches_it():
    photo = np.full((300, 400, 3), 120, np.uint8)
    service = servicer([Detection(100, 50, 80, 90, 0.99)], logits=LOGITS[:1])
    whole = await service.predict_image(inference_pb2.PredictImageRequest(image=png(photo), mode=inference_pb2.FACE_MODE_FACE))
    assert [(f.box.x, f.box.y, f.box.width, f.box.height) for f in whole.faces] == [(0, 0, 400, 300)]
    assert service.detector.calls == 0
    found = await service.predict_image(inference_pb2.PredictImageRequest(image=png(photo)))
    assert [(f.box.x, f.box.y, f.box.width, f.box.height) for f in found.faces] == [(100, 50, 80, 90)]
    assert service.detector.calls == 1 and found.message == ""


async def test_the_small_image_rule_follows_its_setting():
    crop = png(np.full((48, 48, 3), 100, np.uint8))
    service = servicer([], one_face_max_side=0)
    reply = await service.predict_image(inference_pb2.PredictImageRequest(image=crop))
    assert list(reply.faces) == [] and "no face" in reply.message and service.detector.calls == 1
    service = servicer([], one_face_max_side=96)
    reply = await service.predict_image(inference_pb2.PredictImageRequest(image=png(np.full((97, 40, 3), 100, np.uint8))))
    assert list(reply.faces) == [] and service.detector.calls == 1, "a side over the limit: detect"


async def test_an_unknown_mode_is_refused():
    service = servicer()
    with pytest.raises(images.ImageError, match="mode"):
        await service.predict_image(inference_pb2.PredictImageRequest(image=png(np.zeros((48, 48, 3), np.uint8)), mode=7))


@pytest.mark.parametrize("align", [True, False])
async def test_detected_faces_are_aligned_by_their_landmarks(align):
    grey, landmarks = synthetic_face(20.0)
    face = Detection(*BOX, score=0.99, landmarks=tuple(landmarks))
    service = servicer([face], logits=LOGITS[:1], align_faces=align)
    await service.predict_image(inference_pb2.PredictImageRequest(image=png(np.stack([grey] * 3, axis=-1))))
    expected = align_and_crop(grey, BOX, landmarks, service.settings.face_margin) if align else crop_face(grey, BOX, service.settings.face_margin)
    np.testing.assert_array_equal(service.triton.sent[0], normalise(expected[None], InputSpec()))
    # What was sent: eyes level when aligned, not when alignment is off.
    pixels = np.rint(service.triton.sent[0][0, 0] * 127.5 + 127.5).astype(np.uint8)
    (_, ly), (_, ry), _ = dark_centroids(pixels)
    assert (abs(ry - ly) < 1.0) == align


def test_default_settings():
    settings = Settings()
    assert settings.face_margin == 0.0 and settings.align_faces and settings.one_face_max_side == 96
    assert list(CLASSES)[3] == "happy"
