"""benchmarks/: `make bench --quick` and `make gpu-check --dry-run` run end to end; the CUDA batch rule.

No timings are asserted (speed is measured by the benchmarks, never by tests): these tests
check that every section runs and prints its numbers, that the dry run says it is one, and
that the numerical checks inside the scripts hold.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kltools.extraction import CUDA_MAX_BATCH_TOKENS, batch_tokens_for_memory

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_batch_tokens_bounded_by_chunk_not_vocab() -> None:
    common = {"hidden": 1024, "intermediate": 4096, "itemsize": 2, "lens_rows": 1}
    small = batch_tokens_for_memory(2**30, vocab=50304, chunk_rows=1024, **common)
    big_vocab = batch_tokens_for_memory(2**30, vocab=4 * 50304, chunk_rows=256, **common)
    # the same logits budget (chunk x vocab) gives the same batch whatever the vocabulary
    assert small == big_vocab and 256 < small < CUDA_MAX_BATCH_TOKENS
    more = batch_tokens_for_memory(2 * 2**30, vocab=50304, chunk_rows=1024, **common)
    assert more > 2 * small
    # what the batch needs fits the free memory it was given, logits chunk included
    per_token = 2 * (8 * 1024 + 3 * 4096 + 1024) + 64
    assert small * per_token + 1024 * 50304 * 14 <= 2**30
    lens = batch_tokens_for_memory(
        2**30, vocab=50304, chunk_rows=1024, **{**common, "lens_rows": 25}
    )
    assert lens < small
    assert batch_tokens_for_memory(0, vocab=50304, chunk_rows=1024, **common) == 256
    assert (
        batch_tokens_for_memory(2**45, vocab=50304, chunk_rows=1024, **common)
        == CUDA_MAX_BATCH_TOKENS
    )


@pytest.mark.slow
def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _run("bench_extract.py", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for section in (
        "== 1. matmul roofline",
        "== 2. in-process",
        "== 3. whole processes",
        "== 4. scale-out",
        "== 5. kl_matrix",
        "== 6. the book's workload",
        "== targets",
        "bfloat16 matmul on this CPU",
    ):
        assert section in text, section
    assert "--quick" in text.splitlines()[0]
    data = json.loads(out.read_text())
    for key in (
        "process kltools fp32 / paper fp32",
        "process kltools fp32 / lm-eval",
        "process kltools bf16 / paper fp32",
        "pythia70m lens time / roofline time",
        "peak RSS kltools extract fp32 (GB)",
        "scale-out local:2 speed-up incl. start",
        "pythia70m KL fp32 vs bf16 (bits/byte)",
    ):
        assert math.isfinite(data[key]) and data[key] > 0, key
    # numerics inside the bench: kltools agrees with the plain paper method
    assert data["pythia70m max abs kltools-paper (nats)"] < 1e-3
    assert data["tiny max abs kltools-paper (nats)"] < 1e-3


def test_gpu_check_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = _run("gpu_check.py", "--dry-run", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "DRY RUN" in lines[0] and "DRY RUN" in lines[-1]
    assert "all checks passed" in proc.stdout
    data = json.loads(out.read_text())
    assert data["dry_run"] == 1.0
    for label in ("pythia-160m (DRY: tiny)", "pythia-410m (DRY: tiny)"):
        assert data[f"{label} max abs diff gpu-cpu (nats)"] <= 1e-2
        assert 0 <= data[f"{label} KL fp32-bf16 (bits/byte)"] < 1e-2
        assert data[f"{label} kltools fp32 lens tokens/s"] > 0


def test_gpu_check_without_cuda_refuses() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = _run("gpu_check.py", timeout=120)
    assert proc.returncode == 2 and "--dry-run" in proc.stdout


def test_bench_book_workload_quick(tmp_path: Path, smoke_suite_root: Path) -> None:
    """Section 6 on the smoke suite: both paths run, the timings add up, the values agree."""
    out = tmp_path / "book.json"
    env = {**ENV, "KLTOOLS_SUITE_ROOT": str(smoke_suite_root)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_extract.py"), "--quick"]
    cmd += ["--book-only", "--json", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== 6. the book's workload" in proc.stdout and "skipped" not in proc.stdout
    assert "projected pretraining store" in proc.stdout
    data = json.loads(out.read_text())
    for path in ("now", "present"):
        parts = [data[f"book workload {path} {k} s"] for k in ("load", "forward", "write")]
        assert all(p > 0 for p in parts)
        assert sum(parts) <= data[f"book workload {path} seconds"]
    assert data["book workload max abs diff (nats)"] <= 1e-4
    assert data["book workload now / present"] > 0
    assert math.isfinite(data["book workload roofline fraction"])
    assert any(k.startswith("pretraining store projected seconds") for k in data)
