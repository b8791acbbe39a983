"""Checkpoint grids: their spacing, where the evenly spaced part starts, the k-th next checkpoint.

Every place that pairs a checkpoint with the ``k``-th next one (the diffusion fits in
log-likelihood and weight space, the consecutive pairs, the weight distances of the suite and
of streamed hub checkpoints) takes its pairs and step differences from here, so "the next
``K`` checkpoints" means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kltools.errors import KLToolsError

__all__ = ["first_even_step", "grid_interval", "lag_deltas", "lag_pairs"]


def grid_interval(steps: Sequence[int]) -> int:
    """The spacing of the evenly spaced part of a checkpoint grid (its most common gap)."""
    gaps = np.diff(sorted(int(t) for t in steps))
    if gaps.size == 0:
        raise KLToolsError("a checkpoint grid needs at least 2 steps")
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[counts == counts.max()].max())


def first_even_step(steps: Sequence[int]) -> int:
    """The first checkpoint of the evenly spaced part of a grid (Pythia: 1000)."""
    steps = sorted(int(t) for t in steps)
    interval = grid_interval(steps)
    for i in range(len(steps) - 1):
        if all(b - a == interval for a, b in zip(steps[i:], steps[i + 1 :])):
            return steps[i]
    return steps[-1]


def lag_pairs(n: int, max_lag: int) -> list[tuple[int, int, int]]:
    """``(i, j, k)`` for every checkpoint ``i`` of ``n`` and its ``k``-th next ``j = i + k``,
    ``k = 1 … max_lag``, in the order of ``i`` then ``k`` (pairs past the end left out)."""
    if isinstance(max_lag, bool) or int(max_lag) < 1:
        raise KLToolsError(f"the window must be at least 1 checkpoint, not {max_lag!r}")
    return [(i, i + k, k) for i in range(n) for k in range(1, int(max_lag) + 1) if i + k < n]


def lag_deltas(steps: Sequence[float], max_lag: int) -> np.ndarray:
    """``steps[i + k] - steps[i]`` for ``k = 1 … max_lag``: shape ``(len(steps), max_lag)``,
    NaN past the end of the grid."""
    steps_arr = np.asarray(steps, dtype=np.float64)
    out = np.full((steps_arr.size, int(max_lag)), np.nan)
    for i, j, k in lag_pairs(steps_arr.size, max_lag):
        out[i, k - 1] = steps_arr[j] - steps_arr[i]
    return out
