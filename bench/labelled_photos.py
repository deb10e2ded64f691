"""Labelled photos through the RUNNING platform (`make eval-photos`): accuracy and per-class recall.

Reads a labels CSV (`image_path,labels`: a path relative to the CSV's folder, or to --root, and one
class as its FER2013 index 0-6 or its name), registers a throw-away account on the gateway (or logs in
with --email/--password), uploads every photo to POST /api/v1/predictions (with --mode), takes the
largest face of each answer as the photo's prediction and prints progress, then the accuracy (a photo
with no face found counts as wrong), the per-class recall, the confusion matrix, and how the faces the
platform marked "uncertain" fared. Every upload is a real analysis: it is kept in that account's history.

    python -m bench.labelled_photos --labels ../shared/data/jaffe/labels.csv --url http://127.0.0.1:8080

Alignment and the crop margin are inference-service settings: to compare, start the platform once with
the defaults and once with INFERENCE_ALIGN_FACES=false (or another INFERENCE_FACE_MARGIN), run this
against each and compare (--json keeps the figures; --tag names the run in them).

Bad input (no labels file, a malformed row, a missing photo, a platform that cannot be reached) prints
one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import mimetypes
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from ferkit.vision import CLASSES

API = "/api/v1"
MODES = ("detect", "face")
UNAVAILABLE_RETRIES = 10  # 503 answers retried per photo before it counts as failed


class BadInput(Exception):
    """Something the person running the command must fix: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Item:
    path: Path
    label: int  # FER2013 index


@dataclass
class Outcome:
    item: Item
    predicted: int | None  # None: no face found
    uncertain: bool = False
    faces: int = 0
    error: str = ""


# --- the labels file ---------------------------------------------------------------------------


def parse_label(text: str) -> int:
    """A class as its FER2013 index ("3") or its name ("happy", any case)."""
    value = text.strip().lower()
    if value.isdigit() and int(value) < len(CLASSES):
        return int(value)
    if value in CLASSES:
        return CLASSES.index(value)
    raise ValueError(f"label {text.strip()!r} is neither a class index 0-{len(CLASSES) - 1} nor one of {', '.join(CLASSES)}")


def read_labels(path: Path, root: Path | None = None) -> list[Item]:
    """The labelled photos of a CSV with columns image_path and labels (or label); every photo must exist."""
    if not path.is_file():
        raise BadInput(f"labels file not found: {path}")
    root = root or path.parent
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            if "image_path" not in header or not ({"labels", "label"} & set(header)):
                raise BadInput(f"{path}: the header must name the columns image_path and labels, got {header}")
            ip, il = header.index("image_path"), header.index("labels" if "labels" in header else "label")
            items = []
            for lineno, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) <= max(ip, il):
                    raise BadInput(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
                try:
                    label = parse_label(row[il])
                except ValueError as exc:
                    raise BadInput(f"{path}:{lineno}: {exc}") from None
                photo = root / row[ip].strip()
                if not photo.is_file():
                    raise BadInput(f"{path}:{lineno}: photo not found: {photo}")
                items.append(Item(photo, label))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{path}: cannot be read as a CSV file ({exc})") from None
    if not items:
        raise BadInput(f"{path}: no labelled photos in it")
    return items


# --- one answer, and the scores ----------------------------------------------------------------


def largest_face(faces: list[dict]) -> dict | None:
    """The face with the largest box (w * h): the photo's subject."""
    return max(faces, key=lambda face: face["box"][2] * face["box"][3], default=None)


def outcome_of(item: Item, body: dict) -> Outcome:
    """A POST /predictions answer -> the photo's prediction (its largest face's label)."""
    faces = body.get("faces") or []
    face = largest_face(faces)
    if face is None:
        return Outcome(item, None, faces=0)
    return Outcome(item, parse_label(face["label"]), bool(face.get("uncertain", False)), faces=len(faces))


@dataclass
class Summary:
    photos: int
    correct: int
    no_face: int
    errors: int
    accuracy: float
    accuracy_with_face: float
    mean_recall: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]  # rows: true class; columns: predicted class, then "no face"
    uncertain: dict[str, float]
    extra: dict = field(default_factory=dict)


