"""kltools.experiments.pretraining: unit lists (tiny/smoke/pythia), the shared store on the smoke
suite, the analyses the chapters call, and the pythia profile failing fast offline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kltools.errors import KLToolsError
from kltools.experiments import pretraining as P


@pytest.fixture(scope="session")
def smoke_roots(smoke_suite_root: Path, smoke_data_root: Path) -> dict[str, Path]:
    """The session's smoke suite and data root (tests/conftest.py), shared with part I chapters."""
    return {"suite": smoke_suite_root, "data": smoke_data_root}


@pytest.fixture
def smoke_env(smoke_roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(smoke_roots["suite"]))
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(smoke_roots["data"]))
    return smoke_roots


# ------------------------------------------------------------------------------- unit lists


def test_pythia_steps_are_the_papers_154() -> None:
    steps = P.pythia_steps()
    assert len(steps) == 154
    assert steps[:11] == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert steps[11] == 1000 and steps[-1] == 143000 and np.all(np.diff(steps[11:]) == 1000)


def test_pythia_units_names_revisions_and_exclusions() -> None:
    units = P.pretraining_units("pythia")
    assert len(units) == 5 * 154 - 1 + 7 * 154
    specs = {u.spec for u in units}
    assert "EleutherAI/pythia-410m@step0" in specs
    assert "EleutherAI/pythia-6.9b@step143000" in specs
    assert "EleutherAI/pythia-1b@step116000" not in specs
    assert "EleutherAI/pythia-1b@step115000" in specs
    seeds = {u.coords["model"] for u in units if "seed" in u.coords["model"]}
    assert seeds == {f"pythia-410m-seed{k}" for k in (1, 2, 5, 6, 7, 8, 9)}
    assert all(u.spec.startswith(f"EleutherAI/{u.coords['model']}@step") for u in units)
    thin = P.pretraining_units("pythia", sizes=["410m"], seeds=False, steps=[0, 1000, 143000])
    assert [u.spec for u in thin] == [
        "EleutherAI/pythia-410m@step0",
        "EleutherAI/pythia-410m@step1000",
        "EleutherAI/pythia-410m@step143000",
    ]
    with pytest.raises(KLToolsError, match="no size"):
        P.pretraining_units("pythia", sizes=["70m"])


@pytest.mark.parametrize("profile", ["tiny", "smoke"])
def test_suite_units_cover_every_checkpoint_of_every_run(profile: str) -> None:
    from kltools.suite import get_profile

    prof = get_profile(profile)
    runs = P.pretraining_runs(profile)
    n_runs = len(prof.sizes) + prof.n_seeds - 1
    assert len(runs) == n_runs
    assert [r.model for r in runs][: len(prof.sizes)] == [f"{profile}-{s.name}" for s in prof.sizes]
    units = P.pretraining_units(profile)
    assert len(units) == n_runs * len(prof.checkpoint_steps())
    assert {u.coords["step"] for u in units} == set(prof.checkpoint_steps())
    assert sum(r.seed_group for r in runs) == prof.n_seeds
    assert len(P.pretraining_units(profile, seeds=False)) == len(prof.sizes) * len(
        prof.checkpoint_steps()
    )


# ------------------------------------------------------------------------------- offline pythia


def test_pythia_store_fails_at_once_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path))
    t = time.perf_counter()
    with pytest.raises(KLToolsError, match="pythia profile needs the Hugging Face hub"):
        P.pretraining_store({"profile": "pythia", "n_texts": 10000, "textset": "pile"})
    assert time.perf_counter() - t < 5
    assert not any(tmp_path.rglob("*.zarr"))


