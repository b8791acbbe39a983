"""Importing a release: the stores the pythia profile's extraction writes, same labels, same
numbers, provenance recorded; weight distances as long tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kltools.errors import KLToolsError
from kltools.released import import_release, open_release, weight_distances
from kltools.released.layout import STEPS
from kltools.released.synthetic import (
    ANOMALOUS,
    IMPORT_STEPS,
    MISSING_CHECKPOINTS,
    write_synthetic_release,
)
from kltools.store import open_store, open_units


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    root = tmp_path_factory.mktemp("released")
    contents = write_synthetic_release(root / "rel", steps=IMPORT_STEPS)
    rel = open_release(root / "rel")
    paths = import_release(rel, root / "data", finetuning_models=contents["model_list"][4:9])
    return contents, paths, root


def test_pretraining_units_are_those_the_pythia_route_writes(imported) -> None:
    from kltools.sources.pythia import pretraining_runs

    c, paths, _ = imported
    flat = open_units(paths["pretraining"])
    stored = {
        (str(m), int(s)): str(spec)
        for m, s, spec in zip(flat["model"].values, flat["step"].values, flat["spec"].values)
    }
    for r in pretraining_runs():  # the paper's runs, as the pythia source names them
        for t in r.steps:
            if t not in IMPORT_STEPS:
                continue
            run = r.model.removeprefix("pythia-")
            if (run, t) in MISSING_CHECKPOINTS:
                assert (r.model, t) not in stored
            else:
                assert stored[(r.model, t)] == r.spec(t)
    assert ("pythia-410m-seed3", 1000) in stored and ("pythia-410m-seed4", 1000) in stored
    # the paper's excluded checkpoint is left out, as the extraction route leaves it out
    assert ("pythia-1b", ANOMALOUS[1]) not in stored
    assert len(stored) == 14 * len(IMPORT_STEPS) - len(MISSING_CHECKPOINTS) - 1
    missing = json.loads(flat.attrs["missing_units"])
    assert sorted(missing) == sorted(f"{r}@{s}" for r, s in MISSING_CHECKPOINTS)
    assert json.loads(flat.attrs["excluded_units"]) == ["1b@116000"]


def test_exclude_nothing_keeps_the_anomalous_checkpoint(tmp_path: Path) -> None:
    c = write_synthetic_release(tmp_path / "rel", steps=(115000, 116000, 143000))
    paths = import_release(open_release(tmp_path / "rel"), tmp_path / "data", exclude=())
    ds = open_store(paths["pretraining"], dims=("model", "step"))
    np.testing.assert_array_equal(
        ds.loglik.sel(model="pythia-1b", step=ANOMALOUS[1]).values,
        c["pretraining"]["1b"][ANOMALOUS[1]],
    )
    assert json.loads(ds.attrs["excluded_units"]) == []


def test_pretraining_values_and_texts(imported) -> None:
    c, paths, _ = imported
    ds = open_store(paths["pretraining"], dims=("model", "step"))
    assert ds.loglik.dtype == np.float32
    got = ds.loglik.sel(model="pythia-1.4b", step=12000).values
    np.testing.assert_array_equal(got, c["pretraining"]["1.4b"][12000])
    assert np.isnan(ds.loglik.sel(model="pythia-410m-seed9", step=40000).values).all()
    assert list(ds.text.values) == [f"t{i:05d}" for i in range(len(c["texts"]))]
    np.testing.assert_array_equal(
        ds.text_bytes.values, [len(t.encode("utf-8")) for t in c["texts"]]
    )
    assert ds.attrs["mean_bytes"] == pytest.approx(
        np.mean([len(t.encode("utf-8")) for t in c["texts"]])
    )
    # plain xarray reads it too (no kltools needed)
    raw = xr.open_zarr(paths["pretraining"])
    assert raw.loglik.dims == ("unit", "text")


def test_provenance(imported) -> None:
    _, paths, root = imported
    from kltools.released.manifest import sha256_file

    for name in ("pretraining", "quantization", "finetuning"):
        attrs = open_units(paths[name]).attrs
        assert attrs["bos_policy"] == "paper"
        assert attrs["dtype"] == "float16"
        assert "float16, batch 1, tokenizer defaults" in attrs["comment"]
        assert attrs["released_repository"] == "https://github.com/shimo-lab/modelmap"
        assert attrs["Conventions"].startswith("CF-")
        files = json.loads(attrs["released_files"])
        assert files["texts.json"] == sha256_file(root / "rel" / "texts.json")
    files = json.loads(open_units(paths["pretraining"]).attrs["released_files"])
    assert files["logp/pretraining_logp.pkl"] == sha256_file(
        root / "rel" / "logp/pretraining_logp.pkl"
    )


def test_quantization_store(imported) -> None:
    c, paths, _ = imported
    ds = open_store(paths["quantization"], dims=("model", "variant", "quantization"))
    ll = ds.loglik.max("quantization", skipna=True)  # as the quantization setting collapses it
    ms = c["model_list"]
    assert list(ds.model.values) == ms[:50]
    assert set(ds.variant.values) == {"full", "bnb-int8", "bnb-fp4"}
    np.testing.assert_array_equal(
        ll.sel(model=ms[0], variant="full").values, c["oyama"][0].astype(np.float32)
    )
    np.testing.assert_array_equal(ll.sel(model=ms[0], variant="bnb-fp4").values, c["quant4"][ms[0]])
    np.testing.assert_array_equal(
        ll.sel(model=ms[5], variant="bnb-int8").values, c["quant8"][ms[5]]
    )
    assert np.isnan(ll.sel(model=ms[2], variant="bnb-fp4").values).all()  # None in the release
    flat = open_units(paths["quantization"])
    q = dict(zip(flat["variant"].values, flat["quantization"].values))
    assert q == {"full": "none", "bnb-int8": "int8", "bnb-fp4": "fp4"}


def test_finetuning_and_layer_stores(imported) -> None:
    c, paths, _ = imported
    ft = open_store(paths["finetuning"], dims=("model",))
    assert list(ft.model.values) == c["model_list"][4:9]
    np.testing.assert_array_equal(
        ft.loglik.sel(model=c["model_list"][6]).values, c["oyama"][6].astype(np.float32)
    )
    assert {k for k in paths if k.startswith("layers_")} == {"layers_L4", "layers_L6"}
    l4 = open_store(paths["layers_L4"], dims=("model",))
    assert l4.loglik.dims == ("model", "layer", "text")
    assert list(l4.layer.values) == [0, 1, 2, 3, 4]
    m = c["model_list"][0]
    np.testing.assert_array_equal(l4.loglik.sel(model=m, layer=2).values, c["layers"][m][2])
    l6 = open_store(paths["layers_L6"], dims=("model",))
    assert c["model_list"][1] not in list(l6.model.values)  # None in the release
    assert c["model_list"][3] in list(l6.model.values)


def test_weight_distances_long_format(imported) -> None:
    c, paths, root = imported
    tables = weight_distances(open_release(root / "rel"))
    assert list(tables) == [f"pythia-{s}" for s in ("410m", "1b", "1.4b", "2.8b", "6.9b")]
    t = tables["pythia-1b"]
    assert list(t.columns) == ["step_a", "step_b", "distance"]
    assert len(t) == (len(STEPS) - 10) * 10
    d = c["weight_distances"]["1b"]
    i, j = STEPS.index(2000), STEPS.index(5000)
    row = t[(t.step_a == 2000) & (t.step_b == 5000)]
    assert row.distance.item() == d[i, j]
    assert (t.step_b > t.step_a).all() and (t.distance > 0).all()
    csv = pd.read_csv(paths["weight_distances"])
    assert len(csv) == 5 * len(t)
    np.testing.assert_array_equal(
        csv[csv.model == "pythia-1b"].distance.to_numpy(), t.distance.to_numpy()
    )


def test_reimport_keeps_stores_and_unknown_models_are_refused(imported) -> None:
    c, paths, root = imported
    rel = open_release(root / "rel")
    before = open_units(paths["pretraining"]).attrs["store_id"]
    lines: list[str] = []
    again = import_release(
        rel, root / "data", finetuning_models=c["model_list"][4:9], log=lines.append
    )
    assert open_units(again["pretraining"]).attrs["store_id"] == before
    assert any("already imported" in line for line in lines)
    with pytest.raises(KLToolsError, match="fine-tuning model nobody/x is not in the release"):
        import_release(rel, root / "data2", finetuning_models=["nobody/x"])
