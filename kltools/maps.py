"""Maps of models (paper Figs. 1 and 2): PCA (= classical MDS) and t-SNE of the scaled
double-centred coordinates, whose squared distances are KL in bits/byte.

- Fig. 1: every checkpoint of every pretraining run, preprocessed together (group ``all``,
  :func:`trajectory_map`), segments from :func:`kltools.settings.pretraining.consecutive`.
- Fig. 2: quantized copies, lineages and layer trajectories (:func:`model_map`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.config import Settings
from kltools.errors import KLToolsError

__all__ = [
    "flat_points",
    "layer_points",
    "model_map",
    "project_2d",
    "straightness",
    "trajectory_map",
]


def project_2d(
    coords: xr.DataArray, dim: str, method: str = "pca", *, perplexity: float = 30.0, seed: int = 42
) -> pd.DataFrame:
    """A 2-D picture of the rows of ``coords`` (``(dim, text)``): ``"tsne"`` or ``"pca"``.

    t-SNE as the paper: scikit-learn, PCA initialisation, ``random_state=seed``, perplexity
    capped at ``(n - 1) / 3`` so that few points still work. Returns ``x``, ``y`` and every
    coordinate on ``dim``; attrs ``method`` and ``perplexity`` (t-SNE) or ``explained`` (PCA).
    """
    X = np.asarray(coords.transpose(dim, "text").values, dtype=np.float64)
    n = X.shape[0]
    attrs: dict[str, Any] = {"method": method}
    if method == "tsne":
        from sklearn.manifold import TSNE

        perp = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
        xy = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(X)
        attrs["perplexity"] = perp
    elif method == "pca":
        from sklearn.decomposition import PCA

        k = min(2, n)
        pca = PCA(n_components=k, random_state=seed).fit(X)
        xy = pca.transform(X)
        xy = xy if k == 2 else np.column_stack([xy, np.zeros(len(xy))])
        attrs["explained"] = [float(v) for v in pca.explained_variance_ratio_]
    else:
        raise KLToolsError(f"unknown projection {method!r}; use 'tsne' or 'pca'")
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    for c, v in coords.coords.items():
        if v.dims == (dim,):
            df[c] = v.values
    df.attrs.update(attrs)
    return df


def _checkpoints(s: Settings) -> xr.DataArray:
    """Every complete checkpoint of group ``all`` as ``(ckpt, text)`` (labels ``model@step``)."""
    from kltools.settings.pretraining import group

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

    coords = map_coordinates(_checkpoints(s), dim="ckpt")
    return project_2d(coords, "ckpt", method, perplexity=s.tsne_perplexity, seed=s.seed)


def straightness(s: Settings) -> pd.DataFrame:
    """How winding each trajectory is (group ``all``): chord / path on the map.

    Per run: ``path`` = Σ √(consecutive KL), ``chord`` = √KL(first, last), ``straightness``
    = chord / path (1 = a straight line), ``kl_first_last``.
    """
    from kltools.kl import kl_between
    from kltools.settings.pretraining import consecutive, group

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


def flat_points(loglik: xr.DataArray, dims: Sequence[str]) -> xr.DataArray:
    """Stack ``dims`` into one ``point`` dim (labels as coordinates), dropping incomplete vectors."""
    st = loglik.stack(point=tuple(dims)).transpose("point", "text").reset_index("point")
    st = st.isel(point=np.flatnonzero(np.isfinite(st.values).all(axis=1)))
    return st.assign_coords(point=np.arange(st.sizes["point"]))


def layer_points(datasets: Sequence[xr.Dataset]) -> xr.DataArray:
    """All (model, layer) vectors of several lens stores as one ``(point, text)`` array.

    Coordinates ``model``, ``layer`` and ``depth`` on ``point``.
    """
    from kltools.kl import check_compatible

    check_compatible(*[ds.loglik.assign_attrs(ds.attrs) for ds in datasets])
    parts = []
    for ds in datasets:
        pts = flat_points(ds.loglik, ("model", "layer"))
        parts.append(
            pts.assign_coords(
                depth=("point", [int(ds.loglik.layer.values[-1])] * pts.sizes["point"])
            )
        )
    out = xr.concat(parts, dim="point")
    return out.assign_coords(point=np.arange(out.sizes["point"]))


def model_map(
    loglik: xr.DataArray,
    s: Settings,
    dim: str = "point",
    method: str = "pca",
    *,
    perplexity: float | None = None,
) -> pd.DataFrame:
    """Fig. 2 maps: PCA or t-SNE of ``loglik``'s rows along ``dim`` (use :func:`flat_points` /
    :func:`layer_points` to make one). t-SNE's perplexity: ``perplexity``, else
    ``s.tsne_perplexity`` (the paper's fine-tuning map uses ``s.ft_tsne_perplexity``, 20)."""
    from kltools.kl import map_coordinates

    perp = s.tsne_perplexity if perplexity is None else perplexity
    return project_2d(map_coordinates(loglik, dim=dim), dim, method, perplexity=perp, seed=s.seed)


def quant_map_points(
    loglik: xr.DataArray, variants: Sequence[str] | None = ("8-bit",)
) -> xr.DataArray:
    """The quantization store's vectors (``(model, variant, text)``) as map points: every base
    model (variant ``full``) and its copies of ``variants``.

    ``variants`` are Fig. 3 setting names (``"8-bit"``: LLM.int8(), as the paper's Fig. 2a,
    which shows the originals and their 8-bit copies only) or scheme names; None keeps every
    copy.
    """
    from kltools.settings.quantization import PAPER_SCHEMES

    pts = flat_points(loglik, ("model", "variant"))
    if variants is None:
        return pts
    schemes = {k for k, v in PAPER_SCHEMES.items() if v in variants} | set(variants)
    keep = np.flatnonzero(np.isin(pts["variant"].values, ["full", *schemes]))
    return pts.isel(point=keep).assign_coords(point=np.arange(keep.size))


def travel_report(s: Settings) -> str:
    """The seed runs' final distance set against the distance each run travelled (Markdown)."""
    from kltools.settings.pretraining import seed

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
    from kltools.claims import early_segments_wider
    from kltools.settings.pretraining import consecutive, group

    st = straightness(s)
    trend = early_segments_wider(consecutive(s, "all"))
    cons = consecutive(s, "all").frame.groupby("model").kl
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
                f"first/last consecutive KL, median over runs: {cons.first().median():.3g} / "
                f"{cons.last().median():.3g} bits/byte",
                trend.verdict,
            ),
        ],
        columns=["claim or setting", "paper", "ours", "verdict"],
    )
