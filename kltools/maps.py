"""Maps of models (paper Figs. 1 and 2): PCA (= classical MDS) and t-SNE of the scaled
double-centred coordinates, whose squared distances are KL in bits/byte.

Generic: points of any store (:func:`flat_points`, :func:`layer_points`) projected to two
dimensions (:func:`project_2d`, :func:`model_map`). The maps of the settings are built where
the settings are: Fig. 1 in :mod:`kltools.settings.trajectories`, Fig. 2 in
:mod:`kltools.settings.quantization`, :mod:`kltools.settings.finetuning` and
:mod:`kltools.settings.layers`. Nothing here imports a setting.
"""

from __future__ import annotations

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
