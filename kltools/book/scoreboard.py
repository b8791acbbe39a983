"""The claims scoreboard and ``kltools book results``, both read from the chapters' results.

Every executed chapter writes ``build/executed/<chapter>.results.json`` (see
:mod:`kltools.results`). This module turns those files into

- the output of ``kltools book results [--profile P] [--format text|json|csv]``;
- the book's *reproduction report* page (``build/scoreboard.md``, generated at render time):
  one row per claim — the population it is decided on, the statistic, ours with its
  interval, the paper's number with its kind (or why there is none), the verdict and a link
  to the chapter — the paper's claims and the book's own checks in two tables; a chapter
  without results is listed as "not executed";
- each chapter's own rows of it, appended to the chapter's page by the build.

**Each claim is counted once.** A claim is identified by its ``claim`` identifier; its
*home* is the first chapter (in book order) that tests it. A later chapter that tests the
same claim again (the scale chapter re-tests the orderings of chapters 3, 4, 6 and 7) gives a
*re-test* row (``retest_of`` names the home chapter): shown, never counted again.

All three format a claim with :func:`claim_row`, so they cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kltools.book.layout import CHAPTERS, executed_dir, notebooks_dir
from kltools.book.tables import header_text
from kltools.results import ChapterResults, collect_results, records, results_path

#: the columns of a claim row, in the order of the page and of the CSV
CLAIM_COLUMNS: tuple[str, ...] = (
    "chapter",
    "claim",
    "origin",
    "population",
    "statistic",
    "ours",
    "paper",
    "verdict",
    "reason",
    "retest_of",
)

#: the page's title, and the file the render writes (relative to the build folder)
PAGE_TITLE = "Reproduction report: the paper's claims, one by one"
PAGE_NAME = "scoreboard"

NOT_EXECUTED = "not executed"
NO_RESULTS = "no results"


def fmt_number(value: Any) -> str:
    """A number as a reader wants it: three significant digits, no ``nan``; ``—`` if missing."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(float(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    x = float(value)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
        return f"{x:,.{digits}f}"
    return f"{x:.2e}"


def _with_units(text: str, units: Any) -> str:
    return f"{text} {units}" if units and text != "—" else text


def claim_row(rec: Mapping[str, Any]) -> dict[str, str]:
    """One claim record as the strings every view shows (see :data:`CLAIM_COLUMNS`).

    ``paper`` is the published number (or range, ``paper_lo``–``paper_hi``) with its kind and
    source, or "—" followed by why there is none (``paper_kind``); ``ours`` carries its interval and, where the claim has
    one, the second number it is compared with (``other_label`` ``other``).
    """
    units = rec.get("units") or ""
    paper = _with_units(fmt_number(rec.get("paper")), units)
    if rec.get("paper") is None and rec.get("paper_lo") is not None:
        span = f"{fmt_number(rec['paper_lo'])}–{fmt_number(rec.get('paper_hi'))}"
        paper = _with_units(span, units)
    details = [str(rec[k]) for k in ("paper_kind", "paper_source") if rec.get(k)]
    if details and paper != "—":
        paper = f"{paper} ({', '.join(details)})"
    elif details:
        paper = f"— ({', '.join(details)})"
    else:
        paper = "— (the chapter gives no published number)"
    ours = fmt_number(rec.get("ours"))
    if rec.get("ours_lo") is not None and rec.get("ours_hi") is not None and ours != "—":
        ours = f"{ours} [{fmt_number(rec['ours_lo'])}, {fmt_number(rec['ours_hi'])}]"
    ours = _with_units(ours, units)
    if rec.get("other") is not None:
        ours = f"{ours}; {rec.get('other_label') or 'beside'} {fmt_number(rec['other'])}"
    return {
        "chapter": str(rec["chapter"]),
        "claim": str(rec.get("title") or rec["claim"]),
        "origin": str(rec.get("origin") or "paper"),
        "population": str(rec.get("population") or "—"),
        "statistic": str(rec.get("statistic") or "—"),
        "ours": ours,
        "paper": paper,
        "verdict": str(rec["verdict"]),
        "reason": " ".join(str(rec.get("reason") or "").split()),
        "retest_of": "",
    }


