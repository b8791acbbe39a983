"""The book's figure helpers: one palette, one style, small shared helpers.

Every chapter figure is drawn by a function in a submodule (:mod:`kltools.plots.pretraining`,
…) that takes tidy data (pandas/xarray) and returns the matplotlib ``Figure``; notebooks only
call them. Colours come from seaborn's colour-blind-safe ``"colorblind"`` palette and are
keyed by name (:func:`colors_for`), so a run or model has the same colour in every figure of
the book; ordered quantities (training step, size) use light→dark sequential ramps so they
stay readable in grey. Every text is at least :data:`MIN_FONT_PT` points, which the figure
widths of the book keep at 8 px or more on the page (:mod:`kltools.book.runtime`).

Importing this package imports matplotlib and seaborn but not torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = [
    "MIN_FONT_PT",
    "PALETTE",
    "color_of",
    "colors_for",
    "finish",
    "label_points",
    "map_axis_labels",
    "ramp",
    "set_style",
    "units_label",
]

#: the seaborn palette every categorical colour comes from (colour-blind safe)
PALETTE = "colorblind"
#: axis label of the KL scale
KL_LABEL = "KL [bits/byte]"
#: the smallest font size (points) any figure text uses: at 200 dpi, a figure up to 8 inches
#: wide shown in the ~690 px column of the page draws it at 8 px or more
MIN_FONT_PT = 9.0


def set_style(context: str = "notebook") -> None:
    """The book's matplotlib/seaborn style: white grid, colour-blind palette, 110 dpi inline,
    no text smaller than :data:`MIN_FONT_PT` points."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "figure.constrained_layout.use": True,
            "legend.fontsize": MIN_FONT_PT + 1,
            "legend.title_fontsize": MIN_FONT_PT + 1,
            "xtick.labelsize": MIN_FONT_PT + 1,
            "ytick.labelsize": MIN_FONT_PT + 1,
        }
    )


def _slot(label: Hashable, n: int) -> int:
    """The palette slot a label asks for: a stable hash of its text (the same in every run)."""
    return int.from_bytes(hashlib.md5(str(label).encode()).digest()[:4], "big") % n


def color_of(label: Hashable) -> tuple[float, float, float]:
    """The book's colour of a run, model or category (alone in its figure): keyed by its name."""
    pal = sns.color_palette(PALETTE, n_colors=10)
    return pal[_slot(label, len(pal))]


def colors_for(labels: Sequence[Hashable]) -> dict[Hashable, Any]:
    """A colour per label from :data:`PALETTE`, keyed by the label's name (:func:`color_of`).

    A name keeps its colour in every figure of the book, whatever else the figure shows,
    unless two names of one figure ask for the same colour: then the name that sorts later
    takes the next free one (so that one figure never draws two labels alike). Beyond ten
    labels colours repeat.
    """
    labels = list(dict.fromkeys(labels))
    pal = sns.color_palette(PALETTE, n_colors=10)
    taken: dict[int, Hashable] = {}
    out: dict[Hashable, Any] = {}
    for lab in sorted(labels, key=lambda x: (_slot(x, len(pal)), str(x))):
        k = _slot(lab, len(pal))
        if len(taken) < len(pal):
            while k in taken:
                k = (k + 1) % len(pal)
        taken[k] = lab
        out[lab] = pal[k]
    return {lab: out[lab] for lab in labels}


def ramp(color: Any, n: int, *, light: float = 0.8) -> list[tuple[float, float, float]]:
    """``n`` shades of ``color`` from light (first) to the full colour (last)."""
    base = np.asarray(mpl.colors.to_rgb(color))
    if n <= 1:
        return [tuple(base)]
    ts = np.linspace(light, 0.0, n)
    return [tuple(base + (1.0 - base) * t) for t in ts]


def map_axis_labels(points: Any) -> tuple[str, str]:
    """Axis labels of a KL map (:func:`kltools.maps.project_2d`): PCA axes carry units, t-SNE's none.

    PCA of the double-centred coordinates keeps distances, so its axes are in
    √(bits/byte); t-SNE keeps only neighbourhoods and its axes have no units.
    """
    if getattr(points, "attrs", {}).get("method") == "tsne":
        return "t-SNE 1 (no units)", "t-SNE 2 (no units)"
    return r"PC 1 [$\sqrt{\mathrm{bits/byte}}$]", r"PC 2 [$\sqrt{\mathrm{bits/byte}}$]"


def units_label(quantity: str, units: str) -> str:
    """``"quantity [units]"``."""
    return f"{quantity} [{units}]"


def finish(
    ax: plt.Axes, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None
) -> plt.Axes:
    """Set the labels and title of ``ax`` (None leaves one as it is)."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    return ax


#: where :func:`label_points` tries a label, in units of its ``pad``: eight directions, near
#: then far
_LABEL_OFFSETS = [
    (r * dx, r * dy)
    for r in (1, 3, 6)
    for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
]


def label_points(
    ax: plt.Axes,
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    *,
    fontsize: float = MIN_FONT_PT,
    pad: float = 4.0,
    marker_radius: float = 4.0,
) -> list[Any]:
    """Label points so that no label covers another label, another point or the axes' edge.

    Each label goes to the first of 24 offsets around its point (eight directions, ``pad``,
    ``3 * pad`` then ``6 * pad`` points away) whose box is clear; where none is, to the offset
    that overlaps least. Call it when everything else is drawn: it resolves the layout
    first. Returns the annotations.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    radius = marker_radius * fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    out = []
    for i, (x, y, text) in enumerate(zip(xs, ys, labels)):
        others = np.delete(pts, i, axis=0)
        best = (np.inf, 0)  # (overlaps, offset index)
        for k, (dx, dy) in enumerate(_LABEL_OFFSETS):
            ann = _annotation(ax, text, x, y, dx * pad, dy * pad, fontsize)
            box = ann.get_window_extent(renderer)
            ann.remove()
            cost = sum(box.overlaps(b) for b in placed)
            cost += int(
                np.sum(
                    (others[:, 0] > box.x0 - radius)
                    & (others[:, 0] < box.x1 + radius)
                    & (others[:, 1] > box.y0 - radius)
                    & (others[:, 1] < box.y1 + radius)
                )
            )
            cost += 0 if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) else 1
            if cost < best[0]:
                best = (cost, k)
            if cost == 0:
                break
        dx, dy = _LABEL_OFFSETS[best[1]]
        ann = _annotation(ax, text, x, y, dx * pad, dy * pad, fontsize)
        placed.append(ann.get_window_extent(renderer))
        out.append(ann)
    return out


def _annotation(ax: plt.Axes, text: str, x: float, y: float, dx: float, dy: float, size: float):
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
    return ax.annotate(
        str(text), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=size, ha=ha, va=va
    )
