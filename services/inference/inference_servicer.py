"""The InferenceService gRPC servicer: photos and face crops in, faces and expressions out."""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager

import numpy as np
from PIL import Image
from prometheus_client import Counter, Histogram

from fer.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from ferkit import images
from ferkit.vision import ModelMetadata, align_and_crop, normalise, resize_grey, to_grey, whole_face
from services.inference.config import Settings
from services.inference.detection import Detection, FaceDetector
from services.inference.errors import guarded
from services.inference.registry import ModelRegistry, Version
from services.inference.triton import ModelNotServing, TritonClient, TritonUnavailable

log = logging.getLogger(__name__)

FACES = Counter("inference_faces_total", "Faces classified, by model.", ["model"])
STAGE_SECONDS = Histogram(
    "inference_stage_seconds",
    "Time spent per prediction stage (decode, detect, preprocess, infer).",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
NO_FACE_MESSAGE = "no face was found in the image"
WHOLE_IMAGE_MESSAGE = "the whole image was taken as one face"
SMALL_IMAGE_MESSAGE = "the image is at most {side} px a side, so it was taken as one face"
MAX_CROPS = 64
MAX_FRAMES = 64
MODES = (inference_pb2.FACE_MODE_UNSPECIFIED, inference_pb2.FACE_MODE_DETECT, inference_pb2.FACE_MODE_FACE)


class _Stopwatch:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.ms[name] = self.ms.get(name, 0.0) + elapsed * 1000.0
            STAGE_SECONDS.labels(name).observe(elapsed)


def _timings(clock: _Stopwatch, start: float) -> common_pb2.Timings:
    return common_pb2.Timings(
        decode_ms=clock.ms.get("decode", 0.0),
        detect_ms=clock.ms.get("detect", 0.0),
        infer_ms=clock.ms.get("infer", 0.0) + clock.ms.get("preprocess", 0.0),
        total_ms=(time.perf_counter() - start) * 1000.0,
    )


def _model_ref(version: Version) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=version.name, version=version.version, classes=list(version.metadata.classes))


def classify(logits: np.ndarray, metadata: ModelMetadata) -> tuple[np.ndarray, np.ndarray]:
    """Scores as the version serves them (softmax of logits / its temperature) and, per face, whether
    the top score is below its uncertain_below threshold."""
    scores = metadata.scores(logits)
    return scores, metadata.is_uncertain(scores)


def _in_photo(box: tuple[int, int, int, int], decoded: images.DecodedImage) -> tuple[int, int, int, int]:
    """A box on the decoded (reduced) image in the uploaded photo's pixels."""
    if decoded.scale == 1.0:
        return box
    x, y, w, h = (v / decoded.scale for v in box)
    x0, y0 = max(0, round(x)), max(0, round(y))
    return x0, y0, max(1, min(decoded.width, round(x + w)) - x0), max(1, min(decoded.height, round(y + h)) - y0)


