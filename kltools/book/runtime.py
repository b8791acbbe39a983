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


def parameters_table(
    params: Mapping[str, Any], shared: Mapping[str, Any] | None = None
):  # -> pandas.DataFrame
    """The table of every parameter a chapter ran with, plus profile and kltools version.

    ``params`` is the parameter mapping, or the notebook's ``globals()``. When the chapter is
    executed by ``kltools book`` the rows are every parameter its ``parameters`` cell declares
    (``$KLTOOLS_DECLARED_NAMES``): those the profile set (``$KLTOOLS_PARAMETER_NAMES``) are
    marked ``profile <name>``, the others ``notebook default``. Interactively, every plain
    public value is taken. ``shared``: the parameters every chapter shares with the values the
    chapter runs with (:data:`kltools.config.SHARED_PARAMETERS`); those neither declared nor
    set by the profile are listed too, marked ``kltools default``. Values are shown whole
    (lists are never truncated).
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
    for n, v in (shared or {}).items():
        if n not in rows and n != "profile":
            rows[n], source[n] = v, "kltools default"
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


def show_parameters(params: Mapping[str, Any], shared: Mapping[str, Any] | None = None) -> None:
    """Display :func:`parameters_table` (:func:`kltools.book.start_chapter` calls it)."""
    table = parameters_table(params, shared)
    try:
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - IPython is always there in a kernel
        print(table.to_string())
        return
    display(HTML(parameters_html(table)))


#: width at which a saved figure is shown, relative to its PNG's pixels (the inline figures'
#: 110 dpi over the saved 200 dpi); the page's column caps it further (``kltools.css``)
SHOWN_SCALE = 110 / FIGURE_DPI

_figure_numbers: dict[str, dict[str, int]] = {}


def figure_label(name: str, chapter: str | None = None) -> str:
    """The figure's number as the page shows it: ``"Figure 3.2"`` (chapter 3 of the book's
    order, the chapter's second figure); ``"Figure 2"`` outside a chapter. A figure saved
    again (a rerun cell) keeps its number."""
    from kltools.book.layout import CHAPTERS

    chapter = chapter if chapter is not None else os.environ.get("KLTOOLS_CHAPTER", "")
    numbers = _figure_numbers.setdefault(chapter, {})
    number = numbers.setdefault(name, len(numbers) + 1)
    if chapter in CHAPTERS:
        return f"Figure {list(CHAPTERS).index(chapter) + 1}.{number}"
    return f"Figure {number}"


def smallest_font_pt(fig: Any) -> float:
    """The smallest font size (points) of any visible, non-empty text of a drawn figure."""
    from matplotlib.text import Text

    sizes = [
        float(t.get_fontsize())
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None
    ]
    return min(sizes) if sizes else 0.0


def _frames(data: Any) -> dict[str, Any]:
    """``data`` as named pandas DataFrames (a DataFrame, Series, xarray object, 2-D array, or
    a dict of them, None values skipped); the key ``""`` is the figure's own CSV."""
    import pandas as pd

    if data is None:
        return {}
    items = data.items() if isinstance(data, Mapping) else [("", data)]
    out = {}
    for key, obj in items:
        if obj is None:
            continue
        if not re.fullmatch(r"[A-Za-z0-9_-]*", str(key)):
            raise KLToolsError(f"figure data name {key!r}: use letters, digits, '_', '-' only")
        if type(obj).__module__.startswith("xarray"):
            import xarray as xr

            if isinstance(obj, xr.DataArray):
                obj = obj.to_dataframe(name=obj.name or "value")
            else:
                obj = obj.to_dataframe()
        if type(obj).__module__ == "numpy":
            obj = pd.DataFrame(obj)
        if isinstance(obj, pd.Series):
            obj = obj.to_frame()
        if not isinstance(obj, pd.DataFrame):
            raise KLToolsError(
                f"figure data {key or 'data'}: a DataFrame, not {type(obj).__name__}"
            )
        if not isinstance(obj.index, pd.RangeIndex):
            obj = obj.reset_index()
        out[str(key)] = obj
    return out


