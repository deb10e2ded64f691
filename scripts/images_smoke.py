"""Run the platform from its built images and check it from outside: `make images-smoke`.

Each entry point runs inside its image (`buildah run --isolation chroot --network host`, or `docker run
--network host` where a Docker engine answers), as the chart runs it: migrations first (`python -m
services.<svc>.cli migrate`), then the servers with the image's own command, and the reports worker.
PostgreSQL and RabbitMQ are the machine's (127.0.0.1:5432, :5672): a fresh database per service and run,
its own queue names, all removed at the end. Triton is the local CPU harness (scripts/local_triton.py,
run from the source tree's venv): the production fer-triton image is NVIDIA's server, which needs a GPU.

One line per check, a summary line last; a failure exits 1 and prints the log tail of the containers
behind the failed check. Usage: python -m scripts.images_smoke [--registry R] [--tag T] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "auth", "inference", "reports")
UID = 10001  # the images' user (deploy/docker/Dockerfile): it must be able to write what it mounts
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("SMOKE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PASSWORD = "Analytical-Engine-42"


class CheckFailed(Exception):
    def __init__(self, message: str, blame: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.blame = blame


def image_refs(names: Sequence[str], registry: str | None, tag: str | None) -> dict[str, str]:
    """The references `make images` gives these images (scripts/images.sh is the one place that names them)."""
    env = {**os.environ, **({"REGISTRY": registry} if registry else {}), **({"TAG": tag} if tag else {})}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "images.sh"), "--list", *names], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines())


def engine() -> str:
    forced = os.environ.get("ENGINE")
    if forced:
        return forced
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return "docker"
    return "buildah"


@dataclass
class Container:
    """One entry point in its image; its output goes to `log`."""

    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Path]
    log: Path
    engine: str
    proc: subprocess.Popen | None = None
    created: bool = False
    # What the run wrote to the image's filesystem (buildah: the overlay's upper layer), outside /tmp
    # and the volumes; None until stopped, or where the runtime enforces a read-only root itself (docker).
    written: list[str] | None = None

    def start(self) -> "Container":
        volumes = [f"{path}:{path}" for path in self.mounts]
        env_flags = [flag for key, value in self.env.items() for flag in ("--env", f"{key}={value}")]
        if self.engine == "docker":
            argv = ["docker", "run", "--rm", "--name", self.name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
                    *env_flags, *[f for v in volumes for f in ("--volume", v)], self.image, *self.argv]
        else:
            subprocess.run(["buildah", "from", "--pull=false", "--name", self.name, self.image], check=True, capture_output=True)
            self.created = True
            argv = ["buildah", "run", "--isolation", "chroot", "--network", "host", *env_flags,
                    *[f for v in volumes for f in ("--volume", v)], self.name, "--", *self.argv]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the entry point, as a container runtime sends it. buildah's own process would answer
        it with SIGKILL to the container, so only the processes inside are signalled."""
        if self.proc is not None and self.proc.poll() is None:
            if self.engine == "docker":
                subprocess.run(["docker", "stop", "-t", str(int(grace_s)), self.name], capture_output=True)
            else:
                for pid in inside_processes(self.proc.pid):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.created:
            self.written = self.writes()
            subprocess.run(["buildah", "rm", self.name], capture_output=True)
            self.created = False

    def writes(self) -> list[str]:
        """Paths the run created, changed or deleted in the image (the chart mounts the root read-only,
        with an emptyDir on /tmp): the overlay's upper layer, less /tmp and the volumes' mount points."""
        merged = subprocess.run(["buildah", "mount", self.name], capture_output=True, text=True)
        if merged.returncode != 0:
            return [f"(could not inspect: {merged.stderr.strip()})"]
        try:
            upper = Path(merged.stdout.strip()).parent / "diff"
            # Mount points (and the directories above them) are made by the runtime, as is /run.
            made = {"run"} | {str(p.relative_to("/")) for m in self.mounts for p in [m, *m.parents] if p != Path("/")}
            out = []
            for path in sorted(upper.rglob("*")):
                rel = str(path.relative_to(upper))
                if rel == "tmp" or rel.startswith("tmp/") or (rel in made and path.is_dir()):
                    continue
                if path.is_dir() and not path.is_symlink() and any(path.iterdir()):
                    continue  # copied up only because something below it changed: that is listed itself
                out.append("/" + rel)
            return out
        finally:
            subprocess.run(["buildah", "umount", self.name], capture_output=True)

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(f"    {line}" for line in text[-lines:])


