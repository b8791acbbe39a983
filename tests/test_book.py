"""Tests of kltools.book: parameters, cache keys, papermill execution, checks, one render.

Every test runs in a throwaway project root (``KLTOOLS_ROOT``) with small notebooks of its
own, so the real chapters, the model suite and the real build folders are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from kltools import book
from kltools.errors import KLToolsError

REPO = Path(__file__).resolve().parent.parent

PARAMS_CELL = """n_texts = 100
seed = 0
label = "demo"
scale = 1.5
"""


def make_notebook(path: Path, params: str = PARAMS_CELL, body: list[str] | None = None) -> Path:
    """Write a chapter-like notebook: a parameters cell, the parameter table, then ``body``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A throwaway chapter"),
        cell,
        nbformat.v4.new_code_cell(
            "from kltools.book import show_parameters\nshow_parameters(globals())"
        ),
        *[nbformat.v4.new_code_cell(src) for src in (body or [])],
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_profile(root: Path, profile: str = "smoke", common=None, chapters=None) -> Path:
    """Write ``params/<profile>.yaml`` in a throwaway root."""
    doc = {
        "profile": profile,
        "common": {"profile": profile, "n_texts": 64, "seed": 42, "n_boot": 10}
        if common is None
        else common,
        "chapters": chapters or {},
    }
    path = root / "params" / f"{profile}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway project root; kltools' paths all point into it."""
    monkeypatch.setenv("KLTOOLS_ROOT", str(tmp_path))
    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(tmp_path / "suite"))
    monkeypatch.delenv("KLTOOLS_BUILD_ROOT", raising=False)
    monkeypatch.delenv("KLTOOLS_PARAMETER_NAMES", raising=False)
    monkeypatch.delenv("KLTOOLS_DECLARED_NAMES", raising=False)
    monkeypatch.delenv("KLTOOLS_FIGURES_DIR", raising=False)
    (tmp_path / "notebooks").mkdir()
    return tmp_path


# --------------------------------------------------------------------------- parameters


def test_chapter_names_and_stems() -> None:
    assert book.chapter_stem("consecutive") == "03_consecutive"
    assert book.chapter_stem("03_consecutive") == "03_consecutive"
    assert book.chapter_name("10_scale") == "scale"
    with pytest.raises(KLToolsError, match="known chapters: method, trajectories"):
        book.chapter_stem("consecutiv")


def test_repository_profiles_are_valid() -> None:
    for profile in book.PROFILES:
        doc = book.load_profile(profile, REPO / "params" / f"{profile}.yaml")
        assert doc["profile"] == profile
        assert set(doc["chapters"]) == set(book.CHAPTERS)
    assert (
        book.load_profile("pythia", REPO / "params" / "pythia.yaml")["common"]["device"] == "cuda"
    )


def test_resolve_parameters_layers_common_section_and_overrides(root: Path) -> None:
    nb = make_notebook(root / "notebooks" / "03_consecutive.ipynb")
    declared = book.declared_parameters(nb)
    assert set(declared) == {"n_texts", "seed", "label", "scale"}
    assert declared["n_texts"].type_name == "int"
    doc = {
        "profile": "smoke",
        "common": {"n_texts": 64, "seed": 42, "n_boot": 10},  # n_boot: not declared, still common
        "chapters": {"consecutive": {"label": "section"}},
    }
    params = book.resolve_parameters("consecutive", doc, declared)
    assert params == {
        "profile": "smoke", "n_texts": 64, "seed": 42, "n_boot": 10, "label": "section"
    }  # fmt: skip
    params = book.resolve_parameters(
        "consecutive", doc, declared, overrides={"seed": 7, "scale": 2, "bos": "prefix"}
    )
    assert params == {
        "profile": "smoke", "n_texts": 64, "seed": 7, "n_boot": 10, "label": "section",
        "scale": 2, "bos": "prefix",
    }  # fmt: skip
    with pytest.raises(KLToolsError, match="unknown common parameter.*bogus"):
        book.resolve_parameters("consecutive", {**doc, "common": {"bogus": 1}}, declared)


