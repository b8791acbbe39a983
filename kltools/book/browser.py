"""Every page of the rendered book, opened in headless Chromium as a reader's browser would.

No browser driver and no Python dependency: for each page, a copy with a small measuring
script is written next to it (so every relative link resolves as in the page), Chromium
loads it with ``--dump-dom`` after the page's scripts and images settled, and the script's
measurements are read back from the dumped DOM. A page fails when

- it is taller than :data:`MAX_HEIGHT` px at :data:`WIDTH` px wide;
- the document, or a table, is wider than the column it sits in (horizontal overflow);
- an image failed to load, or is shown wider than its pixels (upscaled, blurred);
- a figure's smallest text is drawn below :data:`MIN_TEXT_PX` px: a figure saved by
  :func:`kltools.book.save_figure` carries its dpi and smallest font size (points), so its
  text is ``pt × dpi / 72 × shown width / natural width`` px on the page;
- a chapter's figure (an image in a cell output) has no caption (``<figure>`` with a non-empty
  ``<figcaption>``) or no alt text, or alt text that is a file name;
- a word of a table header is broken across lines (a header may wrap between words only).

:func:`screenshot` writes a PNG of a page at full height, to look at what the check saw.
Chromium comes from Debian (``apt-get install -y chromium chromium-driver``); the check
says so in one line when it is missing.
"""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError

#: viewport width of the check, and the tallest page accepted at that width
WIDTH = 1280
MAX_HEIGHT = 15_000

#: the smallest text a figure may draw, in CSS px at the page's width
MIN_TEXT_PX = 8.0

#: flags for a quiet, isolated headless Chromium (the user-data dir is added per run)
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
)

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_ATTR = "data-kltools-check"

