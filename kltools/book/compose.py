"""What the build adds to an executed chapter before it is rendered.

After papermill ran a chapter, :func:`finish_executed` edits the executed copy (never the
source notebook):

- the question comes first: the chapter's first Markdown cell (title, objectives), then its
  "paper vs this book" box (the cell tagged ``paper-box``, :mod:`kltools.book.boxes`), then
  the ``parameters`` cell (code hidden) and the ``setup`` cell, folded, so the parameter table
  and the deviations table it shows are one click away; papermill's injected cell is removed;
- ``{{ result:… }}`` placeholders in Markdown cells are filled from the chapter's results
  (:func:`kltools.book.teach.fill_notebook`), and every exercise and solution is checked
  against what the page shows (:func:`kltools.book.teach.reference_problems`): a placeholder
  that matches nothing, or a name the page never shows, fails the build with one line;
- solution cells (tag ``solution``, see :mod:`kltools.book.teach`) are folded: a Markdown
  solution becomes a collapsed "Solution" box, a code solution is hidden behind a toggle;
- the output of a cell that shows a long table (more than :data:`LONG_TABLE_ROWS` rows) and
  no figure is folded behind a toggle;
- every ``stderr`` output moves to the chapter's build log (:mod:`kltools.book.clean`);
- two sections are added before the exercises: the chapter's rows of the claims scoreboard
  (from its results file) and its downloads (each figure as PNG and PDF with the data behind
  it as CSV, its results as JSON and CSV, and the book's archive of every result). Links use MyST's ``{download}`` role, so Jupyter Book copies the files into the
  site and warns if one is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kltools.book import clean
from kltools.book.scoreboard import chapter_claims_markdown, to_csv, write_chapter_csv
from kltools.book.teach import (
    EXERCISE_TAG,
    EXERCISE_TAGS,
    SOLUTION_TAG,
    fill_notebook,
    reference_problems,
    show_exercise_id,
)
from kltools.errors import KLToolsError
from kltools.results import read_results, results_path

#: tag of the cells the build adds (so a rerun never adds them twice)
GENERATED_TAG = "kltools-generated"

#: figure formats linked as downloads, in the order shown (``csv``: the data behind it)
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf", "svg", "csv")

#: the tag of the "paper vs this book" cell (placed right after the chapter's question)
PAPER_BOX_TAG = "paper-box"

#: the tag of the cell that imports, builds the settings and shows the parameter and
#: deviations tables (folded below the question)
SETUP_TAG = "setup"

#: the name of the book's archive of every result (:mod:`kltools.book.archive`)
ARCHIVE_NAME = "kltools-results.zip"

#: a displayed table with more body rows than this is folded behind a toggle
LONG_TABLE_ROWS = 15


def table_rows(html: str) -> int:
    """Body rows of a pandas table in an HTML output (0 if it holds none)."""
    if 'class="dataframe' not in html:
        return 0
    body = html.split("<tbody>", 1)[-1] if "<tbody>" in html else html
    return body.count("<tr")


def fold_long_tables(cell: Any) -> bool:
    """Fold the output of a code cell that shows a long table and no figure; True if folded.

    The page keeps a "Show code cell output" toggle; the whole listing is in the chapter's
    downloadable results.
    """
    outputs = cell.get("outputs", [])
    if any("image/png" in o.get("data", {}) for o in outputs):
        return False
    longest = max(
        (table_rows(str(o.get("data", {}).get("text/html", ""))) for o in outputs), default=0
    )
    if longest <= LONG_TABLE_ROWS:
        return False
    tags = _tags(cell)
    if "hide-output" not in tags:
        tags.append("hide-output")
    return True


def _tags(cell: Any) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _md_cell(source: str) -> Any:
    import nbformat

    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata["tags"] = [GENERATED_TAG]
    return cell


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def downloads_markdown(chapter: str, executed: Path, figures: Path) -> str:
    """The Markdown of a chapter's downloads section ('' when it saved and wrote nothing)."""
    lines: list[str] = []
    stems = sorted({p.stem for p in figures.glob("*") if p.suffix[1:] in FIGURE_FORMATS})
    for stem in stems:
        links = [
            f"{{download}}`{_FORMAT_TEXT.get(fmt, fmt.upper())} "
            f"<{_rel(figures / f'{stem}.{fmt}', executed)}>`"
            for fmt in FIGURE_FORMATS
            if (figures / f"{stem}.{fmt}").is_file()
        ]
        lines.append(f"- figure `{stem}`: " + " · ".join(links))
    data = results_path(chapter, executed)
    if data.is_file():
        links = [f"{{download}}`JSON <{data.name}>`"]
        for kind in ("pairs", "summaries", "claims"):
            csv_file = data.with_name(f"{chapter}.{kind}.csv")
            if csv_file.is_file():
                links.append(f"{{download}}`CSV of the {kind} <{csv_file.name}>`")
        lines.append("- results (every pair, statistic and verdict): " + " · ".join(links))
    archive = executed.parent / "downloads" / ARCHIVE_NAME
    if archive.is_file():
        lines.append(
            f"- every chapter's results, the data of every figure and the scale's texts, in "
            f"one archive: {{download}}`{ARCHIVE_NAME} <{_rel(archive, executed)}>`"
        )
    if not lines:
        return ""
    return "\n".join(
        [
            "## Downloads",
            "",
            "The figures of this chapter (PNG at 200 dpi, PDF for print, and the data drawn in",
            "each as CSV) and its results as data (`kltools book results` prints the results of",
            "every chapter):",
            "",
            *lines,
        ]
    )


