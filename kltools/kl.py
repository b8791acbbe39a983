"""The estimator: double-centred log-likelihood vectors and the KL scale.

For K models scored on the same N texts, ``L[i, s]`` is the summed log-likelihood (nats) of
text ``s`` under model ``i``. Double-centring gives ``Q = L - row means - column means + grand
mean`` and

    KL(p_i, p_j) ~= ||q_i - q_j||^2 / (2N)                 nats per text
                 = Var_s(l_i(x_s) - l_j(x_s)) / 2          (population variance)

which, divided by ``B̄ ln 2`` (B̄ = mean UTF-8 bytes per text), is in bits per byte.

Inputs are :class:`xarray.DataArray` objects with a ``text`` dimension and a ``text_bytes``
coordinate on it (as stores provide them); ``mean_bytes=`` overrides B̄. All arithmetic is
float64 whatever the input dtype. This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from kltools.errors import KLToolsError

__all__ = [
    "TEXT_DIM",
    "UNITS",
    "CI",
    "bootstrap_kl",
    "check_compatible",
    "concat_units",
    "double_centre",
    "kl_between",
    "kl_matrix",
    "map_coordinates",
    "mean_bytes_of",
    "nats_to_bpb",
    "half_variance",
    "interval",
    "resample_counts",
    "resample_indices",
    "resampled_half_variance",
]

#: name of the text dimension in every log-likelihood array
TEXT_DIM = "text"
#: accepted ``units=`` values -> the ``units`` attribute written on results
UNITS = {"bpb": "bit/byte", "nats": "nat/text"}
#: attributes that must agree before arrays from different stores are combined
COMPAT_ATTRS = ("textset_sha256", "bos_policy")
#: texts per chunk in the Gram accumulation is chosen so a chunk holds about this many bytes
_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------
# numpy core


def double_centre(L: np.ndarray) -> np.ndarray:
    """Double-centre a K x N matrix in float64.

    Parameters
    ----------
    L : array_like, shape (K, N)
        Log-likelihoods, one row per model.

    Returns
    -------
    numpy.ndarray, shape (K, N), float64
        ``L - row means - column means + grand mean``: every row and column sums to zero.
    """
    L = np.asarray(L, dtype=np.float64)
    if L.ndim != 2:
        raise KLToolsError(f"double_centre needs a 2-D (models x texts) array, got {L.ndim}-D")
    row = L.mean(axis=1, keepdims=True)
    col = L.mean(axis=0, keepdims=True)
    return L - row - col + row.mean()


def _sq_dist_batch(L: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Squared distances ``||q_i - q_j||^2`` of the double-centred rows, for a batch of matrices.

    Parameters
    ----------
    L : numpy.ndarray, shape (B, K, N)
        Any float dtype; converted to float64 chunk by chunk.
    chunk : int, optional
        Texts per chunk (default: about 64 MiB of float64 per chunk).

    Returns
    -------
    numpy.ndarray, shape (B, K, K), float64
        Symmetric, zero diagonal, clipped at 0. Gram form ``diag + diag^T - 2 G`` with
        ``G = Q Q^T`` accumulated over text chunks.
    """
    B, K, N = L.shape
    if chunk is None:
        chunk = max(1, _CHUNK_BYTES // (8 * max(K, 1)))
    out = np.empty((B, K, K), dtype=np.float64)
    for b in range(B):
        Lb = L[b]
        row = Lb.mean(axis=1, dtype=np.float64)  # (K,)
        grand = row.mean()
        G = np.zeros((K, K), dtype=np.float64)
        for s in range(0, N, chunk):
            Lc = np.asarray(Lb[:, s : s + chunk], dtype=np.float64)
            Qc = Lc - row[:, None] - Lc.mean(axis=0, keepdims=True) + grand
            G += Qc @ Qc.T
        d = np.diag(G)
        D = d[:, None] + d[None, :] - 2.0 * G
        np.maximum(D, 0.0, out=D)
        D = 0.5 * (D + D.T)
        np.fill_diagonal(D, 0.0)
        out[b] = D
    return out


# --------------------------------------------------------------------------------------------
# xarray helpers


def _check_units(units: str) -> str:
    if units not in UNITS:
        raise KLToolsError(f"units must be one of {sorted(UNITS)}, not {units!r}")
    return units


def _check_dims(loglik: xr.DataArray, dim: str) -> list[Hashable]:
    """The non-text, non-``dim`` dims of ``loglik``, after validating the layout."""
    if not isinstance(loglik, xr.DataArray):
        raise KLToolsError(
            f"expected an xarray.DataArray of log-likelihoods, got {type(loglik).__name__}; "
            "pass ds.loglik"
        )
    if TEXT_DIM not in loglik.dims:
        raise KLToolsError(f"log-likelihoods need a {TEXT_DIM!r} dimension; got {loglik.dims}")
    if dim not in loglik.dims:
        raise KLToolsError(f"dimension {dim!r} not in the log-likelihoods {tuple(loglik.dims)}")
    if dim == TEXT_DIM:
        raise KLToolsError("dim must be a model dimension, not 'text'")
    if loglik.sizes[TEXT_DIM] < 1:
        raise KLToolsError("the log-likelihoods hold no texts")
    return [d for d in loglik.dims if d not in (dim, TEXT_DIM)]


def mean_bytes_of(loglik: xr.DataArray | xr.Dataset, mean_bytes: float | None = None) -> float:
    """B̄: ``mean_bytes`` if given, else the mean of the ``text_bytes`` coordinate.

    Raises
    ------
    KLToolsError
        If neither is available or B̄ is not positive.
    """
    if mean_bytes is None:
        if "text_bytes" not in loglik.coords:
            raise KLToolsError(
                "no 'text_bytes' coordinate to compute bits/byte; pass mean_bytes= or units='nats'"
            )
        mean_bytes = float(np.asarray(loglik.coords["text_bytes"], dtype=np.float64).mean())
    mean_bytes = float(mean_bytes)
    if not math.isfinite(mean_bytes) or mean_bytes <= 0:
        raise KLToolsError(f"mean bytes per text must be positive, got {mean_bytes}")
    return mean_bytes


def _label(da: xr.DataArray, dim: str, i: int, others: dict[Hashable, int]) -> str:
    """A readable label such as ``model='tiny-s', step=64`` for error messages."""
    parts = []
    for d, k in {**others, dim: i}.items():
        value = da[d].values[k] if d in da.coords else k
        value = value.item() if isinstance(value, np.generic) else value
        parts.append(f"{d}={value!r}" if isinstance(value, str) else f"{d}={value}")
    return ", ".join(parts)


def _pair_template(loglik: xr.DataArray, dim: str) -> tuple[xr.DataArray, xr.DataArray]:
    """Coordinate templates without the text dim, for ``dim`` and for ``dim_``."""
    template = loglik.isel({TEXT_DIM: 0}, drop=True)
    template = template.drop_vars(
        [c for c in template.coords if TEXT_DIM in loglik[c].dims], errors="ignore"
    )
    renames = {dim: f"{dim}_"}
    for c in template.coords:
        if dim in template[c].dims and c != dim:
            renames[c] = f"{c}_"
    return template, template.rename(renames)


def _provenance(loglik: xr.DataArray) -> dict[str, Any]:
    return {k: v for k, v in loglik.attrs.items() if k not in ("units", "long_name")}


def _as_batch(
    loglik: xr.DataArray, dim: str, skipna: bool
) -> tuple[np.ndarray, list[Hashable], np.ndarray]:
    """``loglik`` as (B, K, N) plus the other dims and a (B, K) mask of complete labels."""
    others = _check_dims(loglik, dim)
    arr = loglik.transpose(*others, dim, TEXT_DIM).values
    K, N = arr.shape[-2], arr.shape[-1]
    L = arr.reshape(-1, K, N)
    finite = np.isfinite(L).all(axis=2)  # (B, K)
    if not finite.all() and not skipna:
        b, i = map(int, np.argwhere(~finite)[0])
        other_idx = dict(
            zip(others, np.unravel_index(b, [loglik.sizes[d] for d in others]) if others else [])
        )
        raise KLToolsError(
            f"log-likelihoods of {_label(loglik, dim, i, other_idx)} contain NaN/inf (an "
            "unfinished unit?); finish the extraction or pass skipna=True to drop such labels"
        )
    return L, others, finite


def _sq_dist_masked(L: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Squared distances with rows that are not complete set to NaN (per batch slice)."""
    B, K, _ = L.shape
    if finite.all():
        return _sq_dist_batch(L)
    out = np.full((B, K, K), np.nan)
    for b in range(B):
        keep = np.flatnonzero(finite[b])
        if keep.size:
            out[b][np.ix_(keep, keep)] = _sq_dist_batch(L[b : b + 1, keep])[0]
    return out


def _wrap_pairs(
    values: np.ndarray,
    loglik: xr.DataArray,
    dim: str,
    others: list[Hashable],
    name: str,
    attrs: dict[str, Any],
) -> xr.DataArray:
    shape = [loglik.sizes[d] for d in others] + [loglik.sizes[dim]] * 2
    template, template_ = _pair_template(loglik, dim)
    out = xr.DataArray(values.reshape(shape), dims=(*others, dim, f"{dim}_"), name=name)
    out = out.assign_coords(template.coords).assign_coords(template_.coords)
    out.attrs = attrs
    return out


def _drop_empty_labels(out: xr.DataArray, dim: str, finite: np.ndarray) -> xr.DataArray:
    """Drop labels of ``dim`` that are incomplete in every slice (``skipna=True``)."""
    keep = finite.any(axis=0)
    if keep.all():
        return out
    return out.isel({dim: np.flatnonzero(keep), f"{dim}_": np.flatnonzero(keep)})


def half_variance(d: Any, axis: int = -1) -> Any:
    """The estimator on differences: ``Var(d) / 2`` over ``axis`` (population variance, in
    float64), where ``d = l_i - l_j`` holds two models' log-likelihoods (nats) on the same
    texts; equal to ``||q_i - q_j||^2 / (2N)`` of the double-centred vectors. KL in nats per
    text; :func:`nats_to_bpb` puts it in bits/byte."""
    return np.asarray(d, dtype=np.float64).var(axis=axis) / 2.0


def nats_to_bpb(kl_nats: Any, mean_bytes: Any) -> Any:
    """KL in nats per text -> bits per byte: divide by ``B̄ ln 2`` (the book's one conversion).

    Works on floats and numpy arrays (broadcasting ``mean_bytes``).
    """
    return kl_nats / (np.asarray(mean_bytes, dtype=np.float64) * math.log(2.0))


#: the coverage of every bootstrap interval of the book (:func:`interval`)
CI = 0.95


def interval(reps: Any, level: float = CI, axis: int = 0) -> tuple[Any, Any]:
    """The percentile interval of bootstrap replicates: quantiles ``(1 -+ level) / 2`` along
    ``axis`` (the book's one interval; ``level`` 0.95 unless a caller asks otherwise)."""
    if not 0.0 < float(level) < 1.0:
        raise KLToolsError(f"the interval's level must be between 0 and 1, not {level!r}")
    alpha = (1.0 - float(level)) / 2.0
    lo, hi = np.quantile(np.asarray(reps, dtype=np.float64), [alpha, 1.0 - alpha], axis=axis)
    return lo, hi


def resample_counts(n_texts: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_texts)``: how often each text is drawn in each of :func:`resample_indices`'s
    resamples (the weights the one bootstrap engine, :func:`resampled_half_variance`, takes)."""
    idx = resample_indices(n_texts, n_boot, seed)
    return np.stack([np.bincount(row, minlength=n_texts) for row in idx]).astype(np.float64)


def resampled_half_variance(
    d: np.ndarray, weights: np.ndarray, text_bytes: np.ndarray | None = None
) -> np.ndarray:
    """The book's one bootstrap engine: ``Var(d) / 2`` of every row of ``d`` on every resample.

    ``d``: ``(P, N)`` log-likelihood differences (nats) of ``P`` pairs on ``N`` texts;
    ``weights``: ``(n_boot, N)`` draw counts of each text in each resample
    (:func:`resample_counts`); ``text_bytes``: when given, each replicate is converted to
    bits/byte with B̄ of its own resample, else it stays in nats. Returns ``(n_boot, P)``.
    A weighted variance with draw counts equals the variance of the resampled vector, so
    this is the resample's ``||q_i - q_j||^2 / (2N)`` without building it.
    """
    d = np.asarray(d, dtype=np.float64)
    d = d - d.mean(axis=1, keepdims=True)  # centring first keeps the subtraction exact enough
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1, keepdims=True)
    total = np.where(total > 0, total, np.nan)
    mean = (w @ d.T) / total
    second = (w @ (d * d).T) / total
    half = (second - mean * mean) / 2.0
    if text_bytes is None:
        return half
    mean_bytes = (w @ np.asarray(text_bytes, dtype=np.float64)) / total[:, 0]
    return nats_to_bpb(half, mean_bytes[:, None])


def resample_indices(n_texts: int, n_boot: int, seed: int) -> np.ndarray:
    """The book's bootstrap resamples: ``(n_boot, n_texts)`` text positions drawn with
    replacement by ``numpy.random.default_rng(seed)`` (row ``r`` is resample ``r``).

    :func:`bootstrap_kl` and :class:`kltools.pairs.Resamples` both draw their resamples here
    (through :func:`resample_counts`) and compute their replicates with
    :func:`resampled_half_variance`, so the same seed means the same replicates everywhere.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise KLToolsError(f"n_boot must be an integer >= 2, not {n_boot!r}")
    return np.random.default_rng(seed).integers(0, n_texts, size=(n_boot, n_texts))


def _scale(units: str, n_texts: int, mean_bytes: float | None) -> float:
    """Divisor turning ``||q_i - q_j||^2`` into KL in ``units``."""
    if units == "nats":
        return 2.0 * n_texts
    return 2.0 * n_texts / float(nats_to_bpb(1.0, mean_bytes))


def _unit_attrs(units: str, n_texts: int, mean_bytes: float | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "units": UNITS[units],
        "long_name": "KL divergence estimate, ||q_i - q_j||^2 / (2N)"
        + (" / (mean_bytes ln 2)" if units == "bpb" else ""),
        "n_texts": int(n_texts),
    }
    if mean_bytes is not None:
        attrs["mean_bytes"] = float(mean_bytes)
    return attrs


# --------------------------------------------------------------------------------------------
# public API


def kl_matrix(
    loglik: xr.DataArray,
    dim: str = "model",
    *,
    units: str = "bpb",
    mean_bytes: float | None = None,
    skipna: bool = False,
) -> xr.DataArray:
    """Pairwise KL estimates between the labels of ``dim``.

    Parameters
    ----------
    loglik : xarray.DataArray
        Log-likelihoods in nats with dims ``dim``, ``text`` and possibly others (each other
        dim is broadcast: one K x K matrix per combination of their labels).
    dim : str
        The dimension whose labels are compared.
    units : {"bpb", "nats"}
        Bits per byte (divide by ``B̄ ln 2``) or nats per text.
    mean_bytes : float, optional
        B̄; default the mean of the ``text_bytes`` coordinate.
    skipna : bool
        If False, a label whose vector holds NaN/inf raises; if True, its row and column are
        NaN in that slice and labels incomplete in every slice are dropped.

    Returns
    -------
    xarray.DataArray
        Dims ``(*other dims, dim, dim + "_")``; the coordinates of ``dim`` are repeated on
        ``dim + "_"`` (non-index coordinates get a trailing ``_``). Symmetric, zero diagonal,
        non-negative. ``attrs``: ``units`` ("bit/byte" or "nat/text"), ``long_name``,
        ``n_texts``, ``mean_bytes`` (bpb) and the provenance attrs of ``loglik``.
    """
    _check_units(units)
    L, others, finite = _as_batch(loglik, dim, skipna)
    n = L.shape[-1]
    mb = mean_bytes_of(loglik, mean_bytes) if units == "bpb" else None
    values = _sq_dist_masked(L, finite) / _scale(units, n, mb)
    attrs = {**_provenance(loglik), **_unit_attrs(units, n, mb)}
    out = _wrap_pairs(values, loglik, dim, others, "kl", attrs)
    return _drop_empty_labels(out, dim, finite) if skipna else out


def kl_between(
    a: np.ndarray | xr.DataArray,
    b: np.ndarray | xr.DataArray,
    mean_bytes: float | None = None,
    units: str = "bpb",
) -> float:
    """KL estimate between two log-likelihood vectors: ``Var(a - b) / 2`` (ddof 0).

    The direct formula, independent of the Gram form used by :func:`kl_matrix`.

    Parameters
    ----------
    a, b : array_like or xarray.DataArray, shape (N,)
        Log-likelihoods (nats) of the same texts.
    mean_bytes : float, optional
        B̄; default the ``text_bytes`` coordinate of ``a`` (if a DataArray).
    units : {"bpb", "nats"}

    Returns
    -------
    float
        KL in bits/byte or nats/text.
    """
    _check_units(units)
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or x.size == 0:
        raise KLToolsError(f"kl_between needs two vectors of equal length, got {x.size}, {y.size}")
    v = float(np.var(x - y)) / 2.0
    if units == "nats":
        return v
    if mean_bytes is None and not isinstance(a, xr.DataArray):
        raise KLToolsError("kl_between in bits/byte needs mean_bytes= (or units='nats')")
    mb = mean_bytes_of(a, mean_bytes) if mean_bytes is None else float(mean_bytes)
    return float(nats_to_bpb(v, mb))


def map_coordinates(
    loglik: xr.DataArray, dim: str = "model", *, mean_bytes: float | None = None
) -> xr.DataArray:
    """Scaled double-centred coordinates: ``Q / sqrt(2 N B̄ ln 2)``.

    Squared Euclidean distances between rows equal the KL estimates in bits/byte, so the
    result can go straight into PCA or t-SNE.

    Parameters
    ----------
    loglik : xarray.DataArray
        Dims ``(dim, text)`` only; stack other dims first, e.g.
        ``loglik.stack(unit=("model", "step"))`` with ``dim="unit"``.
    dim : str
    mean_bytes : float, optional
        B̄; default the mean of ``text_bytes``.

    Returns
    -------
    xarray.DataArray, float64
        Dims ``(dim, text)`` with the coordinates of ``loglik``.
    """
    others = _check_dims(loglik, dim)
    if others:
        raise KLToolsError(
            f"map_coordinates needs dims ({dim!r}, 'text'), got {tuple(loglik.dims)}; stack the "
            f"others first, e.g. loglik.stack(unit={tuple([dim, *others])}) and dim='unit'"
        )
    arr = loglik.transpose(dim, TEXT_DIM)
    L = arr.values
    if not np.isfinite(L).all():
        i = int(np.flatnonzero(~np.isfinite(L).all(axis=1))[0])
        raise KLToolsError(
            f"log-likelihoods of {_label(loglik, dim, i, {})} contain NaN/inf; drop that label"
        )
    mb = mean_bytes_of(loglik, mean_bytes)
    Q = double_centre(L) * math.sqrt(float(nats_to_bpb(1.0, mb)) / (2.0 * L.shape[1]))
    out = arr.copy(data=Q)
    out.name = "coords"
    out.attrs = {
        **_provenance(loglik),
        "units": "sqrt(bit/byte)",
        "long_name": "scaled double-centred log-likelihood, Q / sqrt(2 N mean_bytes ln 2)",
        "mean_bytes": mb,
    }
    return out


def bootstrap_kl(
    loglik: xr.DataArray,
    dim: str = "model",
    *,
    n_boot: int = 100,
    seed: int = 0,
    units: str = "bpb",
    ci: float = 0.95,
    mean_bytes: float | None = None,
    keep_replicates: bool = False,
) -> xr.Dataset:
    """KL estimates with bootstrap errors over texts.

    Each replicate resamples the N texts with replacement (the same texts for every label and
    every other dim), double-centres the resample, and recomputes B̄ on it (unless
    ``mean_bytes`` is given).

    Parameters
    ----------
    loglik : xarray.DataArray
        As for :func:`kl_matrix` (no NaN).
    dim : str
    n_boot : int
        Replicates (at least 2).
    seed : int
        Seed of the ``numpy.random.default_rng`` drawing the resamples.
    units : {"bpb", "nats"}
    ci : float
        Coverage of the percentile interval (0 < ci < 1).
    mean_bytes : float, optional
        Fixed B̄ for every replicate instead of the resample's mean of ``text_bytes``.
    keep_replicates : bool
        Also return the replicates as variable ``replicates`` with a leading ``boot`` dim.

    Returns
    -------
    xarray.Dataset
        ``kl`` (point estimate on all texts), ``se`` (standard deviation of the replicates,
        ddof 1), ``lo`` and ``hi`` (percentiles ``(1 -+ ci) / 2``), each with the dims of
        :func:`kl_matrix`; attrs ``n_boot``, ``seed``, ``ci``.
    """
    _check_units(units)
    weights = resample_counts(loglik.sizes.get(TEXT_DIM, 0), n_boot, seed)
    if not 0.0 < float(ci) < 1.0:
        raise KLToolsError(f"ci must be between 0 and 1, not {ci!r}")
    point = kl_matrix(loglik, dim, units=units, mean_bytes=mean_bytes)
    L, others, _ = _as_batch(loglik, dim, skipna=False)
    B, K, _ = L.shape
    nb = None
    if units == "bpb" and mean_bytes is None:
        mean_bytes_of(loglik)  # raises when there is no text_bytes coordinate
        nb = np.asarray(loglik.coords["text_bytes"].values, dtype=np.float64)
    iu, ju = np.triu_indices(K, k=1)
    d = (L[:, iu, :] - L[:, ju, :]).reshape(B * iu.size, -1)
    half = resampled_half_variance(d, weights, nb)
    if units == "bpb" and nb is None:
        half = nats_to_bpb(half, mean_bytes)
    reps = np.zeros((n_boot, B, K, K), dtype=np.float64)
    reps[:, :, iu, ju] = half.reshape(n_boot, B, iu.size)
    reps[:, :, ju, iu] = reps[:, :, iu, ju]
    lo, hi = interval(reps, ci)
    se = reps.std(axis=0, ddof=1)
    attrs = dict(point.attrs)

    def wrap(v: np.ndarray, name: str) -> xr.DataArray:
        return _wrap_pairs(v, loglik, dim, others, name, attrs)

    data = {"kl": point, "se": wrap(se, "se"), "lo": wrap(lo, "lo"), "hi": wrap(hi, "hi")}
    if keep_replicates:
        data["replicates"] = xr.concat([wrap(r, "replicates") for r in reps], dim="boot")
    return xr.Dataset(data, attrs={**attrs, "n_boot": n_boot, "seed": seed, "ci": float(ci)})


def check_compatible(*objs: xr.DataArray | xr.Dataset) -> None:
    """Refuse to combine arrays/stores whose ``textset_sha256`` or ``bos_policy`` differ.

    Objects that lack an attribute are not compared on it (synthetic arrays carry none).

    Raises
    ------
    KLToolsError
        Naming the attribute, both values, and what to do.
    """
    for key in COMPAT_ATTRS:
        seen = [(i, o.attrs[key]) for i, o in enumerate(objs) if key in o.attrs]
        for i, value in seen[1:]:
            if value != seen[0][1]:
                what = (
                    "re-extract both on the same text set"
                    if key == "textset_sha256"
                    else "re-extract both with the same bos policy"
                )
                raise KLToolsError(
                    f"cannot combine: {key} differs ({seen[0][1]!r} in input {seen[0][0]} vs "
                    f"{value!r} in input {i}); {what}"
                )


def concat_units(
    objs: Sequence[xr.DataArray | xr.Dataset] | Iterable[xr.DataArray | xr.Dataset],
    dim: str = "model",
) -> xr.DataArray:
    """Concatenate log-likelihood arrays from several stores along ``dim``.

    Parameters
    ----------
    objs : sequence of DataArray or Dataset
        Log-likelihood arrays (a Dataset contributes its ``loglik`` variable); all must hold
        the same texts in the same order and pass :func:`check_compatible`.
    dim : str
        Existing or new dimension to concatenate along. Other non-text dims are outer-joined
        (missing combinations become NaN; use ``skipna=True`` downstream).

    Returns
    -------
    xarray.DataArray
        With the attrs of the first input.
    """
    arrays = []
    for o in objs:
        if isinstance(o, xr.Dataset):
            if "loglik" not in o:
                raise KLToolsError("a Dataset passed to concat_units has no 'loglik' variable")
            o = o["loglik"].assign_attrs({**o.attrs, **o["loglik"].attrs})
        arrays.append(o)
    if not arrays:
        raise KLToolsError("concat_units needs at least one array")
    check_compatible(*arrays)
    first = arrays[0]
    for i, a in enumerate(arrays[1:], start=1):
        if TEXT_DIM not in a.dims or a.sizes[TEXT_DIM] != first.sizes[TEXT_DIM]:
            raise KLToolsError(f"cannot combine: input {i} does not hold the same texts as input 0")
        if TEXT_DIM in first.coords and TEXT_DIM in a.coords:
            if not np.array_equal(first[TEXT_DIM].values, a[TEXT_DIM].values):
                raise KLToolsError(
                    f"cannot combine: the text labels of input {i} differ from input 0; "
                    "use stores extracted on the same text set"
                )
    try:
        out = xr.concat(
            arrays,
            dim=dim,
            join="outer",
            coords="minimal",
            compat="override",
            combine_attrs="override",
        )
    except ValueError as e:
        raise KLToolsError(f"cannot concatenate along {dim!r}: {e}") from e
    return out