#: measured after the load event: page size, tables wider than their column, broken images
_SCRIPT = (
    (
        """
<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var doc = document.documentElement;
    var tables = [];
    document.querySelectorAll('table').forEach(function (t, i) {
      var box = t.closest('.cell_output, .output, .bd-article, article, main') || t.parentElement;
      var column = document.querySelector('.bd-article, article.bd-article, main') || document.body;
      var limit = Math.min(box.clientWidth || 1e9, column.clientWidth || 1e9);
      var width = t.getBoundingClientRect().width;
      if (width > limit + 2) {
        var head = (t.innerText || '').trim().split('\\n')[0].slice(0, 60);
        tables.push({index: i, width: Math.round(width), limit: Math.round(limit), head: head});
      }
    });
    var images = [];
    document.querySelectorAll('img').forEach(function (img) {
      if (!img.complete || img.naturalWidth === 0) { images.push(img.getAttribute('src')); }
    });
    var figures = [];
    document.querySelectorAll('img').forEach(function (img) {
      var r = img.getBoundingClientRect();
      if (r.width > 0) { figures.push({w: Math.round(r.width), nw: img.naturalWidth}); }
    });
    var small = [];
    document.querySelectorAll('img[data-kltools-min-font-pt]').forEach(function (img, i) {
      var r = img.getBoundingClientRect();
      var pt = parseFloat(img.getAttribute('data-kltools-min-font-pt'));
      var dpi = parseFloat(img.getAttribute('data-kltools-dpi'));
      if (r.width > 0 && img.naturalWidth > 0 && pt > 0 && dpi > 0) {
        var px = pt * dpi / 72 * r.width / img.naturalWidth;
        if (px < MIN_PX) {
          small.push({index: i, px: Math.round(px * 10) / 10, alt: (img.alt || '').slice(0, 60)});
        }
      }
    });
    var uncaptioned = [];
    document.querySelectorAll('.cell_output img, .output img').forEach(function (img, i) {
      var fig = img.closest('figure');
      var cap = fig ? fig.querySelector('figcaption') : null;
      var alt = (img.getAttribute('alt') || '').trim();
      var why = [];
      if (!cap || !cap.textContent.trim()) { why.push('no caption'); }
      if (!alt) { why.push('no alt text'); }
      else if (/[.](png|pdf|svg|jpe?g)\\b|[\\\\/]/i.test(alt)) { why.push('alt text is a file name'); }
      if (why.length) { uncaptioned.push({index: i, why: why.join(', ')}); }
    });
    var broken = [];
    document.querySelectorAll('th').forEach(function (th) {
      var walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
      var node;
      while ((node = walker.nextNode())) {
        var re = /\\S+/g, m;
        while ((m = re.exec(node.data))) {
          var range = document.createRange();
          range.setStart(node, m.index);
          range.setEnd(node, m.index + m[0].length);
          var tops = {};
          Array.prototype.forEach.call(range.getClientRects(), function (rc) {
            if (rc.width > 0) { tops[Math.round(rc.top)] = 1; }
          });
          if (Object.keys(tops).length > 1) { broken.push(m[0].slice(0, 40)); }
        }
      }
    });
    var out = {height: doc.scrollHeight, width: doc.scrollWidth, viewport: window.innerWidth,
               tables: tables, broken_images: images, images: figures,
               small_text: small, uncaptioned: uncaptioned, broken_headers: broken,
               stderr_boxes: document.querySelectorAll('.stderr, .output.stderr').length};
    document.body.setAttribute('ATTR', JSON.stringify(out));
  }, 300);
});
</script>
"""
    )
    .replace("ATTR", _ATTR)
    .replace("MIN_PX", repr(MIN_TEXT_PX))
)


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What the browser measured on one page."""

    page: str
    height: int = 0
    width: int = 0
    viewport: int = WIDTH
    tables: list[dict[str, Any]] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: list[dict[str, int]] = field(default_factory=list)
    small_text: list[dict[str, Any]] = field(default_factory=list)
    uncaptioned: list[dict[str, Any]] = field(default_factory=list)
    broken_headers: list[str] = field(default_factory=list)
    stderr_boxes: int = 0
    error: str = ""

    def problems(self, max_height: int = MAX_HEIGHT) -> list[str]:
        """One line per failure of this page."""
        if self.error:
            return [f"{self.page}: {self.error}"]
        out = []
        if self.height > max_height:
            out.append(f"{self.page}: {self.height} px tall at {WIDTH} px (limit {max_height})")
        if self.width > self.viewport + 2:
            out.append(f"{self.page}: {self.width} px wide in a {self.viewport} px window")
        for t in self.tables:
            out.append(
                f"{self.page}: table {t['index']} ({t['head']!r}) is {t['width']} px wide "
                f"in a {t['limit']} px column"
            )
        for src in self.broken_images:
            out.append(f"{self.page}: image did not load ({(src or '')[:80]})")
        for img in self.images:
            if img.get("nw") and img["w"] > img["nw"] + 1:
                out.append(
                    f"{self.page}: an image is shown {img['w']} px wide from {img['nw']} px "
                    "(upscaled, blurred)"
                )
        for f in self.small_text:
            out.append(
                f"{self.page}: figure {f['index']} ({f['alt']!r}) draws text at {f['px']} px "
                f"(at least {MIN_TEXT_PX:g} px)"
            )
        for f in self.uncaptioned:
            out.append(f"{self.page}: figure {f['index']} in a cell output: {f['why']}")
        for word in self.broken_headers:
            out.append(f"{self.page}: table header word {word!r} is broken across lines")
        if self.stderr_boxes:
            out.append(f"{self.page}: {self.stderr_boxes} stderr box(es)")
        return out


def _run(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="kltools-chromium-") as profile_dir:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def measure(page: Path, html_root: Path, chromium: str, timeout: float = 90.0) -> PageReport:
    """Load ``page`` in headless Chromium and measure it (see the module docstring)."""
    rel = page.relative_to(html_root).as_posix()
    text = page.read_text(encoding="utf-8", errors="replace")
    probe = page.with_name(f".kltools-check-{page.name}")
    if "</body>" in text:
        probe_text = text.replace("</body>", _SCRIPT + "</body>", 1)
    else:
        probe_text = text + _SCRIPT
    probe.write_text(probe_text, encoding="utf-8")
    try:
        proc = _run(
            chromium,
            [
                f"--window-size={WIDTH},900",
                "--virtual-time-budget=15000",
                "--run-all-compositor-stages-before-draw",
                "--dump-dom",
                probe.resolve().as_uri(),
            ],
            timeout,
        )
    except subprocess.TimeoutExpired:
        return PageReport(rel, error=f"Chromium did not finish within {timeout:.0f} s")
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(_ATTR + r'="([^"]*)"', proc.stdout)
    if not found:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:200]
        return PageReport(rel, error=f"no measurement came back from Chromium ({tail})")
    data = json.loads(html_lib.unescape(found.group(1)))
    return PageReport(rel, **{k: data[k] for k in data if k in PageReport.__dataclass_fields__})


def book_pages(html_root: Path) -> list[Path]:
    """The pages of the book: every HTML file except Sphinx's index/search pages, assets and
    redirects (``index.html`` only forwards to the first page)."""
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    out = []
    for page in sorted(html_root.rglob("*.html")):
        rel = page.relative_to(html_root).as_posix()
        if page.name in skip or page.name.startswith(".kltools-check-"):
            continue
        if rel.startswith(("_static/", "_sources/", "_downloads/", "_images/")):
            continue
        head = page.read_text(encoding="utf-8", errors="replace")[:2000].lower()
        if 'http-equiv="refresh"' in head:  # a redirect (index.html): its target is checked
            continue
        out.append(page)
    return out


def check_pages(
    html_root: Path, pages: Iterable[Path] | None = None, max_height: int = MAX_HEIGHT
) -> tuple[list[PageReport], list[str]]:
    """Measure every page; return the reports and the problems (one line each)."""
    chromium = find_chromium()
    if chromium is None:
        raise KLToolsError(
            "no Chromium found for the browser check; install it: "
            "apt-get install -y chromium chromium-driver"
        )
    if not html_root.is_dir():
        raise KLToolsError(f"no rendered book in {html_root}; run make book first")
    reports = [measure(p, html_root, chromium) for p in (pages or book_pages(html_root))]
    problems = [line for r in reports for line in r.problems(max_height)]
    return reports, problems


def screenshot(page: Path, out_png: Path, height: int, chromium: str | None = None) -> Path:
    """A PNG of ``page`` at :data:`WIDTH` px wide and ``height`` px tall (e.g. its full height)."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise KLToolsError("no Chromium found; apt-get install -y chromium chromium-driver")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    _run(
        chromium,
        [
            f"--window-size={WIDTH},{max(200, min(height, 16_000))}",
            "--virtual-time-budget=15000",
            f"--screenshot={out_png.resolve()}",
            page.resolve().as_uri(),
        ],
        120.0,
    )
    if not out_png.is_file():
        raise KLToolsError(f"Chromium wrote no screenshot of {page.name}")
    return out_png
