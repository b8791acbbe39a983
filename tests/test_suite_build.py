"""The smoke suite, built once per session into a temporary folder, and what it must satisfy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kltools.suite.builder import build, fingerprint, list_models
from kltools.suite.profiles import PROFILES, RTN_SCHEMES, plan

PROFILE = PROFILES["smoke"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smoke_root(smoke_suite_root: Path) -> Path:
    """Suite base folder holding the session's smoke profile (built with 2 workers)."""
    return smoke_suite_root


@pytest.fixture(scope="session")
def smoke_models(smoke_root: Path) -> list[dict]:
    return list_models("smoke", smoke_root)


def _run_info(root: Path, name: str) -> dict:
    return json.loads((root / "smoke" / name / "run.json").read_text())


def test_catalogue_is_complete_and_built(smoke_root: Path, smoke_models: list[dict]) -> None:
    keys = {"name", "spec", "path", "size", "seed", "step", "variant", "parent", "built"}
    keys |= {"n_params", "n_nonembedding_params"}
    assert all(keys <= set(m) for m in smoke_models)
    assert all(m["built"] for m in smoke_models)
    runs = [u for u in plan(PROFILE) if u.kind == "run"]
    n_ckpt = len(PROFILE.checkpoint_steps())
    assert len([m for m in smoke_models if m["kind"] == "checkpoint"]) == len(runs) * n_ckpt
    assert (smoke_root / "smoke" / "FINGERPRINT").read_text().strip() == fingerprint(
        "smoke", smoke_root
    )


