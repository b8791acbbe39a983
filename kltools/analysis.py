"""Analyses the chapters call: consecutive KL, pair sets, pretraining preprocessing, diffusion.

All inputs are xarray objects as produced by :mod:`kltools.store` and :mod:`kltools.kl`:
log-likelihoods with a ``text`` dim and a ``text_bytes`` coordinate, KL matrices with dims
``(..., dim, dim + "_")``. Arithmetic is float64. The settings are defined in :mod:`kltools.settings`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.errors import KLToolsError
from kltools.kl import TEXT_DIM, UNITS, mean_bytes_of

__all__ = [
    "all_pairs",
    "consecutive_kl",
    "diffusion_exponents",
    "early_later",
    "lag_distances",
    "pair_values",
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
    n_boot: int = 0,
    seed: int = 0,
) -> xr.DataArray:
    """KL between consecutive labels along ``dim``: ``Var(l_{t+1} - l_t) / 2``.

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
    n_boot : int
        If positive, bootstrap over texts (``n_boot`` replicates, B̄ recomputed per replicate)
        and attach the standard error as coordinate ``se``.
    seed : int
        Seed of the bootstrap.

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
    scale = 2.0 * (mean_bytes_of(loglik, mean_bytes) * math.log(2.0) if units == "bpb" else 1.0)
    kl = d.var(axis=-1) / scale
    out = arr.isel({dim: slice(0, -1), TEXT_DIM: 0}, drop=True).copy(data=kl)
    out = out.drop_vars([c for c in out.coords if TEXT_DIM in loglik[c].dims], errors="ignore")
    out = out.assign_coords({f"{dim}_next": (dim, loglik[dim].values[1:])})
    if n_boot:
        if n_boot < 2:
            raise KLToolsError(f"n_boot must be 0 or >= 2, not {n_boot}")
        rng = np.random.default_rng(seed)
        n = d.shape[-1]
        nb = None
        if units == "bpb" and mean_bytes is None:
            nb = np.asarray(loglik.coords["text_bytes"].values, dtype=np.float64)
        reps = np.empty((n_boot, *kl.shape))
        for r in range(n_boot):
            idx = rng.integers(0, n, size=n)
            s = scale if nb is None else 2.0 * nb[idx].mean() * math.log(2.0)
            reps[r] = d[..., idx].var(axis=-1) / s
        out = out.assign_coords(se=(out.dims, reps.std(axis=0, ddof=1)))
    out.name = "kl"
    out.attrs = {
        **loglik.attrs,
        "units": UNITS[units],
        "long_name": f"KL between consecutive {dim}",
    }
    return out


# --------------------------------------------------------------------------------------------
# pair sets


def all_pairs(labels: Iterable[Hashable]) -> list[tuple[Hashable, Hashable]]:
    """All unordered pairs ``(a, b)`` of distinct labels, in input order (``a`` before ``b``)."""
    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise KLToolsError("all_pairs: labels must be unique")
    return list(itertools.combinations(labels, 2))


def pair_values(
    kl: xr.DataArray, pairs: Sequence[tuple[Hashable, Hashable]], dim: str = "model"
) -> xr.DataArray:
    """KL values of the given pairs, along a new ``pair`` dim.

    Parameters
    ----------
    kl : xarray.DataArray
        A KL matrix with dims ``dim`` and ``dim + "_"`` (plus any others, kept).
    pairs : sequence of (label, label)
    dim : str

    Returns
    -------
    xarray.DataArray
        Dims ``(pair, *others)`` with coordinates ``dim`` (first label) and ``dim + "_"``.
    """
    _require_dim(kl, dim, "pair_values")
    _require_dim(kl, f"{dim}_", "pair_values")
    if not pairs:
        raise KLToolsError("pair_values: no pairs given")
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    known = set(kl[dim].values.tolist())
    missing = [x for x in a + b if x not in known]
    if missing:
        raise KLToolsError(f"pair_values: label {missing[0]!r} is not on {dim!r}")
    out = kl.sel({dim: xr.DataArray(a, dims="pair"), f"{dim}_": xr.DataArray(b, dims="pair")})
    return out.transpose("pair", ...)


