"""The text set, the shared resamples and the stores every setting reads, per profile.

Every chapter of a profile scores the SAME texts (:func:`analysis_texts`), so every KL of the
book sits on one scale. Stores are filled by the run's source (:mod:`kltools.sources`: the
models are extracted, or published vectors imported); nothing here knows which. Stores live in ``data_root(profile)/<name>.zarr``; extraction goes
through :func:`kltools.extract` (resumable: finished units are read, missing ones scored).
Results are cached per :class:`~kltools.config.Settings`, so the settings of one chapter
share one extraction and one preprocessing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kltools.config import Settings
from kltools.errors import KLToolsError
from kltools.pairs import Resamples

__all__ = [
    "analysis_texts",
    "describe_texts",
    "finetuning_store",
    "floor_store",
    "layer_stores",
    "pretraining_store",
    "pretraining_units",
    "quantization_store",
    "require_models",
    "resamples",
    "store_path",
    "text_positions",
]


def analysis_texts(s: Settings) -> Any:
    """The texts every chapter of the run scores (:func:`kltools.sources.analysis_texts`)."""
    from kltools.sources import analysis_texts as texts_of_run

    return texts_of_run(s)


@functools.lru_cache(maxsize=8)
def resamples(s: Settings) -> Resamples:
    """The profile's shared bootstrap resamples of the analysis texts (``s.n_boot``, ``s.seed``)."""
    return Resamples.draw(len(analysis_texts(s).texts), s.n_boot, s.seed)


def text_positions(s: Settings, loglik: xr.DataArray) -> np.ndarray:
    """Positions of ``loglik``'s texts in the analysis text set (for the shared resamples)."""
    ids = list(analysis_texts(s).ids)
    where = {t: i for i, t in enumerate(ids)}
    try:
        return np.asarray([where[str(t)] for t in loglik["text"].values], dtype=np.int64)
    except KeyError as exc:
        raise KLToolsError(f"text {exc} is not in the analysis text set; re-extract") from None


def store_path(s: Settings, name: str) -> Path:
    """``data_root(profile)/<name>.zarr``."""
    from kltools.paths import data_root

    return data_root(s.profile) / f"{name}.zarr"


def require_models(s: Settings, specs: Iterable[str]) -> None:
    """Check every model before any work, so a missing one fails at once with one message."""
    from kltools.sources import check_models

    check_models(s, specs)


def _extract(s: Settings, units: list[Any], path: Path, **kw: Any) -> Any:
    """Fill the store at ``path`` with ``units`` from the run's source (extract or import)."""
    from kltools.sources import fill_store

    return fill_store(s, units, path, **kw)


def _pretraining_path(s: Settings) -> Path:
    """``pretraining.zarr``, or a keyed sibling if that store holds other texts/BOS/dtype."""
    base = store_path(s, "pretraining")
    if not base.exists():
        return base
    import zarr

    attrs = dict(zarr.open_group(str(base), mode="r").attrs)
    texts = analysis_texts(s)
    if (attrs.get("textset_sha256"), attrs.get("bos_policy"), attrs.get("dtype")) == (
        texts.sha256,
        s.bos,
        s.dtype,
    ):
        return base
    key = hashlib.sha256(f"{texts.sha256}|{s.bos}|{s.dtype}".encode()).hexdigest()[:10]
    return store_path(s, f"pretraining-{s.bos}-{s.dtype}-{key}")


def pretraining_units(s: Settings) -> list[Any]:
    """The extraction units of every checkpoint of every pretraining run (``s.steps`` only).

    One :class:`kltools.extraction.Unit` per run and step, spec ``<run>@step<S>`` (suite) or
    ``EleutherAI/pythia-<size>@step<S>``, coords ``{"model": run, "step": S}``; a checkpoint
    the paper excludes (``pythia-1b@step116000``) is left out. What :func:`pretraining_store`
    extracts, and what a cluster user fills the store with (``book/gpu.md``).
    """
    from kltools.extraction import Unit
    from kltools.sources import pretraining_runs

    wanted = {int(t) for t in s.steps} if s.steps else None
    units = [
        Unit(r.spec(t), {"model": r.model, "step": int(t)})
        for r in pretraining_runs(s)
        for t in r.steps
        if wanted is None or t in wanted
    ]
    if not units:
        raise KLToolsError(f"no checkpoint of profile {s.profile!r} is at the steps {s.steps}")
    return units


@functools.lru_cache(maxsize=4)
def pretraining_store(s: Settings) -> xr.Dataset:
    """Every checkpoint of every pretraining run: ``loglik(model, step, text)``.

    Coordinates on ``model``: ``size``, ``seed``, ``n_params``, ``in_sizes``, ``in_seeds``,
    ``spec_base``; attrs ``store_path``. A checkpoint a run lacks (or the paper excludes) is NaN.
    """
    from kltools.sources import pretraining_runs
    from kltools.store import open_store

    runs = pretraining_runs(s)
    units = pretraining_units(s)
    path = _pretraining_path(s)
    _extract(s, units, path)
    ds = open_store(path, dims=("model", "step"))
    steps = sorted({int(u.coords["step"]) for u in units})
    ds = ds.sel(model=[r.model for r in runs], step=steps)
    ds = ds.assign_coords(
        size=("model", [r.size for r in runs]),
        seed=("model", [r.seed for r in runs]),
        n_params=("model", [r.n_params for r in runs]),
        in_sizes=("model", [r.in_sizes for r in runs]),
        in_seeds=("model", [r.in_seeds for r in runs]),
        spec_base=("model", [r.spec_base for r in runs]),
    )
    ds.attrs["store_path"] = str(path)
    return ds


