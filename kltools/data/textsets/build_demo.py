"""Rebuild ``demo.jsonl`` from the public-domain sources in ``sources/`` (see README.md).

Run from the repository root: ``.venv/bin/python kltools/data/textsets/build_demo.py``.
Each source is read with ``kltools.load_texts`` (paragraphs = documents of a .txt file);
consecutive paragraphs are packed greedily, joined by a blank line, into texts of at most
``MAX_BYTES`` UTF-8 bytes; a paragraph longer than that is first split after sentence ends;
a final pack shorter than ``MIN_BYTES`` is dropped. Deterministic: same sources, same file.
"""

from __future__ import annotations

import re
from pathlib import Path

from kltools.texts import TextSet, load_texts

HERE = Path(__file__).resolve().parent
SOURCES = ("declaration", "constitution", "bill_of_rights", "gettysburg", "second_inaugural")
MAX_BYTES = 700
MIN_BYTES = 300


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _pieces(paragraph: str) -> list[str]:
    """The paragraph, or its sentences packed to at most MAX_BYTES when it is longer."""
    if _nbytes(paragraph) <= MAX_BYTES:
        return [paragraph]
    out: list[str] = []
    for sentence in re.split(r"(?<=[.;:])\s+", paragraph):
        if out and _nbytes(out[-1] + " " + sentence) <= MAX_BYTES:
            out[-1] = out[-1] + " " + sentence
        else:
            out.append(sentence)
    return out


def pack(paragraphs: list[str]) -> list[str]:
    """Greedy packing of paragraphs into texts of MIN_BYTES..MAX_BYTES bytes."""
    texts: list[str] = []
    for piece in (p for par in paragraphs for p in _pieces(par)):
        if texts and _nbytes(texts[-1] + "\n\n" + piece) <= MAX_BYTES:
            texts[-1] = texts[-1] + "\n\n" + piece
        else:
            texts.append(piece)
    return [t for t in texts if MIN_BYTES <= _nbytes(t) <= MAX_BYTES]


def build() -> TextSet:
    """The demo text set (ids ``<source>-<k>``, domain = source name)."""
    ids, texts, domains = [], [], []
    for src in SOURCES:
        for k, text in enumerate(pack(list(load_texts(HERE / "sources" / f"{src}.txt")))):
            ids.append(f"{src}-{k:02d}")
            texts.append(text)
            domains.append(src)
    return TextSet("demo", ids, texts, domains)


if __name__ == "__main__":
    ts = build()
    ts.to_jsonl(HERE / "demo.jsonl")
    print(ts, "min/max bytes", ts.n_bytes.min(), ts.n_bytes.max())
