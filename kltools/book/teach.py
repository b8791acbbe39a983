"""Teaching material: a student and a teacher version of every chapter, from the chapters.

The cell-tag convention (in ``notebooks/*.ipynb``; fastbook's ``clean/`` folder is the model):

``exercises``
    The Markdown cell that opens a chapter's exercises (``## Exercises`` and a sentence).
``exercise``
    One exercise, a Markdown cell. Its id is ``metadata.kltools.exercise`` (``"<chapter>-<n>"``,
    e.g. ``"floor-2"``), unique in the book.
``solution``
    A worked solution, right after its exercise: Markdown (a reasoned answer) or code that
    uses ``kltools`` calls and runs on the ``smoke`` profile (it is executed with the chapter
    in every build). ``metadata.kltools.solution_to`` names the exercise. An exercise may have
    several solution cells (e.g. code, then its reading).

``kltools book teach --out build/teach`` (``make teach``) writes

- ``student/NN_name.ipynb``: the chapter with outputs cleared, every solution cell removed and,
  after each exercise, an empty cell tagged ``answer`` for the student's work;
- ``teacher/NN_name.ipynb``: the chapter with outputs cleared and every solution kept;
- ``README.md``: which exercises each version holds.

In the rendered book the solutions are folded (a collapsed box per solution).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError

EXERCISES_TAG = "exercises"
EXERCISE_TAG = "exercise"
SOLUTION_TAG = "solution"
ANSWER_TAG = "answer"

#: tags that mark the exercise part of a chapter
EXERCISE_TAGS: tuple[str, ...] = (EXERCISES_TAG, EXERCISE_TAG)

VERSIONS: tuple[str, ...] = ("student", "teacher")


def tags(cell: Any) -> list[str]:
    """The tags of a notebook cell."""
    return list(cell.get("metadata", {}).get("tags", []))


def exercise_id(cell: Any) -> str | None:
    """The id of an exercise cell, or None."""
    if EXERCISE_TAG not in tags(cell):
        return None
    return cell.get("metadata", {}).get("kltools", {}).get("exercise")


def solution_to(cell: Any) -> str | None:
    """The exercise a solution cell answers, or None."""
    if SOLUTION_TAG not in tags(cell):
        return None
    return cell.get("metadata", {}).get("kltools", {}).get("solution_to")


@dataclass
class ExerciseIndex:
    """The exercises of one notebook and the solution cells of each."""

    notebook: str
    exercises: list[str] = field(default_factory=list)
    solutions: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def index_exercises(nb: Any, label: str) -> ExerciseIndex:
    """Check the convention in one notebook and count each exercise's solution cells."""
    out = ExerciseIndex(label)
    current: str | None = None
    for i, cell in enumerate(nb.cells):
        t = tags(cell)
        if EXERCISE_TAG in t:
            ex = exercise_id(cell)
            if not ex:
                out.problems.append(f"{label}: cell {i} tagged exercise has no kltools.exercise id")
                continue
            if ex in out.exercises:
                out.problems.append(f"{label}: exercise {ex} appears twice")
            if cell.get("cell_type") != "markdown":
                out.problems.append(f"{label}: exercise {ex} is not a Markdown cell")
            out.exercises.append(ex)
            out.solutions.setdefault(ex, 0)
            current = ex
        elif SOLUTION_TAG in t:
            target = solution_to(cell)
            if target is None:
                out.problems.append(f"{label}: cell {i} tagged solution has no kltools.solution_to")
            elif target != current:
                out.problems.append(
                    f"{label}: solution to {target} at cell {i} does not follow its exercise"
                )
            else:
                out.solutions[target] += 1
    for ex in out.exercises:
        if not out.solutions.get(ex):
            out.problems.append(f"{label}: exercise {ex} has no solution")
    return out


def _clear(cell: Any) -> Any:
    cell = copy.deepcopy(cell)
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    return cell


def student_version(nb: Any) -> Any:
    """The notebook without solutions and outputs, an empty answer cell after each exercise."""
    import nbformat

    out = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        if SOLUTION_TAG in tags(cell):
            continue
        cells.append(_clear(cell))
        if EXERCISE_TAG in tags(cell):
            answer = nbformat.v4.new_code_cell("# Your answer (code or a comment)\n")
            answer.metadata["tags"] = [ANSWER_TAG]
            answer.metadata["kltools"] = {"answer_to": exercise_id(cell)}
            cells.append(answer)
    out.cells = cells
    return out


def teacher_version(nb: Any) -> Any:
    """The notebook with every solution kept, outputs cleared."""
    out = copy.deepcopy(nb)
    out.cells = [_clear(c) for c in nb.cells]
    return out


def generate(
    notebooks: Sequence[Path], out_dir: Path, *, strict: bool = True
) -> dict[str, ExerciseIndex]:
    """Write ``student/`` and ``teacher/`` versions of ``notebooks`` under ``out_dir``.

    With ``strict`` (the default), any breach of the convention (an exercise without a
    solution, a solution away from its exercise, a missing id) stops before writing.
    """
    import nbformat

    indexes: dict[str, ExerciseIndex] = {}
    loaded = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        loaded[path] = nb
        indexes[path.name] = index_exercises(nb, path.name)
    problems = [p for ix in indexes.values() for p in ix.problems]
    seen: dict[str, str] = {}
    for name, ix in indexes.items():
        for ex in ix.exercises:
            if ex in seen:
                problems.append(f"{name}: exercise id {ex} is also used in {seen[ex]}")
            seen[ex] = name
    if strict and problems:
        raise KLToolsError(f"{len(problems)} problem(s) with the exercises: " + "; ".join(problems))
    for version, make in (("student", student_version), ("teacher", teacher_version)):
        folder = out_dir / version
        folder.mkdir(parents=True, exist_ok=True)
        for path, nb in loaded.items():
            nbformat.write(make(nb), folder / path.name)
    lines = [
        "# Teaching versions of the chapters",
        "",
        "Generated by `kltools book teach` from `notebooks/`; do not edit, regenerate.",
        "",
        "- `student/`: solutions removed, an empty `answer` cell after each exercise.",
        "- `teacher/`: every worked solution (Markdown answers, and code that runs on the",
        "  `smoke` and `tiny` profiles).",
        "",
        "| notebook | exercises | solution cells |",
        "|---|---|---|",
    ]
    for name, ix in indexes.items():
        lines.append(f"| {name} | {len(ix.exercises)} | {sum(ix.solutions.values())} |")
    (out_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return indexes
