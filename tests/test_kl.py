"""Tests of kltools.kl: the double-centred KL estimator, its map coordinates and bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kltools.errors import KLToolsError
from kltools.kl import (
    bootstrap_kl,
    check_compatible,
    concat_units,
    double_centre,
    kl_between,
    kl_matrix,
    map_coordinates,
)

LN2 = math.log(2.0)


def make_loglik(L: np.ndarray, nbytes: np.ndarray | None = None, **attrs) -> xr.DataArray:
    """A (model, text) DataArray with a text_bytes coordinate."""
    K, N = L.shape
    if nbytes is None:
        nbytes = np.arange(300, 300 + N)
    return xr.DataArray(
        L,
        dims=("model", "text"),
        coords={"model": [f"m{i}" for i in range(K)], "text_bytes": ("text", nbytes)},
        attrs=attrs,
    )


def naive_kl_bpb(L: np.ndarray, mean_bytes: float) -> np.ndarray:
    """Reference: pairwise loop over Var(l_i - l_j) / (2 B ln 2)."""
    L = np.asarray(L, dtype=np.float64)
    K = L.shape[0]
    out = np.zeros((K, K))
    for i in range(K):
        for j in range(K):
            d = L[i] - L[j]
            out[i, j] = np.mean((d - d.mean()) ** 2) / (2 * mean_bytes * LN2)
    return out


finite = st.floats(-500, 500, allow_nan=False, allow_infinity=False, width=64)
matrices = st.tuples(st.integers(2, 6), st.integers(2, 40)).flatmap(
    lambda s: arrays(np.float64, s, elements=finite)
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ properties


@SETTINGS
@given(matrices)
def test_double_centre_sums_to_zero(L: np.ndarray) -> None:
    Q = double_centre(L)
    scale = 1 + np.abs(L).max()
    assert np.allclose(Q.sum(axis=0), 0, atol=1e-9 * scale * L.shape[1])
    assert np.allclose(Q.sum(axis=1), 0, atol=1e-9 * scale * L.shape[1])


@SETTINGS
@given(matrices)
def test_distance_is_variance_of_difference(L: np.ndarray) -> None:
    Q = double_centre(L)
    N = L.shape[1]
    for i, j in [(0, 1), (0, L.shape[0] - 1)]:
        lhs = np.sum((Q[i] - Q[j]) ** 2) / N
        assert lhs == pytest.approx(np.var(L[i] - L[j]), rel=1e-9, abs=1e-9)


@SETTINGS
@given(matrices)
def test_gram_form_equals_naive_pairs(L: np.ndarray) -> None:
    da = make_loglik(L)
    mb = float(da.text_bytes.mean())
    got = kl_matrix(da).values
    ref = naive_kl_bpb(L, mb)
    assert np.allclose(got, ref, rtol=1e-7, atol=1e-9 * (1 + ref.max()))
    assert np.array_equal(got, got.T)
    assert (np.diag(got) == 0).all() and (got >= 0).all()
    nats = kl_matrix(da, units="nats").values
    assert np.allclose(nats, got * mb * LN2, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(matrices, st.data())
def test_invariant_to_row_and_column_constants(L: np.ndarray, data: st.DataObject) -> None:
    K, N = L.shape
    row = np.array(data.draw(st.lists(finite, min_size=K, max_size=K)))
    col = np.array(data.draw(st.lists(finite, min_size=N, max_size=N)))
    base = kl_matrix(make_loglik(L), units="nats").values
    shifted = kl_matrix(make_loglik(L + row[:, None] + col[None, :]), units="nats").values
    assert np.allclose(base, shifted, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(matrices)
def test_map_coordinates_distances_are_kl(L: np.ndarray) -> None:
    da = make_loglik(L)
    X = map_coordinates(da).values
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    kl = kl_matrix(da).values
    assert np.allclose(d2, kl, rtol=1e-7, atol=1e-9 * (1 + kl.max()))


def test_kl_between_matches_matrix_and_units() -> None:
    rng = np.random.default_rng(1)
    L = rng.normal(-800, 30, size=(3, 200)).astype(np.float32)
    da = make_loglik(L, rng.integers(257, 1025, size=200))
    mb = float(da.text_bytes.mean())
    for i, j in [(0, 1), (1, 2)]:
        ref = np.var(L[i].astype(np.float64) - L[j]) / 2
        assert kl_between(da[i], da[j], units="nats") == pytest.approx(ref, rel=1e-12)
        assert kl_between(da[i], da[j]) == pytest.approx(ref / (mb * LN2), rel=1e-12)
        assert kl_matrix(da).values[i, j] == pytest.approx(ref / (mb * LN2), rel=1e-9)
    assert kl_matrix(da, mean_bytes=500.0).attrs["mean_bytes"] == 500.0
    with pytest.raises(KLToolsError, match="mean_bytes"):
        kl_between(L[0], L[1])


def test_float32_input_is_computed_in_float64() -> None:
    # large offsets: float32 arithmetic would lose the small differences
    rng = np.random.default_rng(2)
    base = rng.normal(-3000, 200, size=5000)
    L = np.stack([base, base + rng.normal(0, 0.5, size=5000)]).astype(np.float32)
    got = kl_matrix(make_loglik(L), units="nats").values[0, 1]
    ref = np.var(L[0].astype(np.float64) - L[1].astype(np.float64)) / 2
    assert got == pytest.approx(ref, rel=1e-9)


def test_chunked_gram_equals_unchunked() -> None:
    from kltools.kl import _sq_dist_batch

    rng = np.random.default_rng(3)
    L = rng.normal(size=(1, 7, 1001))
    assert np.allclose(_sq_dist_batch(L, chunk=64), _sq_dist_batch(L, chunk=5000), rtol=1e-12)


# ------------------------------------------------------------------------------ layout


def test_broadcast_over_other_dims_and_coords() -> None:
    rng = np.random.default_rng(4)
    L = rng.normal(size=(2, 4, 30))
    da = xr.DataArray(
        L,
        dims=("model", "step", "text"),
        coords={
            "model": ["a", "b"],
            "step": [0, 1, 2, 4],
            "lr": ("step", [1.0, 0.9, 0.8, 0.7]),
            "text_bytes": ("text", np.full(30, 512)),
        },
        attrs={"textset_sha256": "abc", "bos_policy": "paper"},
    )
    kl = kl_matrix(da, dim="step", units="nats")
    assert kl.dims == ("model", "step", "step_")
    assert list(kl.step_.values) == [0, 1, 2, 4] and list(kl.lr_.values) == [1.0, 0.9, 0.8, 0.7]
    assert kl.attrs["units"] == "nat/text" and kl.attrs["textset_sha256"] == "abc"
    assert float(kl.sel(model="b", step=1, step_=4)) == pytest.approx(
        np.var(L[1, 1] - L[1, 3]) / 2, rel=1e-10
    )
    by_model = kl_matrix(da.transpose("text", "step", "model"), dim="model")
    assert by_model.dims == ("step", "model", "model_")
    assert by_model.attrs["units"] == "bit/byte"


def test_stacked_units() -> None:
    rng = np.random.default_rng(5)
    da = xr.DataArray(
        rng.normal(size=(2, 3, 20)),
        dims=("model", "step", "text"),
        coords={"model": ["a", "b"], "step": [1, 2, 3], "text_bytes": ("text", np.ones(20))},
    )
    s = da.stack(unit=("model", "step")).transpose("unit", "text")
    kl = kl_matrix(s, dim="unit")
    assert kl.shape == (6, 6)
    assert float(kl.sel(unit=("a", 2), unit_=("b", 3))) == pytest.approx(
        kl_between(da.sel(model="a", step=2), da.sel(model="b", step=3), mean_bytes=1.0)
    )
    X = map_coordinates(s, dim="unit")
    assert X.dims == ("unit", "text")
    with pytest.raises(KLToolsError, match="stack"):
        map_coordinates(da)


def test_nan_refused_or_dropped() -> None:
    rng = np.random.default_rng(6)
    L = rng.normal(size=(4, 25))
    L[2, 3] = np.nan
    da = make_loglik(L)
    with pytest.raises(KLToolsError, match="model='m2'.*skipna=True"):
        kl_matrix(da)
    kept = kl_matrix(da, skipna=True)
    assert list(kept.model.values) == ["m0", "m1", "m3"]
    assert np.allclose(kept.values, kl_matrix(da.isel(model=[0, 1, 3])).values)


def test_nan_in_one_slice_only() -> None:
    rng = np.random.default_rng(7)
    L = rng.normal(size=(2, 3, 10))
    L[0, 1, :] = np.nan  # model a, step 1 unfinished
    da = xr.DataArray(
        L,
        dims=("model", "step", "text"),
        coords={"model": ["a", "b"], "step": [0, 1, 2], "text_bytes": ("text", np.ones(10))},
    )
    kl = kl_matrix(da, dim="step", units="nats", skipna=True)
    assert kl.sizes["step"] == 3  # step 1 is complete for model b
    assert np.isnan(kl.sel(model="a", step=1)).all()
    assert not np.isnan(kl.sel(model="b")).any()
    assert float(kl.sel(model="a", step=0, step_=2)) == pytest.approx(np.var(L[0, 0] - L[0, 2]) / 2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda da: kl_matrix(da, units="bits"), "units must be one of"),
        (lambda da: kl_matrix(da, dim="seed"), "dimension 'seed' not in"),
        (lambda da: kl_matrix(da.rename(text="doc")), "'text' dimension"),
        (lambda da: kl_matrix(da.drop_vars("text_bytes")), "text_bytes"),
        (lambda da: kl_matrix(da.values), "DataArray"),
        (lambda da: bootstrap_kl(da, n_boot=1), "n_boot"),
        (lambda da: bootstrap_kl(da, ci=1.5), "ci must be"),
    ],
)
def test_user_errors(call, match: str) -> None:
    da = make_loglik(np.random.default_rng(0).normal(size=(3, 10)))
    with pytest.raises(KLToolsError, match=match):
        call(da)


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_shapes_and_recomputed_mean_bytes() -> None:
    rng = np.random.default_rng(8)
    L = rng.normal(size=(3, 300)) * np.array([[1.0], [1.2], [2.0]])
    nb = rng.integers(257, 1025, size=300)
    da = make_loglik(L, nb)
    ds = bootstrap_kl(da, n_boot=200, seed=1)
    assert set(ds.data_vars) == {"kl", "se", "lo", "hi"}
    assert ds.kl.dims == ("model", "model_")
    assert np.allclose(ds.kl, kl_matrix(da))
    off = ~np.eye(3, dtype=bool)
    assert (ds.lo.values[off] < ds.kl.values[off]).all()
    assert (ds.kl.values[off] < ds.hi.values[off]).all()
    assert (ds.se.values[off] > 0).all()
    # replicate 0 by hand, with B̄ recomputed on the resample
    idx = np.random.default_rng(1).integers(0, 300, size=300)
    ref = naive_kl_bpb(L[:, idx], nb[idx].mean())
    reps = bootstrap_kl(da, n_boot=200, seed=1, keep_replicates=True).replicates
    assert reps.dims == ("boot", "model", "model_")
    assert np.allclose(reps[0].values, ref, rtol=1e-9)
    assert np.allclose(reps.std("boot", ddof=1), ds.se)
    assert np.allclose(reps.quantile(0.975, "boot"), ds.hi)
    assert bootstrap_kl(da, n_boot=20, seed=5).se.equals(bootstrap_kl(da, n_boot=20, seed=5).se)


def test_bootstrap_se_shrinks_like_inverse_sqrt_n() -> None:
    rng = np.random.default_rng(9)
    ses = []
    for n in (400, 1600, 6400):
        L = np.stack([rng.normal(0, 1, n), rng.normal(0, 1.5, n)])
        ses.append(float(bootstrap_kl(make_loglik(L), n_boot=150, seed=0, units="nats").se[0, 1]))
    # theory: se = sqrt((mu4 - sigma^4) / N) / 2 with d ~ N(0, 3.25): sqrt(2) * 3.25 / 2 / sqrt(N)
    for n, se in zip((400, 1600, 6400), ses):
        assert se == pytest.approx(math.sqrt(2) * 3.25 / 2 / math.sqrt(n), rel=0.25)
    assert ses[0] / ses[1] == pytest.approx(2.0, rel=0.3)
    assert ses[1] / ses[2] == pytest.approx(2.0, rel=0.3)


# ------------------------------------------------------------------------------ combining


def test_check_compatible_and_concat() -> None:
    rng = np.random.default_rng(10)
    a = make_loglik(rng.normal(size=(2, 8)), textset_sha256="s1", bos_policy="paper")
    b = make_loglik(rng.normal(size=(2, 8)), textset_sha256="s1", bos_policy="paper")
    b = b.assign_coords(model=["m2", "m3"])
    check_compatible(a, b)
    both = concat_units([a, b.to_dataset(name="loglik")], dim="model")
    assert list(both.model.values) == ["m0", "m1", "m2", "m3"]
    assert both.attrs["textset_sha256"] == "s1"
    assert np.allclose(kl_matrix(both).values[:2, :2], kl_matrix(a).values)
    with pytest.raises(KLToolsError, match="bos_policy differs \\('paper'.*'prefix'"):
        check_compatible(a, b.assign_attrs(bos_policy="prefix"))
    with pytest.raises(KLToolsError, match="textset_sha256 differs"):
        concat_units([a, b.assign_attrs(textset_sha256="s2")])
    with pytest.raises(KLToolsError, match="same texts"):
        concat_units([a, b.isel(text=slice(0, 4))])


def test_bootstrap_broadcasts_with_shared_resamples() -> None:
    rng = np.random.default_rng(11)
    da = xr.DataArray(
        rng.normal(size=(3, 4, 60)),
        dims=("model", "step", "text"),
        coords={"model": ["a", "b", "c"], "text_bytes": ("text", rng.integers(257, 1025, 60))},
    )
    ds = bootstrap_kl(da, dim="step", n_boot=30, seed=2)
    assert ds.se.dims == ("model", "step", "step_")
    one = bootstrap_kl(da.sel(model="b"), dim="step", n_boot=30, seed=2)
    assert np.allclose(ds.se.sel(model="b"), one.se)  # same texts resampled for every slice
    assert np.allclose(ds.hi.sel(model="b"), one.hi)
