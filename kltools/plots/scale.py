"""Figures of part II: quantization, the numerical floor, fine-tuning, layers and the scale.

Each function takes tidy data (the pair-set frames of :mod:`kltools.settings`) and returns
a matplotlib ``Figure``. KL axes are in bits/byte. The scale figure (Fig. 3) uses a log axis
chosen for the book's values, not the paper's symlog axis (see :func:`plot_scale`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from kltools.plots import KL_LABEL, colors_for, finish, label_points, map_axis_labels

__all__ = [
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
            fontsize=8,
            color="0.3",
        )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    finish(ax, *map_axis_labels(points), "Model map: each model and its quantized copies")
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
    ax.legend(
        fontsize=8, title="model", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
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
        fontsize=8, title="model", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
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
        fontsize=8,
        title="model\n(light: embeddings,\ndark: output)",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        borderaxespad=0,
    )
    finish(ax, *map_axis_labels(points), "Layer trajectories (logit lens)")
    return fig


#: the paper's section of each group of settings (Fig. 3); the floor is the book's own
SECTIONS: dict[str, str] = {
    "pretraining": "§3.1 pretraining",
    "quantization": "§3.2 quantization",
    "fine-tuning": "§3.3 fine-tuning",
    "layers": "§3.4 layers",
    "numerics": "book: floor",
}


def plot_scale(
    frame: pd.DataFrame,
    order: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    paper: Mapping[str, float | None] | None = None,
) -> plt.Figure:
    """One violin per setting on a logarithmic KL axis (Fig. 3), median marked.

    The paper draws Fig. 3 on a symlog axis (linear below 0.1 bits/byte), which suits its
    values; ours span many more decades (the floor, 8-bit), which a linear stretch below 0.1
    flattens onto zero. So the axis here is logarithmic from just below the smallest
    positive KL to above the largest value shown. KLs that are exactly 0 (bit-identical
    extractions) cannot sit on a log axis: they are drawn as triangles on the bottom edge
    and counted in the setting's label.

    ``frame``: ``setting``, ``kl``. ``groups``: group name -> settings (dashed separators, a
    colour per group and the paper's section labels, :data:`SECTIONS`). ``paper``: setting
    -> published value (a red ``x``).
    """
    order = [o for o in order if o in set(frame.setting)]
    group_of = {s: g for g, settings in (groups or {}).items() for s in settings}
    gcolors = colors_for(list(dict.fromkeys(group_of.get(s, s) for s in order)))
    palette = {s: gcolors[group_of.get(s, s)] for s in order}
    data = frame[frame.setting.isin(order)].copy()
    positive = data[data.kl > 0]
    zeros = data[data.kl <= 0].setting.value_counts()
    shown = [float(v) for v in positive.kl]
    if paper:
        shown += [float(paper[s]) for s in order if paper.get(s)]
    low = 10 ** np.floor(np.log10(min(shown))) if shown else 1e-8
    high = 10 ** np.ceil(np.log10(max(shown) * 1.5)) if shown else 1.0
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    counts = positive.setting.value_counts()
    violins = positive[positive.setting.map(counts) >= 3].assign(logkl=lambda d: np.log10(d.kl))
    x = {s: i for i, s in enumerate(order)}
    for s, part in violins.groupby("setting"):
        body = ax.violinplot(part.logkl, positions=[x[s]], widths=0.8, showextrema=False)
        for b in body["bodies"]:
            b.set_facecolor(palette[s])
            b.set_edgecolor("0.3")
            b.set_alpha(0.6)
    # violins were drawn in log10 units: move them onto the log axis
    for coll in ax.collections:
        for path in coll.get_paths():
            path.vertices[:, 1] = 10 ** path.vertices[:, 1]
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.12, 0.12, len(positive))
    ax.scatter(positive.setting.map(x) + jitter, positive.kl, s=7, color="0.2", alpha=0.7, zorder=3)
    med = positive.groupby("setting").kl.median()
    for s in order:
        if s in med:
            ax.hlines(med[s], x[s] - 0.32, x[s] + 0.32, color="black", lw=2, zorder=4)
        if zeros.get(s):
            ax.scatter([x[s]], [low], marker="v", color="0.2", s=30, zorder=5, clip_on=False)
        if paper and paper.get(s) is not None:
            ax.scatter([x[s] + 0.34], [paper[s]], marker="x", color="#d55e00", s=40, zorder=5)
    handles = [plt.Line2D([], [], color="black", lw=2, label="our median")]
    if paper:
        handles.append(
            plt.Line2D([], [], marker="x", color="#d55e00", ls="", label="paper (published)")
        )
    if len(zeros):
        handles.append(
            plt.Line2D([], [], marker="v", color="0.2", ls="", label="exactly 0 (bottom edge)")
        )
    ax.legend(handles=handles, fontsize=9, loc="upper left", ncol=len(handles))
    ax.set_yscale("log")
    ax.set_ylim(low, high * 10)
    labels = [f"{s}\n({zeros[s]}× 0)" if zeros.get(s) else s for s in order]
    ax.set_xticks(range(len(order)), labels, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(order) - 0.4)
    spans: dict[str, list[int]] = {}
    for s in order:
        spans.setdefault(group_of.get(s, s), []).append(x[s])
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
            fontsize=8.5,
            color=gcolors[g],
            fontweight="bold",
        )
    ax.tick_params(labelsize=10)
    finish(ax, None, KL_LABEL + " (log scale)", None)
    fig.suptitle("The KL scale across settings", fontweight="bold")
    return fig
