"""The pythia-profile section of ``make gpu-check``: its dry run, and the cost model it uses.

The dry run is the section's whole code path on the CPU at tiny shapes (random models written
as hub revisions into a cache in the real layout, resolved offline, extracted with the
profile's batch size, commits checked, CPU agreement, streamed weight distances, the
projection). No timing is asserted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import pythia_cost as C  # noqa: E402


@pytest.mark.slow
def test_pythia_section_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
           "--section", "pythia", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "DRY RUN" in lines[0] and "DRY RUN" in lines[-1]
    assert "== pythia profile" in proc.stdout and "recorded commits ok" in proc.stdout
    assert "all checks passed" in proc.stdout
    data = json.loads(out.read_text())
    for label in ("pythia-410m", "pythia-1b"):
        assert data[f"pythia {label} tokens/s"] > 0
        assert data[f"pythia {label} max abs diff gpu-cpu (nats)"] <= 1e-2
    assert data["pythia projected GPU hours"] > 0 and math.isfinite(data["pythia download TB"])


def test_parameter_counts_are_pythias() -> None:
    from kltools.sources.pythia import SIZES

    for size in ("410m", "1b", "1.4b", "2.8b", "6.9b"):
        assert C.param_count(C.REAL_SHAPES[f"EleutherAI/pythia-{size}"]) == SIZES[size]


def test_full_run_counts_what_the_profile_extracts() -> None:
    from kltools.config import Settings
    from kltools.settings.stores import pretraining_units

    work = C.full_run()
    pre = [w for w in work if w.chapter == "pretraining"]
    assert sum(w.units for w in pre) == len(pretraining_units(Settings(profile="pythia")))
    assert sum(w.units for w in pre) == 5 * 154 - 1 + 7 * 154  # sizes, seeds, minus 1b@116000
    by_repo = {w.repo: w.units for w in pre}
    assert by_repo["EleutherAI/pythia-1b"] == by_repo["EleutherAI/pythia-410m"] - 1  # step116000
    assert "EleutherAI/pythia-410m-seed3" not in by_repo
    disk = C.disk_bytes(work)
    assert disk["EleutherAI/pythia-410m"] == by_repo["EleutherAI/pythia-410m"] * 2 * 405_334_016


def test_projection_scales_with_flops_and_throughput() -> None:
    m = {"EleutherAI/pythia-410m": {"tokens_per_s": 1000.0},
         "EleutherAI/pythia-1b": {"tokens_per_s": 500.0}}  # fmt: skip
    rows = C.project(m, n_texts=100, tokens_per_text=200)
    faster = C.project({k: {"tokens_per_s": 2 * v["tokens_per_s"]} for k, v in m.items()},
                       n_texts=100, tokens_per_text=200)  # fmt: skip
    for a, b in zip(rows, faster):
        assert math.isclose(a["hours"], 2 * b["hours"], rel_tol=1e-12)
    r410 = next(r for r in rows if r["repo"] == "EleutherAI/pythia-410m")
    assert math.isclose(r410["hours"], r410["tokens"] / 1000.0 / 3600, rel_tol=1e-12)
    big = next(r for r in rows if r["repo"] == "EleutherAI/pythia-6.9b")
    assert big["rate_from"] == "EleutherAI/pythia-1b" and big["hours"] > r410["hours"]
    lens = next(r for r in rows if r["chapter"] == "layers")
    plain = C.flops_per_token(C.shape_of(lens["repo"]), (200 + 1) / 2)
    assert lens["flop_per_token"] > plain


def test_the_gpu_page_plan_is_current() -> None:
    # book/gpu.md includes this file; regenerate with python benchmarks/pythia_cost.py --write
    assert C.PAGE_FILE.read_text() == C.page_text()
