"""Figures of the pretraining chapters (paper Figs. 1, 4, 5 and the method's checks).

Each function takes the tidy outputs of :mod:`kltools.settings` and :mod:`kltools.maps` and returns a
matplotlib ``Figure`` with labelled axes (units included), a legend and the book's
colour-blind-safe palette (:mod:`kltools.plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.collections import LineCollection

from kltools.plots import KL_LABEL, MIN_FONT_PT, colors_for, finish, map_axis_labels, ramp

if TYPE_CHECKING:
    pass

__all__ = [
    "plot_centring",
    "plot_consecutive",
    "plot_diffusion",
    "plot_heldout_loss",
    "plot_early_later",
    "plot_estimate_vs_mc",
    "plot_exponents",
    "plot_kl_vs_n",
    "plot_loglik_pair",
    "plot_preprocess_effect",
    "plot_seed_size",
    "plot_trajectories",
]


# ----------------------------------------------------------------------------- chapter 1


def plot_loglik_pair(a: xr.DataArray, b: xr.DataArray, labels: Sequence[str]) -> plt.Figure:
    """Two log-likelihood vectors: ℓ_b against ℓ_a, and the histogram of ℓ_a − ℓ_b."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    ax1.scatter(a.values, b.values, s=10, alpha=0.6)
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    ax1.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label=r"$\ell_a = \ell_b$")
    ax1.legend()
    finish(
        ax1,
        rf"$\ell_a(x)$ [nats], a = {labels[0]}",
        rf"$\ell_b(x)$ [nats], b = {labels[1]}",
        "one point per text",
    )
    d = (a.values - b.values).astype(np.float64)
    ax2.hist(d, bins=30, color=colors_for(["d"])["d"])
    ax2.axvline(d.mean(), color="k", lw=1, label=f"mean {d.mean():.1f}")
    ax2.legend()
    finish(
        ax2,
        r"$\ell_a(x) - \ell_b(x)$ [nats]",
        "texts",
        "its spread is the KL; its mean is centred away",
    )
    return fig


def plot_centring(L: np.ndarray, Q: np.ndarray, row_labels: Sequence[str]) -> plt.Figure:
    """Heat maps of a K × N log-likelihood matrix before and after double-centring."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.35 * len(row_labels) + 2))
    for ax, M, title in ((axes[0], L, "L (nats)"), (axes[1], Q, "Q = double-centred L (nats)")):
        im = ax.imshow(M, aspect="auto", cmap="viridis" if M is L else "vlag")
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=MIN_FONT_PT)
        finish(ax, "text index", "model", title)
        fig.colorbar(im, ax=ax, label="log-likelihood [nats]")
    return fig


def plot_estimate_vs_mc(df: pd.DataFrame) -> plt.Figure:
    """Both estimates against symmetrised Monte-Carlo KL, and their ratios, with ±2 s.e. bars.

    Open markers: the estimator on the fixed text set (what every chapter uses); filled
    markers: the estimator on the models' own samples. Both panels have the Monte-Carlo KL in
    bits/byte on the x axis (one unit system: KLs in bits/byte, ratios without unit).
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.8), layout="constrained")
    if not len(df):  # the source runs no model: say so where the figure would be
        for ax in (ax1, ax2):
            ax.set_axis_off()
        fig.text(0.5, 0.5, "Not run: " + df.attrs.get("not_run", "no pair was checked"),
                 ha="center", va="center", wrap=True, fontsize=11)  # fmt: skip
        return fig
    colors = colors_for(["near", "mid", "far"])
    styles = (
        ("estimate_sampled", "estimate_sampled_se", "on model samples", "o", "full"),
        ("estimate", "estimate_se", "on the text set", "s", "none"),
    )
    for kind, part in df.groupby("kind"):
        for col, se, label, marker, fill in styles:
            ax1.errorbar(
                part.mc_sym,
                part[col],
                xerr=2 * part.mc_sym_se,
                yerr=2 * part[se],
                fmt=marker,
                fillstyle=fill,
                color=colors[kind],
                label=f"{kind} pairs, {label}",
                capsize=3,
            )
        for _, r in part.iterrows():
            ax1.annotate(
                r.role,
                (r.mc_sym, r.estimate_sampled),
                fontsize=8,
                xytext=(4, -10),
                textcoords="offset points",
            )
    vals = np.concatenate([df.mc_sym.values, df.estimate.values, df.estimate_sampled.values])
    vals = vals[vals > 0]
    lo, hi = vals.min() / 2, vals.max() * 2
    ax1.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="estimate = MC")
    ax1.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
    finish(
        ax1,
        r"Monte-Carlo KL, $(\mathrm{KL}(p\|q) + \mathrm{KL}(q\|p))/2$ [bits/byte]",
        r"estimate $\mathrm{Var}(\ell_p - \ell_q)/2$ [bits/byte]",
        "estimate vs Monte Carlo (±2 s.e.)",
    )
    for kind, part in df.groupby("kind"):
        for col, se, label, marker, fill in (
            ("ratio", "ratio_se", "on model samples", "o", "full"),
            ("ratio_corpus", "ratio_corpus_se", "on the text set", "s", "none"),
        ):
            ax2.errorbar(
                part.mc_sym,
                part[col],
                xerr=2 * part.mc_sym_se,
                yerr=2 * part[se],
                fmt=marker,
                fillstyle=fill,
                capsize=3,
                color=colors[kind],
                label=f"{kind}, {label}",
            )
    ax2.axhline(1.0, color="grey", ls="--", lw=1, label="ratio 1")
    ax2.set(xscale="log", yscale="log")
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    finish(
        ax2,
        r"Monte-Carlo KL, $(\mathrm{KL}(p\|q) + \mathrm{KL}(q\|p))/2$ [bits/byte]",
        "estimate / Monte-Carlo KL",
        "where Var/2 ≈ KL holds (±2 s.e.)",
    )
    return fig


