"""Every claim of the paper the book tests, each one function returning a :class:`Claim`.

A verdict is one of ``holds``, ``not reproduced`` or ``not tested`` (the data to test the
claim were not computed on this run: never reported as "not reproduced"). Each claim carries
the numbers it was decided on and one sentence saying why. Orderings of distributions compare
medians and ask their bootstrap intervals (on the shared resamples) to be separated: medians
in the right order whose intervals overlap are "not reproduced", with that said in the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from kltools.pairs import PairSet, summarise

__all__ = [
    "Claim",
    "consecutive_falls",
    "early_segments_wider",
    "eight_below_four",
    "estimate_matches_mc",
    "floor_below_quantization",
    "largest_floor",
    "ft_below_random",
    "later_below_early",
    "later_in_paper_range",
    "later_seed_size",
    "loglik_below_weight_space",
    "ordering",
    "subdiffusive",
    "table",
]

HOLDS, NOT_REPRODUCED, NOT_TESTED = "holds", "not reproduced", "not tested"


@dataclass(frozen=True)
class Claim:
    """One tested claim: identifier, what the paper says, the verdict and why."""

    claim: str
    title: str
    verdict: str
    reason: str
    ours: float | None = None
    ours_lo: float | None = None
    ours_hi: float | None = None
    paper: float | None = None
    paper_kind: str = ""
    paper_source: str = ""
    units: str = "bits/byte"

    def record(self, chapter: str) -> dict[str, Any]:
        """A :mod:`kltools.results` ``claims`` record."""
        return {"chapter": chapter, **asdict(self)}


def ordering(claim: str, title: str, sets: Mapping[str, PairSet]) -> Claim:
    """Medians of ``sets`` (in the given order) increase, with separated 95 % intervals."""
    names = list(sets)
    empty = [n for n in names if not len(sets[n])]
    if empty:
        return Claim(claim, title, NOT_TESTED, f"no {', '.join(empty)} pairs on this run")
    med = {n: summarise(sets[n]).iloc[0] for n in names}
    text = " < ".join(
        f"{n} {med[n]['median']:.3g} [{med[n]['median_lo']:.3g}, {med[n]['median_hi']:.3g}]"
        for n in names
    )
    ordered = all(med[a]["median"] < med[b]["median"] for a, b in zip(names, names[1:]))
    separated = all(med[a]["median_hi"] < med[b]["median_lo"] for a, b in zip(names, names[1:]))
    if ordered and separated:
        verdict, why = HOLDS, "medians in order, 95% intervals separated"
    elif ordered:
        verdict, why = NOT_REPRODUCED, "medians in order but 95% intervals overlap"
    else:
        verdict, why = NOT_REPRODUCED, "medians out of order"
    return Claim(
        claim,
        title,
        verdict,
        f"{why}: medians {text} bits/byte",
        **_ratio(sets[names[0]], sets[names[-1]], names[0], names[-1]),
    )


def _ratio(first: PairSet, last: PairSet, a: str, b: str) -> dict[str, Any]:
    """Our ratio of medians ``b / a`` with its interval over the shared resamples, and the
    paper's ratio of its published numbers for the two settings where it prints both."""
    from kltools.paper import FOR_SETTING

    reps = np.median(last.reps, axis=1) / np.median(first.reps, axis=1)
    low = float(np.median(first.frame.kl))
    out: dict[str, Any] = {
        "ours": float(np.median(last.frame.kl)) / low if low > 0 else None,
        "ours_lo": float(np.quantile(reps, 0.025)),
        "ours_hi": float(np.quantile(reps, 0.975)),
        "units": f"ratio {b}/{a}",
    }
    pa, pb = FOR_SETTING.get(a), FOR_SETTING.get(b)
    if pa is not None and pb is not None:
        kinds = f"{pb.kind}s" if pa.kind == pb.kind else f"{pb.kind} / {pa.kind}"
        sources = pb.source if pa.source == pb.source else f"{pb.source}, {pa.source}"
        out.update(
            paper=pb.value / pa.value,
            paper_kind=f"ratio of {kinds} (ours: of medians)",
            paper_source=sources,
        )
    return out


def later_seed_size(later: PairSet, seed: PairSet, size: PairSet) -> Claim:
    """Fig. 3 / Table 1: late consecutive checkpoints < seeds < sizes."""
    return ordering(
        "later<seed<size",
        "late checkpoints < seeds < sizes (Fig. 3, Table 1)",
        {"Later": later, "Seed": seed, "Size": size},
    )


