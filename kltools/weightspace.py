"""Weight-space distances between checkpoints, streamed: memory bounded, whatever the window.

``D_W(t, t') = Σ over all parameters (θ_t − θ_t')²`` (the paper's diffusion analysis): the
stored weights are cast to float32, differenced in float32, and the squares summed in float64
— the definition of :mod:`kltools.suite.weights`, whose in-memory version this replaces for
checkpoints too large to hold ``max_lag + 1`` at once (Pythia-6.9B: 27 GB of float32 each).

How the memory stays bounded
----------------------------
Checkpoints are read tensor by tensor from their files (``safetensors`` through ``safe_open``,
or ``pytorch_model*.bin`` memory-mapped), never as whole state dicts. With a budget of ``B``
bytes (default: one checkpoint in float32) and a window of ``K = max_lag``:

- tensors are grouped in order into *blocks* of at most ``B / (K + 1)`` bytes; for each block
  the checkpoints are visited once, in order, holding that block of the last ``K`` checkpoints
  plus the current one — ``(K + 1) × block ≤ B`` — so every checkpoint's bytes are read once;
- a tensor larger than ``B / (K + 1)`` (an embedding when ``K`` is large) is compared pair by
  pair: one reference copy and one streamed copy, two tensors at a time, read ``K + 1`` times.

So the float32 checkpoint data alive at once never exceeds ``B`` plus one tensor, i.e. two
checkpoints, for any ``K`` (plus the float64 square of one tensor's difference while it is
summed). Tensors are compared by name; every tensor in the files counts (buffers saved with the
weights, such as attention masks, are constant and add zero).

Output layout: :func:`kltools.suite.weights.weight_distance_array` — ``weight_distance``
(float64) with dims ``(step, lag)``, ``lag`` = 1 … ``max_lag`` in checkpoints, coordinate
``delta_step(step, lag)``, NaN past the last checkpoint; saved with
:func:`kltools.suite.weights.save_weight_distances` (what ``weight_lag_distances`` reads).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError
from kltools.grid import lag_deltas, lag_pairs

__all__ = [
    "CheckpointTensors",
    "checkpoint_files",
    "hub_checkpoint_files",
    "hub_weight_distances",
    "plan_blocks",
    "stream_weight_distances",
]


def checkpoint_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a model folder: ``*.safetensors`` (sharded or not), else ``*.bin``."""
    d = Path(folder)
    files = sorted(d.glob("*.safetensors"))
    if not files:
        files = sorted(p for p in d.glob("pytorch_model*.bin"))
    if not files:
        raise KLToolsError(f"{d} holds no *.safetensors or pytorch_model*.bin weight files")
    return files


class CheckpointTensors:
    """One checkpoint's tensors, read one at a time from its files (never all at once).

    Parameters
    ----------
    files : sequence of path
        ``.safetensors`` files (read with ``safe_open``) or ``.bin`` files (``torch.load``
        memory-mapped); shards of one checkpoint together.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]]) -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise KLToolsError("a checkpoint needs at least one weight file")
        self._where: dict[str, Path] = {}
        self._shape: dict[str, tuple[int, ...]] = {}
        self._bin: dict[Path, dict[str, Any]] = {}
        for f in self.files:
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(f), framework="pt", device="cpu") as h:
                    for name in h.keys():
                        self._where[name] = f
                        self._shape[name] = tuple(h.get_slice(name).get_shape())
            else:
                sd = self._load_bin(f)
                for name, t in sd.items():
                    self._where[name] = f
                    self._shape[name] = tuple(t.shape)

    def _load_bin(self, f: Path) -> dict[str, Any]:
        if f not in self._bin:
            import torch

            self._bin[f] = torch.load(str(f), map_location="cpu", mmap=True, weights_only=True)
        return self._bin[f]

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of a tensor (from the file header)."""
        return self._shape[name]

    def nbytes(self, name: str) -> int:
        """Bytes of a tensor in float32."""
        return 4 * int(np.prod(self._shape[name], dtype=np.int64))

    def get(self, name: str, device: str = "cpu") -> Any:
        """One tensor as float32 on ``device``."""
        import torch

        f = self._where[name]
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt", device="cpu") as h:
                t = h.get_tensor(name)
        else:
            t = self._load_bin(f)[name]
        return t.to(device=device, dtype=torch.float32)


def plan_blocks(
    sizes: dict[str, int], max_lag: int, budget_bytes: int
) -> tuple[list[list[str]], list[str]]:
    """Group tensors (name -> float32 bytes, in name order) into blocks of at most
    ``budget_bytes / (max_lag + 1)`` bytes; tensors larger than that are returned apart.

    Returns
    -------
    (blocks, oversized)
    """
    cap = budget_bytes // (max_lag + 1)
    blocks: list[list[str]] = []
    oversized: list[str] = []
    cur: list[str] = []
    used = 0
    for name in sorted(sizes):
        b = sizes[name]
        if b > cap:
            oversized.append(name)
            continue
        if cur and used + b > cap:
            blocks.append(cur)
            cur, used = [], 0
        cur.append(name)
        used += b
    if cur:
        blocks.append(cur)
    return blocks, oversized


def _sq(a: Any, b: Any) -> float:
    """``Σ (b − a)²``: float32 difference, squares summed in float64."""
    d = (b - a).double()
    return float(torch_dot(d))


def torch_dot(d: Any) -> Any:
    """``d · d`` (a 0-d tensor)."""
    import torch

    flat = d.reshape(-1)
    return torch.dot(flat, flat)