def plot_kl_vs_n(df: pd.DataFrame, label: str) -> plt.Figure:
    """The estimate and its bootstrap error against the number of texts N.

    The error panel's title states the fitted exponent
    (:func:`kltools.validation.se_exponent`); the dotted 1/√N line is only a reference.
    """
    from kltools.validation import se_exponent

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    ax1.plot(df.n, df.kl, "o-", label="estimate")
    ax1.fill_between(df.n, df.lo, df.hi, alpha=0.25, label="95% bootstrap interval")
    ax1.set_xscale("log")
    ax1.legend()
    finish(ax1, "number of texts N", KL_LABEL, label)
    ax2.loglog(df.n, df.se, "o-", label="bootstrap s.e.")
    ax2.loglog(df.n, df.se_formula, "s--", label=r"$\sqrt{(\mu_4 - \sigma^4)/N}\,/\,2$")
    guide = df.se.iloc[-1] * np.sqrt(df.n.iloc[-1] / df.n)
    ax2.loglog(df.n, guide, color="grey", lw=1, ls=":", label=r"$\propto 1/\sqrt{N}$")
    ax2.legend()
    finish(
        ax2,
        "number of texts N",
        "standard error [bits/byte]",
        rf"fitted: error $\propto N^{{{se_exponent(df):.2f}}}$",
    )
    return fig


# ----------------------------------------------------------------------------- chapter 2


def plot_trajectories(
    xy: pd.DataFrame, consecutive: pd.DataFrame, *, title: str, max_width: float = 6.0
) -> plt.Figure:
    """Checkpoints on a 2-D map: one colour per run, light→dark over training; segment widths ∝
    consecutive KL."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    models = list(dict.fromkeys(xy.model))
    colors = colors_for(models)
    # widths saturate at the 95th percentile of the consecutive KLs (as the paper's Fig. 1)
    kmax = float(consecutive.kl.quantile(0.95)) if len(consecutive) else 1.0
    kmax = kmax if kmax > 0 else 1.0
    for m in models:
        part = xy[xy.model == m].sort_values("step")
        shades = ramp(colors[m], len(part))
        pts = part[["x", "y"]].values
        ck = consecutive[consecutive.model == m].set_index("step").kl
        widths = [
            0.5 + max_width * min(float(ck.get(s, 0.0)), kmax) / kmax for s in part.step.values[:-1]
        ]
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        ax.add_collection(LineCollection(segs, linewidths=widths, colors=shades[1:], alpha=0.8))
        ax.scatter(pts[:, 0], pts[:, 1], c=shades, s=18, edgecolor="none", zorder=3)
        ax.scatter(*pts[-1], color=colors[m], s=60, marker="*", zorder=4, label=f"{m} (★ final)")
    ax.autoscale()
    ax.legend(fontsize=MIN_FONT_PT, loc="best")
    finish(ax, *map_axis_labels(xy), title)
    return fig


# ----------------------------------------------------------------------------- chapter 3


def plot_consecutive(df: pd.DataFrame, *, after_step: float, label: str = "size") -> plt.Figure:
    """Consecutive-checkpoint KL against step (paper Fig. 4), each KL drawn at the earlier
    checkpoint of its pair: during warm-up against log10(1 + step) on a linear KL axis (so the
    0 → 1 pair and a KL of 0 stay on the page), after it against the step (linear) on a log
    KL axis with 95% intervals."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.8))
    groups = list(dict.fromkeys(df[label]))
    colors = colors_for(groups)
    for g in groups:
        part = df[df[label] == g].sort_values("step")
        early = part[part.step < after_step]
        late = part[part.step >= after_step]
        ax1.plot(np.log10(1.0 + early.step), early.kl, "o-", ms=4, color=colors[g], label=str(g))
        ax2.plot(late.step, late.kl, "o-", ms=3, color=colors[g], label=str(g))
        if {"lo", "hi"} <= set(part.columns):
            ax2.fill_between(late.step, late.lo, late.hi, color=colors[g], alpha=0.2)
    ax1.set_ylim(bottom=0)
    ax2.set_yscale("log")
    fig.legend(*ax1.get_legend_handles_labels(), title=label, loc="outside right center")
    finish(
        ax1,
        r"$\log_{10}(1 + t)$, t = step of the pair t → t′",
        KL_LABEL,
        f"warm-up (t < {after_step:g})",
    )
    finish(ax2, "step t of the pair t → t′", KL_LABEL + " (log)", f"after (t ≥ {after_step:g})")
    return fig


