"""What the reproduction found, at a glance: the generated section of the book's first page.

:func:`findings_markdown` reads the results every executed chapter wrote
(:mod:`kltools.results`) and writes: how many of the claims tested hold, are not reproduced
or are not tested, by origin (the paper's claims, and the book's own checks); three or four
headline numbers beside the paper's, each with its kind; what has not been run; and the
downloads of the whole book (the archive of every result and the scale's texts, the model
card of the suite). :func:`write_intro` puts it into a copy of ``book/intro.md`` that the
rendered book opens with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from kltools.results import VERDICTS, ChapterResults

__all__ = ["claim_origin", "findings_markdown", "write_intro"]

#: the settings whose medians the first page quotes, when the results hold them
HEADLINE_SETTINGS: tuple[str, ...] = ("Later", "Seed", "Size", "FT", "Random")

_PAPER_REF = re.compile(r"\((?:[^)]*?)(?:Fig\.|Table|§)")


def claim_origin(record: dict) -> str:
    """``"the paper's claims"`` when the claim cites a figure, table or section of the paper,
    else ``"the book's own checks"``."""
    text = f"{record.get('title') or ''} {record.get('paper_source') or ''}"
    return (
        "the paper's claims"
        if _PAPER_REF.search(text) or record.get("paper_source")
        else "the book's own checks"
    )


def findings_markdown(
    results: Sequence[ChapterResults], archive: str | None = None, card: str | None = None
) -> str:
    """The first page's section; ``archive``/``card``: links (MyST targets) to the archive and
    the model card, when they exist. Written for a page beside the reproduction report
    (``build/intro.md``: it links ``scoreboard`` and ``/book/rerun``)."""
    from kltools import paper, sources
    from kltools.book.scoreboard import chapter_order, fmt_number
    from kltools.config import Settings

    results = sorted(results, key=lambda r: chapter_order(r.chapter))
    lines = ["## What this build found, at a glance", ""]
    if not results:
        return "\n".join([*lines, "No chapter has been executed yet (`make book`).", ""])
    claims: dict[str, dict] = {}
    for res in results:
        for rec in res.claims:
            claims.setdefault(rec["claim"], rec)
    counts: dict[str, dict[str, int]] = {}
    for rec in claims.values():
        row = counts.setdefault(claim_origin(rec), dict.fromkeys(VERDICTS, 0))
        row[rec["verdict"]] += 1
    profiles = sorted({r.profile for r in results})
    lines += [
        f"Generated from the results of the {len(results)} chapter(s) executed for this build "
        f"(profile {', '.join(f'`{p}`' for p in profiles)}); the "
        "{doc}`reproduction report <scoreboard>` lists every claim with its numbers and its "
        "reason.",
        "",
        "| claims | " + " | ".join(VERDICTS) + " |",
        "|---|" + "---|" * len(VERDICTS),
        *(
            f"| {origin} | " + " | ".join(str(row[v]) for v in VERDICTS) + " |"
            for origin, row in sorted(counts.items())
        ),
        "",
    ]
    summaries = [s for r in results for s in r.summaries if s.get("statistic") == "median"]
    rows = []
    for setting in HEADLINE_SETTINGS:
        found = [s for s in summaries if s["setting"] == setting and "type" not in s]
        num = paper.FOR_SETTING.get(setting)
        if found and num is not None:
            s = found[-1]
            rows.append(
                f"| {setting} | {fmt_number(s['value'])} (median of {s['n_pairs']} "
                f"pair{'' if s['n_pairs'] == 1 else 's'}) | "
                f"{num.value:g} ({num.kind}, {num.source}) |"
            )
    if rows:
        lines += [
            "Headline numbers (bits/byte), this build beside the paper's, each with its kind:",
            "",
            "| setting | this build | the paper |",
            "|---|---|---|",
            *rows[:4],
            "",
        ]
    settings = [Settings.from_parameters(r.parameters) for r in results]
    if not any(sources.can(s, "published_magnitudes") for s in settings):
        lines += [
            "**Not run in this build:** the paper's own models (Pythia from the hub, on a GPU; "
            "see {doc}`/book/rerun`). The numbers above come from small models and test the "
            "paper's orderings, not its magnitudes.",
            "",
        ]
    links = []
    if archive:
        links.append(
            f"every result, the data of every figure and the scale's texts in one archive: {archive}"
        )
    if card:
        links.append(f"the models of the suite: {card}")
    if links:
        lines += ["**Downloads:** " + "; ".join(links) + ".", ""]
    return "\n".join(lines)


def write_intro(source: Path, target: Path, section: str) -> Path:
    """Write ``book/intro.md`` with ``section`` after its first paragraph, to ``target``.

    ``{doc}`` links of the source are made absolute (``/book/…``) so they resolve from the
    target's folder.
    """
    text = source.read_text(encoding="utf-8")
    base = source.parent.relative_to(source.parents[1]).as_posix()
    text = re.sub(r"\{doc\}`(?!/)([^`<]+)`", lambda m: f"{{doc}}`/{base}/{m[1]}`", text)
    head, sep, rest = text.partition("\n## ")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"{head.rstrip()}\n\n{section}\n{sep}{rest}" if sep else f"{text}\n\n{section}\n",
        encoding="utf-8",
    )
    return target
