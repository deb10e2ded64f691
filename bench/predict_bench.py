"""POST /api/v1/predictions end to end on real photos (`make bench-predict`).

Uploads every photo under --photos (JPEG/PNG) round-robin from C concurrent clients (C = 1 and 16)
and reports images/s, p50/p99 latency and where the time went: decode, face detection, Triton
(crop + inference), annotation (inference service's own timings) and the rest (gateway, storing
the result in the reports service, the usage count, transfers).

Without --url it starts the whole platform (scripts/dev.py) on spare ports in a temp folder and
stops it afterwards; with --url it uses a running one (e.g. `make dev`).

The peer: the `fer` library (Haar cascade + mini-Xception) on the same photos, one at a time in one
process, measured first on the same quiet machine. It needs TensorFlow, so it runs from its own virtual
environment (var/bench/fer-venv, created on the first run from PyPI; --no-peer skips it).

    python -m bench.predict_bench [--photos ../shared/data/photos] [--requests 160] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from scripts.dev import Ports

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1"
PEER_VENV = ROOT / "var" / "bench" / "fer-venv"
# `fer` without its declared extras (facenet-pytorch would pull a second torch; moviepy is for videos).
PEER_PACKAGES = ["tensorflow-cpu==2.20.0", "opencv-python-headless==4.14.0.94", "pandas", "tqdm", "requests", "Pillow",
                 "setuptools<81"]
PEER_VERSION = "fer==25.10.3"


def photos_in(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no photos (*.jpg, *.png) under {folder}")
    return [(p.name, p.read_bytes()) for p in files]


def peer_env() -> dict:
    """The environment without the project's PYTHONPATH: its gen/ holds a package named `fer` too."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def peer_python() -> Path:
    """The `fer` library's own interpreter; creates its virtual environment on the first run."""
    python, stamp = PEER_VENV / "bin" / "python", PEER_VENV / f".installed-{PEER_VERSION}"
    if not stamp.exists():
        print(f"installing {PEER_VERSION} and TensorFlow into {PEER_VENV} (once, about a minute)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "--no-deps", PEER_VERSION], check=True, env=peer_env())
        subprocess.run([*pip, *PEER_PACKAGES], check=True, env=peer_env())
        stamp.touch()
    return python


def run_peer(photos: Path, requests: int) -> dict:
    print("the fer library, one process, one photo at a time ...", file=sys.stderr)
    out = subprocess.run([str(peer_python()), str(ROOT / "bench" / "fer_peer.py"), str(photos), "--requests", str(requests)],
                         check=True, capture_output=True, text=True, env=peer_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_platform(port_base: int, var: Path, repository: Path | None) -> subprocess.Popen:
    env = dict(os.environ)
    if repository is not None:
        env["INFERENCE_MODEL_REPOSITORY"] = str(repository)
    log = open(var / "platform.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "scripts.dev", "--var", str(var), "--port-base", str(port_base)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_platform(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def wait_ready(client: httpx.AsyncClient, url: str, timeout_s: float = 120) -> None:
    """Until the gateway's /readyz answers 200; exits the bench past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway at {url} was not ready within {timeout_s:.0f} s")
        await asyncio.sleep(1)


async def login(client: httpx.AsyncClient) -> dict:
    email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "Bench-password-42"
    created = await client.post(f"{API}/auth/register", json={"email": email, "password": password, "display_name": "Bench"})
    created.raise_for_status()
    tokens = (await client.post(f"{API}/auth/token", data={"username": email, "password": password})).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def wait_serving(client: httpx.AsyncClient, headers: dict, photo: tuple[str, bytes], timeout_s: float = 240) -> None:
    """Until a prediction succeeds: Triton up, the model loaded, every service ready."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            reply = await client.post(f"{API}/predictions", headers=headers, files={"file": photo})
            if reply.status_code == 201:
                return
            last = f"{reply.status_code} {reply.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        await asyncio.sleep(2)
    raise SystemExit(f"the platform did not serve predictions within {timeout_s:.0f} s: {last}")


async def run_level(client: httpx.AsyncClient, headers: dict, photos, concurrency: int, requests: int) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(photos[i % len(photos)])
    rows: list[dict] = []

    async def worker() -> None:
        while not queue.empty():
            name, data = queue.get_nowait()
            start = time.perf_counter()
            reply = await client.post(f"{API}/predictions", headers=headers, files={"file": (name, data)})
            elapsed = (time.perf_counter() - start) * 1000
            if reply.status_code != 201:
                raise SystemExit(f"{name}: {reply.status_code} {reply.text[:300]}")
            body = reply.json()
            rows.append({"ms": elapsed, "faces": len(body["faces"]), **body["timings"]})

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    e2e = np.array([r["ms"] for r in rows])

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    return {
        "concurrency": concurrency,
        "requests": len(rows),
        "images_per_s": len(rows) / wall,
        "p50_ms": float(np.percentile(e2e, 50)),
        "p99_ms": float(np.percentile(e2e, 99)),
        "mean_ms": float(e2e.mean()),
        "decode_ms": mean("decode_ms"),
        "detect_ms": mean("detect_ms"),
        "triton_ms": mean("infer_ms"),
        "annotate_ms": mean("annotate_ms"),
        "rest_ms": float(e2e.mean()) - mean("total_ms"),
        "faces_per_image": mean("faces"),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| concurrency | images/s | p50 ms | p99 ms | mean ms | decode | detect | Triton | annotate | rest | faces/image |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['images_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_ms']:.0f} "
            f"| {r['decode_ms']:.0f} | {r['detect_ms']:.0f} | {r['triton_ms']:.0f} | {r['annotate_ms']:.0f} | {r['rest_ms']:.0f} "
            f"| {r['faces_per_image']:.1f} |"
        )
    return "\n".join(lines)


def comparison(rows: list[dict], peer: dict) -> str:
    """The platform against the `fer` library: throughput at the highest concurrency (target >= 2x) and
    latency one at a time (target: p50 below fer's per-photo time)."""
    top = max(rows, key=lambda r: r["concurrency"])
    lines = [
        f"fer library: {peer['photos_per_s']:.1f} photos/s, p50 {peer['p50_ms']:.0f} ms, p99 {peer['p99_ms']:.0f} ms, "
        f"{peer['faces'] / peer['requests']:.1f} faces/photo",
        f"platform at concurrency {top['concurrency']}: {top['images_per_s']:.1f} photos/s = "
        f"{top['images_per_s'] / peer['photos_per_s']:.2f}x fer (target >= 2x)",
    ]
    single = next((r for r in rows if r["concurrency"] == 1), None)
    if single:
        per_photo = 1000.0 / peer["photos_per_s"]
        lines.append(f"platform at concurrency 1: p50 {single['p50_ms']:.0f} ms = {single['p50_ms'] / per_photo:.2f}x "
                     f"fer's per-photo time ({per_photo:.0f} ms; target < 1x) and {single['p50_ms'] / peer['p50_ms']:.2f}x "
                     f"fer's p50 ({peer['p50_ms']:.0f} ms)")
    lines.append(f"faces classified per second at concurrency {top['concurrency']}: platform "
                 f"{top['images_per_s'] * top['faces_per_image']:.0f}, fer {peer['photos_per_s'] * peer['faces'] / peer['requests']:.0f}")
    return "\n".join(lines)


async def bench(url: str, photos, levels: list[int], requests: int) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await wait_ready(client, url)
        headers = await login(client)
        await wait_serving(client, headers, photos[0])
        # One pass to warm every path (detector processes, Triton, database pools).
        await run_level(client, headers, photos, 2, len(photos))
        rows = []
        for c in levels:
            rows.append(await run_level(client, headers, photos, c, max(requests, c)))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    parser.add_argument("--url", default="", help="a running gateway; default: start the platform for the run")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=160, help="uploads per concurrency level (and photos for fer)")
    parser.add_argument("--port-base", type=int, default=0, help="default: the first free block from 20000")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip the fer library's figures")
    args = parser.parse_args(argv)
    photos = photos_in(args.photos)
    # First, before the platform starts, so both run on the same quiet machine.
    peer = None if args.no_peer else run_peer(args.photos, args.requests)
    levels = [int(c) for c in args.concurrency.split(",")]
    url, proc, var = args.url, None, None
    if not url:
        from ferkit import modelrepo

        var = Path(tempfile.mkdtemp(prefix="bench-predict-"))
        repository = None
        if not modelrepo.latest_version(ROOT / "models" / "fer_resnet18"):
            # No trained model in the checkout: the timings do not depend on the weights.
            from tests.fixtures.triton import export_random_resnet18

            repository = var / "models"
            repository.mkdir()
            export_random_resnet18(repository, seed=0)
        base = args.port_base or Ports.free_base()
        proc = start_platform(base, var, repository)
        url = f"http://127.0.0.1:{base}"
    print(f"{len(photos)} photos from {args.photos}; {args.requests} uploads per level; {url}", file=sys.stderr)
    try:
        rows = asyncio.run(bench(url, photos, levels, args.requests))
    finally:
        if proc is not None:
            stop_platform(proc)
            shutil.rmtree(var, ignore_errors=True)
    print(table(rows))
    if peer:
        print(comparison(rows, peer))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "photos": len(photos), "fer": peer}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
