"""What a reader must never meet on a page: stderr boxes, object reprs, machine paths, dead links.

:func:`notebook_problems` reads an executed notebook, :func:`html_problems` the rendered site;
``kltools book check`` runs both, and the tests run them on the executed smoke chapters.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kltools.paths import build_root, data_root, project_root, suite_root

#: the project's private reading notes on the paper, kept beside the repository, not in it:
#: a page must cite the paper instead (the name is assembled so that this module does not
#: itself name the file)
_NOTES_FILE = "-".join(("paper", "notes"))

#: text that must not appear in a page (a repr of a path object; a file outside the repository)
FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("PosixPath(", "shows a PosixPath repr"),
    ("WindowsPath(", "shows a WindowsPath repr"),
    (_NOTES_FILE, f"names a file that is not in the repository ({_NOTES_FILE})"),
)

_TRACEBACK = "Traceback (most recent call last)"


def machine_paths() -> list[str]:
    """Absolute folders of the build machine that must not be printed on a page."""
    found = {
        str(project_root()),
        str(suite_root()),
        str(data_root()),
        str(build_root()),
        str(Path(tempfile.gettempdir()).resolve()) + "/",
        str(Path.home()) + "/",
    }
    return sorted((p for p in found if len(p) > 2), key=len, reverse=True)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return "" if value is None else str(value)


def _output_text(output: Any) -> str:
    if output.get("output_type") == "stream":
        return _text(output.get("text"))
    data = output.get("data", {})
    return "\n".join(
        _text(data[k]) for k in ("text/plain", "text/html", "text/markdown") if k in data
    )


def notebook_problems(nb: Any, label: str, paths: Sequence[str] | None = None) -> list[str]:
    """Errors and unclean outputs of an executed notebook, one line each."""
    paths = machine_paths() if paths is None else paths
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        texts = [_text(cell.get("source"))]
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                problems.append(
                    f"{label}: cell {i} raised {output.get('ename')}: {output.get('evalue')}"
                )
                continue
            text = _output_text(output)
            if kind == "stream" and output.get("name") == "stderr":
                first = (text.strip().splitlines() or [""])[0][:80]
                problems.append(f"{label}: cell {i} has a stderr output ({first!r})")
            if _TRACEBACK in text:
                problems.append(f"{label}: cell {i} shows a traceback")
            texts.append(text)
        joined = "\n".join(texts)
        for needle, what in FORBIDDEN:
            if needle in joined:
                problems.append(f"{label}: cell {i} {what}")
        for path in paths:
            if path in "\n".join(texts[1:]):
                problems.append(f"{label}: cell {i} prints a path of the build machine ({path})")
                break
    return problems


def stderr_count(nb: Any) -> int:
    """Number of ``stderr`` stream outputs in a notebook."""
    return sum(
        1
        for cell in nb.get("cells", [])
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    )


_LINK = re.compile(
    r"""<(?:a|img|link|script|source)\b[^>]*?\s(?:href|src)\s*=\s*["']([^"']*)["']"""
)
_SKIP = ("http:", "https:", "mailto:", "data:", "javascript:", "tel:", "ftp:")


def internal_links(html: str) -> list[str]:
    """The link targets of a page that point inside the site (no scheme, not a fragment)."""
    out = []
    for target in _LINK.findall(html):
        t = target.strip()
        if not t or t.startswith("#") or t.startswith("//") or t.lower().startswith(_SKIP):
            continue
        out.append(t)
    return out


def html_problems(
    html_root: Path, pages: Iterable[Path] | None = None, paths: Sequence[str] | None = None
) -> list[str]:
    """Dangling internal links, path reprs and machine paths in the rendered pages."""
    paths = machine_paths() if paths is None else paths
    problems = []
    chosen = sorted(pages) if pages is not None else sorted(html_root.rglob("*.html"))
    for page in chosen:
        rel = page.relative_to(html_root).as_posix()
        if rel.startswith(("_static/", "_sources/", "_downloads/")):
            continue
        html = page.read_text(encoding="utf-8", errors="replace")
        for needle, what in FORBIDDEN:
            if needle in html:
                problems.append(f"{rel}: {what}")
        for path in paths:
            if path in html:
                problems.append(f"{rel}: prints a path of the build machine ({path})")
                break
        dead = []
        for target in internal_links(html):
            part = unquote(urlsplit(target).path)
            if not part:
                continue
            dest = (page.parent / part).resolve()
            if not dest.exists():
                dead.append(target)
        for target in sorted(set(dead)):
            problems.append(f"{rel}: dangling link {target}")
    return problems


#: the lowest resolution accepted for a saved PNG figure
MIN_DPI = 150


def figure_problems(figures_root: Path, min_dpi: int = MIN_DPI) -> list[str]:
    """Saved PNG figures under ``figures_root`` below ``min_dpi`` (or with no PDF beside)."""
    from PIL import Image

    problems = []
    for png in sorted(figures_root.rglob("*.png")):
        rel = png.relative_to(figures_root).as_posix()
        with Image.open(png) as img:
            dpi = img.info.get("dpi", (0, 0))[0]
        if round(float(dpi)) < min_dpi:
            problems.append(f"figure {rel}: {round(float(dpi))} dpi, below {min_dpi}")
        if not png.with_suffix(".pdf").is_file():
            problems.append(f"figure {rel}: no PDF beside it")
    return problems