def chapter_order(name: str) -> int:
    """Position of a chapter in the book (unknown names last)."""
    names = list(CHAPTERS)
    return names.index(name) if name in names else len(names)


def load(directory: str | Path | None = None, profile: str | None = None) -> list[ChapterResults]:
    """Every chapter's results (of ``profile`` if given), in book order."""
    found = collect_results(directory or executed_dir(), profile)
    return sorted(found, key=lambda r: chapter_order(r.chapter))


def scoreboard_rows(
    results: Sequence[ChapterResults], executed: Iterable[str] = ()
) -> list[dict[str, str]]:
    """The scoreboard: every claim of every chapter with results, in book order.

    A claim tested again by a later chapter (same ``claim`` identifier) is a re-test: its row
    has ``retest_of`` = the home chapter and is not counted by :func:`verdict_counts`. A
    chapter without a results file yields one row: verdict ``no results`` if it is among
    ``executed`` (it ran but wrote none), else ``not executed``.
    """
    by_chapter = {r.chapter: r for r in results}
    ran = set(executed)
    home: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    for name in [*CHAPTERS, *sorted(set(by_chapter) - set(CHAPTERS))]:
        res = by_chapter.get(name)
        if res is None:
            verdict = NO_RESULTS if name in ran else NOT_EXECUTED
            reason = (
                "the chapter ran but wrote no results file"
                if name in ran
                else "the chapter was not executed in this build"
            )
            rows.append(
                {
                    **dict.fromkeys(CLAIM_COLUMNS, "—"),
                    "chapter": name,
                    "verdict": verdict,
                    "reason": reason,
                    "retest_of": "",
                }
            )
            continue
        for rec in res.claims:
            row = claim_row(rec)
            key = str(rec["claim"])
            if key in home and home[key] != name:
                row["retest_of"] = home[key]
            else:
                home.setdefault(key, name)
            rows.append(row)
    return rows


def executed_chapters(directory: str | Path | None = None) -> list[str]:
    """Names of the chapters with an executed notebook in ``directory`` (default: the build's)."""
    folder = Path(directory or executed_dir())
    return [name for name, stem in CHAPTERS.items() if (folder / f"{stem}.ipynb").is_file()]


def verdict_counts(rows: Sequence[Mapping[str, str]], origin: str | None = None) -> dict[str, int]:
    """How many claims have each verdict, in a fixed order: each claim once (re-tests are not
    counted); of one ``origin`` (``"paper"`` or ``"book"``) if given."""
    order = ["holds", "not reproduced", "not tested", NO_RESULTS, NOT_EXECUTED]
    counts = {v: 0 for v in order}
    for row in rows:
        if row.get("retest_of"):
            continue
        if origin is not None and row["verdict"] in order[:3] and row.get("origin") != origin:
            continue
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


# --------------------------------------------------------------------------- the command


