"""Diffusion in log-likelihood and weight space (paper Fig. 5), both spaces treated alike.

``D_ℓ(t, t')`` is the KL in bits/byte between checkpoints (the main sizes, preprocessed as
their group); ``D_W(t, t') = Σ (θ_t − θ_t')²`` over all parameters. Both are put on the same
checkpoint grid (:func:`on_grid`): from each grid step to the next ``window`` grid steps,
NaN where a checkpoint is missing (an excluded checkpoint). A local exponent ``c`` is the
least-squares slope of ``log D`` on ``log Δ`` over a window (:func:`exponents`); a window
that loses points to a missing checkpoint is fitted on the points it has (at least 2), and
the exponent at a missing start step is interpolated linearly from its neighbours and marked
(``interpolated``), as the paper's Fig. 5 does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.config import Settings
from kltools.errors import KLToolsError
from kltools.grid import first_even_step, lag_deltas, lag_pairs
from kltools.settings.pretraining import group

__all__ = [
    "exponents",
    "fits",
    "loglik_distances",
    "on_grid",
    "distance_start",
    "fig5_starts",
    "shown_exponents",
    "run_weight_distances",
    "summary",
    "weight_distances",
]


def on_grid(
    distances: Mapping[tuple[int, int], float], grid: Sequence[int], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(D, Δ)`` of shape ``(len(grid), window)``: from each grid step to the k-th next.

    ``distances`` maps ``(start, end)`` steps to a distance; pairs absent (a missing
    checkpoint) are NaN. ``Δ`` is NaN only past the end of the grid.
    """
    grid = [int(t) for t in grid]
    D = np.full((len(grid), window), np.nan)
    for i, j, k in lag_pairs(len(grid), window):
        D[i, k - 1] = distances.get((grid[i], grid[j]), np.nan)
    return D, lag_deltas(grid, window)


def _stack(
    tables: Mapping[str, Mapping[tuple[int, int], float]],
    grid: Sequence[int],
    window: int,
    name: str,
) -> xr.DataArray:
    """Per-model distance tables on the grid: ``(model, step, lag)`` with ``delta``."""
    parts = [on_grid(t, grid, window) for t in tables.values()]
    return xr.DataArray(
        np.stack([p[0] for p in parts]),
        dims=("model", "step", "lag"),
        coords={
            "model": list(tables),
            "step": np.asarray(grid, dtype=np.int64),
            "lag": np.arange(1, window + 1),
            "delta": (("step", "lag"), parts[0][1]),
        },
        name=name,
    )


@functools.lru_cache(maxsize=4)
def loglik_distances(s: Settings) -> xr.DataArray:
    """``D_ℓ`` of the main sizes on the store's grid: ``(model, step, lag)``, bits/byte."""
    from kltools.kl import kl_matrix

    g = group(s, "sizes")
    grid = [int(t) for t in g.loglik["step"].values]
    tables = {}
    for m in g.models:
        steps = g.finite_steps(m)
        kl = kl_matrix(g.loglik.sel(model=m, step=steps), dim="step").values
        tables[m] = {
            (steps[i], steps[j]): float(kl[i, j]) for i, j, _ in lag_pairs(len(steps), s.window)
        }
    return _stack(tables, grid, s.window, "D_l")


@functools.lru_cache(maxsize=4)
def weight_distances(s: Settings) -> xr.DataArray | None:
    """``D_W`` of the weight models (default: every main size) on the same grid, or None.

    From the run's source (:func:`run_weight_distances`). None when ``s.weight_space`` is off.
    """
    if not s.weight_space:
        return None
    g = group(s, "sizes")
    grid = [int(t) for t in g.loglik["step"].values]
    tables = {}
    for m in s.weight_models or g.models:
        da = run_weight_distances(s, m, grid)
        if da.sizes["lag"] < s.window:
            raise KLToolsError(
                f"{m}: weight distances hold {da.sizes['lag']} lags, fewer than {s.window}"
            )
        starts, deltas, vals = da["step"].values, da["delta_step"].values, da.values
        tables[m] = {
            (int(t), int(t + d)): float(v)
            for t, drow, vrow in zip(starts, deltas, vals)
            for d, v in zip(drow, vrow)
            if np.isfinite(d)
        }
    return _stack(tables, grid, s.window, "D_W")


def run_weight_distances(s: Settings, model: str, grid: Sequence[int]) -> xr.DataArray:
    """``D_W`` of one pretraining run, ``(step, lag)`` (:func:`kltools.suite.weights.weight_distance_array`).

    Where the distances come from is the source's business (:func:`kltools.sources.weights_file`:
    the suite's own file, hub revisions streamed once, or published distances).
    """
    from kltools.sources import weights_file
    from kltools.suite.weights import load_weight_distances

    return load_weight_distances(weights_file(s, model, grid))


