"""A video's tracks as a picture (each face's expression over time) and as CSV.

The picture is drawn with matplotlib's object API on the Agg canvas: no pyplot, so no global figure
state shared between concurrent requests, and no display needed.
"""
from __future__ import annotations

import csv
import io
import statistics
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# One colour per expression, chosen so a reader guesses the class before reading the legend.
COLOURS = {
    "angry": "#d64545",
    "disgust": "#6b8e23",
    "fear": "#8e5ea2",
    "happy": "#f0b429",
    "sad": "#3b6fd6",
    "surprise": "#2bb0b5",
    "neutral": "#9aa5b1",
}
FALLBACK_COLOURS = ("#e07a5f", "#3d405b", "#81b29a", "#f2cc8f", "#5c80bc", "#bc5090", "#7a7a7a")
WIDTH_IN, DPI = 10.0, 100
ROW_IN, CHROME_IN = 0.45, 1.6
# Beyond this many faces the rows would be too thin to read: the longest tracks are drawn.
MAX_ROWS = 30
DEFAULT_STEP_S = 0.25
MAX_LINE_POINTS = 300


def _colour(label: str, classes: tuple[str, ...]) -> str:
    if label in COLOURS:
        return COLOURS[label]
    return FALLBACK_COLOURS[classes.index(label) % len(FALLBACK_COLOURS)] if label in classes else "#ffffff"


def _step(tracks: list[dict[str, Any]]) -> float:
    """The sampling interval, read from the tracks (the time between a track's consecutive points)."""
    gaps = [b["t"] - a["t"] for track in tracks for a, b in zip(track["points"], track["points"][1:]) if b["t"] > a["t"]]
    return statistics.median(gaps) if gaps else DEFAULT_STEP_S


def figure_size(rows: int) -> tuple[int, int]:
    """The PNG's size in pixels for that many rows (tracks drawn)."""
    return round(WIDTH_IN * DPI), round((CHROME_IN + ROW_IN * max(rows, 2)) * DPI)


def timeline_png(tracks: list[dict[str, Any]], classes: list[str] | tuple[str, ...], duration_s: float) -> bytes:
    """One row per face: its label at each sampled time as coloured bars over the video's seconds, and
    its top score as a thin line across the row (low = uncertain). A legend names the classes."""
    classes = tuple(classes)
    shown = sorted(tracks, key=lambda tr: -len(tr["points"]))[:MAX_ROWS]
    shown.sort(key=lambda tr: tr["track"])
    width, height = figure_size(len(shown))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    end = max([duration_s] + [tr["end_t"] for tr in tracks]) or 1.0
    axes.set_xlim(0, end)
    axes.set_xlabel("time (s)")
    if not tracks:
        axes.set_title("Expressions over time")
        axes.text(0.5, 0.5, "no face found", transform=axes.transAxes, ha="center", va="center", fontsize=16, color="#616e7c")
        axes.set_yticks([])
    else:
        _draw_tracks(axes, shown, classes, _step(tracks))
        title = "Expressions over time"
        if len(shown) < len(tracks):
            title += f" ({len(shown)} longest of {len(tracks)} faces)"
        axes.set_title(title)
        handles = [Patch(color=_colour(c, classes), label=c) for c in classes]
        handles.append(axes.lines[0] if axes.lines else Patch(color="black", label="top score"))
        figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _draw_tracks(axes, tracks: list[dict[str, Any]], classes: tuple[str, ...], step: float) -> None:
    for row, track in enumerate(tracks):
        points = track["points"]
        by_label: dict[str, list[tuple[float, float]]] = {}
        previous = None
        for i, point in enumerate(points):
            # A bar lasts until the next sample, or one sampling interval where the face was not seen.
            following = points[i + 1]["t"] if i + 1 < len(points) else point["t"] + step
            length = min(following - point["t"], step * 1.5) or step
            spans = by_label.setdefault(point["label"], [])
            if previous == point["label"] and abs(sum(spans[-1]) - point["t"]) < 1e-6:
                # One bar for a run of the same label: a long video stays a few hundred shapes.
                spans[-1] = (spans[-1][0], spans[-1][1] + length)
            else:
                spans.append((point["t"], length))
            previous = point["label"]
        for label, spans in by_label.items():
            axes.broken_barh(spans, (row - 0.4, 0.8), facecolors=_colour(label, classes), edgecolor="none")
        times, tops = _top_scores(points, step)
        axes.plot(times, row + 0.4 - 0.8 * tops, color="#1f2933", linewidth=0.8, label="top score")
    axes.set_ylim(len(tracks) - 0.5, -0.5)
    axes.set_yticks(range(len(tracks)), [f"face {tr['track']} ({tr['dominant_label']})" for tr in tracks])
    axes.grid(axis="x", color="#e4e7eb", linewidth=0.6)
    axes.set_axisbelow(True)


def _top_scores(points: list[dict[str, Any]], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's top score at the middle of its bar; averaged over bins on a long track, where
    thousands of samples would draw a solid smear instead of a line."""
    times = np.array([p["t"] + step / 2 for p in points])
    tops = np.array([max(p["scores"], default=0.0) for p in points])
    if len(points) <= MAX_LINE_POINTS:
        return times, tops
    bins = np.array_split(np.arange(len(points)), MAX_LINE_POINTS)
    return np.array([times[b].mean() for b in bins]), np.array([tops[b].mean() for b in bins])


def timeline_csv(tracks: list[dict[str, Any]], classes: list[str] | tuple[str, ...]) -> str:
    """One row per sampled face: track, t (s), box in the video's pixels, label, one score per class."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["track", "t", "x", "y", "width", "height", "label", *classes])
    for track in tracks:
        for point in track["points"]:
            scores = list(point["scores"]) + [""] * (len(classes) - len(point["scores"]))
            writer.writerow([track["track"], f"{point['t']:.3f}", *point["box"], point["label"],
                             *(f"{s:.4f}" if s != "" else "" for s in scores[: len(classes)])])
    return out.getvalue()
