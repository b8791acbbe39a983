"""Figures of part II: quantization, the numerical floor, fine-tuning, layers and the scale.

Each function takes tidy data (the pair-set frames of :mod:`kltools.settings`) and returns
a matplotlib ``Figure``. KL axes are in bits/byte. The scale figure (Fig. 3) uses the paper's
symlog axis for the paper's models and a log axis for small-model suites
(:func:`scale_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from kltools.plots import (
    KL_LABEL,
    MIN_FONT_PT,
    colors_for,
    finish,
    label_points,
    map_axis_labels,
)

if TYPE_CHECKING:
    from kltools.config import Settings
    from kltools.pairs import PairSet

__all__ = [
    "LAYER_SPLIT",
    "SCALE_AXIS",
    "SCALE_TICKS",
    "SECTIONS",
    "plot_finetuning",
    "plot_floor",
    "plot_layer_kl",
    "plot_layer_map",
    "plot_lineage_map",
    "plot_quant_kl",
    "plot_quant_map",
    "plot_scale",
    "paper_settings",
    "scale_axis",
    "scale_caption",
    "scale_figure",
    "symlog_kl_axis",
]

#: the paper's ticks of the scale figure (Fig. 3)
SCALE_TICKS = (0, 0.05, 0.1, 0.5, 1, 5, 10, 50)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def symlog_kl_axis(ax: plt.Axes, axis: str = "y", linthresh: float = 0.1) -> None:
    """The paper's symlog KL axis: linear below ``linthresh``, logarithmic above."""
    if axis == "y":
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.set_yticks(SCALE_TICKS)
        ax.set_yticklabels([f"{t:g}" for t in SCALE_TICKS])
        ax.set_ylim(bottom=0)
    else:
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xticks(SCALE_TICKS)
        ax.set_xticklabels([f"{t:g}" for t in SCALE_TICKS])
        ax.set_xlim(left=0)


def _positive_floor(values: Sequence[float]) -> float:
    """A lower limit for a log axis: a decade below the smallest positive value."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0])
    return float(10 ** np.floor(np.log10(v.min()) - 0.5)) if v.size else 1e-8


def plot_quant_kl(frame: pd.DataFrame, floor: pd.DataFrame | None = None) -> plt.Figure:
    """KL between each base model and its quantized copies against bit width (log y).

    ``frame``: :func:`~kltools.settings.quantization.quantization` rows (``model``, ``variant``,
    ``family``, ``bits``, ``kl``, ``lo``, ``hi``). ``floor``: floor pairs; their range is
    shaded so copies below it are visibly indistinguishable from pipeline noise.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    models = list(dict.fromkeys(frame.model))
    colors = colors_for(models)
    fams = list(dict.fromkeys(frame.family))
    offset = {m: (i - (len(models) - 1) / 2) * 0.12 for i, m in enumerate(models)}
    for (m, fam), g in frame.groupby(["model", "family"], sort=False):
        x = g.bits.to_numpy(float) + offset[m] + (0.04 if fam == "bitsandbytes" else -0.04)
        y = g.kl.to_numpy()
        yerr = None
        if {"lo", "hi"} <= set(g):
            yerr = np.vstack([y - g.lo.to_numpy(), g.hi.to_numpy() - y]).clip(min=0)
        ax.errorbar(
            x,
            np.clip(y, 1e-12, None),
            yerr=yerr,
            fmt=_MARKERS[fams.index(fam) % len(_MARKERS)],
            color=colors[m],
            ms=6,
            lw=1,
            mfc=colors[m] if fam == "bitsandbytes" else "white",
            label=f"{m} · {fam}",
        )
    vals = list(frame.kl)
    if floor is not None and len(floor):
        pos = floor.kl[floor.kl > 0]
        top = float(floor.kl.max())
        bottom = float(pos.min()) if len(pos) else top / 100
        ax.axhspan(
            max(bottom, 1e-12),
            max(top, 1e-12),
            color="0.85",
            zorder=0,
            label="numerical floor (range)",
        )
        vals += list(pos)
    ax.set_yscale("log")
    ax.set_ylim(bottom=_positive_floor(vals))
    ax.set_xticks(sorted(frame.bits.unique()))
    ax.invert_xaxis()
    ax.legend(fontsize=MIN_FONT_PT, ncol=2, loc="upper left")
    finish(ax, "bits per weight (fewer →)", KL_LABEL, "Quantized copy vs full precision")
    return fig


