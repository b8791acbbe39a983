"""Where the book's files live: chapter names, notebooks, executed copies, figures, pages."""

from __future__ import annotations

import os
from pathlib import Path

from kltools.errors import KLToolsError
from kltools.paths import project_root
from kltools.sources import PROFILES as SOURCE_PROFILES

CHAPTERS: dict[str, str] = {
    "method": "01_method",
    "trajectories": "02_trajectories",
    "consecutive": "03_consecutive",
    "seeds_sizes": "04_seeds_sizes",
    "diffusion": "05_diffusion",
    "quantization": "06_quantization",
    "floor": "07_floor",
    "finetuning": "08_finetuning",
    "layers": "09_layers",
    "scale": "10_scale",
}

#: the profiles, each with a parameter file in ``params/`` (one per source, :mod:`kltools.sources`)
PROFILES: tuple[str, ...] = SOURCE_PROFILES


def notebooks_dir() -> Path:
    """Folder of the chapter notebooks: ``<root>/notebooks``."""
    return project_root() / "notebooks"


def executed_dir() -> Path:
    """Folder of executed notebooks: ``$KLTOOLS_BUILD_ROOT/executed``, else ``<root>/build/executed``."""
    env = os.environ.get("KLTOOLS_BUILD_ROOT")
    base = Path(env).resolve() if env else project_root() / "build"
    return base / "executed"


def figures_dir(chapter: str | None = None) -> Path:
    """Folder where a chapter saves figure files (``$KLTOOLS_FIGURES_DIR`` while it runs)."""
    env = os.environ.get("KLTOOLS_FIGURES_DIR")
    if env and chapter is None:
        return Path(env)
    name = chapter or os.environ.get("KLTOOLS_CHAPTER") or "interactive"
    return executed_dir().parent / "figures" / name


def html_dir() -> Path:
    """Folder of the rendered book: ``<root>/_build/html``."""
    return project_root() / "_build" / "html"


def params_path(profile: str) -> Path:
    """The parameter file of a profile: ``<root>/params/<profile>.yaml``."""
    return project_root() / "params" / f"{profile}.yaml"


def chapter_stem(name: str) -> str:
    """The notebook stem of chapter ``name`` (``"method"`` -> ``"01_method"``); validates it."""
    if name in CHAPTERS:
        return CHAPTERS[name]
    by_stem = {stem: n for n, stem in CHAPTERS.items()}
    if name in by_stem:  # accept "03_consecutive" too
        return name
    raise KLToolsError(f"unknown chapter {name!r}; known chapters: {', '.join(CHAPTERS)}")


def chapter_name(name_or_stem: str) -> str:
    """The chapter name for a name or a notebook stem (``"01_method"`` -> ``"method"``)."""
    stem = chapter_stem(name_or_stem)
    return next(n for n, s in CHAPTERS.items() if s == stem)


def notebook_path(name: str) -> Path:
    """The source notebook of chapter ``name``."""
    return notebooks_dir() / f"{chapter_stem(name)}.ipynb"


def executed_path(name: str) -> Path:
    """The executed notebook of chapter ``name``."""
    return executed_dir() / f"{chapter_stem(name)}.ipynb"


def key_path(name: str) -> Path:
    """The cache-key file stored beside the executed notebook of chapter ``name``."""
    return executed_dir() / f"{chapter_stem(name)}.key.json"


def partial_path(name: str) -> Path:
    """Where a failed execution of chapter ``name`` leaves its partially executed notebook."""
    return executed_dir() / f"{chapter_stem(name)}.partial.ipynb"


def log_path(name: str) -> Path:
    """The build log of chapter ``name``: what its kernel wrote to stderr, its warnings."""
    return executed_dir().parent / "logs" / f"{chapter_name(name)}.log"


def available_chapters() -> list[str]:
    """Names of the chapters whose notebook exists in ``notebooks/``, in book order."""
    return [name for name in CHAPTERS if notebook_path(name).is_file()]
