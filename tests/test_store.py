"""kltools.store: schema, provenance, appending, refusal, done flags, the unstacked view."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from kltools.errors import KLToolsError
from kltools.extraction import Unit, extract, score_texts
from kltools.models import load_model
from kltools.store import open_store, prepare, run_header
from kltools.texts import TextSet

TEXTS = [
    "We the People of the United States",
    "Four score and seven years ago our fathers brought forth on this continent",
    "Größe 東京",
]


def _ts(texts=TEXTS, name="s", domains=None) -> TextSet:
    ids = tuple(f"{name}{i}" for i in range(len(texts)))
    return TextSet(name=name, ids=ids, texts=tuple(texts), domains=domains)


def tree_hash(path: Path) -> str:
    """Hash of every file's relative path and content under a directory."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_schema_and_provenance(tmp_path: Path, tiny_neox: Path) -> None:
    ts = _ts(domains=("law", "speech", "misc"))
    ds = extract([Unit(str(tiny_neox), {"model": "tiny"})], ts, tmp_path / "s.zarr", progress=False)
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert root["loglik"].dtype == np.float32 and root["loglik"].chunks[0] == 1
    assert root["n_tokens"].dtype == np.int32 and root["done"].chunks == (1,)
    assert ds.loglik.attrs["units"] == "nat"
    assert ds.loglik.attrs["long_name"] == "summed log-likelihood"
    for key in ("kltools_version", "torch_version", "transformers_version", "created"):
        assert ds.attrs[key]
    assert ds.attrs["textset_sha256"] == ts.sha256 and ds.attrs["textset_name"] == "s"
    assert ds.attrs["bos_policy"] == "paper" and ds.attrs["dtype"] == "float32"
    assert ds.attrs["device"] == "cpu" and ds.attrs["layers"] is None
    assert ds.attrs["mean_bytes"] == pytest.approx(ts.mean_bytes)
    units = json.loads(ds.attrs["units"])
    assert units[0]["resolved"]["path_or_id"] == str(tiny_neox.resolve())
    assert units[0]["run"]["tokens"] == int(ds.n_tokens.sum())
    assert list(ds.text.values) == list(ts.ids) and list(ds.domain.values) == list(ts.domains)
    np.testing.assert_array_equal(ds.text_bytes.values, ts.n_bytes)
    ref = score_texts(load_model(str(tiny_neox), device="cpu"), TEXTS)
    np.testing.assert_array_equal(ds.loglik.sel(model="tiny").values, ref.loglik.astype(np.float32))
    np.testing.assert_array_equal(ds.n_tokens.sel(model="tiny").values, ref.n_tokens)


def test_append_grid_and_missing(tmp_path: Path, make_tiny_neox) -> None:
    store = tmp_path / "g.zarr"
    m = {s: str(make_tiny_neox(s)) for s in (0, 1, 2)}
    extract([Unit(m[0], {"model": "a", "step": 1})], _ts(), store, progress=False)
    before = json.loads(open_store(store).attrs["units"])[0]["run"]["finished"]
    units = [
        Unit(m[0], {"model": "a", "step": 1}),  # already there: kept, not recomputed
        Unit(m[1], {"model": "a", "step": 2}),
        Unit(m[2], {"model": "b", "step": 1}),
    ]
    ds = extract(units, _ts(), store, progress=False)
    assert ds.loglik.dims == ("model", "step", "text")
    assert list(ds.model.values) == ["a", "b"] and list(ds.step.values) == [1, 2]
    assert np.isnan(ds.loglik.sel(model="b", step=2)).all()
    assert np.isfinite(ds.loglik.sel(model="a", step=2)).all()
    runs = json.loads(ds.attrs["units"])
    assert len(runs) == 3 and runs[0]["run"]["finished"] == before
    one = open_store(store, dims=("step", "model"))
    assert one.loglik.dims == ("step", "model", "text")
    flat = open_store(store, dims="unit")
    assert flat.loglik.dims == ("unit", "text") and list(flat.model.values) == ["a", "a", "b"]
    with pytest.raises(KLToolsError, match="differ in 'step'"):
        open_store(store, dims=("model",))


def test_dtype_variants_in_one_store(tmp_path: Path, tiny_neox: Path) -> None:
    spec = str(tiny_neox)
    units = [Unit(spec, {"model": "t"}), Unit(spec, {"model": "t"}, dtype="bfloat16")]
    ds = extract(units, _ts(), tmp_path / "d.zarr", progress=False)
    assert ds.loglik.dims == ("model", "dtype", "text")
    a = ds.loglik.sel(model="t", dtype="float32").values
    b = ds.loglik.sel(model="t", dtype="bfloat16").values
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 0.02 * np.abs(a).max()


