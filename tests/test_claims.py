"""kltools.claims: every verdict function gives each of its three outcomes on constructed data,
and each claim is decided on what it says it measures (population and statistic) where an
older, looser definition would decide it otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kltools import claims
from kltools.pairs import PairSet, Resamples, build_pairs

N = 200
RNG = np.random.default_rng(2)
BASE = RNG.normal(-300, 30, size=N)
BYTES = np.full(N, 500.0)
RES = Resamples.draw(N, 40, seed=0)


def pairs(scale: float, n: int = 4, setting: str = "x") -> PairSet:
    """``n`` pairs whose KL grows with ``scale`` (tight intervals: many texts)."""
    rows = [
        (BASE, BASE + RNG.normal(0, scale, size=N), {"setting": setting, "a": "", "b": ""})
        for _ in range(n)
    ]
    return build_pairs(rows, BYTES, np.arange(N), RES)


EMPTY = pairs(1.0, n=0)

ORDERINGS = [
    (claims.later_seed_size, 3),
    (claims.later_below_early, 2),
    (claims.eight_below_four, 2),
    (claims.ft_below_random, 2),
]


@pytest.mark.parametrize(("fn", "k"), ORDERINGS)
def test_orderings_three_outcomes(fn, k: int) -> None:
    rising = [pairs(2.0**i) for i in range(k)]
    assert fn(*rising).verdict == "holds"
    falling = fn(*reversed(rising))
    assert falling.verdict == "not reproduced" and "out of order" in falling.reason
    missing = fn(*rising[:-1], EMPTY)
    assert missing.verdict == "not tested"
    assert fn(*rising).record("c")["chapter"] == "c"
    held = fn(*rising)
    assert held.ours_lo <= held.ours <= held.ours_hi  # ratio of medians, last / first


def test_ordering_carries_the_papers_ratio_where_it_prints_both() -> None:
    got = claims.ft_below_random(pairs(1.0), pairs(2.0))
    assert got.paper == pytest.approx(2.1 / 0.40) and got.paper_kind == "ratio of medians"
    none = claims.eight_below_four(pairs(1.0), pairs(2.0))
    assert none.paper is None and none.paper_kind.startswith("no number")
    # Table 1 prints single pairs and a mean, not medians: no ratio set beside ours
    unlike = claims.later_seed_size(pairs(1.0), pairs(2.0), pairs(4.0))
    assert unlike.paper is None and "not medians" in unlike.paper_kind
    assert unlike.population and unlike.statistic and unlike.origin == "paper"


def _floor_set() -> PairSet:
    """Per model: two batch comparisons (one bit-identical) in the Floor, and a dtype change
    (setting ``bf16``) 1000 times larger."""
    rows = []
    for model, small in (("m1", 1e-3), ("m2", 2e-3)):
        for setting, label, noise in (
            ("Floor", "batch default vs 1", np.zeros(N)),
            ("Floor", "batch 1 vs 64 (padding)", RNG.normal(0, small, N)),
            ("bf16", "dtype fp32 vs bf16", RNG.normal(0, 1000 * small, N)),
        ):
            labels = {"setting": setting, "a": model, "b": model, "model": model}
            rows.append((BASE, BASE + noise, {**labels, "comparison": label}))
    return build_pairs(rows, BYTES, np.arange(N), RES)


def test_the_floor_is_the_largest_floor_kl_and_excludes_dtype_changes() -> None:
    """The floor is the pipeline's repeatability (batch size, padding): the largest KL of the
    Floor setting, computed here by hand; a dtype change (bf16) is not part of it."""
    both = _floor_set()
    top = claims.floor_value(both)
    d = both.frame
    expected = d[d.setting == "Floor"].kl.max()
    assert top["kl"] == pytest.approx(expected) and top["comparison"].startswith("batch 1 vs 64")
    assert top["kl"] < d[d.setting == "bf16"].kl.min() / 1000
    # 8-bit between the floor and the dtype change: below the bf16 KLs, above the floor
    eight = pairs(0.5)
    assert np.median(eight.frame.kl) < d[d.setting == "bf16"].kl.min()
    got = claims.floor_below_quantization(both, eight, pairs(100.0))
    assert got.verdict == "holds" and got.origin == "book"
    assert got.ours == pytest.approx(expected) and got.other_label == "8-bit median"
    # with the dtype change counted as floor (the old reading) the floor would lie above 8-bit
    as_floor = PairSet(d.assign(setting="Floor"), both.reps)
    assert claims.floor_below_quantization(as_floor, eight, pairs(100.0)).verdict == (
        "not reproduced"
    )
    assert claims.floor_below_quantization(both, eight, EMPTY).verdict == "not tested"


def test_floor_pairs_change_no_dtype() -> None:
    from kltools.settings import GROUPS, ORDER, PAPER_SETTINGS
    from kltools.settings.numerics import DTYPE_PAIRS, FLOOR_PAIRS
    from kltools.settings.stores import FLOOR_SETTINGS

    for a, b, _ in FLOOR_PAIRS:
        assert FLOOR_SETTINGS[a][0] == FLOOR_SETTINGS[b][0]  # same dtype, other batch size
    for a, b, _ in DTYPE_PAIRS.values():
        assert FLOOR_SETTINGS[a][0] != FLOOR_SETTINGS[b][0]
    assert GROUPS["numerics"] == ("Floor", "bf16", "fp16")
    assert ORDER == (*PAPER_SETTINGS, "Floor", "bf16", "fp16") and len(PAPER_SETTINGS) == 10


def _fixed(kl: float, low: float, high: float) -> PairSet:
    """One pair with KL ``kl`` whose replicates spread evenly over [low, high]."""
    frame = pd.DataFrame({"setting": ["x"], "a": [""], "b": [""], "kl": [kl]})
    return PairSet(frame, np.linspace(low, high, 40)[:, None])


def test_ordered_medians_with_overlapping_intervals_are_not_reproduced() -> None:
    got = claims.ordering("x", "x", {"A": _fixed(0.10, 0.05, 0.20), "B": _fixed(0.12, 0.08, 0.25)})
    assert got.verdict == "not reproduced" and "overlap" in got.reason
    sep = claims.ordering("x", "x", {"A": _fixed(0.10, 0.05, 0.11), "B": _fixed(0.2, 0.15, 0.25)})
    assert sep.verdict == "holds"


def _trend(rho: list[float], first: list[float], last: list[float], n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(len(rho))],
            "pairs": n,
            "spearman": rho,
            "first": first,
            "last": last,
            "median": 0.1,
        }
    )


def test_consecutive_falls_three_outcomes() -> None:
    assert claims.consecutive_falls(_trend([-0.9, -0.5], [1, 1], [0.1, 0.2])).verdict == "holds"
    assert (
        claims.consecutive_falls(_trend([-0.9, 0.3], [1, 1], [0.1, 2])).verdict == "not reproduced"
    )
    assert claims.consecutive_falls(_trend([-0.9], [1], [0.1], n=2)).verdict == "not tested"


def test_diffusion_claims_three_outcomes() -> None:
    both = pd.DataFrame({"model": ["a", "b"], "c_l": [0.4, 0.6], "c_W": [0.9, 1.1]})
    assert claims.subdiffusive(both).verdict == "holds"
    assert claims.loglik_below_weight_space(both).verdict == "holds"
    worse = both.assign(c_l=[0.4, 1.2])
    assert claims.subdiffusive(worse).verdict == "not reproduced"
    assert claims.loglik_below_weight_space(worse).verdict == "not reproduced"
    # the pythia profile without weight distances: the weight-space claim was not tested
    no_w = both.drop(columns="c_W")
    got = claims.loglik_below_weight_space(no_w)
    assert got.verdict == "not tested" and "weight" in got.reason
    assert claims.subdiffusive(no_w).verdict == "holds"
    assert claims.subdiffusive(pd.DataFrame(columns=["model", "c_l"])).verdict == "not tested"


def test_weight_space_claim_judges_only_the_sizes_with_weight_distances() -> None:
    # weight distances computed for one size only (pythia: weight_models: [pythia-410m])
    one = pd.DataFrame({"model": ["a", "b"], "c_l": [0.4, 0.6], "c_W": [0.9, np.nan]})
    got = claims.loglik_below_weight_space(one)
    assert got.verdict == "holds"
    assert "1 of 1 sizes" in got.reason and "not tested: b" in got.reason
    assert got.ours == 0.4  # the median over the tested sizes only
    worse = one.assign(c_l=[1.0, 0.1])
    assert claims.loglik_below_weight_space(worse).verdict == "not reproduced"


def _mc(verdicts: list[str], corpus: float = 1.0, z_corpus: float = 0.0) -> pd.DataFrame:
    """Near pairs whose ratio on samples is 1 (verdicts given) and whose ratio on the text set
    is ``corpus`` ± 0.05 with z ``z_corpus``; the verdicts as :mod:`kltools.validation` gives
    them (a ratio 2 s.e. from 1 disagrees)."""
    from kltools.validation import mc_verdict

    return pd.DataFrame(
        {
            "role": [f"near{i}" for i in range(len(verdicts))],
            "kind": "near",
            "verdict": verdicts,
            "ratio": 1.0,
            "ratio_se": [0.5 if v == "inconclusive" else 0.05 for v in verdicts],
            "ratio_corpus": corpus,
            "ratio_corpus_se": 0.05,
            "z_corpus": z_corpus,
            "verdict_corpus": mc_verdict(0.05, z_corpus),
        }
    )


def test_estimate_on_samples_three_outcomes() -> None:
    assert claims.estimate_matches_mc_samples(_mc(["agree", "agree"])).verdict == "holds"
    got = claims.estimate_matches_mc_samples(_mc(["agree", "disagree"]))
    assert got.verdict == "not reproduced"
    assert claims.estimate_matches_mc_samples(_mc(["inconclusive"])).verdict == "not tested"


def test_the_estimate_is_judged_on_the_text_set_apart_from_the_samples() -> None:
    """On samples the estimate matches Monte Carlo; on the text set it is 3.6 times it: the
    text-set claim is not reproduced, the samples claim holds, each with its own numbers."""
    mc = pd.concat(
        [
            _mc(["agree", "agree"], corpus=3.6, z_corpus=12.0),
            _mc(["agree"], corpus=13.1, z_corpus=20.0).assign(kind="far", role="early_late"),
        ],
        ignore_index=True,
    )
    samples = claims.estimate_matches_mc_samples(mc)
    corpus = claims.estimate_matches_mc_corpus(mc)
    assert samples.verdict == "holds" and samples.ours == pytest.approx(1.0)
    assert corpus.verdict == "not reproduced" and corpus.ours == pytest.approx(3.6)
    assert corpus.claim != samples.claim and "text set" in corpus.population
    assert "far: early_late 13.10" in corpus.reason  # every pair kind listed
    assert claims.estimate_matches_mc_corpus(_mc(["agree"], 1.02, 0.4)).verdict == "holds"


def test_a_clear_disagreement_is_conclusive_however_wide_its_interval() -> None:
    """3.58 ± 0.76 (tiny's near pair on the text set) is wider than ±50 % but 6.8 s.e. from 1:
    a disagreement, not "inconclusive"; 8 ± 73 is inconclusive."""
    from kltools.validation import mc_verdict

    assert mc_verdict(0.38, (3.58 - 1) / 0.38) == "disagree"
    assert mc_verdict(36.0, 0.2) == "inconclusive"
    assert mc_verdict(0.05, 0.5) == "agree"
    assert mc_verdict(0.05, float("nan")) == "inconclusive"


def test_what_the_text_set_factor_means_is_computed() -> None:
    from kltools.validation import corpus_factor_markdown

    far = _mc(["agree"], 13.1, 20.0).assign(kind="far", role="early_late")
    off = pd.concat([_mc(["agree"], 3.6, 12.0), far], ignore_index=True)
    text = corpus_factor_markdown(off)
    assert "carries this factor" in text and "3.6 to 13 times" in text
    fine = pd.concat([_mc(["agree"], 1.01, 0.2), far], ignore_index=True)
    assert "can be read as KLs" in corpus_factor_markdown(fine)
    open_ = pd.concat([_mc(["agree"], 1.5, 0.5).assign(ratio_corpus_se=2.0), far])
    open_["verdict_corpus"] = ["inconclusive", "disagree"]
    assert "no near pair is conclusive" in corpus_factor_markdown(open_)


def _run(model: str, scales: dict[int, float], one: bool = True) -> list:
    return [
        (
            BASE,
            BASE + RNG.normal(0, sc, size=N),
            {
                "setting": "Consecutive",
                "a": "",
                "b": "",
                "model": model,
                "step": t,
                "step_next": t + 1000,
                "one_interval": one,
            },
        )
        for t, sc in scales.items()
    ]


def test_later_range_is_decided_on_the_reference_run_from_10k_of_143k() -> None:
    """The reference run's pairs from 10/143 of its training on are inside 0.02–0.07; its
    earlier pairs and another size's pairs are not. The pooled median of everything is outside
    the range, the paper's population inside it."""
    # KL in bits/byte of noise sd sc: sc² / (2 · 500 · ln 2); 0.04 bits/byte needs sc ≈ 5.3
    inside = {t: 5.3 for t in range(10_000, 143_000, 1000)}
    early = {t: 40.0 for t in range(0, 10_000, 1000)}
    others = {t: 40.0 for t in range(0, 143_000, 1000)}  # two larger sizes, far outside
    rows = _run("ref", {**early, **inside}) + _run("big", others) + _run("huge", others)
    cons = build_pairs(rows, BYTES, np.arange(N), RES)
    assert not 0.02 <= np.median(cons.frame.kl) <= 0.07  # the old, pooled reading
    pop = claims.paper_later_pairs(cons, "ref")
    assert set(pop.frame.model) == {"ref"} and pop.frame.step.min() == 10_000
    got = claims.later_in_paper_range(cons, "ref", published=True)
    assert got.verdict == "holds" and 0.02 <= got.ours <= 0.07
    assert (got.paper_lo, got.paper_hi) == (0.02, 0.07)
    # a profile whose models are not the paper's: a magnitude claim is not tested, numbers kept
    small = claims.later_in_paper_range(cons, "ref", published=False)
    assert small.verdict == "not tested" and "magnitude" in small.reason
    assert small.ours == got.ours
    assert claims.later_in_paper_range(cons, "none", published=True).verdict == "not tested"
    outside = build_pairs(_run("ref", {t: 40.0 for t in inside}), BYTES, np.arange(N), RES)
    assert claims.later_in_paper_range(outside, "ref", published=True).verdict == ("not reproduced")


def _named(pairs_: dict[tuple[str, str], float], setting: str) -> PairSet:
    rows = [
        (
            BASE,
            BASE + RNG.normal(0, sc, N),
            {"setting": setting, "a": f"{a}@step9", "b": f"{b}@step9"},
        )
        for (a, b), sc in pairs_.items()
    ]
    return build_pairs(rows, BYTES, np.arange(N), RES)


def test_a_reversed_table1_row_fails_the_ordering_and_is_named() -> None:
    """Pooled medians Later < Seed < Size hold (the Size median is pulled up by the pairs of
    one far model), but the reference run's pair with the next size lies below the seed
    average: Table 1's row-by-row ordering is reversed, so the claim is not reproduced."""
    later = pairs(1.0)
    seed = _named(
        {("ref", "ref-s1"): 8.0, ("ref", "ref-s2"): 8.0, ("ref-s1", "ref-s2"): 8.0}, "Seed"
    )
    size = _named(
        {
            ("ref", "mid"): 6.0,  # below the seeds: the reversed row
            ("ref", "far"): 40.0,
            ("mid", "far"): 40.0,
        },
        "Size",
    )
    pooled = claims.later_seed_size(later, seed, size)
    assert pooled.verdict == "holds"  # the pooled median alone
    rows = claims.seed_size_rows(seed, size, "ref")
    assert list(rows.order) == ["reversed", "in order"] and list(rows.pair)[0] == "ref vs mid"
    assert rows.seed_mean.iloc[0] == pytest.approx(seed.frame.kl.mean())
    got = claims.later_seed_size(later, seed, size, reference="ref")
    assert got.verdict == "not reproduced" and "reversed row by row for ref vs mid" in got.reason
    assert "row by row" in got.statistic
    text = claims.seed_size_markdown(seed, size, "ref")
    assert "1 of 2 rows are reversed" in text and "`far`" in text
    fine = _named({("ref", "mid"): 20.0, ("ref", "far"): 40.0, ("mid", "far"): 40.0}, "Size")
    assert claims.later_seed_size(later, seed, fine, reference="ref").verdict == "holds"


def test_verdicts_are_the_results_contract() -> None:
    from kltools.results import VERDICTS, validate_records

    recs = [claims.eight_below_four(pairs(1), EMPTY).record("q")]
    validate_records("claims", recs)
    assert recs[0]["verdict"] in VERDICTS
    assert list(claims.table([claims.eight_below_four(pairs(1), EMPTY)]).columns) == [
        "claim",
        "of",
        "population",
        "statistic",
        "verdict",
        "why",
    ]


def _consecutive(scales: list[float], model: str = "m") -> PairSet:
    """Consecutive pairs of one run at steps 0, 1, 2, … with KLs growing with ``scales``
    (scale 0: identical vectors, KL exactly 0)."""
    rows = [
        (
            BASE,
            BASE + (RNG.normal(0, sc, size=N) if sc else 0.0),
            {
                "setting": "Consecutive",
                "a": "",
                "b": "",
                "model": model,
                "step": i,
                "step_next": i + 1,
            },
        )
        for i, sc in enumerate(scales)
    ]
    return build_pairs(rows, BYTES, np.arange(N), RES)


def test_early_segments_wider_three_outcomes() -> None:
    from kltools.pairs import concat

    wide_early = concat(
        [_consecutive([8.0, 6.0, 4.0, 2.0, 1.0, 1.0], "r1"), _consecutive([6.0, 3.0, 1.0], "r2")]
    )
    got = claims.early_segments_wider(wide_early)
    assert got.verdict == "holds" and "2 of 2 runs" in got.reason
    assert got.ours > 1
    narrow_early = concat(
        [_consecutive([1.0, 4.0, 8.0], "r1"), _consecutive([6.0, 3.0, 1.0], "r2")]
    )
    miss = claims.early_segments_wider(narrow_early)
    assert miss.verdict == "not reproduced" and "1 of 2 runs" in miss.reason
    assert claims.early_segments_wider(_consecutive([3.0, 2.0])).verdict == "not tested"
    # warm-up pairs (before after_step, or not one grid interval apart) are left out
    warm = _consecutive([0.5, 0.5, 8.0, 6.0, 4.0, 2.0, 1.0, 1.0])
    assert claims.early_segments_wider(warm).verdict == "not reproduced"  # warm-up as "early"
    got = claims.early_segments_wider(warm, after_step=2)
    assert got.verdict == "holds" and claims.early_late_rates(warm, 2).left_out.iloc[0] == 2
    uneven = PairSet(warm.frame.assign(one_interval=warm.frame.step >= 2), warm.reps)
    assert claims.early_segments_wider(uneven).verdict == "holds"


def test_identical_first_checkpoints_do_not_decide_early_segments_wider() -> None:
    """Pythia's step0 and step1 are the same weights: the first pair's KL is exactly 0. The old
    definition (first pair against last) would call the trajectory slow early; the new one
    excludes the degenerate pair, lists it, and reads the early third against the late third."""
    run = _consecutive([0.0, 8.0, 6.0, 5.0, 3.0, 2.0, 1.0])
    f = run.frame
    assert f.kl.iloc[0] == 0 and f.kl.iloc[0] < f.kl.iloc[-1]  # the old reading: not wider
    rates = claims.early_late_rates(run)
    assert rates.excluded.iloc[0] == "0→1" and rates.pairs.iloc[0] == 6
    assert rates.early.iloc[0] == pytest.approx(np.median(f.kl.iloc[1:3]))
    assert rates.late.iloc[0] == pytest.approx(np.median(f.kl.iloc[-2:]))
    got = claims.early_segments_wider(run)
    assert got.verdict == "holds" and "excluded as degenerate (KL exactly 0): m: 0→1" in got.reason
    # and a single large first pair does not decide either: the old reading says "wider"
    spike = _consecutive([30.0, 1.0, 1.0, 2.0, 3.0, 4.0, 8.0, 8.0, 8.0])
    assert spike.frame.kl.iloc[0] > spike.frame.kl.iloc[-1]
    assert claims.early_segments_wider(spike).verdict == "not reproduced"
