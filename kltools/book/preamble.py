"""The first call of every chapter: settings, style, and the tables a reader checks first.

A chapter's ``setup`` cell (the cell right after its ``parameters`` cell) imports what it
uses and calls::

    s = start_chapter(globals(), "consecutive")

which builds the chapter's :class:`~kltools.config.Settings` from its parameters (those of
its ``parameters`` cell and those the profile's parameter file injects: the parameters every
chapter shares are declared once, in ``params/<profile>.yaml``, and default to
:class:`~kltools.config.Settings`'s values in an interactive session), sets the book's
figure style, and shows the parameter table and the table of deviations from the paper. No
warning is silenced here: what a kernel writes to stderr goes to the build log
(:mod:`kltools.book.clean`), never to a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kltools.config import Settings

__all__ = ["start_chapter"]


def start_chapter(params: Mapping[str, Any], chapter: str) -> Settings:
    """Settings of ``chapter`` from ``params`` (the notebook's ``globals()``), with its tables.

    Displays the parameters the chapter runs with (:func:`kltools.book.show_parameters`)
    and how this profile differs from the paper in this chapter
    (:func:`kltools.deviations.chapter_table`). Returns the settings every later call takes.
    """
    import pandas as pd
    from IPython.display import display

    from kltools import deviations
    from kltools.book.runtime import show_parameters
    from kltools.book.tables import page_table
    from kltools.config import SHARED_PARAMETERS
    from kltools.plots import set_style

    s = Settings.from_parameters(params)
    set_style()
    pd.set_option("display.precision", 4)
    show_parameters(params, {k: getattr(s, k) for k in SHARED_PARAMETERS})
    display(page_table(deviations.chapter_table(s, chapter)))
    return s