def early_later(
    consecutive: xr.DataArray,
    *,
    after_step: float = 2000,
    k: int = 50,
    dim: str = "step",
) -> pd.DataFrame:
    """The paper's Early and Later sets of consecutive-checkpoint KLs.

    For each slice of the other dims (e.g. each model size), the consecutive KLs whose start
    label is at least ``after_step`` are taken in order (NaN dropped); the first ``k`` form
    "Early" and the last ``k`` "Later"; both are pooled over slices. With fewer than ``2k``
    pairs in a slice, the two sets overlap.

    Parameters
    ----------
    consecutive : xarray.DataArray
        Output of :func:`consecutive_kl` (dims ``(*others, dim)``).
    after_step : float
        Warm-up end (paper: 2000).
    k : int
        Pairs per set and slice (paper: 50).
    dim : str

    Returns
    -------
    pandas.DataFrame
        Long format: ``group`` ("Early"/"Later"), one column per other dim, ``dim``,
        ``dim + "_next"`` (if present) and ``kl``.
    """
    _require_dim(consecutive, dim, "early_later")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KLToolsError(f"early_later: k must be a positive integer, not {k!r}")
    others = [d for d in consecutive.dims if d != dim]
    if consecutive.ndim != len(others) + 1:
        raise KLToolsError("early_later: unexpected dims")
    rows: list[dict[str, Any]] = []
    slices = itertools.product(*(range(consecutive.sizes[o]) for o in others))
    nxt = f"{dim}_next"
    for pos in slices:
        sl = consecutive.isel(dict(zip(others, pos))) if others else consecutive
        steps = np.asarray(sl[dim].values)
        keep = (steps >= after_step) & np.isfinite(sl.values)
        sl = sl.isel({dim: np.flatnonzero(keep)})
        if sl.sizes[dim] < k:
            label = ", ".join(f"{o}={sl[o].item()!r}" for o in others)
            raise KLToolsError(
                f"early_later: only {sl.sizes[dim]} consecutive pairs after step {after_step} "
                f"({label}), fewer than k={k}; lower k or after_step"
            )
        base = {o: sl[o].item() for o in others}
        for group, part in (
            ("Early", sl.isel({dim: slice(0, k)})),
            ("Later", sl.isel({dim: slice(-k, None)})),
        ):
            for i in range(part.sizes[dim]):
                row = {"group": group, **base, dim: part[dim].values[i].item()}
                if nxt in part.coords:
                    row[nxt] = part[nxt].values[i].item()
                row["kl"] = float(part.values[i])
                rows.append(row)
    return pd.DataFrame(rows)


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
       consecutive checkpoints that are both at step ``>= after_step``.
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
    jumps = np.abs(post.diff(step_dim)).transpose(..., TEXT_DIM).values.reshape(-1, n_texts)
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
    for k in range(1, K + 1):
        i = np.arange(max(n - k, 0))
        out[..., i, k - 1] = arr[..., i, i + k]
    others = [d for d in kl.dims if d not in (dim, f"{dim}_")]
    template = kl.isel({f"{dim}_": 0}, drop=True).transpose(*others, dim)
    template = template.drop_vars(
        [c for c in template.coords if f"{dim}_" in kl[c].dims], errors="ignore"
    )
    res = xr.DataArray(out, dims=(*others, dim, "lag"), coords=template.coords, name="D")
    res = res.assign_coords(lag=np.arange(1, K + 1))
    res = res.assign_coords(delta=((dim, "lag"), _delta(kl[dim].values, K)))
    res.attrs = {**kl.attrs, "long_name": f"distance from {dim} t to the k-th next {dim}"}
    return res


def _delta(steps: np.ndarray, K: int) -> np.ndarray:
    """``steps[i + k] - steps[i]`` for ``k = 1..K`` (NaN past the end), shape (n, K)."""
    steps = np.asarray(steps, dtype=np.float64)
    n = steps.size
    out = np.full((n, K), np.nan)
    for k in range(1, K + 1):
        out[: max(n - k, 0), k - 1] = steps[k:] - steps[: max(n - k, 0)]
    return out


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
        delta = _delta(D[step_dim].values, lags.size)
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
