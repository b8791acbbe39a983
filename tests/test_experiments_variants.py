"""Tests of kltools.experiments.variants: pair sets, bootstrap, verdicts, lineages, quantization checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kltools.errors import KLToolsError
from kltools.experiments import variants as V
from kltools.kl import kl_between, kl_matrix


def _loglik(k: int = 4, n: int = 50, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    base = rng.normal(-300, 40, size=n)
    L = base + rng.normal(0, 2, size=(k, n)) * np.arange(1, k + 1)[:, None]
    return xr.DataArray(
        L,
        dims=("model", "text"),
        coords={
            "model": [f"m{i}" for i in range(k)],
            "text_bytes": ("text", rng.integers(300, 1000, n)),
        },
    )


def test_pair_kl_matches_kltools_estimator():
    ll = _loglik()
    a, b = ll.sel(model="m0").values, ll.sel(model="m2").values
    tb = ll.text_bytes.values
    point, reps = V.pair_kl(a[None], b[None], tb)
    assert reps is None
    assert point[0] == pytest.approx(kl_between(a, b, mean_bytes=tb.mean()), rel=1e-12)
    assert point[0] == pytest.approx(float(kl_matrix(ll).sel(model="m0", model_="m2")), rel=1e-9)


def test_boot_indices_deterministic_and_replicates_vary():
    i1, i2 = V.boot_indices(30, 5, 7), V.boot_indices(30, 5, 7)
    assert i1.shape == (5, 30) and np.array_equal(i1, i2)
    ll = _loglik(n=30)
    _, reps = V.pair_kl(ll.values[:1], ll.values[1:2], ll.text_bytes.values, i1)
    assert reps.shape == (5, 1) and np.std(reps) > 0
    with pytest.raises(KLToolsError):
        V.boot_indices(30, 1, 0)


def test_median_table_and_check_order():
    frame = pd.DataFrame({"setting": ["A"] * 3 + ["B"] * 3, "kl": [1.0, 2, 3, 10, 20, 30]})
    reps = np.tile(frame.kl.to_numpy(), (10, 1)) * np.linspace(0.9, 1.1, 10)[:, None]
    med = V.median_table(V.PairKL(frame, reps))
    assert list(med.setting) == ["A", "B"] and list(med["median"]) == [2.0, 20.0]
    assert (med.median_lo <= med["median"]).all() and (med.median_hi >= med["median"]).all()
    ok = V.check_order(med, ["A", "B"])
    assert ok["holds"] and ok["separated"] and "holds" in ok["text"]
    bad = V.check_order(med, ["B", "A"])
    assert not bad["holds"] and "not reproduced" in bad["text"]
    missing = V.check_order(med, ["A", "C"])
    assert not missing["holds"] and missing["missing"] == ["C"]


def test_paper_comparison_lists_published_numbers():
    med = pd.DataFrame(
        {
            "setting": ["FT", "Random"],
            "n": [3, 3],
            "median": [0.1, 0.5],
            "median_lo": [0.05, 0.4],
            "median_hi": [0.2, 0.6],
        }
    )
    tab = V.paper_comparison(med, ["FT", "Random", "Layer"])
    assert list(tab.setting) == ["FT", "Random"]
    assert list(tab["paper [bits/byte]"]) == ["0.4", "2.1"]


def test_finetuning_pairs_counts():
    lin = pd.DataFrame(
        [
            dict(model="a", spec="a", parent=None, type="A", generation=0, method="p", domain=""),
            dict(
                model="a1", spec="a1", parent="a", type="A", generation=1, method="full", domain="x"
            ),
            dict(
                model="a2", spec="a2", parent="a", type="A", generation=1, method="lora", domain="x"
            ),
            dict(
                model="a3",
                spec="a3",
                parent="a1",
                type="A",
                generation=2,
                method="full",
                domain="y",
            ),
            dict(model="b", spec="b", parent=None, type="B", generation=0, method="p", domain=""),
            dict(
                model="b1", spec="b1", parent="b", type="B", generation=1, method="full", domain="x"
            ),
        ]
    )
    ll = _loglik(k=6).assign_coords(model=list(lin.model))
    pairs = V.finetuning_pairs(lin, ll, V.boot_indices(50, 4, 0), seed=1)
    f = pairs.frame
    assert (f.setting == "FT").sum() == 4
    assert ((f.setting == "Intra-type") & (f.type == "A")).sum() == 3
    assert ((f.setting == "Intra-type") & (f.type == "B")).sum() == 1
    assert (f.setting == "Random").sum() == 4
    ft = f[f.setting == "FT"]
    assert set(zip(ft.a, ft.b)) == {("a", "a1"), ("a", "a2"), ("a1", "a3"), ("b", "b1")}
    intra = f[f.setting == "Intra-type"]
    assert all(lin.set_index("model").type[x] == t for x, t in zip(intra.a, intra.type))
    assert pairs.reps.shape == (4, len(f))
    again = V.finetuning_pairs(lin, ll, None, seed=1).frame
    assert list(again.a) == list(f.a) and list(again.b) == list(f.b)


def test_bnb_usable_on_cpu():
    assert V.bnb_usable_on_cpu({"hidden_size": 64, "intermediate_size": 256}, "bnb-nf4")
    assert not V.bnb_usable_on_cpu({"hidden_size": 32, "intermediate_size": 128}, "bnb-fp4")
    assert V.bnb_usable_on_cpu({"hidden_size": 32, "intermediate_size": 128}, "bnb-int8")
    assert V.scheme_info("rtn4g32") == ("round-to-nearest", 4)
    assert V.scheme_info("bnb-int8") == ("bitsandbytes", 8)
    with pytest.raises(KLToolsError):
        V.scheme_info("gptq")


def test_lineages_json_is_valid_and_single_parent():
    lin = V.load_lineages_json()
    assert {"mistral", "llama-3"} <= set(lin.type)
    roots = set(lin[lin.parent.isna()].model)
    models = set(lin.model)
    assert lin.model.is_unique
    for r in lin[lin.parent.notna()].itertuples():
        assert r.parent in models and r.generation >= 1
    assert roots


def test_hub_paths_offline_fail_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lin, source = V.hub_lineages()
    assert "checked-in" in source and len(lin) > 0
    with pytest.raises(KLToolsError, match="offline"):
        V.require_models(["meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1"])
    with pytest.raises(KLToolsError, match="offline|hub"):
        V.analysis_texts("pythia", 100, "pile")
    cat = V.hub_quant_catalogue(["EleutherAI/pythia-410m"], ["bnb-int8", "bnb-fp4"])
    assert list(cat.quantization) == ["int8", "fp4"] and cat.usable.all()
    with pytest.raises(KLToolsError):
        V.hub_quant_catalogue(["EleutherAI/pythia-410m"], ["rtn4"])


# ------------------------------------------------------------------ on the smoke suite


@pytest.fixture(scope="module")
def smoke_suite(smoke_suite_root):
    from kltools.suite import list_models

    return list_models("smoke", smoke_suite_root)


def test_verify_quantized_on_suite_copies(smoke_suite, tmp_path):
    cat = V.quant_catalogue("smoke", device="cpu")
    assert len(cat) and set(cat.bits) >= {8, 4}
    for r in cat[cat.usable].itertuples():
        res = V.verify_quantized(r.spec, r.variant, r.quantization, "cpu")
        assert res["ok"], res
    # a copy whose weights are the parent's (silently full precision) must fail the check
    rtn = cat[cat.family == "round-to-nearest"].iloc[0]
    entry = next(e for e in smoke_suite if e["name"] == rtn.spec)
    parent = next(e for e in smoke_suite if e["name"] == rtn.base_spec and e["final"])
    fake = tmp_path / "fake"
    shutil.copytree(entry["path"], fake)
    shutil.copy(Path(parent["path"]) / "model.safetensors", fake / "model.safetensors")
    res = V.verify_quantized(str(fake), rtn.variant)
    assert not res["ok"]


def test_quant_floor_layers_on_smoke(smoke_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path))
    texts = V.analysis_texts("smoke", 8)
    idx = V.boot_indices(8, 5, 0)
    cat = V.quant_catalogue("smoke", device="cpu")
    cat = cat[cat.variant.isin(["rtn8", "rtn3g32"])]
    ds = V.extract_quantization(cat, texts, V.store_path("smoke", "quantization"), device="cpu")
    qp = V.quant_pairs(ds, cat, idx)
    k = qp.frame.set_index("variant").kl
    assert 0 < k["rtn8"] < k["rtn3g32"]
    base = dict(zip(cat.model, cat.base_spec))
    fds = V.extract_floor(
        base, texts, V.store_path("smoke", "floor"), settings=["fp32", "bf16"], device="cpu"
    )
    fl = V.floor_pairs(fds, idx).frame
    assert list(fl.comparison) == ["dtype fp32 vs bf16"] and fl.kl.iloc[0] > 0
    pre = V.extract_models(
        base, texts, V.store_path("smoke", "floor", "_prefix"), bos="prefix", device="cpu"
    )
    assert V.bos_floor(fds, pre, idx).frame.kl.iloc[0] > 0
    lds = V.extract_layers({"s": "smoke-s"}, texts, "smoke", device="cpu")
    adj = V.adjacent_layer_kl(lds, idx, from_layer=0)
    assert list(adj.frame.layer) == list(range(int(lds[0].loglik.layer.values[-1])))
    pts = V.layer_points(lds)
    assert pts.sizes["point"] == lds[0].loglik.sizes["layer"]
    m = V.map_points(pts, dim="point")
    assert {"x", "y", "model", "layer"} <= set(m.columns)