def test_resolve_parameters_rejects_unknown_names_and_bad_types(root: Path) -> None:
    declared = book.declared_parameters(make_notebook(root / "notebooks" / "01_method.ipynb"))
    doc = {"profile": "smoke", "common": {}, "chapters": {"method": {"n_text": 5}}}
    with pytest.raises(
        KLToolsError, match=r"unknown parameter\(s\) n_text in chapters.method.*declares: n_texts"
    ):
        book.resolve_parameters("method", doc, declared)
    doc = {"profile": "smoke", "common": {}}
    with pytest.raises(KLToolsError, match="unknown parameter"):
        book.resolve_parameters("method", doc, declared, overrides={"bogus": 1})
    with pytest.raises(KLToolsError, match="'n_texts' should be int.*1e3"):
        book.resolve_parameters("method", doc, declared, overrides={"n_texts": "1e3"})
    with pytest.raises(KLToolsError, match="should be float"):
        book.resolve_parameters("method", doc, declared, overrides={"scale": True})


def test_parameter_file_errors(root: Path) -> None:
    with pytest.raises(KLToolsError, match="parameter file not found"):
        book.load_yaml_mapping(root / "nope.yaml")
    bad = root / "bad.yaml"
    bad.write_text("n_texts: [1, 2\nseed: 3\n")
    with pytest.raises(KLToolsError, match=r"not valid YAML \(line \d+\)"):
        book.load_yaml_mapping(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(KLToolsError, match="must hold a mapping, not list"):
        book.load_yaml_mapping(bad)
    write_profile(root, chapters={"consecutiv": {}})
    with pytest.raises(KLToolsError, match="unknown chapter section"):
        book.load_profile("smoke")
    write_profile(root)
    with pytest.raises(KLToolsError, match="is for profile 'smoke', not 'tiny'"):
        book.load_profile("tiny", root / "params" / "smoke.yaml")
    with pytest.raises(KLToolsError, match="unknown profile 'big'"):
        book.load_profile("big")


def test_chapter_parameters_flat_file_over_profile(root: Path) -> None:
    make_notebook(root / "notebooks" / "03_consecutive.ipynb")
    write_profile(root, chapters={"consecutive": {"label": "profile"}})
    flat = root / "mine.yaml"
    flat.write_text("profile: smoke\nseed: 7\n")
    profile, params = book.chapter_parameters("consecutive", flat)
    assert profile == "smoke"
    assert params == {
        "profile": "smoke",
        "n_texts": 64,
        "seed": 7,
        "n_boot": 10,
        "label": "profile",
    }
    flat.write_text("seeds: 7\n")
    with pytest.raises(KLToolsError, match="unknown parameter"):
        book.chapter_parameters("consecutive", flat, profile="smoke")


# --------------------------------------------------------------------------- cache keys


def test_cache_key_tracks_source_params_and_data_not_outputs(root: Path) -> None:
    nb_path = make_notebook(root / "notebooks" / "01_method.ipynb")
    params = {"n_texts": 64, "seed": 42}
    base = book.cache_key(book.cache_components(nb_path, params, "smoke"))

    nb = nbformat.read(nb_path, as_version=4)  # outputs and execution counts do not count
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    nb.cells[2].execution_count = 3
    nbformat.write(nb, nb_path)
    assert book.cache_key(book.cache_components(nb_path, params, "smoke")) == base

    assert book.cache_key(book.cache_components(nb_path, {**params, "seed": 1}, "smoke")) != base

    fingerprint = root / "suite" / "smoke" / "FINGERPRINT"  # the suite the chapter reads
    fingerprint.parent.mkdir(parents=True)
    fingerprint.write_text("abc\n")
    with_suite = book.cache_key(book.cache_components(nb_path, params, "smoke"))
    assert with_suite != base
    fingerprint.write_text("abd\n")
    assert book.cache_key(book.cache_components(nb_path, params, "smoke")) != with_suite

    data = root / "texts.jsonl"  # an input file named by a parameter (relative to the root)
    data.write_text('{"text": "a"}\n')
    p2 = {**params, "texts": "texts.jsonl"}
    k1 = book.cache_key(book.cache_components(nb_path, p2, "smoke"))
    data.write_text('{"text": "b"}\n')
    assert book.cache_key(book.cache_components(nb_path, p2, "smoke")) != k1

    (root / "suite" / "smoke" / "model.bin").write_bytes(b"x")  # bare words are not paths
    assert book.cache_components(nb_path, {**params, "textset": "suite"}, "smoke")["inputs"] == {}

    nb.cells[1].source = PARAMS_CELL.replace("100", "200")  # the source does count
    nbformat.write(nb, nb_path)
    assert book.cache_key(book.cache_components(nb_path, params, "smoke")) != with_suite


def test_package_source_hash_tracks_source_not_bytecode(tmp_path: Path) -> None:
    pkg = tmp_path / "kltools"
    shutil.copytree(REPO / "kltools", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    h = book.package_source_hash(pkg)
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "x.cpython.pyc").write_bytes(b"\0")
    assert book.package_source_hash(pkg) == h
    with (pkg / "errors.py").open("a") as f:
        f.write("# changed\n")
    assert book.package_source_hash(pkg) != h
    assert book.package_source_hash() == book.package_source_hash(REPO / "kltools")


# --------------------------------------------------------------------------- execution


@pytest.fixture
def frozen_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the kltools source hash: colleagues edit kltools/ while these tests run, which
    would (correctly) invalidate the cache mid-test. The hash itself is tested above."""
    from kltools.book import cache

    monkeypatch.setattr(cache, "package_source_hash", lambda root=None: "pinned")


@pytest.mark.usefixtures("frozen_source")
def test_build_then_rerun_one_chapter_leaves_the_others(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_notebook(
        root / "notebooks" / "01_method.ipynb", body=["import sys\nprint(sys.executable)"]
    )
    make_notebook(
        root / "notebooks" / "03_consecutive.ipynb",
        body=[
            "import os\nprint('profile', os.environ['KLTOOLS_PROFILE'], 'seed', seed, 'cwd', os.getcwd())"
        ],
    )
    write_profile(root)
    # a foreign "python3" kernelspec first on the Jupyter path must not be used
    foreign = root / "foreign" / "kernels" / "python3" / "kernel.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(
        json.dumps(
            {
                "argv": ["/nonexistent/python", "-f", "{connection_file}"],
                "language": "python",
                "display_name": "x",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(root / "foreign"))
    assert book.build("smoke", do_render=False, with_suite=False) == 0
    out = capsys.readouterr().out
    assert "method" in out and "executed" in out
    assert os.environ["JUPYTER_PATH"] == str(root / "foreign")  # restored after the build

    method = book.executed_path("method")
    nb = nbformat.read(method, as_version=4)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert Path(printed.strip()).resolve() == Path(sys.executable).resolve()  # the venv's python
    table = nb.cells[3].outputs[0]["data"]["text/html"]  # cell 2 is papermill's injected cell
    assert "n_texts" in table and "smoke" in table and "kltools version" in table
    record = json.loads(book.key_path("method").read_text())
    assert record["parameters"] == {"profile": "smoke", "n_texts": 64, "seed": 42, "n_boot": 10}
    assert record["profile"] == "smoke"

    # warm: nothing changed, nothing executed
    assert book.build("smoke", do_render=False, with_suite=False) == 0
    assert book.build("smoke", do_render=False, with_suite=False) == 0
    assert capsys.readouterr().out.count("cached") == 4

    before = (method.read_bytes(), method.stat().st_mtime_ns)
    flat = root / "mine.yaml"
    flat.write_text("profile: smoke\nseed: 7\n")
    assert book.rerun_chapter("consecutive", flat, do_render=False, with_suite=False) == 0
    assert (method.read_bytes(), method.stat().st_mtime_ns) == before
    nb = nbformat.read(book.executed_path("consecutive"), as_version=4)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "profile smoke seed 7" in printed
    assert f"cwd {root / 'notebooks'}" in printed
    assert "remove-cell" in nb.cells[2].metadata["tags"]  # injected parameters hidden

    # the next build sees parameters that differ from the profile's and executes again
    assert book.build("smoke", do_render=False, with_suite=False) == 0
    out = capsys.readouterr().out
    assert "consecutive   executed" in out and "(parameters)" in out
    assert "method        cached" in out


@pytest.mark.usefixtures("frozen_source")
def test_chapter_output_reaches_the_log_not_the_page(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings, logging, progress bars and stderr (Python and C level) never reach a page;
    the parameter table shows every declared parameter, the notebook's defaults included."""
    make_notebook(
        root / "notebooks" / "06_quantization.ipynb",
        body=[
            "import logging, os, sys, warnings\n"
            "warnings.warn('MatMul8bitLt: inputs will be cast')\n"
            "logging.getLogger('bitsandbytes').warning('a library log line')\n"
            "print('Loading weights 50%', file=sys.stderr)\n"
            "os.write(2, b'written below Python\\n')\n"
            "from tqdm.auto import tqdm\n"
            "for _ in tqdm(range(3), desc='progress'):\n"
            "    pass\n"
            "print('KL = 0.01 bits/byte')",
        ],
    )
    write_profile(root, common={"profile": "smoke", "n_texts": 64})
    assert book.build("smoke", do_render=False, with_suite=False) == 0
    out = capsys.readouterr().out
    assert "log lines" in out and "build/logs/quantization.log" in out
    nb = nbformat.read(book.executed_path("quantization"), as_version=4)
    assert book.notebook_problems(book.executed_path("quantization"), "q") == []
    streams = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "stream"]
    assert [o["name"] for o in streams] == ["stdout"]
    assert streams[0]["text"] == "KL = 0.01 bits/byte\n"
    log = (root / "build" / "logs" / "quantization.log").read_text()
    for text in ("MatMul8bitLt", "a library log line", "Loading weights 50%"):
        assert text in log
    table = nb.cells[3].outputs[0]["data"]["text/html"]
    for name in ("n_texts", "seed", "label", "scale"):  # seed, label, scale: notebook defaults
        assert f"<code>{name}</code>" in table
    assert "notebook default" in table and "profile smoke" in table


