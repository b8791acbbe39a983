"""Model catalogues per profile (kltools.sources), the pythia profile failing fast offline, and
small pieces of the validation chapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kltools import sources
from kltools.config import Settings
from kltools.errors import KLToolsError
from kltools.sources import pythia, suite


def test_pythia_steps_are_the_papers_154() -> None:
    steps = pythia.pythia_steps()
    assert len(steps) == 154
    assert steps[:11] == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert steps[11] == 1000 and steps[-1] == 143000 and np.all(np.diff(steps[11:]) == 1000)


def test_pythia_runs_sizes_seeds_and_exclusions() -> None:
    runs = sources.pretraining_runs(Settings(profile="pythia", textset="pile"))
    assert [r.model for r in runs if r.in_sizes] == [f"pythia-{z}" for z in pythia.SIZES]
    assert {r.model for r in runs if r.in_seeds} == {
        f"pythia-410m-seed{k}" for k in (1, 2, 5, 6, 7, 8, 9)
    }
    one_b = next(r for r in runs if r.model == "pythia-1b")
    assert 116000 not in one_b.steps and len(one_b.steps) == 153 and one_b.excluded == (116000,)
    assert one_b.spec(115000) == "EleutherAI/pythia-1b@step115000"


def test_smoke_suite_runs_are_the_profile(smoke_suite_root: Path) -> None:
    from kltools.suite import get_profile

    prof = get_profile("smoke")
    runs = sources.pretraining_runs(Settings(profile="smoke"))
    assert [r.model for r in runs if r.in_sizes] == [f"smoke-{z.name}" for z in prof.sizes]
    assert sum(r.in_seeds for r in runs) == prof.n_seeds
    assert all(r.steps == prof.checkpoint_steps() for r in runs)


def test_pythia_fails_at_once_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kltools.settings import clear_caches, stores

    clear_caches()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path))
    s = Settings(profile="pythia", textset="pile", n_texts=10000)
    with pytest.raises(KLToolsError, match="pythia profile needs the Hugging Face hub"):
        stores.pretraining_store(s)
    assert not any(tmp_path.rglob("*.zarr"))  # failed before any extraction began
    with pytest.raises(KLToolsError, match="offline"):
        stores.require_models(s, ["meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1"])
    lin, source = pythia.lineages(s)
    assert "sibling_info.json" in source and len(lin) > 0  # the paper's edges, offline
    clear_caches()


def test_pythia_parameter_file_is_the_papers() -> None:
    from kltools import book

    doc = book.load_profile("pythia")
    assert doc["common"]["n_texts"] == 10000 and doc["common"]["textset"] == "pile"
    assert doc["common"]["after_step"] == 2000 and doc["common"]["early_later_k"] == 50
    assert doc["chapters"]["diffusion"]["min_start"] == 1000


def test_hub_quantization_is_bitsandbytes_only() -> None:
    s = Settings(
        profile="pythia",
        textset="pile",
        hub_models=("EleutherAI/pythia-410m",),
        quant_schemes=("bnb-int8", "bnb-fp4"),
    )
    cat = sources.quant_catalogue(s)
    assert list(cat.quantization) == ["int8", "fp4"] and cat.usable.all()
    with pytest.raises(KLToolsError):
        sources.quant_catalogue(s.replace(quant_schemes=["rtn4"]))


def test_schemes_and_cpu_limits() -> None:
    assert suite.bnb_usable_on_cpu({"hidden_size": 64, "intermediate_size": 256}, "bnb-nf4")
    assert not suite.bnb_usable_on_cpu({"hidden_size": 32, "intermediate_size": 128}, "bnb-fp4")
    assert suite.bnb_usable_on_cpu({"hidden_size": 32, "intermediate_size": 128}, "bnb-int8")
    assert suite.scheme_info("rtn4g32") == ("round-to-nearest", 4)
    with pytest.raises(KLToolsError):
        suite.scheme_info("gptq")


def test_lineages_json_is_valid_and_single_parent() -> None:
    lin = pythia.load_lineages_json()
    assert {"mistral", "llama-3"} <= set(lin.type) and lin.model.is_unique
    for r in lin[lin.parent.notna()].itertuples():
        assert r.parent in set(lin.model) and r.generation >= 1


def test_settings_from_parameters() -> None:
    s = Settings.from_parameters(
        {"profile": "smoke", "n_texts": 32, "quant_bases": ["m"], "unrelated": object()}
    )
    assert s.quant_bases == ("m",) and s.n_texts == 32 and hash(s)
    assert Settings.from_parameters({"profile": "pythia"}).textset == "source"
    with pytest.raises(KLToolsError, match="suite"):  # the suite's text set is not the hub's
        sources.analysis_texts(Settings(profile="pythia", textset="suite"))
    with pytest.raises(KLToolsError, match="n_texts"):
        Settings(n_texts=1)
    with pytest.raises(KLToolsError, match="parameter after_step must be a int"):
        Settings.from_parameters({"after_step": "late"})


def test_variance_se_and_agreement_threshold() -> None:
    from kltools.validation import agreement_threshold, variance_se

    d = np.random.default_rng(1).normal(size=4000)
    assert variance_se(d) == pytest.approx(np.sqrt(2 / 4000) / 2, rel=0.1)
    mc = pd.DataFrame(
        {
            "mc_sym": [0.3, 0.01, 0.02, 0.07],
            "verdict": ["disagree", "agree", "agree", "disagree"],
        }
    )
    assert agreement_threshold(mc) == 0.02
    mc.loc[1, "verdict"] = "inconclusive"
    assert agreement_threshold(mc) is None
    # on the text set: its own verdict column
    mc["verdict_corpus"] = ["disagree", "agree", "disagree", "disagree"]
    assert agreement_threshold(mc, "verdict_corpus") == 0.01
