"""What a chapter notebook imports: the parameter table and figure saving.

Light on purpose (no papermill, no Jupyter Book): a reader who opens a notebook in Jupyter
imports only this.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kltools.book.layout import figures_dir
from kltools.errors import KLToolsError


def _is_plain(value: Any) -> bool:
    """Whether a value is a plain parameter value (numbers, strings, lists/dicts of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


#: resolution of saved PNG figures (print quality; the inline figures are shown at 2x)
FIGURE_DPI = 200


def parameters_table(params: Mapping[str, Any]):  # -> pandas.DataFrame
    """The table of every parameter a chapter ran with, plus profile and kltools version.

    ``params`` is the parameter mapping, or the notebook's ``globals()``. When the chapter is
    executed by ``kltools book`` the rows are every parameter its ``parameters`` cell declares
    (``$KLTOOLS_DECLARED_NAMES``): those the profile set (``$KLTOOLS_PARAMETER_NAMES``) are
    marked ``profile <name>``, the others ``notebook default``. Interactively, every plain
    public value is taken. Values are shown whole (lists are never truncated).
    """
    import pandas as pd

    from kltools import __version__

    env_names = os.environ.get("KLTOOLS_PARAMETER_NAMES")
    declared_env = os.environ.get("KLTOOLS_DECLARED_NAMES")
    profile = os.environ.get("KLTOOLS_PROFILE")
    if env_names is not None:
        injected = [n for n in env_names.split(",") if n]
        declared = [n for n in (declared_env or "").split(",") if n]
        names = list(dict.fromkeys([*declared, *injected]))
        missing = [n for n in names if n not in params]
        if missing:
            raise KLToolsError(
                f"show_parameters: parameter(s) {', '.join(missing)} not in the mapping given"
            )
        source = {n: (f"profile {profile}" if n in injected else "notebook default") for n in names}
    else:
        names = [
            k
            for k, v in params.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES and _is_plain(v)
        ]
        source = {n: "this session" for n in names}
    rows = {n: params[n] for n in names}
    if "profile" not in rows:
        rows["profile"] = profile or "unset (run outside kltools book)"
        source["profile"] = "kltools book" if profile else "—"
    rows["kltools version"] = __version__
    source["kltools version"] = "installed package"
    table = pd.DataFrame(
        {
            "value": [v if isinstance(v, str) else repr(v) for v in rows.values()],
            "set by": [source[n] for n in rows],
        },
        index=pd.Index(list(rows), name="parameter"),
    )
    return table


def parameters_html(table: Any) -> str:
    """The parameter table as HTML: no truncation, values escaped, the names as a column."""
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in ("parameter", *table.columns))
    body = []
    for name, row in table.iterrows():
        cells = [f"<td><code>{escape(str(name))}</code></td>"]
        cells.append(f"<td><code>{escape(str(row['value']))}</code></td>")
        cells.extend(f"<td>{escape(str(v))}</td>" for v in row.drop("value"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<table class="kltools-parameters">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def show_parameters(params: Mapping[str, Any]) -> None:
    """Display :func:`parameters_table` (call it in the cell right after the parameters cell)."""
    table = parameters_table(params)
    try:
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - IPython is always there in a kernel
        print(table.to_string())
        return
    display(HTML(parameters_html(table)))


def save_figure(fig: Any, name: str, formats: tuple[str, ...] = ("png", "pdf")) -> None:
    """Save a matplotlib figure as ``<figures_dir()>/<name>.<fmt>`` (PNG at :data:`FIGURE_DPI`
    dpi, and PDF); the inline figure stays. Shows nothing: the build links every saved figure
    from the chapter's *Downloads* section (see :mod:`kltools.book.compose`)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise KLToolsError(f"figure name {name!r}: use letters, digits, '_', '-', '.' only")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        fig.savefig(folder / f"{name}.{fmt}", bbox_inches="tight", dpi=FIGURE_DPI)


def saved_figures(chapter: str | None = None) -> list[Path]:
    """The figure files a chapter saved (its folder under ``build/figures``), sorted."""
    folder = figures_dir(chapter)
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
