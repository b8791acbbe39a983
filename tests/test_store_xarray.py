"""Stores are xarray datasets: plain ``xarray.open_zarr`` reads every shape the book writes.

Each store is written by ``kltools.extract`` (tiny random models, three texts) in the shape of
one part of the book (pretraining: model x step; quantization: model x variant; floor: model
x setting x dtype; layers: a lens store with a ``layer`` dim), with one unit left pending where
a chapter could leave one. The raw dataset that ``xr.open_zarr`` returns (no kltools code) is
checked against ``kltools.open_store``: dims, labels, values, pending rows, attributes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kltools.extraction import Unit, extract
from kltools.store import open_store, prepare, run_header, write_unit
from kltools.texts import TextSet

TEXTS = TextSet(
    name="xr",
    ids=("t0", "t1", "t2"),
    texts=("We the People of the United States", "Four score and seven years ago", "Größe"),
    domains=("law", "speech", "misc"),
)


def _pending(store: Path, unit: Unit, dtype: str = "float32", layers=None) -> int:
    """Add a row for ``unit`` without computing it (a run killed before it finished)."""
    header = run_header(TEXTS, bos="paper", layers=layers, dtype=dtype, device="cpu")
    (row,) = prepare(store, TEXTS, header, [unit.record(dtype)])
    return row


def _raw(store: Path) -> xr.Dataset:
    """What a user without kltools gets: ``xr.open_zarr``, with warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(store).load()


def _check(store: Path, dims: tuple[str, ...], n_pending: int = 0) -> xr.Dataset:
    """Compare the raw dataset with open_store(dims) unit by unit; return the raw one."""
    raw = _raw(store)
    view = open_store(store, dims=dims)
    lens = "layer" in view.loglik.dims
    assert raw.loglik.dims == (("unit", "layer", "text") if lens else ("unit", "text"))
    assert raw.loglik.dtype == np.float32 and raw.n_tokens.dtype == np.int32
    assert raw.loglik.attrs["units"] == "nat"
    assert raw.loglik.attrs["long_name"] == "summed log-likelihood"
    assert raw.done.dtype == bool and int((~raw.done).sum()) == n_pending
    for key in ("textset_sha256", "bos_policy", "kltools_version", "created", "dtype"):
        assert raw.attrs[key] == view.attrs[key]
    assert list(raw.text.values) == list(view.text.values) == list(TEXTS.ids)
    np.testing.assert_array_equal(raw.text_bytes.values, view.text_bytes.values)
    assert list(raw.domain.values) == list(TEXTS.domains)
    if lens:
        assert list(raw.layer.values) == list(view.layer.values)
    for j in range(raw.sizes["unit"]):
        row = raw.isel(unit=j)
        if not bool(row.done):
            assert np.isnan(row.loglik.values).all()
            continue
        where = {d: row[d].item() for d in dims}
        np.testing.assert_array_equal(row.loglik.values, view.loglik.sel(where).values)
        np.testing.assert_array_equal(row.n_tokens.values, view.n_tokens.sel(where).values)
    # the grid, unstacked by xarray alone, is open_store's view
    done = raw.where(raw.done, drop=True) if n_pending else raw
    if len(dims) == 1:
        grid = done.loglik.swap_dims(unit=dims[0])
    else:
        grid = done.loglik.set_index(unit=list(dims)).unstack("unit")
    grid = grid.transpose(*dims, *(["layer"] if lens else []), "text")
    np.testing.assert_array_equal(
        grid.sel({d: view[d].values for d in dims}).values.astype(np.float32), view.loglik.values
    )
    return raw


def test_pretraining_shape(tmp_path: Path, make_tiny_neox) -> None:
    store = tmp_path / "pretraining.zarr"
    m = {s: str(make_tiny_neox(s)) for s in (0, 1, 2)}
    units = [
        Unit(m[0], {"model": "a", "step": 0}),
        Unit(m[1], {"model": "a", "step": 8}),
        Unit(m[2], {"model": "b", "step": 0}),
    ]
    extract(units, TEXTS, store, progress=False)
    _pending(store, Unit(m[1], {"model": "b", "step": 8}))
    raw = _check(store, ("model", "step"), n_pending=1)
    assert raw.step.dtype == np.int64 and list(raw.model.values) == ["a", "a", "b", "b"]
    run = json.loads(raw.run.values[0])
    assert run["tokens"] == int(raw.n_tokens[0].sum()) and run["normaliser"]
    assert json.loads(raw.resolved.values[0])["kind"] == "local"
    assert raw.run.values[3] == ""  # pending: no run record yet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = xr.open_datatree(store, engine="zarr")  # a pure zarr hierarchy: no stray files
    np.testing.assert_array_equal(tree.to_dataset().loglik.values, raw.loglik.values)


def test_quantization_shape(tmp_path: Path, make_tiny_neox) -> None:
    store = tmp_path / "quantization.zarr"
    m = {s: str(make_tiny_neox(s)) for s in (0, 3, 4)}
    units = [
        Unit(m[0], {"model": "s", "variant": "full"}),
        Unit(m[3], {"model": "s", "variant": "rtn8"}),
        Unit(m[4], {"model": "s", "variant": "rtn4"}),
    ]
    extract(units, TEXTS, store, progress=False)
    _check(store, ("model", "variant"))
    view = open_store(store, dims=("model", "variant"))
    assert list(view.variant.values) == ["full", "rtn8", "rtn4"]
    assert view.quantization.values.tolist() == [[None, None, None]]


