"""Figures of part II: quantization, the numerical floor, fine-tuning, layers and the scale.

Each function takes tidy data (the pair-set frames of :mod:`kltools.settings`) and returns
a matplotlib ``Figure``. KL axes are in bits/byte; the scale uses the paper's symlog axis
(linthresh 0.1; ticks 0, 0.05, 0.1, 0.5, 1, 5, 10, 50).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from kltools.plots import KL_LABEL, colors_for, finish

__all__ = [
    "SCALE_TICKS",
    "plot_finetuning",
    "plot_floor",
    "plot_layer_kl",
    "plot_layer_map",
    "plot_lineage_map",
    "plot_quant_kl",
    "plot_quant_map",
    "plot_scale",
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
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    finish(ax, "bits per weight (fewer →)", KL_LABEL, "Quantized copy vs full precision")
    return fig


def plot_quant_map(points: pd.DataFrame) -> plt.Figure:
    """Map of base models and their quantized copies, each copy joined to its base (Fig. 2a).

    ``points``: columns ``x``, ``y``, ``model``, ``variant`` (``full`` for the base).
    """
    fig, ax = plt.subplots(figsize=(6.5, 5))
    variants = [v for v in dict.fromkeys(points.variant) if v != "full"]
    vcol = colors_for(variants)
    for m, g in points.groupby("model", sort=False):
        base = g[g.variant == "full"].iloc[0]
        for r in g[g.variant != "full"].itertuples():
            ax.plot([base.x, r.x], [base.y, r.y], color=vcol[r.variant], lw=1.2, zorder=1)
        ax.scatter(base.x, base.y, s=70, color="black", marker="o", zorder=3)
        ax.annotate(str(m), (base.x, base.y), xytext=(5, 5), textcoords="offset points")
    for v in variants:
        g = points[points.variant == v]
        ax.scatter(g.x, g.y, s=28, color=vcol[v], label=v, zorder=2, edgecolor="white", lw=0.5)
    ax.scatter([], [], s=70, color="black", label="full precision")
    ax.legend(fontsize=8, loc="best")
    finish(
        ax,
        "PC 1 [√(bits/byte)]",
        "PC 2 [√(bits/byte)]",
        "Model map: each model and its quantized copies",
    )
    return fig


def plot_floor(floor: pd.DataFrame, reference: pd.DataFrame | None = None) -> plt.Figure:
    """Floor KLs (same model, different numerics) beside quantization KLs, log x axis.

    ``floor``: rows with ``comparison``, ``model``, ``kl``, ``lo``, ``hi``. ``reference``:
    other rows to show on the same axis (e.g. quantization, with ``comparison`` set to the
    variant).
    """
    rows = [floor.assign(kind="floor")]
    if reference is not None and len(reference):
        label = reference["comparison"] if "comparison" in reference else reference["setting"]
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
    ax.text(
        0.99,
        0.01,
        f"values ≤ {small:.0e} (incl. exact 0) drawn at the left edge",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color="0.4",
    )
    ax.legend(fontsize=8, title="model", loc="lower right", bbox_to_anchor=(1, 0.06))
    finish(ax, KL_LABEL + " (log)", None, "Numerical floor vs quantization")
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
    for r in points.itertuples():
        ax.annotate(str(r.label), (r.x, r.y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    for gi, gen in enumerate(gens):
        name = "pretrained (generation 0)" if gen == 0 else f"generation {gen}"
        ax.scatter([], [], marker=_MARKERS[gi % len(_MARKERS)], color="0.5", label=name)
    for t in types:
        ax.scatter([], [], marker="s", color=colors[t], label=f"type {t}")
    ax.legend(fontsize=8, loc="best")
    finish(ax, "PC 1 [√(bits/byte)]", "PC 2 [√(bits/byte)]", "Fine-tuning lineages")
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
    ax.legend(fontsize=8, title="model")
    finish(
        ax,
        "relative depth of layer k+1 (k+1)/L",
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
        ax.annotate(
            f"{m} (output)", (last.x, last.y), xytext=(4, 3), textcoords="offset points", fontsize=7
        )
    ax.legend(fontsize=8, title="model (light = embeddings → dark = output)")
    finish(ax, "PC 1 [√(bits/byte)]", "PC 2 [√(bits/byte)]", "Layer trajectories (logit lens)")
    return fig


def plot_scale(
    frame: pd.DataFrame,
    order: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    paper: Mapping[str, float | None] | None = None,
) -> plt.Figure:
    """One violin per setting on the paper's symlog axis (Fig. 3), median marked.

    ``frame``: ``setting``, ``kl``. ``groups``: section name -> settings (dashed separators
    and a colour per section). ``paper``: setting -> published value (drawn as a red ``x``).
    """
    order = [o for o in order if o in set(frame.setting)]
    group_of = {}
    for gname, settings in (groups or {}).items():
        for s in settings:
            group_of[s] = gname
    gcolors = colors_for(list(dict.fromkeys(group_of.get(s, s) for s in order)))
    palette = {s: gcolors[group_of.get(s, s)] for s in order}
    fig, ax = plt.subplots(figsize=(max(7, 0.85 * len(order) + 2), 4.8))
    data = frame[frame.setting.isin(order)].copy()
    counts = data.setting.value_counts()
    violins = data[data.setting.map(counts) >= 3]
    if len(violins):
        sns.violinplot(
            data=violins,
            x="setting",
            y="kl",
            order=order,
            hue="setting",
            palette=palette,
            legend=False,
            cut=0,
            inner=None,
            density_norm="width",
            linewidth=0.8,
            ax=ax,
        )
    sns.stripplot(
        data=data,
        x="setting",
        y="kl",
        order=order,
        color="0.2",
        size=2.5,
        jitter=0.12,
        ax=ax,
        alpha=0.7,
    )
    med = data.groupby("setting").kl.median()
    for i, s in enumerate(order):
        ax.hlines(med[s], i - 0.3, i + 0.3, color="black", lw=2, zorder=4)
        if paper and paper.get(s) is not None:
            ax.scatter([i + 0.32], [paper[s]], marker="x", color="#d55e00", s=45, zorder=5)
    if paper:
        ax.scatter([], [], marker="x", color="#d55e00", label="paper (published)")
        ax.hlines([], 0, 0, color="black", lw=2, label="our median")
        ax.legend(fontsize=8, loc="upper left")
    prev = None
    for i, s in enumerate(order):
        g = group_of.get(s, s)
        if prev is not None and g != prev:
            ax.axvline(i - 0.5, color="0.5", ls="--", lw=0.8)
        prev = g
    symlog_kl_axis(ax)
    shown = [float(data.kl.max())]
    if paper:
        shown += [float(paper[s]) for s in order if paper.get(s) is not None]
    top = max(max(shown) * 1.5, 0.2)
    ax.set_ylim(0, top)
    ax.tick_params(axis="x", rotation=30)
    finish(ax, None, KL_LABEL + " (symlog, linear below 0.1)", "The KL scale across settings")
    return fig