def results_document(
    results: Sequence[ChapterResults], executed: Iterable[str] = ()
) -> dict[str, Any]:
    """What ``kltools book results --format json`` prints: every record, and the scoreboard."""
    return {
        "profiles": sorted({r.profile for r in results}),
        "chapters": [r.chapter for r in results],
        "pairs": records(results, "pairs"),
        "summaries": records(results, "summaries"),
        "claims": records(results, "claims"),
        "deviations": records(results, "deviations"),
        "findings": records(results, "findings"),
        "scoreboard": scoreboard_rows(results, executed),
    }


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV text (columns: ``columns``, else every key in order of appearance)."""
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def format_results(
    results: Sequence[ChapterResults],
    fmt: str,
    kind: str = "all",
    executed: Iterable[str] = (),
) -> str:
    """``kltools book results`` in ``fmt`` (``text``, ``json`` or ``csv``).

    ``kind`` selects what is printed: ``all`` (text and JSON: pairs and claims; CSV: pairs),
    ``pairs``, ``claims``, ``summaries``, ``deviations``, ``findings`` (the checkpoint-integrity
    audit) or ``scoreboard``.
    """
    if fmt == "json":
        doc = results_document(results, executed)
        if kind != "all":
            doc = {"profiles": doc["profiles"], kind: doc[kind]}
        return json.dumps(doc, indent=1, allow_nan=False)
    if fmt == "csv":
        if kind in ("all", "pairs"):
            return to_csv(records(results, "pairs"))
        if kind == "scoreboard":
            return to_csv(scoreboard_rows(results, executed), CLAIM_COLUMNS)
        return to_csv(records(results, kind))
    lines: list[str] = []
    if kind in ("all", "pairs"):
        pairs = records(results, "pairs")
        lines.append(f"pairs: {len(pairs)}")
        for rec in pairs:
            interval = ""
            if rec.get("lo") is not None and rec.get("hi") is not None:
                interval = f" [{fmt_number(rec['lo'])}, {fmt_number(rec['hi'])}]"
            layers = ""
            if rec.get("layer_a") is not None:
                layers = f" (layers {rec['layer_a']}→{rec.get('layer_b')})"
            lines.append(
                f"  {rec['chapter']:<13} {rec['setting']:<12} {rec['a']} | {rec['b']}{layers}: "
                f"{fmt_number(rec['kl_bpb'])}{interval} bits/byte"
            )
    if kind in ("all", "claims", "scoreboard"):
        rows = scoreboard_rows(results, executed)
        counts = verdict_counts(rows)
        lines.append(
            "claims (each counted once): " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        )
        for row in rows:
            again = f" (re-test of {row['retest_of']})" if row.get("retest_of") else ""
            lines.append(
                f"  {row['chapter']:<13} {row['verdict']:<15} {row['claim']}{again}: "
                f"paper {row['paper']}; ours {row['ours']}"
            )
    if kind in ("all", "findings"):
        found = records(results, "findings")
        seen = {(r["run"], r["step"], r["finding"]): r for r in found}  # chapters repeat them
        lines.append(f"checkpoint-integrity findings: {len(seen)}")
        for (run, step, finding), r in seen.items():
            same = f" of {r['same_as']}" if r.get("same_as") else ""
            lines.append(f"  {run}@{step}: {finding}{same} ({r.get('evidence', '')})")
    if kind in ("summaries", "deviations"):
        for rec in records(results, kind):
            lines.append("  " + ", ".join(f"{k}={fmt_number(v)}" for k, v in rec.items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------- pages


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, ``<`` written as an entity (never read as HTML)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, str]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` are (key, header) pairs."""
    head = "| " + " | ".join(header_text(h) for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(k, "")) for k, _ in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def chapter_title(name: str) -> str:
    """``"7. The numerical floor"``: the chapter's number and the start of its title (the
    first heading of its notebook, up to a colon or parenthesis); the name if unknown."""
    stem = CHAPTERS.get(name)
    if stem is None:
        return name
    number = int(stem[:2])
    try:
        nb = json.loads((notebooks_dir() / f"{stem}.ipynb").read_text(encoding="utf-8"))
        first = "".join(nb["cells"][0]["source"]).strip().splitlines()[0]
    except (OSError, ValueError, KeyError, IndexError):
        return f"{number}. {name}"
    title = first.lstrip("#").strip()
    for sep in (":", " ("):
        title = title.split(sep)[0]
    return f"{number}. {title.strip() or name}"


def chapter_link(name: str, text: str, executed_rel: str) -> str:
    """A MyST link to a chapter's executed page, or plain text when it was not executed."""
    stem = CHAPTERS.get(name)
    if stem is None:
        return text
    return f"[{text}]({executed_rel}/{stem}.ipynb)"