def test_quantization_label_written_as_text(tmp_path: Path, tiny_neox: Path) -> None:
    """bitsandbytes units (GPU only) store their scheme; 'none' reads back as None."""
    store = tmp_path / "bnb.zarr"
    header = run_header(TEXTS, bos="paper", layers=None, dtype="float32", device="cpu")
    recs = [
        Unit(str(tiny_neox), {"model": "p", "variant": "full"}).record("float32"),
        Unit(str(tiny_neox), {"model": "p", "variant": "nf4"}, quantization="nf4").record(
            "float32"
        ),
    ]
    rows = prepare(store, TEXTS, header, recs)
    for r, v in zip(rows, (-1.0, -2.0)):
        write_unit(store, r, np.full(3, v, np.float32), np.ones(3, np.int32), {"seconds": 0})
    raw = _raw(store)
    assert list(raw.quantization.values) == ["none", "nf4"]
    view = open_store(store, dims="unit")
    assert view.quantization.values[1] == "nf4"
    assert view.quantization.isnull().values.tolist() == [True, False]
    np.testing.assert_array_equal(view.loglik.values, [[-1.0] * 3, [-2.0] * 3])


def test_floor_shape(tmp_path: Path, tiny_neox: Path) -> None:
    store = tmp_path / "floor.zarr"
    spec = str(tiny_neox)
    units = [
        Unit(spec, {"model": "t", "setting": "fp32"}, "float32"),
        Unit(spec, {"model": "t", "setting": "bf16"}, "bfloat16"),
    ]
    extract(units, TEXTS, store, progress=False)
    raw = _check(store, ("model", "setting", "dtype"))
    assert list(raw.dtype.values) == ["float32", "bfloat16"]


def test_layers_shape(tmp_path: Path, make_tiny_neox) -> None:
    store = tmp_path / "layers_L2.zarr"
    units = [Unit(str(make_tiny_neox(s)), {"model": f"m{s}"}) for s in (0, 1)]
    extract(units, TEXTS, store, layers="all", progress=False)
    _pending(store, Unit(str(make_tiny_neox(2)), {"model": "m2"}), layers=[0, 1, 2])
    raw = _check(store, ("model",), n_pending=1)
    assert raw.loglik.shape == (3, 3, 3) and list(raw.layer.values) == [0, 1, 2]
    assert raw.attrs["layers"] == [0, 1, 2]


def test_growing_keeps_finished_chunks(tmp_path: Path, make_tiny_neox) -> None:
    """Appending units rewrites no finished unit's chunks; xr.open_zarr sees the new length."""
    store = tmp_path / "grow.zarr"
    m = {s: str(make_tiny_neox(s)) for s in (0, 1)}
    extract([Unit(m[0], {"model": "a", "step": 1})], TEXTS, store, progress=False)
    chunk = store / "loglik" / "c" / "0" / "0"
    before = (chunk.read_bytes(), chunk.stat().st_mtime_ns, chunk.stat().st_ino)
    extract([Unit(m[1], {"model": "a", "step": 2})], TEXTS, store, progress=False)
    assert (chunk.read_bytes(), chunk.stat().st_mtime_ns, chunk.stat().st_ino) == before
    raw = _raw(store)
    assert raw.sizes["unit"] == 2 and raw.done.values.tolist() == [True, True]
    assert list(raw.step.values) == [1, 2]
    # the consolidated metadata was refreshed: opening it strictly gives the same
    strict = xr.open_zarr(store, consolidated=True)
    assert strict.sizes["unit"] == 2


def test_reserved_label_refused(tmp_path: Path, tiny_neox: Path) -> None:
    from kltools.errors import KLToolsError

    with pytest.raises(KLToolsError, match="coordinate name 'done'"):
        Unit(str(tiny_neox), {"done": 1})


def test_kill_while_adding_rows(tmp_path: Path, make_tiny_neox) -> None:
    """A writer killed after growing the arrays, before labelling the rows: nothing breaks."""
    import zarr

    store = tmp_path / "k.zarr"
    m = {s: str(make_tiny_neox(s)) for s in (0, 1)}
    extract([Unit(m[0], {"model": "a", "step": 1})], TEXTS, store, progress=False)
    names = ["loglik", "n_tokens", "model", "step", "spec", "dtype", "quantization"]
    for name in [*names, "resolved", "run", "done"]:
        arr = zarr.open_array(str(store / name), mode="r+")
        arr.resize((2, *arr.shape[1:]))  # then killed: no labels, no consolidation
    assert _raw(store).sizes["unit"] == 1  # readers see the last consistent snapshot
    ds = extract([Unit(m[1], {"model": "a", "step": 2})], TEXTS, store, progress=False)
    raw = _raw(store)
    assert raw.sizes["unit"] == 2 and list(raw.step.values) == [1, 2]  # the row was reused
    assert raw.done.values.all() and list(ds.step.values) == [1, 2]
