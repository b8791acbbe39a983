"""Stores written by the extraction route -> a release (``export_stores``) -> stores again
(``import_release``): the same numbers under the same labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kltools.extraction import Unit, extract
from kltools.released import export_stores, import_release, open_release
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
)


def test_extracted_stores_round_trip_through_the_release_layout(
    tmp_path: Path, make_tiny_neox
) -> None:
    data = tmp_path / "data"
    m = [str(make_tiny_neox(s)) for s in range(3)]
    pre = [
        Unit(m[0], {"model": "pythia-410m", "step": 0}),
        Unit(m[1], {"model": "pythia-410m", "step": 1000}),
        Unit(m[2], {"model": "pythia-410m-seed3", "step": 1000}),
        Unit(m[2], {"model": "pythia-1b", "step": 3}),  # not a Pythia step: not exported
        Unit(m[1], {"model": "tiny-s", "step": 0}),  # not a release run: not exported
    ]
    extract(pre, TEXTS, data / "pretraining.zarr", progress=False)
    extract(
        [Unit(m[0], {"model": "org/a"}), Unit(m[1], {"model": "org/b"})],
        TEXTS,
        data / "finetuning.zarr",
        progress=False,
    )
    extract(
        [Unit(m[2], {"model": "lens"})],
        TEXTS,
        data / "layers_L2.zarr",
        layers="all",
        progress=False,
    )

    rel = open_release(export_stores(data, tmp_path / "rel", texts=TEXTS))
    assert rel.texts() == TEXTS.texts
    got = rel.pretraining()
    assert {r: sorted(p) for r, p in got.items()} == {"410m": [0, 1000], "410m-seed3": [1000]}
    assert rel.model_list() == (m[2], "org/a", "org/b")  # layer models first, then the rest
    assert sorted(rel.layers()[m[2]]) == [0, 1, 2]
    assert rel.types() == dict.fromkeys(rel.model_list(), "others")

    back = import_release(rel, tmp_path / "again", exclude=())
    a = open_store(data / "pretraining.zarr", dims=("model", "step"))
    b = open_store(back["pretraining"], dims=("model", "step"))
    for model, step in [("pythia-410m", 0), ("pythia-410m", 1000), ("pythia-410m-seed3", 1000)]:
        np.testing.assert_array_equal(
            b.loglik.sel(model=model, step=step).values, a.loglik.sel(model=model, step=step).values
        )
    lens_a = open_store(data / "layers_L2.zarr", dims=("model",)).loglik.sel(model="lens")
    lens_b = open_store(back["layers_L2"], dims=("model",)).loglik.sel(model=m[2])
    np.testing.assert_array_equal(lens_b.values, lens_a.values)
    ft = open_store(back["finetuning"], dims=("model",))
    fa = open_store(data / "finetuning.zarr", dims=("model",))
    np.testing.assert_array_equal(
        ft.loglik.sel(model="org/b").values, fa.loglik.sel(model="org/b").values
    )
    # the lens model's own output (its last layer) is its row of the model matrix
    np.testing.assert_array_equal(rel.oyama()[0], lens_a.sel(layer=2).values)