def inside_processes(pgid: int) -> list[int]:
    """The processes of a `buildah run` session that are not buildah's own (the container's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            exe = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid and not os.path.basename(exe).startswith("buildah"):
            pids.append(int(entry.name))
    return pids


@dataclass
class Smoke:
    refs: dict[str, str]
    engine: str
    work: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    containers: dict[str, Container] = field(default_factory=dict)
    triton: subprocess.Popen | None = None
    databases: list[str] = field(default_factory=list)
    results: list[tuple[str, bool, float, str]] = field(default_factory=list)

    # ------------------------------------------------------------------ the platform

    def environment(self):
        from scripts.dev import Ports, platform

        self.ports = Ports.from_base(Ports.free_base())
        _, _, env = platform(self.work, self.ports)
        # What the images bring themselves (PYTHONPATH, the frontend) or what goes to stdout here.
        for key in [k for k in env if k == "PYTHONPATH" or k.endswith("_LOG_FILE") or k == "GATEWAY_FRONTEND_DIR"]:
            del env[key]
        base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        for svc in ("auth", "inference", "reports"):
            env[f"{svc.upper()}_DATABASE_URL"] = f"{base}/{self.database(svc)}"
        models = self.work / "models"  # platform() points INFERENCE_MODEL_REPOSITORY here already
        shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("__pycache__", ".lock"))
        state = self.work / "inference-state"
        state.mkdir()
        for path in (models, state):  # the inference service writes its lock and promoted version there
            for sub in [path, *path.rglob("*")]:
                if os.geteuid() == 0:
                    os.chown(sub, UID, UID)
                else:
                    sub.chmod(sub.stat().st_mode | 0o777)
        env.update({
            "INFERENCE_STATE_DIR": str(state),
            # RetinaFace, not the Haar fallback `auto` would take quietly: the image's detector must work.
            "INFERENCE_DETECTOR": "retinaface",
            "INFERENCE_MODELS_QUEUE": f"fer.smoke.{self.run_id}.inference.model-versions",
            "REPORTS_QUEUE_PREFIX": f"fer.smoke.{self.run_id}.reports",
            "AMQP_URL": AMQP_URL,
        })
        self.env, self.mounts = env, [models, state]
        return env

    def database(self, svc: str) -> str:
        import psycopg

        name = f"fer_smoke_{self.run_id}_{svc}"
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name

    def container(self, name: str, image: str, argv: list[str]) -> Container:
        prefix = image.upper()
        env = {k: v for k, v in self.env.items() if k.startswith(prefix + "_") or k == "AMQP_URL"}
        box = Container(f"fer-smoke-{self.run_id}-{name}", self.refs[image], argv, env, self.mounts,
                        self.work / "log" / f"{name}.log", self.engine)
        self.containers[name] = box
        return box

    def image_command(self, image: str) -> list[str]:
        """The image's own CMD, so the smoke starts each server exactly as a runtime would."""
        if self.engine == "docker":
            out = subprocess.run(["docker", "image", "inspect", self.refs[image]], capture_output=True, text=True, check=True)
            return json.loads(out.stdout)[0]["Config"]["Cmd"]
        out = subprocess.run(["buildah", "inspect", "--type", "image", self.refs[image]], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)["OCIv1"]["config"]["Cmd"]

    def start_triton(self) -> None:
        p = self.ports
        with open(self.work / "log" / "triton-harness.log", "ab") as out:
            self.triton = subprocess.Popen(
                [sys.executable, "-m", "scripts.local_triton", "--repository", str(self.work / "models"),
                 "--http-port", str(p.triton_http), "--grpc-port", str(p.triton_grpc), "--metrics-port", str(p.triton_metrics),
                 "--work-dir", str(self.work / "triton"), "--log-file", str(self.work / "log" / "triton.log")],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for box in reversed(list(self.containers.values())):
            box.stop()
        if self.results and all(ok for _, ok, _, _ in self.results):
            self.check_read_only_root()
        if self.triton is not None and self.triton.poll() is None:
            self.triton.send_signal(signal.SIGTERM)
            try:
                self.triton.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.triton.pid, signal.SIGKILL)
        self.cleanup_broker()
        if self.databases:
            import psycopg

            with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                for name in self.databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def check_read_only_root(self) -> None:
        """After a passing run: no entry point wrote outside /tmp and its volumes, so each runs under the
        chart's readOnlyRootFilesystem (buildah cannot mount a root read-only; docker run --read-only does)."""
        start = time.monotonic()
        if self.engine == "docker":
            self.report("read-only root filesystem", True, 0.0, "docker run --read-only --tmpfs /tmp")
            return
        bad = {name: box.written for name, box in self.containers.items() if box.written}
        detail = "; ".join(f"{name}: {', '.join(paths[:5])}" for name, paths in bad.items())
        self.report("writes only /tmp and volumes", not bad, time.monotonic() - start,
                    detail or f"{len(self.containers)} containers, nothing else written (readOnlyRootFilesystem holds)")

    def cleanup_broker(self) -> None:
        if not getattr(self, "env", None):
            return
        import pika

        from services.reports.amqp import Topology
        from services.reports.config import Settings

        queues, exchanges = Topology(Settings(amqp_url=AMQP_URL, queue_prefix=self.env["REPORTS_QUEUE_PREFIX"])).names()
        try:
            connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        except Exception as exc:  # the smoke's verdict stands; say what was left behind
            print(f"note: could not remove the run's queues from RabbitMQ: {exc}")
            return
        try:
            channel = connection.channel()
            for name in [*queues, self.env["INFERENCE_MODELS_QUEUE"]]:
                channel.queue_delete(name)
            for name in exchanges:
                channel.exchange_delete(name)
        finally:
            connection.close()

    # ------------------------------------------------------------------ checks

    def check(self, name: str, fn, blame: tuple[str, ...] = ()) -> object:
        start = time.monotonic()
        try:
            self.alive()
            detail = fn()
        except CheckFailed as exc:
            self.report(name, False, time.monotonic() - start, str(exc))
            raise CheckFailed(str(exc), exc.blame or blame) from None
        except Exception as exc:  # noqa: BLE001 - any error is this check's failure
            self.report(name, False, time.monotonic() - start, f"{type(exc).__name__}: {exc}")
            raise CheckFailed(str(exc), blame) from None
        self.report(name, True, time.monotonic() - start, detail if isinstance(detail, str) else "")
        return detail

    def report(self, name: str, ok: bool, seconds: float, detail: str) -> None:
        self.results.append((name, ok, seconds, detail))
        print(f"{'ok  ' if ok else 'FAIL'}  {name:<34} {seconds:6.1f} s  {detail}", flush=True)

    def alive(self) -> None:
        for name, box in self.containers.items():
            if name.startswith("migrate-"):
                continue
            if box.proc is not None and box.proc.poll() is not None:
                raise CheckFailed(f"{name} exited with {box.proc.returncode}", (name,))
        if self.triton is not None and self.triton.poll() is not None:
            raise CheckFailed(f"the local Triton exited with {self.triton.returncode}", ("triton",))

    def tails(self, names: tuple[str, ...]) -> None:
        for name in names or tuple(self.containers):
            if name == "triton":
                path = self.work / "log" / "triton.log"
                text = path.read_text(errors="replace").splitlines()[-25:] if path.exists() else []
                print(f"--- triton (local harness) log tail ({path}):\n" + "\n".join(text))
            elif name in self.containers:
                box = self.containers[name]
                print(f"--- {name} ({box.image}) log tail ({box.log}):\n{box.tail()}")


