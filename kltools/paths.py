"""Where things live: the project root, the model suite, the data stores, the book build.

All locations can be overridden with environment variables, so that a notebook executed in
``notebooks/`` and a CLI run from the repository root agree on the same folders.

=====================  ==========================  ===================================
what                   default                     override
=====================  ==========================  ===================================
project root           the checkout holding         ``KLTOOLS_ROOT``
                       ``pyproject.toml``, else CWD
model suite            ``<root>/suite``             ``KLTOOLS_SUITE_ROOT``
data stores (zarr)     ``<root>/data``              ``KLTOOLS_DATA_ROOT``
executed notebooks     ``<root>/build/executed``    ``KLTOOLS_BUILD_ROOT`` (parent)
=====================  ==========================  ===================================
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root: ``$KLTOOLS_ROOT``, else the checkout that holds this package."""
    env = os.environ.get("KLTOOLS_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file() and (here / "kltools").is_dir():
        return here
    return Path.cwd().resolve()


def suite_root(profile: str | None = None) -> Path:
    """Folder of the offline model suite; ``profile`` selects ``<suite>/<profile>``."""
    base = Path(os.environ.get("KLTOOLS_SUITE_ROOT") or project_root() / "suite")
    return base / profile if profile else base


def data_root(profile: str | None = None) -> Path:
    """Folder of the zarr stores the chapters read; ``profile`` selects a subfolder."""
    base = Path(os.environ.get("KLTOOLS_DATA_ROOT") or project_root() / "data")
    return base / profile if profile else base


def build_root() -> Path:
    """Folder of build products (executed notebooks, figures, the rendered toc).

    Not ``_build``: Jupyter Book 1.x never reads sources from ``_build`` (it renders the HTML
    into ``_build/html``), so executed chapters live in ``<root>/build``.
    """
    return Path(os.environ.get("KLTOOLS_BUILD_ROOT") or project_root() / "build")