def test_every_model_loads_with_auto_classes(smoke_models: list[dict]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    x = None
    for m in smoke_models:
        tok = AutoTokenizer.from_pretrained(m["path"])
        model = AutoModelForCausalLM.from_pretrained(m["path"])
        if x is None:
            x = tok("def f(x):\n    return x", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=x).logits
        assert logits.shape[-1] == PROFILE.vocab_size
        assert torch.isfinite(logits.float()).all(), m["spec"]
        assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0


def test_heldout_loss_falls_in_every_run_and_with_size(smoke_root: Path) -> None:
    finals = {}
    for unit in plan(PROFILE):
        if unit.kind != "run":
            continue
        metrics = json.loads((smoke_root / "smoke" / unit.name / "metrics.json").read_text())
        loss = metrics["heldout_loss"]
        assert metrics["step"] == list(PROFILE.checkpoint_steps())
        assert loss[-1] < loss[0] - 0.5, unit.name
        assert loss[-1] < min(loss[: len(loss) // 2]), unit.name
        if unit.params["seed"] == 0:
            finals[unit.params["size"]] = loss[-1]
    by_size = [finals[s.name] for s in PROFILE.sizes]  # sizes are listed small to large
    assert all(a > b + 0.05 for a, b in zip(by_size, by_size[1:])), by_size


def test_analysis_texts_follow_the_recipe_and_fit_the_context(smoke_root: Path) -> None:
    from transformers import AutoTokenizer

    from kltools.suite.corpus import load_split

    path = smoke_root / "smoke" / "texts" / "analysis.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(recs) == PROFILE.n_texts
    assert {"id", "text", "domain", "doc_idx", "chunk_idx"} <= set(recs[0])
    assert {r["domain"] for r in recs} == {"prose", "docs", "code"}
    train, heldout = load_split()
    for r in recs:
        n = len(r["text"].encode("utf-8"))
        assert PROFILE.text_min_bytes < n <= PROFILE.text_max_bytes
        assert r["text"] in heldout[r["doc_idx"]].text
    train_text = "\n".join(d.text for d in train[:200])
    assert not any(r["text"] in train_text for r in recs)
    tok = AutoTokenizer.from_pretrained(smoke_root / "smoke" / "tokenizer")
    longest = max(len(tok(r["text"])["input_ids"]) for r in recs)
    # positions never seen in training would make log-likelihoods meaningless
    assert longest + 1 <= PROFILE.seq_len
    cfg = json.loads((smoke_root / "smoke" / "smoke-s" / "step0" / "config.json").read_text())
    assert cfg["max_position_embeddings"] == PROFILE.seq_len


def test_rtn_copies_are_really_quantized(smoke_root: Path) -> None:
    from safetensors.numpy import load_file

    from kltools.suite.quantize import rtn_levels

    for unit in plan(PROFILE):
        if unit.kind != "quant" or unit.params["scheme"] not in RTN_SCHEMES:
            continue
        bits, group = RTN_SCHEMES[unit.params["scheme"]]
        folder = smoke_root / "smoke" / unit.name
        record = json.loads((folder / "quantization.json").read_text())
        assert record["bits"] == bits and record["group_size"] == group
        q = load_file(str(folder / "model.safetensors"))
        info = _run_info(smoke_root, unit.params["parent"])
        parent = load_file(
            str(
                smoke_root
                / "smoke"
                / unit.params["parent"]
                / f"step{info['final_step']}"
                / "model.safetensors"
            )
        )
        assert len(record["covered"]) == 4 * PROFILE.size(unit.params["size"]).n_layers
        for name, w in q.items():
            if name in record["covered"]:
                levels, err = rtn_levels(w, bits, group)
                assert levels <= 2**bits and err < 1e-3, (unit.name, name)
                assert not np.array_equal(w, parent[name])
            else:
                np.testing.assert_array_equal(w, parent[name])


def test_bnb_copies_load_quantized(smoke_root: Path) -> None:
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    seen = set()
    for unit in plan(PROFILE):
        if unit.kind != "quant" or not unit.params["scheme"].startswith("bnb-"):
            continue
        folder = smoke_root / "smoke" / unit.name
        record = json.loads((folder / "quantization.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu")
        layer = model.gpt_neox.layers[0].mlp.dense_h_to_4h
        if record["quant_type"] == "int8":
            assert isinstance(layer, bnb.nn.Linear8bitLt)
        else:
            assert isinstance(layer, bnb.nn.Linear4bit)
            assert layer.weight.quant_state.quant_type == record["quant_type"]
        seen.add(record["quant_type"])
    assert seen == {"int8", "nf4"}
    assert all(s.startswith(("bnb-", "rtn")) for s in PROFILE.quant_schemes)


def test_finetunes_record_lineage_and_differ_from_parent(smoke_root: Path) -> None:
    from safetensors.numpy import load_file

    for unit in plan(PROFILE):
        if unit.kind != "finetune":
            continue
        folder = smoke_root / "smoke" / unit.name
        lineage = json.loads((folder / "lineage.json").read_text())
        for key in ("parent", "method", "domain", "steps", "lr", "seed"):
            assert lineage[key] == {**unit.params, "seed": unit.params["ft_seed"]}[key]
        child = load_file(str(folder / "model.safetensors"))
        assert not any("lora" in k for k in child)
        parent = load_file(str(smoke_root / "smoke" / lineage["parent_path"] / "model.safetensors"))
        assert child.keys() == parent.keys()
        assert any(not np.array_equal(child[k], parent[k]) for k in child)


def test_weight_distances_are_stored(smoke_root: Path) -> None:
    from kltools.suite.weights import load_weight_distances, weight_distances

    run = smoke_root / "smoke" / "smoke-xs"
    stored = load_weight_distances(run)
    assert stored.sizes == {"step": len(PROFILE.checkpoint_steps()), "lag": 10}
    again = weight_distances(run, max_lag=10)
    np.testing.assert_array_equal(stored.values, again.values)
    assert np.all(stored.isel(lag=0).values[:-1] > 0)


def test_suite_specs_resolve_through_models(smoke_root: Path, monkeypatch) -> None:
    from kltools.models import resolve_model

    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(smoke_root))
    final = resolve_model("smoke-s")
    assert Path(final.path_or_id) == smoke_root / "smoke" / "smoke-s" / f"step{PROFILE.total_steps}"
    assert (
        Path(resolve_model("smoke-s@step8").path_or_id)
        == smoke_root / "smoke" / "smoke-s" / "step8"
    )
    assert (
        Path(resolve_model("smoke-m-q-rtn8").path_or_id) == smoke_root / "smoke" / "smoke-m-q-rtn8"
    )


def test_second_build_is_a_noop(smoke_root: Path) -> None:
    before = fingerprint("smoke", smoke_root)
    result = build("smoke", smoke_root, jobs=2, verbose=False)
    assert result["built"] == [] and result["fingerprint"] == before
    assert result["seconds"] < 10


@pytest.mark.slow
def test_rebuild_is_bit_identical_and_resumes(smoke_root: Path, tmp_path: Path) -> None:
    """A second build elsewhere (one process) gives the same weights; so does a resumed one."""
    other = tmp_path / "suite"
    build("smoke", other, jobs=1, verbose=False)
    assert fingerprint("smoke", other) == fingerprint("smoke", smoke_root)
    for unit in plan(PROFILE):
        a = smoke_root / "smoke" / unit.name
        b = other / "smoke" / unit.name
        if unit.kind == "run":
            assert (
                _run_info(smoke_root, unit.name)["checkpoint_sha256"]
                == json.loads((b / "run.json").read_text())["checkpoint_sha256"]
            )
        else:
            assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    # a killed build: no run.json, a checkpoint missing, a half-written temp folder
    run = other / "smoke" / "smoke-xs"
    want = json.loads((run / "run.json").read_text())["checkpoint_sha256"]
    (run / "run.json").unlink()
    shutil.rmtree(run / "step16")
    (run / ".tmp-step24").mkdir()
    assert not any(m["built"] for m in list_models("smoke", other) if m["name"] == "smoke-xs")
    result = build("smoke", other, jobs=1, verbose=False)
    assert result["built"] == ["smoke-xs"]
    assert json.loads((run / "run.json").read_text())["checkpoint_sha256"] == want
    assert not (run / ".tmp-step24").exists()


def test_cli_list_json_and_errors(smoke_root: Path, capsys) -> None:
    from kltools.__main__ import main

    assert main(["suite", "list", "--profile", "smoke", "--root", str(smoke_root), "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert {m["spec"] for m in models} >= {"smoke-s@step0", "smoke-s-ft-code-lora"}
    assert main(["suite", "build", "--profile", "smoke", "--root", str(smoke_root)]) == 0
    assert "0 built" in capsys.readouterr().out
    assert main(["suite", "build", "--profile", "nope"]) == 2
    assert "unknown suite profile" in capsys.readouterr().err
    assert main(["suite", "build", "--profile", "smoke", "--jobs", "0"]) == 2