def figure_html(png: bytes, label: str, caption: str, alt: str, min_font_pt: float) -> str:
    """The figure as the page shows it: the PNG (inline, so the page needs no file), its alt
    text, and ``label — caption`` under it; the image carries its dpi and smallest font size
    for the browser check (:mod:`kltools.book.browser`)."""
    import base64
    import struct
    from html import escape

    width = struct.unpack(">I", png[16:20])[0]  # PNG header: IHDR width
    shown = round(width * SHOWN_SCALE)
    return (
        '<figure class="kltools-figure">'
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
        f'alt="{escape(alt)}" width="{shown}" '
        f'data-kltools-dpi="{FIGURE_DPI}" data-kltools-min-font-pt="{min_font_pt:g}">'
        f"<figcaption><strong>{escape(label)}</strong> — {escape(caption)}</figcaption>"
        "</figure>"
    )


def save_figure(
    fig: Any,
    name: str,
    *,
    caption: str,
    alt: str,
    data: Any = None,
    formats: tuple[str, ...] = ("png", "pdf"),
) -> None:
    """Save a figure and show it on the page, numbered and captioned, with the data behind it.

    Writes ``<figures_dir()>/<name>.<fmt>`` (PNG at :data:`FIGURE_DPI` dpi, and PDF), the data
    as CSV beside it (``<name>.csv`` for a DataFrame; ``<name>.<key>.csv`` for each of a dict
    of them; xarray objects are flattened) and a sidecar ``<name>.json`` (label, caption, alt
    text, dpi, pixel size, smallest font size in points). Then shows the figure as an HTML
    ``<figure>``: the image with ``alt`` as its alt text (what the figure shows, for a reader
    who cannot see it; never a path) and ``"Figure <chapter>.<n> — <caption>"`` under it
    (:func:`figure_label`), and closes the matplotlib figure so it is not shown twice.
    ``caption`` says what the figure shows and what to look for. Returns nothing.
    """
    import json
    import struct

    import matplotlib.pyplot as plt

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise KLToolsError(f"figure name {name!r}: use letters, digits, '_', '-', '.' only")
    caption, alt = (caption or "").strip(), (alt or "").strip()
    if not caption:
        raise KLToolsError(f"figure {name}: give it a caption (what it shows, what to look for)")
    if not alt or re.search(r"\.(png|pdf|svg)\b|[\\/]", alt) or alt == name:
        raise KLToolsError(f"figure {name}: alt text must describe the figure, not name a file")
    frames = _frames(data)
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in dict.fromkeys(("png", *formats)):
        fig.savefig(folder / f"{name}.{fmt}", bbox_inches="tight", dpi=FIGURE_DPI)
    png = (folder / f"{name}.png").read_bytes()
    smallest = smallest_font_pt(fig)
    label = figure_label(name)
    for key, frame in frames.items():
        frame.to_csv(folder / (f"{name}.{key}.csv" if key else f"{name}.csv"), index=False)
    width, height = struct.unpack(">II", png[16:24])
    sidecar = {
        "label": label,
        "caption": caption,
        "alt": alt,
        "dpi": FIGURE_DPI,
        "width_px": width,
        "height_px": height,
        "min_font_pt": smallest,
        "data": sorted(f"{name}.{k}.csv" if k else f"{name}.csv" for k in frames),
    }
    (folder / f"{name}.json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
    plt.close(fig)
    html = figure_html(png, label, caption, alt, smallest)
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is always there in a kernel
        return
    display({"text/html": html, "text/plain": f"{label} — {caption}"}, raw=True)


def saved_figures(chapter: str | None = None) -> list[Path]:
    """The figure files a chapter saved (its folder under ``build/figures``), sorted."""
    folder = figures_dir(chapter)
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
