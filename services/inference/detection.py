"""Face detection off the event loop: RetinaFace-MobileNet0.25 (ONNX, offline) with OpenCV's Haar
cascade as the fallback, run in a process pool (both are CPU-bound and hold the GIL in places)."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

DETECTORS = ("auto", "retinaface", "haar")
Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    x: int
    y: int
    width: int
    height: int
    score: float
    # RetinaFace's five landmarks in the same pixels as the box: the eyes (the one on the image's left
    # first), the nose, the mouth's corners. Empty from the Haar cascade (its faces stay unaligned).
    landmarks: tuple[Point, ...] = ()

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


_backend: tuple[str, object] | None = None


def _load_backend(kind: str) -> tuple[str, object]:
    if kind in ("auto", "retinaface"):
        try:
            import onnxruntime as ort
            import retinaface

            options = ort.SessionOptions()
            # One thread per worker: the pool is the parallelism; more threads only contend.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            retinaface.ONNX_SESSION = ort.InferenceSession(retinaface.WEIGHTS, options, providers=["CPUExecutionProvider"])
            return "retinaface", retinaface
        except Exception as exc:  # ImportError, or a broken ONNX runtime
            if kind == "retinaface":
                raise
            log.warning("RetinaFace unavailable (%s); falling back to the Haar cascade", exc)
    import cv2

    cv2.setNumThreads(1)
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    if cascade.empty():
        raise RuntimeError("OpenCV's Haar cascade could not be loaded (opencv-python-headless<5 ships it)")
    return "haar", cascade


def _init_worker(kind: str) -> None:
    global _backend
    _backend = _load_backend(kind)


def _clip(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))


def detect_in_worker(rgb: np.ndarray, min_score: float) -> tuple[str, list[Detection]]:
    """Boxes in the coordinates of `rgb`, which the caller has already scaled to a working size."""
    global _backend
    if _backend is None:
        _backend = _load_backend("auto")
    name, backend = _backend
    height, width = rgb.shape[:2]
    found: list[tuple[float, float, float, float, float, tuple[Point, ...]]] = []
    if name == "retinaface":
        for face in backend.detect_faces(np.ascontiguousarray(rgb), score_threshold=min_score):
            points = tuple((float(p.x), float(p.y)) for p in face.landmarks)
            found.append((face.x, face.y, face.width, face.height, float(face.score), points))
    else:
        import cv2

        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        minimum = max(20, min(grey.shape) // 20)
        for x, y, w, h in backend.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(minimum, minimum)):
            found.append((x, y, w, h, 1.0, ()))
    out = []
    for x, y, w, h, score, points in found:
        box = _clip(x, y, w, h, width, height)
        if box is not None:
            out.append(Detection(*box, score=score, landmarks=points))
    out.sort(key=lambda d: d.score, reverse=True)
    return name, out




class FaceDetector:
    """A pool of detector processes; `await detect(rgb)` never blocks the event loop."""

    def __init__(self, kind: str = "auto", workers: int = 2, min_score: float = 0.8) -> None:
        if kind not in DETECTORS:
            raise ValueError(f"unknown detector {kind!r}; choose one of {DETECTORS}")
        self.kind = kind
        self.workers = max(1, workers)
        self.min_score = min_score
        self.backend = ""
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: forking a process that runs gRPC threads and an event loop is unsafe.
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(self.kind,)
        )

    async def start(self) -> None:
        """Start the workers and load the detector in each (the first request should not pay for it)."""
        self._pool = self._new_pool()
        probe = np.zeros((64, 64, 3), dtype=np.uint8)
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, detect_in_worker, probe, self.min_score) for _ in range(self.workers))
        )
        self.backend = results[0][0]
        log.info("face detector ready: %s in %d processes", self.backend, self.workers)

    async def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Boxes in the coordinates of `rgb`. Hand it the image at the size to detect at (the service
        decodes photos reduced, images.decode's max_side): only that copy is pickled to the worker."""
        if self._pool is None:
            await self.start()
        loop = asyncio.get_running_loop()
        try:
            _, faces = await loop.run_in_executor(self._pool, detect_in_worker, rgb, self.min_score)
        except BrokenProcessPool:
            # A worker died (OOM killer, a crash in native code): start a fresh pool and try once more.
            log.error("detector pool broke; restarting it")
            self._pool = self._new_pool()
            _, faces = await loop.run_in_executor(self._pool, detect_in_worker, rgb, self.min_score)
        return faces

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
