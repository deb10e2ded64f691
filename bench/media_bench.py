"""Batches, videos and the live camera end to end (`make bench-media`).

- video: a video with a moving face (made here, --video-seconds long) uploaded at --fps sampled frames per
  second; analysis speed in frames/s and against real time (target: faster than real time at 5 frames/s),
  and Triton's average batch while it runs, nv_inference_count / nv_inference_exec_count (target >= 16);
- live: WebSocket clients sending 320x320 JPEG frames, each the next one as soon as the last is answered,
  for --live-seconds: frames/s and round-trip p50/p99, one client then four (target, one client: >= 10
  frames/s with p50 < 100 ms);
- batch: --batch-photos photos in one batch, photos/s from upload to done.

Without --url it starts the whole platform (scripts/dev.py) on spare ports in a temp folder and stops it
afterwards; with --url it uses a running one (e.g. `make dev`; then --triton-metrics names Triton's
metrics address, default the dev port).

    python -m bench.media_bench [--video-seconds 60] [--fps 5] [--live-seconds 20] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import websockets
from PIL import Image
from skimage import data as skdata

from bench.predict_bench import login, start_platform, stop_platform, wait_ready, wait_serving
from scripts.dev import Ports
from tests.fixtures.videos import write_video

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1"


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def live_frame() -> bytes:
    """A 320x320 camera-like frame: the astronaut's head and shoulders."""
    return jpeg(Image.fromarray(skdata.astronaut()).crop((96, 0, 416, 320)))


async def triton_counts(client: httpx.AsyncClient, metrics_url: str) -> tuple[float, float]:
    """(nv_inference_count, nv_inference_exec_count) summed over every model and version."""
    text = (await client.get(metrics_url)).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))

    return total("nv_inference_count"), total("nv_inference_exec_count")


