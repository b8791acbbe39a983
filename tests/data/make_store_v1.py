"""Regenerate the fixtures ``store_v1.zarr`` and ``store_v1_lens.zarr`` (layout ``kltools-loglik/1``).

These are stores of the layout kltools wrote before the store became an xarray dataset
(``units/u<i>`` groups, a ``texts`` group, bookkeeping arrays without dimension names), kept
so that ``tests/test_store_migration.py`` checks that such stores are read and converted.
They were written by kltools at commit 9af9bda (the last commit with that layout), with::

    git worktree add /tmp/v1 9af9bda && cd /tmp/v1 && make env
    .venv/bin/python <this repo>/tests/data/make_store_v1.py <this repo>/tests/data

Running it with a later kltools writes the new layout and fails its final check. Next to each
store, ``<name>.expected.json`` holds what that kltools' ``open_store`` returned (values,
coordinates, attributes), the reference the migration test compares against.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def _conftest():
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_kl_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _expected(ds) -> dict:
    return {
        "dims": list(ds.loglik.dims),
        "coords": {d: [v.item() for v in ds[d].values] for d in ds.loglik.dims},
        "loglik": np.asarray(ds.loglik.values, dtype=np.float64).tolist(),
        "n_tokens": np.asarray(ds.n_tokens.values, dtype=np.float64).tolist(),
        "text_bytes": ds.text_bytes.values.tolist(),
        "domain": ds.domain.values.tolist() if "domain" in ds.coords else None,
        "attrs": {k: v for k, v in ds.attrs.items() if k != "units"},
        "units": json.loads(ds.attrs["units"]),
    }


def main(out: Path) -> None:
    import zarr
    from transformers import AutoTokenizer

    from kltools.extraction import Unit, extract
    from kltools.store import open_store, prepare, run_header
    from kltools.texts import TextSet

    conf = _conftest()
    work = out / "_models"
    tok_dir = work / "tok"
    conf._bpe_tokenizer().save_pretrained(tok_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    m = {s: str(conf._build_neox(work / f"m{s}", tok, s, {})) for s in (0, 1, 2)}
    texts = TextSet(
        name="v1",
        ids=("a0", "a1", "a2"),
        texts=(
            "We the People of the United States",
            "Four score and seven years ago our fathers brought forth",
            "Größe 東京",
        ),
        domains=("law", "speech", "misc"),
    )
    store = out / "store_v1.zarr"
    shutil.rmtree(store, ignore_errors=True)
    units = [
        Unit(m[0], {"model": "a", "step": 1}),
        Unit(m[1], {"model": "a", "step": 2}),
        Unit(m[2], {"model": "b", "step": 1}),
    ]
    extract(units, texts, store, progress=False)
    # a fourth unit prepared but never finished (a run killed mid-unit)
    header = run_header(texts, bos="paper", layers=None, dtype="float32", device="cpu")
    (row,) = prepare(
        store, texts, header, [Unit(m[0], {"model": "b", "step": 2}).record("float32")]
    )
    zarr.open_array(str(store / "loglik"), mode="r+")[row] = np.full(3, -1.0, np.float32)
    lens = out / "store_v1_lens.zarr"
    shutil.rmtree(lens, ignore_errors=True)
    extract([Unit(m[0], {"model": "a"})], texts, lens, layers="all", progress=False)
    for path in (store, lens):
        root = zarr.open_group(str(path), mode="r")
        assert root.attrs["format"] == "kltools-loglik/1", "run this with kltools at 9af9bda"
        lock = path / ".kltools.lock"
        lock.unlink(missing_ok=True)
        expected = _expected(open_store(path))
        (out / f"{path.stem}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
