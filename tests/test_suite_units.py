"""Fast checks of the suite's pieces: plan, schedule, corpus, RTN quantizer, weight distances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kltools.errors import KLToolsError
from kltools.suite import corpus
from kltools.suite.profiles import PROFILES, count_params, get_profile, plan
from kltools.suite.quantize import rtn_levels, rtn_quantize
from kltools.suite.train import build_model, lr_at
from kltools.suite.weights import load_weight_distances, save_weight_distances, weight_distances


def test_tiny_plan_meets_the_issue() -> None:
    p = PROFILES["tiny"]
    units = plan(p)
    runs = [u for u in units if u.kind == "run"]
    steps = p.checkpoint_steps()
    assert steps[:5] == (0, 1, 2, 4, 8) and steps[-1] == p.total_steps
    assert len(steps) >= 30 and list(steps) == sorted(set(steps))
    non_emb = [count_params(p, s)[1] for s in p.sizes]
    assert len(p.sizes) >= 3 and max(non_emb) / min(non_emb) >= 8
    seeds = [u for u in runs if u.params["size"] == p.seed_size]
    assert sorted(u.params["seed"] for u in seeds) == list(range(5))
    ft = [u for u in units if u.kind == "finetune"]
    first = [u for u in ft if u.params["generation"] == 1]
    assert len({u.params["domain"] for u in first}) >= 3
    assert len({u.params["parent"] for u in first}) >= 2
    assert {u.params["method"] for u in first} == {"full", "lora"}
    assert any(u.params["generation"] == 2 for u in ft)
    quant = [u for u in units if u.kind == "quant"]
    bases = {u.params["parent"] for u in quant}
    assert len(bases) >= 5
    for base in bases:
        schemes = {u.params["scheme"] for u in quant if u.params["parent"] == base}
        assert {"bnb-int8", "bnb-fp4", "bnb-nf4", "rtn8", "rtn4g32", "rtn3g32"} <= schemes
    names = [u.name for u in units]
    assert len(names) == len(set(names)) and all(n.startswith("tiny-") for n in names)
    # every dependency is planned before its dependent
    seen: set[str] = set()
    for u in units:
        assert set(u.deps) <= seen
        seen.add(u.name)


def test_unknown_profile_is_a_user_error() -> None:
    with pytest.raises(KLToolsError, match="unknown suite profile"):
        get_profile("huge")


@pytest.mark.parametrize("size", PROFILES["smoke"].sizes, ids=lambda s: s.name)
def test_count_params_matches_the_model(size) -> None:
    p = PROFILES["smoke"]
    from kltools.suite.profiles import model_config

    model = build_model(model_config(p, size), seed=0)
    total = sum(t.numel() for t in model.parameters())
    emb = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    assert count_params(p, size) == (total, total - emb)
    assert not model.config.tie_word_embeddings and model.config.use_parallel_residual


def test_lr_schedule_warms_up_then_decays() -> None:
    lrs = [lr_at(t, 1.0, 10, 100, 0.1) for t in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_corpus_has_three_domains_and_a_document_split() -> None:
    corpus.verify()
    entries = corpus.manifest()["files"]
    assert {e["domain"] for e in entries} == {"prose", "docs", "code"}
    assert sum(e["n_bytes_uncompressed"] for e in entries) >= 20_000_000
    for e in entries:
        assert (corpus.CORPUS_DIR / e["file"]).stat().st_size < 5_000_000
    train, heldout = corpus.load_split()
    assert {d.domain for d in heldout} == {"prose", "docs", "code"}
    train_groups = {d.group for d in train}
    assert not train_groups & {d.group for d in heldout}
    assert 0.08 < len(heldout) / (len(train) + len(heldout)) < 0.25
    assert corpus.is_heldout(heldout[0].group) and not corpus.is_heldout(train[0].group)


def test_corpus_hash_mismatch_is_reported(tmp_path: Path) -> None:
    m = corpus.manifest()
    m["files"][0]["sha256"] = "0" * 64
    (tmp_path / "MANIFEST.json").write_text(json.dumps(m))
    for e in m["files"]:
        (tmp_path / e["file"]).write_bytes((corpus.CORPUS_DIR / e["file"]).read_bytes())
    with pytest.raises(KLToolsError, match="sha256"):
        corpus.verify(tmp_path)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.sampled_from([3, 4, 8]),
    group=st.sampled_from([None, 8, 16]),
    seed=st.integers(0, 10_000),
)
def test_rtn_levels_and_error(bits: int, group: int | None, seed: int) -> None:
    w = np.random.default_rng(seed).normal(size=(6, 32)).astype(np.float32)
    q = rtn_quantize(w, bits, group)
    levels, err = rtn_levels(q, bits, group)
    assert levels <= 2**bits and err < 1e-4
    g = 32 if group is None else group
    scale = np.abs(w.reshape(6, -1, g)).max(-1, keepdims=True) / (2 ** (bits - 1) - 1)
    assert np.all(np.abs(q - w).reshape(6, -1, g) <= scale / 2 + 1e-6)
    # an unquantized matrix fails the check
    if bits <= 4:
        assert rtn_levels(w, bits, group)[1] > 0.01


def test_rtn_rejects_bad_arguments() -> None:
    with pytest.raises(KLToolsError):
        rtn_quantize(np.ones((4, 30), np.float32), 4, 32)
    with pytest.raises(KLToolsError):
        rtn_quantize(np.ones((4, 32), np.float32), 1)


def test_weight_distances_by_hand(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    vecs = []
    folders = []
    for step in (0, 1, 2, 4):
        t = {
            "a": rng.normal(size=(3, 4)).astype(np.float32),
            "b": rng.normal(size=5).astype(np.float32),
        }
        vecs.append(np.concatenate([t["a"].ravel(), t["b"]]))
        f = tmp_path / f"step{step}"
        f.mkdir()
        save_file(t, str(f / "model.safetensors"))
        folders.append(f)
    da = weight_distances(tmp_path, max_lag=2)
    assert da.dims == ("step", "lag") and list(da.step.values) == [0, 1, 2, 4]
    want = float(((vecs[3] - vecs[1]).astype(np.float64) ** 2).sum())  # fp32 diff, fp64 sum
    assert da.sel(step=1, lag=2).item() == pytest.approx(want, rel=1e-12)
    assert da["delta_step"].sel(step=1, lag=2).item() == 3
    assert np.isnan(da.sel(step=4, lag=1).item())
    same = weight_distances(folders, max_lag=2)
    np.testing.assert_array_equal(same.values, da.values)
    save_weight_distances(da, tmp_path / "wd.json")
    back = load_weight_distances(tmp_path / "wd.json")
    np.testing.assert_array_equal(back.values, da.values)
    np.testing.assert_array_equal(back["delta_step"].values, da["delta_step"].values)
    with pytest.raises(KLToolsError):
        load_weight_distances(tmp_path / "missing")