def later_below_early(later: PairSet, early: PairSet) -> Claim:
    """Fig. 3: late consecutive checkpoints are closer than early ones."""
    return ordering(
        "later<early",
        "Later < Early consecutive checkpoints (Fig. 3)",
        {"Later": later, "Early": early},
    )


def eight_below_four(eight: PairSet, four: PairSet) -> Claim:
    """Fig. 3: 8-bit quantization perturbs a model less than 4-bit."""
    return ordering(
        "8-bit<4-bit", "8-bit perturbs less than 4-bit (Fig. 3)", {"8-bit": eight, "4-bit": four}
    )


def largest_floor(floor: PairSet) -> PairSet:
    """Each model's floor: its largest numerical-noise KL over the extraction comparisons.

    The floor chapter calls "the floor" of a model the largest KL that a change of numerics
    alone produces (usually fp32 vs bf16); comparisons that happen to be bit-identical (batch
    size on a CPU gives exactly 0) would otherwise pull a median of all comparisons down.
    """
    if not len(floor):
        return floor
    f = floor.frame.reset_index(drop=True)
    key = "model" if "model" in f else "a"
    keep = np.zeros(len(f), dtype=bool)
    keep[f.groupby(key, sort=False).kl.idxmax().to_numpy()] = True
    return floor.select(keep)


def floor_below_quantization(floor: PairSet, eight: PairSet, four: PairSet) -> Claim:
    """The book's check: each model's floor (:func:`largest_floor`) < 8-bit < 4-bit."""
    return ordering(
        "floor<8-bit<4-bit",
        "the numerical floor (each model's largest noise KL) lies below 8-bit, 8-bit below "
        "4-bit (the book's check)",
        {"Floor": largest_floor(floor), "8-bit": eight, "4-bit": four},
    )


def ft_below_random(ft: PairSet, random: PairSet) -> Claim:
    """Table 2 / Fig. 3: fine-tuned children are closer to their parents than random pairs."""
    return ordering(
        "FT<Random",
        "fine-tuning pairs closer than random pairs (Table 2, Fig. 3)",
        {"FT": ft, "Random": random},
    )


def consecutive_falls(trend: pd.DataFrame) -> Claim:
    """Fig. 4: after warm-up, consecutive-checkpoint KL falls (ρ < 0 and last < first, every size).

    ``trend``: :func:`kltools.settings.pretraining.trend`.
    """
    title = "consecutive-checkpoint KL falls during training (Fig. 4)"
    t = trend[trend.pairs > 2] if len(trend) else trend
    if not len(t):
        return Claim(
            "consecutive falls", title, NOT_TESTED, "fewer than 3 post-warm-up pairs per size"
        )
    falls = (t.spearman < 0) & (t["last"] < t["first"])
    text = "; ".join(
        f"{r.model}: ρ {r.spearman:.2f}, {r.first:.3g} → {r.last:.3g}" for r in t.itertuples()
    )
    verdict = HOLDS if falls.all() else NOT_REPRODUCED
    return Claim(
        "consecutive falls",
        title,
        verdict,
        f"falls for {int(falls.sum())} of {len(t)} sizes ({text})",
        ours=float(t.spearman.median()),
        units="median Spearman ρ(step, KL)",
    )


def early_segments_wider(cons: PairSet) -> Claim:
    """Fig. 1: a trajectory's segments are wide early and narrow late.

    Per run, the first consecutive pair (earliest checkpoints) against the last; a run agrees
    when the first pair's 95 % interval lies entirely above the last pair's. ``cons``:
    :func:`kltools.settings.pretraining.consecutive` (labels ``model``, ``step``).
    """
    title = "consecutive KL large early, small late (Fig. 1 segment widths)"
    f = cons.frame
    runs = [g.sort_values("step") for _, g in f.groupby("model", sort=False)] if len(f) else []
    runs = [g for g in runs if len(g) > 1]
    if not runs:
        return Claim("early segments wider", title, NOT_TESTED, "no run with two or more pairs")
    first = [g.iloc[0] for g in runs]
    last = [g.iloc[-1] for g in runs]
    wider = [a.lo > b.hi for a, b in zip(first, last)]
    text = "; ".join(
        f"{a.model}: {a.kl:.3g} (steps {a.step}→{a.step_next}) vs {b.kl:.3g}"
        for a, b in zip(first, last)
    )
    med_first = float(np.median([a.kl for a in first]))
    med_last = float(np.median([b.kl for b in last]))
    return Claim(
        "early segments wider",
        title,
        HOLDS if all(wider) else NOT_REPRODUCED,
        f"first pair's interval above the last pair's in {sum(wider)} of {len(runs)} runs ({text})",
        ours=med_first / med_last if med_last > 0 else None,
        units="median first / last consecutive KL",
    )