async def wait_done(client: httpx.AsyncClient, headers: dict, path: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    shown = -1
    while time.monotonic() < deadline:
        body = (await client.get(path, headers=headers)).json()
        done, total = body["progress"]["done"], body["progress"]["total"]
        if done != shown:
            print(f"  {path}: {body['status']} {done}/{total}", file=sys.stderr)
            shown = done
        if body["status"] in ("done", "failed"):
            return body
        await asyncio.sleep(0.5)
    raise SystemExit(f"{path} was not done within {timeout_s:.0f} s")


async def bench_video(client, headers, metrics_url: str, seconds: float, fps: float, work: Path) -> dict:
    path = work / "bench.mp4"
    write_video(path, seconds=seconds, fps=25, size=(640, 360))
    print(f"video: {seconds:.0f} s, 640x360 at 25 frames/s, analysed at {fps:g} frames/s ...", file=sys.stderr)
    before = await triton_counts(client, metrics_url)
    reply = await client.post(f"{API}/videos", headers=headers, files={"file": ("bench.mp4", path.read_bytes(), "video/mp4")},
                              data={"fps": str(fps)})
    if reply.status_code != 202:
        raise SystemExit(f"video upload: {reply.status_code} {reply.text[:300]}")
    start = time.perf_counter()
    body = await wait_done(client, headers, f"{API}/videos/{reply.json()['id']}", timeout_s=seconds * 20 + 120)
    elapsed = time.perf_counter() - start
    after = await triton_counts(client, metrics_url)
    if body["status"] != "done":
        raise SystemExit(f"the video failed: {body.get('error')}")
    frames = body["progress"]["total"]
    executions = after[1] - before[1]
    return {
        "duration_s": body["duration_s"],
        "fps": fps,
        "frames": frames,
        "seconds": elapsed,
        "frames_per_s": frames / elapsed,
        "x_real_time": body["duration_s"] / elapsed,
        "tracks": len(body["tracks"]),
        "triton_inferences": after[0] - before[0],
        "triton_executions": executions,
        "triton_avg_batch": (after[0] - before[0]) / executions if executions else 0.0,
    }


async def live_client(url: str, token: str, frame: bytes, seconds: float) -> list[float]:
    """Closed loop: the next frame as soon as the last is answered. Round trips in ms."""
    ws_url = url.replace("http://", "ws://").replace("https://", "wss://") + f"{API}/live"
    times: list[float] = []
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        await ws.send(json.dumps({"token": token}))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise SystemExit(f"live: unexpected first reply {ready}")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            await ws.send(frame)
            reply = json.loads(await ws.recv())
            if "error" in reply:
                raise SystemExit(f"live: {reply['error']}")
            times.append((time.perf_counter() - start) * 1000)
    return times


async def bench_live(url: str, token: str, clients: int, seconds: float) -> dict:
    frame = live_frame()
    await live_client(url, token, frame, 2.0)  # warm the path
    start = time.perf_counter()
    runs = await asyncio.gather(*(live_client(url, token, frame, seconds) for _ in range(clients)))
    wall = time.perf_counter() - start
    times = np.concatenate([np.array(r) for r in runs])
    return {
        "clients": clients,
        "frames": int(times.size),
        "frames_per_s": times.size / wall,
        "frames_per_s_per_client": times.size / wall / clients,
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
    }


async def bench_batch(client, headers, photos: int) -> dict:
    base = Image.fromarray(skdata.astronaut())
    files = [("files", (f"photo-{i:03d}.jpg", jpeg(base.rotate(i % 7 - 3)), "image/jpeg")) for i in range(photos)]
    start = time.perf_counter()
    reply = await client.post(f"{API}/batches", headers=headers, files=files)
    if reply.status_code != 202:
        raise SystemExit(f"batch upload: {reply.status_code} {reply.text[:300]}")
    body = await wait_done(client, headers, f"{API}/batches/{reply.json()['id']}", timeout_s=photos * 5 + 60)
    elapsed = time.perf_counter() - start
    return {"photos": photos, "seconds": elapsed, "photos_per_s": photos / elapsed, "status": body["status"]}


def report(video: dict, live: list[dict], batch: dict) -> str:
    single = live[0]
    lines = [
        f"video: {video['duration_s']:.0f} s at {video['fps']:g} frames/s = {video['frames']} frames in {video['seconds']:.1f} s: "
        f"{video['frames_per_s']:.1f} frames/s, {video['x_real_time']:.2f}x real time (target > 1x); "
        f"Triton average batch {video['triton_avg_batch']:.1f} ({video['triton_inferences']:.0f} faces in "
        f"{video['triton_executions']:.0f} executions; target >= 16); {video['tracks']} track(s)",
    ]
    for row in live:
        lines.append(f"live, {row['clients']} client(s): {row['frames_per_s_per_client']:.1f} frames/s each "
                     f"({row['frames_per_s']:.1f} in all), p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms")
    lines.append(f"live target, one 320x320 client: {single['frames_per_s']:.1f} frames/s = "
                 f"{single['frames_per_s'] / 10:.2f}x the 10 frames/s floor; p50 {single['p50_ms']:.0f} ms = "
                 f"{single['p50_ms'] / 100:.2f}x the 100 ms ceiling")
    lines.append(f"batch: {batch['photos']} photos in {batch['seconds']:.1f} s = {batch['photos_per_s']:.1f} photos/s "
                 f"(upload to done)")
    return "\n".join(lines)


async def bench(url: str, metrics_url: str, args, work: Path) -> tuple[dict, list[dict], dict]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await wait_ready(client, url)
        headers = await login(client)
        await wait_serving(client, headers, ("warm.jpg", live_frame()))
        token = headers["Authorization"].split(" ", 1)[1]
        video = await bench_video(client, headers, metrics_url, args.video_seconds, args.fps, work)
        print(f"  {video['frames_per_s']:.1f} frames/s, {video['x_real_time']:.2f}x real time, "
              f"Triton batch {video['triton_avg_batch']:.1f}", file=sys.stderr)
        live = []
        for clients in (1, 4):
            print(f"live: {clients} client(s) for {args.live_seconds:.0f} s ...", file=sys.stderr)
            live.append(await bench_live(url, token, clients, args.live_seconds))
            print(f"  {live[-1]['frames_per_s_per_client']:.1f} frames/s each, p50 {live[-1]['p50_ms']:.0f} ms", file=sys.stderr)
        print(f"batch: {args.batch_photos} photos ...", file=sys.stderr)
        batch = await bench_batch(client, headers, args.batch_photos)
        return video, live, batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="", help="a running gateway; default: start the platform for the run")
    parser.add_argument("--triton-metrics", default="", help="Triton's metrics URL with --url (default: make dev's port)")
    parser.add_argument("--video-seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--batch-photos", type=int, default=64)
    parser.add_argument("--port-base", type=int, default=0, help="default: the first free block from 20000")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-media-"))
    url, proc = args.url, None
    ports = Ports()
    if not url:
        from ferkit import modelrepo

        repository = None
        if not modelrepo.latest_version(ROOT / "models" / "fer_resnet18"):
            from tests.fixtures.triton import export_random_resnet18

            repository = work / "models"
            repository.mkdir()
            export_random_resnet18(repository, seed=0)
        base = args.port_base or Ports.free_base()
        ports = Ports.from_base(base)
        proc = start_platform(base, work, repository)
        url = f"http://127.0.0.1:{base}"
    metrics_url = args.triton_metrics or f"http://127.0.0.1:{ports.triton_metrics}/metrics"
    try:
        video, live, batch = asyncio.run(bench(url, metrics_url, args, work))
    finally:
        if proc is not None:
            stop_platform(proc)
        shutil.rmtree(work, ignore_errors=True)
    print(report(video, live, batch))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"video": video, "live": live, "batch": batch}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
