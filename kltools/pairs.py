"""One pair-set type and one bootstrap engine for every setting of the book.

A :class:`PairSet` is a table of model pairs (one row each: ``setting``, ``a``, ``b``, ``kl``
in bits/byte, its 95 % bootstrap interval ``lo``/``hi``, ``n_texts``, ``mean_bytes`` and any
labels) plus the bootstrap replicates of every pair on the profile's **shared text
resamples** (:class:`Resamples`), so that the intervals of different settings — and of their
medians — are comparable and a setting's values are the same in every chapter.

The estimator (paper §2): ``KL(p_i, p_j) ≈ Var_s(ℓ_i(x_s) − ℓ_j(x_s)) / 2`` nats per text
(population variance), converted to bits per byte by :func:`kltools.kl.nats_to_bpb`
(divide by ``B̄ ln 2``, ``B̄`` the mean UTF-8 bytes of the texts in use).

The resamples are drawn once per profile over the positions ``0 … N−1`` of the analysis text
set (``numpy.random.default_rng(seed)``, with replacement). A setting that uses only some of
the texts (the pretraining settings drop the texts the paper's preprocessing removes) keeps,
in every resample, the draws that fall on its texts: the same resample, restricted. Each
replicate recomputes the variance *and* ``B̄`` on its resampled texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kltools.errors import KLToolsError
from kltools.kl import (
    CI,
    half_variance,
    interval,
    nats_to_bpb,
    resample_counts,
    resampled_half_variance,
)

__all__ = [
    "CI",
    "PairSet",
    "Resamples",
    "build_pairs",
    "concat",
    "half_variance_bpb",
    "summarise",
    "summary_records",
]


#: labels that are integers (stacking pair sets with other labels turns them into floats)
_INTEGER_LABELS = frozenset({"step", "step_next", "layer_a", "layer_b", "depth", "bits", "n_texts"})


@dataclass(frozen=True)
class Resamples:
    """The shared bootstrap resamples of a profile's text set.

    Attributes
    ----------
    counts : numpy.ndarray, shape (n_boot, N)
        How often each text position is drawn in each resample.
    """

    counts: np.ndarray

    @classmethod
    def draw(cls, n_texts: int, n_boot: int, seed: int) -> Resamples:
        """``n_boot`` resamples of ``n_texts`` positions with replacement (``default_rng(seed)``)."""
        return cls(resample_counts(n_texts, n_boot, seed))

    @property
    def n_boot(self) -> int:
        """Number of resamples."""
        return int(self.counts.shape[0])

    def weights(self, positions: np.ndarray) -> np.ndarray:
        """``(n_boot, len(positions))`` draw counts of the given text positions."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.counts.shape[1]):
            raise KLToolsError("text positions outside the resampled text set")
        return self.counts[:, pos]


def half_variance_bpb(d: np.ndarray, text_bytes: np.ndarray) -> np.ndarray:
    """``Var(d) / 2`` over the last axis (ddof 0), in bits/byte with ``B̄`` of ``text_bytes``."""
    d = np.asarray(d, dtype=np.float64)
    return nats_to_bpb(half_variance(d), float(np.mean(text_bytes)))


@dataclass(frozen=True)
class PairSet:
    """Model pairs of one or several settings with their KLs and bootstrap replicates.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per pair: ``setting``, ``a``, ``b`` (unit specs), ``kl`` (bits/byte), ``lo``,
        ``hi``, ``n_texts``, ``mean_bytes`` and the labels given when it was built.
    reps : numpy.ndarray, shape (n_boot, len(frame))
        Replicates of every pair's KL on the shared resamples.
    """

    frame: pd.DataFrame
    reps: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def select(self, mask: Any) -> PairSet:
        """The pairs where ``mask`` (a boolean sequence over the rows) is true."""
        m = np.asarray(mask, dtype=bool)
        return PairSet(self.frame[m].reset_index(drop=True), self.reps[:, m])

    def setting(self, *names: str) -> PairSet:
        """The pairs of the named settings."""
        return self.select(self.frame["setting"].isin(names).to_numpy())

    def relabel(self, setting: str) -> PairSet:
        """The same pairs under another setting label."""
        return PairSet(self.frame.assign(setting=setting), self.reps)

    def records(self, chapter: str) -> list[dict[str, Any]]:
        """Result records (:mod:`kltools.results` ``pairs``) of every pair."""
        out = []
        for row in self.frame.to_dict("records"):
            rec: dict[str, Any] = {"chapter": chapter}
            for key, value in row.items():
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    continue  # a label of another setting (after concat)
                if key in _INTEGER_LABELS:
                    value = int(value)
                rec["kl_bpb" if key == "kl" else key] = value
            out.append(rec)
        return out


