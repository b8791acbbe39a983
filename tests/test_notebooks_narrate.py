"""Notebooks only narrate: no loop, comprehension, branch or comparison in a code cell, one
Settings object built from the parameters, and every chapter writes its results."""

from __future__ import annotations

import ast

import nbformat
import pytest

from kltools import book
from kltools.config import SHARED_PARAMETERS

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
    assert f's = start_chapter(globals(), "{name}")' in src
    assert "filterwarnings" not in src, "warnings go to the build log, never silenced"
    assert src.count("chapter_results.save(s, ") == 1
    assert f'chapter_results.save(s, "{name}"' in src
    assert "experiments" not in src and "profile ==" not in src


#: what every chapter shares: declared once, in the common section of a profile's file
SHARED = set(SHARED_PARAMETERS)


def test_no_parameters_cell_declares_what_every_chapter_shares() -> None:
    """A parameter declared by every chapter belongs to the profile file, declared once."""
    declared = {name: set(book.declared_parameters(book.notebook_path(name))) for name in CHAPTERS}
    in_every = set.intersection(*declared.values())
    assert not in_every, f"declared by every chapter: {sorted(in_every)}"
    assert not any(SHARED & d for d in declared.values())


@pytest.mark.parametrize("profile", ["tiny", "smoke", "pythia"])
def test_every_chapter_computes_a_setting_with_the_profiles_common_values(profile: str) -> None:
    """Chapter 10 computes each setting with the parameters its own chapter receives: every
    chapter receives the whole common section, so the two can never disagree."""
    doc = book.load_profile(profile)
    common = {"profile": profile, **doc["common"]}
    for name in CHAPTERS:
        params = book.resolve_parameters(
            name, doc, book.declared_parameters(book.notebook_path(name))
        )
        assert {k: params[k] for k in common} == {
            k: (doc["chapters"].get(name) or {}).get(k, v) for k, v in common.items()
        }


def test_a_common_key_the_library_does_not_know_is_refused() -> None:
    from kltools.errors import KLToolsError

    doc = book.load_profile("smoke")
    doc = {**doc, "common": {**doc["common"], "n_txets": 10}}
    with pytest.raises(KLToolsError, match="unknown common parameter.*n_txets"):
        book.resolve_parameters("scale", doc, book.declared_parameters(book.notebook_path("scale")))
