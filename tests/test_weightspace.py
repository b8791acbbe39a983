"""kltools.weightspace: streamed weight distances match the definition, with memory bounded by
two checkpoints whatever the window."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest

from kltools.errors import KLToolsError
from kltools.weightspace import CheckpointTensors, plan_blocks, stream_weight_distances

SHAPES = {"embed": (40, 8), "w1": (8, 8), "w2": (8, 16), "b": (16,), "norm": (8,)}


def _write_checkpoints(folder: Path, n: int, dtype=np.float16) -> list[Path]:
    """``n`` checkpoint folders whose weights drift like a training run (fp16 on disk)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    theta = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in SHAPES.items()}
    out = []
    for t in range(n):
        d = folder / f"step{t * 1000}"
        d.mkdir(parents=True)
        save_file({k: v.astype(dtype) for k, v in theta.items()}, str(d / "model.safetensors"))
        out.append(d)
        for k in theta:
            theta[k] = theta[k] + rng.normal(0, 0.05 / (t + 1), SHAPES[k]).astype(np.float32)
    return out


def _reference(folders: list[Path], max_lag: int) -> np.ndarray:
    """The definition, written out: fp32 weights, fp32 differences, fp64 sum of squares."""
    from safetensors.numpy import load_file

    ws = [{k: v.astype(np.float32) for k, v in load_file(str(f / "model.safetensors")).items()}
          for f in folders]  # fmt: skip
    n = len(ws)
    ref = np.full((n, max_lag), np.nan)
    for i in range(n):
        for lag in range(1, max_lag + 1):
            if i + lag < n:
                total = 0.0
                for k in ws[i]:
                    diff = (ws[i + lag][k] - ws[i][k]).astype(np.float64)
                    total += float((diff * diff).sum())
                ref[i, lag - 1] = total
    return ref


class CountingReader(CheckpointTensors):
    """Counts the float32 bytes of the tensors it handed out that are still alive."""

    live = 0
    peak = 0

    def get(self, name, device="cpu"):
        t = super().get(name, device)
        nbytes = t.numel() * 4
        CountingReader.live += nbytes
        CountingReader.peak = max(CountingReader.peak, CountingReader.live)
        weakref.finalize(t, CountingReader._freed, nbytes)
        return t

    @staticmethod
    def _freed(nbytes: int) -> None:
        CountingReader.live -= nbytes


@pytest.mark.parametrize("max_lag", [1, 3, 9])
def test_values_match_definition(tmp_path: Path, max_lag: int) -> None:
    folders = _write_checkpoints(tmp_path, 7)
    steps = [int(f.name[4:]) for f in folders]
    da = stream_weight_distances(folders, steps, max_lag=max_lag)
    ref = _reference(folders, max_lag)
    assert da.dims == ("step", "lag")
    assert list(da["step"].values) == steps and list(da["lag"].values) == list(
        range(1, max_lag + 1)
    )
    np.testing.assert_array_equal(np.isnan(da.values), np.isnan(ref))
    np.testing.assert_allclose(da.values, ref, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(
        da["delta_step"].values[:, 0][:-1], np.diff(np.asarray(steps, float))
    )


def test_same_as_the_suite_function(tmp_path: Path) -> None:
    from kltools.suite.weights import weight_distances

    folders = _write_checkpoints(tmp_path, 6)
    a = stream_weight_distances(folders, [int(f.name[4:]) for f in folders], max_lag=4)
    b = weight_distances(tmp_path, max_lag=4)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(a["delta_step"].values, b["delta_step"].values)


@pytest.mark.parametrize("max_lag", [2, 8])
@pytest.mark.parametrize("budget", [None, "tiny"])
def test_memory_bounded_by_two_checkpoints(tmp_path: Path, max_lag: int, budget) -> None:
    folders = _write_checkpoints(tmp_path, 12)
    readers = [CountingReader([f / "model.safetensors"]) for f in folders]
    ckpt = sum(readers[0].nbytes(n) for n in readers[0].names())
    budget_bytes = None if budget is None else ckpt // 4
    CountingReader.live = CountingReader.peak = 0
    da = stream_weight_distances(
        readers, list(range(12)), max_lag=max_lag, budget_bytes=budget_bytes
    )
    np.testing.assert_allclose(da.values, _reference(folders, max_lag), rtol=1e-12, equal_nan=True)
    # a window of max_lag + 1 whole checkpoints (the in-memory method) would exceed the bound
    assert (max_lag + 1) * ckpt > 2 * ckpt
    assert 0 < CountingReader.peak <= 2 * ckpt
    assert CountingReader.live == 0
    if budget is not None:  # a small budget sends the large tensors down the pairwise path
        assert da.attrs["oversized"] > 0


def test_plan_blocks_respects_the_budget() -> None:
    sizes = {"a": 40, "b": 10, "c": 10, "d": 30, "e": 5}
    blocks, oversized = plan_blocks(sizes, max_lag=3, budget_bytes=100)  # cap 25 per copy
    assert oversized == ["a", "d"]
    assert sorted(n for b in blocks for n in b) == ["b", "c", "e"]
    assert all(sum(sizes[n] for n in b) <= 25 for b in blocks)


def test_mismatched_checkpoints_fail_clearly(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    folders = _write_checkpoints(tmp_path, 2)
    other = tmp_path / "other"
    other.mkdir()
    save_file({"embed": np.zeros((3, 3), np.float32)}, str(other / "model.safetensors"))
    with pytest.raises(KLToolsError, match="other tensors or shapes"):
        stream_weight_distances([folders[0], other], [0, 1], max_lag=1)
    with pytest.raises(KLToolsError, match="max_lag"):
        stream_weight_distances(folders, [0, 1], max_lag=0)
    with pytest.raises(KLToolsError, match="no .*weight files"):
        stream_weight_distances([tmp_path / "missing"], [0])
