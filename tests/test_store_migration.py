"""Stores of the older layout (``kltools-loglik/1``) are read as they are and converted once.

The fixtures in ``tests/data`` were written by kltools at commit 9af9bda (see
``tests/data/make_store_v1.py``); next to each, what that version's ``open_store`` returned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kltools.extraction import Unit, extract
from kltools.store import FORMAT, FORMAT_V1, convert_v1, open_store
from kltools.texts import TextSet

DATA = Path(__file__).parent / "data"
TEXTS = TextSet(
    name="v1",
    ids=("a0", "a1", "a2"),
    texts=(
        "We the People of the United States",
        "Four score and seven years ago our fathers brought forth",
        "Größe 東京",
    ),
    domains=("law", "speech", "misc"),
)


def _copy(tmp_path: Path, name: str) -> tuple[Path, dict]:
    dest = tmp_path / f"{name}.zarr"
    shutil.copytree(DATA / f"{name}.zarr", dest)
    return dest, json.loads((DATA / f"{name}.expected.json").read_text())


def _format(store: Path) -> str:
    return json.loads((store / "zarr.json").read_text())["attributes"]["format"]


def _same_as_expected(ds: xr.Dataset, want: dict) -> None:
    assert list(ds.loglik.dims) == want["dims"]
    for d, values in want["coords"].items():
        assert [v.item() if hasattr(v, "item") else v for v in ds[d].values] == values
    np.testing.assert_array_equal(ds.loglik.values, np.asarray(want["loglik"], np.float32))
    np.testing.assert_array_equal(ds.n_tokens.values, np.asarray(want["n_tokens"]))
    assert ds.text_bytes.values.tolist() == want["text_bytes"]
    assert list(ds.domain.values) == want["domain"]
    for key in ("textset_sha256", "bos_policy", "layers", "kltools_version", "created"):
        assert ds.attrs[key] == want["attrs"][key]
    got = json.loads(ds.attrs["units"])
    assert [(u["row"], u["coords"], u["run"]) for u in got] == [
        (u["row"], u["coords"], u["run"]) for u in want["units"]
    ]


@pytest.mark.parametrize("name", ["store_v1", "store_v1_lens"])
def test_old_store_read_as_is(tmp_path: Path, name: str) -> None:
    store, want = _copy(tmp_path, name)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    _same_as_expected(open_store(store), want)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # untouched
    assert _format(store) == FORMAT_V1


@pytest.mark.parametrize("name", ["store_v1", "store_v1_lens"])
def test_old_store_converted(tmp_path: Path, name: str, capsys) -> None:
    store, want = _copy(tmp_path, name)
    convert_v1(store)
    msg = capsys.readouterr().err
    assert f"converted store {store} from layout {FORMAT_V1} to {FORMAT}" in msg
    assert _format(store) == FORMAT
    _same_as_expected(open_store(store), want)
    raw = xr.open_zarr(store)  # now a plain xarray dataset
    assert raw.attrs["converted_from"] == FORMAT_V1
    assert int(raw.done.sum()) == len(want["units"])
    if name == "store_v1":
        assert "1 unfinished dropped" in msg
        assert list(raw.model.values) == ["a", "a", "b"] and list(raw.step.values) == [1, 2, 1]


def test_extract_converts_then_adds(tmp_path: Path, tiny_neox: Path) -> None:
    """An extraction on an old store converts it (once, saying so) and adds its unit."""
    store, want = _copy(tmp_path, "store_v1")
    ds = extract([Unit(str(tiny_neox), {"model": "c", "step": 1})], TEXTS, store, progress=True)
    assert _format(store) == FORMAT
    old = ds.sel(model=["a", "b"], step=[1, 2])
    np.testing.assert_array_equal(old.loglik.values, np.asarray(want["loglik"], np.float32))
    assert np.isfinite(ds.loglik.sel(model="c", step=1)).all()
    again = extract([Unit(str(tiny_neox), {"model": "c", "step": 1})], TEXTS, store, progress=False)
    np.testing.assert_array_equal(again.loglik.values, ds.loglik.values)


def test_interrupted_conversion_put_back(tmp_path: Path) -> None:
    """A kill between the conversion's two renames leaves a backup the next open restores."""
    store, want = _copy(tmp_path, "store_v1")
    store.rename(tmp_path / f".{store.name}.v1-backup")
    _same_as_expected(open_store(store), want)
    assert store.is_dir() and _format(store) == FORMAT_V1
