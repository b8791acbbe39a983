"""kltools.pairs: the one bootstrap engine (shared resamples, restricted to a setting's texts,
B̄ per resample) against a direct computation, and the summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kltools.pairs import Resamples, build_pairs, concat, summarise

RNG = np.random.default_rng(11)
N = 30
A = RNG.normal(-100, 10, size=(3, N))
B = A + RNG.normal(0, 1, size=(3, N)) * np.array([[0.5], [1.0], [2.0]])
BYTES = RNG.integers(100, 500, size=N).astype(float)


def direct(d: np.ndarray, nbytes: np.ndarray) -> float:
    """Var(d)/2/(B̄ ln 2) over an explicit list of texts (repeats allowed)."""
    return float(np.var(d) / 2 / (np.mean(nbytes) * math.log(2)))


def rows(n: int = 3) -> list:
    return [(A[i], B[i], {"setting": "X", "a": f"a{i}", "b": f"b{i}"}) for i in range(n)]


def test_point_estimates_and_replicates_are_the_definition() -> None:
    res = Resamples.draw(N, 25, seed=4)
    ps = build_pairs(rows(), BYTES, np.arange(N), res)
    for i in range(3):
        assert ps.frame.kl[i] == pytest.approx(direct(A[i] - B[i], BYTES), rel=1e-12)
    # replicate r of pair i: the resample's texts, with repeats, and their own B̄
    idx = np.random.default_rng(4).integers(0, N, size=(25, N))
    for r in (0, 7, 24):
        want = direct(A[1, idx[r]] - B[1, idx[r]], BYTES[idx[r]])
        assert ps.reps[r, 1] == pytest.approx(want, rel=1e-9)
    assert set(ps.frame.columns) >= {"setting", "a", "b", "kl", "lo", "hi", "n_texts", "mean_bytes"}
    assert (ps.frame.lo <= ps.frame.kl).all() and (ps.frame.kl <= ps.frame.hi).all()


def test_a_subset_of_texts_uses_the_same_resamples_restricted() -> None:
    res = Resamples.draw(N, 12, seed=9)
    keep = np.array([i for i in range(N) if i % 4])  # a setting that dropped some texts
    ps = build_pairs(
        [(A[0, keep], B[0, keep], {"setting": "Y", "a": "", "b": ""})], BYTES[keep], keep, res
    )
    idx = np.random.default_rng(9).integers(0, N, size=(12, N))
    for r in range(12):
        drawn = idx[r][np.isin(idx[r], keep)]  # the shared resample, restricted to the kept texts
        assert ps.reps[r, 0] == pytest.approx(
            direct(A[0, drawn] - B[0, drawn], BYTES[drawn]), rel=1e-9
        )
    assert ps.frame.n_texts[0] == keep.size


def test_summaries_use_the_replicates_of_the_group() -> None:
    res = Resamples.draw(N, 40, seed=1)
    one = build_pairs(rows(), BYTES, np.arange(N), res)
    two = build_pairs([(A[0], B[2], {"setting": "Z", "a": "", "b": ""})], BYTES, np.arange(N), res)
    both = concat([one, two])
    table = summarise(both, statistics=("median", "mean")).set_index("setting")
    assert table.loc["X", "median"] == pytest.approx(np.median(one.frame.kl))
    lo, hi = np.quantile(np.median(one.reps, axis=1), [0.025, 0.975])
    assert table.loc["X", "median_lo"] == pytest.approx(lo) and table.loc[
        "X", "median_hi"
    ] == pytest.approx(hi)
    assert table.loc["Z", "n"] == 1
    recs = both.records("c")
    assert recs[0]["kl_bpb"] == one.frame.kl[0] and "kl" not in recs[0]


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**31 - 1))
def test_replicates_are_nonnegative_and_shift_invariant(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    nb = rng.integers(1, 50, size=n)
    res = Resamples.draw(n, 5, seed)
    x = build_pairs([(a, b, {"setting": "s", "a": "", "b": ""})], nb, np.arange(n), res)
    y = build_pairs([(a + 3.0, b, {"setting": "s", "a": "", "b": ""})], nb, np.arange(n), res)
    assert (x.reps >= -1e-12).all()
    np.testing.assert_allclose(x.reps, y.reps, atol=1e-9)
