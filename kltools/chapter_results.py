"""What a chapter writes: one call that records its pairs, summaries, claims, deviations and
the checkpoint-integrity findings it was computed on.

``save(s, "consecutive", pairs=[…], claims=[…])`` builds a
:class:`kltools.results.ChapterResults` — every pair of every pair set (unit specs, KL,
interval, texts, B̄), the median and mean of each setting with their bootstrap intervals,
every verdict, the chapter's deviations from the paper (:mod:`kltools.deviations`), the
checkpoint-integrity findings (:mod:`kltools.integrity`) and the parameters it ran with — and writes ``build/executed/<chapter>.results.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kltools.claims import Claim
from kltools.config import Settings
from kltools.pairs import PairSet, concat, summarise, summary_records

__all__ = ["save"]


def save(
    s: Settings,
    chapter: str,
    *,
    pairs: Sequence[PairSet] = (),
    claims: Sequence[Claim] = (),
    by: Sequence[str] = ("setting",),
    findings: Any = None,
) -> Path:
    """Write one chapter's results (see the module docstring); returns the file written.

    ``by``: the labels the summaries are grouped by (``("type", "setting")`` for per-type
    fine-tuning tables); ``findings``: the integrity audit's table
    (:func:`kltools.settings.pretraining.audit`), one record per finding.
    """
    from kltools.deviations import deviations
    from kltools.results import ChapterResults, write_results

    every = concat(list(pairs))
    table = summarise(every, by=by, statistics=("median", "mean")) if len(every) else None
    return write_results(
        ChapterResults(
            chapter=chapter,
            profile=s.profile,
            parameters=s.as_dict(),
            pairs=every.records(chapter),
            summaries=summary_records(chapter, table) if table is not None else [],
            claims=[c.record(chapter) for c in claims],
            deviations=[d.record(chapter) for d in deviations(s) if chapter in d.chapters],
            findings=[
                {"chapter": chapter, **rec}
                for rec in (findings.to_dict("records") if findings is not None else [])
            ],
        )
    )