def summarise(outcomes: list[Outcome]) -> Summary:
    n = len(CLASSES)
    confusion = [[0] * (n + 1) for _ in range(n)]
    for o in outcomes:
        confusion[o.item.label][n if o.predicted is None else o.predicted] += 1
    correct = sum(confusion[k][k] for k in range(n))
    photos = len(outcomes)
    with_face = [o for o in outcomes if o.predicted is not None]
    per_class = {}
    for k, name in enumerate(CLASSES):
        total = sum(confusion[k])
        if total:
            per_class[name] = {"photos": total, "correct": confusion[k][k], "recall": confusion[k][k] / total}
    flagged = [o for o in with_face if o.uncertain]
    sure = [o for o in with_face if not o.uncertain]

    def accuracy(group: list[Outcome]) -> float:
        return sum(o.predicted == o.item.label for o in group) / len(group) if group else 0.0

    return Summary(
        photos=photos,
        correct=correct,
        no_face=sum(o.predicted is None and not o.error for o in outcomes),
        errors=sum(bool(o.error) for o in outcomes),
        accuracy=correct / photos if photos else 0.0,
        accuracy_with_face=accuracy(with_face),
        mean_recall=sum(c["recall"] for c in per_class.values()) / len(per_class) if per_class else 0.0,
        per_class=per_class,
        confusion=confusion,
        uncertain={"faces": len(flagged), "accuracy": accuracy(flagged), "accuracy_of_the_rest": accuracy(sure)},
    )


