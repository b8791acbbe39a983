"""What readers see: clean outputs, the build logs, the claims scoreboard, downloads.

Results files are written here with :mod:`kltools.results` (the contract the chapters use),
so the scoreboard and ``kltools book results`` are tested on known records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kltools.book import clean, compose, hygiene, scoreboard
from kltools.book.layout import CHAPTERS
from kltools.results import ChapterResults, write_results

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KLTOOLS_ROOT", str(tmp_path))
    monkeypatch.delenv("KLTOOLS_BUILD_ROOT", raising=False)
    monkeypatch.delenv("KLTOOLS_FIGURES_DIR", raising=False)
    return tmp_path


def _nb(*outputs: dict, source: str = "x = 1") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = list(outputs)
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), cell]
    return nb


# --------------------------------------------------------------------------- hygiene


def test_notebook_hygiene_flags_stderr_reprs_paths_and_outside_files(root: Path) -> None:
    clean_nb = _nb(
        nbformat.v4.new_output("stream", name="stdout", text="KL = 0.01 bits/byte\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "a table"}),
    )
    assert hygiene.notebook_problems(clean_nb, "ch") == []
    bad = _nb(
        nbformat.v4.new_output("stream", name="stderr", text="Loading weights 10%\n"),
        nbformat.v4.new_output(
            "execute_result",
            data={"text/plain": f"[PosixPath('{root}/build/figures/a.png')]"},
            execution_count=1,
        ),
        nbformat.v4.new_output("display_data", data={"text/markdown": "see paper-notes §1"}),
    )
    problems = hygiene.notebook_problems(bad, "ch")
    assert any("stderr output ('Loading weights 10%')" in p for p in problems)
    assert any("PosixPath repr" in p for p in problems)
    assert any("path of the build machine" in p and str(root) in p for p in problems)
    assert any("paper-notes" in p for p in problems)
    assert hygiene.stderr_count(bad) == 1 and hygiene.stderr_count(clean_nb) == 0


def test_html_hygiene_finds_dangling_links_only(tmp_path: Path) -> None:
    site = tmp_path / "html"
    (site / "build" / "executed").mkdir(parents=True)
    (site / "_images").mkdir()
    (site / "_images" / "fig.png").write_bytes(b"png")
    (site / "index.html").write_text('<a href="build/executed/ch.html#top">chapter</a>')
    (site / "build" / "executed" / "ch.html").write_text(
        '<img src="../../_images/fig.png"><a href="#x">anchor</a>'
        '<a href="https://arxiv.org/abs/2505.15353">paper</a><a href="../../index.html">home</a>'
        '<a href="../../_downloads/missing.csv">csv</a><script src="gone.js"></script>'
    )
    problems = hygiene.html_problems(site, paths=["/nowhere/at/all"])
    assert sorted(problems) == [
        "build/executed/ch.html: dangling link ../../_downloads/missing.csv",
        "build/executed/ch.html: dangling link gone.js",
    ]


# --------------------------------------------------------------------------- clean kernels


def test_move_stderr_to_log_keeps_the_rest(tmp_path: Path) -> None:
    nb = _nb(
        nbformat.v4.new_output("stream", name="stderr", text="warn 1\n"),
        nbformat.v4.new_output("stream", name="stdout", text="result\n"),
        nbformat.v4.new_output("stream", name="stderr", text="100%|####|\n"),
    )
    log = tmp_path / "logs" / "ch.log"
    assert clean.move_stderr_to_log(nb, log, "ch") == 2
    assert [o["text"] for o in nb.cells[1].outputs] == ["result\n"]
    text = log.read_text()
    assert "ch, cell 1, stderr" in text and "warn 1" in text and "100%|####|" in text
    assert clean.log_lines(log) == text.count("\n")


def test_install_sends_warnings_logging_and_stderr_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "chapter.log"
    code = (
        "import logging, sys, warnings\n"
        "from kltools.book import clean\n"
        "assert clean.install() is not None\n"
        "warnings.warn('a library warning')\n"
        "logging.getLogger('lib').warning('a log line')\n"
        "print('progress 50%', file=sys.stderr)\n"
        "print('to the page')\n"
    )
    env = {**os.environ, **clean.quiet_environ(log)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout == "to the page\n"
    assert proc.stderr == ""
    text = log.read_text()
    assert "a library warning" in text and "a log line" in text and "progress 50%" in text
    assert env["TQDM_DISABLE"] == "1" and env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_install_does_nothing_outside_a_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clean.LOG_ENV, raising=False)
    before = sys.stderr
    assert clean.install() is None
    assert sys.stderr is before


# --------------------------------------------------------------------------- scoreboard


def _claim(chapter: str, claim: str, verdict: str, **extra: object) -> dict:
    return {"chapter": chapter, "claim": claim, "verdict": verdict, "reason": "because", **extra}


def write_two_chapters(folder: Path, profile: str = "smoke") -> None:
    """Results of two chapters: one with pairs and two claims, one with a claim only."""
    pair = {"chapter": "floor", "setting": "Floor", "a": "smoke-m", "b": "smoke-m"}
    write_results(
        ChapterResults(
            chapter="floor",
            profile=profile,
            parameters={"n_texts": 32},
            pairs=[
                {
                    **pair,
                    "kl_bpb": 7.1e-8,
                    "n_texts": 32,
                    "mean_bytes": 310.5,
                    "lo": 1e-8,
                    "hi": 2e-7,
                },
                {**pair, "setting": "8-bit", "kl_bpb": 5.0e-6, "n_texts": 32, "mean_bytes": 310.5},
            ],
            claims=[
                _claim(
                    "floor",
                    "floor<8bit<4bit",
                    "holds",
                    title="Floor < 8-bit < 4-bit",
                    ours=5.04e-6,
                    ours_lo=4.1e-6,
                    ours_hi=6.2e-6,
                    paper=0.0013,
                    paper_kind="median",
                    paper_source="v1 Fig. 3",
                    units="bits/byte",
                ),
                _claim("floor", "fp16<bf16", "not tested", title="fp16 | bf16 <tie>"),
            ],
        ),
        folder,
    )
    write_results(
        ChapterResults(
            chapter="diffusion",
            profile=profile,
            claims=[_claim("diffusion", "c_l<c_W", "not reproduced", ours=0.61, paper=0.5)],
        ),
        folder,
    )


def test_claim_rows_format_numbers_kinds_sources_and_intervals() -> None:
    row = scoreboard.claim_row(
        _claim(
            "floor",
            "x",
            "holds",
            title="T",
            ours=5.04e-6,
            ours_lo=4.1e-6,
            ours_hi=6.2e-6,
            paper=0.0013,
            paper_kind="median",
            paper_source="v1 Fig. 3",
            units="bits/byte",
        )
    )
    assert row["paper"] == "0.00130 bits/byte (median, v1 Fig. 3)"
    assert row["ours"] == "5.04e-06 [4.10e-06, 6.20e-06] bits/byte"
    assert scoreboard.fmt_number(None) == "—" and scoreboard.fmt_number(float("nan")) == "—"
    ranged = scoreboard.claim_row(
        _claim("c", "x", "not tested", paper_lo=0.02, paper_hi=0.07, paper_kind="range", units="b")
    )
    assert ranged["paper"] == "0.0200–0.0700 b (range)"
    assert scoreboard.fmt_number(63.8575) == "63.9" and scoreboard.fmt_number(1200) == "1,200"


def test_scoreboard_lists_every_claim_and_chapters_not_executed(root: Path) -> None:
    folder = root / "build" / "executed"
    write_two_chapters(folder)
    results = scoreboard.load(folder)
    assert [r.chapter for r in results] == ["diffusion", "floor"]  # book order
    rows = scoreboard.scoreboard_rows(results)
    claims = [r for r in rows if r["verdict"] != scoreboard.NOT_EXECUTED]
    assert [r["claim"] for r in claims] == ["c_l<c_W", "Floor < 8-bit < 4-bit", "fp16 | bf16 <tie>"]
    missing = {r["chapter"] for r in rows if r["verdict"] == scoreboard.NOT_EXECUTED}
    assert missing == set(CHAPTERS) - {"diffusion", "floor"}
    counts = scoreboard.verdict_counts(rows)
    assert counts == {
        "holds": 1,
        "not reproduced": 1,
        "not tested": 1,
        "no results": 0,
        "not executed": 8,
    }
    # a chapter that ran but wrote no results is told apart from one that did not run
    (folder / "01_method.ipynb").write_text("{}")
    ran = scoreboard.executed_chapters(folder)
    assert ran == ["method"]
    method = next(r for r in scoreboard.scoreboard_rows(results, ran) if r["chapter"] == "method")
    assert method["verdict"] == scoreboard.NO_RESULTS

    page = scoreboard.write_scoreboard(root / "build", folder).read_text()
    for row in claims:  # the page shows exactly the rows the command prints
        assert row["paper"] in page and row["ours"].replace("<", "&lt;") in page
    assert "fp16 \\| bf16 &lt;tie>" in page  # pipes and tags escaped in a Markdown table
    assert "[7. floor](executed/07_floor.ipynb)" in page  # no notebook in this root
    ran_line = "*Ran without writing results (no claims to show yet):* [1. method]"
    assert ran_line + "(executed/01_method.ipynb)." in page
    assert "*Not executed in this build:* 2. trajectories; 3. consecutive;" in page
    assert "**Why each verdict.**" in page and "- **c_l&lt;c_W** (" in page


def test_scoreboard_renders_with_no_results_at_all(root: Path) -> None:
    page = scoreboard.write_scoreboard(root / "build", root / "build" / "executed").read_text()
    assert "No chapter has written results in this build yet." in page
    line = next(x for x in page.splitlines() if x.startswith("*Not executed in this build:*"))
    assert line.count("; ") == len(CHAPTERS) - 1
    assert "The paper's claims: none yet. The book's own checks: none yet." in page


def test_scoreboard_counts_each_claim_once_and_splits_the_books_checks(root: Path) -> None:
    """A claim re-tested by a later chapter is shown as a re-test, not counted again; the
    book's own checks are counted apart from the paper's claims."""
    folder = root / "build" / "executed"
    order = dict(title="Later < Seed < Size", population="pooled", statistic="medians")
    floor = dict(title="floor < 8-bit", origin="book", other=1e-4, other_label="8-bit median")
    write_results(
        ChapterResults(
            "seeds_sizes",
            "tiny",
            claims=[_claim("seeds_sizes", "later<seed<size", "holds", **order)],
        ),
        folder,
    )
    write_results(
        ChapterResults(
            "floor", "tiny", claims=[_claim("floor", "floor<8-bit<4-bit", "holds", **floor)]
        ),
        folder,
    )
    write_results(
        ChapterResults(
            "scale",
            "tiny",
            claims=[
                _claim("scale", "later<seed<size", "not reproduced", **order),
                _claim("scale", "floor<8-bit<4-bit", "not reproduced", **floor),
            ],
        ),
        folder,
    )
    rows = scoreboard.scoreboard_rows(scoreboard.load(folder))
    tested = [r for r in rows if r["verdict"] not in (scoreboard.NOT_EXECUTED,)]
    assert [(r["chapter"], r["retest_of"]) for r in tested] == [
        ("seeds_sizes", ""),
        ("floor", ""),
        ("scale", "seeds_sizes"),
        ("scale", "floor"),
    ]
    # counted once: 2 claims, both "holds" in their home chapters; the re-tests add nothing
    assert scoreboard.verdict_counts(rows)["holds"] == 2
    assert scoreboard.verdict_counts(rows)["not reproduced"] == 0
    assert scoreboard.verdict_counts(rows, "paper")["holds"] == 1
    assert scoreboard.verdict_counts(rows, "book")["holds"] == 1
    floor_row = next(r for r in tested if r["chapter"] == "floor")
    assert floor_row["ours"].endswith("; 8-bit median 1.00e-04")
    assert floor_row["paper"] == "— (the chapter gives no published number)"
    page = scoreboard.write_scoreboard(root / "build", folder).read_text()
    assert "## The paper's claims" in page and "## The book's own checks" in page
    assert "## Re-tests (not counted again)" in page
    assert "The paper's claims: **1** holds. The book's own checks: **1** holds." in page


def test_results_command_matches_the_scoreboard(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kltools.__main__ import main

    folder = root / "build" / "executed"
    write_two_chapters(folder)
    write_two_chapters(root / "other", profile="tiny")
    assert main(["book", "results", "--format", "json", "--dir", str(folder)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profiles"] == ["smoke"]
    assert len(doc["pairs"]) == 2 and doc["pairs"][0]["kl_bpb"] == 7.1e-8
    assert [c["verdict"] for c in doc["claims"]] == ["not reproduced", "holds", "not tested"]
    assert doc["scoreboard"] == scoreboard.scoreboard_rows(scoreboard.load(folder))

    assert main(["book", "results", "--format", "csv", "--dir", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("chapter,setting,a,b,kl_bpb") and len(lines) == 3

    assert main(["book", "results", "--dir", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "pairs: 2" in text and "1 holds, 1 not reproduced, 1 not tested, 8 not executed" in text

    assert main(["book", "results", "--profile", "tiny", "--dir", str(folder)]) == 1
    assert "no results files of profile tiny" in capsys.readouterr().err


# --------------------------------------------------------------------------- composed pages


def test_finish_executed_adds_claims_and_downloads_and_folds_solutions(root: Path) -> None:
    folder = root / "build" / "executed"
    figures = root / "build" / "figures" / "floor"
    figures.mkdir(parents=True)
    for fmt in ("png", "pdf", "csv"):
        (figures / f"floor.{fmt}").write_bytes(b"x")
    write_two_chapters(folder)
    nb = _nb(nbformat.v4.new_output("stream", name="stderr", text="MatMul8bitLt: cast\n"))
    params = nbformat.v4.new_code_cell("n_texts = 32")
    params.metadata["tags"] = ["parameters"]
    heading = nbformat.v4.new_markdown_cell("## Exercises")
    heading.metadata["tags"] = ["exercises"]
    solution = nbformat.v4.new_markdown_cell("**Solution.** Because.")
    solution.metadata["tags"] = ["solution"]
    code_solution = nbformat.v4.new_code_cell("1 + 1")
    code_solution.metadata["tags"] = ["solution"]
    nb.cells = [params, *nb.cells, heading, solution, code_solution]
    path = folder / "07_floor.ipynb"
    nbformat.write(nb, path)
    log = root / "build" / "logs" / "floor.log"

    for _ in range(2):  # finishing twice adds the sections once
        assert compose.finish_executed(path, "floor", log, figures) in (1, 0)
    out = nbformat.read(path, as_version=4)
    sources = [c.source for c in out.cells]
    at = next(i for i, s in enumerate(sources) if s.startswith("## Exercises"))
    assert sources[at - 2].startswith("## This chapter on the scoreboard")
    assert "Floor &lt; 8-bit &lt; 4-bit" in sources[at - 2]
    downloads = sources[at - 1]
    assert "{download}`PNG <../figures/floor/floor.png>`" in downloads
    assert "{download}`PDF <../figures/floor/floor.pdf>`" in downloads
    assert "{download}`data (CSV) <../figures/floor/floor.csv>`" in downloads
    assert "{download}`JSON <floor.results.json>`" in downloads
    assert "{download}`CSV of the pairs <floor.pairs.csv>`" in downloads
    assert (folder / "floor.pairs.csv").read_text().startswith("chapter,setting,a,b,kl_bpb")
    assert sources[at + 1].startswith(":::{admonition} Solution\n:class: dropdown")
    assert "hide-cell" in out.cells[at + 2].metadata["tags"]
    assert out.cells[at + 2].metadata["mystnb"]["code_prompt_show"].startswith("Solution")
    assert out.cells[0].source == "# A chapter"  # the question first, then the parameters
    assert "hide-input" in out.cells[1].metadata["tags"]
    assert hygiene.stderr_count(out) == 0
    assert "MatMul8bitLt" in log.read_text()


def test_save_figure_writes_200_dpi_png_and_pdf_and_its_caption(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from kltools.book import save_figure

    monkeypatch.setenv("KLTOOLS_FIGURES_DIR", str(root / "figs"))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    assert (
        save_figure(fig, "line", caption="A rising line.", alt="A line rising from 0 to 1.") is None
    )
    plt.close(fig)
    assert "A rising line." in (root / "figs" / "line.json").read_text()
    with Image.open(root / "figs" / "line.png") as img:
        dpi = img.info["dpi"]
    assert round(dpi[0]) >= 150 and round(dpi[0]) == 200
    assert (root / "figs" / "line.pdf").read_bytes().startswith(b"%PDF")


def test_long_tables_are_folded_short_ones_and_figures_are_not() -> None:
    import pandas as pd

    def cell_with(rows: int, image: bool = False) -> nbformat.NotebookNode:
        html = pd.DataFrame({"kl": range(rows)}).to_html()
        outputs = [nbformat.v4.new_output("display_data", data={"text/html": html})]
        if image:
            outputs.append(nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"}))
        cell = nbformat.v4.new_code_cell("show()")
        cell.outputs = outputs
        return cell

    assert compose.table_rows(pd.DataFrame({"a": range(39)}).to_html()) == 39
    long, short, figure = cell_with(39), cell_with(8), cell_with(39, image=True)
    assert compose.fold_long_tables(long) and "hide-output" in long.metadata["tags"]
    assert not compose.fold_long_tables(short) and "tags" not in short.metadata
    assert not compose.fold_long_tables(figure)


def test_chapter_titles_come_from_the_notebooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLTOOLS_ROOT", str(REPO))
    assert scoreboard.chapter_title("floor").startswith("7. ")
    assert ":" not in scoreboard.chapter_title("method")
    assert scoreboard.chapter_title("unknown") == "unknown"


def test_figure_check_wants_150_dpi_png_and_a_pdf(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "ch").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "ch" / "sharp.png", dpi=(200, 200))
    (tmp_path / "ch" / "sharp.pdf").write_bytes(b"%PDF")
    Image.new("RGB", (10, 10)).save(tmp_path / "ch" / "blurry.png", dpi=(110, 110))
    assert hygiene.figure_problems(tmp_path) == [
        "figure ch/blurry.png: 110 dpi, below 150",
        "figure ch/blurry.png: no PDF beside it",
    ]


# --------------------------------------------------------------------------- tables


def test_page_table_rounds_escapes_and_folds() -> None:
    import pandas as pd

    from kltools.book.tables import fmt_cell, page_table

    frame = pd.DataFrame(
        {"claim": ["c_l<c_W", "x"], "kl [bits/byte]": [63.857512, float("nan")], "n": [3, 1200]}
    )
    html = page_table(frame).data
    assert "c_l&lt;c_W" in html and "<c_W" not in html  # never read as an HTML tag
    assert "63.9" in html and "63.857" not in html  # three significant digits
    assert "nan" not in html.lower() and "—" in html  # a missing value says so
    assert "1,200" in html
    assert html.count("<tr>") == 3  # header + 2 rows, and no index column
    assert "<th></th>" not in html and "<details>" not in html
    long = page_table(pd.DataFrame({"kl": [0.5] * 30})).data
    assert long.startswith("<details><summary>All 30 rows")
    assert fmt_cell(1.5887e-06) == "1.59×10<sup>-6</sup>" and fmt_cell(0.0) == "0"


def test_page_table_text_is_the_table_not_a_repr() -> None:
    import pandas as pd
    from IPython.core.formatters import DisplayFormatter

    from kltools.book.tables import page_table

    data, _ = DisplayFormatter().format(page_table(pd.DataFrame({"verdict": ["holds"]})))
    assert "holds" in data["text/plain"] and "object" not in data["text/plain"]
    assert "<table" in data["text/html"]


def test_point_labels_do_not_overlap_each_other_or_other_points() -> None:
    """Seven labels on a tight cluster (the fine-tuning map's roots and their LoRA children):
    no two label boxes overlap and no label covers another point. Placing every label at the
    same offset, as before, overlaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from kltools.plots import label_points

    rng = np.random.default_rng(0)
    xs = np.r_[rng.normal(0, 0.03, 7), 2.0, -2.0]
    ys = np.r_[rng.normal(0, 0.03, 7), 1.0, -1.0]
    labels = [f"model-{i}/lora" for i in range(len(xs))]

    def boxes(anns, fig):
        renderer = fig.canvas.get_renderer()
        return [a.get_window_extent(renderer) for a in anns]

    def overlapping(bs):
        return sum(a.overlaps(b) for i, a in enumerate(bs) for b in bs[i + 1 :])

    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(xs, ys)
    naive = [
        ax.annotate(t, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
        for x, y, t in zip(xs, ys, labels)
    ]
    fig.canvas.draw()
    assert overlapping(boxes(naive, fig)) > 0
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(xs, ys)
    anns = label_points(ax, xs, ys, labels)
    fig.canvas.draw()
    bs = boxes(anns, fig)
    assert len(bs) == len(labels) and overlapping(bs) == 0
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    for i, b in enumerate(bs):
        others = np.delete(pts, i, axis=0)
        assert not any(b.contains(px, py) for px, py in others)
    plt.close(fig)


def test_long_identifiers_in_tables_can_break_short_text_and_prose_cannot() -> None:
    import pandas as pd

    from kltools.book.tables import breakable, page_table

    assert breakable("EleutherAI/pythia-410m@step120000") == (
        "EleutherAI/<wbr>pythia-<wbr>410m@<wbr>step120000"
    )
    assert breakable("tiny-s@step320") == "tiny-s@step320"  # short: one piece
    assert breakable("a prose cell with spaces/slashes-and-dashes") == (
        "a prose cell with spaces/slashes-and-dashes"
    )
    assert (
        breakable("<a&b>/very-long-identifier")
        == "&lt;a&amp;b&gt;/<wbr>very-<wbr>long-<wbr>identifier"
    )
    table = page_table(pd.DataFrame({"a": ["meta-llama/Llama-2-7b-hf@main"], "kl": [0.5]}))
    assert "meta-<wbr>llama/<wbr>Llama-<wbr>2-<wbr>7b-<wbr>hf@<wbr>main" in table._repr_html_()
    assert "meta-llama/Llama-2-7b-hf@main" in repr(table)  # the text form is the plain table


def test_sync_static_copies_only_the_changed_files(tmp_path: Path) -> None:
    from kltools.book.render import sync_static

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "a.css").write_text("a { color: red }")
    (src / "sub" / "b.js").write_text("b")
    assert sorted(p.name for p in sync_static(src, dst)) == ["a.css", "b.js"]
    assert sync_static(src, dst) == []
    (src / "a.css").write_text("a { color: blue }")
    assert sync_static(src, dst) == [dst / "a.css"]
    assert (dst / "a.css").read_text() == "a { color: blue }"


def _write_some_results(executed: Path) -> None:
    from kltools.book.scoreboard import write_chapter_csv
    from kltools.results import ChapterResults, write_results

    res = ChapterResults(
        chapter="seeds_sizes",
        profile="smoke",
        parameters={"profile": "smoke", "n_texts": 8},
        pairs=[
            {
                "chapter": "seeds_sizes",
                "setting": "Seed",
                "a": "x@step1",
                "b": "y@step1",
                "kl_bpb": 0.1,
                "lo": 0.05,
                "hi": 0.2,
                "n_texts": 8,
                "mean_bytes": 500.0,
            },
        ],
        summaries=[
            {
                "chapter": "seeds_sizes",
                "setting": "Seed",
                "statistic": "median",
                "value": 0.1,
                "n_pairs": 1,
            },
        ],
        claims=[
            {
                "chapter": "seeds_sizes",
                "claim": "later<seed<size",
                "verdict": "holds",
                "reason": "medians in order",
                "title": "late checkpoints < seeds < sizes (Fig. 3)",
            },
            {
                "chapter": "seeds_sizes",
                "claim": "own",
                "verdict": "not tested",
                "reason": "no data",
                "title": "a check of the book",
            },
        ],
    )
    write_results(res, executed)
    write_chapter_csv("seeds_sizes", executed)


def test_the_archive_unpacks_to_files_whose_columns_its_readme_names(tmp_path: Path) -> None:
    import csv
    import json
    import zipfile

    from kltools.book.archive import write_archive

    build = tmp_path / "build"
    _write_some_results(build / "executed")
    (build / "figures" / "seeds_sizes").mkdir(parents=True)
    (build / "figures" / "seeds_sizes" / "seeds_sizes.csv").write_text("setting,kl_bpb\nSeed,0.1\n")
    texts = [{"id": "t1", "text": "héllo", "domain": "prose", "bytes": 6}]
    path = write_archive(build, texts=texts)
    out = tmp_path / "unpacked"
    zipfile.ZipFile(path).extractall(out)
    readme = (out / "README.md").read_text()
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {
        "results/seeds_sizes.results.json",
        "results/seeds_sizes.pairs.csv",
        "texts.jsonl",
        "figures/seeds_sizes/seeds_sizes.csv",
    } <= names
    for name in names - {"README.md"}:
        assert f"`{name}`" in readme, name
        if name.endswith(".csv"):
            with (out / name).open() as f:
                header = next(csv.reader(f))
        elif name.endswith(".jsonl"):
            header = list(json.loads((out / name).read_text().splitlines()[0]))
        else:
            continue
        for column in header:
            assert f"- `{column}`: " in readme, (name, column)
    assert json.loads((out / "texts.jsonl").read_text()) == texts[0]


def test_the_first_page_says_what_the_build_found(tmp_path: Path) -> None:
    from kltools.book.findings import findings_markdown, write_intro
    from kltools.book.scoreboard import load

    _write_some_results(tmp_path / "executed")
    section = findings_markdown(load(tmp_path / "executed"), archive="ARCHIVE", card="CARD")
    assert "| the paper's claims | 1 | 0 | 0 |" in section
    assert "| the book's own checks | 0 | 0 | 1 |" in section
    assert "| Seed | 0.100 (median of 1 pair) | 0.11 (mean, v1 Table 1) |" in section
    assert "Not run in this build" in section and "ARCHIVE" in section
    source = tmp_path / "book" / "intro.md"
    source.parent.mkdir()
    source.write_text("# Title\n\nFirst, see {doc}`method`.\n\n## Next\n\nMore.\n")
    page = write_intro(source, tmp_path / "build" / "intro.md", section).read_text()
    assert (
        page.index("{doc}`/book/method`")
        < page.index("## What this build found")
        < page.index("## Next")
    )


def test_every_chapter_has_a_paper_box_with_the_papers_numbers_and_this_run() -> None:
    from kltools import deviations, paper
    from kltools.book.boxes import CHAPTER_CLAIMS, paper_box
    from kltools.config import Settings

    s = Settings.from_parameters({"profile": "smoke", "n_texts": 32, "n_boot": 20})
    assert set(CHAPTER_CLAIMS) == set(CHAPTERS)
    for chapter in CHAPTERS:
        box = paper_box(s, chapter)
        assert box.startswith(":::{admonition} The paper and this page") and box.endswith(":::")
        assert "ran the `smoke` profile on 32 texts" in box
        for d in deviations.deviations(s):
            if chapter in d.chapters:
                assert f"*{d.topic}*" in box, (chapter, d.topic)
    box = paper_box(s, "finetuning")
    number = paper.TABLE2[("all", "fine-tuning", "median")]
    assert f"| all, fine-tuning, median | {number.value:g} | median | v1 Table 2 |" in box
    assert "| vs 1B | 0.28 | single pair | v1 Table 1 |" in paper_box(s, "seeds_sizes")
    assert "prints no number" in paper_box(s, "quantization")
