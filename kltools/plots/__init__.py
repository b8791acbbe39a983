"""The book's figure helpers: one palette, one style, small shared helpers.

Every chapter figure is drawn by a function in a submodule (:mod:`kltools.plots.pretraining`,
…) that takes tidy data (pandas/xarray) and returns the matplotlib ``Figure``; notebooks only
call them. Colours come from seaborn's colour-blind-safe ``"colorblind"`` palette; ordered
quantities (training step, size) use light→dark sequential ramps so they stay readable in grey.

Importing this package imports matplotlib and seaborn but not torch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = [
    "PALETTE",
    "colors_for",
    "finish",
    "ramp",
    "set_style",
    "units_label",
]

#: the seaborn palette every categorical colour comes from (colour-blind safe)
PALETTE = "colorblind"
#: axis label of the KL scale
KL_LABEL = "KL [bits/byte]"


def set_style(context: str = "notebook") -> None:
    """The book's matplotlib/seaborn style: white grid, colour-blind palette, 110 dpi inline."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "figure.constrained_layout.use": True,
        }
    )


def colors_for(labels: Sequence[Hashable]) -> dict[Hashable, Any]:
    """A fixed colour per label (in the given order) from :data:`PALETTE`."""
    labels = list(dict.fromkeys(labels))
    pal = sns.color_palette(PALETTE, n_colors=max(len(labels), 1))
    return {lab: pal[i % len(pal)] for i, lab in enumerate(labels)}


def ramp(color: Any, n: int, *, light: float = 0.8) -> list[tuple[float, float, float]]:
    """``n`` shades of ``color`` from light (first) to the full colour (last)."""
    base = np.asarray(mpl.colors.to_rgb(color))
    if n <= 1:
        return [tuple(base)]
    ts = np.linspace(light, 0.0, n)
    return [tuple(base + (1.0 - base) * t) for t in ts]


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