def test_pythia_hub_models_fail_fast_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Past the text set, the first hub checkpoint is refused offline before anything loads."""
    from kltools.extraction import extract
    from kltools.texts import load_texts

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    units = P.pretraining_units("pythia", sizes=["410m"], seeds=False, steps=[1000])
    with pytest.raises(KLToolsError, match="hub is offline"):
        extract(
            units, load_texts("demo", limit=4), tmp_path / "s.zarr", device="cpu", progress=False
        )
    assert not (tmp_path / "s.zarr").exists()


def test_pythia_parameter_file_is_the_papers() -> None:
    from kltools import book

    doc = book.load_profile("pythia")
    assert doc["common"]["n_texts"] == 10000 and doc["common"]["textset"] == "pile"
    assert doc["chapters"]["consecutive"]["after_step"] == 2000
    assert doc["chapters"]["diffusion"]["min_start"] == 1000


# ------------------------------------------------------------------------------- smoke store


@pytest.fixture
def smoke_store(smoke_env: dict[str, Path]) -> xr.Dataset:
    return P.pretraining_store(
        profile="smoke", n_texts=32, device="cpu", batch_size=16, progress=False
    )


@pytest.mark.slow
def test_store_on_the_smoke_suite(smoke_store: xr.Dataset, smoke_env: dict[str, Path]) -> None:
    ds = smoke_store
    assert ds.loglik.dims == ("model", "step", "text")
    assert ds.sizes["text"] == 32 and np.isfinite(ds.loglik).all()
    assert Path(ds.attrs["store_path"]).parent == smoke_env["data"] / "smoke"
    assert list(ds["seed"].values) == [0, 0, 0, 1]
    assert P.size_order(ds) == ["smoke-xs", "smoke-s", "smoke-m"]
    assert P.seed_models(ds) == ["smoke-s", "smoke-s-seed1"]
    assert P.reference_model(ds) == "smoke-s"
    # a second call extracts nothing (resumable, shared by all chapters)
    t = time.perf_counter()
    again = P.pretraining_store(profile="smoke", n_texts=32, device="cpu", progress=False)
    assert time.perf_counter() - t < 20
    xr.testing.assert_equal(again.loglik, ds.loglik)


@pytest.mark.slow
def test_analyses_on_the_smoke_store(smoke_store: xr.Dataset) -> None:
    ds = smoke_store
    ll = ds.loglik
    cons = P.consecutive_by_model(ll, n_boot=5, seed=0)
    assert len(cons) == 4 * 9 and (cons.kl >= 0).all() and "se" in cons
    st = P.straightness(ll, cons)
    assert ((st.straightness > 0) & (st.straightness <= 1 + 1e-9)).all()
    table = P.seed_size_table(ds, n_boot=10, seed=0)
    assert set(table.setting) == {"consecutive", "seed", "size"}
    assert (table.lo <= table.kl + 1e-12).all() and (table.kl <= table.hi + 1e-12).all()
    chk = P.ordering_check(table)
    assert isinstance(chk["holds"], bool) and chk["seed"] > 0
    comp = P.compare_with_paper(table, P.PAPER_TABLE1, P.table1_mapping(table))
    assert len(comp) == len(P.PAPER_TABLE1) and comp["ours"].notna().sum() >= 5
    coords = P.checkpoint_coordinates(ll)
    assert coords.sizes["ckpt"] == 40
    xy = P.project_2d(coords, "pca", seed=0)
    assert xy.shape[0] == 40 and len(xy.attrs["explained"]) == 2
    D_l = P.loglik_lag_distances(ll.sel(model=P.size_order(ds)), K=3)
    D_w = P.weight_lag_distances("smoke", P.size_order(ds), K=3)
    assert D_l.dims == ("model", "step", "lag") and D_w.sizes["lag"] == 3
    from kltools.analysis import diffusion_exponents

    summ = P.diffusion_summary(
        diffusion_exponents(D_l, min_start=8), diffusion_exponents(D_w, min_start=8)
    )
    assert {"c_l<1", "c_l<c_W"} <= set(summ.columns) and len(summ) == 3
    loss = P.heldout_losses("smoke")
    assert set(loss.model) == {r.model for r in P.pretraining_runs("smoke")}


@pytest.mark.slow
def test_estimate_vs_mc_and_n_study(smoke_store: xr.Dataset) -> None:
    ds = smoke_store
    pairs = P.validation_pairs(ds, ["near_late", "near_late2", "mid", "size"], after_step=8)
    assert pairs[0]["a"] == ("smoke-s", 40) and pairs[0]["b"] == ("smoke-s", 48)
    assert pairs[1]["b"] == pairs[0]["a"] and pairs[1]["a"][1] < 40
    assert [p["kind"] for p in pairs] == ["near", "near", "mid", "far"]
    with pytest.raises(KLToolsError, match="unknown validation pair role"):
        P.validation_pairs(ds, ["near_mid"], after_step=8)
    mc = P.estimate_vs_mc(ds, [pairs[0], pairs[3]], n_samples=4, length=8, seed=0, n_boot=5)
    assert list(mc.kind) == ["near", "far"] and (mc.length == 8).all()
    assert (mc.mc_sym_se > 0).all() and set(mc.verdict) <= {"agree", "disagree", "inconclusive"}
    # both ratios are what they say: the sampled estimate and the corpus estimate over MC
    assert np.allclose(mc.ratio, mc.estimate_sampled / mc.mc_sym)
    assert np.allclose(mc.ratio_corpus, mc.estimate / mc.mc_sym)
    assert (mc.kl_per_token > 0).all()
    # automatic length: the texts' median scored tokens, capped by the context
    med = int(np.median(ds.n_tokens.values))
    assert P.mc_length_for(ds, 0) == med == P.mc_length_for(ds, None)
    assert P.mc_length_for(ds, 0, context=med) == med - 1 and P.mc_length_for(ds, 5) == 5
    a, b = ds.loglik.sel(model="smoke-s", step=40), ds.loglik.sel(model="smoke-s", step=48)
    study = P.kl_vs_n(a, b, [8, 16, 32], n_boot=5, seed=0)
    assert list(study.n) == [8, 16, 32]
    from kltools.kl import kl_between

    assert study.kl.iloc[-1] == pytest.approx(kl_between(a, b))


def test_hub_weight_distances_rolling_window() -> None:
    """The rolling-window D_W equals the direct definition (loader replaced by fixed vectors)."""
    import torch

    rng = np.random.default_rng(0)
    vecs = {s: torch.tensor(rng.normal(size=50), dtype=torch.float32) for s in (0, 10, 20, 40)}
    da = P.hub_weight_distances(
        "x/y", [0, 10, 20, 40], max_lag=2, device="cpu", load_flat=vecs.__getitem__
    )
    assert da.sel(step=0, lag=2).item() == pytest.approx(
        float(((vecs[20] - vecs[0]).double() ** 2).sum())
    )
    assert da["delta_step"].sel(step=20, lag=1).item() == 20
    assert np.isnan(da.sel(step=40, lag=1).item())


def test_variance_se_matches_the_bootstrap_order() -> None:
    d = np.random.default_rng(1).normal(size=4000)
    assert P.variance_se(d) == pytest.approx(np.sqrt(2 / 4000) / 2, rel=0.1)


def test_agreement_threshold() -> None:
    import pandas as pd

    mc = pd.DataFrame(
        {
            "kl_per_token": [0.3, 0.01, 0.02, 0.07],
            "verdict": ["disagree", "agree", "agree", "disagree"],
        }
    )
    assert P.agreement_threshold(mc) == 0.02
    mc.loc[1, "verdict"] = "inconclusive"  # the closest pair does not agree: no clean range
    assert P.agreement_threshold(mc) is None
    mc.loc[1, "verdict"] = "agree"
    mc.loc[3, "verdict"] = "agree"  # a farther agreeing pair after a disagreement does not count
    mc.loc[2, "verdict"] = "disagree"
    assert P.agreement_threshold(mc) == 0.01
