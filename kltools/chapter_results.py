"""What a chapter writes: one call that records its pairs, summaries, claims, deviations and
the checkpoint-integrity findings it was computed on.

``save(s, "consecutive", pairs=[…], claims=[…])`` builds a
:class:`kltools.results.ChapterResults` — every pair of every pair set (unit specs, KL,
interval, texts, B̄), the median and mean of each setting with their bootstrap intervals,
every verdict, the chapter's deviations from the paper (:mod:`kltools.deviations`), the
checkpoint-integrity findings (:mod:`kltools.integrity`) and the parameters it ran with —
and writes ``build/executed/<chapter>.results.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kltools.claims import Claim
from kltools.config import Settings
from kltools.pairs import PairSet, concat, summarise, summary_records

__all__ = ["exponent_records", "save"]

#: the exponent columns of :func:`kltools.settings.diffusion.summary` and their setting labels
EXPONENTS: dict[str, tuple[str, str]] = {
    "c_l": ("c_ℓ", "r2_l"),
    "c_W": ("c_W", "r2_W"),
}


def exponent_records(chapter: str, table: pd.DataFrame) -> list[dict[str, Any]]:
    """Result ``summaries`` of a table of diffusion exponents per model (columns ``model``,
    ``n_starts``, ``c_l``, ``r2_l`` and optionally ``c_W``, ``r2_W``).

    One record per model and space: ``setting`` ``c_ℓ`` or ``c_W``, ``statistic``
    ``"median over start steps"``, ``value`` the exponent (``units`` ``"exponent"``, not bits
    per byte), ``n_pairs`` the number of fitted start steps, ``model`` and ``r2``.
    """
    out = []
    for row in table.to_dict("records"):
        for column, (label, r2) in EXPONENTS.items():
            value = row.get(column)
            if value is None or not np.isfinite(value):
                continue
            out.append(
                {
                    "chapter": chapter,
                    "setting": label,
                    "statistic": "median over start steps",
                    "value": float(value),
                    "n_pairs": int(row.get("n_starts", 0)),
                    "model": str(row["model"]),
                    "r2": float(row[r2]) if np.isfinite(row.get(r2, np.nan)) else None,
                    "units": "exponent",
                }
            )
    return out


def save(
    s: Settings,
    chapter: str,
    *,
    pairs: Sequence[PairSet] = (),
    claims: Sequence[Claim] = (),
    by: Sequence[str] = ("setting",),
    exponents: pd.DataFrame | None = None,
    findings: pd.DataFrame | None = None,
) -> Path:
    """Write one chapter's results (see the module docstring); returns the file written.

    ``by``: the labels the summaries are grouped by (``("type", "setting")`` for per-type
    fine-tuning tables). ``exponents``: a table of diffusion exponents per model, written as
    summaries too (:func:`exponent_records`). ``findings``: the integrity audit's table
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
            summaries=[
                *(summary_records(chapter, table) if table is not None else []),
                *(exponent_records(chapter, exponents) if exponents is not None else []),
            ],
            claims=[c.record(chapter) for c in claims],
            deviations=[d.record(chapter) for d in deviations(s) if chapter in d.chapters],
            findings=[
                {"chapter": chapter, **rec}
                for rec in (findings.to_dict("records") if findings is not None else [])
            ],
        )
    )
