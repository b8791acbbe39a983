"""kltools.claims: every verdict function gives each of its three outcomes on constructed data."""

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
    assert (
        got.paper == pytest.approx(2.1 / 0.40)
        and got.paper_kind == "ratio of medians (ours: of medians)"
    )
    assert claims.eight_below_four(pairs(1.0), pairs(2.0)).paper is None


def test_floor_is_each_models_largest_noise_kl() -> None:
    """A bit-identical comparison (KL 0) must not pull the floor down: the floor of a model is
    its largest comparison, so a floor of {0, 0, big} per model is ``big``, computed here by hand."""
    zero = np.zeros(N)
    rows = []
    for model, big in (("m1", 3.0), ("m2", 5.0)):
        for label, noise in (("batch", zero), ("batch2", zero), ("bf16", RNG.normal(0, big, N))):
            labels = {
                "setting": "Floor",
                "a": model,
                "b": model,
                "model": model,
                "comparison": label,
            }
            rows.append((BASE, BASE + noise, labels))
    floor = build_pairs(rows, BYTES, np.arange(N), RES)
    top = claims.largest_floor(floor)
    assert sorted(top.frame.comparison) == ["bf16", "bf16"] and len(top) == 2
    d = floor.frame
    expected = [d[(d.model == m)].kl.max() for m in ("m1", "m2")]
    assert list(top.frame.sort_values("model").kl) == pytest.approx(expected)
    # quantization KLs between the zero comparisons and the bf16 floor: a median over all
    # comparisons (0) would say "floor < 8-bit"; the largest floor does not
    eight = pairs(1.0)
    four = pairs(100.0)
    assert np.median(eight.frame.kl) < np.median(top.frame.kl)
    got = claims.floor_below_quantization(floor, eight, four)
    assert got.verdict == "not reproduced" and "out of order" in got.reason
    assert claims.floor_below_quantization(floor, pairs(50.0), four).verdict == "holds"
    assert claims.floor_below_quantization(floor, eight, EMPTY).verdict == "not tested"


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


def _mc(verdicts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "role": [f"near{i}" for i in range(len(verdicts))],
            "kind": "near",
            "verdict": verdicts,
            "ratio": 1.0,
            "ratio_se": 0.05,
        }
    )


def test_estimate_matches_mc_three_outcomes() -> None:
    assert claims.estimate_matches_mc(_mc(["agree", "agree"])).verdict == "holds"
    assert claims.estimate_matches_mc(_mc(["agree", "disagree"])).verdict == "not reproduced"
    assert claims.estimate_matches_mc(_mc(["inconclusive"])).verdict == "not tested"


def test_later_in_paper_range_three_outcomes() -> None:
    inside, outside = pairs(0.0), pairs(0.0)
    inside = PairSet(inside.frame.assign(kl=0.05), np.full_like(inside.reps, 0.05))
    outside = PairSet(outside.frame.assign(kl=0.5), np.full_like(outside.reps, 0.5))
    assert claims.later_in_paper_range(inside).verdict == "holds"
    assert claims.later_in_paper_range(outside).verdict == "not reproduced"
    assert claims.later_in_paper_range(EMPTY).verdict == "not tested"


def test_verdicts_are_the_results_contract() -> None:
    from kltools.results import VERDICTS, validate_records

    recs = [claims.eight_below_four(pairs(1), EMPTY).record("q")]
    validate_records("claims", recs)
    assert recs[0]["verdict"] in VERDICTS
    assert list(claims.table([claims.eight_below_four(pairs(1), EMPTY)]).columns) == [
        "paper's claim",
        "verdict",
        "why",
    ]


def _consecutive(scales: list[float], model: str = "m") -> PairSet:
    """Consecutive pairs of one run at steps 0, 1, 2, … with KLs growing with ``scales``."""
    rows = [
        (
            BASE,
            BASE + RNG.normal(0, sc, size=N),
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

    wide_early = concat([_consecutive([8.0, 4.0, 1.0], "r1"), _consecutive([6.0, 1.0], "r2")])
    got = claims.early_segments_wider(wide_early)
    assert got.verdict == "holds" and "2 of 2 runs" in got.reason
    assert got.ours > 1
    narrow_early = concat([_consecutive([1.0, 4.0, 8.0], "r1"), _consecutive([6.0, 1.0], "r2")])
    miss = claims.early_segments_wider(narrow_early)
    assert miss.verdict == "not reproduced" and "1 of 2 runs" in miss.reason
    assert claims.early_segments_wider(_consecutive([3.0])).verdict == "not tested"
