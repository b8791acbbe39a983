"""Notebooks only narrate: no loop, comprehension, branch or comparison in a code cell, one
Settings object built from the parameters, and every chapter writes its results."""

from __future__ import annotations

import ast

import nbformat
import pytest

from kltools import book

CHAPTERS = [
    "method",
    "trajectories",
    "consecutive",
    "seeds_sizes",
    "diffusion",
    "quantization",
    "floor",
    "finetuning",
    "layers",
    "scale",
]
FORBIDDEN = (
    ast.For,
    ast.While,
    ast.If,
    ast.IfExp,
    ast.Compare,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Lambda,
    ast.FunctionDef,
)


def _code_cells(name: str) -> list[str]:
    nb = nbformat.read(book.notebook_path(name), as_version=4)
    return [
        c.source
        for c in nb.cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    ]


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_computation_in_code_cells(name: str) -> None:
    for src in _code_cells(name):
        tree = ast.parse(src)
        bad = [type(n).__name__ for n in ast.walk(tree) if isinstance(n, FORBIDDEN)]
        assert not bad, f"{name}: {bad} in\n{src}"
        shown = [
            n
            for n in tree.body
            if isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "id", "") == "save_figure"
        ]
        assert not shown, f"{name}: save_figure's paths would be displayed; assign them to _"


@pytest.mark.parametrize("name", CHAPTERS)
def test_settings_object_and_one_results_call(name: str) -> None:
    src = "\n".join(_code_cells(name))
    assert "Settings.from_parameters(globals())" in src
    assert src.count("chapter_results.save(s, ") == 1
    assert f'chapter_results.save(s, "{name}"' in src
    assert "experiments" not in src and "profile ==" not in src


#: parameters a setting chapter declares that do not enter Fig. 3: Table 1's consecutive pairs
#: (chapter 4) and the BOS-policy comparison (chapter 7; Fig. 3's Floor is the numerics floor)
NOT_IN_FIG3 = {"consecutive_fractions", "compare_bos"}


@pytest.mark.parametrize(
    "name", ["consecutive", "seeds_sizes", "quantization", "floor", "finetuning", "layers"]
)
def test_scale_declares_every_input_of_the_settings_it_gathers(name: str) -> None:
    """Chapter 10 computes each setting with the parameters its own chapter receives: a key of
    the profile's common section that the scale chapter did not declare would silently fall
    back to its default there, and the two chapters would disagree."""
    import dataclasses

    from kltools.config import Settings

    fields = {f.name for f in dataclasses.fields(Settings)}
    scale = set(book.declared_parameters(book.notebook_path("scale")))
    own = set(book.declared_parameters(book.notebook_path(name))) & fields
    assert not (own - scale - NOT_IN_FIG3), f"scale lacks {sorted(own - scale - NOT_IN_FIG3)}"
