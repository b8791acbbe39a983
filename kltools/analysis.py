"""Analyses on stores: consecutive KL, pretraining preprocessing, diffusion exponents.

All inputs are xarray objects as produced by :mod:`kltools.store` and :mod:`kltools.kl`:
log-likelihoods with a ``text`` dim and a ``text_bytes`` coordinate, KL matrices with dims
``(..., dim, dim + "_")``. Arithmetic is float64. The settings are defined in :mod:`kltools.settings`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from kltools.errors import KLToolsError
from kltools.grid import lag_deltas, lag_pairs
from kltools.kl import TEXT_DIM, UNITS, half_variance, mean_bytes_of, nats_to_bpb

__all__ = [
    "consecutive_kl",
    "diffusion_exponents",
    "lag_distances",
    "pretraining_preprocess",
]


def _require_dim(da: xr.DataArray, dim: str, what: str) -> None:
    if not isinstance(da, xr.DataArray):
        raise KLToolsError(f"{what} needs an xarray.DataArray, got {type(da).__name__}")
    if dim not in da.dims:
        raise KLToolsError(f"{what}: dimension {dim!r} not in {tuple(da.dims)}")


# --------------------------------------------------------------------------------------------
# consecutive checkpoints


def consecutive_kl(
    loglik: xr.DataArray,
    dim: str = "step",
    *,
    units: str = "bpb",
    mean_bytes: float | None = None,
) -> xr.DataArray:
    """KL between consecutive labels along ``dim``: ``Var(l_{t+1} - l_t) / 2``.

    Intervals: build the pairs with :mod:`kltools.settings` (the book's one bootstrap engine,
    :func:`kltools.pairs.build_pairs`).

    Parameters
    ----------
    loglik : xarray.DataArray
        Log-likelihoods (nats) with dims ``dim``, ``text`` and possibly others (e.g. ``model``),
        each handled separately. A pair touching a NaN vector gives NaN.
    dim : str
        The ordered dimension (checkpoints, layers).
    units : {"bpb", "nats"}
    mean_bytes : float, optional
        B̄; default the mean of ``text_bytes``.

    Returns
    -------
    xarray.DataArray
        Named ``kl``, dims ``(*others, dim)`` with ``K - 1`` labels: the start label of each
        pair on ``dim`` and the end label on coordinate ``dim + "_next"``.
    """
    _require_dim(loglik, dim, "consecutive_kl")
    if units not in UNITS:
        raise KLToolsError(f"units must be one of {sorted(UNITS)}, not {units!r}")
    if TEXT_DIM not in loglik.dims:
        raise KLToolsError(f"consecutive_kl: log-likelihoods need a {TEXT_DIM!r} dimension")
    if loglik.sizes[dim] < 2:
        raise KLToolsError(f"consecutive_kl: need at least 2 labels along {dim!r}")
    others = [d for d in loglik.dims if d not in (dim, TEXT_DIM)]
    arr = loglik.transpose(*others, dim, TEXT_DIM)
    L = arr.values.astype(np.float64)
    d = L[..., 1:, :] - L[..., :-1, :]
    kl = half_variance(d)
    if units == "bpb":
        kl = nats_to_bpb(kl, mean_bytes_of(loglik, mean_bytes))
    out = arr.isel({dim: slice(0, -1), TEXT_DIM: 0}, drop=True).copy(data=kl)
    out = out.drop_vars([c for c in out.coords if TEXT_DIM in loglik[c].dims], errors="ignore")
    out = out.assign_coords({f"{dim}_next": (dim, loglik[dim].values[1:])})
    out.name = "kl"
    out.attrs = {
        **loglik.attrs,
        "units": UNITS[units],
        "long_name": f"KL between consecutive {dim}",
    }
    return out


# --------------------------------------------------------------------------------------------
# pretraining preprocessing


def pretraining_preprocess(
    loglik: xr.DataArray,
    *,
    clip_quantile: float = 0.02,
    drop_fraction: float = 0.03,
    after_step: float = 2000,
    step_dim: str = "step",
) -> tuple[xr.DataArray, dict[str, Any]]:
    """The paper's cleaning of pretraining log-likelihoods (paper §3.1).

    1. Clip every log-likelihood from below at the global ``clip_quantile`` quantile (over all
       models, steps and texts; NaN ignored).
    2. Score each text by its largest ``|l_{t+1} - l_t|`` (clipped values) over all models and
       consecutive checkpoints that are both at step ``>= after_step`` (a checkpoint a run
       lacks is skipped: its neighbours are consecutive).
    3. Drop the ``round(drop_fraction * N)`` texts with the highest scores (ties: the earlier
       text is dropped first); the kept texts keep their order and their ``text_bytes``, so
       B̄ is recomputed on them by :func:`kltools.kl.kl_matrix`.

    Parameters
    ----------
    loglik : xarray.DataArray
        Dims including ``step_dim`` and ``text``.
    clip_quantile, drop_fraction, after_step, step_dim
        Paper: 0.02, 0.03, 2000, "step".

    Returns
    -------
    (xarray.DataArray, dict)
        The cleaned array (float64), and ``info`` with ``clip_value``, ``n_clipped``,
        ``scores`` (per text, float64 array), ``dropped`` (positions of dropped texts),
        ``dropped_labels`` (their ``text`` labels, if any), ``n_kept``, ``mean_bytes_before``
        and ``mean_bytes_after`` (if ``text_bytes`` is present).
    """
    _require_dim(loglik, step_dim, "pretraining_preprocess")
    _require_dim(loglik, TEXT_DIM, "pretraining_preprocess")
    if not 0.0 <= clip_quantile < 1.0:
        raise KLToolsError(f"clip_quantile must be in [0, 1), not {clip_quantile}")
    if not 0.0 <= drop_fraction < 1.0:
        raise KLToolsError(f"drop_fraction must be in [0, 1), not {drop_fraction}")
    values = loglik.values.astype(np.float64)
    clip_value = float(np.nanquantile(values, clip_quantile))
    n_clipped = int(np.sum(values < clip_value))
    clipped = loglik.copy(data=np.where(values < clip_value, clip_value, values))

    steps = np.asarray(loglik[step_dim].values)
    post = clipped.isel({step_dim: np.flatnonzero(steps >= after_step)})
    n_texts = loglik.sizes[TEXT_DIM]
    if post.sizes[step_dim] < 2:
        raise KLToolsError(
            f"pretraining_preprocess: fewer than 2 checkpoints at {step_dim} >= {after_step}; "
            "lower after_step"
        )
    jumps = _checkpoint_jumps(post.transpose(..., step_dim, TEXT_DIM).values)
    if not np.isfinite(jumps).any(axis=0).all():
        raise KLToolsError("pretraining_preprocess: a text has no finite post-warm-up score")
    scores = np.nanmax(jumps, axis=0)
    n_drop = int(round(drop_fraction * n_texts))
    order = np.argsort(-scores, kind="stable")
    dropped = np.sort(order[:n_drop])
    kept = np.setdiff1d(np.arange(n_texts), dropped)
    cleaned = clipped.isel({TEXT_DIM: kept})
    cleaned.attrs = {
        **loglik.attrs,
        "preprocess": f"clip q={clip_quantile}, drop {n_drop} texts (after {step_dim} "
        f"{after_step})",
    }
    info: dict[str, Any] = {
        "clip_value": clip_value,
        "n_clipped": n_clipped,
        "scores": scores,
        "dropped": dropped,
        "n_kept": int(kept.size),
    }
    if TEXT_DIM in loglik.coords:
        info["dropped_labels"] = loglik[TEXT_DIM].values[dropped]
    if "text_bytes" in loglik.coords:
        info["mean_bytes_before"] = mean_bytes_of(loglik)
        info["mean_bytes_after"] = mean_bytes_of(cleaned)
    return cleaned, info


def _checkpoint_jumps(values: np.ndarray) -> np.ndarray:
    """``|l_{t+1} - l_t|`` between consecutive *available* checkpoints of each run.

    ``values``: ``(..., step, text)``. A checkpoint missing in a run (all NaN, e.g. an excluded
    one) is skipped, so its neighbours form a pair. Returns ``(pairs, text)``.
    """
    runs = values.reshape(-1, *values.shape[-2:])
    out = []
    for run in runs:
        have = run[np.isfinite(run).any(axis=1)]
        out.append(np.abs(np.diff(have, axis=0)))
    return np.concatenate(out, axis=0) if out else np.zeros((0, values.shape[-1]))


# --------------------------------------------------------------------------------------------
# diffusion


def lag_distances(kl: xr.DataArray, K: int = 10, dim: str = "step") -> xr.DataArray:
    """``D(t, t + k)`` for ``k = 1..K`` checkpoints ahead, from a KL matrix over ``dim``.

    Parameters
    ----------
    kl : xarray.DataArray
        Dims ``(..., dim, dim + "_")``, e.g. :func:`kltools.kl.kl_matrix` with ``dim="step"``.
    K : int
        Window length in checkpoints (paper: 10).
    dim : str

    Returns
    -------
    xarray.DataArray
        Dims ``(..., dim, "lag")``, ``lag = 1..K``; NaN where ``t + k`` is past the last
        checkpoint. Coordinate ``delta`` ``(dim, lag)``: the step difference.
    """
    _require_dim(kl, dim, "lag_distances")
    _require_dim(kl, f"{dim}_", "lag_distances")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise KLToolsError(f"lag_distances: K must be a positive integer, not {K!r}")
    n = kl.sizes[dim]
    if not np.array_equal(kl[dim].values, kl[f"{dim}_"].values):
        raise KLToolsError(f"lag_distances: {dim!r} and {dim}_ must hold the same labels")
    arr = kl.transpose(..., dim, f"{dim}_").values.astype(np.float64)
    out = np.full((*arr.shape[:-1], K), np.nan)
    for i, j, k in lag_pairs(n, K):
        out[..., i, k - 1] = arr[..., i, j]
    others = [d for d in kl.dims if d not in (dim, f"{dim}_")]
    template = kl.isel({f"{dim}_": 0}, drop=True).transpose(*others, dim)
    template = template.drop_vars(
        [c for c in template.coords if f"{dim}_" in kl[c].dims], errors="ignore"
    )
    res = xr.DataArray(out, dims=(*others, dim, "lag"), coords=template.coords, name="D")
    res = res.assign_coords(lag=np.arange(1, K + 1))
    res = res.assign_coords(delta=((dim, "lag"), lag_deltas(kl[dim].values, K)))
    res.attrs = {**kl.attrs, "long_name": f"distance from {dim} t to the k-th next {dim}"}
    return res


def diffusion_exponents(
    D: xr.DataArray,
    *,
    min_start: float = 1000,
    step_dim: str = "step",
    lag_dim: str = "lag",
    min_points: int | None = None,
) -> xr.Dataset:
    """Local diffusion exponents: least-squares fit of ``log D = c log Δ + b`` per start step.

    Parameters
    ----------
    D : xarray.DataArray
        Distances with dims ``(..., step_dim, lag_dim)``: ``D_ℓ`` from :func:`lag_distances`
        or a weight distance ``D_W(step, lag)`` in the same layout. ``Δ`` is the coordinate
        ``delta`` ``(step_dim, lag_dim)`` if present, else ``step[i + lag] - step[i]`` with
        ``lag`` counting checkpoints.
    min_start : float
        Only start steps ``>= min_start`` are fitted (paper: 1000).
    step_dim, lag_dim : str
    min_points : int, optional
        None: a window is fitted only when every distance in it is positive and finite.
        An integer: a window that lies inside the grid (every ``Δ`` finite) is fitted on the
        distances it has, if at least ``min_points`` (paper: a window that loses points to an
        excluded checkpoint is fitted on the rest, at least 2).

    Returns
    -------
    xarray.Dataset
        ``c`` (exponent), ``b`` (intercept, natural log) and ``r2`` with dims
        ``(..., step_dim)`` over the fitted starts; NaN where the window is incomplete (a
        missing or non-positive distance or Δ).
    """
    _require_dim(D, step_dim, "diffusion_exponents")
    _require_dim(D, lag_dim, "diffusion_exponents")
    D = D.transpose(..., step_dim, lag_dim)
    if "delta" in D.coords:
        # ``delta`` may carry other dims too (e.g. per model when runs differ)
        delta = D["delta"].broadcast_like(D).transpose(*D.dims).values.astype(np.float64)
    else:
        lags = np.asarray(D[lag_dim].values)
        if not np.array_equal(lags, np.arange(1, lags.size + 1)):
            raise KLToolsError(
                f"diffusion_exponents: without a 'delta' coordinate, {lag_dim} must be 1..K"
            )
        delta = lag_deltas(D[step_dim].values, lags.size)
    y_raw = D.values.astype(np.float64)
    x_raw = np.broadcast_to(delta, y_raw.shape)
    valid = (y_raw > 0) & (x_raw > 0) & np.isfinite(y_raw) & np.isfinite(x_raw)
    if min_points is None:
        complete = valid.all(axis=-1)
    else:
        in_grid = (np.isfinite(x_raw) & (x_raw > 0)).all(axis=-1)
        complete = in_grid & (valid.sum(axis=-1) >= max(int(min_points), 2))
    w = valid.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(np.where(valid, y_raw, 1.0))
        x = np.log(np.where(valid, x_raw, 1.0))
        n = w.sum(axis=-1, keepdims=True)
        xm = (w * x).sum(axis=-1, keepdims=True) / n
        ym = (w * y).sum(axis=-1, keepdims=True) / n
        sxx = (w * (x - xm) ** 2).sum(axis=-1)
        sxy = (w * (x - xm) * (y - ym)).sum(axis=-1)
        syy = (w * (y - ym) ** 2).sum(axis=-1)
        c = sxy / sxx
        b = ym[..., 0] - c * xm[..., 0]
        r2 = np.where(syy > 0, 1.0 - (syy - c * sxy) / syy, 1.0)
    bad = ~complete | ~(sxx > 0)
    c, b, r2 = (np.where(bad, np.nan, v) for v in (c, b, r2))
    template = D.isel({lag_dim: 0}, drop=True)
    template = template.drop_vars(
        [co for co in template.coords if lag_dim in D[co].dims], errors="ignore"
    )
    ds = xr.Dataset(
        {
            "c": template.copy(data=c),
            "b": template.copy(data=b),
            "r2": template.copy(data=r2),
        },
        attrs={"long_name": "local diffusion exponent fit log D = c log delta + b"},
    )
    starts = np.asarray(D[step_dim].values)
    return ds.isel({step_dim: np.flatnonzero(starts >= min_start)})