def report(summary: Summary) -> str:
    lines = [
        f"photos: {summary.photos}, correct: {summary.correct}, no face found: {summary.no_face}"
        + (f", failed uploads: {summary.errors}" if summary.errors else ""),
        f"accuracy: {summary.accuracy:.1%} (no face = wrong); on the {summary.photos - summary.no_face - summary.errors} "
        f"photos with a face: {summary.accuracy_with_face:.1%}",
        f"mean per-class recall: {summary.mean_recall:.1%}",
        f"marked uncertain: {summary.uncertain['faces']} (accuracy {summary.uncertain['accuracy']:.1%}; "
        f"the others {summary.uncertain['accuracy_of_the_rest']:.1%})",
        "",
        f"{'class':<10} {'photos':>6} {'correct':>7} {'recall':>7}",
    ]
    for name, c in summary.per_class.items():
        lines.append(f"{name:<10} {c['photos']:>6} {c['correct']:>7} {c['recall']:>7.1%}")
    short = [name[:4] for name in CLASSES] + ["none"]
    lines += ["", "confusion (rows: true, columns: predicted; none: no face found)",
              " " * 10 + "".join(f"{s:>6}" for s in short)]
    for name, row in zip(CLASSES, summary.confusion):
        if sum(row):
            lines.append(f"{name:<10}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)


# --- the platform --------------------------------------------------------------------------------


class Session:
    """An account on the gateway: its access token, renewed with the refresh token when it expires
    (once for all concurrent uploads: refresh tokens rotate, and a reused one revokes the login)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tokens: dict = {}
        self._lock = asyncio.Lock()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    async def open(self, email: str | None, password: str | None) -> str:
        if not email:
            email, password = f"labelled-photos-{uuid.uuid4().hex[:10]}@example.com", f"Labelled-{uuid.uuid4().hex[:12]}-42"
            created = await self.client.post(f"{API}/auth/register",
                                             json={"email": email, "password": password, "display_name": "Labelled photos"})
            if created.status_code != 201:
                raise BadInput(f"the gateway refused to register an account: {created.status_code} {created.text[:200]}")
        tokens = await self.client.post(f"{API}/auth/token", data={"username": email, "password": password or ""})
        if tokens.status_code != 200:
            raise BadInput(f"cannot log in as {email}: {tokens.status_code} {tokens.text[:200]}")
        self.tokens = tokens.json()
        return email

    async def refresh(self, stale: str) -> None:
        async with self._lock:
            if self.tokens["access_token"] != stale:
                return  # another upload renewed it already
            renewed = await self.client.post(f"{API}/auth/refresh", json={"refresh_token": self.tokens["refresh_token"]})
            renewed.raise_for_status()
            self.tokens = renewed.json()

    async def predict(self, item: Item, mode: str) -> httpx.Response:
        data = item.path.read_bytes()
        kind = mimetypes.guess_type(item.path.name)[0] or "application/octet-stream"
        refreshed = False
        for attempt in range(UNAVAILABLE_RETRIES + 1):
            token = self.tokens["access_token"]
            reply = await self.client.post(f"{API}/predictions", headers=self.headers, files={"file": (item.path.name, data, kind)},
                                           data={"mode": mode, "notes": "labelled-photos run"})
            if reply.status_code == 401 and not refreshed:
                refreshed = True
                await self.refresh(token)
            elif reply.status_code == 503 and attempt < UNAVAILABLE_RETRIES:
                # The platform says "retry shortly" (e.g. the model is still loading): do as it says.
                await asyncio.sleep(min(10.0, float(reply.headers.get("retry-after", "1") or 1)))
            else:
                return reply
        return reply


async def run(items: list[Item], url: str, mode: str = "detect", concurrency: int = 4, email: str | None = None,
              password: str | None = None, transport: httpx.AsyncBaseTransport | None = None, out=None) -> list[Outcome]:
    out = out or sys.stdout
    timeout = httpx.Timeout(120.0, connect=10.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport) as client:
        try:
            health = await client.get("/healthz")
        except httpx.HTTPError as exc:
            raise BadInput(f"cannot reach the platform at {url}: {exc.__class__.__name__} {exc}".rstrip()) from None
        if health.status_code != 200:
            raise BadInput(f"{url} is not the platform's gateway: GET /healthz answered {health.status_code}")
        session = Session(client)
        account = await session.open(email, password)
        print(f"{len(items)} photos, mode={mode}, {concurrency} at a time, as {account} on {url}", file=out, flush=True)

        outcomes: list[Outcome | None] = [None] * len(items)
        done = 0
        every = max(1, len(items) // 20)
        gate = asyncio.Semaphore(max(1, concurrency))
        start = time.monotonic()
        model = {}

        async def one(index: int, item: Item) -> None:
            nonlocal done
            async with gate:
                try:
                    reply = await session.predict(item, mode)
                    if reply.status_code == 201:
                        body = reply.json()
                        model.setdefault("model", body.get("model"))
                        outcomes[index] = outcome_of(item, body)
                    else:
                        outcomes[index] = Outcome(item, None, error=f"{reply.status_code} {reply.text[:200]}")
                except httpx.HTTPError as exc:
                    outcomes[index] = Outcome(item, None, error=f"{exc.__class__.__name__} {exc}")
                except (ValueError, KeyError, TypeError, IndexError) as exc:  # an answer this command cannot read
                    outcomes[index] = Outcome(item, None, error=f"unexpected answer: {exc}")
            done += 1
            o = outcomes[index]
            if o.error:
                print(f"  {item.path.name}: upload failed: {o.error}", file=out, flush=True)
            if done % every == 0 or done == len(items):
                finished = [x for x in outcomes if x is not None]
                right = sum(x.predicted == x.item.label for x in finished)
                print(f"  {done:>{len(str(len(items)))}}/{len(items)}  accuracy so far {right / len(finished):.1%}  "
                      f"{time.monotonic() - start:.0f} s", file=out, flush=True)

        await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        if model.get("model"):
            print(f"model: {model['model'].get('name')} version {model['model'].get('version')}", file=out, flush=True)
        return [o for o in outcomes if o is not None]


def main(argv: list[str] | None = None, transport: httpx.AsyncBaseTransport | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.labelled_photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, required=True, help="CSV with image_path,labels (FER2013 index or class name)")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the running gateway (default: %(default)s, `make dev`)")
    parser.add_argument("--root", type=Path, default=None, help="folder the image paths are relative to (default: the CSV's)")
    parser.add_argument("--mode", choices=MODES, default="detect", help="detect: find faces (default); face: each photo is one face")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--email", default=None, help="log in as this account instead of registering a new one")
    parser.add_argument("--password", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--tag", default="", help="a name for this run in the JSON (e.g. 'align off')")
    args = parser.parse_args(argv)
    try:
        if args.concurrency < 1 or args.limit < 0:
            raise BadInput("--concurrency must be at least 1 and --limit at least 0")
        if args.email and not args.password:
            raise BadInput("--email needs --password")
        items = read_labels(args.labels, args.root)
        if args.limit:
            items = items[: args.limit]
        outcomes = asyncio.run(run(items, args.url.rstrip("/"), args.mode, args.concurrency, args.email, args.password, transport))
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(outcomes)
    print()
    print(report(summary))
    if args.json:
        summary.extra = {"tag": args.tag, "labels": str(args.labels), "url": args.url, "mode": args.mode,
                         "wrong": [{"photo": o.item.path.name, "true": CLASSES[o.item.label],
                                    "predicted": None if o.predicted is None else CLASSES[o.predicted], "error": o.error}
                                   for o in outcomes if o.predicted != o.item.label]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 1 if summary.errors == summary.photos else 0


if __name__ == "__main__":
    sys.exit(main())
