"""The book's numerical floor: the same model, extracted twice with another numerical choice.

Not a setting of the paper (which compares quantized vectors with full-precision vectors from
another extraction run, so part of a small KL can be pipeline noise, paper §6): the floor
measures that noise on the same scale. Pairs: fp32 vs bf16, fp32 vs fp16, batch 1 vs 64
(padding), the run's batch size vs 1 (:data:`FLOOR_PAIRS`); separately, the two BOS policies
(a change of convention, not noise: :func:`bos_policy`).
"""

from __future__ import annotations

import functools

import pandas as pd

from kltools.config import Settings
from kltools.pairs import PairSet, build_pairs
from kltools.settings.stores import floor_store, resamples, text_positions

__all__ = ["FLOOR_PAIRS", "bos_policy", "floor", "floor_and_bos", "report", "settings_table"]

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


def settings_table(s: Settings) -> pd.DataFrame:
    """The extraction settings compared: dtype and batch size of each."""
    from kltools.settings.stores import FLOOR_SETTINGS

    return pd.DataFrame(
        [
            {
                "setting": name,
                "dtype": FLOOR_SETTINGS[name][0],
                "batch size": FLOOR_SETTINGS[name][1] or f"run's ({s.batch_size or 'auto'})",
            }
            for name in s.floor_settings
        ]
    )


def floor_and_bos(s: Settings) -> PairSet:
    """The Floor pairs, and the BOS-policy pairs when ``s.compare_bos``."""
    from kltools.pairs import concat

    return concat([floor(s), bos_policy(s)] if s.compare_bos else [floor(s)])


def report(s: Settings, pairs: PairSet, quantized: PairSet) -> str:
    """What the floor says about the quantization KLs (Markdown; every number computed)."""
    from kltools.settings.stores import quantization_store

    f = pairs.frame
    fl = f[f.setting == "Floor"]
    top = float(fl.hi.max())
    q = quantized.frame
    above = q[q.lo > top]
    dt = fl[fl.comparison.str.startswith("dtype fp32 vs bf16")]
    exact = f[f.kl == 0]
    full = quantization_store(s).loglik.sel(variant="full")
    fp32 = floor_store(s).loglik.sel(setting="fp32")
    shared = [m for m in fp32.model.values if m in full.model.values]
    same = (
        float(abs(full.sel(model=shared) - fp32.sel(model=shared)).max())
        if shared
        else float("nan")
    )
    lines = [
        f"- Largest numerical floor (upper end of its 95 % interval): **{top:.3g} bits/byte** "
        f"({fl.loc[fl.hi.idxmax(), 'comparison']}, model {fl.loc[fl.hi.idxmax(), 'model']}).",
        f"- fp32 vs bf16: median {dt.kl.median():.3g} bits/byte over {len(dt)} models.",
        f"- **{len(above)} of {len(q)}** quantization KLs stand above the floor (their interval lies "
        f"entirely above {top:.3g}): "
        + (", ".join(f"{r.model}/{r.variant}" for r in above.itertuples()) or "none")
        + ".",
        f"- Largest difference between the fp32 vectors of the quantization and floor stores: "
        f"{same:.3g} nats/text (0 = the same pipeline).",
    ]
    if len(exact):
        lines.append(
            f"- **{len(exact)} comparisons give exactly 0** (bit-identical extractions on "
            "this device): "
            + ", ".join(f"{r.model}: {r.comparison}" for r in exact.itertuples())
            + "."
        )
    bos = f[f.setting == "BOS policy"]
    if len(bos):
        lines.append(
            f"- BOS policy {s.bos} vs the other (raw vectors, different scored tokens): median "
            f"{bos.kl.median():.3g} bits/byte — a change of convention, not noise: never mix "
            "policies in one analysis."
        )
    return "\n".join(lines)
