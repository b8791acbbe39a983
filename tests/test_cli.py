"""The ``kltools extract`` / ``kltools kl`` commands, run as subprocesses (HF_HUB_OFFLINE=1).

Covers --help, a full extract + kl round trip, resuming after SIGKILL, and bad input: each bad
input must give one ``kltools: error:`` line on stderr, a non-zero exit, no traceback, and leave
the store exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from kltools.extraction import extract
from kltools.kl import kl_matrix
from kltools.store import open_store
from kltools.texts import load_texts

# One intra-op thread: on a shared 2-core machine torch's spinning threads slow tiny models 5-10x.
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}


def kltools(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m kltools ARGS`` and capture its output."""
    cmd = [sys.executable, "-m", "kltools", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def tree_hash(path: Path) -> str:
    """Hash of every relative path and file content under a directory."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_corpus: str) -> dict[str, Path]:
    """Text files: a small set, another set, an empty file, a non-UTF-8 file."""
    d = tmp_path_factory.mktemp("cli_texts")
    paras = tiny_corpus.split("\n\n")[:7]
    (d / "small.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(paras))
    )
    (d / "other.txt").write_text("\n\n".join(paras[:3]))
    (d / "empty.txt").write_text("")
    (d / "latin1.txt").write_bytes("Größe und Maß\n".encode("latin-1"))
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, make_tiny_neox) -> Path:
    """A run folder with checkpoints step1..step6 (different random models)."""
    run = tmp_path_factory.mktemp("cli_run") / "tiny-run"
    for step in range(1, 7):
        shutil.copytree(make_tiny_neox(10 + step), run / f"step{step}")
    return run


def test_help() -> None:
    for sub in ("extract", "kl"):
        out = kltools(sub, "--help")
        assert out.returncode == 0 and f"usage: kltools {sub}" in out.stdout
    assert "--bos {paper,prefix}" in kltools("extract", "--help").stdout


def test_extract_then_kl(tmp_path: Path, run_dir: Path, files) -> None:
    store = tmp_path / "k.zarr"
    models = [f"--model={run_dir}@step{s}" for s in (1, 2, 3)]
    out = kltools("extract", *models, "--texts", str(files["small"]), "--store", str(store))
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("kltools: done") == 3 and "tokens/s" in out.stderr
    ds = open_store(store)
    assert ds.loglik.dims == ("model", "step", "text") and list(ds.step.values) == [1, 2, 3]
    csv = tmp_path / "kl.csv"
    out = kltools("kl", "--store", str(store), "--dim", "step", "--csv", str(csv))
    assert out.returncode == 0, out.stderr
    assert "bits/byte" in out.stdout
    frame = pd.read_csv(csv, index_col=list(range(2)))
    ref = kl_matrix(ds.loglik, dim="step", units="bpb")
    np.testing.assert_allclose(frame["kl"].to_numpy(), ref.values.ravel(), rtol=1e-12)
    model_store = tmp_path / "m.zarr"
    texts = load_texts(files["small"])
    extract([str(run_dir / "step1"), str(run_dir / "step2")], texts, model_store, progress=False)
    out = kltools("kl", "--store", str(model_store), "--units", "nats")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "KL (nats/text):"
    assert lines[1].split() == [str(run_dir / "step1"), str(run_dir / "step2")]  # column labels
    assert lines[2].split()[0] == str(run_dir / "step1")  # row label
    ref = kl_matrix(open_store(model_store).loglik, dim="model", units="nats").values
    assert float(lines[2].split()[2]) == pytest.approx(ref[0, 1], rel=1e-5)


def _done(store: Path) -> list[int]:
    try:
        return zarr.open_array(str(store / "done"), mode="r")[:].tolist()
    except Exception:  # not created yet, or being resized
        return []


def _finished(store: Path) -> dict[int, float]:
    return {u["row"]: u["run"]["finished"] for u in json.loads(open_store(store).attrs["units"])}


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path, run_dir: Path, tiny_corpus: str) -> None:
    # enough work per unit (~50k tokens) that the kill lands while later units are pending
    paras = tiny_corpus.split("\n\n")
    rows = [{"id": f"r{i}", "text": paras[i % len(paras)] + f" ({i})"} for i in range(160)]
    texts = tmp_path / "resume.jsonl"
    texts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = [f"--model={run_dir}@step{s}" for s in range(1, 7)]
    args = ["extract", *models, "--texts", str(texts), "--batch-size", "8"]

    ref_store = tmp_path / "ref.zarr"
    assert kltools(*args, "--store", str(ref_store)).returncode == 0

    store = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "kltools", *args, "--store", str(store)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while sum(_done(store)) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _done(store)
    assert 1 <= sum(done_before) < 6, f"kill did not land mid-run: {done_before}"
    partial = open_store(store)  # readable after the kill, only finished units exposed
    assert partial.sizes["step"] == sum(done_before)
    stamps = _finished(store)

    out = kltools(*args, "--store", str(store))
    assert out.returncode == 0, out.stderr
    n_done = sum(done_before)
    assert out.stderr.count("kltools: skip") == n_done
    assert out.stderr.count("kltools: done") == 6 - n_done
    after = _finished(store)
    assert all(after[row] == t for row, t in stamps.items())  # finished units not recomputed
    a, b = open_store(store), open_store(ref_store)
    np.testing.assert_array_equal(a.loglik.values, b.loglik.values)
    np.testing.assert_array_equal(a.n_tokens.values, b.n_tokens.values)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, tiny_neox: Path, files) -> Path:
    store = tmp_path_factory.mktemp("cli_store") / "base.zarr"
    extract([str(tiny_neox)], load_texts(files["small"]), store, progress=False)
    return store


BAD = {
    "missing-model": (["--model", "/nonexistent/kltools-model"], "does not exist"),
    "hub-offline": (["--model", "kltools-nonexistent-org/model@step1000"], "offline"),
    "unknown-revision": (["--model", "{run}@step999"], "unknown revision 'step999'"),
    "empty-texts": (["--model", "{tiny}", "--texts", "{empty}"], "holds no texts"),
    "non-utf8-texts": (["--model", "{tiny}", "--texts", "{latin1}"], "UTF-8"),
    "other-textset": (["--model", "{tiny}", "--texts", "{other}"], "was built on text set"),
    "layer-range": (["--model", "{tiny}", "--layers", "0,7"], "which has 2 layers"),
    "cuda": (["--model", "{tiny}", "--device", "cuda"], "CUDA is not available"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case: str, base_store: Path, tiny_neox: Path, run_dir: Path, files) -> None:
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv, message = BAD[case]
    subs = {"run": str(run_dir), "tiny": str(tiny_neox), **{k: str(v) for k, v in files.items()}}
    argv = [a.format(**subs) for a in argv]
    if "--texts" not in argv:
        argv += ["--texts", str(files["small"])]
    digest = tree_hash(base_store)
    out = kltools("extract", *argv, "--store", str(base_store))
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("kltools: error:") and message in lines[0], lines[0]
    assert tree_hash(base_store) == digest


def test_kl_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.zarr"
    out = kltools("kl", "--store", str(missing))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kltools: error: no store at")
    assert not missing.exists()
