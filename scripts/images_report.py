"""Size, user and Python packages of each built image, and what none may ship: `make images-report`.

Fails (exit 1) when an image runs as root (or as a user name that Kubernetes' runAsNonRoot cannot
verify), when gateway, auth, inference or reports carries torch (Triton runs the model; only the
training image needs it), or when an image carries the stub generator grpcio-tools (a build tool).
With --require an image that is not built fails too (the smoke's use); otherwise it is listed as such.
Usage: python -m scripts.images_report [--registry R] [--tag T] [--require] [--json FILE] [NAME...]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ALL = ("gateway", "auth", "inference", "reports", "training", "triton")
NO_TORCH = ("gateway", "auth", "inference", "reports")
BUILD_TOOLS = ("grpcio-tools",)  # the protos stage's; never in a runtime image


@dataclass
class Inspection:
    name: str
    ref: str
    size: str = ""
    user: str = ""          # the image's USER
    uid: str = ""           # `id -u` inside the image, as it starts
    packages: dict[str, str] = field(default_factory=dict)  # pip list: name -> version
    built: bool = True


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def problems(image: Inspection) -> list[str]:
    """What is wrong with one image (empty: nothing)."""
    if not image.built:
        return ["not built"]
    out = []
    user = image.user.split(":")[0]
    if user in ("", "0", "root"):
        out.append(f"runs as root (USER {image.user or 'unset'})")
    elif not user.isdigit():
        out.append(f"USER {image.user} is a name: Kubernetes' runAsNonRoot can only verify a numeric uid")
    if image.uid and image.uid == "0":
        out.append("`id -u` inside the image is 0")
    packages = {normalise(name) for name in image.packages}
    if image.name in NO_TORCH and "torch" in packages:
        out.append(f"carries torch ({image.packages.get('torch', '?')}): Triton runs the model, {image.name} must not")
    if image.name == "training" and image.packages and "torch" not in packages:
        out.append("the training image has no torch")
    for tool in BUILD_TOOLS:
        if tool in packages:
            out.append(f"carries the build tool {tool}")
    return out


class Engine:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def exists(self, ref: str) -> bool:
        argv = ["docker", "image", "inspect", ref] if self.kind == "docker" else ["buildah", "inspect", "--type", "image", ref]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def config(self, ref: str) -> dict:
        if self.kind == "docker":
            out = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True, check=True).stdout
            return json.loads(out)[0]["Config"]
        out = subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True, text=True, check=True).stdout
        return json.loads(out)["OCIv1"]["config"]

    def size(self, ref: str) -> str:
        if self.kind == "docker":
            out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True, text=True, check=True)
            return f"{int(out.stdout) / 1e6:.0f} MB"
        out = subprocess.run(["buildah", "images", "--json", ref], capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["size"]

    def run(self, ref: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """A command inside the image, as its user, without its entry point."""
        if self.kind == "docker":
            return subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", argv[0], ref, *argv[1:]],
                                  capture_output=True, text=True, timeout=120)
        name = f"fer-report-{uuid.uuid4().hex[:8]}"
        subprocess.run(["buildah", "from", "--pull=false", "--name", name, ref], capture_output=True, check=True)
        try:
            return subprocess.run(["buildah", "run", "--isolation", "chroot", name, "--", *argv], capture_output=True, text=True, timeout=120)
        finally:
            subprocess.run(["buildah", "rm", name], capture_output=True)


def inspect(engine: Engine, name: str, ref: str) -> Inspection:
    if not engine.exists(ref):
        return Inspection(name, ref, built=False)
    image = Inspection(name, ref, size=engine.size(ref), user=engine.config(ref).get("User") or "")
    image.uid = engine.run(ref, ["id", "-u"]).stdout.strip()
    # The services' venv python first; NVIDIA's Triton image has a system python3 only.
    for python in ("python", "python3"):
        listed = engine.run(ref, [python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"])
        if listed.returncode == 0:
            image.packages = {p["name"]: p["version"] for p in json.loads(listed.stdout)}
            break
    return image


def render(images: list[Inspection]) -> str:
    lines = [f"{'image':<10} {'size':>8}  {'user':<12} {'uid':>5}  {'packages':>8}  reference"]
    for image in images:
        if not image.built:
            lines.append(f"{image.name:<10} {'-':>8}  {'-':<12} {'-':>5}  {'-':>8}  {image.ref} (not built)")
            continue
        lines.append(f"{image.name:<10} {image.size:>8}  {image.user or '(root)':<12} {image.uid:>5}  {len(image.packages):>8}  {image.ref}")
    for image in images:
        if image.packages:
            listed = ", ".join(f"{name}=={version}" for name, version in sorted(image.packages.items(), key=lambda kv: kv[0].lower()))
            lines.append(f"\n{image.name} packages: {listed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(ALL), help=f"images (default: {' '.join(ALL)})")
    parser.add_argument("--registry", help="as for `make images` (default: its REGISTRY)")
    parser.add_argument("--tag", help="as for `make images` (default: the git revision)")
    parser.add_argument("--require", action="store_true", help="an image that is not built is a failure")
    parser.add_argument("--json", type=Path, help="also write the inspections here")
    args = parser.parse_args(argv)

    from scripts.images_smoke import engine, image_refs

    refs = image_refs(args.names, args.registry, args.tag)
    kind = Engine(engine())
    images = [inspect(kind, name, ref) for name, ref in refs.items()]
    print(render(images))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(i) for i in images], indent=2))
    print()
    failures = 0
    for image in images:
        found = problems(image)
        if found == ["not built"] and not args.require:
            print(f"--    {image.name}: not built (make images IMAGES={image.name})")
            continue
        failures += bool(found)
        print(f"{'FAIL' if found else 'ok  '}  {image.name}: {'; '.join(found) if found else 'non-root, nothing it must not carry'}")
    checked = sum(i.built or args.require for i in images)
    print(f"images-report: {'FAILED' if failures else 'PASSED'} {checked - failures}/{checked} image(s) pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