def test_refuses_other_textset_and_bos(tmp_path: Path, tiny_neox: Path) -> None:
    store = tmp_path / "r.zarr"
    extract([str(tiny_neox)], _ts(), store, progress=False)
    digest = tree_hash(store)
    with pytest.raises(KLToolsError, match="was built on text set 's'"):
        extract([str(tiny_neox)], _ts(TEXTS[:2], name="other"), store, progress=False)
    with pytest.raises(KLToolsError, match="--bos paper"):
        extract([str(tiny_neox)], _ts(), store, bos="prefix", progress=False)
    with pytest.raises(KLToolsError, match="holds layers None"):
        extract([str(tiny_neox)], _ts(), store, layers=[0], progress=False)
    assert tree_hash(store) == digest
    not_a_store = tmp_path / "plain"
    not_a_store.mkdir()
    with pytest.raises(KLToolsError, match="not a kltools store"):
        extract([str(tiny_neox)], _ts(), not_a_store, progress=False)
    with pytest.raises(KLToolsError, match="no store at"):
        open_store(tmp_path / "missing.zarr")


def test_colliding_labels_refused(tmp_path: Path, make_tiny_neox) -> None:
    units = [
        Unit(str(make_tiny_neox(0)), {"model": "x"}),
        Unit(str(make_tiny_neox(1)), {"model": "x"}),
    ]
    with pytest.raises(KLToolsError, match="same coords"):
        extract(units, _ts(), tmp_path / "c.zarr", progress=False)
    assert not (tmp_path / "c.zarr").exists()


def test_half_written_unit_hidden_then_recomputed(tmp_path: Path, tiny_neox: Path) -> None:
    """A kill between the region write and the done flag: hidden, then recomputed."""
    store = tmp_path / "h.zarr"
    ts = _ts()
    header = run_header(ts, bos="paper", layers=None, dtype="float32", device="cpu")
    rec = Unit(str(tiny_neox), {"model": "t"}).record("float32")
    (idx,) = prepare(store, ts, header, [rec])
    zarr.open_array(str(store / "loglik"), mode="r+")[idx] = np.full(3, 123.0, np.float32)
    assert open_store(store).sizes["model"] == 0  # region written, not done: not exposed
    ds = extract([Unit(str(tiny_neox), {"model": "t"})], ts, store, progress=False)
    ref = score_texts(load_model(str(tiny_neox), device="cpu"), TEXTS).loglik
    np.testing.assert_array_equal(ds.loglik.sel(model="t").values, ref.astype(np.float32))


def test_nan_unit_not_stored(tmp_path: Path, tiny_neox: Path, make_tiny_neox) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    bad_dir = tmp_path / "nanmodel"
    model = AutoModelForCausalLM.from_pretrained(make_tiny_neox(4))
    with torch.no_grad():
        model.get_output_embeddings().weight[3] = float("nan")
    model.save_pretrained(bad_dir)
    load_model(str(tiny_neox)).tokenizer.save_pretrained(bad_dir)
    store = tmp_path / "n.zarr"
    units = [Unit(str(tiny_neox), {"model": "good"}), Unit(str(bad_dir), {"model": "bad"})]
    with pytest.raises(KLToolsError, match=r"model '.*nanmodel' gave a non-finite.*text 's0'"):
        extract(units, _ts(), store, progress=False)
    ds = open_store(store)
    assert list(ds.model.values) == ["good"]
    assert zarr.open_array(str(store / "done"), mode="r")[:].tolist() == [1, 0]


def test_lens_store(tmp_path: Path, tiny_neox: Path) -> None:
    ds = extract([str(tiny_neox)], _ts(), tmp_path / "l.zarr", layers="all", progress=False)
    assert ds.loglik.dims == ("model", "layer", "text") and list(ds.layer.values) == [0, 1, 2]
    assert ds.attrs["layers"] == [0, 1, 2]


def test_unit_from_another_commit_refused(tmp_path: Path, tiny_neox: Path) -> None:
    """A revision that now resolves to another commit (``main`` moved, the rehearsal hub was
    rebuilt) is not reused from the store: one clear error, and the store is left as it was."""
    store, ts = tmp_path / "c.zarr", _ts()
    header = run_header(ts, bos="paper", layers=None, dtype="float32", device="cpu")
    rec = Unit(str(tiny_neox), {"model": "t"}).record("float32")
    first = {**rec, "resolved": {"kind": "hub", "path_or_id": "org/m", "commit": "a" * 40}}
    (idx,) = prepare(store, ts, header, [first])
    assert prepare(store, ts, header, [first]) == [idx]  # the same commit: the same row
    before = tree_hash(store)
    moved = {**first, "resolved": {**first["resolved"], "commit": "b" * 40}}
    with pytest.raises(KLToolsError, match=r"from commit aaaaaaaaaaaa, but it now resolves to"):
        prepare(store, ts, header, [moved])
    assert tree_hash(store) == before
