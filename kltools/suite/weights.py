"""Weight-space distances between checkpoints (Kishino et al. 2026, Sec. 3.1 and Fig. 5: diffusion).

``D_W(t, t') = Σ over all parameters (θ_t − θ_t')²``: differences of the float32 weights,
squared and summed in float64, from each checkpoint to each of the next ``max_lag``
checkpoints. Every tensor of the checkpoint's ``model.safetensors`` counts (embedding,
unembedding, layer norms, biases included).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from kltools.errors import KLToolsError

_STEP = re.compile(r"^step(\d+)$")


def checkpoint_dirs(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``stepS`` checkpoint in a run folder, by step."""
    run = Path(run_dir)
    if not run.is_dir():
        raise KLToolsError(f"run folder {run} does not exist; build the suite first")
    out = []
    for child in run.iterdir():
        m = _STEP.match(child.name)
        if m and (child / "model.safetensors").is_file():
            out.append((int(m.group(1)), child))
    if not out:
        raise KLToolsError(f"{run} holds no stepS checkpoint folders with model.safetensors")
    return sorted(out)


def _flat_weights(folder: Path) -> np.ndarray:
    """All tensors of ``folder/model.safetensors`` flattened (sorted by name), as float32."""
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    return np.concatenate([tensors[k].astype(np.float32).ravel() for k in sorted(tensors)])


def weight_distances(
    checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    max_lag: int = 10,
    steps: Sequence[int] | None = None,
) -> xr.DataArray:
    """Squared weight distances from each checkpoint to the next ``max_lag`` ones.

    Parameters
    ----------
    checkpoints : path or sequence of paths
        A run folder (its ``stepS`` checkpoints, in step order) or checkpoint folders in
        training order.
    max_lag : int
        How many following checkpoints to compare with.
    steps : sequence of int, optional
        Training steps of the given folders (default: parsed from ``stepS`` names, else
        0, 1, 2, ...).

    Returns
    -------
    xarray.DataArray
        ``weight_distance`` (float64), dims ``(step, lag)``: ``step`` is the start
        checkpoint's step, ``lag`` counts checkpoints (1..max_lag); coordinate
        ``delta_step`` (step, lag) is the step difference. NaN past the last checkpoint.
    """
    if max_lag < 1:
        raise KLToolsError(f"weight_distances: max_lag must be >= 1 (got {max_lag})")
    if isinstance(checkpoints, (str, os.PathLike)):
        pairs = checkpoint_dirs(checkpoints)
        step_list = [s for s, _ in pairs]
        folders = [f for _, f in pairs]
    else:
        folders = [Path(c) for c in checkpoints]
        if steps is None:
            parsed = [_STEP.match(f.name) for f in folders]
            step_list = (
                [int(m.group(1)) for m in parsed] if all(parsed) else list(range(len(folders)))
            )
        else:
            step_list = [int(s) for s in steps]
    if len(step_list) != len(folders):
        raise KLToolsError("weight_distances: give one step per checkpoint folder")
    vectors = [_flat_weights(f) for f in folders]
    if len({v.size for v in vectors}) > 1:
        raise KLToolsError("weight_distances: checkpoints have different parameter counts")
    from kltools.grid import lag_deltas, lag_pairs

    values = np.full((len(vectors), max_lag), np.nan)
    for i, j, lag in lag_pairs(len(vectors), max_lag):
        diff = (vectors[j] - vectors[i]).astype(np.float64)  # fp32 difference, fp64 sum
        # np.sum (pairwise, no BLAS) is reproducible whatever the thread count
        values[i, lag - 1] = float(np.sum(diff * diff))
    return weight_distance_array(values, step_list, lag_deltas(step_list, max_lag))


def weight_distance_array(
    values: np.ndarray, steps: Sequence[int], delta: np.ndarray
) -> xr.DataArray:
    """Wrap ``D_W`` values (start checkpoint × lag) in the layout every consumer reads.

    ``values[i, k-1]`` is the distance from checkpoint ``i`` to ``i + k``; ``delta`` holds the
    matching step differences. Used by :func:`weight_distances` and by the hub path of
    :mod:`kltools.weightspace`.
    """
    return xr.DataArray(
        values,
        dims=("step", "lag"),
        coords={
            "step": np.asarray(steps, dtype=np.int64),
            "lag": np.arange(1, values.shape[1] + 1),
            "delta_step": (("step", "lag"), delta),
        },
        name="weight_distance",
        attrs={"definition": "sum over all parameters of (theta_t' - theta_t)^2, fp64 sum"},
    )


def save_weight_distances(da: xr.DataArray, path: str | os.PathLike[str]) -> Path:
    """Write a :func:`weight_distances` result as JSON (NaN as null)."""

    def clean(a: np.ndarray) -> list:
        return [[None if np.isnan(x) else float(x) for x in row] for row in a]

    out = Path(path)
    out.write_text(
        json.dumps(
            {
                "step": [int(s) for s in da["step"].values],
                "lag": [int(x) for x in da["lag"].values],
                "weight_distance": clean(da.values),
                "delta_step": clean(da["delta_step"].values),
                "definition": da.attrs.get("definition", ""),
            }
        )
    )
    return out


def load_weight_distances(run: str | os.PathLike[str]) -> xr.DataArray:
    """The stored weight distances of a run folder (or of a ``weight_distances.json`` path).

    Raises
    ------
    KLToolsError
        If the run has no ``weight_distances.json`` (the run is not built).
    """
    path = Path(run)
    if path.is_dir():
        path = path / "weight_distances.json"
    if not path.is_file():
        raise KLToolsError(f"{path} does not exist; build the suite (kltools suite build)")
    raw = json.loads(path.read_text())

    def arr(rows: list) -> np.ndarray:
        return np.array([[np.nan if x is None else x for x in row] for row in rows], dtype=float)

    return xr.DataArray(
        arr(raw["weight_distance"]),
        dims=("step", "lag"),
        coords={
            "step": np.asarray(raw["step"], dtype=np.int64),
            "lag": np.asarray(raw["lag"], dtype=np.int64),
            "delta_step": (("step", "lag"), arr(raw["delta_step"])),
        },
        name="weight_distance",
        attrs={"definition": raw.get("definition", "")},
    )
