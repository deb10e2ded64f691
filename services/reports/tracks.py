"""Faces of a video linked across its sampled frames into tracks, one per person.

Why box overlap (IoU) is enough: frames are sampled a few times a second, and between two samples a
face moves a fraction of its own width, so its box in the next frame overlaps its box in this one far
more than any other face's box does. Matching by overlap needs no appearance model (no face
embeddings to compute, store or compare) and costs nothing next to detection. Its limits: two faces
that cross each other may swap tracks; a face hidden for longer than max_gap_s, or one that moves
more than its width between samples (a fast pan at a low sampling rate), starts a new track.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Box = list[int] | tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    union = a[2] * a[3] + b[2] * b[3] - w * h
    return w * h / union if union > 0 else 0.0


@dataclass
class _Track:
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.points[-1]


def _point(t: float, face: dict[str, Any]) -> dict[str, Any]:
    return {"t": t, "box": [int(v) for v in face["box"]], "label": face.get("label", ""),
            "scores": [float(s) for s in face.get("scores", ())]}


def _summary(number: int, track: _Track, classes: list[str] | tuple[str, ...]) -> dict[str, Any]:
    # Samples are evenly spaced in time, so a label's share of a track's samples is its share of time.
    counts = Counter(p["label"] for p in track.points if p["label"] in classes)
    total = sum(counts.values())
    share = [counts[c] / total if total else 0.0 for c in classes]
    # Ties go to the first class in the model's order: stable from one request to the next.
    dominant = max(classes, key=lambda c: counts[c]) if total else ""
    return {"track": number, "dominant_label": dominant, "share": share, "start_t": track.points[0]["t"],
            "end_t": track.last["t"], "points": list(track.points)}


class TrackLinker:
    """Greedy matching, frame by frame, fed one frame at a time, so a running video's tracks grow with its
    new frames only: the pairs (live track, face) overlapping by at least iou_min are taken highest
    overlap first, each track and each face at most once; a face left over starts a new track; a track
    not seen for more than max_gap_s ends (its person left, or was hidden too long). Frames come in time
    order."""

    def __init__(self, iou_min: float = 0.3, max_gap_s: float = 1.5) -> None:
        self.iou_min = iou_min
        self.max_gap_s = max_gap_s
        self._live: list[_Track] = []
        self._tracks: list[_Track] = []  # every track, in order of start

    def add(self, t: float, faces: list[dict[str, Any]]) -> None:
        live = self._live = [track for track in self._live if t - track.last["t"] <= self.max_gap_s]
        pairs = sorted(
            ((iou(track.last["box"], face["box"]), i, j) for i, track in enumerate(live) for j, face in enumerate(faces)),
            key=lambda pair: -pair[0],
        )
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < self.iou_min:
                break
            if i in taken_tracks or j in taken_faces:
                continue
            taken_tracks.add(i)
            taken_faces.add(j)
            live[i].points.append(_point(t, faces[j]))
        for j, face in enumerate(faces):
            if j not in taken_faces:
                track = _Track([_point(t, face)])
                live.append(track)
                self._tracks.append(track)

    def tracks(self, classes: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
        """The tracks so far (see link_tracks), summarised over `classes`."""
        classes = tuple(classes)
        return [_summary(number, track, classes) for number, track in enumerate(self._tracks, start=1)]


def link_tracks(frames: list[tuple[float, list[dict[str, Any]]]], classes: list[str] | tuple[str, ...],
                iou_min: float = 0.3, max_gap_s: float = 1.5) -> list[dict[str, Any]]:
    """Tracks from (t, faces) in time order, each face {"box": [x, y, w, h], "label", "scores"}, linked as
    TrackLinker links them. Each track: {"track": n (1-based, in order of start), "dominant_label",
    "share": [one per class, summing to 1], "start_t", "end_t", "points": [{"t", "box", "label", "scores"}]}.
    """
    linker = TrackLinker(iou_min, max_gap_s)
    for t, faces in sorted(frames, key=lambda frame: frame[0]):
        linker.add(t, faces)
    return linker.tracks(classes)
