"""The fine-tuning settings: FT, Intra-type and Random (paper §3.3).

The pairs are drawn by :func:`kltools.metadata.draw_pairs`, as the authors' code draws them:

- **FT**: every parent → child edge of the lineages (single parent only).
- **Intra-type**: for each type (in order of first appearance among the edges), a
  ``random.Random`` generator re-seeded with the same seed (``s.pair_seed``, the paper's 0)
  draws as many pairs as the type has FT pairs, each pair ``sample(candidates, 2)`` from the
  children and parents of the type's edges — two distinct models, but the same pair may be
  drawn again (with replacement across draws).
- **Random**: as many pairs as FT pairs in all, each ``sample`` from every type's candidates,
  drawn by the same generator continuing after the last type.

All pairs on all analysis texts; KL on the shared resamples.
"""

from __future__ import annotations

import functools
from typing import Any

import pandas as pd

from kltools.config import Settings
from kltools.metadata import draw_pairs
from kltools.pairs import PairSet, build_pairs
from kltools.settings.stores import finetuning_store, resamples, text_positions

__all__ = [
    "draw_pairs",
    "finetuning",
    "ft",
    "intra_type",
    "lineage_map",
    "random_pairs",
    "report",
    "table2",
]


@functools.lru_cache(maxsize=4)
def finetuning(s: Settings) -> PairSet:
    """FT, Intra-type and Random pairs with their KLs (labels ``type``)."""
    from kltools.sources import lineages, model_order

    table, _ = lineages(s)
    ll = finetuning_store(s).loglik
    spec = dict(zip(table.model, table.spec))
    rows: list[tuple[Any, Any, dict[str, Any]]] = [
        (
            ll.sel(model=a).values,
            ll.sel(model=b).values,
            {
                "setting": setting,
                "type": typ,
                "a": spec[a],
                "b": spec[b],
                "model_a": a,
                "model_b": b,
            },
        )
        for setting, typ, a, b in draw_pairs(table, s.pair_seed, model_order(s))
    ]
    return build_pairs(rows, ll["text_bytes"].values, text_positions(s, ll), resamples(s))


def ft(s: Settings) -> PairSet:
    """The paper's FT distribution: each child against its parent."""
    return finetuning(s).setting("FT")


def intra_type(s: Settings) -> PairSet:
    """The paper's Intra-type distribution: random pairs within each type."""
    return finetuning(s).setting("Intra-type")


def random_pairs(s: Settings) -> PairSet:
    """The paper's Random distribution: random pairs among all lineage models."""
    return finetuning(s).setting("Random")


def table2(s: Settings) -> pd.DataFrame:
    """Median / mean / sd per type and pair set, beside v1 Table 2's rows where they exist.

    Our per-type rows: FT and Intra-type for each type; the ``all`` rows: every FT pair and the
    Random pairs. The paper's per-type "random" rows are set beside our Intra-type rows (most
    likely the same distribution, our reading of the paper: column ``match``).
    """
    from kltools import paper

    pairs = finetuning(s)
    per_type = pairs.setting("FT", "Intra-type")
    every = pairs.setting("FT", "Random").frame.assign(type="all")
    rows = []
    for (typ, setting), g in pd.concat([per_type.frame, every]).groupby(
        ["type", "setting"], sort=False
    ):
        paper_pair = "fine-tuning" if setting == "FT" else "random"
        num = {k[2]: v for k, v in paper.TABLE2.items() if k[:2] == (typ, paper_pair)}
        rows.append(
            {
                "type": typ,
                "pairs": setting,
                "n": len(g),
                "median": g.kl.median(),
                "mean": g.kl.mean(),
                "sd": g.kl.std(ddof=1) if len(g) > 1 else float("nan"),
                "paper median": num["median"].value if num else float("nan"),
                "paper mean": num["mean"].value if num else float("nan"),
                "paper sd": num["sd"].value if num else float("nan"),
                "match": (
                    f"v1 Table 2 {typ} {paper_pair}"
                    + (" (read as Intra-type)" if setting == "Intra-type" else "")
                )
                if num
                else "no row in the paper",
            }
        )
    return pd.DataFrame(rows)


def lineage_map(s: Settings, method: str = "pca") -> pd.DataFrame:
    """Fig. 2b: every lineage model on a map (PCA or t-SNE) with parent, type, generation, label."""
    from kltools.maps import model_map
    from kltools.sources import lineages

    table, _ = lineages(s)
    proj = model_map(
        finetuning_store(s).loglik, s, dim="model", method=method, perplexity=s.ft_tsne_perplexity
    )
    pts = proj.merge(
        table[["model", "parent", "type", "generation", "method", "domain"]], on="model"
    )
    pts.attrs.update(proj.attrs)  # the projection's method, perplexity or explained variance
    pts["label"] = [
        m.split("/")[-1] if g == 0 else f"{d}/{me}" if d else m.split("/")[-1]
        for m, g, d, me in zip(pts.model, pts.generation, pts.domain, pts.method)
    ]
    return pts


def report(s: Settings) -> str:
    """FT medians by fine-tuning method and the largest FT pair (Markdown)."""
    from kltools.sources import lineages

    table, source = lineages(s)
    ft_pairs = ft(s).frame
    method = ft_pairs.model_b.map(dict(zip(table.model, table.method)))
    by_method = ft_pairs.groupby(method).kl.median()
    top = ft_pairs.loc[ft_pairs.kl.idxmax()]
    return (
        f"Lineages from **{source}**: {len(table)} models, {int(table.parent.notna().sum())} "
        f"parent→child edges, types {', '.join(map(str, table.type.unique()))}.\n\n"
        "- FT median by method: "
        + ", ".join(f"{k} {v:.3g}" for k, v in by_method.items())
        + " bits/byte.\n"
        f"- Largest FT pair: `{top.b}` at {top.kl:.3g} bits/byte."
    )