def plot_preprocess_effect(
    raw: pd.DataFrame, clean: pd.DataFrame, scores: np.ndarray, n_drop: int
) -> plt.Figure:
    """Effect of the paper's preprocessing: text scores, and consecutive KL before vs after."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    s = np.sort(np.asarray(scores))[::-1]
    ax1.plot(np.arange(1, s.size + 1), s, ".", ms=3)
    if n_drop:
        ax1.axvline(n_drop + 0.5, color="k", ls="--", lw=1, label=f"{n_drop} texts dropped")
        ax1.legend()
    ax1.set_yscale("log")
    finish(
        ax1, "text rank", r"largest $|\ell_{t+1} - \ell_t|$ [nats]", "text scores (post warm-up)"
    )
    m = raw.merge(clean, on=["model", "step"], suffixes=("_raw", "_clean"))
    ax2.scatter(m.kl_raw, m.kl_clean, s=12, alpha=0.7)
    lo, hi = (
        float(min(m.kl_raw.min(), m.kl_clean.min())),
        float(max(m.kl_raw.max(), m.kl_clean.max())),
    )
    ax2.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="unchanged")
    ax2.set(xscale="log", yscale="log")
    ax2.legend()
    finish(
        ax2,
        "consecutive KL, raw [bits/byte]",
        "consecutive KL, preprocessed [bits/byte]",
        "before vs after",
    )
    return fig


def plot_early_later(sets: pd.DataFrame) -> plt.Figure:
    """The Early and Later sets of consecutive KLs (pooled over sizes), log y."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5.5, 4))
    sns.boxplot(
        data=sets,
        x="setting",
        y="kl",
        order=["Early", "Later"],
        ax=ax,
        color="0.85",
        showfliers=False,
    )
    sns.stripplot(
        data=sets,
        x="setting",
        y="kl",
        hue="model",
        palette=colors_for(list(dict.fromkeys(sets.model))),
        order=["Early", "Later"],
        ax=ax,
        dodge=False,
        size=4,
    )
    ax.set_yscale("log")
    finish(ax, "set of consecutive pairs", KL_LABEL, "Early vs Later")
    return fig


# ----------------------------------------------------------------------------- chapter 4


def plot_seed_size(table: pd.DataFrame) -> plt.Figure:
    """Table 1 as a figure: each row's KL with its 95% bootstrap interval, log x.

    ``table``: :func:`kltools.settings.pretraining.table1` (a mean over pairs drawn as a diamond).
    """
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(table) + 1.8), layout="constrained")
    kinds = {"consecutive": "consecutive", "seeds": "seeds", "vs": "sizes"}
    group = [kinds[k.split(" ")[0]] for k in table.key]
    colors = colors_for(list(kinds.values()))
    y = np.arange(len(table))[::-1]
    for yi, g, (_, r) in zip(y, group, table.iterrows()):
        ax.errorbar(
            r.kl,
            yi,
            xerr=[[r.kl - r.lo], [r.hi - r.kl]],
            fmt="D" if r.n_pairs > 1 else "o",
            color=colors[g],
            capsize=3,
        )
    ax.set_yticks(
        y, [f"{q}\n(paper: {k})" for k, q in zip(table.key, table.quantity)], fontsize=MIN_FONT_PT
    )
    ax.set_xscale("log")
    for g in kinds.values():
        ax.plot([], [], "o", color=colors[g], label=g)
    fig.legend(loc="outside lower center", ncol=3, fontsize=MIN_FONT_PT)
    finish(ax, KL_LABEL + " (95% bootstrap interval)", None, "late checkpoints < seeds < sizes?")
    return fig


