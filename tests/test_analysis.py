"""Tests of kltools.analysis on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from kltools.analysis import (
    consecutive_kl,
    diffusion_exponents,
    lag_distances,
    pretraining_preprocess,
)
from kltools.errors import KLToolsError
from kltools.kl import kl_between, kl_matrix

LN2 = math.log(2.0)
STEPS = [0, 1, 2, 4, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000]


def trajectory(n_texts: int = 200, seed: int = 0, models=("s", "m")) -> xr.DataArray:
    """Synthetic (model, step, text) log-likelihoods: a random walk per model."""
    rng = np.random.default_rng(seed)
    base = rng.normal(-900, 40, size=n_texts)
    L = base + np.cumsum(rng.normal(0, 1, size=(len(models), len(STEPS), n_texts)), axis=1)
    return xr.DataArray(
        L,
        dims=("model", "step", "text"),
        coords={
            "model": list(models),
            "step": STEPS,
            "text": [f"t{i}" for i in range(n_texts)],
            "text_bytes": ("text", rng.integers(257, 1025, size=n_texts)),
        },
        attrs={"textset_sha256": "abc"},
    )


# ------------------------------------------------------------------------------ consecutive


def test_consecutive_kl_matches_direct_and_matrix() -> None:
    da = trajectory()
    mb = float(da.text_bytes.mean())
    c = consecutive_kl(da)
    assert c.dims == ("model", "step")
    assert list(c.step.values) == STEPS[:-1] and list(c.step_next.values) == STEPS[1:]
    assert c.attrs["units"] == "bit/byte"
    full = kl_matrix(da, dim="step")
    for m in ("s", "m"):
        for a, b in zip(STEPS[:-1], STEPS[1:]):
            ref = kl_between(da.sel(model=m, step=a), da.sel(model=m, step=b), mean_bytes=mb)
            assert float(c.sel(model=m, step=a)) == pytest.approx(ref, rel=1e-10)
            assert float(full.sel(model=m, step=a, step_=b)) == pytest.approx(ref, rel=1e-8)
    # random-walk increments of variance 1 per text: KL ~ 1 / 2 nats per text
    nats = consecutive_kl(da, units="nats")
    assert float(nats.mean()) == pytest.approx(0.5, rel=0.15)


def test_consecutive_kl_needs_two_labels() -> None:
    with pytest.raises(KLToolsError, match="at least 2 labels"):
        consecutive_kl(trajectory().isel(step=[0]))


# ------------------------------------------------------------------------------ preprocessing


def test_pretraining_preprocess_clips_and_drops_spiky_texts() -> None:
    da = trajectory(n_texts=100, seed=2)
    L = da.values.copy()
    L[1, 7, 13] += 500.0  # a spike after warm-up (step 3000 -> 4000 and back)
    L[0, 9, 42] -= 300.0  # another, in the other model
    L[0, 2, 77] -= 10000.0  # a huge jump but during warm-up: not scored, only clipped
    da = da.copy(data=L)
    cleaned, info = pretraining_preprocess(da, clip_quantile=0.02, drop_fraction=0.02)
    q = np.quantile(L, 0.02)
    assert info["clip_value"] == pytest.approx(q)
    assert info["n_clipped"] == int((L < q).sum()) > 0
    assert sorted(info["dropped"].tolist()) == [13, 42]
    assert list(info["dropped_labels"]) == ["t13", "t42"]
    assert cleaned.sizes["text"] == 98 and info["n_kept"] == 98
    assert "t77" in cleaned.text.values
    assert float(cleaned.min()) >= q
    kept_bytes = np.delete(da.text_bytes.values, [13, 42])
    assert np.array_equal(cleaned.text_bytes.values, kept_bytes)
    assert info["mean_bytes_after"] == pytest.approx(kept_bytes.mean())
    # B̄ of the kept texts is what kl_matrix uses afterwards
    assert kl_matrix(cleaned, dim="model").attrs["mean_bytes"] == pytest.approx(kept_bytes.mean())
    # scores: largest post-warm-up jump, by an independent loop
    post = [i for i, s in enumerate(STEPS) if s >= 2000]
    Lc = np.maximum(L, q)
    ref = max(abs(Lc[m, b, 5] - Lc[m, a, 5]) for m in range(2) for a, b in zip(post, post[1:]))
    assert info["scores"][5] == pytest.approx(ref)


def test_pretraining_preprocess_paper_fraction() -> None:
    da = trajectory(n_texts=10000, seed=3, models=("a",))
    cleaned, info = pretraining_preprocess(da)
    assert cleaned.sizes["text"] == 9700 and len(info["dropped"]) == 300
    with pytest.raises(KLToolsError, match="after_step"):
        pretraining_preprocess(da, after_step=10**6)


# ------------------------------------------------------------------------------ diffusion


def power_law_kl(steps, c: float, a: float) -> xr.DataArray:
    """A KL matrix D(t, t') = a |t - t'|^c over steps, for two 'models' with different c."""
    s = np.asarray(steps, dtype=float)
    delta = np.abs(s[:, None] - s[None, :])
    D = np.stack([a * delta**c, 2 * a * delta ** (c / 2)])
    return xr.DataArray(
        D,
        dims=("model", "step", "step_"),
        coords={"model": ["x", "y"], "step": steps, "step_": steps},
        attrs={"units": "bit/byte"},
    )


def test_lag_distances_layout() -> None:
    steps = [0, 500, 1000, 2000, 3000, 4000, 5000]
    kl = power_law_kl(steps, 1.0, 1e-3)
    D = lag_distances(kl, K=3)
    assert D.dims == ("model", "step", "lag")
    assert list(D.lag.values) == [1, 2, 3]
    assert float(D.sel(model="x", step=1000, lag=2)) == pytest.approx(1e-3 * 2000)
    assert float(D.delta.sel(step=500, lag=3)) == 2500  # 500 -> 3000
    assert np.isnan(D.sel(step=4000, lag=2)).all() and np.isnan(D.delta.sel(step=5000)).all()


def test_diffusion_exponents_recovers_power_law() -> None:
    steps = list(range(0, 20001, 1000))
    D = lag_distances(power_law_kl(steps, 0.6, 2e-4), K=10)
    fit = diffusion_exponents(D, min_start=1000)
    assert fit.c.dims == ("model", "step")
    assert list(fit.step.values) == steps[1:]
    complete = fit.sel(step=slice(1000, 10000))
    assert np.allclose(complete.c.sel(model="x"), 0.6)
    assert np.allclose(complete.c.sel(model="y"), 0.3)
    assert np.allclose(complete.b.sel(model="x"), math.log(2e-4))
    assert np.allclose(complete.r2, 1.0)
    assert np.isnan(fit.c.sel(step=11000)).all()  # window runs past the last checkpoint


def test_diffusion_exponents_noisy_fit_matches_polyfit() -> None:
    rng = np.random.default_rng(4)
    steps = np.arange(0, 15001, 1000)
    n, K = len(steps), 5
    # a weight distance D_W(step, lag) as the suite provides it: no delta coordinate
    vals = np.exp(rng.normal(0, 0.2, size=(n, K))) * (np.arange(1, K + 1) * 1000.0) ** 0.9
    dw = xr.DataArray(
        vals, dims=("step", "lag"), coords={"step": steps, "lag": np.arange(1, K + 1)}
    )
    fit = diffusion_exponents(dw, min_start=1000)
    x = np.log(np.arange(1, K + 1) * 1000.0)
    for i, s in enumerate(steps[1 : n - K], start=1):
        y = np.log(vals[i])
        c, b = np.polyfit(x, y, 1)
        r2 = 1 - np.sum((y - (c * x + b)) ** 2) / np.sum((y - y.mean()) ** 2)
        got = fit.sel(step=s)
        assert float(got.c) == pytest.approx(c, rel=1e-9)
        assert float(got.b) == pytest.approx(b, rel=1e-9)
        assert float(got.r2) == pytest.approx(r2, rel=1e-9)
    bad = dw.copy(data=np.where(np.arange(n)[:, None] == 3, 0.0, vals))
    assert np.isnan(diffusion_exponents(bad).c.sel(step=3000))


def test_diffusion_exponents_accepts_a_per_model_delta():
    """A ``delta`` coordinate over (model, step, lag) (runs with their own steps) is honoured."""
    steps = np.array([0, 10, 20, 30, 40, 50])
    lags = np.arange(1, 4)
    delta = np.stack([_delta_grid(steps, lags, scale) for scale in (1.0, 2.0)])
    D = xr.DataArray(
        delta**0.5,
        dims=("model", "step", "lag"),
        coords={
            "model": ["a", "b"],
            "step": steps,
            "lag": lags,
            "delta": (("model", "step", "lag"), delta),
        },
    )
    out = diffusion_exponents(D, min_start=0)
    np.testing.assert_allclose(out["c"].sel(step=[0, 10]).values, 0.5, rtol=1e-12)


def _delta_grid(steps: np.ndarray, lags: np.ndarray, scale: float) -> np.ndarray:
    return scale * (lags[None, :] * 10.0 + 0.0 * steps[:, None])


def test_diffusion_exponents_fits_a_window_that_lost_a_point() -> None:
    """min_points: a window inside the grid that lost one distance is fitted on the rest."""
    steps = np.arange(0, 100, 10)
    lags = np.arange(1, 4)
    delta = (lags[None, :] * 10.0).repeat(steps.size, 0)
    values = delta**0.7
    values[2, 1] = np.nan  # one missing distance
    D = xr.DataArray(
        values,
        dims=("step", "lag"),
        coords={"step": steps, "lag": lags, "delta": (("step", "lag"), delta)},
    )
    strict = diffusion_exponents(D, min_start=0)
    assert np.isnan(float(strict.c.sel(step=20)))
    loose = diffusion_exponents(D, min_start=0, min_points=2)
    assert float(loose.c.sel(step=20)) == pytest.approx(0.7)
    past_end = delta.copy()
    past_end[-1, :] = np.nan
    D2 = D.assign_coords(delta=(("step", "lag"), past_end))
    assert np.isnan(float(diffusion_exponents(D2, min_start=0, min_points=2).c.sel(step=90)))


def test_pretraining_preprocess_bridges_a_missing_checkpoint() -> None:
    """A run without one checkpoint (Pythia-1B at 116k) is scored across the gap."""
    rng = np.random.default_rng(4)
    vals = rng.normal(-100, 1, size=(2, 5, 40))
    vals[1, 2] = np.nan  # run 1 lacks its third checkpoint
    vals[1, 3:, 7] += 50.0  # text 7 jumps only across the gap (step 10 -> 30) in run b
    da = xr.DataArray(
        vals,
        dims=("model", "step", "text"),
        coords={
            "model": ["a", "b"],
            "step": [0, 10, 20, 30, 40],
            "text_bytes": ("text", np.full(40, 100)),
        },
    )
    _, info = pretraining_preprocess(da, clip_quantile=0.0, drop_fraction=0.025, after_step=0)
    assert list(info["dropped"]) == [7]
    # the score of text 7: its jump across the gap in run b
    b = vals[1, [0, 1, 3, 4], 7]
    assert info["scores"][7] == pytest.approx(np.abs(np.diff(b)).max())


def test_consecutive_kl_is_the_consecutive_setting() -> None:
    """The labelled consecutive KL (:func:`kltools.consecutive_kl`) and the pair sets of the
    consecutive setting compute one quantity: the same value for every pair."""
    from kltools.pairs import Resamples, build_pairs

    da = trajectory().sel(model="s")
    cons = consecutive_kl(da)
    steps = da["step"].values
    rows = [(da.isel(step=i).values, da.isel(step=i + 1).values, {"setting": "c", "a": "x",
             "b": "y"}) for i in range(len(steps) - 1)]  # fmt: skip
    n = da.sizes["text"]
    pairs = build_pairs(rows, da["text_bytes"].values, np.arange(n), Resamples.draw(n, 2, 0))
    np.testing.assert_allclose(cons.values, pairs.frame.kl.to_numpy(), rtol=1e-12)
