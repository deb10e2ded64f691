"""Raw batched TorchScript forward vs Triton with and without dynamic batching (`make bench-triton`).

Single-face requests (1x1x48x48) from C concurrent clients over gRPC against the bundled tritonserver,
at C = 1, 8, 32, 64; the raw figure at C is the same model.pt run in this process on batches of C
(the best any server could do with perfect batching). Reports throughput, p50/p99 latency, Triton's
own average batch size (nv_inference_count / nv_inference_exec_count), and the DESIGN.md ratios.

    python -m bench.triton_bench [--version-dir models/fer_resnet18/1] [--seconds 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fer_resnet18"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def prepare_repository(version_dir: Path | None, work: Path) -> Path:
    """A one-version repository serving `version_dir`'s model.pt (or a random ResNet18 when none is given)."""
    from ferkit import modelrepo
    from ferkit.vision import ModelMetadata

    repo = work / "models"
    if version_dir is None:
        from tests.fixtures.triton import export_random_resnet18

        repo.mkdir(parents=True)
        export_random_resnet18(repo, seed=0, name=MODEL)
        return repo
    meta = ModelMetadata.load(version_dir / modelrepo.METADATA_FILENAME)

    def fill(tmp: Path, number: int) -> None:
        for name in (modelrepo.MODEL_FILENAME, modelrepo.METADATA_FILENAME):
            shutil.copyfile(version_dir / name, tmp / name)

    modelrepo.write_version(repo, MODEL, fill, version=1)
    modelrepo.write_model_configs(repo / MODEL, MODEL, (meta.input.channels, *meta.input.size), len(meta.classes))
    return repo


def raw_forward(model_path: Path, batch: int, seconds: float, warmup_s: float) -> dict:
    import torch

    model = torch.jit.load(str(model_path), map_location="cpu").eval()
    x = torch.randn(batch, 1, 48, 48)
    latencies: list[float] = []
    with torch.inference_mode():
        end = time.perf_counter() + warmup_s
        while time.perf_counter() < end:
            model(x)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            model(x)
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
    return {
        "images_per_s": batch * len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "avg_batch": float(batch),
    }


def triton_counters(metrics_url: str, model: str) -> dict[str, float]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out = {"nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
    for line in text.splitlines():
        for name in out:
            if line.startswith(name + "{") and f'model="{model}"' in line:
                out[name] += float(line.rsplit(" ", 1)[1])
    return out


async def triton_clients(url: str, metrics_url: str, model: str, concurrency: int, seconds: float, warmup_s: float) -> dict:
    import tritonclient.grpc.aio as triton_grpc

    client = triton_grpc.InferenceServerClient(url)
    rng = np.random.default_rng(0)
    latencies: list[float] = []
    state = {"record": False, "stop": False}

    async def worker() -> None:
        face = rng.standard_normal((1, 1, 48, 48), dtype=np.float32)
        tensor = triton_grpc.InferInput("input", list(face.shape), "FP32")
        tensor.set_data_from_numpy(face)
        wanted = [triton_grpc.InferRequestedOutput("logits")]
        while not state["stop"]:
            t = time.perf_counter()
            await client.infer(model, [tensor], outputs=wanted, client_timeout=60)
            if state["record"]:
                latencies.append(time.perf_counter() - t)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup_s)
    before = triton_counters(metrics_url, model)
    state["record"] = True
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    state["record"] = False
    elapsed = time.perf_counter() - start
    after = triton_counters(metrics_url, model)
    done = len(latencies)
    state["stop"] = True
    await asyncio.gather(*tasks)
    await client.close()
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    counted = after["nv_inference_count"] - before["nv_inference_count"]
    return {
        "images_per_s": done / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "avg_batch": counted / executions if executions else float("nan"),
    }


NO_BATCHING = f"{MODEL}_no_batching"