@functools.lru_cache(maxsize=4)
def quantization_store(s: Settings) -> xr.Dataset:
    """Each base (``variant="full"``) and its usable quantized copies: dims (model, variant)."""
    from kltools.extraction import Unit
    from kltools.sources import quant_catalogue
    from kltools.store import open_store

    cat = quant_catalogue(s)
    require_models(s, [*cat.base_spec, *cat.spec])
    units = []
    for model, g in cat.groupby("model", sort=False):
        units.append(Unit(g.base_spec.iloc[0], {"model": model, "variant": "full"}))
        units += [
            Unit(r.spec, {"model": model, "variant": r.variant}, None, r.quantization)
            for r in g[g.usable].itertuples()
        ]
    path = store_path(s, "quantization")
    _extract(s, units, path)
    if not cat.quantization.notna().any():
        return open_store(path, dims=("model", "variant"))
    # hub copies are quantized at load time: their units also differ in ``quantization``, which
    # the variant determines; collapse that label (the other cells are NaN)
    ds = open_store(path, dims=("model", "variant", "quantization"))
    loglik = ds.loglik.max("quantization", skipna=True, keep_attrs=True)
    return ds.drop_dims("quantization").assign(loglik=loglik)


#: floor setting -> (dtype, batch size; None = the run's batch size)
FLOOR_SETTINGS: dict[str, tuple[str, int | None]] = {
    "fp32": ("float32", None),
    "bf16": ("bfloat16", None),
    "fp16": ("float16", None),
    "batch1": ("float32", 1),
    "batch64": ("float32", 64),
}


@functools.lru_cache(maxsize=4)
def floor_store(s: Settings, bos: str | None = None) -> xr.Dataset:
    """Each floor model under every floor setting: dims (model, setting).

    ``bos`` other than ``s.bos`` extracts the fp32 vectors under that policy instead (store
    ``floor_<bos>``), for the BOS comparison.
    """
    from kltools.extraction import Unit
    from kltools.sources import floor_models
    from kltools.store import open_store

    specs = floor_models(s)
    require_models(s, specs.values())
    names = ("fp32",) if bos not in (None, s.bos) else s.floor_settings
    unknown = sorted(set(names) - set(FLOOR_SETTINGS))
    if unknown:
        raise KLToolsError(f"unknown floor setting(s) {unknown}; known: {list(FLOOR_SETTINGS)}")
    path = store_path(s, "floor" if bos in (None, s.bos) else f"floor_{bos}")
    groups: dict[int | None, list[Any]] = {}
    for name in names:
        dtype, bs = FLOOR_SETTINGS[name]
        for label, spec in specs.items():
            unit = Unit(spec, {"model": label, "setting": name}, dtype)
            groups.setdefault(bs or s.batch_size or None, []).append(unit)
    for bs, units in groups.items():
        _extract(s, units, path, batch_size=bs, bos=bos or s.bos)
    ds = open_store(path, dims=("model", "setting", "dtype"))
    # each setting has one dtype: collapse the dtype dim (the other cells are NaN)
    loglik = ds.loglik.max("dtype", skipna=True, keep_attrs=True)
    return ds.drop_dims("dtype").assign(loglik=loglik)


@functools.lru_cache(maxsize=4)
def finetuning_store(s: Settings) -> xr.Dataset:
    """Every lineage model: dims (model, text)."""
    from kltools.extraction import Unit
    from kltools.sources import lineages
    from kltools.store import open_store

    table, _ = lineages(s)
    specs = dict(zip(table.model, table.spec))
    require_models(s, specs.values())
    path = store_path(s, "finetuning")
    _extract(s, [Unit(spec, {"model": label}) for label, spec in specs.items()], path)
    return open_store(path, dims=("model",)).sel(model=list(specs))


@functools.lru_cache(maxsize=4)
def layer_stores(s: Settings) -> tuple[xr.Dataset, ...]:
    """Logit-lens log-likelihoods of every layer model, one store per depth: (model, layer, text).

    Layer 0 is the embedding output, the last layer the model's own output.
    """
    from kltools.extraction import Unit
    from kltools.sources import layer_count, layer_models

    specs = layer_models(s)
    require_models(s, specs.values())
    by_depth: dict[int, list[Any]] = {}
    for label, spec in specs.items():
        by_depth.setdefault(layer_count(s, spec), []).append(Unit(spec, {"model": label}))
    return tuple(
        _extract(s, units, store_path(s, f"layers_L{depth}"), layers="all")
        for depth, units in sorted(by_depth.items())
    )


def describe_texts(s: Settings) -> str:
    """One Markdown sentence: the text set every chapter of the profile scores."""
    ts = analysis_texts(s)
    return f"Text set `{ts.name}`: **{len(ts.texts)} texts**, B̄ = {ts.mean_bytes:.1f} bytes/text."
