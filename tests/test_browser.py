"""A throwaway book rendered by Jupyter Book and opened, page by page, in headless Chromium.

One chapter writes a figure and a results file (so the page gets its claims, its downloads
and the scoreboard links to it); another shows a table far wider than the page, which the
browser check must catch. Skipped, with the reason, when Chromium is not installed
(``apt-get install -y chromium chromium-driver``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from kltools import book
from kltools.book import browser, hygiene

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="Chromium is not installed (apt-get install -y chromium chromium-driver)",
)

FIGURE_AND_RESULTS = """
import matplotlib.pyplot as plt
from kltools.book import save_figure
from kltools.results import ChapterResults, write_results

fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1], [0, seed])
_ = save_figure(fig, "line", caption="A line.", alt="A line rising from left to right.")
_ = write_results(ChapterResults(
    chapter="method", profile="smoke",
    claims=[{"chapter": "method", "claim": "a<b", "verdict": "holds", "reason": "0.1 < 0.2",
             "title": "A < B", "ours": 0.1, "ours_lo": 0.05, "ours_hi": 0.2, "paper": 0.3,
             "paper_kind": "median", "paper_source": "v1 Table 1", "units": "bits/byte"}]))
"""

WIDE_TABLE = """
import pandas as pd
pd.DataFrame({f"a rather long column name {i}": [123456.789] * 3 for i in range(40)})
"""


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("seed = 0\n")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A throwaway chapter"),
        params,
        nbformat.v4.new_code_cell(
            "from kltools.book import show_parameters\nshow_parameters(globals())"
        ),
        nbformat.v4.new_code_cell(body),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rendered two-chapter book in a throwaway root; returns its ``_build/html``."""
    from kltools.book import cache

    monkeypatch.setenv("KLTOOLS_ROOT", str(tmp_path))
    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(tmp_path / "suite"))
    for var in ("KLTOOLS_BUILD_ROOT", "KLTOOLS_PARAMETER_NAMES", "KLTOOLS_FIGURES_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cache, "package_source_hash", lambda root=None: "pinned")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "book", tmp_path / "book")
    _notebook(tmp_path / "notebooks" / "01_method.ipynb", FIGURE_AND_RESULTS)
    _notebook(tmp_path / "notebooks" / "02_trajectories.ipynb", WIDE_TABLE)
    (tmp_path / "params").mkdir()
    doc = {"profile": "smoke", "common": {"profile": "smoke", "seed": 1}, "chapters": {}}
    (tmp_path / "params" / "smoke.yaml").write_text(yaml.safe_dump(doc))
    assert book.build("smoke", with_suite=False) == 0
    return tmp_path / "_build" / "html"


@pytest.mark.slow
def test_every_page_in_chromium(rendered: Path) -> None:
    root = rendered.parent.parent
    # the pages are clean, every internal link resolves (downloads included)
    assert hygiene.html_problems(rendered) == []
    assert book.check("smoke") == [  # the wide-table chapter draws no figure
        "02_trajectories (trajectories): the page shows no figure (no <img> in 02_trajectories.html)"
    ]
    chapter = (rendered / "build" / "executed" / "01_method.html").read_text()
    assert "This chapter on the scoreboard" in chapter and "Downloads" in chapter
    assert "line.png" in chapter and "line.pdf" in chapter and "method.results.json" in chapter
    report = (rendered / "build" / "scoreboard.html").read_text()
    assert (
        "A &lt; B" in report
        and "01_method.html" in report
        and "Not executed in this build" in report
    )
    assert (root / "build" / "logs" / "method.log").is_file()

    reports, problems = browser.check_pages(rendered)
    by_page = {r.page: r for r in reports}
    assert {"build/intro.html", "build/scoreboard.html", "build/executed/01_method.html"} <= set(
        by_page
    )
    method = by_page["build/executed/01_method.html"]
    assert method.images and not method.broken_images
    assert not method.small_text and not method.uncaptioned and not method.broken_headers
    assert "Figure 1.1</strong> — A line." in chapter and 'alt="A line rising' in chapter
    assert (root / "build" / "figures" / "method" / "line.json").is_file()
    assert all(r.height < browser.MAX_HEIGHT for r in reports)
    # the only problem: the 40-column table overflows its column
    assert problems and all("02_trajectories.html: table" in p for p in problems), problems
    assert by_page["build/executed/02_trajectories.html"].tables[0]["width"] > 1000

    shot = browser.screenshot(
        rendered / "build" / "executed" / "01_method.html", root / "shot.png", method.height
    )
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_a_broken_image_and_a_tall_page_fail(tmp_path: Path) -> None:
    site = tmp_path / "html"
    site.mkdir()
    (site / "index.html").write_text(
        '<html><body><img src="missing.png"><div style="height:20000px">tall</div></body></html>'
    )
    reports, problems = browser.check_pages(site)
    assert reports[0].broken_images == ["missing.png"]
    assert any("image did not load (missing.png)" in p for p in problems)
    assert any("px tall at 1280 px (limit 15000)" in p for p in problems)


def _png(path: Path, width: int) -> None:
    from PIL import Image

    Image.new("RGB", (width, width // 2), "white").save(path)


def test_small_figure_text_uncaptioned_figures_and_broken_headers_fail(tmp_path: Path) -> None:
    site = tmp_path / "html"
    site.mkdir()
    _png(site / "fig.png", 1000)
    css = (REPO / "book" / "_static" / "kltools.css").read_text()
    figure = (
        '<figure class="kltools-figure"><img src="fig.png" alt="{alt}" width="{w}" '
        'data-kltools-dpi="200" data-kltools-min-font-pt="9"><figcaption>{cap}</figcaption>'
        "</figure>"
    )
    page = f"""<html><head><style>{css}</style></head><body><div class="bd-article">
    <div class="cell_output">{figure.format(alt="A readable chart.", w=600, cap="Figure 1.1 — ok")}</div>
    <div class="cell_output">{figure.format(alt="A shrunken chart.", w=250, cap="Figure 1.2 — x")}</div>
    <div class="cell_output">{figure.format(alt="fig.png", w=600, cap="")}</div>
    <div class="cell_output"><img src="fig.png" alt="A chart with no caption." width="600"></div>
    <table><thead><tr>
      <th style="width:40px; max-width:40px">short words</th>
      <th style="width:40px; max-width:40px; word-break: break-all">unbreakableheaderword</th>
    </tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>
    </div></body></html>"""
    (site / "index.html").write_text(page)
    reports, problems = browser.check_pages(site)
    r = reports[0]
    # 9 pt at 200 dpi is 25 px in the PNG; shown at 250 of 1000 px it is 6.25 px on the page
    assert [f["alt"] for f in r.small_text] == ["A shrunken chart."]
    assert r.small_text[0]["px"] == pytest.approx(6.25, abs=0.06)
    assert [f["why"] for f in r.uncaptioned] == [
        "no caption, alt text is a file name",
        "no caption",
    ]
    assert r.broken_headers == ["unbreakableheaderword"]
    assert any(f"draws text at {r.small_text[0]['px']} px" in p for p in problems)
    assert any("header word 'unbreakableheaderword' is broken" in p for p in problems)


def test_a_captioned_legible_figure_and_whole_header_words_pass(tmp_path: Path) -> None:
    site = tmp_path / "html"
    site.mkdir()
    _png(site / "fig.png", 1000)
    css = (REPO / "book" / "_static" / "kltools.css").read_text()
    (site / "index.html").write_text(
        f"""<html><head><style>{css}</style></head><body><div class="bd-article">
        <div class="cell_output"><figure class="kltools-figure"><img src="fig.png"
        alt="A readable chart." width="550" data-kltools-dpi="200"
        data-kltools-min-font-pt="9"><figcaption>Figure 2.1 — what to look for</figcaption>
        </figure></div>
        <table class="kl-table"><thead><tr><th style="width:60px">ours 95% interval</th>
        <th style="width:60px">paper's number is</th></tr></thead>
        <tbody><tr><td>1</td><td>2</td></tr></tbody></table></div></body></html>"""
    )
    reports, problems = browser.check_pages(site)
    assert problems == [], problems
    assert reports[0].images == [{"w": 550, "nw": 1000}]