def build_pairs(
    rows: Sequence[tuple[np.ndarray, np.ndarray, Mapping[str, Any]]],
    text_bytes: np.ndarray,
    positions: np.ndarray,
    resamples: Resamples,
) -> PairSet:
    """The one bootstrap engine: KL of each ``(vector_a, vector_b, labels)`` row.

    Parameters
    ----------
    rows
        Log-likelihood vectors (nats, one value per text) of the two models of each pair, and
        the pair's labels (at least ``setting``, ``a``, ``b``).
    text_bytes : array, shape (n,)
        UTF-8 bytes of the texts the vectors are on.
    positions : array of int, shape (n,)
        Their positions in the resampled text set.
    resamples : Resamples
    """
    tb = np.asarray(text_bytes, dtype=np.float64)
    if not rows:
        cols = ["setting", "a", "b", "kl", "lo", "hi", "n_texts", "mean_bytes"]
        return PairSet(pd.DataFrame(columns=cols), np.zeros((resamples.n_boot, 0)))
    a = np.stack([np.asarray(r[0], dtype=np.float64) for r in rows])
    b = np.stack([np.asarray(r[1], dtype=np.float64) for r in rows])
    d = a - b
    if d.shape[1] != tb.size or tb.size != len(positions):
        raise KLToolsError(f"{d.shape[1]} texts per vector but {tb.size} text sizes")
    if not np.isfinite(d).all():
        raise KLToolsError("a pair has a missing log-likelihood (NaN); extract it first")
    reps = resampled_half_variance(d, resamples.weights(positions), tb)
    lo, hi = interval(reps)
    frame = pd.DataFrame([dict(r[2]) for r in rows])
    frame["kl"] = half_variance_bpb(d, tb)
    frame["lo"], frame["hi"] = lo, hi
    frame["n_texts"] = tb.size
    frame["mean_bytes"] = float(tb.mean())
    return PairSet(frame, reps)


def concat(parts: Sequence[PairSet]) -> PairSet:
    """Stack pair sets (all on the same resamples)."""
    given = list(parts)
    parts = [p for p in given if len(p)]
    if not parts:  # keep the labels of an empty part: a page can still show its columns
        if given:
            return given[0]
        return build_pairs([], np.zeros(0), np.zeros(0, dtype=int), Resamples(np.zeros((2, 0))))
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    return PairSet(frame, np.concatenate([p.reps for p in parts], axis=1))


_STATISTICS = {"median": np.median, "mean": np.mean}


def summarise(
    pairs: PairSet, by: Sequence[str] = ("setting",), statistics: Sequence[str] = ("median",)
) -> pd.DataFrame:
    """Median (and/or mean) of the pair KLs per group, with the statistic's bootstrap interval.

    The interval is the percentile interval of the group's statistic over the shared
    resamples. Columns: the ``by`` labels, ``n``, ``sd`` and, per statistic, ``<stat>``,
    ``<stat>_lo``, ``<stat>_hi``.
    """
    f = pairs.frame
    rows = []
    for key, g in f.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = len(g)
        row["sd"] = float(g.kl.std(ddof=1)) if len(g) > 1 else float("nan")
        for stat in statistics:
            fn = _STATISTICS[stat]
            row[stat] = float(fn(g.kl.to_numpy()))
            reps = fn(pairs.reps[:, g.index.to_numpy()], axis=1)
            row[f"{stat}_lo"], row[f"{stat}_hi"] = interval(reps)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_records(chapter: str, table: pd.DataFrame) -> list[dict[str, Any]]:
    """Result records (:mod:`kltools.results` ``summaries``) of a :func:`summarise` table.

    Group labels other than ``setting`` (e.g. ``type``) are kept as fields of the record.
    """
    out = []
    stats = [s for s in _STATISTICS if s in table.columns]
    labels = [
        c
        for c in table.columns
        if c not in ("setting", "n", "sd") and c not in stats and not c.endswith(("_lo", "_hi"))
    ]
    for row in table.to_dict("records"):
        for stat in stats:
            out.append(
                {
                    "chapter": chapter,
                    "setting": str(row["setting"]),
                    "statistic": stat,
                    "value": row[stat],
                    "n_pairs": int(row["n"]),
                    "lo": row[f"{stat}_lo"],
                    "hi": row[f"{stat}_hi"],
                    **{k: row[k] for k in labels},
                }
            )
    return out
