"""Every published number the book compares with, with its source and its kind.

Kishino et al., *Establishing a Scale for Kullback–Leibler Divergence in Language Models
Across Various Settings* (Findings of ACL 2026; arXiv 2505.15353, v1 titled *Revealing
Language Model Trajectories via Kullback-Leibler Divergence*). All values in bits per byte,
as printed; ``kind`` says what the number is — one pair (``single pair``), or a statistic
over a set of pairs (``median``, ``mean``, ``sd``) — so a comparison table can say whether it
sets a single pair beside a distribution's median.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = [
    "BETWEEN",
    "DIFFUSION",
    "LATE_FROM",
    "FOR_SETTING",
    "Number",
    "TABLE1",
    "TABLE2",
    "TABLE3",
    "TEXT_SET",
    "compare_rows",
    "comparison",
    "setting_values",
]


@dataclass(frozen=True)
class Number:
    """One published number."""

    value: float
    kind: str
    source: str
    what: str
    error: float | None = None
    model: str = ""
    pair: str = ""
    position: str = ""


def _t1(value: float, error: float, what: str, kind: str = "single pair") -> Number:
    return Number(value, kind, "v1 Table 1", f"Pythia-410M {what}", error)


#: Table 1 (v1): Pythia-410M, value and the printed error
TABLE1: dict[str, Number] = {
    "consecutive 10k→11k": _t1(0.069, 0.0011, "checkpoints 10k→11k"),
    "consecutive 50k→51k": _t1(0.053, 0.0010, "checkpoints 50k→51k"),
    "consecutive 100k→101k": _t1(0.023, 0.00042, "checkpoints 100k→101k"),
    "seeds (average)": _t1(0.11, 0.0024, "between seeds, average of 21 pairs", "mean"),
    "vs 1B": _t1(0.28, 0.010, "vs Pythia-1B"),
    "vs 1.4B": _t1(0.52, 0.018, "vs Pythia-1.4B"),
    "vs 2.8B": _t1(1.0, 0.036, "vs Pythia-2.8B"),
    "vs 6.9B": _t1(1.7, 0.060, "vs Pythia-6.9B"),
}


def _t2(typ: str, n: int, pair: str, median: float, mean: float, sd: float) -> dict:
    what = f"{typ} ({n} pairs), {pair}"
    return {
        (typ, pair, stat): Number(v, stat, "v1 Table 2", what)
        for stat, v in (("median", median), ("mean", mean), ("sd", sd))
    }


#: Table 2 (v1): (type, pair, statistic) -> number. The per-type "random" rows are most likely
#: within-type random pairs, i.e. the later Intra-type distribution (our reading).
TABLE2: dict[tuple[str, str, str], Number] = {
    **_t2("mistral", 25, "fine-tuning", 0.32, 0.37, 0.32),
    **_t2("mistral", 25, "random", 0.79, 0.74, 0.39),
    **_t2("llama-3", 20, "fine-tuning", 0.20, 0.67, 0.80),
    **_t2("llama-3", 20, "random", 0.66, 0.87, 0.66),
    **_t2("all", 66, "fine-tuning", 0.40, 1.5, 3.6),
    **_t2("all", 66, "random", 2.1, 5.0, 9.5),
}


def _t3(model: str, pair: str, position: str, value: float) -> Number:
    return Number(
        value, "single pair", "v1 Table 3", f"{model} layers {pair}", None, model, pair, position
    )


#: Table 3 (v1): adjacent layers through the logit lens, single pairs by index
TABLE3: dict[str, Number] = {
    "Llama-2-7b 1→2": _t3("Llama-2-7b", "1→2", "first", 0.61),
    "Llama-2-7b 16→17": _t3("Llama-2-7b", "16→17", "middle", 1.6),
    "Llama-2-7b 31→32": _t3("Llama-2-7b", "31→32", "last", 1.3),
    "Llama-3-8B 1→2": _t3("Llama-3-8B", "1→2", "first", 4.0),
    "Llama-3-8B 16→17": _t3("Llama-3-8B", "16→17", "middle", 22.0),
    "Llama-3-8B 31→32": _t3("Llama-3-8B", "31→32", "last", 1.7),
}

#: qualitative ranges stated in the text: (low, high) in bits/byte
BETWEEN: dict[str, tuple[float, float, str]] = {
    "late consecutive": (0.02, 0.07, "consecutive checkpoints after ~10k steps (text, Table 1)"),
}

#: where "late" starts for the range above: 10k of Pythia's 143k steps, as a fraction of the
#: reference run's training (v1 §3.1 and Table 1's first consecutive row, 10k→11k)
LATE_FROM: float = 10_000 / 143_000

#: the diffusion claims (text and Fig. 5): exponents, no numbers printed
DIFFUSION = {
    "c_l<1": "c in log-likelihood space is below 1 (subdiffusive)",
    "c_l<c_W": "c in log-likelihood space is well below c in weight space",
}

#: the paper's text set (the authors' code): number of texts and mean UTF-8 bytes
TEXT_SET = {"n_texts": 10000, "mean_bytes": 972.3188}

#: the published number set beside each Fig. 3 setting (None: the paper prints none)
FOR_SETTING: dict[str, Number | None] = {
    "Later": TABLE1["consecutive 100k→101k"],
    "Early": TABLE1["consecutive 10k→11k"],
    "Seed": TABLE1["seeds (average)"],
    "Size": TABLE1["vs 1B"],
    "8-bit": None,
    "4-bit": None,
    "FT": TABLE2[("all", "fine-tuning", "median")],
    "Intra-type": None,
    "Random": TABLE2[("all", "random", "median")],
    "Layer": None,
    "Floor": None,
    "bf16": None,
    "fp16": None,
}


def comparison(summary: pd.DataFrame, statistic: str = "median") -> pd.DataFrame:
    """Our statistic per setting beside the paper's number for it, saying what each one is.

    ``summary``: :func:`kltools.pairs.summarise` (column ``setting``). Columns: ``setting``,
    ``ours`` (e.g. the median), ``ours 95% interval``, ``pairs``, ``paper``, ``paper's number
    is`` (kind and what), ``source``.
    """
    rows = []
    for r in summary.to_dict("records"):
        num = FOR_SETTING.get(r["setting"])
        rows.append(
            {
                "setting": r["setting"],
                f"ours ({statistic})": r[statistic],
                "ours 95% interval": f"[{r[f'{statistic}_lo']:.3g}, {r[f'{statistic}_hi']:.3g}]",
                "pairs": int(r["n"]),
                "paper": num.value if num else None,
                "paper's number is": f"{num.kind}: {num.what}" if num else "no number printed",
                "source": num.source if num else "—",
            }
        )
    return pd.DataFrame(rows)


def compare_rows(ours: pd.DataFrame, numbers: dict[str, Number]) -> pd.DataFrame:
    """Our rows (``key``, ``quantity``, ``kl``, ``lo``, ``hi``, ``kind``) beside the paper's.

    Each of ``numbers`` gets one row; a paper row with no counterpart here shows "—".
    """
    mine = ours.set_index("key") if len(ours) else ours
    rows = []
    for key, num in numbers.items():
        have = key in mine.index if len(ours) else False
        r = mine.loc[key] if have else None
        rows.append(
            {
                "paper's row": key,
                "paper": num.value,
                "paper error": num.error,
                "paper's number is": f"{num.kind} ({num.source})",
                "ours": r["quantity"] if have else "—",
                "ours [bits/byte]": float(r["kl"]) if have else float("nan"),
                "ours 95% interval": f"[{r['lo']:.3g}, {r['hi']:.3g}]" if have else "—",
                "ours is": r["kind"] if have else "—",
                "ours / paper": float(r["kl"]) / num.value if have else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def setting_values() -> dict[str, float]:
    """setting -> the published number set beside it (settings without one left out)."""
    return {k: v.value for k, v in FOR_SETTING.items() if v is not None}
