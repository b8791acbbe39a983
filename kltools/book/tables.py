"""Tables as a page shows them: short, rounded, no index, no NaN, headers never read as HTML.

:func:`page_table` turns a DataFrame into the HTML a chapter displays:

- numbers to three significant digits (the bootstrap intervals of the book are rarely
  tighter than that), integers with thousands separators, ``—`` for a missing value (NaN);
- no index column; headers and cells escaped (``c_l<c_W`` stays text); the library's column
  names shown with their units (:data:`HEADERS`);
- a table longer than ``max_rows`` is folded behind a toggle (its rows are also in the
  chapter's downloadable results).
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

__all__ = ["PageTable", "fmt_cell", "header_text", "page_table", "table_html"]

#: tables longer than this are folded behind a toggle
MAX_ROWS = 12

#: column names of the library's frames as a reader wants them (units in the header)
HEADERS: dict[str, str] = {
    "kl": "KL [bits/byte]",
    "lo": "95 % lo",
    "hi": "95 % hi",
    "median": "median [bits/byte]",
    "median_lo": "median 95 % lo",
    "median_hi": "median 95 % hi",
    "mean": "mean [bits/byte]",
    "mean_lo": "mean 95 % lo",
    "mean_hi": "mean 95 % hi",
    "n_pairs": "pairs",
    "n_texts": "texts",
    "n_starts": "start steps",
    "mean_bytes": "B̄ [bytes/text]",
    "c_l": "c_ℓ",
    "r2_l": "R² (c_ℓ fit)",
    "r2_W": "R² (c_W fit)",
    "kl_first_last": "KL first→last [bits/byte]",
    "layer_a": "layer k",
    "layer_b": "layer k+1",
}


def fmt_cell(value: Any, digits: int = 3) -> str:
    """One cell as text: ``digits`` significant digits, ``—`` if missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        import numpy as np

        if isinstance(value, np.generic):
            value = value.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e6:
            return f"{int(value):,}"
        if 1e-3 <= abs(value) < 1e5:
            decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
            return f"{value:,.{decimals}f}"
        mant, exp = f"{value:.{digits - 1}e}".split("e")
        return f"{mant}×10<sup>{int(exp)}</sup>"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_cell(v, digits) for v in value)
    return breakable(str(value))


def breakable(text: str) -> str:
    """``text`` escaped for HTML, with line-break opportunities (``<wbr>``) after ``/ @ _ - .``
    in a long identifier (a hub id with its revision, a lineage model), so that a table of the
    pythia profile fits the page's column; short text and prose are left as they are."""
    escaped = escape(text)
    if len(text) <= 16 or " " in text:
        return escaped
    return re.sub(r"([/@_.-])", r"\1<wbr>", escaped)


def table_html(frame: Any, digits: int = 3) -> str:
    """The HTML of ``frame`` (a DataFrame) without its index, every cell formatted."""
    head = "".join(
        f"<th>{escape(header_text(HEADERS.get(str(c), str(c))))}</th>" for c in frame.columns
    )
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for v in rec:
            text = fmt_cell(v, digits)
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            style = ' style="text-align:right"' if numeric else ""
            cells.append(f"<td{style}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<table class="dataframe kl-table"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def header_text(text: str) -> str:
    """A table header as a page shows it: hyphens made non-breaking (U+2011), so a header
    wraps between words only, never inside ``held-out`` (the browser check tests it)."""
    return str(text).replace("-", "\u2011")


#: what a "—" means, said under a table that has one
MISSING = (
    "— : no value: not defined for that row (e.g. the spread of a single pair), or not "
    "measured on this profile (the paper prints no such number, or the model has no such layer)."
)


def page_table(
    frame: Any,
    *,
    digits: int = 3,
    max_rows: int = MAX_ROWS,
    summary: str | None = None,
    missing: str = MISSING,
) -> Any:
    """A DataFrame as the page shows it (a :class:`PageTable`; see the module docstring).

    ``summary``: the toggle's label of a folded table (default: "All N rows"). ``missing``:
    the note under a table with a missing value ("—"), saying why.
    """
    html = table_html(frame, digits)
    if "<td>—</td>" in html or ">—</td>" in html:
        html += f'\n<p class="kl-table-note"><small>{escape(missing)}</small></p>'

    if len(frame) > max_rows:
        label = escape(summary or f"All {len(frame)} rows (also in the chapter's results file)")
        html = f"<details><summary>{label}</summary>\n{html}\n</details>"
    return PageTable(html, frame.to_string(index=False, na_rep="—"))


class PageTable:
    """A table for a page: HTML for the book, the plain table as its text (no object repr)."""

    def __init__(self, html: str, text: str) -> None:
        self.data = html
        self.text = text

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return self.text
