"""The Layer setting: adjacent logit-lens layers (paper §3.4).

Hidden state ``k`` → final norm → unembedding gives a log-likelihood vector per layer; index 0
is the embedding output and the last index ``L`` the model's own output. The **Layer**
distribution is the KL of **every** adjacent pair ``k → k+1`` for ``k = 0 … L−1`` (0 → 1
included), over every layer model. Pair records carry ``layer_a``/``layer_b``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from kltools.config import Settings
from kltools.pairs import PairSet, build_pairs, concat
from kltools.settings.stores import layer_stores, resamples, text_positions

__all__ = ["by_index", "describe", "layer", "layer_map", "report", "to_output"]


def _lens_pairs(s: Settings, setting: str, pick) -> PairSet:
    """Layer pairs ``pick(layers) -> [(k0, k1), ...]`` of every model of every lens store."""
    from kltools.sources import layer_models

    specs = layer_models(s)
    parts = []
    for ds in layer_stores(s):
        ll = ds.loglik
        layers = [int(k) for k in ll.layer.values]
        rows = [
            (
                ll.sel(model=m, layer=k0).values,
                ll.sel(model=m, layer=k1).values,
                {
                    "setting": setting,
                    "a": specs[str(m)],
                    "b": specs[str(m)],
                    "model": str(m),
                    "layer_a": k0,
                    "layer_b": k1,
                    "depth": layers[-1],
                },
            )
            for m in ll.model.values
            for k0, k1 in pick(layers)
        ]
        parts.append(
            build_pairs(rows, ll["text_bytes"].values, text_positions(s, ll), resamples(s))
        )
    return concat(parts)


@functools.lru_cache(maxsize=4)
def layer(s: Settings) -> PairSet:
    """The paper's Layer distribution: every adjacent pair of hidden-state indices, from 0."""
    return _lens_pairs(s, "Layer", lambda ls: list(zip(ls[:-1], ls[1:])))


@functools.lru_cache(maxsize=4)
def to_output(s: Settings) -> PairSet:
    """KL between each lens layer and the model's own output (setting ``to output``)."""
    return _lens_pairs(s, "to output", lambda ls: [(k, ls[-1]) for k in ls[:-1]])


def by_index(s: Settings) -> pd.DataFrame:
    """Our adjacent-layer KLs beside v1 Table 3's single pairs, matched by position in depth.

    Table 3 gives 1→2, 16→17 and 31→32 of 32-layer models: the first block-to-block step, the
    middle one and the last one. Ours per model: ``1→2``, ``⌊L/2⌋→⌊L/2⌋+1`` and ``L−1→L``
    (when the model has them). Columns ``model``, ``position``, ``pair``, ``kl``, ``lo``,
    ``hi``, and the paper's rows (``paper_model``, ``paper_pair``, ``paper``).
    """
    from kltools import paper

    f = layer(s).frame
    rows = []
    for m, g in f.groupby("model", sort=False):
        depth = int(g.depth.iloc[0])
        targets = {"first": 1, "middle": depth // 2, "last": depth - 1}
        for position, k in targets.items():
            hit = g[g.layer_a == k]
            for p in (q for q in paper.TABLE3.values() if q.position == position):
                rows.append(
                    {
                        "model": m,
                        "position": position,
                        "pair": f"{k}→{k + 1}" if len(hit) else "—",
                        "kl": float(hit.kl.iloc[0]) if len(hit) else np.nan,
                        "lo": float(hit.lo.iloc[0]) if len(hit) else np.nan,
                        "hi": float(hit.hi.iloc[0]) if len(hit) else np.nan,
                        "paper_model": p.model,
                        "paper_pair": p.pair,
                        "paper": p.value,
                    }
                )
    return pd.DataFrame(rows)


def report(s: Settings) -> str:
    """The Layer distribution in a few numbers (Markdown)."""
    from kltools.pairs import summarise

    f = layer(s).frame
    med = summarise(layer(s)).iloc[0]
    first = f[f.layer_a == 0]
    last = f[f.layer_b == f.depth]
    out = to_output(s).frame.sort_values(["model", "layer_a"])
    falls = out.groupby("model").kl.apply(lambda k: bool(np.all(np.diff(k.to_numpy()) <= 0)))
    return (
        f"- {len(f)} adjacent pairs (every k → k+1 from the embedding output, k = 0) over "
        f"{f.model.nunique()} models; median {med['median']:.3g} bits/byte (95 % interval "
        f"[{med['median_lo']:.3g}, {med['median_hi']:.3g}]).\n"
        f"- First step (0 → 1, embeddings → block 1): median {first.kl.median():.3g}; last step "
        f"(L−1 → L): median {last.kl.median():.3g} bits/byte.\n"
        f"- KL to the output decreases with depth in **{int(falls.sum())} of {len(falls)}** models."
    )


def layer_map(s: Settings, method: str = "pca") -> pd.DataFrame:
    """Fig. 2c: every (model, layer) vector on one map (PCA or t-SNE)."""
    from kltools.maps import layer_points, model_map

    return model_map(layer_points(layer_stores(s)), s, dim="point", method=method)


def describe(s: Settings) -> str:
    """The layer models (Markdown)."""
    from kltools.sources import layer_models

    return "Models: " + ", ".join(f"`{spec}`" for spec in layer_models(s).values())
