"""The settings on the smoke suite: each setting's values in the scale chapter equal those of
its own chapter (same function, same parameters from params/smoke.yaml), and the pair records
are what the results contract asks for."""

from __future__ import annotations

import pandas as pd
import pytest

from kltools import book
from kltools import settings as S
from kltools.config import Settings

#: setting -> the chapter that computes it on its own
OWN_CHAPTER = {
    "Later": "consecutive",
    "Early": "consecutive",
    "Seed": "seeds_sizes",
    "Size": "seeds_sizes",
    "8-bit": "quantization",
    "4-bit": "quantization",
    "FT": "finetuning",
    "Intra-type": "finetuning",
    "Random": "finetuning",
    "Layer": "layers",
    "Floor": "floor",
    "bf16": "floor",
    "fp16": "floor",
}
FUNCTION = {
    "Later": S.later,
    "Early": S.early,
    "Seed": S.seed,
    "Size": S.size,
    "8-bit": S.eight_bit,
    "4-bit": S.four_bit,
    "FT": S.ft,
    "Intra-type": S.intra_type,
    "Random": S.random_pairs,
    "Layer": S.layer,
    "Floor": S.floor,
    "bf16": S.bf16,
    "fp16": S.fp16,
}


def chapter_settings(name: str) -> Settings:
    doc = book.load_profile("smoke")
    return Settings.from_parameters(
        book.resolve_parameters(name, doc, book.declared_parameters(book.notebook_path(name)))
    )


@pytest.fixture(scope="module")
def smoke_scale(smoke_suite_root, smoke_data_root):
    mp = pytest.MonkeyPatch()
    mp.setenv("KLTOOLS_DATA_ROOT", str(smoke_data_root))
    mp.setenv("HF_HUB_OFFLINE", "1")
    S.clear_caches()
    yield S.scale(chapter_settings("scale"))
    S.clear_caches()
    mp.undo()


@pytest.mark.slow
def test_scale_chapter_equals_each_settings_chapter(smoke_scale) -> None:
    assert set(smoke_scale.frame.setting) >= set(S.ORDER) - {"4-bit"}  # smoke has no bnb-fp4 copy
    for name, chapter in OWN_CHAPTER.items():
        own = FUNCTION[name](chapter_settings(chapter))
        here = smoke_scale.setting(name)
        a, b = (f.dropna(axis=1, how="all") for f in (own.frame, here.frame))
        pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)], check_dtype=False)
        assert (own.reps == here.reps).all(), name


@pytest.mark.slow
def test_pair_records_follow_the_results_contract(smoke_scale) -> None:
    from kltools.models import resolve_model
    from kltools.results import validate_records

    recs = smoke_scale.records("scale")
    validate_records("pairs", recs)
    for rec in recs[:: max(1, len(recs) // 12)]:
        resolve_model(rec["a"])
        resolve_model(rec["b"])
    layer = [r for r in recs if r["setting"] == "Layer"]
    assert layer and min(r["layer_a"] for r in layer) == 0
    assert all(r["layer_b"] == r["layer_a"] + 1 for r in layer)


@pytest.mark.slow
def test_validation_on_smoke(smoke_scale) -> None:
    """The method chapter's pairs and Monte-Carlo table on the smoke store."""
    import numpy as np

    from kltools import validation as V

    s = chapter_settings("method").replace(
        mc_pairs=["near_late", "near_late2", "mid", "size"], mc_samples=4, mc_length=8
    )
    pairs = V.validation_pairs(s)
    assert pairs[0]["a"] == ("smoke-s", 40) and pairs[0]["b"] == ("smoke-s", 48)
    assert pairs[1]["b"] == pairs[0]["a"]
    assert [p["kind"] for p in pairs] == ["near", "near", "mid", "far"]
    mc = V.estimate_vs_mc(s.replace(mc_pairs=["near_late", "size"]))
    assert list(mc.kind) == ["near", "far"] and (mc.length == 8).all()
    assert np.allclose(mc.ratio, mc.estimate_sampled / mc.mc_sym)
    assert np.allclose(mc.ratio_corpus, mc.estimate / mc.mc_sym)
    est = V.corpus_estimates(s.replace(mc_pairs=["near_late", "size"])).frame.kl
    assert np.allclose(mc.estimate, est)
    study = V.kl_vs_n(s, "near_late")
    assert list(study.n) == [8, 16, 32] and study.kl.iloc[-1] == pytest.approx(est.iloc[0])


@pytest.mark.slow
def test_every_map_keeps_its_projection_and_axis_units(smoke_scale) -> None:
    """Each chapter's map function returns the projection's attrs, so the plot labels t-SNE
    axes without units and PCA axes in sqrt(bits/byte) (the lineage map lost them once)."""
    from kltools.plots import map_axis_labels
    from kltools.settings import finetuning as F
    from kltools.settings import layers as La
    from kltools.settings import trajectories

    makers = {
        "trajectories": lambda s, m: trajectories.trajectory_map(s, m),
        "finetuning": F.lineage_map,
        "layers": La.layer_map,
    }
    for chapter, make in makers.items():
        s = chapter_settings(chapter)
        for method, unit in (("pca", "bits/byte"), ("tsne", "no units")):
            points = make(s, method)
            assert points.attrs.get("method") == method, chapter
            assert all(unit in label for label in map_axis_labels(points)), chapter