def poll(fn, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        done, last = fn()
        if done:
            return last
        time.sleep(interval_s)
    raise CheckFailed(f"{what} not done within {timeout_s:.0f} s (last: {last})")


def run_checks(smoke: Smoke) -> None:
    import httpx

    p = smoke.ports
    base = f"http://127.0.0.1:{p.gateway}"
    api = f"{base}/api/v1"
    http = httpx.Client(timeout=120)

    for svc in ("auth", "reports", "inference"):
        def migrate(svc=svc):
            box = smoke.container(f"migrate-{svc}", svc, ["python", "-m", f"services.{svc}.cli", "migrate"]).start()
            rc = box.wait(timeout=180)
            if rc != 0:
                raise CheckFailed(f"exited with {rc}", (f"migrate-{svc}",))
            box.stop()
            return "python -m services.%s.cli migrate" % svc
        smoke.check(f"migrate {svc}", migrate, (f"migrate-{svc}",))

    def start():
        smoke.start_triton()
        smoke.container("auth", "auth", smoke.image_command("auth")).start()
        smoke.container("inference", "inference", smoke.image_command("inference")).start()
        smoke.container("reports", "reports", smoke.image_command("reports")).start()
        smoke.container("reports-worker", "reports", ["python", "-m", "services.reports.worker"]).start()
        smoke.container("gateway", "gateway", smoke.image_command("gateway")).start()
        return f"gateway on {base}, Triton (local harness) gRPC :{p.triton_grpc}"
    smoke.check("start containers", start)

    def ready():
        def probe():
            try:
                reply = http.get(f"{base}/readyz", timeout=5)
            except httpx.HTTPError as exc:
                return False, repr(exc)
            smoke.alive()
            return reply.status_code == 200, reply.text
        return poll(probe, 180, "/readyz", interval_s=1)
    smoke.check("GET /readyz 200", ready, ("gateway", "auth", "inference", "reports"))

    def frontend():
        reply = http.get(f"{base}/")
        if reply.status_code != 200 or "<html" not in reply.text.lower():
            raise CheckFailed(f"{reply.status_code}: {reply.text[:120]}")
        return "the browser app from the image"
    smoke.check("GET / (frontend)", frontend, ("gateway",))

    email = f"smoke-{smoke.run_id}@example.com"

    def register():
        reply = http.post(f"{api}/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Smoke"})
        if reply.status_code != 201:
            raise CheckFailed(f"{reply.status_code}: {reply.text[:200]}")
        return email
    smoke.check("register", register, ("gateway", "auth"))

    headers: dict[str, str] = {}

    def login():
        reply = http.post(f"{api}/auth/token", data={"username": email, "password": PASSWORD})
        if reply.status_code != 200:
            raise CheckFailed(f"{reply.status_code}: {reply.text[:200]}")
        headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        me = http.get(f"{api}/users/me", headers=headers)
        if me.status_code != 200 or me.json()["email"] != email:
            raise CheckFailed(f"/users/me: {me.status_code}: {me.text[:200]}")
        return "token accepted by /users/me"
    smoke.check("log in", login, ("gateway", "auth"))

    prediction: dict = {}

    def predict():
        from tests.fixtures.reports import astronaut

        reply = http.post(f"{api}/predictions", headers=headers, files={"file": ("astronaut.png", astronaut(), "image/png")})
        if reply.status_code != 201:
            raise CheckFailed(f"{reply.status_code}: {reply.text[:300]}")
        body = reply.json()
        if not body["faces"]:
            raise CheckFailed(f"no face found: {body.get('message')}")
        prediction.update(body)
        face = body["faces"][0]
        label = face.get("label") or face.get("expression") or "?"
        return f"{len(body['faces'])} face(s), first: {label}; model {body['model'].get('name')} v{body['model'].get('version')}"
    smoke.check("POST /predictions (astronaut)", predict, ("gateway", "reports", "inference", "triton"))

    def annotated():
        reply = http.get(f"{base}{prediction['annotated_url']}", headers=headers)
        if reply.status_code != 200 or not reply.content.startswith(b"\x89PNG"):
            raise CheckFailed(f"{reply.status_code} {reply.headers.get('content-type')}")
        return f"{len(reply.content)} bytes"
    smoke.check("GET annotated.png", annotated, ("gateway", "reports"))

    def wait_job(url: str, timeout_s: float, what: str, failed, shown=lambda got: got):
        """Polls the job at `url` (a report, a batch) until done; returns `shown` of its last body. A failed job
        fails the check with `failed` of its body; past `timeout_s`, poll's message names `what`, `shown` last."""
        def status():
            got = http.get(url, headers=headers).json()
            if got["status"] == "failed":
                raise CheckFailed(failed(got), ("reports-worker", "reports"))
            return got["status"] == "done", shown(got)
        return poll(status, timeout_s, what)

    def report():
        reply = http.post(f"{api}/reports", headers=headers, json={"prediction_id": prediction["id"], "format": "pdf"})
        if reply.status_code != 202:
            raise CheckFailed(f"{reply.status_code}: {reply.text[:300]}")
        report_id = reply.json()["id"]
        wait_job(f"{api}/reports/{report_id}", 120, "the PDF report",
                 lambda got: f"report failed: {got.get('error')}", lambda got: got["status"])
        pdf = http.get(f"{api}/reports/{report_id}/download", headers=headers)
        if pdf.status_code != 200 or not pdf.content.startswith(b"%PDF"):
            raise CheckFailed(f"download: {pdf.status_code} {pdf.headers.get('content-type')}")
        return f"done by the worker, {len(pdf.content)} bytes downloaded"
    smoke.check("PDF report done and downloaded", report, ("reports-worker", "reports"))

    def batch():
        from tests.fixtures.reports import astronaut

        files = [("files", ("astronaut.png", astronaut(), "image/png")), ("files", ("astronaut-small.jpg", astronaut("JPEG", 320), "image/jpeg"))]
        reply = http.post(f"{api}/batches", headers=headers, files=files)
        if reply.status_code != 202:
            raise CheckFailed(f"{reply.status_code}: {reply.text[:300]}")
        batch_id = reply.json()["id"]
        got = wait_job(f"{api}/batches/{batch_id}", 180, "the batch", lambda got: f"batch failed: {got}")
        items = got["items"]
        bad = [i for i in items if i["status"] != "done" or not i.get("faces")]
        if len(items) != 2 or bad:
            raise CheckFailed(f"items: {items}")
        csv = http.get(f"{api}/batches/{batch_id}/results.csv", headers=headers)
        if csv.status_code != 200 or len(csv.text.splitlines()) < 3:
            raise CheckFailed(f"results.csv: {csv.status_code} {csv.text[:200]}")
        return f"2 photos done, {sum(i['faces'] for i in items)} face(s), results.csv {len(csv.text.splitlines()) - 1} row(s)"
    smoke.check("batch of two photos done", batch, ("reports-worker", "reports", "inference"))

    metrics = [("gateway", p.gateway, "/metrics", "http_requests_total"),
               ("auth", p.auth_metrics, "/metrics", "grpc_server_handled_total"),
               ("inference", p.inference_metrics, "/metrics", "grpc_server_handled_total"),
               ("reports", p.reports_metrics, "/metrics", "grpc_server_handled_total"),
               ("reports-worker", p.worker_metrics, "/metrics", "# HELP"),
               ("triton", p.triton_metrics, "/metrics", "nv_inference_request_success")]
    for name, port, path, needle in metrics:
        def scrape(port=port, path=path, needle=needle):
            reply = http.get(f"http://127.0.0.1:{port}{path}", timeout=10)
            if reply.status_code != 200 or needle not in reply.text:
                raise CheckFailed(f"{reply.status_code}, {needle!r} {'missing' if reply.status_code == 200 else ''}")
            return f":{port}{path} has {needle.strip('# ')}"
        smoke.check(f"metrics {name}" + (" (local harness)" if name == "triton" else ""), scrape, (name,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", help="as for `make images` (default: its REGISTRY)")
    parser.add_argument("--tag", help="as for `make images` (default: the git revision)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) after a pass")
    args = parser.parse_args(argv)

    refs = image_refs(SERVICES, args.registry, args.tag)
    kind = engine()
    inspect = ["docker", "image", "inspect"] if kind == "docker" else ["buildah", "inspect", "--type", "image"]
    missing = [ref for ref in refs.values() if subprocess.run([*inspect, ref], capture_output=True).returncode != 0]
    if missing:
        print(f"FAIL  images not built: {', '.join(missing)} (make images IMAGES=\"{' '.join(SERVICES)}\")")
        return 1
    work = Path(tempfile.mkdtemp(prefix="fer-images-smoke-"))
    work.chmod(0o755)
    (work / "log").mkdir()
    smoke = Smoke(refs, kind, work)
    print(f"images-smoke: {', '.join(refs.values())} via {kind}; Triton: the local CPU harness "
          f"(scripts/local_triton.py from the source venv) — the fer-triton image is NVIDIA's server and needs a GPU",
          flush=True)
    start = time.monotonic()
    failed: CheckFailed | None = None
    try:
        smoke.environment()
        run_checks(smoke)
    except CheckFailed as exc:
        failed = exc
        smoke.tails(exc.blame)
    except Exception as exc:  # setting up (databases, ports) failed: that is a failed smoke too
        failed = CheckFailed(f"{type(exc).__name__}: {exc}")
        print(f"FAIL  setup: {failed}")
    finally:
        smoke.stop()
    passed = sum(ok for _, ok, _, _ in smoke.results)
    elapsed = time.monotonic() - start
    if failed is None and passed == len(smoke.results):
        print(f"images-smoke: PASSED {passed}/{len(smoke.results)} checks in {elapsed:.0f} s (run {smoke.run_id})")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    print(f"images-smoke: FAILED after {passed} passed check(s) in {elapsed:.0f} s (run {smoke.run_id}); logs in {work}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
