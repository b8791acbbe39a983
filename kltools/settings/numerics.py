"""The book's numerical floor: the same model, extracted twice with another numerical choice.

Not a setting of the paper (which compares quantized vectors with full-precision vectors from
another extraction run, so part of a small KL can be pipeline noise, paper §6): the floor
measures that noise on the same scale. Pairs: fp32 vs bf16, fp32 vs fp16, batch 1 vs 64
(padding), the run's batch size vs 1 (:data:`FLOOR_PAIRS`); separately, the two BOS policies
(a change of convention, not noise: :func:`bos_policy`).
"""

from __future__ import annotations

import functools

from kltools.config import Settings
from kltools.pairs import PairSet, build_pairs
from kltools.settings.stores import floor_store, resamples, text_positions

__all__ = ["FLOOR_PAIRS", "bos_policy", "floor"]

#: pairs of floor settings compared, with a readable label
FLOOR_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("fp32", "bf16", "dtype fp32 vs bf16"),
    ("fp32", "fp16", "dtype fp32 vs fp16"),
    ("batch1", "batch64", "batch 1 vs 64 (padding)"),
    ("fp32", "batch1", "batch default vs 1"),
)


def _specs(s: Settings) -> dict[str, str]:
    from kltools.sources import floor_models

    return floor_models(s)


@functools.lru_cache(maxsize=4)
def floor(s: Settings) -> PairSet:
    """The Floor: each floor model against itself under the :data:`FLOOR_PAIRS` settings."""
    ll = floor_store(s).loglik
    have = set(ll.setting.values.tolist())
    specs = _specs(s)
    rows = [
        (
            ll.sel(model=model, setting=s1).values,
            ll.sel(model=model, setting=s2).values,
            {
                "setting": "Floor",
                "a": specs[model],
                "b": specs[model],
                "model": model,
                "comparison": label,
                "a_extraction": s1,
                "b_extraction": s2,
            },
        )
        for model in specs
        for s1, s2, label in FLOOR_PAIRS
        if s1 in have and s2 in have
    ]
    return build_pairs(rows, ll["text_bytes"].values, text_positions(s, ll), resamples(s))


def bos_policy(s: Settings) -> PairSet:
    """The two BOS policies (``paper`` vs ``prefix``) of each floor model, raw vectors (fp32).

    The policies score different tokens (``prefix`` also scores each text's first token), so
    this compares a convention, not noise (setting ``BOS policy``).
    """
    other = "prefix" if s.bos == "paper" else "paper"
    a = floor_store(s).loglik.sel(setting="fp32")
    b = floor_store(s, other).loglik.sel(setting="fp32")
    specs = _specs(s)
    rows = [
        (
            a.sel(model=m).values,
            b.sel(model=m).values,
            {
                "setting": "BOS policy",
                "a": specs[m],
                "b": specs[m],
                "model": m,
                "comparison": f"BOS {s.bos} vs {other} (raw vectors)",
            },
        )
        for m in specs
    ]
    return build_pairs(rows, a["text_bytes"].values, text_positions(s, a), resamples(s))
