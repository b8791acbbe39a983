"""Exchange formats: netCDF and CSV exports, imports from them and from a pickle of vectors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kltools.errors import KLToolsError
from kltools.exchange import export_store, import_vectors
from kltools.extraction import Unit, extract
from kltools.kl import kl_matrix
from kltools.store import open_store
from kltools.texts import TextSet

TEXTS = TextSet(
    name="ex",
    ids=("e0", "e1", "e2", "e3"),
    texts=(
        "We the People of the United States",
        "Four score and seven years ago",
        "Größe 東京",
        "in order to form a more perfect Union",
    ),
    domains=("law", "speech", "misc", "law"),
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory, make_tiny_neox) -> Path:
    path = tmp_path_factory.mktemp("exchange") / "src.zarr"
    units = [
        Unit(str(make_tiny_neox(s)), {"model": m, "step": st})
        for s, (m, st) in enumerate([("a", 1), ("a", 2), ("b", 1)])
    ]
    extract(units, TEXTS, path, progress=False)
    return path


@pytest.fixture(scope="module")
def lens_store(tmp_path_factory, make_tiny_neox) -> Path:
    path = tmp_path_factory.mktemp("exchange_lens") / "lens.zarr"
    units = [Unit(str(make_tiny_neox(s)), {"model": f"m{s}"}) for s in (0, 1)]
    extract(units, TEXTS, path, layers="all", progress=False)
    return path


def _same_store(a: Path, b: Path) -> None:
    x, y = open_store(a), open_store(b)
    assert x.loglik.dims == y.loglik.dims
    for d in x.loglik.dims:
        assert list(x[d].values) == list(y[d].values)
    np.testing.assert_array_equal(x.loglik.values, y.loglik.values)
    np.testing.assert_array_equal(x.n_tokens.values, y.n_tokens.values)
    np.testing.assert_array_equal(x.text_bytes.values, y.text_bytes.values)
    for key in ("textset_sha256", "bos_policy", "layers"):
        assert x.attrs[key] == y.attrs[key]


def test_netcdf_round_trip(tmp_path: Path, store: Path) -> None:
    nc = export_store(store, tmp_path / "v.nc")
    ds = xr.open_dataset(nc)
    raw = xr.open_zarr(store)
    assert ds.loglik.dims == ("unit", "text") and ds.loglik.dtype == np.float32
    assert ds.loglik.attrs["units"] == "nat" and ds.attrs["Conventions"].startswith("CF-")
    np.testing.assert_array_equal(ds.loglik.values, raw.loglik.values)
    assert list(ds.model.values) == list(raw.model.values)
    back = tmp_path / "back.zarr"
    import_vectors(nc, back)
    _same_store(store, back)
    np.testing.assert_array_equal(xr.open_zarr(back).loglik.values, raw.loglik.values)


def test_netcdf_round_trip_lens(tmp_path: Path, lens_store: Path) -> None:
    nc = export_store(lens_store, tmp_path / "lens.nc")
    back = tmp_path / "back.zarr"
    import_vectors(nc, back)
    _same_store(lens_store, back)


def test_csv_loads_in_pandas_to_the_same_numbers(tmp_path: Path, store: Path) -> None:
    csv = export_store(store, tmp_path / "v.csv")
    frame = pd.read_csv(csv)
    assert list(frame.columns) == [
        "model",
        "step",
        "spec",
        "dtype",
        "quantization",
        "text",
        "text_bytes",
        "n_tokens",
        "loglik",
    ]
    view = open_store(store)
    table = frame.set_index(["model", "step", "text"])["loglik"].to_xarray()
    want = view.loglik.astype(np.float64)
    np.testing.assert_array_equal(table.sel(text=list(view.text.values)).values, want.values)
    assert frame.text_bytes.tolist() == np.tile(TEXTS.n_bytes, 3).tolist()
    back = tmp_path / "back.zarr"
    import_vectors(csv, back, texts=TEXTS)
    _same_store(store, back)


def test_csv_lens_round_trip(tmp_path: Path, lens_store: Path) -> None:
    csv = export_store(lens_store, tmp_path / "lens.csv")
    frame = pd.read_csv(csv)
    assert len(frame) == 2 * 3 * 4 and "layer" in frame.columns
    back = tmp_path / "back.zarr"
    import_vectors(csv, back, texts=TEXTS)
    _same_store(lens_store, back)


def test_pickle_of_vectors_joins_a_store(tmp_path: Path, store: Path) -> None:
    """Released vectors ({model: array}) join a store; the same KL comes out."""
    view = open_store(store, dims="unit")
    vectors = {
        f"{m}-{s}": view.loglik.values[j].astype(np.float64)
        for j, (m, s) in enumerate(zip(view.model.values, view.step.values))
    }
    pkl = tmp_path / "vectors.pkl"
    pkl.write_bytes(pickle.dumps(vectors))
    with pytest.raises(KLToolsError, match="give --texts"):
        import_vectors(pkl, tmp_path / "nowhere.zarr")
    dest = tmp_path / "paper.zarr"
    added = import_vectors(pkl, dest, texts=TEXTS)
    assert len(added) == 3
    got = open_store(dest)
    assert list(got.model.values) == list(vectors)
    assert (got.n_tokens.values == -1).all()  # unknown for imported vectors
    ref = kl_matrix(view.loglik.drop_vars("model").rename(unit="model"), dim="model").values
    np.testing.assert_allclose(kl_matrix(got.loglik, dim="model").values, ref, rtol=1e-12)
    # importing again adds nothing; other texts are refused
    assert import_vectors(pkl, dest) == []
    other = TextSet(name="o", ids=("x0",), texts=("other",))
    with pytest.raises(KLToolsError, match="texts"):
        import_vectors(pkl, tmp_path / "o.zarr", texts=other)


def test_cli_export_import(tmp_path: Path, store: Path) -> None:
    def kltools(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "kltools", *args]
        return subprocess.run(cmd, env=ENV, capture_output=True, text=True)

    for ext in ("nc", "csv"):
        out = kltools("export", "--store", str(store), "--to", str(tmp_path / f"v.{ext}"))
        assert out.returncode == 0 and "wrote 3 units" in out.stderr, out.stderr
    out = kltools("import", "--from", str(tmp_path / "v.nc"), "--store", str(tmp_path / "n.zarr"))
    assert out.returncode == 0 and "imported 3 units" in out.stderr, out.stderr
    _same_store(store, tmp_path / "n.zarr")
    bad = kltools("export", "--store", str(store), "--to", str(tmp_path / "v.xlsx"))
    assert bad.returncode == 2 and "must end in .nc" in bad.stderr
    bad = kltools("import", "--from", str(tmp_path / "v.csv"), "--store", str(tmp_path / "c.zarr"))
    assert bad.returncode == 2 and "give --texts" in bad.stderr
