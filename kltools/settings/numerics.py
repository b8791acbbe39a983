"""The book's numerical floor, and the dtype changes placed on the scale beside 8-bit.

Not settings of the paper (which compares quantized vectors with full-precision vectors from
another extraction run, so part of a small KL can be pipeline noise, paper §6). Two kinds of
re-extraction of the same model, on the same texts, are told apart:

- **the Floor** (setting ``"Floor"``, :func:`floor`): the pipeline's own repeatability — the
  same model, dtype and device, extracted again with only the batch size (hence padding and
  the kernels' reduction order) changed (:data:`FLOOR_PAIRS`: the run's batch size vs 1, and
  1 vs 64). Each of those is a separate run of the pipeline, so they also carry any
  run-to-run variation; a repeat under identical settings is not extracted (it would cost a
  third extraction of every floor model for a number these runs already bound). "The floor"
  of a page is one number, :func:`kltools.claims.floor_value`: the largest Floor KL.
- **dtype changes** (settings ``"bf16"`` and ``"fp16"``, :func:`bf16`, :func:`fp16`): fp32 vs
  bfloat16 and fp32 vs float16 weights. A precision reduction is a perturbation of the model,
  like 8-bit quantization, not noise of the measurement: it sits on the scale beside 8-bit.

Separately, the two BOS policies (a change of convention, neither noise nor a perturbation:
:func:`bos_policy`).
"""

from __future__ import annotations

import functools

import pandas as pd

from kltools.config import Settings
from kltools.pairs import PairSet, build_pairs
from kltools.settings.stores import floor_store, resamples, text_positions

__all__ = [
    "DTYPE_PAIRS",
    "FLOOR_PAIRS",
    "bf16",
    "bos_policy",
    "floor",
    "floor_and_bos",
    "fp16",
    "report",
    "settings_table",
]

#: the pipeline's repeatability: (reference extraction, other extraction, readable label)
FLOOR_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("fp32", "batch1", "batch default vs 1"),
    ("batch1", "batch64", "batch 1 vs 64 (padding)"),
)

#: setting -> the dtype change it measures (reference extraction, other, readable label)
DTYPE_PAIRS: dict[str, tuple[str, str, str]] = {
    "bf16": ("fp32", "bf16", "dtype fp32 vs bf16"),
    "fp16": ("fp32", "fp16", "dtype fp32 vs fp16"),
}


def _specs(s: Settings) -> dict[str, str]:
    from kltools.sources import floor_models

    return floor_models(s)


def _nothing(s: Settings) -> PairSet:
    """No pair: the source runs no model, so nothing can be re-extracted."""
    import numpy as np

    none = build_pairs([], np.zeros(0), np.zeros(0, dtype=int), resamples(s))
    return PairSet(none.frame.assign(model=[], comparison=[]), none.reps)


def _same_model(s: Settings, setting: str, compared: tuple[tuple[str, str, str], ...]) -> PairSet:
    """Each floor model against itself under the ``compared`` extraction pairs (none when the
    source runs no model: published vectors cannot be re-extracted)."""
    from kltools.sources import can

    if not can(s, "models") or not s.floor_settings:
        return _nothing(s)
    ll = floor_store(s).loglik
    have = set(ll.setting.values.tolist())
    specs = _specs(s)
    rows = [
        (
            ll.sel(model=model, setting=s1).values,
            ll.sel(model=model, setting=s2).values,
            {
                "setting": setting,
                "a": specs[model],
                "b": specs[model],
                "model": model,
                "comparison": label,
                "a_extraction": s1,
                "b_extraction": s2,
            },
        )
        for model in specs
        for s1, s2, label in compared
        if s1 in have and s2 in have
    ]
    return build_pairs(rows, ll["text_bytes"].values, text_positions(s, ll), resamples(s))


@functools.lru_cache(maxsize=4)
def floor(s: Settings) -> PairSet:
    """The Floor: each floor model against itself under the :data:`FLOOR_PAIRS` (batch size,
    padding; no dtype change)."""
    return _same_model(s, "Floor", FLOOR_PAIRS)