# ----------------------------------------------------------------------------- chapter 5


def _fitted_range(c: xr.Dataset) -> str:
    """``"first to last"`` start step with a fitted exponent (finite c) in any run."""
    steps = c["step"].values[np.isfinite(c.c).any("model").values]
    return f"{int(steps.min())} to {int(steps.max())}" if steps.size else "none fitted"


def plot_exponents(c_l: xr.Dataset, c_w: xr.Dataset | None, labels: dict[str, str]) -> plt.Figure:
    """Local exponents c against start step, per run, in both spaces; c = 1 marked."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    models = [str(m) for m in c_l["model"].values]
    colors = colors_for(models)
    for m in models:
        ax.plot(
            c_l["step"], c_l.c.sel(model=m), "o-", ms=3, color=colors[m], label=labels.get(m, m)
        )
        if c_w is not None and m in c_w["model"].values:
            ax.plot(c_w["step"], c_w.c.sel(model=m), "s--", ms=3, color=colors[m], alpha=0.7)
        for c in (c_l, c_w):
            if c is not None and "interpolated" in c and m in c["model"].values:
                mark = c.interpolated.sel(model=m).values
                ax.plot(
                    c["step"].values[mark],
                    c.c.sel(model=m).values[mark],
                    "x",
                    ms=8,
                    color="k",
                    zorder=5,
                )
    ax.plot([], [], "k-", label=r"$c_\ell$ (log-likelihood)")
    if c_w is not None:
        ax.plot([], [], "k--", label="$c_W$ (weights)")
    ax.plot([], [], "kx", ls="", label="interpolated (missing checkpoint)")
    ax.axhline(1.0, color="grey", lw=1, ls=":", label=r"$c = 1$ (ordinary diffusion)")
    fig.legend(loc="outside right center")
    finish(
        ax,
        f"start step t ({_fitted_range(c_l)})",
        "local exponent c (fit over the window)",
        "log-likelihood (solid) vs weights (dashed)",
    )
    return fig


def plot_heldout_loss(loss: pd.DataFrame) -> plt.Figure:
    """Held-out loss (nats/token) per checkpoint and run (log x); a note when there is none."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    part = loss[loss.step > 0]
    colors = colors_for(list(dict.fromkeys(part.model)))
    for m, g in part.groupby("model", sort=False):
        ax.plot(g.step, g.heldout_loss, "o-", ms=3, color=colors[m], label=m)
    if len(part):
        ax.set_xscale("log")
        ax.legend(fontsize=MIN_FONT_PT)
    else:
        ax.text(
            0.5,
            0.5,
            "no held-out losses recorded for these runs",
            ha="center",
            transform=ax.transAxes,
        )
    finish(ax, "step (log scale)", "held-out loss [nats/token]", "held-out loss")
    return fig


def plot_diffusion(D_l: xr.DataArray, D_w: xr.DataArray | None, start: int) -> plt.Figure:
    """Fig. 5's distances from checkpoint ``start`` against Δ steps, log–log, one line per run:
    log-likelihood space (KL) and, when given, weight space; dotted: slope 1 (c = 1)."""
    models = [str(m) for m in D_l["model"].values]
    n = 2 if D_w is not None else 1
    fig, axes = plt.subplots(1, n, figsize=(4 * n + 1.2, 3.8), squeeze=False)
    colors = colors_for(models)
    panels = [(axes[0, 0], D_l, r"$D_\ell$ = KL [bits/byte]", "log-likelihood space")]
    if D_w is not None:
        panels.append(
            (axes[0, 1], D_w, r"$D_W = \sum (\Delta\theta)^2$ [weight units²]", "weight space")
        )
    for ax, D, ylab, title in panels:
        for m in models:
            if m not in D["model"].values or start not in D["step"].values:
                continue
            sel = D.sel(model=m, step=start)
            x = np.asarray(sel["delta"].values, dtype=float)
            y = np.asarray(sel.values, dtype=float)
            ok = np.isfinite(x) & np.isfinite(y) & (y > 0) & (x > 0)
            ax.loglog(x[ok], y[ok], "o-", ms=4, color=colors[m], label=m)
            if ok.any():
                ax.loglog(x[ok], y[ok][0] * x[ok] / x[ok][0], color=colors[m], ls=":", lw=1)
        finish(ax, rf"$\Delta$ steps from step {start}", ylab, title)
    axes[0, 0].plot([], [], "k:", lw=1, label=r"$c = 1$ guide")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center")
    return fig