def exponents(s: Settings, D: xr.DataArray) -> xr.Dataset:
    """Local exponents ``c`` (and ``b``, ``r2``) per model and start step, from any ``D``.

    Start steps from ``s.min_start`` (0: the first evenly spaced checkpoint,
    :func:`first_even_step`); windows of ``s.window`` grid steps fitted on at least 2 points;
    a start step whose own checkpoint is missing gets ``c`` interpolated from its neighbours,
    marked by ``interpolated``.
    """
    from kltools.analysis import diffusion_exponents

    start = s.min_start or first_even_step(D["step"].values.tolist())
    fit = diffusion_exponents(D, min_start=start, min_points=2)
    rows = D.sel(step=fit["step"])
    missing = np.isnan(rows).all("lag").transpose("model", "step").values
    marked = missing & np.isfinite(rows["delta"].isel(lag=-1)).values[None, :]
    filled = fit.c.copy()
    for i in range(fit.sizes["model"]):
        row = filled.values[i]
        ok = np.isfinite(row)
        if marked[i].any() and ok.sum() >= 2:
            steps = fit["step"].values.astype(float)
            row[marked[i]] = np.interp(steps[marked[i]], steps[ok], row[ok])
    return fit.assign(c=filled, interpolated=(("model", "step"), marked))


@functools.lru_cache(maxsize=4)
def fits(s: Settings) -> tuple[xr.Dataset, xr.Dataset | None]:
    """:func:`exponents` in log-likelihood space and (None without ``D_W``) weight space."""
    D_w = weight_distances(s)
    return exponents(s, loglik_distances(s)), (exponents(s, D_w) if D_w is not None else None)


def summary(s: Settings) -> pd.DataFrame:
    """Per size: median exponent and R² in both spaces over the start steps Fig. 5 shows
    (:func:`shown_exponents`; the paper: 8k to 135k).

    Columns ``model``, ``n_starts``, ``c_l``, ``r2_l`` and, with weight distances, ``c_W``,
    ``r2_W``. Interpolated starts are left out of the medians.
    """
    c_l, c_w = shown_exponents(s, *fits(s))
    rows = []
    for m in c_l["model"].values:
        row: dict[str, Any] = {"model": str(m)}
        for tag, c in (("l", c_l), ("W", c_w)):
            if c is None or m not in c["model"].values:
                continue
            fitted = ~c.interpolated.sel(model=m).values & np.isfinite(c.c.sel(model=m).values)
            row[f"c_{tag}"] = (
                float(np.median(c.c.sel(model=m).values[fitted])) if fitted.any() else np.nan
            )
            row[f"r2_{tag}"] = (
                float(np.median(c.r2.sel(model=m).values[fitted])) if fitted.any() else np.nan
            )
            row.setdefault("n_starts", int(fitted.sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def fig5_starts(s: Settings, steps: Sequence[int]) -> tuple[int, int, int]:
    """The start steps of Fig. 5 on a run's grid: the first and last start of the exponent
    panel and the start of the distance panel, as fractions ``s.fig5_fractions`` of the last
    step (the paper: 8k, 135k and 120k of 143k), each snapped to the nearest step of
    ``steps``."""
    grid = np.asarray(sorted(int(t) for t in steps))
    if grid.size == 0:
        raise KLToolsError("Fig. 5: no start steps")
    if len(s.fig5_fractions) != 3:
        raise KLToolsError("fig5_fractions: give three fractions (first, last, distance start)")
    out = [int(grid[np.argmin(np.abs(grid - f * grid[-1]))]) for f in s.fig5_fractions]
    return out[0], out[1], out[2]


def shown_exponents(
    s: Settings, c_l: xr.Dataset, c_w: xr.Dataset | None = None
) -> tuple[xr.Dataset, xr.Dataset | None]:
    """The start steps of the exponent tables (log-likelihood space, weight space or None)
    that Fig. 5 shows: from the first to the last of :func:`fig5_starts`. An exponent table
    (:func:`kltools.settings.diffusion.exponents`) holds every checkpoint from its first start
    to the run's last (NaN where a window is incomplete), so its last step is the run's."""
    first, last, _ = fig5_starts(s, c_l["step"].values)

    def window(c: xr.Dataset | None) -> xr.Dataset | None:
        if c is None:
            return None
        steps = c["step"].values
        return c.sel(step=steps[(steps >= first) & (steps <= last)])

    return window(c_l), window(c_w)


def distance_start(s: Settings, c: xr.Dataset) -> int:
    """The start step of Fig. 5's distance panel: the fitted start (finite c) nearest to
    the paper's (:func:`fig5_starts`)."""
    _, _, start = fig5_starts(s, c["step"].values)
    ok = np.isfinite(c.c).any("model").values
    steps = c["step"].values[ok]
    if steps.size == 0:
        raise KLToolsError("no start step has a complete window; lower window or min_start")
    return int(steps[np.argmin(np.abs(steps - start))])
