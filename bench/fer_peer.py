"""The `fer` library on the same photos, one process, one photo at a time (`make bench-predict` runs this
inside its own virtual environment, var/bench/fer-venv: `fer` needs TensorFlow, which the project does not).

    var/bench/fer-venv/bin/python bench/fer_peer.py PHOTO_DIR --requests 48

Prints one JSON object: photos/s, per-photo p50/p99 in ms, faces found. Uses only `fer` and its deps."""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", type=Path)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    import cv2
    import numpy as np
    from fer.fer import FER

    files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"error: no photos (*.jpg, *.png) under {args.photos}")
    detector = FER()  # Haar cascade + mini-Xception, as `fer` ships by default
    # Decoding counts: the platform's figure includes it too.
    for path in files[: args.warmup]:
        detector.detect_emotions(cv2.imread(str(path)))
    times, faces = [], 0
    start = time.perf_counter()
    for i in range(args.requests):
        path = files[i % len(files)]
        began = time.perf_counter()
        faces += len(detector.detect_emotions(cv2.imread(str(path))))
        times.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    ms = np.array(times) * 1000.0
    print(json.dumps({
        "photos_per_s": args.requests / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "faces": faces,
        "requests": args.requests,
    }))


if __name__ == "__main__":
    main()
