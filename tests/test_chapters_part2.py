"""Part II chapters (06-10) executed through kltools.book with the smoke parameters.

Also: with the pythia parameters and the hub offline, a chapter fails at once with one clear
message (before any model is loaded).
"""

from __future__ import annotations

import nbformat
import pytest

from kltools import book

PART2 = ("quantization", "floor", "finetuning", "layers", "scale")


@pytest.fixture(scope="module")
def roots(smoke_suite_root, smoke_data_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("part2")
    mp = pytest.MonkeyPatch()
    mp.setenv("KLTOOLS_BUILD_ROOT", str(base / "build"))
    mp.setenv("KLTOOLS_DATA_ROOT", str(smoke_data_root))  # the pretraining store is shared
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield base
    mp.undo()


def _outputs(nb_file) -> str:
    nb = nbformat.read(nb_file, as_version=4)
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text.append(data.get("text/markdown", "") + data.get("text/plain", ""))
            if "image/png" in data or 'class="kltools-figure"' in data.get("text/html", ""):
                text.append("<IMG>")  # a captioned figure is an HTML <figure> with the PNG
    return "\n".join(text)


@pytest.mark.parametrize("name", PART2)
def test_chapter_runs_on_smoke(roots, name):
    doc = book.load_profile("smoke")
    params = book.resolve_parameters(name, doc, book.declared_parameters(book.notebook_path(name)))
    run = book.execute_chapter(name, params, "smoke", force=True)
    assert run.status == "executed", run.error
    assert book.notebook_problems(run.notebook, name) == []  # no stderr, reprs, machine paths
    out = _outputs(run.notebook)
    assert "<IMG>" in out
    assert "paper" in out  # the compared-with-the-paper table
    if name in ("quantization", "floor", "scale", "finetuning"):
        assert any(v in out for v in ("holds", "not reproduced", "not tested"))
    if name == "quantization":
        assert "verified quantized" in out
    from kltools.results import read_results, results_path

    res = read_results(results_path(name))
    assert res.pairs and res.summaries and res.deviations
    if name == "scale":  # every Fig. 3 setting the smoke suite has (no bnb-fp4 copy: no 4-bit)
        settings = {p["setting"] for p in res.pairs}
        assert settings >= {
            "Later",
            "Early",
            "Seed",
            "Size",
            "8-bit",
            "FT",
            "Intra-type",
            "Random",
            "Layer",
            "Floor",
        }
        assert {c["claim"] for c in res.claims} >= {"later<seed<size", "8-bit<4-bit", "FT<Random"}
        four = next(c for c in res.claims if c["claim"] == "8-bit<4-bit")
        assert four["verdict"] == "not tested"


def test_notebooks_are_clean():
    for name in PART2:
        nb = nbformat.read(book.notebook_path(name), as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        for profile in book.PROFILES:
            doc = book.load_profile(profile)
            book.resolve_parameters(name, doc, book.declared_parameters(book.notebook_path(name)))


def test_pythia_offline_fails_at_once(roots):
    doc = book.load_profile("pythia")
    name = "quantization"
    params = book.resolve_parameters(name, doc, book.declared_parameters(book.notebook_path(name)))
    run = book.execute_chapter(name, params, "pythia", force=True)
    assert run.status == "failed"
    assert "KLToolsError" in run.error and ("offline" in run.error or "hub" in run.error)
    assert run.seconds < 60