_FORMAT_TEXT = {"csv": "data (CSV)"}


def question_first(nb: Any) -> None:
    """Reorder the top of a chapter: question, paper box, then parameters and setup, folded.

    The first Markdown cell (title, objectives) stays first; the cell tagged ``paper-box``
    follows it (its code removed: the reader sees the box); the ``parameters`` cell (its code hidden) and the ``setup`` cell (folded
    entirely: a toggle shows its code and the parameter and deviations tables) come next;
    the rest keeps its order. Cells are only moved, never edited, so the source notebook
    still runs top to bottom.
    """
    cells = list(nb.cells)
    first = next((i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"), None)
    if first is None:
        return
    boxes = [c for c in cells if PAPER_BOX_TAG in _tags(c)]
    for cell in boxes:  # the reader sees the box, not the call that writes it
        if "remove-input" not in _tags(cell):
            _tags(cell).append("remove-input")
    rest = [c for c in cells if c is not cells[first] and PAPER_BOX_TAG not in _tags(c)]
    for cell in rest:
        if SETUP_TAG in _tags(cell):
            if "hide-cell" not in _tags(cell):
                _tags(cell).append("hide-cell")
            cell["metadata"]["mystnb"] = {
                "code_prompt_show": "The parameters of this run and how it differs from the paper",
                "code_prompt_hide": "Hide the parameters",
            }
    nb.cells = [cells[first], *boxes, *rest]


def check_teaching(nb: Any, chapter: str) -> None:
    """Check every exercise and solution of ``nb`` against what the page shows; raise
    :class:`KLToolsError` (one line) on a problem."""
    problems = reference_problems(nb, chapter)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise KLToolsError(problems[0] + more)


def _fold_solution(cell: Any) -> None:
    """Fold a solution cell in the rendered page (the teacher's copy keeps it as it is)."""
    tags = _tags(cell)
    if cell.get("cell_type") == "code":
        if "hide-cell" not in tags:
            tags.append("hide-cell")
        cell["metadata"]["mystnb"] = {
            "code_prompt_show": "Solution: show the code and its output",
            "code_prompt_hide": "Hide the solution",
        }
        return
    source = cell.get("source", "")
    if not source.lstrip().startswith(":::{admonition}"):
        cell["source"] = f":::{{admonition}} Solution\n:class: dropdown\n\n{source}\n:::"


def _insert_at(nb: Any) -> int:
    """Where the generated sections go: before the exercises, else at the end."""
    for i, cell in enumerate(nb.cells):
        if set(_tags(cell)) & set(EXERCISE_TAGS):
            return i
        if cell.get("cell_type") == "markdown" and cell.get("source", "").startswith(
            "## Exercises"
        ):
            return i
    return len(nb.cells)


def finish_executed(nb_file: Path, chapter: str, log_path: Path, figures: Path) -> int:
    """Edit an executed chapter for its page (see the module docstring); returns the number
    of stderr outputs moved to the build log."""
    import nbformat

    nb = nbformat.read(nb_file, as_version=4)
    nb.cells = [c for c in nb.cells if GENERATED_TAG not in _tags(c)]
    for cell in nb.cells:
        tags = _tags(cell)
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        elif "parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
        elif SOLUTION_TAG in tags:
            _fold_solution(cell)
        elif EXERCISE_TAG in tags:
            show_exercise_id(cell)
        elif cell.get("cell_type") == "code":
            fold_long_tables(cell)
    moved = clean.move_stderr_to_log(nb, log_path, chapter)
    question_first(nb)
    executed = nb_file.parent
    data = results_path(chapter, executed)
    results = read_results(data) if data.is_file() else None
    if results is not None:
        fill_notebook(nb, results, chapter)
    sections = []
    if results is not None:
        write_chapter_csv(chapter, executed)
        if results.summaries:
            data.with_name(f"{chapter}.summaries.csv").write_text(
                to_csv(results.summaries), encoding="utf-8"
            )
        claims = chapter_claims_markdown(results)
        if claims:
            sections.append(_md_cell(claims))
    downloads = downloads_markdown(chapter, executed, figures)
    if downloads:
        sections.append(_md_cell(downloads))
    at = _insert_at(nb)
    nb.cells[at:at] = sections
    check_teaching(nb, chapter)
    nbformat.write(nb, nb_file)
    return moved
