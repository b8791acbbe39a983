"""kltools.models: resolving specs (local, run@step, suite, hub) and loading (dtype, bnb)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kltools.errors import KLToolsError
from kltools.models import load_model, resolve_device, resolve_model


def _run_dir(root: Path, ckpts: dict[int, Path]) -> Path:
    """A run folder with ``stepN`` checkpoint copies."""
    root.mkdir(parents=True)
    for step, src in ckpts.items():
        shutil.copytree(src, root / f"step{step}")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, make_tiny_neox) -> Path:
    root = tmp_path_factory.mktemp("runs") / "myrun"
    return _run_dir(root, {1: make_tiny_neox(1), 10: make_tiny_neox(2)})


def test_local_dir(tiny_neox: Path) -> None:
    ref = resolve_model(str(tiny_neox))
    assert ref.kind == "local"
    assert Path(ref.path_or_id) == tiny_neox.resolve()
    assert ref.revision is None and ref.commit is None


def test_local_run_revision_and_final(run_dir: Path) -> None:
    ref = resolve_model(f"{run_dir}@step1")
    assert ref.kind == "local" and ref.revision == "step1"
    assert Path(ref.path_or_id) == run_dir.resolve() / "step1"
    assert Path(resolve_model(str(run_dir)).path_or_id).name == "step10"  # largest step


def test_run_json_final_step(tmp_path: Path, make_tiny_neox) -> None:
    run = _run_dir(tmp_path / "r", {3: make_tiny_neox(1), 7: make_tiny_neox(2)})
    (run / "run.json").write_text(json.dumps({"final_step": 3}))
    assert Path(resolve_model(str(run)).path_or_id).name == "step3"


def test_unknown_local_revision(run_dir: Path) -> None:
    with pytest.raises(KLToolsError, match=r"unknown revision 'step999'.*step1, step10"):
        resolve_model(f"{run_dir}@step999")


def test_missing_path() -> None:
    with pytest.raises(KLToolsError, match="does not exist"):
        resolve_model("/nonexistent/kltools/model")
    with pytest.raises(KLToolsError, match="does not exist"):
        resolve_model("./no-such-dir@step1")


def test_suite_names(tmp_path: Path, monkeypatch, make_tiny_neox) -> None:
    suite = tmp_path / "suite"
    _run_dir(suite / "tiny" / "tiny-a", {0: make_tiny_neox(1), 64: make_tiny_neox(2)})
    (suite / "tiny" / "tiny-a" / "run.json").write_text(json.dumps({"final_step": 64}))
    shutil.copytree(make_tiny_neox(3), suite / "smoke" / "smoke-a-int8")
    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(suite))
    ref = resolve_model("tiny-a@step0")
    assert (ref.kind, Path(ref.path_or_id)) == ("suite", suite / "tiny" / "tiny-a" / "step0")
    assert Path(resolve_model("tiny-a").path_or_id).name == "step64"
    variant = resolve_model("smoke-a-int8")
    assert Path(variant.path_or_id) == suite / "smoke" / "smoke-a-int8"
    with pytest.raises(KLToolsError, match="unknown revision"):
        resolve_model("tiny-a@step5")
    with pytest.raises(KLToolsError, match="not a local directory, not a suite model"):
        resolve_model("tiny-nothere")


def test_hub_offline_fails_fast(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KLToolsError, match="offline.*local directory"):
        resolve_model("kltools-test-nonexistent-org/no-model@step1000")


def test_load_dtype_and_info(tiny_neox: Path) -> None:
    lm = load_model(str(tiny_neox), dtype="bfloat16", device="cpu")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert not lm.model.training
    assert lm.info["dtype"] == "bfloat16" and lm.info["device"] == "cpu"
    assert lm.info["quantization"] is None and lm.info["n_layers"] == 2
    assert lm.info["max_length"] == 128


def test_bad_dtype_device() -> None:
    with pytest.raises(KLToolsError, match="unknown dtype"):
        load_model("/x", dtype="float8")
    with pytest.raises(KLToolsError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(tiny_neox: Path) -> None:
    with pytest.raises(KLToolsError, match="CUDA is not available"):
        load_model(str(tiny_neox), device="cuda")


@pytest.mark.parametrize(
    ("quant", "layer"), [("int8", "Linear8bitLt"), ("fp4", "Linear4bit"), ("nf4", "Linear4bit")]
)
def test_bnb_quantization_on_cpu(make_tiny_neox, quant: str, layer: str) -> None:
    from kltools.extraction import score_texts

    # bitsandbytes' CPU 4-bit kernels need input sizes that are multiples of its blocksize (64)
    tiny_neox = make_tiny_neox(0, hidden_size=64, intermediate_size=128)
    q = load_model(str(tiny_neox), device="cpu", quantization=quant)
    names = {type(m).__name__ for m in q.model.modules()}
    assert layer in names
    assert q.info["quantization"] == quant
    full = load_model(str(tiny_neox), device="cpu")
    texts = ["We the People of the United States", "Four score and seven years ago"]
    a = score_texts(full, texts).loglik
    b = score_texts(q, texts).loglik
    assert np.isfinite(b).all()
    assert not np.array_equal(a, b)  # really quantized: the numbers moved ...
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()  # ... but only a little


def test_refuses_unquantized(tiny_neox: Path) -> None:
    from kltools.models import _check_quantized

    full = load_model(str(tiny_neox), device="cpu")
    with pytest.raises(KLToolsError, match="no Linear4bit layers"):
        _check_quantized(full.model, "nf4", "tiny")


def test_refuses_4bit_cpu_odd_sizes(tiny_neox: Path) -> None:
    with pytest.raises(KLToolsError, match="multiple of 64 .got 32"):
        load_model(str(tiny_neox), device="cpu", quantization="fp4")


# ------------------------------------------------------------------ many units: model reuse


def test_reused_model_equals_fresh_load(run_dir: Path) -> None:
    """A released model reloaded with the next checkpoint's weights is that checkpoint."""
    from kltools.models import clear_reuse_cache, load_model_reusing, release_model

    clear_reuse_cache()
    first = load_model_reusing(resolve_model(f"{run_dir}@step1"), device="cpu")
    skeleton = first.model
    release_model(first)
    second = load_model_reusing(resolve_model(f"{run_dir}@step10"), device="cpu")
    assert second.model is skeleton  # reused, not rebuilt
    fresh = load_model(f"{run_dir}@step10", device="cpu")
    got, want = second.model.state_dict(), fresh.model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    for (name, a), (_, b) in zip(second.model.named_buffers(), fresh.model.named_buffers()):
        assert torch.equal(a, b), name
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        assert torch.equal(second.model(ids).logits, fresh.model(ids).logits)
    # not released: the next load must not share it
    third = load_model_reusing(resolve_model(f"{run_dir}@step1"), device="cpu")
    assert third.model is not second.model
    assert second.info["source"] == fresh.info["source"]
    clear_reuse_cache()


