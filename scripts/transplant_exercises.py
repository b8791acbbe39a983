"""Copy the exercise and solution cells of every chapter from one version of the notebooks
to another, leaving every other cell alone.

The exercise part of a chapter is its cells tagged ``exercises``, ``exercise`` and
``solution`` (see :mod:`kltools.book.teach`), at the end of the notebook. When two branches
edit a notebook, one its narrative and code, the other its exercises, take the first
branch's notebooks and run, for example::

    .venv/bin/python scripts/transplant_exercises.py --from-ref pages

which replaces, in each ``notebooks/NN_name.ipynb``, the exercise part (tagged cells, or an
untagged ``## Exercises`` cell and what follows it) with the exercise part of the same
notebook at git ref ``pages``. ``--from-dir DIR`` reads the notebooks from a folder instead.
``--check`` changes nothing and exits 1 if any notebook would change.

The chapter's "paper vs this book" cell (tagged ``paper-box``) travels too: the source's box
cell replaces the target's, or, when the target has none, goes right after the target's
``setup`` cell (else after the cell that builds the settings ``s``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import nbformat

from kltools.book.layout import CHAPTERS, notebooks_dir
from kltools.book.teach import EXERCISE_TAGS, SOLUTION_TAG

PART_TAGS = {*EXERCISE_TAGS, SOLUTION_TAG}
BOX_TAG = "paper-box"
SETS_S = "s = Settings.from_parameters(globals())"


def exercise_part_start(nb: nbformat.NotebookNode) -> int:
    """Index of the first cell of the exercise part (``len(cells)`` if there is none)."""
    for i, cell in enumerate(nb.cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & PART_TAGS:
            return i
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Exercises"):
            return i
    return len(nb.cells)


def exercise_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The cells tagged as part of the exercises, in order."""
    return [c for c in nb.cells if set(c.get("metadata", {}).get("tags", [])) & PART_TAGS]


def _tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def place_box(nb: nbformat.NotebookNode, source: nbformat.NotebookNode) -> None:
    """Put the source's ``paper-box`` cell into ``nb`` (see the module docstring)."""
    boxes = [c for c in source.cells if BOX_TAG in _tags(c)]
    if not boxes:
        return
    kept = [c for c in nb.cells if BOX_TAG not in _tags(c)]
    at = next((i for i, c in enumerate(kept) if "setup" in _tags(c)), None)
    if at is None:
        at = next(
            (i for i, c in enumerate(kept) if c.cell_type == "code" and SETS_S in c.source), None
        )
    if at is None:
        raise SystemExit("no setup cell (nor a cell building s) to put the paper box after")
    nb.cells = kept[: at + 1] + boxes + kept[at + 1 :]


def read_source(stem: str, ref: str | None, folder: Path | None) -> nbformat.NotebookNode:
    if folder is not None:
        return nbformat.read(folder / f"{stem}.ipynb", as_version=4)
    text = subprocess.run(
        ["git", "show", f"{ref}:notebooks/{stem}.ipynb"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return nbformat.reads(text, as_version=4)


def transplant(target: Path, source: nbformat.NotebookNode) -> bool:
    """Replace the exercise part of ``target`` with that of ``source``; True if it changed."""
    nb = nbformat.read(target, as_version=4)
    before = nbformat.writes(nb)
    cells = exercise_cells(source)
    if not cells:
        raise SystemExit(f"{target.name}: the source has no tagged exercise cells")
    start = exercise_part_start(nb)
    tail = [
        c for c in nb.cells[start:] if not set(c.get("metadata", {}).get("tags", [])) & PART_TAGS
    ]
    if tail and not tail[0].source.lstrip().startswith("## Exercises"):
        raise SystemExit(
            f"{target.name}: cells after the exercises are not exercises; move them first"
        )
    nb.cells = nb.cells[:start] + cells
    place_box(nb, source)
    after = nbformat.writes(nb)
    if after != before:
        nbformat.write(nb, target)
    return after != before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-ref", help="git ref holding the notebooks with the exercises")
    src.add_argument("--from-dir", type=Path, help="folder holding those notebooks")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for stem in CHAPTERS.values():
        target = notebooks_dir() / f"{stem}.ipynb"
        if not target.is_file():
            continue
        source = read_source(stem, args.from_ref, args.from_dir)
        if args.check:
            nb = nbformat.read(target, as_version=4)
            mine = [c.source for c in nb.cells if _tags(c) & {*PART_TAGS, BOX_TAG}]
            theirs = [c.source for c in source.cells if _tags(c) & {*PART_TAGS, BOX_TAG}]
            if mine != theirs:
                stale.append(target.name)
            continue
        if transplant(target, source):
            print(f"{target.name}: exercises and paper box replaced")
    if stale:
        print("exercises differ from the source: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