def plot_quant_map(points: pd.DataFrame, coincide: float = 0.01) -> plt.Figure:
    """Map of base models and their quantized copies, each copy joined to its base (Fig. 2a).

    ``points``: columns ``x``, ``y``, ``model``, ``variant`` (``full`` for the base). A copy
    closer to its base than ``coincide`` × the map's extent cannot be told from it on the
    page: it is ringed, its variant's legend entry says "on its base", and a note under the
    map counts such copies (their KLs are in the chapter's table), instead of a map that
    seems to draw nothing.
    """
    fig, ax = plt.subplots(figsize=(6.5, 5.2))
    variants = [v for v in dict.fromkeys(points.variant) if v != "full"]
    vcol = colors_for(variants)
    extent = max(float(np.ptp(points.x)), float(np.ptp(points.y)), 1e-300)
    hidden: dict[str, int] = {}
    total: dict[str, int] = {}
    for m, g in points.groupby("model", sort=False):
        base = g[g.variant == "full"].iloc[0]
        for r in g[g.variant != "full"].itertuples():
            ax.plot([base.x, r.x], [base.y, r.y], color=vcol[r.variant], lw=1.2, zorder=1)
            total[r.variant] = total.get(r.variant, 0) + 1
            if np.hypot(r.x - base.x, r.y - base.y) < coincide * extent:
                hidden[r.variant] = hidden.get(r.variant, 0) + 1
        ax.scatter(base.x, base.y, s=70, color="black", marker="o", zorder=3)
        ax.annotate(str(m), (base.x, base.y), xytext=(6, 6), textcoords="offset points")
    for v in variants:
        g = points[points.variant == v]
        label = f"{v} (on its base)" if hidden.get(v) == total.get(v) else v
        ax.scatter(g.x, g.y, s=28, color=vcol[v], label=label, zorder=2, edgecolor="white", lw=0.5)
    ax.scatter([], [], s=70, color="black", label="full precision")
    if hidden:
        n = sum(hidden.values())
        ax.scatter(
            points[points.variant == "full"].x,
            points[points.variant == "full"].y,
            s=260,
            facecolor="none",
            edgecolor="0.4",
            lw=1,
            ls=":",
            zorder=2,
        )
        ax.text(
            0.5,
            -0.2,
            f"{n} of {sum(total.values())} copies lie within {coincide:.0%} of the map's extent "
            "of their base\n(ringed: drawn on top of it, too close to tell apart here; "
            "their KLs are in the table).",
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=MIN_FONT_PT,
            color="0.3",
        )
    ax.legend(fontsize=MIN_FONT_PT, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    finish(ax, *map_axis_labels(points), "Model map: each model and its quantized copies")
    return fig


def plot_floor(floor: pd.DataFrame, reference: pd.DataFrame | None = None) -> plt.Figure:
    """Floor KLs (same model, different numerics) beside quantization KLs, log x axis.

    ``floor``: rows with ``comparison``, ``model``, ``kl``, ``lo``, ``hi``. ``reference``:
    other rows to show on the same axis below the line (dtype perturbations, labelled by their
    ``comparison``; quantization, labelled by their setting).
    """
    rows = [floor.assign(kind="floor")]
    if reference is not None and len(reference):
        label = reference["setting"]
        if "comparison" in reference:  # a dtype perturbation keeps its own label
            label = reference["comparison"].fillna(reference["setting"])
        rows.append(reference.assign(kind="quantization", comparison=label))
    df = pd.concat(rows, ignore_index=True)
    labels = list(dict.fromkeys(df.comparison))
    models = list(dict.fromkeys(df.model))
    colors = colors_for(models)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(labels) + 1.6))
    small = _positive_floor(list(df.kl) + list(df.get("lo", df.kl)))
    for i, m in enumerate(models):
        g = df[df.model == m]
        y = np.array([labels.index(c) for c in g.comparison]) + (i - (len(models) - 1) / 2) * 0.15
        x = np.clip(g.kl.to_numpy(), small, None)
        xerr = None
        if {"lo", "hi"} <= set(g):
            lo = np.clip(g.lo.to_numpy(), small, None)
            xerr = np.vstack([x - lo, np.clip(g.hi.to_numpy(), small, None) - x]).clip(min=0)
        ax.errorbar(x, y, xerr=xerr, fmt="o", color=colors[m], ms=5, label=str(m))
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left=small)
    n_floor = len(dict.fromkeys(floor.comparison))
    if reference is not None and len(reference):
        ax.axhline(n_floor - 0.5, color="0.5", lw=0.8, ls="--")
    ax.legend(
        fontsize=MIN_FONT_PT,
        title="model",
        title_fontsize=MIN_FONT_PT,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    finish(
        ax,
        KL_LABEL + f" (log)\nvalues ≤ {small:.0e} (exact 0 included) are drawn at the left edge",
        None,
        "Numerical floor vs quantization",
    )
    return fig


def plot_finetuning(frame: pd.DataFrame, order: Sequence[str] = ("FT", "Intra-type", "Random")):
    """Distributions of FT, Intra-type and Random pair KLs (box + points, log y), per type."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    order = [o for o in order if o in set(frame.setting)]
    colors = colors_for(order)
    sns.boxplot(
        data=frame,
        x="setting",
        y="kl",
        order=order,
        palette=colors,
        hue="setting",
        legend=False,
        ax=ax,
        showfliers=False,
        width=0.5,
    )
    sns.stripplot(
        data=frame, x="setting", y="kl", order=order, color="0.15", size=4, jitter=0.15, ax=ax
    )
    ax.set_yscale("log")
    finish(ax, "pair set", KL_LABEL, "Fine-tuned children vs parents and random pairs")
    return fig


def plot_lineage_map(points: pd.DataFrame) -> plt.Figure:
    """Lineage map: models in the KL map, parent→child arrows, marker by generation (Fig. 2b).

    ``points``: ``x``, ``y``, ``model``, ``parent``, ``type``, ``generation``, ``label``.
    """
    fig, ax = plt.subplots(figsize=(6.5, 5))
    types = list(dict.fromkeys(points.type))
    colors = colors_for(types)
    pos = {r.model: (r.x, r.y) for r in points.itertuples()}
    for r in points.itertuples():
        if isinstance(r.parent, str) and r.parent in pos:
            ax.annotate(
                "",
                xy=(r.x, r.y),
                xytext=pos[r.parent],
                arrowprops=dict(arrowstyle="->", color=colors[r.type], lw=1.2),
            )
    gens = sorted(points.generation.unique())
    for gi, gen in enumerate(gens):
        for t in types:
            g = points[(points.generation == gen) & (points.type == t)]
            if len(g):
                ax.scatter(
                    g.x,
                    g.y,
                    marker=_MARKERS[gi % len(_MARKERS)],
                    s=70 if gen == 0 else 45,
                    color=colors[t],
                    edgecolor="black",
                    lw=0.5,
                    zorder=3,
                )
    for gi, gen in enumerate(gens):
        name = "pretrained (generation 0)" if gen == 0 else f"generation {gen}"
        ax.scatter([], [], marker=_MARKERS[gi % len(_MARKERS)], color="0.5", label=name)
    for t in types:
        ax.scatter([], [], marker="s", color=colors[t], label=f"type {t}")
    ax.legend(fontsize=MIN_FONT_PT, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    finish(ax, *map_axis_labels(points), "Fine-tuning lineages")
    label_points(ax, points.x, points.y, [str(v) for v in points.label])
    return fig


def plot_layer_kl(frame: pd.DataFrame) -> plt.Figure:
    """Adjacent-layer KL (k→k+1) against relative depth, one line per model (log y)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    models = list(dict.fromkeys(frame.model))
    colors = colors_for(models)
    for i, (m, g) in enumerate(frame.groupby("model", sort=False)):
        x = g.layer_b.to_numpy() / g.depth.to_numpy()
        y = g.kl.to_numpy()
        yerr = None
        if {"lo", "hi"} <= set(g):
            yerr = np.vstack([y - g.lo.to_numpy(), g.hi.to_numpy() - y]).clip(min=0)
        ax.errorbar(
            x,
            y,
            yerr=yerr,
            marker=_MARKERS[i % len(_MARKERS)],
            color=colors[m],
            label=str(m),
            lw=1.2,
            ms=5,
        )
    ax.set_yscale("log")
    ax.legend(
        fontsize=MIN_FONT_PT,
        title="model",
        title_fontsize=MIN_FONT_PT,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    finish(
        ax,
        r"relative depth of layer $k+1$: $(k+1)/L$",
        KL_LABEL,
        "Logit lens: KL between adjacent layers",
    )
    return fig


def plot_layer_map(points: pd.DataFrame) -> plt.Figure:
    """Layer trajectories in the KL map (Fig. 2c): one polyline per model, light→dark by depth.

    ``points``: ``x``, ``y``, ``model``, ``layer``, ``depth``.
    """
    from kltools.plots import ramp

    fig, ax = plt.subplots(figsize=(6.5, 5))
    models = list(dict.fromkeys(points.model))
    colors = colors_for(models)
    for m, g in points.groupby("model", sort=False):
        g = g.sort_values("layer")
        ax.plot(g.x, g.y, color=colors[m], lw=1.2, label=str(m), zorder=1)
        shades = ramp(colors[m], len(g))
        ax.scatter(g.x, g.y, c=shades, s=40, edgecolor="black", lw=0.4, zorder=2)
        last = g.iloc[-1]
        ax.scatter(last.x, last.y, marker="*", s=160, color=colors[m], edgecolor="black", lw=0.6)
    ax.scatter(
        [], [], marker="*", s=160, color="0.6", edgecolor="black", lw=0.6, label="output layer"
    )
    ax.legend(
        fontsize=MIN_FONT_PT,
        title="model\n(light: embeddings,\ndark: output)",
        title_fontsize=MIN_FONT_PT,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        borderaxespad=0,
    )
    finish(ax, *map_axis_labels(points), "Layer trajectories (logit lens)")
    return fig


#: the paper's section of each group of settings (Fig. 3); the numerics are the book's own
SECTIONS: dict[str, str] = {
    "pretraining": "§3.1 pretraining",
    "quantization": "§3.2 quantization",
    "fine-tuning": "§3.3 fine-tuning",
    "layers": "§3.4 layers",
    "numerics": "the book's own: numerical floor and dtype perturbations",
}

#: the paper's symlog axis of Fig. 3: linear below ``linthresh``, values clipped at ``clip``
SCALE_AXIS: dict[str, float] = {"linthresh": 0.1, "linscale": 0.9, "clip": 50.0}

#: the two populations of the Layer setting, split by the pair's first hidden-state index
LAYER_SPLIT: tuple[tuple[str, str], ...] = (
    ("embedding", "from the embedding (0→1)"),
    ("blocks", "between blocks (k→k+1, k ≥ 1)"),
)


def _transform(axis: str):
    """Forward and inverse maps of a y axis (``"symlog"`` as :data:`SCALE_AXIS`, or ``"log"``)."""
    if axis == "symlog":
        from matplotlib.scale import SymmetricalLogTransform

        tr = SymmetricalLogTransform(10, SCALE_AXIS["linthresh"], SCALE_AXIS["linscale"])
        inv = tr.inverted()
        return (
            lambda v: tr.transform(np.asarray(v, float).reshape(-1, 1)).ravel(),
            lambda v: inv.transform(np.asarray(v, float).reshape(-1, 1)).ravel(),
        )
    return (lambda v: np.log10(np.asarray(v, float)), lambda v: 10 ** np.asarray(v, float))


def _populations(data: pd.DataFrame, setting: str) -> list[tuple[str, pd.Series]]:
    """The populations drawn for one setting: the Layer pairs split into those from the
    embedding (``layer_a == 0``) and those between blocks; any other setting whole."""
    part = data[data.setting == setting]
    if "layer_a" in part and part.layer_a.notna().any():
        first = part.layer_a == 0
        out = [(key, part.kl[m]) for (key, _), m in zip(LAYER_SPLIT, (first, ~first))]
        if all(len(v) for _, v in out):
            return out
    return [("", part.kl)]


def _violin(ax, values, x, side, fwd, inv, color) -> None:
    """One violin (or half of one: ``side`` ``"low"``/``"high"``) of ``values`` at ``x``,
    its density drawn in the axis' transformed units."""
    if len(values) < 3 or np.ptp(fwd(values)) == 0:
        return
    body = ax.violinplot(fwd(values), positions=[x], widths=0.8, showextrema=False, side=side)
    for b in body["bodies"]:
        for path in b.get_paths():
            path.vertices[:, 1] = inv(path.vertices[:, 1])
        b.set_facecolor(color)
        b.set_edgecolor("0.3")
        b.set_alpha(0.6)


def _panel(ax, data, order, palette, axis, paper, low) -> dict[str, int]:
    """Violins, points and medians of the settings ``order`` on ``ax``; returns how many
    values each setting has at the axis' edge (exact zeros on a log axis, or above the clip)."""
    fwd, inv = _transform(axis)
    clip = SCALE_AXIS["clip"] if axis == "symlog" else np.inf
    rng = np.random.default_rng(0)
    edge: dict[str, int] = {}
    for i, s in enumerate(order):
        pops = _populations(data, s)
        for (_key, kl), side in zip(pops, ("low", "high") if len(pops) == 2 else ("both",)):
            v = kl.to_numpy(float)
            shown = v[v > 0] if axis == "log" else np.clip(v, 0, clip)
            edge[s] = edge.get(s, 0) + int(np.sum(v <= 0) if axis == "log" else np.sum(v > clip))
            _violin(ax, shown, i, side, fwd, inv, palette[s])
            dx = {"low": (-0.3, -0.03), "high": (0.03, 0.3), "both": (-0.15, 0.15)}[side]
            ax.scatter(
                i + rng.uniform(*dx, len(shown)), shown, s=8, color="0.2", alpha=0.7, zorder=3
            )
            if len(shown):
                span = {"low": (-0.4, 0), "high": (0, 0.4), "both": (-0.32, 0.32)}[side]
                med = float(np.median(np.clip(v, low, clip) if axis == "log" else shown))
                ax.hlines(med, i + span[0], i + span[1], color="black", lw=2.2, zorder=4)
            if axis == "log" and np.any(v <= 0):
                ax.scatter([i], [low], marker="v", color="0.2", s=30, zorder=5, clip_on=False)
        num = (paper or {}).get(s)
        if num is not None:
            kind = getattr(num, "kind", "")
            single = kind == "single pair"
            ax.scatter(
                [i + 0.42],
                [min(float(getattr(num, "value", num)), clip)],
                marker=_PAPER_MARKERS.get(kind, "D"),
                facecolor="white" if single else "#d55e00",
                edgecolor="#d55e00",
                s=38,
                lw=1.5,
                zorder=5,
                clip_on=False,
            )
    ax.set_xticks(range(len(order)))
    ax.set_xlim(-0.6, len(order) - 0.4)
    return edge


def _set_axis(ax, axis: str, values: Sequence[float]) -> float:
    """Scale and limits of a KL axis; returns its lower edge (where log-axis zeros sit)."""
    if axis == "symlog":
        ax.set_yscale("symlog", linthresh=SCALE_AXIS["linthresh"], linscale=SCALE_AXIS["linscale"])
        ax.set_ylim(0, SCALE_AXIS["clip"] * 1.15)
        ax.set_yticks(SCALE_TICKS, [f"{t:g}" for t in SCALE_TICKS])
        ax.yaxis.set_minor_locator(plt.NullLocator())
        return 0.0
    pos = [float(v) for v in values if np.isfinite(v) and v > 0]
    low = 10 ** np.floor(np.log10(min(pos))) if pos else 1e-8
    high = 10 ** np.ceil(np.log10(max(pos) * 1.5)) if pos else 1.0
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    return float(low)


#: marker of a published number by its kind (a single pair is drawn open)
_PAPER_MARKERS = {"single pair": "o", "median": "D", "mean": "s"}


def _paper_handles(paper: Mapping[str, object] | None, order: Sequence[str]) -> list:
    """Legend entries of the published numbers: one per kind and source, the first arXiv
    version's single pairs labelled as single pairs."""
    out, seen = [], set()
    for s in order:
        num = (paper or {}).get(s)
        if num is None:
            continue
        kind, source = getattr(num, "kind", "number"), getattr(num, "source", "paper")
        if (kind, source) in seen:
            continue
        seen.add((kind, source))
        where = source.replace("v1 ", "first arXiv version, ")
        single = kind == "single pair"
        label = (
            f"paper: one pair, not a distribution ({where})"
            if single
            else (f"paper: {kind} ({where})")
        )
        out.append(
            plt.Line2D(
                [],
                [],
                marker=_PAPER_MARKERS.get(kind, "D"),
                ls="",
                mfc="white" if single else "#d55e00",
                mec="#d55e00",
                mew=1.5,
                label=label,
            )
        )
    return out


def plot_scale(
    frame: pd.DataFrame,
    order: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    paper: Mapping[str, object] | None = None,
    *,
    axis: str = "symlog",
    own: Sequence[str] = (),
) -> plt.Figure:
    """Fig. 3: one violin per setting, the paper's settings in the main panel and the book's
    own (``own``: the floor, dtype perturbations) in a smaller panel below, on a log axis.

    ``axis``: ``"symlog"`` is the paper's axis (:data:`SCALE_AXIS`: linear below 0.1
    bits/byte, values above 50 drawn at 50, the paper's ticks :data:`SCALE_TICKS`), for
    profiles whose models are the paper's; ``"log"`` suits small-model suites whose values
    span many decades (exact zeros then sit as triangles on the bottom edge). Every black
    bar is the median of one population: the Layer setting pools pairs from the embedding
    (0→1) and pairs between blocks, drawn as two half-violins with a median each (left:
    from the embedding). ``frame``: ``setting``, ``kl`` (and ``layer_a`` for the split).
    ``groups``: group -> settings (dashed separators, a colour per group, :data:`SECTIONS`).
    ``paper``: setting -> :class:`kltools.paper.Number` (a published median is a filled
    diamond; the first arXiv version's single pairs are open circles, labelled as such).
    """
    present = set(frame.setting)
    own_set = set(own)
    main = [o for o in order if o in present and o not in own_set]
    lower = [o for o in own if o in present]
    group_of = {s: g for g, members in (groups or {}).items() for s in members}
    gcolors = colors_for(list(dict.fromkeys(group_of.get(s, s) for s in [*main, *lower])))
    palette = {s: gcolors[group_of.get(s, s)] for s in [*main, *lower]}
    data = frame[frame.setting.isin([*main, *lower])]
    rows = [3.2, 1.3] if lower else [1]
    fig, axes = plt.subplots(
        len(rows),
        1,
        figsize=(7.5, 4.4 + (2.1 if lower else 0)),
        height_ratios=rows,
        squeeze=False,
    )
    ax = axes[0, 0]
    main_data = data[data.setting.isin(main)]
    values = list(main_data.kl) + [
        getattr(v, "value", v) for s, v in (paper or {}).items() if s in main and v is not None
    ]
    low = _set_axis(ax, axis, values)
    edge = _panel(ax, main_data, main, palette, axis, paper, low)
    labels = []
    for s in main:
        n = edge.get(s, 0)
        note = f"\n({n}× 0)" if n and axis == "log" else f"\n({n} > 50)" if n else ""
        labels.append(f"{s}{note}")
    ax.set_xticklabels(labels, rotation=30, ha="right", rotation_mode="anchor")
    _sections(ax, main, group_of, gcolors)
    ylab = KL_LABEL + (" (symlog: linear below 0.1)" if axis == "symlog" else " (log scale)")
    finish(ax, None, ylab, None)
    handles = [plt.Line2D([], [], color="black", lw=2.2, label="our median (one population)")]
    if "Layer" in main and len(_populations(data, "Layer")) == 2:
        handles.append(
            plt.Rectangle(
                (0, 0),
                1,
                1,
                color=palette["Layer"],
                alpha=0.6,
                label="Layer: left half from the embedding, right half between blocks",
            )
        )
    handles += _paper_handles(paper, main)
    if axis == "log" and any(edge.values()):
        handles.append(
            plt.Line2D([], [], marker="v", color="0.2", ls="", label="exactly 0 (bottom edge)")
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=1, fontsize=MIN_FONT_PT)
    if lower:
        ax2 = axes[1, 0]
        low_data = data[data.setting.isin(lower)]
        low2 = _set_axis(ax2, "log", list(low_data.kl))
        edge2 = _panel(ax2, low_data, lower, palette, "log", None, low2)
        ax2.set_xticklabels([f"{s}\n({edge2[s]}× 0)" if edge2.get(s) else s for s in lower])
        pad = max(len(main) - len(lower), 0) / 2  # violins as wide as the main panel's
        ax2.set_xlim(-0.6 - pad, len(lower) - 0.4 + pad)
        ax2.set_title(SECTIONS["numerics"] + " (log scale)", fontsize=MIN_FONT_PT + 1)
        finish(ax2, None, KL_LABEL, None)
    fig.suptitle("The KL scale across settings", fontweight="bold")
    return fig


def _sections(ax, order, group_of, gcolors) -> None:
    """Dashed separators between groups and each group's section of the paper on top."""
    spans: dict[str, list[int]] = {}
    for i, s in enumerate(order):
        spans.setdefault(group_of.get(s, s), []).append(i)
    for i, (g, xs) in enumerate(spans.items()):
        if i:
            ax.axvline(min(xs) - 0.5, color="0.5", ls="--", lw=0.8)
        ax.text(
            (min(xs) + max(xs)) / 2,
            1.01,
            SECTIONS.get(g, g).replace(" ", "\n", 1 if len(xs) < 2 else 0),
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=MIN_FONT_PT,
            color=gcolors[g],
            fontweight="bold",
        )


def paper_settings() -> tuple[str, ...]:
    """The paper's ten settings of Fig. 3, in its order (:data:`kltools.settings.PAPER_SETTINGS`;
    until that constant exists, the first ten of :data:`kltools.settings.ORDER`)."""
    from kltools import settings as S

    return tuple(getattr(S, "PAPER_SETTINGS", S.ORDER[:10]))


def scale_axis(s: Settings) -> str:
    """Fig. 3's axis for a profile: the paper's symlog where its source holds the paper's
    models (``published_magnitudes``), else log (a small suite's KLs span many decades)."""
    from kltools import sources

    return "symlog" if sources.can(s, "published_magnitudes") else "log"


def scale_figure(s: Settings, pairs: PairSet) -> plt.Figure:
    """Fig. 3 of a chapter: :func:`plot_scale` of ``pairs`` with the paper's ten settings,
    the book's own numerics below and the profile's axis (:func:`scale_axis`); the published
    numbers are marked only for the paper's models (small suites compare orders, not
    magnitudes)."""
    from kltools import paper
    from kltools import settings as S

    order = paper_settings()
    own = S.GROUPS.get("numerics", ())
    axis = scale_axis(s)
    published = paper.FOR_SETTING if axis == "symlog" else None
    return plot_scale(pairs.frame, order, S.GROUPS, published, axis=axis, own=own)


def scale_caption(s: Settings) -> str:
    """What Fig. 3 shows and what to look for, with why its axis is what it is."""
    common = (
        "The KL between the two models of every pair of each setting (points), their "
        "distribution (violins) and its median (black bar); the paper's settings on top, the "
        "book's own numerical floor and dtype perturbations in the panel below. The Layer "
        "setting is two populations, drawn as half-violins with a median each: pairs from "
        "the embedding output to the first block (left) and pairs between blocks (right). "
        "Look for the order of the settings: late checkpoints < seeds < sizes, "
        "8-bit < 4-bit, fine-tuned children closer to their parents than random pairs."
    )
    if scale_axis(s) == "symlog":
        return common + (
            " Published numbers are marked beside their setting: a filled diamond is a median "
            "over pairs, a square a mean, an open circle a single pair of the paper's first "
            "arXiv version (not a distribution). The axis is the paper's: linear below 0.1 "
            "bits/byte, logarithmic above, values above 50 drawn at 50."
        )
    return common + (
        " The axis is logarithmic, not the paper's symlog: this profile's small models give "
        "KLs that span many decades (down to the floor), which a linear stretch below 0.1 "
        "would flatten onto zero; exact zeros are triangles on the bottom edge. The paper's "
        "numbers are not marked: small models are compared by order, not magnitude."
    )