def _exponent_claim(
    claim: str, title: str, table: pd.DataFrame, ours: str, bound: str | None
) -> Claim:
    """Median exponent per size below 1 (``bound`` None) or below the weight-space column."""
    needed = [ours] + ([bound] if bound else [])
    if not len(table) or any(c not in table or not np.isfinite(table[c]).any() for c in needed):
        missing = "weight-space distances were not computed" if bound else "no exponent was fitted"
        return Claim(claim, title, NOT_TESTED, missing)
    tested = table[np.isfinite(table[needed]).all(axis=1)]
    untested = [str(m) for m in table.model[~table.index.isin(tested.index)]]
    limit = tested[bound] if bound else 1.0
    ok = tested[ours] < limit
    text = "; ".join(
        f"{r['model']}: {r[ours]:.2f}" + (f" vs {r[bound]:.2f}" if bound else "")
        for r in tested.to_dict("records")
    )
    skipped = f"; not tested: {', '.join(untested)}" if untested else ""
    return Claim(
        claim,
        title,
        HOLDS if ok.all() else NOT_REPRODUCED,
        f"{int(ok.sum())} of {len(tested)} sizes ({text}){skipped}",
        ours=float(tested[ours].median()),
        units="median exponent c_ℓ",
    )


def subdiffusive(summary: pd.DataFrame) -> Claim:
    """Fig. 5: the local exponent in log-likelihood space is below 1 (median over starts, each size)."""
    return _exponent_claim(
        "c_l<1", "c in log-likelihood space is below 1 (Fig. 5)", summary, "c_l", None
    )


def loglik_below_weight_space(summary: pd.DataFrame) -> Claim:
    """Fig. 5: c in log-likelihood space is below c in weight space, each size."""
    return _exponent_claim("c_l<c_W", "c_ℓ below c in weight space (Fig. 5)", summary, "c_l", "c_W")


def estimate_matches_mc(mc: pd.DataFrame) -> Claim:
    """§2: for near models the estimate equals the (symmetrised) Monte-Carlo KL.

    ``mc``: :func:`kltools.validation.estimate_vs_mc`; near pairs with verdict ``agree`` /
    ``disagree`` / ``inconclusive`` (interval of the ratio wider than ±50 %).
    """
    title = "Var/2 ≈ KL for nearby models (§2, second-order expansion)"
    near = mc[mc.kind == "near"] if len(mc) else mc
    decided = near[near.verdict != "inconclusive"] if len(near) else near
    if not len(decided):
        return Claim(
            "estimate≈KL (near)",
            title,
            NOT_TESTED,
            "no near pair with a conclusive Monte-Carlo comparison",
        )
    agree = decided.verdict == "agree"
    text = "; ".join(
        f"{r.role}: ratio {r.ratio:.2f} ± {2 * r.ratio_se:.2f} ({r.verdict})"
        for r in near.itertuples()
    )
    return Claim(
        "estimate≈KL (near)",
        title,
        HOLDS if agree.all() else NOT_REPRODUCED,
        f"{int(agree.sum())} of {len(decided)} conclusive near pairs agree within 2 s.e. ({text})",
        ours=float(near.ratio.median()),
        units="median ratio estimate / Monte Carlo",
    )


def table(items: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a short table: what the paper says, the verdict, and why."""
    return pd.DataFrame(
        [{"paper's claim": c.title, "verdict": c.verdict, "why": c.reason} for c in items]
    )


def later_in_paper_range(later: PairSet) -> Claim:
    """§3.1: after about 10k steps, consecutive checkpoints are 0.02–0.07 bits/byte apart."""
    from kltools.paper import BETWEEN

    low, high, what = BETWEEN["late consecutive"]
    title = f"late consecutive KL is about {low}–{high} bits/byte ({what})"
    if not len(later):
        return Claim("later in 0.02-0.07", title, NOT_TESTED, "no Later pairs on this run")
    med = summarise(later).iloc[0]
    inside = low <= med["median"] <= high
    return Claim(
        "later in 0.02-0.07",
        title,
        HOLDS if inside else NOT_REPRODUCED,
        f"Later median {med['median']:.3g} [{med['median_lo']:.3g}, {med['median_hi']:.3g}] "
        f"bits/byte is {'inside' if inside else 'outside'} {low}–{high}",
        ours=float(med["median"]),
        ours_lo=float(med["median_lo"]),
        ours_hi=float(med["median_hi"]),
        paper_kind="range stated in the text",
        paper_source="v1 §3.1 and Table 1",
    )