_VERDICT_MARK = {
    "holds": "✔ holds",
    "not reproduced": "✘ not reproduced",
    "not tested": "– not tested",
    NO_RESULTS: "· no results",
    NOT_EXECUTED: "· not executed",
}


def _md(text: str) -> str:
    """Text for Markdown prose: ``<`` as an entity (never read as an HTML tag)."""
    return text.replace("<", "&lt;")


def _reasons(rows: Sequence[Mapping[str, str]], with_chapter: bool) -> list[str]:
    """One bullet per claim: the claim, its verdict and the chapter's reason."""
    out = []
    for row in rows:
        where = f" ({row['chapter_shown']})" if with_chapter else ""
        reason = row["reason"] or "—"
        out.append(f"- **{_md(row['claim'])}**{where}, {row['verdict']}: {_md(reason)}")
    return out


#: the columns of a claims table on a page: (key, header)
_PAGE_COLUMNS: list[tuple[str, str]] = [
    ("chapter_shown", "Chapter"),
    ("claim", "Claim"),
    ("population", "Population"),
    ("statistic", "Statistic"),
    ("ours", "This book [interval]"),
    ("paper", "Paper (kind)"),
    ("verdict", "Verdict"),
]


def _summary(counts: Mapping[str, int]) -> str:
    tested = {
        v: n for v, n in counts.items() if n and v in ("holds", "not reproduced", "not tested")
    }
    return ", ".join(f"**{n}** {v}" for v, n in tested.items()) or "none yet"


def scoreboard_page(
    results: Sequence[ChapterResults], executed_rel: str, ran: Iterable[str] = ()
) -> str:
    """The Markdown of the reproduction report page (links relative to the page's folder).

    The paper's claims and the book's own checks in two tables (one row per claim, counted
    once), the re-tests of later chapters in a third (not counted), the chapters' reasons
    below them, and the chapters without results named in one sentence each.
    """
    ran = set(ran)
    rows = scoreboard_rows(results, ran)
    executed = {r.chapter for r in results} | ran
    profiles = sorted({r.profile for r in results}) or ["—"]
    shown: list[dict[str, str]] = []
    missing: dict[str, list[str]] = {NO_RESULTS: [], NOT_EXECUTED: []}
    for row in rows:
        title = chapter_title(row["chapter"])
        link = (
            chapter_link(row["chapter"], title, executed_rel)
            if row["chapter"] in executed
            else title
        )
        if row["verdict"] in missing:
            missing[row["verdict"]].append(link)
            continue
        home = row.get("retest_of", "")
        shown.append(
            {
                **row,
                "chapter_shown": link,
                "home_shown": chapter_title(home) if home else "",
                "verdict": _VERDICT_MARK.get(row["verdict"], row["verdict"]),
            }
        )
    first = [r for r in shown if not r["retest_of"]]
    paper_rows = [r for r in first if r["origin"] != "book"]
    book_rows = [r for r in first if r["origin"] == "book"]
    retests = [r for r in shown if r["retest_of"]]
    body: list[str] = []
    if shown:
        if paper_rows:
            body += ["## The paper's claims", "", markdown_table(paper_rows, _PAGE_COLUMNS), ""]
        if book_rows:
            body += [
                "## The book's own checks",
                "",
                "Not claims of the paper: checks this book adds (counted apart).",
                "",
                markdown_table(book_rows, _PAGE_COLUMNS),
                "",
            ]
        if retests:
            body += [
                "## Re-tests (not counted again)",
                "",
                "A later chapter that tests a claim again, on the same pairs, shows it on its own "
                "page; here it is listed once more, beside the chapter the claim belongs to.",
                "",
                markdown_table(
                    retests,
                    [
                        ("chapter_shown", "Re-tested in"),
                        ("claim", "Claim"),
                        ("home_shown", "Counted in"),
                        ("verdict", "Verdict"),
                    ],
                ),
                "",
            ]
        body += ["**Why each verdict.**", ""]
        body += _reasons(first, with_chapter=True)
    else:
        body += ["No chapter has written results in this build yet."]
    notes = {
        NO_RESULTS: "Ran without writing results (no claims to show yet)",
        NOT_EXECUTED: "Not executed in this build",
    }
    for verdict, chapters in missing.items():
        if chapters:
            body += ["", f"*{notes[verdict]}:* " + "; ".join(chapters) + "."]
    return "\n".join(
        [
            f"# {PAGE_TITLE}",
            "",
            "Every claim that a chapter tests, counted once: the population of pairs it is decided",
            "on, the statistic, this book's number with its bootstrap interval over texts, the",
            "paper's number with what kind of number it is (a single pair, a mean, a median, a",
            "range; compared only like with like, and when there is none, why), and the verdict the",
            "chapter reached. The page is generated when the book is rendered, from the results",
            "each chapter wrote (`kltools book results` prints the same rows), so it cannot",
            "disagree with the chapters.",
            "",
            f"Profile: **{', '.join(profiles)}**. The paper's claims: "
            f"{_summary(verdict_counts(rows, 'paper'))}. The book's own checks: "
            f"{_summary(verdict_counts(rows, 'book'))}.",
            "",
            "Verdicts: *holds* — our numbers support the claim; *not reproduced* — they do not;",
            "*not tested* — this profile cannot test it (the reason says why). Numbers from the",
            "`tiny` and `smoke` profiles answer the paper's questions for much smaller models, so",
            "claims about the published magnitudes are *not tested* there.",
            "",
            *body,
            "",
            "Every pair behind these numbers, and each chapter's deviations from the paper, are in",
            "the results files, downloadable from the end of each chapter",
            "(`kltools book results --format csv` prints the pairs).",
            "",
        ]
    )