# ------------------------------------------------------------------ low precision on CPU

CPUINFO_EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
CPUINFO_SPR = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 avx512_fp16\n"
CPUINFO_ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_native_dtypes_from_cpu_flags() -> None:
    from kltools.models import cpu_flags, native_dtypes_of

    assert native_dtypes_of(cpu_flags(CPUINFO_EPYC)) == frozenset()
    assert native_dtypes_of(cpu_flags(CPUINFO_SPR)) == {"bfloat16", "float16"}
    assert native_dtypes_of(cpu_flags(CPUINFO_ARM)) == {"bfloat16"}
    assert cpu_flags("no flags here") == set()


def test_low_precision_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from kltools.models import low_precision_note

    monkeypatch.setenv("KLTOOLS_CPU_NATIVE", "none")
    note = low_precision_note("bfloat16", "cpu")
    assert note is not None and "no native bfloat16" in note and "\n" not in note
    assert "float16" in (low_precision_note("float16", "cpu") or "")
    assert low_precision_note("float32", "cpu") is None
    assert low_precision_note("bfloat16", "cuda") is None
    monkeypatch.setenv("KLTOOLS_CPU_NATIVE", "bfloat16")
    assert low_precision_note("bfloat16", "cpu") is None
    assert low_precision_note("float16", "cpu") is not None


@pytest.mark.parametrize("native", ["none", "bfloat16"])
def test_extract_cli_says_bfloat16_is_emulated(
    native: str, tmp_path: Path, tiny_neox: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``kltools extract --dtype bfloat16 --device cpu``: one line where bf16 is emulated."""
    from kltools.__main__ import main

    texts = tmp_path / "t.txt"
    texts.write_text("We the People of the United States\n\nFour score and seven years ago")
    monkeypatch.setenv("KLTOOLS_CPU_NATIVE", native)
    args = ["extract", "--model", str(tiny_neox), "--texts", str(texts), "--dtype", "bfloat16"]
    rc = main([*args, "--device", "cpu", "--store", str(tmp_path / "s.zarr")])
    assert rc == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "no native" in ln]
    assert len(notes) == (1 if native == "none" else 0)
    if notes:
        assert notes[0].startswith("kltools: note:") and "bfloat16" in notes[0]