def stream_weight_distances(
    checkpoints: Sequence[CheckpointTensors | str | os.PathLike[str]],
    steps: Sequence[int],
    *,
    max_lag: int = 10,
    device: str = "cpu",
    budget_bytes: int | None = None,
) -> Any:
    """``D_W`` from each checkpoint to each of the next ``max_lag``, streaming the weights.

    Parameters
    ----------
    checkpoints : sequence of CheckpointTensors or model folders
        In training order.
    steps : sequence of int
        The training step of each checkpoint.
    max_lag : int
        The window ``K``: distances to the next ``K`` checkpoints.
    device : str
        Where the arithmetic runs (``cpu``, ``cuda``).
    budget_bytes : int, optional
        Bytes of float32 weights held at once for the blocked pass (default: one checkpoint).
        Whatever the budget, the data alive stay within two checkpoints (see the module
        docstring).

    Returns
    -------
    xarray.DataArray
        :func:`kltools.suite.weights.weight_distance_array` layout, dims ``(step, lag)``;
        attrs ``budget_bytes``, ``blocks`` and ``oversized`` (how the pass was organised).
    """
    from kltools.suite.weights import weight_distance_array

    if isinstance(max_lag, bool) or int(max_lag) < 1:
        raise KLToolsError(f"weight distances: max_lag must be >= 1 (got {max_lag})")
    readers = [
        c if isinstance(c, CheckpointTensors) else CheckpointTensors(checkpoint_files(c))
        for c in checkpoints
    ]
    steps = [int(s) for s in steps]
    if len(steps) != len(readers):
        raise KLToolsError("weight distances: give one step per checkpoint")
    if not readers:
        raise KLToolsError("weight distances: no checkpoints given")
    names = readers[0].names()
    for r, s in zip(readers, steps):
        if r.names() != names or any(r.shape(n) != readers[0].shape(n) for n in names):
            raise KLToolsError(
                f"weight distances: checkpoint of step {s} has other tensors or shapes than "
                f"that of step {steps[0]}; compare checkpoints of one run"
            )
    sizes = {n: readers[0].nbytes(n) for n in names}
    budget = int(budget_bytes) if budget_bytes is not None else sum(sizes.values())
    blocks, oversized = plan_blocks(sizes, int(max_lag), budget)
    n, k_max = len(readers), int(max_lag)
    acc = np.zeros((n, k_max), dtype=np.float64)
    for block in blocks:
        window: deque[tuple[int, dict[str, Any]]] = deque()
        for j, r in enumerate(readers):
            cur = {name: r.get(name, device) for name in block}
            for i, prev in window:
                acc[i, j - i - 1] += sum(_sq(prev[name], cur[name]) for name in block)
            window.append((j, cur))
            if len(window) > k_max:
                window.popleft()
            del cur
        window.clear()
    for name in oversized:
        for i in range(n - 1):
            ref = readers[i].get(name, device)
            for j in range(i + 1, min(n, i + k_max + 1)):
                other = readers[j].get(name, device)
                acc[i, j - i - 1] += _sq(ref, other)
                del other
            del ref
    values = np.full((n, k_max), np.nan)
    for i, _, lag in lag_pairs(n, k_max):
        values[i, lag - 1] = acc[i, lag - 1]
    da = weight_distance_array(values, steps, lag_deltas(steps, k_max))
    da.attrs.update(budget_bytes=budget, blocks=len(blocks), oversized=len(oversized))
    return da


def hub_checkpoint_files(repo: str, revision: str) -> list[Path]:
    """The weight files of a hub revision (downloaded, or from the cache when offline).

    Safetensors files (and their shard index) are fetched first; a revision without them
    falls back to ``pytorch_model*.bin``.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=["*.safetensors", "*.safetensors.index.json"]
        )
        if not any(Path(folder).glob("*.safetensors")):
            folder = snapshot_download(
                repo,
                revision=revision,
                allow_patterns=["pytorch_model*.bin", "pytorch_model.bin.index.json"],
            )
    except Exception as exc:  # missing repo/revision, offline without a cache, network
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KLToolsError(
            f"weights of hub repository {repo!r} at revision {revision!r} are unavailable: {first}"
        ) from exc
    return checkpoint_files(folder)


def hub_weight_distances(
    repo: str,
    steps: Sequence[int],
    *,
    max_lag: int = 10,
    device: str = "auto",
    budget_bytes: int | None = None,
    out: str | os.PathLike[str] | None = None,
    files_of: Callable[[str, str], list[Path]] | None = None,
) -> Any:
    """``D_W`` of a hub run at revisions ``step<S>``, streamed (see the module docstring).

    Parameters
    ----------
    repo : str
        ``EleutherAI/pythia-410m`` …
    steps : sequence of int
        The steps, in training order (``revision = f"step{S}"``).
    max_lag, budget_bytes
        As for :func:`stream_weight_distances`.
    device : str
        ``auto`` = CUDA when available.
    out : path, optional
        Also write the result as JSON (:func:`kltools.suite.weights.save_weight_distances`).
    files_of : callable, optional
        ``(repo, revision) -> weight files`` (default :func:`hub_checkpoint_files`).

    Returns
    -------
    xarray.DataArray
        The :func:`stream_weight_distances` layout.
    """
    from kltools.models import resolve_device
    from kltools.suite.weights import save_weight_distances

    files_of = files_of or hub_checkpoint_files
    dev = resolve_device(device)
    steps = [int(s) for s in steps]
    readers = [CheckpointTensors(files_of(repo, f"step{s}")) for s in steps]
    da = stream_weight_distances(
        readers, steps, max_lag=max_lag, device=dev, budget_bytes=budget_bytes
    )
    da.attrs["repo"] = repo
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_weight_distances(da, out)
    return da
