"""Our extraction against the authors': the same model, revision and texts, vector by vector.

When the release is present, the ``pythia`` profile scores the authors' texts
(``texts.json``) and can set every vector it extracts beside the authors' vector of the same
run and step (:func:`compare_pretraining`): the largest per-text difference in nats, the
correlation over texts, and the KL between the two vectors on the book's scale (half the
variance of the difference over B̄ ln 2, bits/byte) — a number to read beside the numerical
floor: two extractions of one checkpoint that differ by more than the floor differ in their
pipeline (dtype, batch, padding, special tokens), not by chance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kltools.errors import KLToolsError
from kltools.kl import half_variance, nats_to_bpb
from kltools.released.fetch import ENV, default_dir
from kltools.released.importer import run_model
from kltools.released.layout import Release, text_ids
from kltools.released.manifest import MANIFEST

__all__ = ["COLUMNS", "compare_pretraining", "compare_vectors", "local_release"]

#: the columns of :func:`compare_pretraining`
COLUMNS: tuple[str, ...] = ("model", "step", "max_abs_nats", "correlation", "kl_bpb")


def local_release() -> Path | None:
    """A release folder already on this machine (``$KLTOOLS_RELEASED_DIR``, or the default
    download folder holding a manifest), or None: never downloads."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser() if Path(env).expanduser().is_dir() else None
    d = default_dir()
    return d if (d / MANIFEST).is_file() else None


def compare_vectors(ours: np.ndarray, theirs: np.ndarray, mean_bytes: float) -> dict[str, float]:
    """``max_abs_nats``, ``correlation`` and ``kl_bpb`` between two vectors of one model."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        raise KLToolsError(f"vectors of {a.shape[0]} and {b.shape[0]} texts cannot be compared")
    d = a - b
    corr = float(np.corrcoef(a, b)[0, 1]) if a.size > 1 and a.std() > 0 and b.std() > 0 else np.nan
    return {
        "max_abs_nats": float(np.abs(d).max()),
        "correlation": corr,
        "kl_bpb": float(nats_to_bpb(half_variance(d), mean_bytes)),
    }


def compare_pretraining(loglik: xr.DataArray, rel: Release) -> pd.DataFrame:
    """Every checkpoint of ``loglik`` ``(model, step, text)`` the release also has.

    ``loglik`` must be scored on the release's texts (ids ``t00000`` …, in order): the
    ``pythia`` profile does so when the release is present. Checkpoints missing on either
    side are left out. Columns :data:`COLUMNS`.
    """
    n = rel.n_texts()
    ids = [str(t) for t in loglik["text"].values]
    if ids != list(text_ids(n))[: len(ids)] or len(ids) != n:
        raise KLToolsError(
            "the store was not scored on the release's texts.json; extract with the release "
            "present (the pythia profile then scores its texts)"
        )
    theirs = {(run_model(run), int(step)): v for run, per in rel.pretraining().items()
              for step, v in per.items() if v is not None}  # fmt: skip
    mean_bytes = rel.mean_bytes()
    rows = []
    for m in loglik["model"].values:
        for t in loglik["step"].values:
            key = (str(m), int(t))
            ours = loglik.sel(model=m, step=t).values
            if key not in theirs or not np.isfinite(ours).all():
                continue
            rows.append(
                {"model": key[0], "step": key[1], **compare_vectors(ours, theirs[key], mean_bytes)}
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))
