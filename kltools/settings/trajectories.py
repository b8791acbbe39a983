"""The pretraining trajectories (paper Fig. 1): every checkpoint of every run on one map.

The runs of group ``all`` (every run, preprocessed together, as the paper's Fig. 1) are
placed by t-SNE or PCA of their scaled double-centred vectors (:func:`trajectory_map`); the
segment between consecutive checkpoints is as wide as their KL. :func:`straightness` and
:func:`travel_report` say how winding the paths are and how far apart the seeds end, and
:func:`trajectory_comparison` sets the chapter's numbers beside the paper's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from kltools.config import Settings
from kltools.settings.pretraining import consecutive, group, seed

__all__ = ["straightness", "trajectory_comparison", "trajectory_map", "travel_report"]


def _checkpoints(s: Settings) -> xr.DataArray:
    """Every complete checkpoint of group ``all`` as ``(ckpt, text)`` (labels ``model@step``)."""
    ll = group(s, "all").loglik
    st = ll.stack(ckpt=("model", "step")).transpose("ckpt", "text")
    st = st.isel(ckpt=np.flatnonzero(np.isfinite(st).all("text").values))
    models = [str(m) for m, _ in st.ckpt.values]
    steps = [int(t) for _, t in st.ckpt.values]
    return xr.DataArray(
        st.values,
        dims=("ckpt", "text"),
        coords={
            "ckpt": [f"{m}@{t}" for m, t in zip(models, steps)],
            "model": ("ckpt", models),
            "step": ("ckpt", steps),
            "size": ("ckpt", ll["size"].sel(model=models).values),
            "seed": ("ckpt", ll["seed"].sel(model=models).values),
            "text_bytes": ("text", ll["text_bytes"].values),
        },
    )


def trajectory_map(s: Settings, method: str = "tsne") -> pd.DataFrame:
    """Fig. 1: every checkpoint of every run (preprocessed together) on a 2-D map.

    t-SNE with ``s.tsne_perplexity`` and ``s.seed`` (the paper: 30, seed 42), or PCA.
    Columns ``ckpt``, ``model``, ``step``, ``size``, ``seed``, ``x``, ``y``.
    """
    from kltools.kl import map_coordinates
    from kltools.maps import project_2d

    coords = map_coordinates(_checkpoints(s), dim="ckpt")
    return project_2d(coords, "ckpt", method, perplexity=s.tsne_perplexity, seed=s.seed)


def straightness(s: Settings) -> pd.DataFrame:
    """How winding each trajectory is (group ``all``): chord / path on the map.

    Per run: ``path`` = Σ √(consecutive KL), ``chord`` = √KL(first, last), ``straightness``
    = chord / path (1 = a straight line), ``kl_first_last``.
    """
    from kltools.kl import kl_between

    ll = group(s, "all").loglik
    rows = []
    for m, part in consecutive(s, "all").frame.groupby("model", sort=False):
        kl = kl_between(
            ll.sel(model=m, step=int(part.step.min())),
            ll.sel(model=m, step=int(part.step_next.max())),
        )
        path = float(np.sqrt(part.kl.clip(lower=0)).sum())
        rows.append(
            {
                "model": m,
                "checkpoints": len(part) + 1,
                "kl_first_last": kl,
                "path": path,
                "chord": math.sqrt(kl),
                "straightness": math.sqrt(kl) / path if path > 0 else np.nan,
            }
        )
    return pd.DataFrame(rows)


def travel_report(s: Settings) -> str:
    """The seed runs' final distance set against the distance each run travelled (Markdown)."""
    st = straightness(s)
    seeds = seed(s).frame
    start_end = float(st.kl_first_last.median())
    seed_kl = float(seeds.kl.mean()) if len(seeds) else float("nan")
    ratio = seed_kl / start_end
    verdict = "close together" if ratio < 0.1 else "far apart"
    return (
        f"Straightness ranges from {st.straightness.min():.2f} to {st.straightness.max():.2f} "
        f"(median {st.straightness.median():.2f}). At their last common step the seed runs are "
        f"{seed_kl:.3f} bits/byte apart on average (the Seed setting), against a median of "
        f"{start_end:.3f} bits/byte travelled from the first to the last checkpoint: the seeds "
        f"end {verdict} relative to the distance travelled (ratio {ratio:.3f})."
    )


def trajectory_comparison(s: Settings, tsne: pd.DataFrame) -> pd.DataFrame:
    """Fig. 1's settings and claims beside ours (a short table)."""
    from kltools.claims import early_late_rates, early_segments_wider

    st = straightness(s)
    cons = consecutive(s, "all")
    trend = early_segments_wider(cons, s.after_step)
    rates = early_late_rates(cons, s.after_step)
    runs = len(group(s, "all").models)
    return pd.DataFrame(
        [
            (
                "checkpoints on the map",
                "5 sizes × 154 + 7 seeds × 154 (minus 1)",
                f"{len(tsne)} ({runs} runs, preprocessed together)",
                "",
            ),
            (
                "t-SNE settings",
                "perplexity 30, PCA init, seed 42",
                f"perplexity {tsne.attrs['perplexity']:g}, PCA init, seed {s.seed}",
                "",
            ),
            (
                "trajectories spiral (winding paths)",
                "yes (qualitative, Fig. 1)",
                f"straightness median {st.straightness.median():.2f} (1 = straight)",
                "not tested (qualitative in the paper)",
            ),
            (
                "consecutive KL large early, small late (segment widths)",
                "yes",
                f"median consecutive KL, first / last third after warm-up, median over runs: "
                f"{rates.early.median():.3g} / {rates.late.median():.3g} bits/byte",
                trend.verdict,
            ),
        ],
        columns=["claim or setting", "paper", "ours", "verdict"],
    )
