"""Execute the Part I chapters (01–05) with the smoke parameters through kltools.book.

They share one smoke suite and one pretraining store (session fixtures of tests/conftest.py),
so the extraction happens once. Each chapter must write its results file.
"""

from __future__ import annotations

import nbformat
import pytest

from kltools import book

PART1 = ["method", "trajectories", "consecutive", "seeds_sizes", "diffusion"]


@pytest.fixture(scope="module")
def part1_env(smoke_suite_root, smoke_data_root, tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KLTOOLS_SUITE_ROOT", str(smoke_suite_root))
    mp.setenv("KLTOOLS_DATA_ROOT", str(smoke_data_root))
    mp.setenv("KLTOOLS_BUILD_ROOT", str(tmp_path_factory.mktemp("build")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("name", PART1)
def test_chapter_runs_with_smoke_parameters(name: str, part1_env: None) -> None:
    doc = book.load_profile("smoke")
    params = book.resolve_parameters(name, doc, book.declared_parameters(book.notebook_path(name)))
    run = book.execute_chapter(name, params, "smoke", force=True)
    assert run.status == "executed", run.error
    assert book.notebook_problems(run.notebook, name) == []
    nb = nbformat.read(run.notebook, as_version=4)
    images = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if 'class="kltools-figure"' in o.get("data", {}).get("text/html", "")
    ]  # a captioned figure: an HTML <figure> holding the PNG
    assert images, f"{name}: no figure"
    from kltools.results import read_results, results_path

    res = read_results(results_path(name))
    assert res.profile == "smoke" and res.parameters["profile"] == "smoke"
    assert res.pairs or res.claims, f"{name}: no results written"
    assert res.deviations, f"{name}: no deviation rows"
    setup = next(c for c in nb.cells if "setup" in c.metadata.get("tags", []))
    assert "parameter" in str(setup.outputs[0].get("data", {}).get("text/html", "")), (
        "the setup cell's first output: the parameter table"
    )


@pytest.mark.parametrize("name", PART1)
def test_source_notebook_contract(name: str) -> None:
    nb = nbformat.read(book.notebook_path(name), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    declared = book.declared_parameters(book.notebook_path(name))
    for profile in book.PROFILES:  # every profile's section resolves against the notebook
        book.resolve_parameters(name, book.load_profile(profile), declared)
    for key in ("profile", "n_texts", "bos", "dtype", "device", "batch_size", "seed", "n_boot"):
        assert key not in declared  # declared once, in the profile files' common section
    after = nb.cells[nb.cells.index(tagged[0]) + 1]
    assert "setup" in after.metadata.get("tags", []) and "start_chapter(globals()" in after.source
