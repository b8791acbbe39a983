"""Every claim the book tests, each one function returning a :class:`Claim`.

A verdict is one of ``holds``, ``not reproduced`` or ``not tested`` (the data to test the
claim were not computed on this run, or the profile cannot measure what the claim is about:
never reported as "not reproduced"). Each claim says what it measured — the ``population``
of pairs and the ``statistic`` that decides — and carries the numbers it was decided on and
one sentence saying why; ``origin`` is ``"paper"`` for a claim of the paper and ``"book"``
for a check the book adds.

- **Orderings** of distributions compare pooled medians and ask their bootstrap intervals (on
  the shared resamples) to be separated: medians in the right order whose intervals overlap
  are "not reproduced", with that said in the reason. Where the paper's table orders pairs
  row by row (Table 1: the seed average against each size pair of the reference run), the
  row-by-row view is tested beside the pooled one and a reversed row fails the claim.
- **Magnitudes** (a published number or range) are ``not tested`` on a profile whose source
  cannot measure them (:func:`kltools.sources.can` ``"published_magnitudes"``): a small-model
  suite answers the paper's orderings, not its numbers.
- **Degenerate pairs** (KL exactly 0: identical vectors, e.g. Pythia's ``step0`` and ``step1``,
  which serve the same weights) never decide a claim; a claim that meets them says so.

The docstring of each claim quotes the paper's sentence it tests where the sentence is quoted
verbatim, and otherwise paraphrases it, marked "(paraphrase)".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kltools.kl import interval
from kltools.pairs import PairSet, summarise

if TYPE_CHECKING:
    from kltools.config import Settings

__all__ = [
    "Claim",
    "consecutive_falls",
    "early_late_rates",
    "early_segments_wider",
    "eight_below_four",
    "estimate_matches_mc_corpus",
    "estimate_matches_mc_samples",
    "floor_below_quantization",
    "floor_value",
    "ft_below_random",
    "later_below_early",
    "later_in_paper_range",
    "later_range",
    "later_seed_size",
    "loglik_below_weight_space",
    "ordering",
    "paper_later_pairs",
    "reference_base",
    "seed_size_markdown",
    "seed_size_rows",
    "subdiffusive",
    "table",
]

HOLDS, NOT_REPRODUCED, NOT_TESTED = "holds", "not reproduced", "not tested"
PAPER, BOOK = "paper", "book"

#: the statistic an ordering is decided by
POOLED = "pooled medians, 95% intervals separated"


@dataclass(frozen=True)
class Claim:
    """One tested claim: what it says, what it measured, the verdict and why.

    ``population``: the pairs the claim is decided on (e.g. "the reference run's one-interval
    consecutive pairs from 10/143 of training on"); ``statistic``: how they are summarised
    (e.g. "median, bootstrap 95% interval"); ``origin``: ``"paper"`` or ``"book"``.
    ``other``/``other_label``: a second number of ours shown beside ``ours`` (e.g. c_W beside
    c_ℓ, the 8-bit median beside the floor). ``paper_kind`` says what the paper's number is —
    or, when there is none, why the paper column is empty; ``paper_lo``/``paper_hi``: a range
    the paper states (in place of one number).
    """

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
    population: str = ""
    statistic: str = ""
    origin: str = PAPER
    other: float | None = None
    other_label: str = ""
    paper_lo: float | None = None
    paper_hi: float | None = None

    def record(self, chapter: str) -> dict[str, Any]:
        """A :mod:`kltools.results` ``claims`` record."""
        return {"chapter": chapter, **asdict(self)}


def table(items: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a short table: the claim, what decides it, the verdict and why."""
    return pd.DataFrame(
        [
            {
                "claim": c.title,
                "of": c.origin,
                "population": c.population,
                "statistic": c.statistic,
                "verdict": c.verdict,
                "why": c.reason,
            }
            for c in items
        ]
    )


# ------------------------------------------------------------------------------ orderings


def _medians(sets: Mapping[str, PairSet]) -> dict[str, pd.Series]:
    return {n: summarise(sets[n]).iloc[0] for n in sets}


def ordering(
    claim: str,
    title: str,
    sets: Mapping[str, PairSet],
    *,
    population: str = "",
    origin: str = PAPER,
) -> Claim:
    """Pooled medians of ``sets`` (in the given order) increase, with separated 95 % intervals."""
    names = list(sets)
    population = population or "every pair of " + ", ".join(names)
    empty = [n for n in names if not len(sets[n])]
    if empty:
        return Claim(
            claim,
            title,
            NOT_TESTED,
            f"no {', '.join(empty)} pairs on this run",
            population=population,
            statistic=POOLED,
            origin=origin,
            **_paper_ratio(names[0], names[-1]),
        )
    med = _medians(sets)
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
    counts = ", ".join(f"{n} {len(sets[n])}" for n in names)
    return Claim(
        claim,
        title,
        verdict,
        f"{why}: pooled medians {text} bits/byte (pairs: {counts})",
        population=population,
        statistic=POOLED,
        origin=origin,
        **_ratio(sets[names[0]], sets[names[-1]], names[0], names[-1]),
    )


def _paper_ratio(a: str, b: str) -> dict[str, Any]:
    """The paper's ratio ``b / a`` where it prints the same statistic (a median) for both
    settings; otherwise no number, and ``paper_kind`` says why.

    A ratio of two single pairs of Table 1 is not set beside a ratio of medians.
    """
    from kltools.paper import FOR_SETTING

    pa, pb = FOR_SETTING.get(a), FOR_SETTING.get(b)
    if pa is None or pb is None:
        missing = " and ".join(n for n, p in ((a, pa), (b, pb)) if p is None)
        return {"paper_kind": f"no number: the paper prints none for {missing}"}
    if pa.kind == pb.kind == "median":
        return {
            "paper": pb.value / pa.value,
            "paper_kind": "ratio of medians",
            "paper_source": pb.source if pa.source == pb.source else f"{pb.source}, {pa.source}",
        }
    return {
        "paper_kind": f"no like-for-like number: the paper prints a {pb.kind} for {b} and a "
        f"{pa.kind} for {a} ({pb.source}), not medians"
    }


def _ratio(first: PairSet, last: PairSet, a: str, b: str) -> dict[str, Any]:
    """Our ratio of medians ``b / a`` with its interval over the shared resamples, beside the
    paper's (:func:`_paper_ratio`)."""
    reps = np.median(last.reps, axis=1) / np.median(first.reps, axis=1)
    low = float(np.median(first.frame.kl))
    lo, hi = interval(reps)
    return {
        "ours": float(np.median(last.frame.kl)) / low if low > 0 else None,
        "ours_lo": float(lo),
        "ours_hi": float(hi),
        "units": f"ratio of medians {b}/{a}",
        **_paper_ratio(a, b),
    }


def reference_base(s: Settings) -> str:
    """The spec base of Table 1's reference run (``EleutherAI/pythia-410m`` in the paper)."""
    from kltools.settings.pretraining import reference_model
    from kltools.settings.stores import pretraining_store

    ref = reference_model(s)
    return str(pretraining_store(s)["spec_base"].sel(model=ref).item())


def _base_of(spec: str) -> str:
    return str(spec).split("@")[0]


def seed_size_rows(seed: PairSet, size: PairSet, reference: str) -> pd.DataFrame:
    """Table 1 row by row: the seed pairs' mean beside each size pair of the reference run.

    ``reference``: the reference run's spec base (:func:`reference_base`). One row per size
    pair that has the reference run on one side: ``pair``, ``kl`` with ``lo``/``hi``, the
    seed mean ``seed_mean`` with ``seed_lo``/``seed_hi`` (both on the shared resamples) and
    ``order``: ``"in order"`` (the pair's interval lies above the seed mean's), ``"overlap"``
    or ``"reversed"`` (the pair's KL is at or below the seed mean).
    """
    cols = ["pair", "kl", "lo", "hi", "seed_mean", "seed_lo", "seed_hi", "order"]
    if not len(seed) or not len(size):
        return pd.DataFrame(columns=cols)
    f = size.frame.reset_index(drop=True)
    mine = (f.a.map(_base_of) == reference) | (f.b.map(_base_of) == reference)
    seed_reps = seed.reps.mean(axis=1)
    s_mean = float(seed.frame.kl.mean())
    s_lo, s_hi = (float(v) for v in interval(seed_reps))
    rows = []
    for i in np.flatnonzero(mine.to_numpy()):
        r = f.iloc[i]
        other = _base_of(r.b) if _base_of(r.a) == reference else _base_of(r.a)
        order = "reversed" if r.kl <= s_mean else ("in order" if r.lo > s_hi else "overlap")
        rows.append(
            {
                "pair": f"{reference} vs {other}",
                "kl": float(r.kl),
                "lo": float(r.lo),
                "hi": float(r.hi),
                "seed_mean": s_mean,
                "seed_lo": s_lo,
                "seed_hi": s_hi,
                "order": order,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def later_seed_size(
    later: PairSet, seed: PairSet, size: PairSet, reference: str | None = None
) -> Claim:
    """Fig. 3 / Table 1 (paraphrase): late consecutive checkpoints are closer than seeds
    (≈0.1 bits/byte), and seeds closer than models of different sizes (≈0.3–2 bits/byte).

    Decided on pooled medians (Later < Seed < Size, separated 95 % intervals) **and**, where
    ``reference`` (the reference run's spec base) is given, row by row as in Table 1: the seed
    average below each size pair of the reference run (:func:`seed_size_rows`). A reversed
    row fails the claim, and the reason names it.
    """
    pooled = ordering(
        "later<seed<size",
        "late checkpoints < seeds < sizes (Fig. 3, Table 1)",
        {"Later": later, "Seed": seed, "Size": size},
        population="Later: each main size's last one-interval consecutive pairs; Seed: every "
        "seed pair; Size: every size pair (pooled over sizes)",
    )
    if pooled.verdict == NOT_TESTED:
        return pooled
    if reference is None:
        return pooled
    rows = seed_size_rows(seed, size, reference)
    statistic = f"{POOLED}; and Table 1 row by row (seed mean < each size pair of {reference})"
    if not len(rows):
        return replace(
            pooled,
            statistic=statistic,
            reason=pooled.reason + f"; row by row: no size pair of {reference}",
        )
    reversed_ = rows[rows.order == "reversed"]
    listing = "; ".join(
        f"{r.pair} {r.kl:.3g} [{r.lo:.3g}, {r.hi:.3g}] ({r.order})" for r in rows.itertuples()
    )
    row_text = (
        f"row by row (Table 1), seed mean {rows.seed_mean.iloc[0]:.3g} "
        f"[{rows.seed_lo.iloc[0]:.3g}, {rows.seed_hi.iloc[0]:.3g}] vs {listing}"
    )
    verdict, reason = pooled.verdict, f"{pooled.reason}; {row_text}"
    if len(reversed_):
        verdict = NOT_REPRODUCED
        names = ", ".join(reversed_.pair)
        lead = "pooled medians in order, but " if pooled.verdict == HOLDS else "and row by row, "
        reason = (
            f"{lead}Table 1's ordering is reversed row by row for {names} (below the seed "
            f"mean); {pooled.reason}; {row_text}"
        )
    return replace(pooled, verdict=verdict, reason=reason, statistic=statistic)


def seed_size_markdown(seed: PairSet, size: PairSet, reference: str) -> str:
    """What decides Later < Seed < Size on this run, in prose (Markdown; every number computed).

    The pooled Size median beside its pairs (and what it becomes without the model whose
    pairs pull it up most), and Table 1's row-by-row view, with any reversed row named.
    """
    if not len(seed) or not len(size):
        return "The seed or size pairs were not computed on this run: the ordering is not tested."
    from kltools.paper import TABLE1

    f = size.frame
    med, s_med = float(f.kl.median()), float(seed.frame.kl.median())
    models = sorted({_base_of(x) for x in (*f.a, *f.b)})
    without = {
        m: float(f.kl[(f.a.map(_base_of) != m) & (f.b.map(_base_of) != m)].median())
        for m in models
        if ((f.a.map(_base_of) != m) & (f.b.map(_base_of) != m)).any()
    }
    lines = [
        f"**Pooled.** The Size median, {med:.3g} bits/byte, is the median of all {len(f)} size "
        f"pairs; the Seed median is {s_med:.3g} bits/byte over {len(seed)} seed pairs."
    ]
    if without:
        m = min(without, key=without.get)
        lines[0] += (
            f" The pairs with `{m}` pull the Size median up most: without them it is "
            f"{without[m]:.3g} bits/byte, "
            + ("still above" if without[m] > s_med else "no longer above")
            + " the Seed median."
        )
    rows = seed_size_rows(seed, size, reference)
    published = " < ".join(
        f"{TABLE1[k].value:g}"
        for k in ("seeds (average)", "vs 1B", "vs 1.4B", "vs 2.8B", "vs 6.9B")
    )
    if len(rows):
        rev = rows[rows.order == "reversed"]
        overlap = rows[rows.order == "overlap"]
        text = "; ".join(f"`{r.pair}` {r.kl:.3g} ({r.order})" for r in rows.itertuples())
        lines.append(
            f"**Row by row** (Table 1's view: the seed average, {rows.seed_mean.iloc[0]:.3g} "
            f"bits/byte, against each size pair of the reference run `{reference}`): {text}: "
            + (
                f"**{len(rev)} of {len(rows)} rows are reversed** ({', '.join(rev.pair)} lies "
                "below the seed average), the opposite of the paper's Table 1, where every row "
                f"is in order ({published} bits/byte); the claim is therefore not reproduced "
                "here, whatever the pooled medians say."
                if len(rev)
                else "every row is in order, as in the paper's Table 1 "
                f"({published} bits/byte)"
                + (
                    f", though {len(overlap)} of {len(rows)} rows have intervals overlapping "
                    "the seed average's (in order, not separated)."
                    if len(overlap)
                    else "."
                )
            )
        )
    else:
        lines.append(f"Row by row: no size pair of the reference run `{reference}` on this run.")
    return "\n\n".join(lines)


def later_below_early(later: PairSet, early: PairSet) -> Claim:
    """Fig. 3 (paraphrase): consecutive checkpoints late in training are closer than early ones
    (Later < Early, the last and first ``k`` post-warm-up one-interval pairs per size)."""
    return ordering(
        "later<early",
        "Later < Early consecutive checkpoints (Fig. 3)",
        {"Later": later, "Early": early},
        population="each main size's last (Later) and first (Early) one-interval consecutive "
        "pairs after warm-up, pooled over sizes",
    )


def eight_below_four(eight: PairSet, four: PairSet) -> Claim:
    """Fig. 3 (paraphrase): 8-bit quantization perturbs a model less than 4-bit."""
    return ordering(
        "8-bit<4-bit",
        "8-bit perturbs less than 4-bit (Fig. 3)",
        {"8-bit": eight, "4-bit": four},
        population="each base model against its 8-bit and its 4-bit copy",
    )


def ft_below_random(ft: PairSet, random: PairSet) -> Claim:
    """Table 2 / Fig. 3 (paraphrase): fine-tuned children are closer to their parents than
    random pairs of models are to each other."""
    return ordering(
        "FT<Random",
        "fine-tuning pairs closer than random pairs (Table 2, Fig. 3)",
        {"FT": ft, "Random": random},
        population="every parent→child pair (FT) and the random pairs drawn beside them",
    )


# ------------------------------------------------------------------------------ the floor


def floor_value(floor: PairSet) -> dict[str, Any]:
    """The floor: the largest KL of the Floor setting (the pipeline's own repeatability).

    ``floor``: :func:`kltools.settings.numerics.floor` (other settings in it are ignored).
    Returns ``kl``, ``lo``, ``hi`` (that pair's interval), ``model`` and ``comparison``;
    None values when there is no Floor pair.
    """
    f = floor.frame[floor.frame.setting == "Floor"] if len(floor) else floor.frame
    if not len(f):
        return {"kl": None, "lo": None, "hi": None, "model": "", "comparison": ""}
    r = f.loc[f.kl.idxmax()]
    return {
        "kl": float(r.kl),
        "lo": float(r.lo),
        "hi": float(r.hi),
        "model": str(r.get("model", r.a)),
        "comparison": str(r.get("comparison", "")),
    }


def floor_below_quantization(floor: PairSet, eight: PairSet, four: PairSet) -> Claim:
    """The book's check: the floor lies below 8-bit, and 8-bit below 4-bit.

    The floor is :func:`floor_value` (the largest KL of the Floor setting: batch size,
    padding; dtype changes are settings of their own); it is below 8-bit when the upper end
    of its interval lies below the lower end of the 8-bit median's interval. 8-bit < 4-bit is
    :func:`ordering` on pooled medians.
    """
    title = "the floor lies below 8-bit, 8-bit below 4-bit (the book's check)"
    population = (
        "Floor: every floor model re-extracted with another batch size / padding (dtype "
        "changes excluded); 8-bit, 4-bit: each base against its copy"
    )
    statistic = "the floor = the largest Floor KL (its interval's upper end) vs the 8-bit median's interval; 8-bit < 4-bit on pooled medians"
    fl = floor.setting("Floor") if len(floor) else floor
    empty = [n for n, p in (("Floor", fl), ("8-bit", eight), ("4-bit", four)) if not len(p)]
    common = dict(
        population=population,
        statistic=statistic,
        origin=BOOK,
        paper_kind="no number: the paper measures no floor (the book's own check)",
    )
    top = floor_value(fl)
    if empty:
        partial = ""
        if len(fl) and len(eight):
            e = summarise(eight).iloc[0]
            partial = (
                f" (for the record: the floor {top['kl']:.3g} [{top['lo']:.3g}, {top['hi']:.3g}]"
                f" vs the 8-bit median {e['median']:.3g} [{e['median_lo']:.3g}, "
                f"{e['median_hi']:.3g}] bits/byte)"
            )
        return Claim(
            "floor<8-bit<4-bit",
            title,
            NOT_TESTED,
            f"no {', '.join(empty)} pairs on this run{partial}",
            **common,
        )
    e = summarise(eight).iloc[0]
    below = top["hi"] < e["median_lo"]
    q = ordering("8-bit<4-bit", "", {"8-bit": eight, "4-bit": four})
    verdict = HOLDS if below and q.verdict == HOLDS else NOT_REPRODUCED
    reason = (
        f"the floor {top['kl']:.3g} [{top['lo']:.3g}, {top['hi']:.3g}] bits/byte "
        f"({top['model']}, {top['comparison']}) is "
        + ("below" if below else "not below")
        + f" the 8-bit median {e['median']:.3g} [{e['median_lo']:.3g}, {e['median_hi']:.3g}]; "
        f"8-bit vs 4-bit: {q.reason}"
    )
    return Claim(
        "floor<8-bit<4-bit",
        title,
        verdict,
        reason,
        ours=top["kl"],
        ours_lo=top["lo"],
        ours_hi=top["hi"],
        other=float(e["median"]),
        other_label="8-bit median",
        units="bits/byte (the floor)",
        **common,
    )


# ------------------------------------------------------------------------------ trajectories


def consecutive_falls(trend: pd.DataFrame) -> Claim:
    """Fig. 4 (paraphrase): after warm-up, the KL between consecutive checkpoints decreases as
    training progresses (ρ < 0 and last < first, every size).

    ``trend``: :func:`kltools.settings.pretraining.trend`.
    """
    title = "consecutive-checkpoint KL falls during training (Fig. 4)"
    common = dict(
        population="each main size's one-interval consecutive pairs after warm-up",
        statistic="Spearman ρ(step, KL) < 0 and last pair < first pair, for every size",
        paper_kind="no number: a trend read from Fig. 4",
    )
    t = trend[trend.pairs > 2] if len(trend) else trend
    if not len(t):
        return Claim(
            "consecutive falls",
            title,
            NOT_TESTED,
            "fewer than 3 post-warm-up pairs per size",
            **common,
        )
    falls = (t.spearman < 0) & (t["last"] < t["first"])
    text = "; ".join(
        f"{r.model}: ρ {r.spearman:.2f}, {r.first:.3g} → {r.last:.3g}" for r in t.itertuples()
    )
    return Claim(
        "consecutive falls",
        title,
        HOLDS if falls.all() else NOT_REPRODUCED,
        f"falls for {int(falls.sum())} of {len(t)} sizes ({text})",
        ours=float(t.spearman.median()),
        units="median Spearman ρ(step, KL)",
        **common,
    )


def early_late_rates(cons: PairSet, after_step: int = 0) -> pd.DataFrame:
    """Per run: how fast the trajectory moves early in training against late, per checkpoint.

    For each run (label ``model``) its consecutive pairs in step order that start at or after
    ``after_step`` and are one grid interval apart (label ``one_interval`` where present), so
    that every pair spans the same number of steps and "per checkpoint" is "per fixed Δ step";
    **degenerate pairs are excluded** (KL exactly 0: identical vectors, the copies the
    integrity audit reports, such as Pythia's ``step0``/``step1``). The first third of the
    rest is *early*, the last third *late* (at least one pair each, so a run needs 3 pairs).

    Columns ``model``, ``pairs`` (used), ``left_out`` (warm-up or unevenly spaced pairs not
    used), ``excluded`` (``"a→b"`` steps of the degenerate pairs), ``early`` and ``late``
    (median KL per checkpoint interval, bits/byte), ``ratio`` = early / late with its 95 %
    interval ``lo``/``hi`` over the shared resamples (the ratio of the two medians recomputed
    on each resample).
    """
    cols = ["model", "pairs", "left_out", "excluded", "early", "late", "ratio", "lo", "hi"]
    f = cons.frame.reset_index(drop=True)
    rows = []
    for model, g in f.groupby("model", sort=False) if len(f) else []:
        g = g.sort_values("step")
        even = g.one_interval.astype(bool) if "one_interval" in g else True
        use = (g.step >= after_step) & even
        left_out = int((~use).sum())
        g = g[use]
        zero = g[g.kl == 0]
        g = g[g.kl != 0]
        excluded = ", ".join(f"{int(r.step)}→{int(r.step_next)}" for r in zero.itertuples())
        base = {"model": model, "pairs": len(g), "left_out": left_out, "excluded": excluded}
        k = len(g) // 3
        if k < 1:
            rows.append({**base, **dict.fromkeys(cols[4:])})
            continue
        early_i, late_i = g.index[:k].to_numpy(), g.index[-k:].to_numpy()
        reps = np.median(cons.reps[:, early_i], axis=1) / np.median(cons.reps[:, late_i], axis=1)
        early, late = float(f.kl[early_i].median()), float(f.kl[late_i].median())
        rows.append(
            {
                **base,
                "early": early,
                "late": late,
                "ratio": early / late,
                "lo": float(interval(reps)[0]),
                "hi": float(interval(reps)[1]),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def early_segments_wider(cons: PairSet, after_step: int = 0) -> Claim:
    """Fig. 1 (paraphrase): trajectories move fast early in training and slow down — a
    segment of the map (one checkpoint interval) is wide early and narrow late.

    One definition on every profile (:func:`early_late_rates`): per run, the median KL per
    checkpoint interval over the first third of its evenly spaced, non-degenerate
    consecutive pairs from ``after_step`` on, against the last third; a run agrees when the
    ratio's 95 % interval lies above 1. No single pair decides; pairs with KL exactly 0
    (identical checkpoints) are excluded and listed, and warm-up pairs (log-spaced, at a
    learning rate still ramping up) are left out, so that every pair spans the same Δ steps.
    ``cons``: :func:`kltools.settings.pretraining.consecutive` (labels ``model``, ``step``,
    ``step_next``, ``one_interval``).
    """
    title = "trajectories move fast early and slow down (Fig. 1 segment widths)"
    common = dict(
        population=f"each run's one-interval consecutive pairs from step {after_step} on, "
        "KL-0 (identical) pairs excluded",
        statistic="per run: median KL of the first third of pairs / of the last third, "
        "95% interval above 1, every run",
        paper_kind="no number: read from Fig. 1",
    )
    rates = early_late_rates(cons, after_step)
    excluded = "; ".join(f"{r.model}: {r.excluded}" for r in rates.itertuples() if r.excluded)
    note = f"; excluded as degenerate (KL exactly 0): {excluded}" if excluded else ""
    tested = rates[rates.ratio.notna()] if len(rates) else rates
    if not len(tested):
        return Claim(
            "early segments wider",
            title,
            NOT_TESTED,
            "no run with three or more evenly spaced, non-degenerate consecutive pairs" + note,
            **common,
        )
    wider = tested.lo > 1
    skipped = rates.model[rates.ratio.isna()].tolist() if len(rates) else []
    text = "; ".join(
        f"{r.model}: {r.early:.3g} vs {r.late:.3g}, ratio {r.ratio:.3g} [{r.lo:.3g}, {r.hi:.3g}]"
        for r in tested.itertuples()
    )
    more = f"; too few pairs: {', '.join(map(str, skipped))}" if skipped else ""
    return Claim(
        "early segments wider",
        title,
        HOLDS if wider.all() else NOT_REPRODUCED,
        f"early faster than late in {int(wider.sum())} of {len(tested)} runs ({text}){more}{note}",
        ours=float(tested.ratio.median()),
        units="median over runs of early / late consecutive KL",
        **common,
    )


def _exponent_claim(
    claim: str, title: str, table: pd.DataFrame, ours: str, bound: str | None
) -> Claim:
    """Median exponent per size below 1 (``bound`` None) or below the weight-space column."""
    common = dict(
        population="each main size's local exponents over its start steps",
        statistic=f"median over start steps per size; c_ℓ < {'c_W' if bound else '1'} for every size",
        paper_kind="no number: read from Fig. 5",
    )
    needed = [ours] + ([bound] if bound else [])
    if not len(table) or any(c not in table or not np.isfinite(table[c]).any() for c in needed):
        missing = "weight-space distances were not computed" if bound else "no exponent was fitted"
        return Claim(claim, title, NOT_TESTED, missing, **common)
    tested = table[np.isfinite(table[needed]).all(axis=1)]
    untested = [str(m) for m in table.model[~table.index.isin(tested.index)]]
    limit = tested[bound] if bound else 1.0
    ok = tested[ours] < limit
    text = "; ".join(
        f"{r['model']}: {r[ours]:.2f}" + (f" vs {r[bound]:.2f}" if bound else "")
        for r in tested.to_dict("records")
    )
    skipped = f"; not tested: {', '.join(untested)}" if untested else ""
    extra = {"other": float(tested[bound].median()), "other_label": "median c_W"} if bound else {}
    return Claim(
        claim,
        title,
        HOLDS if ok.all() else NOT_REPRODUCED,
        f"{int(ok.sum())} of {len(tested)} sizes ({text}){skipped}",
        ours=float(tested[ours].median()),
        units="median exponent c_ℓ",
        **extra,
        **common,
    )


def subdiffusive(summary: pd.DataFrame) -> Claim:
    """Fig. 5 (paraphrase of the abstract): learning trajectories are subdiffusive — the local
    exponent c in log-likelihood space is below 1 (median over starts, each size)."""
    return _exponent_claim(
        "c_l<1", "c in log-likelihood space is below 1 (Fig. 5)", summary, "c_l", None
    )


def loglik_below_weight_space(summary: pd.DataFrame) -> Claim:
    """Abstract / Fig. 5: "changes in log-likelihood space, as measured by the scaling
    behavior of KL divergence, are much smaller than in weight space" — c_ℓ below c_W, each
    size."""
    return _exponent_claim("c_l<c_W", "c_ℓ below c in weight space (Fig. 5)", summary, "c_l", "c_W")


# ------------------------------------------------------------------------------ the estimator


def _mc_claim(mc: pd.DataFrame, *, corpus: bool) -> Claim:
    col, v = ("ratio_corpus", "verdict_corpus") if corpus else ("ratio", "verdict")
    where = (
        "the analysis text set (what every chapter uses)" if corpus else "the models' own samples"
    )
    claim = "estimate≈KL (corpus)" if corpus else "estimate≈KL (samples)"
    title = f"Var/2 ≈ KL for nearby models, on {where} (§2)"
    common = dict(
        population=f"near pairs (the reference run's last consecutive checkpoints); estimate on {where}",
        statistic="ratio estimate / symmetrised Monte-Carlo KL per pair (±2 s.e.); every "
        "conclusive near pair within 2 s.e. of the Monte-Carlo KL (kltools.validation verdicts)",
        units="ratio estimate / Monte Carlo (near pairs: median, ±2 s.e. range)",
        paper_kind="no number: the paper states the second-order expansion (ratio 1)",
    )
    near = mc[mc.kind == "near"] if len(mc) else mc
    ok = [r for r in near.itertuples() if getattr(r, v) != "inconclusive"]
    listing = (
        "; ".join(
            f"{kind}: "
            + ", ".join(
                f"{r.role} {getattr(r, col):.2f} ± {2 * getattr(r, col + '_se'):.2f}"
                for r in mc[mc.kind == kind].itertuples()
            )
            for kind in dict.fromkeys(mc.kind)
        )
        if len(mc)
        else ""
    )
    if not ok:
        why = mc.attrs.get("not_run") or "no near pair with a conclusive Monte-Carlo comparison"
        return Claim(claim, title, NOT_TESTED, why + (f" ({listing})" if listing else ""), **common)
    agree = [getattr(r, v) == "agree" for r in ok]
    ratios = np.array([getattr(r, col) for r in ok])
    ses = np.array([getattr(r, col + "_se") for r in ok])
    return Claim(
        claim,
        title,
        HOLDS if all(agree) else NOT_REPRODUCED,
        f"{sum(agree)} of {len(ok)} conclusive near pairs agree within 2 s.e.; ratios by kind: "
        f"{listing}",
        ours=float(np.median(ratios)),
        ours_lo=float((ratios - 2 * ses).min()),
        ours_hi=float((ratios + 2 * ses).max()),
        **common,
    )


def estimate_matches_mc_corpus(mc: pd.DataFrame) -> Claim:
    """§2 (paraphrase): for nearby models the estimate Var(ℓ_i − ℓ_j)/2 approximates the
    (symmetrised) KL — tested **on the text set the scale uses**.

    ``mc``: :func:`kltools.validation.estimate_vs_mc` (``ratio_corpus``, ``ratio_corpus_se``,
    ``verdict_corpus``). A near pair is conclusive unless its verdict is ``inconclusive``
    (within 2 s.e. of the Monte-Carlo KL but with a ratio interval wider than ±50 %); every
    conclusive near pair must agree.
    """
    return _mc_claim(mc, corpus=True)


def estimate_matches_mc_samples(mc: pd.DataFrame) -> Claim:
    """§2 (paraphrase): the same approximation with the models' own samples as the text set
    (the setting of the second-order argument: texts drawn from the model).

    ``mc``: :func:`kltools.validation.estimate_vs_mc` (``ratio``, ``ratio_se``, ``verdict``).
    """
    return _mc_claim(mc, corpus=False)


# ------------------------------------------------------------------------------ magnitudes


def paper_later_pairs(cons: PairSet, reference: str) -> PairSet:
    """The paper's population for "late consecutive KL is 0.02–0.07 bits/byte".

    The reference run's (``reference``: its ``model`` label, Pythia-410M in the paper)
    one-interval consecutive pairs starting at or after :data:`kltools.paper.LATE_FROM` of its
    last step (10k of 143k), degenerate pairs (KL exactly 0) excluded.
    """
    from kltools.paper import LATE_FROM

    f = cons.frame
    if not len(f):
        return cons
    mine = (f.model == reference) & f.one_interval.astype(bool)
    if not mine.any():
        return cons.select(np.zeros(len(f), dtype=bool))
    last = float(f.step_next[mine].max())
    keep = mine & (f.step >= LATE_FROM * last) & (f.kl != 0)
    return cons.select(keep.to_numpy())


def later_in_paper_range(cons: PairSet, reference: str, *, published: bool) -> Claim:
    """§3.1 (paraphrase, v1): after about 10k steps, the KL between consecutive checkpoints of
    Pythia-410M stays between 0.02 and 0.07 bits/byte.

    A magnitude: ``not tested`` unless ``published`` (the profile's source can measure the
    paper's magnitudes: ``kltools.sources.can(s, "published_magnitudes")``); the numbers are
    reported either way. Population: :func:`paper_later_pairs`; statistic: their median with
    its 95 % interval, inside the range.
    """
    from kltools.paper import BETWEEN, LATE_FROM

    low, high, what = BETWEEN["late consecutive"]
    title = f"late consecutive KL is about {low}–{high} bits/byte ({what})"
    common = dict(
        population=f"{reference}'s one-interval consecutive pairs from {LATE_FROM:.3f} of its "
        "last step on (the paper: Pythia-410M from 10k of 143k)",
        statistic="median with its 95% interval, inside the range",
        paper_kind="range stated in the text",
        paper_source="v1 §3.1 and Table 1",
        paper_lo=low,
        paper_hi=high,
    )
    pop = paper_later_pairs(cons, reference)
    if not len(pop):
        return Claim(
            "later in 0.02-0.07", title, NOT_TESTED, f"no such pairs of {reference}", **common
        )
    med = summarise(pop).iloc[0]
    inside = low <= med["median"] <= high
    numbers = (
        f"median {med['median']:.3g} [{med['median_lo']:.3g}, {med['median_hi']:.3g}] bits/byte "
        f"over {len(pop)} pairs, {'inside' if inside else 'outside'} {low}–{high}"
    )
    if not published:
        verdict = NOT_TESTED
        reason = (
            "a magnitude: this profile's models are not the paper's, so its KLs measure "
            f"orderings, not the published numbers (for the record: {numbers})"
        )
    else:
        verdict, reason = (HOLDS if inside else NOT_REPRODUCED), numbers
    return Claim(
        "later in 0.02-0.07",
        title,
        verdict,
        reason,
        ours=float(med["median"]),
        ours_lo=float(med["median_lo"]),
        ours_hi=float(med["median_hi"]),
        **common,
    )


def later_range(s: Settings) -> Claim:
    """:func:`later_in_paper_range` on the profile of ``s``: the main sizes' consecutive pairs,
    Table 1's reference run, and whether the profile's source can measure the published
    magnitudes (:func:`kltools.sources.can`)."""
    from kltools.settings.pretraining import consecutive, reference_model
    from kltools.sources import can

    return later_in_paper_range(
        consecutive(s, "sizes"),
        reference_model(s),
        published=can(s, "published_magnitudes"),
    )
