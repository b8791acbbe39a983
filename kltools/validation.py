"""Validating the estimator (chapter ``method``): Monte Carlo, the number of texts, centring.

The paper's estimate ``Var(ℓ_i − ℓ_j)/2`` approximates the symmetrised KL for nearby models
(a second-order expansion). Here it is set beside a Monte-Carlo KL
(:mod:`kltools.montecarlo`) for checkpoint pairs from near to far (:func:`validation_pairs`),
and its sampling error is followed as the number of texts grows (:func:`kl_vs_n`). The
chapter reads the raw pretraining store (no preprocessing: the estimator itself is tested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.config import Settings
from kltools.errors import KLToolsError
from kltools.pairs import PairSet, Resamples, build_pairs
from kltools.settings.stores import pretraining_store, resamples, text_positions

__all__ = [
    "agreement_threshold",
    "centring_check",
    "corpus_factor_markdown",
    "estimate_vs_mc",
    "heldout_losses",
    "kl_vs_n",
    "mc_table",
    "mc_report",
    "mc_verdict",
    "method_comparison",
    "n_studies",
    "pair_difference",
    "se_exponent",
    "validation_pairs",
    "variance_se",
]


def _raw(s: Settings, name: str) -> Any:
    """A run group of the raw store (the estimator is tested on unprocessed vectors)."""
    from kltools.settings.pretraining import group

    return group(s.replace(preprocess=False), name)


def validation_pairs(s: Settings) -> list[dict[str, Any]]:
    """Checkpoint pairs that probe where the estimate holds (near) and breaks (far).

    Roles (``s.mc_pairs``): ``near_late`` (the reference run's last two checkpoints),
    ``near_late2`` (the consecutive pair before them), kind "near"; ``mid`` (two consecutive
    checkpoints in the middle of the post-warm-up phase), kind "mid"; ``seed`` (the first two
    seed runs at their last common step), ``size`` (the reference run vs the next larger
    size), ``far_size`` (smallest vs largest size), ``early_late`` (the reference run at the
    warm-up end vs its final checkpoint), kind "far".

    Returns dicts with ``role``, ``kind``, ``a`` and ``b`` as ``(model, step)``.
    """
    from kltools.settings.pretraining import reference_model

    ref = reference_model(s)
    steps = _raw(s, "sizes").finite_steps(ref)
    sizes, seeds = _raw(s, "sizes").models, _raw(s, "seeds").models
    last = _raw(s, "all").last_common_step()
    post = [t for t in steps if t >= s.after_step]
    i = sizes.index(ref)
    mid = min(len(post) // 2, len(post) - 2)
    table = {
        "near_late": ((ref, steps[-2]), (ref, steps[-1])),
        "near_late2": ((ref, steps[-3]), (ref, steps[-2])),
        "mid": ((ref, post[mid]), (ref, post[mid + 1])) if len(post) > 1 else None,
        "seed": ((seeds[0], last), (seeds[1], last)) if len(seeds) > 1 else None,
        "size": ((ref, last), (sizes[i + 1] if i + 1 < len(sizes) else sizes[i - 1], last)),
        "far_size": ((sizes[0], last), (sizes[-1], last)),
        "early_late": ((ref, min(steps, key=lambda t: abs(t - s.after_step))), (ref, steps[-1])),
    }
    out = []
    for role in s.mc_pairs:
        if role not in table:
            raise KLToolsError(f"unknown validation pair role {role!r}; use {', '.join(table)}")
        if table[role] is None:
            raise KLToolsError(f"{role}: the store has too few checkpoints or seeds for it")
        kind = "near" if role.startswith("near") else ("mid" if role == "mid" else "far")
        out.append({"role": role, "kind": kind, "a": table[role][0], "b": table[role][1]})
    return out


def pair_difference(s: Settings) -> dict[str, Any]:
    """The first validation pair's vectors and what the estimator makes of them.

    ``a``, ``b`` (DataArrays), ``labels``, ``mean`` and ``var`` of ``ℓ_a − ℓ_b`` (nats),
    ``kl_nats`` (``var/2``) and ``kl_bpb``.
    """
    from kltools.kl import half_variance, kl_between

    (ma, ta), (mb, tb) = validation_pairs(s)[0]["a"], validation_pairs(s)[0]["b"]
    ll = pretraining_store(s).loglik
    a, b = ll.sel(model=ma, step=ta), ll.sel(model=mb, step=tb)
    d = (a - b).values.astype(np.float64)
    return {
        "a": a,
        "b": b,
        "labels": [f"{ma}@{ta}", f"{mb}@{tb}"],
        "mean": float(d.mean()),
        "var": float(d.var()),
        "kl_nats": float(half_variance(d)),
        "kl_bpb": kl_between(a, b),
    }


def centring_check(s: Settings, n_show: int = 120) -> dict[str, Any]:
    """Double-centring of a few checkpoints (every run's last, every 4th of the reference run).

    Returns ``L`` and ``Q`` (first ``n_show`` texts), ``labels``, and the KL of the first two
    rows by the Gram form (``gram``) and by ``Var/2`` (``direct``): the same number.
    """
    from kltools.kl import double_centre, kl_between, kl_matrix
    from kltools.settings.pretraining import reference_model

    ds = pretraining_store(s)
    ref, runs = reference_model(s), _raw(s, "all")
    picks = [(m, runs.finite_steps(m)[-1]) for m in runs.models]
    picks += [(ref, t) for t in runs.finite_steps(ref)[:-1][::4]]
    rows = xr.concat([ds.loglik.sel(model=m, step=t, drop=True) for m, t in picks], dim="ckpt")
    rows = rows.assign_coords(ckpt=[f"{m}@{t}" for m, t in picks])
    L = rows.values.astype(np.float64)
    gram = float(kl_matrix(rows, dim="ckpt").values[0, 1])
    return {
        "L": L[:, :n_show],
        "Q": double_centre(L)[:, :n_show],
        "labels": list(rows.ckpt.values),
        "gram": gram,
        "direct": kl_between(rows.isel(ckpt=0), rows.isel(ckpt=1)),
    }


def corpus_estimates(s: Settings) -> PairSet:
    """The estimate of every validation pair on the analysis texts (raw store, all texts)."""
    ds = pretraining_store(s)
    ll = ds.loglik
    rows = [
        (
            ll.sel(model=ma, step=ta).values,
            ll.sel(model=mb, step=tb).values,
            {
                "setting": "Monte-Carlo check",
                "role": p["role"],
                "kind": p["kind"],
                "a": f"{ds['spec_base'].sel(model=ma).item()}@step{ta}",
                "b": f"{ds['spec_base'].sel(model=mb).item()}@step{tb}",
            },
        )
        for p in validation_pairs(s)
        for (ma, ta), (mb, tb) in [(p["a"], p["b"])]
    ]
    return build_pairs(rows, ll["text_bytes"].values, text_positions(s, ll), resamples(s))


def mc_table(mc: pd.DataFrame) -> pd.DataFrame:
    """The Monte-Carlo check as a page shows it: one short row per pair, one unit system.

    ``mc``: :func:`estimate_vs_mc`. KLs in bits/byte, ratios without unit; each value with its
    uncertainty in one cell ("value ± 2 s.e."). The estimate on the text set (what every
    chapter uses) comes first, the estimate on the models' own samples second, each with its
    verdict; the other columns of ``mc`` (both directions, z) stay in ``mc``.
    """

    def pm(value: float, se: float) -> str:
        if not np.isfinite(value):
            return "—"
        digits = max(0, 1 - int(np.floor(np.log10(2 * se)))) if se > 0 else 3
        return f"{value:.{min(digits, 6)}f} ± {2 * se:.{min(digits, 6)}f}"

    return pd.DataFrame(
        {
            "pair": mc.role,
            "kind": mc.kind,
            "Monte-Carlo KL [bits/byte]": [pm(v, e) for v, e in zip(mc.mc_sym, mc.mc_sym_se)],
            "estimate on the text set [bits/byte]": [
                pm(v, e) for v, e in zip(mc.estimate, mc.estimate_se)
            ],
            "text set / MC": [pm(v, e) for v, e in zip(mc.ratio_corpus, mc.ratio_corpus_se)],
            "text-set verdict": mc.verdict_corpus,
            "on samples / MC": [pm(v, e) for v, e in zip(mc.ratio, mc.ratio_se)],
            "samples verdict": mc.verdict,
        }
    )


def mc_verdict(ratio_se: float, z: float) -> str:
    """One pair's Monte-Carlo verdict: ``disagree`` when the estimate is more than 2 s.e. from
    the Monte-Carlo KL (however wide the ratio's interval); else ``agree`` when the ratio's
    ±2 s.e. interval is within ±50 %, ``inconclusive`` when it is wider (or undefined)."""
    if not np.isfinite(z):
        return "inconclusive"
    if abs(z) > 2.0:
        return "disagree"
    return "agree" if np.isfinite(ratio_se) and 2 * ratio_se <= 0.5 else "inconclusive"


def mc_length_for(ds: xr.Dataset, length: int | None, context: int | None = None) -> int:
    """Tokens per Monte-Carlo sample: ``length`` if positive, else the texts' median length.

    The median number of scored tokens per text in the store (so the sampled sequences are as
    long as the texts the estimate is computed on), capped at ``context - 1``.
    """
    if length is not None and int(length) > 0:
        out = int(length)
    else:
        n_tok = ds["n_tokens"] if "n_tokens" in ds else None
        if n_tok is None:
            raise KLToolsError(
                "mc_length 0 (automatic) needs n_tokens in the store; give mc_length"
            )
        out = int(np.median(np.asarray(n_tok.values).ravel()))
    if context is not None:
        out = min(out, int(context) - 1)
    return max(1, out)


#: the columns of :func:`estimate_vs_mc`
MC_COLUMNS: tuple[str, ...] = (
    "role", "kind", "a", "b", "length", "n_samples", "mc_pq", "mc_pq_se", "mc_qp", "mc_qp_se",
    "mc_sym", "mc_sym_se", "estimate_sampled", "estimate_sampled_se", "ratio", "ratio_se", "z",
    "agree", "verdict", "estimate", "estimate_se", "estimate_lo", "estimate_hi", "ratio_corpus",
    "ratio_corpus_se", "z_corpus", "verdict_corpus",
)  # fmt: skip

#: why there is no Monte-Carlo check when the source runs no model
NO_MODELS = (
    "the Monte-Carlo check samples texts from the models, and this profile's source has their "
    "log-likelihood vectors only (no model is run)"
)


def estimate_vs_mc(s: Settings) -> pd.DataFrame:
    """Validate the estimator against Monte-Carlo KL, and measure the effect of the text set.

    For each pair ``(p, q)``, :func:`kltools.montecarlo.mc_kl` draws ``n_samples`` sequences of
    ``length`` tokens from p (KL(p‖q) = mean log-ratio) and from q (KL(q‖p)); their average
    is the symmetrised KL (half the Jeffreys divergence) that the estimate approximates.
    Two estimates are set beside it:

    * ``estimate_sampled``: the paper's estimator, Var/2 of the log-likelihood difference,
      with the models' own samples as the text set (one direction's samples at a time, then
      averaged). This is the setting the second-order argument is about (texts drawn from
      the model), so it tests the approximation itself: ``ratio`` = estimate_sampled / MC.
    * ``estimate``: the same estimator on the store's fixed text set (the corpus; what every
      chapter uses), with a bootstrap over texts: ``ratio_corpus`` = estimate / MC. It differs
      from 1 when the corpus is not distributed like the models' samples.

    The pairs are :func:`validation_pairs`; ``s.mc_samples`` sequences per direction of
    ``s.mc_length`` tokens (0: the texts' median length, :func:`mc_length_for`).

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``role``, ``kind``, ``a``, ``b``, ``length``, ``n_samples``;
        ``mc_pq``, ``mc_pq_se``, ``mc_qp``, ``mc_qp_se``, ``mc_sym``, ``mc_sym_se`` (bits/byte);
        ``estimate_sampled``, ``estimate_sampled_se``, ``ratio``, ``ratio_se``, ``z`` and
        ``agree`` (|z| ≤ 2, from a joint bootstrap over the samples) and ``verdict``
        ("disagree" when |z| > 2; else "agree", or "inconclusive" when the ratio's ±2 s.e.
        interval is wider than ±50%); ``estimate``, ``estimate_se``, ``estimate_lo``, ``estimate_hi``,
        ``ratio_corpus``, ``ratio_corpus_se``, ``z_corpus`` and ``verdict_corpus`` (as
        ``verdict``, for the text set).
    """
    from kltools.sources import can

    if not can(s, "models"):
        empty = pd.DataFrame(columns=list(MC_COLUMNS))
        empty.attrs["not_run"] = NO_MODELS
        return empty
    from transformers.utils import logging as hf_logging

    from kltools.models import load_model, max_length
    from kltools.montecarlo import half_variance_vs_mean, mc_kl

    hf_logging.disable_progress_bar()
    cache: dict[str, Any] = {}

    def get(spec: str) -> Any:
        if spec not in cache:
            cache[spec] = load_model(spec, dtype=s.dtype, device=s.device)
        return cache[spec]

    ds = pretraining_store(s)
    pairs = validation_pairs(s)
    corpus = corpus_estimates(s)
    seed, n_boot, n_samples = s.seed, s.n_boot, s.mc_samples
    rows = []
    for k, pair in enumerate(pairs):
        est = float(corpus.frame.kl.iloc[k])
        est_se = float(corpus.reps[:, k].std(ddof=1))
        p = get(corpus.frame.a.iloc[k])
        q = get(corpus.frame.b.iloc[k])
        n_len = mc_length_for(ds, s.mc_length, max_length(p.model, p.tokenizer))
        dev = p.info.get("device", s.device)
        common = dict(n_samples=n_samples, length=n_len, batch_size=s.mc_batch_size, device=dev)
        pq = mc_kl(p.model, q.model, p.tokenizer, seed=seed + 2 * k, **common)
        qp = mc_kl(q.model, p.model, p.tokenizer, seed=seed + 2 * k + 1, **common)
        check = half_variance_vs_mean([pq, qp], n_boot=n_boot, seed=seed + k)
        sym = check["mc"]
        sym_se = math.hypot(pq.se_bits_per_byte, qp.se_bits_per_byte) / 2
        ratio_c = est / sym if sym > 0 else float("nan")
        ratio_c_se = abs(ratio_c) * math.hypot(
            est_se / est if est else 0.0, sym_se / sym if sym else 0.0
        )
        z_c = (est - sym) / math.hypot(est_se, sym_se) if (est_se or sym_se) else float("nan")
        z = check["z"]
        rows.append(
            {
                "role": pair["role"],
                "kind": pair["kind"],
                "a": corpus.frame.a.iloc[k],
                "b": corpus.frame.b.iloc[k],
                "length": n_len,
                "n_samples": int(n_samples),
                "mc_pq": pq.bits_per_byte,
                "mc_pq_se": pq.se_bits_per_byte,
                "mc_qp": qp.bits_per_byte,
                "mc_qp_se": qp.se_bits_per_byte,
                "mc_sym": sym,
                "mc_sym_se": sym_se,
                "estimate_sampled": check["half_var"],
                "estimate_sampled_se": check["half_var_se"],
                "ratio": check["ratio"],
                "ratio_se": check["ratio_se"],
                "z": z,
                "agree": bool(abs(z) <= 2.0),
                "verdict": mc_verdict(check["ratio_se"], z),
                "estimate": est,
                "estimate_se": est_se,
                "estimate_lo": float(corpus.frame.lo.iloc[k]),
                "estimate_hi": float(corpus.frame.hi.iloc[k]),
                "ratio_corpus": ratio_c,
                "ratio_corpus_se": ratio_c_se,
                "z_corpus": z_c,
                "verdict_corpus": mc_verdict(ratio_c_se, z_c),
            }
        )
    return pd.DataFrame(rows)


def agreement_threshold(mc: pd.DataFrame, column: str = "verdict") -> float | None:
    """The Monte-Carlo KL (bits/byte) up to which the estimator agrees with Monte Carlo, or None.

    Pairs sorted by ``mc_sym``: the largest value such that every pair at or below it has
    ``column`` (``verdict``: on the models' samples; ``verdict_corpus``: on the text set)
    "agree". None if the closest pair does not agree (no clean threshold).
    """
    last = None
    for row in mc.sort_values("mc_sym").itertuples():
        if getattr(row, column) != "agree":
            break
        last = float(row.mc_sym)
    return last


def se_exponent(study: pd.DataFrame) -> float:
    """Least-squares slope of log(bootstrap s.e.) on log N in a :func:`kl_vs_n` table (1/√N: −0.5).

    The fitted exponent is what pages and figures state; −0.5 is only the reference."""
    ok = (study.se > 0) & (study.n > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(study.n[ok]), np.log(study.se[ok]), 1)[0])


def variance_se(d: np.ndarray) -> float:
    """Sampling s.e. of ``Var(d)/2`` over texts: ``sqrt((mu4 - sigma^4) / N) / 2``."""
    d = np.asarray(d, dtype=np.float64)
    c = d - d.mean()
    mu4 = float(np.mean(c**4))
    s2 = float(np.mean(c**2))
    return math.sqrt(max(mu4 - s2**2, 0.0) / d.size) / 2


def kl_vs_n(s: Settings, role: str) -> pd.DataFrame:
    """The estimate of one validation pair on nested subsets of ``N`` texts (``s.n_grid``).

    Texts are put once in a seeded random order; ``N`` takes the first ``N``. Each ``N`` has
    its own resamples (of its ``N`` texts, same seed). Returns ``n``, ``kl`` (bits/byte),
    ``se`` (bootstrap), ``se_formula`` (:func:`variance_se`, bits/byte), ``lo``, ``hi``.
    """
    from kltools.kl import nats_to_bpb

    pair = next(p for p in validation_pairs(s) if p["role"] == role)
    ll = pretraining_store(s).loglik
    a = ll.sel(model=pair["a"][0], step=pair["a"][1]).values
    b = ll.sel(model=pair["b"][0], step=pair["b"][1]).values
    tb = ll["text_bytes"].values.astype(np.float64)
    order = np.random.default_rng(s.seed).permutation(tb.size)
    rows = []
    for n in sorted({min(int(n), tb.size) for n in s.n_grid}):
        idx = order[:n]
        est = build_pairs(
            [(a[idx], b[idx], {"setting": "N study", "a": "", "b": ""})],
            tb[idx],
            np.arange(n),
            Resamples.draw(n, s.n_boot, s.seed),
        )
        rows.append(
            {
                "n": n,
                "kl": float(est.frame.kl[0]),
                "se": float(est.reps[:, 0].std(ddof=1)),
                "se_formula": float(nats_to_bpb(variance_se(a[idx] - b[idx]), tb[idx].mean())),
                "lo": float(est.frame.lo[0]),
                "hi": float(est.frame.hi[0]),
            }
        )
    return pd.DataFrame(rows)


def n_studies(s: Settings) -> dict[str, pd.DataFrame]:
    """:func:`kl_vs_n` for the first validation pair and the first far pair (role -> table)."""
    pairs = validation_pairs(s)
    far = next((p for p in pairs if p["kind"] == "far"), pairs[-1])
    return {p["role"]: kl_vs_n(s, p["role"]) for p in (pairs[0], far)}


def heldout_losses(s: Settings, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Held-out loss (nats/token) per checkpoint, where the source records one.

    Columns ``model``, ``step``, ``heldout_loss`` (:func:`kltools.sources.heldout_losses`;
    an empty frame for a source without them).
    """
    from kltools.sources import heldout_losses as losses

    return losses(s, models)


def method_comparison(s: Settings, mc: pd.DataFrame) -> pd.DataFrame:
    """Chapter 1's "compared with the paper" table (text set, error size, near-pair agreement).

    ``mc`` is :func:`estimate_vs_mc`'s table. The paper's relative error is Table 1's
    100k→101k consecutive pair, 0.00042 / 0.023.
    """
    from kltools import paper
    from kltools.kl import mean_bytes_of

    loglik = pretraining_store(s).loglik
    near = mc[mc.kind == "near"]
    rel = near.estimate_se / near.estimate
    rows = [
        ("texts N", f"{paper.TEXT_SET['n_texts']}", f"{loglik.sizes['text']}", ""),
        (
            "mean bytes per text B̄",
            f"{paper.TEXT_SET['mean_bytes']:.1f}",
            f"{mean_bytes_of(loglik):.1f}",
            "",
        ),
        (
            "relative s.e. of a late consecutive KL",
            f"{_t1_rel():.3f} (100k→101k)",
            f"{rel.iloc[0]:.3f} ({near.a.iloc[0]}→{near.b.iloc[0]})" if len(near) else "—",
            "bootstrap over texts",
        ),
        (
            "estimate ≈ KL for near models",
            "stated (second-order expansion)",
            (
                f"{int((near.verdict == 'agree').sum())}/{len(near)} near pairs agree within 2 s.e., "
                f"{int((near.verdict == 'inconclusive').sum())} inconclusive; "
                f"ratios {', '.join(f'{r:.2f} ± {2 * e:.2f}' for r, e in zip(near.ratio, near.ratio_se))}"
            )
            if len(near)
            else "—",
            "estimator on the models' own samples vs Monte Carlo",
        ),
        (
            "estimate on the fixed text set / KL, near pairs",
            "not reported (Pile texts, Pile-trained models)",
            ", ".join(
                f"{r:.2f} ± {2 * e:.2f}" for r, e in zip(near.ratio_corpus, near.ratio_corpus_se)
            )
            if len(near)
            else "—",
            "estimator on the corpus texts vs Monte Carlo",
        ),
    ]
    return pd.DataFrame(rows, columns=["quantity", "paper", "ours", "how ours is measured"])


def _t1_rel() -> float:
    """Relative error of Table 1's 100k→101k pair (printed error / value)."""
    from kltools import paper

    num = paper.TABLE1["consecutive 100k→101k"]
    return float(num.error / num.value)


def _listing(df: pd.DataFrame, col: str = "ratio") -> str:
    return (
        "; ".join(
            f"{r.role}: {getattr(r, col):.2f} ± {2 * getattr(r, col + '_se'):.2f}"
            for r in df.itertuples()
        )
        or "none"
    )


def mc_report(s: Settings, mc: pd.DataFrame) -> str:
    """The chapter's reading of the Monte-Carlo table (Markdown, every number from ``mc``).

    The text set first (the estimate every chapter reports), then the models' own samples (the
    approximation itself), then what the text-set ratio means for every other KL of the book
    (:func:`corpus_factor_markdown`). KLs in bits/byte throughout.
    """
    if not len(mc):
        return (
            "**Not run here**: "
            + mc.attrs.get("not_run", "no validation pair was checked by Monte Carlo")
            + ". Both claims below are therefore *not tested*; the `pythia` and the offline "
            "profiles run this check."
        )
    near, mid, far = (mc[mc.kind == k] for k in ("near", "mid", "far"))
    threshold = agreement_threshold(mc)
    over = bool(((mc.ratio_corpus - 1) > 2 * mc.ratio_corpus_se).all())
    from kltools.settings.pretraining import reference_model

    loss = heldout_losses(s, [reference_model(s)]) if _has_heldout(s) else pd.DataFrame()
    final_loss = float(loss.sort_values("step").heldout_loss.iloc[-1]) if len(loss) else None
    text = (
        f"**On the text set every chapter uses**, the estimate is {_listing(mc, 'ratio_corpus')} "
        "times the symmetrised Monte-Carlo KL (±2 s.e.; verdicts "
        + ", ".join(f"{r.role} **{r.verdict_corpus}**" for r in mc.itertuples())
        + "). The corpus texts are not distributed like the models' samples: for two nearby models the "
        r"estimate is $\delta^\top F_D\, \delta/2$, with $F_D$ the covariance of the score over the text distribution D, "
        r"while the KL is $\delta^\top F_p\, \delta/2$ with the model's own Fisher information $F_p$. "
        "A model that fits D poorly has larger gradients on D than on its own samples, so $F_D > F_p$"
    )
    text += (
        f"; the reference run ends at {final_loss:.2f} nats/token on held-out corpus text, far from "
        "fitting it. "
        if final_loss is not None
        else ". "
    )
    text += (
        "Here the text-set estimate overstates the KL for every pair (each ratio above 1 by more than 2 s.e.)."
        if over
        else "Here the text-set ratios are not all above 1 within their errors."
    )
    text += (
        f"\n\n**On the models' own samples** (the setting of the second-order argument), near pairs: "
        f"{_listing(near)}; verdicts {', '.join(f'{r.role} **{r.verdict}**' for r in near.itertuples())} "
        "(an interval wider than ±50% is called inconclusive). "
        f"Mid pair: {_listing(mid)} ({', '.join(r.verdict for r in mid.itertuples()) or 'none'}); "
        f"far pairs: {_listing(far)} "
        f"({', '.join(f'{r.role} {r.verdict}' for r in far.itertuples()) or 'none'}). "
    )
    if threshold is not None:
        worst = mc.ratio.idxmax()
        text += (
            f"On samples the approximation holds up to a Monte-Carlo KL of about {threshold:.3g} "
            f"bits/byte here (every pair at or below it agrees) and departs from 1 beyond it "
            f"(largest ratio: {mc.ratio.max():.2f} at {mc.mc_sym[worst]:.3g} bits/byte)."
        )
    else:
        text += (
            "The pair with the smallest Monte-Carlo KL does not agree on samples, so this run shows "
            "no clean range where the approximation holds (too few samples, or no pair is near enough)."
        )
    return text + "\n\n" + corpus_factor_markdown(mc)


def _has_heldout(s: Settings) -> bool:
    from kltools.sources import can

    return can(s, "heldout_loss")


def corpus_factor_markdown(mc: pd.DataFrame) -> str:
    """What the text-set ratio means for every other KL of the book (Markdown, computed).

    Every chapter reports the estimate on the text set; the Monte-Carlo check says by what
    factor that estimate differs from the KL of the models' own distributions, pair kind by
    pair kind.
    """
    if not len(mc) or not np.isfinite(mc.ratio_corpus.astype(float)).any():
        why = f" ({mc.attrs['not_run']})" if mc.attrs.get("not_run") else ""
        return f"No Monte-Carlo ratio was computed on this run{why}: the factor is unknown."
    by_kind = "; ".join(
        f"{kind} pairs {g.ratio_corpus.min():.2g}–{g.ratio_corpus.max():.2g}×"
        if len(g) > 1
        else f"{kind} pairs {g.ratio_corpus.iloc[0]:.2g}×"
        for kind, g in mc.groupby("kind", sort=False)
    )
    lo, hi = float(mc.ratio_corpus.min()), float(mc.ratio_corpus.max())
    near = mc[mc.kind == "near"]
    decided = near[2 * near.ratio_corpus_se <= 0.5] if len(near) else near
    factor = f"{lo:.2g} to {hi:.2g} times the Monte-Carlo KL ({by_kind})"
    if not len(decided):
        head = (
            "**What this means for the rest of the book.** Every other KL of this book is the "
            "same estimate on the same text set. On this run no near pair is conclusive, so "
            f"whether the book's small KLs equal the models' KL is open; the pairs checked give "
            f"{factor}: "
        )
    elif bool((abs(decided.z_corpus) <= 2).all()):
        head = (
            "**What this means for the rest of the book.** On this text set the estimate matches "
            "the KL for the near pairs, so the book's small KLs can be read as KLs; "
        )
    else:
        head = (
            "**What this means for the rest of the book.** Every other KL of this book is the "
            "same estimate on the same text set, so it carries this factor: it is the text "
            f"set's KL, not the models' — here {factor}. "
        )
    return head + (
        f"the factor varies ×{hi / lo:.1f} across the pairs checked, so ratios between settings "
        "(the orderings) can shift by up to that much, and a published number can only be set "
        "beside ours on the paper's own text set and models."
    )


def n_report(studies: Mapping[str, pd.DataFrame]) -> str:
    """How the near pair's estimate and error move with N (Markdown)."""
    first = next(iter(studies.values()))
    a, z = first.iloc[0], first.iloc[-1]
    return (
        f"For the near pair, going from N = {a.n:.0f} to N = {z.n:.0f} texts moves the estimate from "
        f"{a.kl:.4f} to {z.kl:.4f} bits/byte and its bootstrap s.e. from {a.se:.4f} to {z.se:.4f} "
        f"(×{z.se / a.se:.2f}; 1/√N would give ×{(a.n / z.n) ** 0.5:.2f}). The closed-form s.e. at "
        f"the largest N is {z.se_formula:.4f}; the fitted bootstrap error scales as "
        f"$N^{{{se_exponent(first):.2f}}}$ ($1/\\sqrt{{N}}$ would be $N^{{-0.50}}$)."
    )