def add_unbatched_twin(repo: Path) -> None:
    """The same model.pt under a second name whose config has no dynamic batcher: both load side by
    side, so each concurrency level measures the raw forward and both Triton variants back to back
    (on a shared machine the load drifts between runs minutes apart)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((repo / MODEL / "configs" / "local.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = NO_BATCHING
    config.ClearField("dynamic_batching")
    twin = repo / NO_BATCHING
    (twin / "configs").mkdir(parents=True)
    shutil.copytree(repo / MODEL / "1", twin / "1")
    (twin / "configs" / "local.pbtxt").write_text(text_format.MessageToString(config))


async def load(url: str, repo: Path, queue_delay_us: int | None, instances: int | None = None,
               max_batch: int | None = None) -> None:
    import tritonclient.grpc.aio as triton_grpc
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    client = triton_grpc.InferenceServerClient(url)
    config = text_format.Parse((repo / MODEL / "configs" / "local.pbtxt").read_text(), model_config_pb2.ModelConfig())
    if queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    if instances is not None:
        config.instance_group[0].count = instances
    if max_batch is not None:
        config.max_batch_size = max_batch
    await client.load_model(MODEL, config=json_format.MessageToJson(config, preserving_proto_field_name=True), client_timeout=300)
    await client.load_model(NO_BATCHING, client_timeout=300)
    await client.close()


def table(rows: list[dict]) -> str:
    lines = ["| mode | concurrency | images/s | p50 ms | p99 ms | avg batch |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['concurrency']} | {r['images_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['avg_batch']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version-dir", type=Path, default=None,
                        help="a model version (model.pt + metadata.json); default: the latest of models/fer_resnet18, else random weights")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per point; the median is reported")
    parser.add_argument("--max-batch", type=int, default=None, help="override the dynamic-batching model's max_batch_size")
    parser.add_argument("--instances", type=int, default=None, help="override the dynamic-batching model's instance count")
    parser.add_argument("--queue-delay-us", type=int, default=None, help="override the dynamic batcher's max queue delay")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, here and in Triton's model instance")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    import os

    import torch

    from ferkit import modelrepo
    from scripts.local_triton import LocalTriton

    # The same number of torch threads on both sides, or the comparison says nothing.
    torch.set_num_threads(args.threads)
    os.environ["FER_TORCH_THREADS"] = str(args.threads)
    from tests.fixtures.databases import free_port

    version_dir = args.version_dir
    if version_dir is None and modelrepo.latest_version(ROOT / "models" / MODEL):
        version_dir = modelrepo.version_dir(ROOT / "models", MODEL)
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    rows: list[dict] = []
    modes = ("raw TorchScript (batch = C)", "Triton, dynamic batching", "Triton, no dynamic batching")
    try:
        repo = prepare_repository(version_dir, work)
        add_unbatched_twin(repo)
        model_path = repo / MODEL / "1" / "model.pt"
        print(f"model: {version_dir or 'random ResNet18 weights'}; {args.rounds} x {args.seconds:.0f} s per point (median); "
              f"{args.threads} torch thread(s)", file=sys.stderr)
        triton = LocalTriton(repo, free_port(), free_port(), free_port(), work_dir=work / "triton", log_file=work / "triton.log")
        triton.start(timeout_s=120)
        try:
            asyncio.run(load(triton.grpc_url, repo, args.queue_delay_us, args.instances, args.max_batch))
            for c in levels:
                runs: dict[str, list[dict]] = {mode: [] for mode in modes}
                for _ in range(args.rounds):
                    runs[modes[0]].append(raw_forward(model_path, c, args.seconds, args.warmup))
                    for mode, model in zip(modes[1:], (MODEL, NO_BATCHING)):
                        runs[mode].append(asyncio.run(triton_clients(triton.grpc_url, triton.metrics_url, model, c, args.seconds, args.warmup)))
                for mode in modes:
                    median = sorted(runs[mode], key=lambda r: r["images_per_s"])[len(runs[mode]) // 2]
                    rows.append({"mode": mode, "concurrency": c, **median})
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
        finally:
            triton.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows.sort(key=lambda r: (modes.index(r["mode"]), r["concurrency"]))

    def at(mode: str, c: int) -> float:
        return next(r["images_per_s"] for r in rows if r["mode"].startswith(mode) and r["concurrency"] == c)

    top = max(levels)
    # The reference is the best raw batched throughput at any measured batch size (the strictest).
    best_raw = max(r["images_per_s"] for r in rows if r["mode"].startswith("raw"))
    ratios = {
        f"dynamic at {top} / best raw": at("Triton, dynamic", top) / best_raw,
        f"dynamic / no batching at {top}": at("Triton, dynamic", top) / at("Triton, no", top),
    }
    print(table(rows))
    print()
    print(f"Triton with dynamic batching at {top} concurrent: {ratios[f'dynamic at {top} / best raw']:.0%} of the best raw batched "
          f"forward (target >= 80%), {ratios[f'dynamic / no batching at {top}']:.1f}x the throughput without dynamic batching "
          f"(target >= 5x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "ratios": ratios, "machine": platform.platform(),
                                         "model": str(version_dir or "random"), "threads": args.threads,
                                         "rounds": args.rounds, "seconds": args.seconds, "queue_delay_us": args.queue_delay_us,
                                         "instances": args.instances, "max_batch": args.max_batch}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