@functools.lru_cache(maxsize=4)
def bf16(s: Settings) -> PairSet:
    """Setting ``bf16``: each floor model in fp32 against its bfloat16 extraction."""
    return _same_model(s, "bf16", (DTYPE_PAIRS["bf16"],))


@functools.lru_cache(maxsize=4)
def fp16(s: Settings) -> PairSet:
    """Setting ``fp16``: each floor model in fp32 against its float16 extraction."""
    return _same_model(s, "fp16", (DTYPE_PAIRS["fp16"],))


def bos_policy(s: Settings) -> PairSet:
    """The two BOS policies (``paper`` vs ``prefix``) of each floor model, raw vectors (fp32).

    The policies score different tokens (``prefix`` also scores each text's first token), so
    this compares a convention, not noise (setting ``BOS policy``).
    """
    from kltools.sources import can

    if not can(s, "models") or "fp32" not in s.floor_settings:
        return _nothing(s)
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
    """The Floor, bf16 and fp16 pairs, and the BOS-policy pairs when ``s.compare_bos``."""
    from kltools.pairs import concat

    parts = [floor(s), bf16(s), fp16(s)]
    return concat([*parts, bos_policy(s)] if s.compare_bos else parts)


def report(s: Settings, pairs: PairSet, quantized: PairSet) -> str:
    """What the floor says about the quantization KLs (Markdown; every number computed).

    ``pairs``: :func:`floor_and_bos`; ``quantized``: the quantization chapter's pairs
    (labels ``model``, ``variant``). "The floor" is one number throughout:
    :func:`kltools.claims.floor_value`, the largest KL of the Floor setting.
    """
    from kltools.claims import floor_value
    from kltools.settings.stores import quantization_store
    from kltools.sources import can

    if not can(s, "models"):
        return (
            "- **Not measured here**: the floor is the same model re-extracted under other "
            "numerics, and this profile's source has published vectors only (no model is run). "
            "The book's check *floor < 8-bit < 4-bit* is therefore not tested."
        )
    f = pairs.frame
    fl = f[f.setting == "Floor"]
    top = floor_value(pairs)
    q = quantized.frame
    lines = []
    if top["kl"] is None:
        lines.append("- No Floor pair on this run (no batch-size re-extraction): no floor.")
        above = q.iloc[0:0]
    else:
        above = q[q.lo > top["hi"]]
        lines += [
            f"- **The floor: {top['kl']:.3g} bits/byte** (95 % interval [{top['lo']:.3g}, "
            f"{top['hi']:.3g}]): the largest KL of the Floor setting ({top['comparison']}, model "
            f"{top['model']}; {len(fl)} Floor comparisons: the same model, dtype and device, "
            "re-extracted with another batch size and padding).",
            f"- **{len(above)} of {len(q)}** quantization KLs stand above the floor (their "
            f"interval lies entirely above {top['hi']:.3g}): "
            + (", ".join(f"{r.model}/{r.variant}" for r in above.itertuples()) or "none")
            + ".",
        ]
    for name, (_, _, label) in DTYPE_PAIRS.items():
        d = f[f.setting == name]
        if len(d):
            lines.append(
                f"- {label} (setting {name}, a perturbation placed beside 8-bit, not part of the "
                f"floor): median {d.kl.median():.3g} bits/byte over {len(d)} "
                f"model{'s' if len(d) > 1 else ''}."
            )
    full = quantization_store(s).loglik.sel(variant="full")
    fp32 = floor_store(s).loglik.sel(setting="fp32")
    shared = [m for m in fp32.model.values if m in full.model.values]
    same = (
        float(abs(full.sel(model=shared) - fp32.sel(model=shared)).max())
        if shared
        else float("nan")
    )
    lines.append(
        f"- Largest difference between the fp32 vectors of the quantization and floor stores: "
        f"{same:.3g} nats/text (0 = the same pipeline)."
    )
    exact = fl[fl.kl == 0]
    if len(exact):
        lines.append(
            f"- **{len(exact)} of {len(fl)} Floor comparisons give exactly 0** (bit-identical "
            "extractions on this device): "
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