def _face(box: tuple[int, int, int, int], probs: np.ndarray, classes: tuple[str, ...], detection_score: float = 0.0,
          uncertain: bool = False):
    return common_pb2.FacePrediction(
        box=common_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3]),
        label=classes[int(np.argmax(probs))],
        scores=[float(p) for p in probs],
        detection_score=detection_score,
        uncertain=bool(uncertain),
    )


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, settings: Settings, registry: ModelRegistry, triton: TritonClient, detector: FaceDetector) -> None:
        self.settings = settings
        self.registry = registry
        self.triton = triton
        self.detector = detector
        self.limits = images.ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        self._recovery: asyncio.Task | None = None

    async def _recover(self, name: str) -> None:
        """Triton lost the model (it restarted): load the promoted version again, once for all callers."""
        if self._recovery is None or self._recovery.done():
            log.warning("Triton does not serve %s; loading it again", name)
            self._recovery = asyncio.create_task(self.registry.bootstrap(name))
        await asyncio.shield(self._recovery)

    async def _infer(self, version: Version, faces: np.ndarray) -> tuple[np.ndarray, int]:
        try:
            return await self.triton.infer_faces(version.name, version.version, faces)
        except ModelNotServing:
            if version.version != self.registry.promoted(version.name):
                raise ModelNotServing(
                    f"model {version.name!r} version {version.version} is not loaded; load or promote it first"
                ) from None
        try:
            await self._recover(version.name)
        except ModelNotServing as exc:
            raise TritonUnavailable(f"the promoted model could not be loaded again: {exc}") from None
        return await self.triton.infer_faces(version.name, version.version, faces)

    def _classify(self, logits: np.ndarray, version: Version) -> tuple[np.ndarray, np.ndarray]:
        probs, uncertain = classify(logits, version.metadata)
        FACES.labels(version.name).inc(len(probs))
        return probs, uncertain

    def _whole_image(self, request: inference_pb2.PredictImageRequest, width: int, height: int) -> str | None:
        """Why the whole image is one face (the message to answer with), or None: detect faces."""
        if request.mode not in MODES:
            raise images.ImageError(f"unknown mode {request.mode}; use detect or face")
        if request.mode == inference_pb2.FACE_MODE_FACE:
            return WHOLE_IMAGE_MESSAGE
        side = self.settings.one_face_max_side
        if side and max(width, height) <= side:
            return SMALL_IMAGE_MESSAGE.format(side=side)
        return None

    @guarded
    async def PredictImage(self, request: inference_pb2.PredictImageRequest, context) -> inference_pb2.PredictImageResponse:
        return await self.predict_image(request)

    async def _decode(self, data: bytes) -> images.DecodedImage:
        # Decoded at most detector_max_side a side (a JPEG in draft mode): detection and the face crops
        # both work on that image, and the boxes are mapped back to the photo's pixels once, at the end.
        # Pillow releases the GIL while decoding: a thread keeps the event loop free.
        return await asyncio.to_thread(images.decode, data, self.limits, self.settings.detector_max_side)

    async def predict_image(self, request: inference_pb2.PredictImageRequest) -> inference_pb2.PredictImageResponse:
        clock = _Stopwatch()
        start = time.perf_counter()
        with clock.stage("decode"):
            decoded = await self._decode(request.image)
        whole = self._whole_image(request, decoded.width, decoded.height)
        version = await self.registry.resolve(request.model_name, request.model_version)
        height, width = decoded.rgb.shape[:2]
        if whole is not None:
            # The image is the face: its box is the whole image, with no detector score.
            detections = [Detection(0, 0, width, height, score=0.0)]
        else:
            with clock.stage("detect"):
                detections = (await self.detector.detect(decoded.rgb))[: self.settings.max_faces]
        [faces] = await self._predict_faces(version, [(decoded, detections)], clock, whole is not None)
        return inference_pb2.PredictImageResponse(
            faces=faces,
            model=_model_ref(version),
            timings=_timings(clock, start),
            image_width=decoded.width,
            image_height=decoded.height,
            message=whole or ("" if faces else NO_FACE_MESSAGE),
        )

    async def _predict_faces(self, version: Version, found: list[tuple[images.DecodedImage, list[Detection]]],
                             clock: _Stopwatch, whole: bool = False) -> list[list[common_pb2.FacePrediction]]:
        """The faces of every image classified by ONE Triton call (so the faces of many frames fill its
        batches), answered per image, boxes in each image's own pixels."""
        counts = [len(detections) for _, detections in found]
        if not sum(counts):
            return [[] for _ in found]

        def crops() -> np.ndarray:
            return np.concatenate([self._crops(decoded.rgb, detections, version, whole) for decoded, detections in found if detections])

        with clock.stage("preprocess"):
            batch = await asyncio.to_thread(crops)
        with clock.stage("infer"):
            logits, _ = await self._infer(version, batch)
        probs, uncertain = self._classify(logits, version)
        answers, first = [], 0
        for (decoded, detections), count in zip(found, counts):
            answers.append([
                _face(_in_photo(d.box, decoded), p, version.metadata.classes, d.score, u)
                for d, p, u in zip(detections, probs[first : first + count], uncertain[first : first + count])
            ])
            first += count
        return answers

    @guarded
    async def PredictFrames(self, request: inference_pb2.PredictFramesRequest, context) -> inference_pb2.PredictFramesResponse:
        return await self.predict_frames(request)

    async def predict_frames(self, request: inference_pb2.PredictFramesRequest) -> inference_pb2.PredictFramesResponse:
        """Frames of one video: all decoded and searched for faces concurrently (the detector's process
        pool), then their faces classified together."""
        if not request.frames:
            raise images.ImageError("send at least one frame")
        if len(request.frames) > MAX_FRAMES:
            raise images.ImageError(f"at most {MAX_FRAMES} frames per request")
        clock = _Stopwatch()
        start = time.perf_counter()

        async def decode(index: int, data: bytes) -> images.DecodedImage:
            try:
                return await self._decode(data)
            except images.ImageError as exc:
                raise images.ImageError(f"frame {index}: {exc}", exc.status) from None

        with clock.stage("decode"):
            decoded = await asyncio.gather(*(decode(i, data) for i, data in enumerate(request.frames)))
        version = await self.registry.resolve(request.model_name, request.model_version)
        with clock.stage("detect"):
            found = await asyncio.gather(*(self.detector.detect(d.rgb) for d in decoded))
        detections = [faces[: self.settings.max_faces] for faces in found]
        faces = await self._predict_faces(version, list(zip(decoded, detections)), clock)
        return inference_pb2.PredictFramesResponse(
            frames=[inference_pb2.FrameFaces(faces=f, width=d.width, height=d.height) for f, d in zip(faces, decoded)],
            model=_model_ref(version),
            timings=_timings(clock, start),
        )

    def _crops(self, rgb: np.ndarray, detections: list[Detection], version: Version, whole: bool = False) -> np.ndarray:
        """Grey, square crops with the margin, turned upright by the eye landmarks (when alignment is on
        and the detector gave them), resized and normalised as the version's metadata says. `whole`:
        the image is one face (its centre square, as training takes a face image without a box)."""
        grey = to_grey(Image.fromarray(rgb))
        spec = version.metadata.input
        if whole:
            return normalise(whole_face(grey, spec.size)[None], spec)
        margin, align = self.settings.face_margin, self.settings.align_faces
        crops = np.stack([align_and_crop(grey, d.box, d.landmarks if align else None, margin, spec.size) for d in detections])
        return normalise(crops, spec)

    @guarded
    async def PredictCrops(self, request: inference_pb2.PredictCropsRequest, context) -> inference_pb2.PredictCropsResponse:
        return await self.predict_crops(request)

    async def predict_crops(self, request: inference_pb2.PredictCropsRequest) -> inference_pb2.PredictCropsResponse:
        if not request.crops:
            raise images.ImageError("send at least one face crop")
        if len(request.crops) > MAX_CROPS:
            raise images.ImageError(f"at most {MAX_CROPS} crops per request")
        clock = _Stopwatch()
        start = time.perf_counter()
        version = await self.registry.resolve(request.model_name, request.model_version)
        spec = version.metadata.input

        def prepare() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
            greys, boxes = [], []
            for index, data in enumerate(request.crops):
                try:
                    decoded = images.decode(data, self.limits)
                except images.ImageError as exc:
                    raise images.ImageError(f"crop {index}: {exc}", exc.status) from None
                greys.append(resize_grey(to_grey(Image.fromarray(decoded.rgb)), spec.size))
                boxes.append((0, 0, decoded.width, decoded.height))
            return normalise(np.stack(greys), spec), boxes

        with clock.stage("decode"):
            batch, boxes = await asyncio.to_thread(prepare)
        with clock.stage("infer"):
            logits, _ = await self._infer(version, batch)
        probs, uncertain = self._classify(logits, version)
        return inference_pb2.PredictCropsResponse(
            faces=[_face(box, p, version.metadata.classes, 0.0, u) for box, p, u in zip(boxes, probs, uncertain)],
            model=_model_ref(version),
            timings=_timings(clock, start),
        )