def chapter_claims_markdown(results: ChapterResults) -> str:
    """The chapter's own rows of the scoreboard, for the end of its page ('' if none)."""
    if not results.claims:
        return ""
    rows = [claim_row(rec) for rec in results.claims]
    for row in rows:
        row["verdict"] = _VERDICT_MARK.get(row["verdict"], row["verdict"])
        if row["origin"] == "book":
            row["claim"] = f"{row['claim']} (the book's check)"
    columns = [c for c in _PAGE_COLUMNS if c[0] != "chapter_shown"]
    return "\n".join(
        [
            "## This chapter on the scoreboard",
            "",
            "The claims this chapter tests, as they appear in the "
            "[reproduction report](../scoreboard.md):",
            "",
            markdown_table(rows, columns),
            "",
            *_reasons(rows, with_chapter=False),
        ]
    )


def write_scoreboard(
    build_dir: Path, directory: str | Path | None = None, profile: str | None = None
) -> Path:
    """Write the reproduction report page ``<build_dir>/scoreboard.md``; return its path."""
    folder = Path(directory or executed_dir())
    results = load(folder, profile)
    rel = folder.resolve().relative_to(build_dir.resolve()).as_posix()
    path = build_dir / f"{PAGE_NAME}.md"
    text = scoreboard_page(results, rel, executed_chapters(folder))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def write_chapter_csv(name: str, directory: str | Path | None = None) -> list[Path]:
    """Write ``<chapter>.pairs.csv`` and ``<chapter>.claims.csv`` beside the results file."""
    path = results_path(name, directory or executed_dir())
    if not path.is_file():
        return []
    from kltools.results import read_results

    res = read_results(path)
    out = []
    for kind, rows in (("pairs", res.pairs), ("claims", res.claims)):
        if rows:
            target = path.with_name(f"{name}.{kind}.csv")
            target.write_text(to_csv(rows), encoding="utf-8")
            out.append(target)
    return out