@pytest.mark.usefixtures("frozen_source")
def test_failed_chapter_is_reported_and_others_kept(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_notebook(root / "notebooks" / "01_method.ipynb")
    make_notebook(
        root / "notebooks" / "02_trajectories.ipynb",
        body=["print('before')", "raise ValueError('broken on purpose')", "print('never')"],
    )
    write_profile(root)
    assert book.build("smoke", do_render=False, with_suite=False) == 1
    captured = capsys.readouterr()
    assert "trajectories  FAILED" in captured.out and "broken on purpose" in captured.out
    partial = book.partial_path("trajectories")
    assert str(partial) in captured.out and partial.is_file()
    assert "trajectories" in captured.err
    assert book.executed_path("method").is_file()
    assert not book.executed_path("trajectories").exists()
    problems = book.check("smoke")
    assert any("02_trajectories" in p and "not executed" in p for p in problems)


def test_rerun_validates_before_running(root: Path) -> None:
    write_profile(root)
    with pytest.raises(KLToolsError, match="known chapters"):
        book.rerun_chapter("nope", root / "params" / "smoke.yaml")
    with pytest.raises(KLToolsError, match="has no notebook notebooks/05_diffusion.ipynb"):
        book.rerun_chapter("diffusion", root / "params" / "smoke.yaml")
    make_notebook(root / "notebooks" / "05_diffusion.ipynb")
    with pytest.raises(KLToolsError, match="parameter file not found"):
        book.rerun_chapter("diffusion", root / "missing.yaml")
    assert not book.executed_dir().exists()


def test_cli_errors_are_one_line(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kltools.__main__ import main

    assert main(["book", "chapter", "nope", "--params", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kltools: error: unknown chapter 'nope'") and err.count("\n") == 1


# --------------------------------------------------------------------------- check


def fake_rendered_chapter(root: Path, name: str, outputs: list, page_html: str | None) -> None:
    """An executed notebook with ``outputs``, its key file, and (unless None) its HTML page."""
    make_notebook(root / "notebooks" / f"{book.chapter_stem(name)}.ipynb")
    nb = nbformat.read(root / "notebooks" / f"{book.chapter_stem(name)}.ipynb", as_version=4)
    nb.cells[2].outputs = outputs
    book.executed_dir().mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, book.executed_path(name))
    book.key_path(name).write_text(json.dumps({"key": "k", "profile": "smoke", "components": {}}))
    (root / "_build" / "html").mkdir(parents=True, exist_ok=True)
    (root / "_build" / "html" / "index.html").write_text("<html></html>")
    if page_html is not None:
        page = root / "_build" / "html" / "build" / "executed" / f"{book.chapter_stem(name)}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(page_html)
        (page.parent / "x.png").write_bytes(b"")  # the figure the fake pages show


def test_check_finds_missing_page_errors_and_pages_without_figures(root: Path) -> None:
    figure = '<html><img src="x.png"></html>'
    fake_rendered_chapter(root, "method", [nbformat.v4.new_output("stream", text="ok\n")], figure)
    assert book.check("smoke") == []

    fake_rendered_chapter(root, "consecutive", [], None)
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])
    fake_rendered_chapter(root, "seeds_sizes", [error], figure)
    tb = nbformat.v4.new_output(
        "stream", name="stderr", text="Traceback (most recent call last):\n  x\n"
    )
    fake_rendered_chapter(root, "diffusion", [tb], figure)
    fake_rendered_chapter(root, "floor", [], "<html><p>no figure</p></html>")
    problems = book.check("smoke")
    assert len(problems) == 5, problems
    assert any("03_consecutive" in p and "missing from the rendered book" in p for p in problems)
    assert any("05_diffusion" in p and "stderr output" in p for p in problems)
    assert any("04_seeds_sizes" in p and "raised ValueError: bad" in p for p in problems)
    assert any("05_diffusion" in p and "traceback" in p for p in problems)
    assert any("07_floor" in p and "no figure" in p for p in problems)
    assert book.check("tiny")  # executed with smoke, not tiny

    from kltools.__main__ import main

    assert main(["book", "check", "--profile", "smoke"]) == 1


def test_parameters_table_outside_and_inside_a_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLTOOLS_PARAMETER_NAMES", raising=False)
    monkeypatch.delenv("KLTOOLS_PROFILE", raising=False)
    namespace = {"n_texts": 10, "label": "x", "os": os, "_hidden": 1, "Out": {}, "grid": [1, 2]}
    table = book.parameters_table(namespace)
    assert list(table.index) == ["n_texts", "label", "grid", "profile", "kltools version"]
    monkeypatch.setenv("KLTOOLS_PARAMETER_NAMES", "label")
    monkeypatch.setenv("KLTOOLS_PROFILE", "tiny")
    table = book.parameters_table(namespace)
    assert list(table.index) == ["label", "profile", "kltools version"]
    assert table.loc["profile", "value"] == "tiny"


# --------------------------------------------------------------------------- one render


@pytest.mark.slow
@pytest.mark.usefixtures("frozen_source")
def test_build_renders_and_check_passes(root: Path) -> None:
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book")
    make_notebook(
        root / "notebooks" / "01_method.ipynb",
        body=[
            "import matplotlib.pyplot as plt\n"
            "from kltools.book import save_figure\n"
            "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([0, 1], [0, seed])\n"
            "save_figure(fig, 'line', caption='A line.', alt='A rising line.')"
        ],
    )
    write_profile(root)
    assert book.build("smoke", with_suite=False) == 0
    html = root / "_build" / "html"
    assert (html / "book" / "method.html").is_file()
    page = (html / "build" / "executed" / "01_method.html").read_text()
    assert "<img" in page
    assert (root / "build" / "figures" / "method" / "line.png").is_file()
    method = (html / "book" / "method.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in method and "cdn.jsdelivr" not in method
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert book.check("smoke") == []


def test_rendered_toc_lists_only_written_and_executed_chapters(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REPO / "_toc.yml", root / "_toc.yml")
    (root / "book").mkdir()
    for page in ("intro", "method"):
        (root / "book" / f"{page}.md").write_text(f"# {page}\n")
    monkeypatch.setenv("KLTOOLS_BUILD_ROOT", str(root / "out"))
    for name in ("method", "consecutive", "scale"):
        make_notebook(root / "notebooks" / f"{book.chapter_stem(name)}.ipynb")
    book.executed_dir().mkdir(parents=True)
    for name in ("method", "scale", "layers"):  # layers: executed once, notebook since removed
        shutil.copy(root / "notebooks" / "01_method.ipynb", book.executed_path(name))
    toc = book.rendered_toc()
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert files == ["book/method", "out/executed/01_method", "out/executed/10_scale"]
    assert [p["caption"] for p in toc["parts"]] == [
        "The method",
        "Part I: Pretraining",
        "Part II: One scale",
    ]
    assert toc["root"] == "book/intro"


def test_build_suite_calls_the_suite_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[str] = []
    fake = types.ModuleType("kltools.suite")
    fake.build = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kltools.suite", fake)
    assert "smoke ready" in book.build_suite("smoke")
    assert calls == ["smoke"]
    assert "not used" in book.build_suite("pythia") and calls == ["smoke"]
