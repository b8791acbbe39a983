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

Numbers in exercises and solutions are never typed: a Markdown cell quotes a computed number
with a placeholder that the build fills from the chapter's results file
(:mod:`kltools.results`), when it composes the executed chapter (:mod:`kltools.book.compose`)
and the teaching versions::

    {{ result:summaries[setting=8-bit,statistic=median].value }}
    {{ result:max(pairs[setting=Layer,layer_a=0].kl_bpb):.2f }}
    {{ result:summaries[setting=Early,statistic=median].value / summaries[setting=Later,statistic=median].value:.0f }}

``KIND[key=value,...].FIELD`` picks the one record of kind ``KIND`` (``pairs``,
``summaries``, ``claims``, ``deviations``) whose fields equal the given values (compared as
text) and quotes its ``FIELD``; ``min(…)``, ``max(…)``, ``median(…)``, ``mean(…)`` and
``count(…)`` of such a reference quote a statistic over every record it matches (one or
more; so a placeholder need not name a profile's models); ``A / B`` quotes a ratio of two
such numbers; ``:FORMAT`` is
a Python format spec (default ``.3g`` for numbers). A placeholder that matches no record, or
several, fails the build with one line. :func:`reference_problems` checks the other
direction: every backticked name an exercise or a solution mentions must appear in what its
executed chapter shows (code, outputs, prose), else the build fails too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError
from kltools.results import ChapterResults

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


_EXERCISE_HEAD = re.compile(r"^\*\*Exercise (\d+)\.\*\*")


def show_exercise_id(cell: Any) -> None:
    """Put the exercise's id in its heading (``**Exercise 2** (consecutive-2).``), so a
    handout of ``book/teach.md`` and the page name an exercise the same way."""
    ex = exercise_id(cell)
    if ex and f"({ex})" not in cell.get("source", ""):
        cell["source"] = _EXERCISE_HEAD.sub(
            lambda m: f"**Exercise {m[1]}** ({ex}).", cell["source"], count=1
        )


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
        show_exercise_id(cells[-1])
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
    for cell in out.cells:
        show_exercise_id(cell)
    return out


def executed_results(notebooks: Sequence[Path]) -> dict[str, ChapterResults]:
    """Notebook file name -> the results its executed chapter wrote (those that exist)."""
    from kltools.book.layout import chapter_name, executed_dir
    from kltools.results import read_results, results_path

    out = {}
    for path in notebooks:
        try:
            name = chapter_name(path.stem)
        except KLToolsError:
            continue
        found = results_path(name, executed_dir())
        if found.is_file():
            out[path.name] = read_results(found)
    return out


def generate(
    notebooks: Sequence[Path],
    out_dir: Path,
    *,
    strict: bool = True,
    results: Mapping[str, ChapterResults] | None = None,
) -> dict[str, ExerciseIndex]:
    """Write ``student/`` and ``teacher/`` versions of ``notebooks`` under ``out_dir``.

    ``results``: notebook file name -> the results of its executed chapter; their numbers
    fill the placeholders of that notebook (default: the results files in
    ``build/executed``). A chapter not executed keeps its placeholders, and the README says so.

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
    results = dict(executed_results(list(loaded)) if results is None else results)
    for version, make in (("student", student_version), ("teacher", teacher_version)):
        folder = out_dir / version
        folder.mkdir(parents=True, exist_ok=True)
        for path, nb in loaded.items():
            out = make(nb)
            if path.name in results:
                fill_notebook(out, results[path.name], path.name)
            nbformat.write(out, folder / path.name)
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
    unfilled = [p.name for p in loaded if p.name not in results]
    if unfilled:
        lines += [
            "",
            "Not executed yet, so their `{{ result:… }}` placeholders are not filled (run",
            "`kltools book build`, then this command again): " + ", ".join(unfilled) + ".",
        ]
    (out_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return indexes


#: a ``{{ result:… }}`` placeholder (see the module docstring)
PLACEHOLDER = re.compile(r"\{\{\s*result:(?P<expr>.+?)\s*\}\}")
_REF = re.compile(r"^\s*(?P<kind>\w+)\[(?P<where>[^\]]*)\]\.(?P<field>\w+)\s*$")


def _record(ref: str, results: ChapterResults) -> Mapping[str, Any]:
    return _select(ref, results, many=False)[0]


def _records(ref: str, results: ChapterResults) -> list[Mapping[str, Any]]:
    return _select(ref, results, many=True)


def _select(ref: str, results: ChapterResults, *, many: bool) -> list[Mapping[str, Any]]:
    m = _REF.match(ref)
    if m is None:
        raise KLToolsError(f"placeholder {ref.strip()!r} is not KIND[key=value,...].FIELD")
    kind, field_name = m["kind"], m["field"]
    records = getattr(results, kind, None)
    if not isinstance(records, list):
        raise KLToolsError(f"placeholder {ref.strip()!r}: no record kind {kind!r}")
    where = {}
    for item in filter(None, (x.strip() for x in m["where"].split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise KLToolsError(f"placeholder {ref.strip()!r}: {item!r} is not key=value")
        where[key.strip()] = value.strip()
    found = [r for r in records if all(str(r.get(k)) == v for k, v in where.items())]
    if many:
        if not found:
            raise KLToolsError(
                f"placeholder {ref.strip()!r} matches no {kind} record of chapter "
                f"{results.chapter!r} ({results.profile})"
            )
        if any(r.get(field_name) is None for r in found):
            raise KLToolsError(f"placeholder {ref.strip()!r}: a record has no {field_name!r}")
        return [{"value": r[field_name]} for r in found]
    if len(found) != 1:
        raise KLToolsError(
            f"placeholder {ref.strip()!r} matches {len(found)} {kind} records of chapter "
            f"{results.chapter!r} ({results.profile}), not one"
        )
    if found[0].get(field_name) is None:
        raise KLToolsError(f"placeholder {ref.strip()!r}: the record has no {field_name!r}")
    return [{"value": found[0][field_name]}]


_AGGREGATE = re.compile(r"^\s*(?P<fn>min|max|median|mean|count)\((?P<ref>.+)\)\s*$")


def _value(ref: str, results: ChapterResults) -> Any:
    """One record's field, or ``min|max|median|mean|count(...)`` over every matching record."""
    import statistics

    m = _AGGREGATE.match(ref)
    if m is None:
        return _record(ref, results)["value"]
    values = [float(r["value"]) for r in _records(m["ref"], results)]
    if m["fn"] == "count":
        return len(values)
    fn = {"min": min, "max": max, "median": statistics.median, "mean": statistics.fmean}
    return fn[m["fn"]](values)


def resolve_placeholder(expr: str, results: ChapterResults) -> str:
    """The text of one placeholder expression (``{{ result:EXPR }}``) in ``results``."""
    body, fmt = expr, ""
    tail = expr.rsplit("]", 1)
    if len(tail) == 2 and ":" in tail[1]:
        field_part, fmt = tail[1].split(":", 1)
        body = tail[0] + "]" + field_part
    parts = body.split(" / ")
    if len(parts) > 2:
        raise KLToolsError(f"placeholder {expr!r}: at most one ratio A / B")
    values = [_value(p, results) for p in parts]
    if len(values) == 2:
        try:
            value: Any = float(values[0]) / float(values[1])
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise KLToolsError(f"placeholder {expr!r}: no ratio ({exc})") from None
    else:
        value = values[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return format(value, fmt) if fmt else str(value)
    return format(value, fmt or ".3g")


def fill_placeholders(text: str, results: ChapterResults) -> str:
    """``text`` with every ``{{ result:… }}`` placeholder replaced by its number."""
    return PLACEHOLDER.sub(lambda m: resolve_placeholder(m["expr"], results), text)


def fill_notebook(nb: Any, results: ChapterResults, label: str) -> int:
    """Fill the placeholders of every Markdown cell of ``nb`` in place; returns how many.

    Raises :class:`KLToolsError` (one line, naming ``label``) on an unknown placeholder.
    """
    n = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        found = PLACEHOLDER.findall(source)
        if not found:
            continue
        try:
            cell["source"] = fill_placeholders(source, results)
        except KLToolsError as exc:
            raise KLToolsError(f"{label}: {exc}") from None
        n += len(found)
    return n


#: a backticked name in an exercise or a solution: identifiers, dotted names, file names,
#: ``name: value`` parameter settings (the name is checked)
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def referenced_names(text: str) -> list[str]:
    """The names an exercise or solution text refers to in backticks.

    ``name: value`` and ``name = value`` count as ``name``; text with spaces otherwise (a
    command line), numbers and placeholders are not names.
    """
    names = []
    for inner in _BACKTICKED.findall(PLACEHOLDER.sub("", text)):
        inner = inner.strip()
        for sep in (":", "="):
            head, found, _ = inner.partition(sep)
            if found and _NAME.match(head.strip()):
                inner = head.strip()
                break
        if _NAME.match(inner) and not inner.replace(".", "").isdigit():
            names.append(inner)
    return names


def _shown_text(nb: Any) -> str:
    """Everything a reader of the executed chapter sees outside its exercises and solutions:
    code, outputs (text, HTML, Markdown) and prose."""
    parts = []
    for cell in nb.cells:
        t = tags(cell)
        if EXERCISE_TAG in t or (SOLUTION_TAG in t and cell.get("cell_type") == "markdown"):
            continue
        parts.append(cell.get("source", ""))
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            for key in ("text/plain", "text/html", "text/markdown"):
                parts.append(str(out.get("data", {}).get(key, "")))
    return "\n".join(parts)


def is_kltools_api(name: str) -> bool:
    """Whether ``name`` is a ``kltools`` module or attribute (``kltools.kl_matrix``)."""
    import importlib

    if not name.startswith("kltools."):
        return False
    module, _, attr = name.rpartition(".")
    for mod, rest in ((name, ""), (module, attr)):
        try:
            obj = importlib.import_module(mod)
        except ImportError:
            continue
        return not rest or hasattr(obj, rest)
    return False


def reference_problems(nb: Any, label: str) -> list[str]:
    """Names that an exercise or a Markdown solution of an executed chapter mentions but the
    chapter never shows, and placeholders left unfilled; one line each."""
    shown = _shown_text(nb)
    problems = []
    for cell in nb.cells:
        t = tags(cell)
        if not (EXERCISE_TAG in t or SOLUTION_TAG in t) or cell.get("cell_type") != "markdown":
            continue
        who = exercise_id(cell) or solution_to(cell) or "?"
        source = cell.get("source", "")
        for m in PLACEHOLDER.finditer(source):
            problems.append(f"{label}: {who} has an unfilled placeholder {m[0]!r}")
        for name in referenced_names(source):
            if name not in shown and not is_kltools_api(name):
                problems.append(f"{label}: {who} refers to `{name}`, which the chapter never shows")
    return problems
