"""The fine-tuning settings: FT, Intra-type and Random (paper §3.3).

- **FT**: every parent → child edge of the lineages (single parent only).
- **Intra-type**: for each type (sorted by name), a ``random.Random`` generator re-seeded with
  the same seed (``s.pair_seed``, the paper's 0) draws as many pairs as the type has FT pairs,
  each pair ``sample(candidates, 2)`` from the type's lineage models — two distinct models,
  but the same pair may be drawn again (with replacement across draws).
- **Random**: as many pairs as FT pairs in all, each ``sample(all models, 2)``, drawn by the
  same generator continuing after the last type.

All pairs on all analysis texts; KL on the shared resamples.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import pandas as pd

from kltools.config import Settings
from kltools.pairs import PairSet, build_pairs
from kltools.settings.stores import finetuning_store, resamples, text_positions

__all__ = ["draw_pairs", "finetuning", "ft", "intra_type", "random_pairs"]


def draw_pairs(lineages: pd.DataFrame, seed: int) -> list[tuple[str, str, str, str]]:
    """The paper's pair draws: ``(setting, type, a, b)`` for FT, Intra-type and Random.

    ``lineages``: columns ``model``, ``parent`` (None for a root) and ``type``, in listing
    order (the order ``sample`` draws from).
    """
    out = [
        ("FT", r.type, r.parent, r.model) for r in lineages[lineages.parent.notna()].itertuples()
    ]
    rng = random.Random(seed)
    for typ in sorted(lineages.type.unique()):
        members = lineages[lineages.type == typ]
        rng = random.Random(seed)
        for _ in range(int(members.parent.notna().sum())):
            a, b = rng.sample(members.model.tolist(), 2)
            out.append(("Intra-type", typ, a, b))
    type_of = dict(zip(lineages.model, lineages.type))
    for _ in range(int(lineages.parent.notna().sum())):
        a, b = rng.sample(lineages.model.tolist(), 2)
        out.append(("Random", type_of[a] if type_of[a] == type_of[b] else "mixed", a, b))
    return out


@functools.lru_cache(maxsize=4)
def finetuning(s: Settings) -> PairSet:
    """FT, Intra-type and Random pairs with their KLs (labels ``type``)."""
    from kltools.sources import lineages

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
        for setting, typ, a, b in draw_pairs(table, s.pair_seed)
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
