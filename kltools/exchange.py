"""Exchange formats: a store's vectors to netCDF or CSV, and vectors from elsewhere into a store.

``export_store(store, "out.nc")``
    The finished units as a netCDF file with CF attributes: the same variables and
    coordinates ``xarray.open_zarr`` shows (one stacked ``unit`` dim, labels as coordinates,
    ``loglik`` float32 in nats, ``text_bytes``, ``n_tokens``, ``resolved``/``run`` JSON
    records) and the store's provenance attributes. Written by xarray's default netCDF engine
    (netCDF4 if installed, else netCDF-3 through scipy, which stores integers as int32).
``export_store(store, "out.csv")``
    Long format, one row per unit x [layer x] text: the unit labels, ``spec``, ``dtype``,
    ``quantization``, [``layer``,] ``text``, ``text_bytes``, ``n_tokens``, ``loglik``
    (written as the float64 value of the stored float32, so it reads back exactly).
``import_vectors(source, store, ...)``
    The reverse, from a ``.nc`` or ``.csv`` written by the export (or by hand in the same
    shape), or from a pickle of ``{name: array}`` (for instance released log-likelihood
    vectors: one float array of summed log-likelihoods in nats per model, in the order of a
    text set, which must be given; read by the restricted unpickler of
    :mod:`kltools.safepickle`, so a pickle that would run code is refused unread). Imported units join the store like extracted ones (same
    text-set, BOS-policy and layer guards) and every analysis reads them; their ``run``
    record names the file they came from. ``n_tokens`` is -1 where the source has none.

Pickles are read with :func:`kltools.safepickle.safe_load`, which accepts only containers,
scalars and numpy arrays and refuses a pickle that names anything else (which could run code)
before it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError

#: columns of a CSV export that are not unit labels
_CSV_FIXED = (
    "spec",
    "dtype",
    "quantization",
    "layer",
    "text",
    "text_bytes",
    "n_tokens",
    "loglik",
    "domain",
)


def _suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise KLToolsError(f"{what} {path} must end in {' or '.join(allowed)}")
    return suffix


def _nc_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes netCDF can hold: None dropped, bools as ints, other lists as JSON."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, (list, tuple)):
            if v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                out[k] = np.asarray(v, dtype=np.int32)
            else:
                out[k] = json.dumps(list(v))
        else:
            out[k] = v
    return out


def export_store(store: Any, to: Any) -> Path:
    """Write the finished units of a store to ``to`` (``.nc`` or ``.csv``); return the path."""
    from kltools.store import open_units, unit_labels

    dest = Path(to)
    kind = _suffix(dest, (".nc", ".csv"), "--to")
    flat = open_units(store).drop_vars(["row", "done"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".nc":
        ds = flat.copy()
        ds.attrs = _nc_attrs({**flat.attrs, "exported_from": str(store)})
        for name in ds.variables:
            ds[name].attrs = _nc_attrs(ds[name].attrs)
            ds[name].encoding = {}
        ds.to_netcdf(dest)
        return dest
    import pandas as pd

    labels = unit_labels(flat)
    unit_cols = [*labels, "spec", "dtype", "quantization"]
    ll = np.asarray(flat["loglik"].values, dtype=np.float64)
    n_unit, n_text = ll.shape[0], ll.shape[-1]
    n_layer = ll.shape[1] if ll.ndim == 3 else 1
    per_row = n_layer * n_text
    cols: dict[str, Any] = {
        k: np.repeat(np.asarray(flat[k].values, dtype=object), per_row) for k in unit_cols
    }
    if ll.ndim == 3:
        cols["layer"] = np.tile(np.repeat(flat["layer"].values, n_text), n_unit)
    cols["text"] = np.tile(np.asarray(flat["text"].values, dtype=object), n_unit * n_layer)
    cols["text_bytes"] = np.tile(flat["text_bytes"].values, n_unit * n_layer)
    nt = np.asarray(flat["n_tokens"].values)
    cols["n_tokens"] = np.repeat(nt, n_layer, axis=0).ravel() if ll.ndim == 3 else nt.ravel()
    cols["loglik"] = ll.ravel()
    pd.DataFrame(cols).to_csv(dest, index=False)
    return dest


# --------------------------------------------------------------------------- import


def _flat_from_nc(source: Path) -> Any:
    import xarray as xr

    with xr.open_dataset(source) as ds:
        flat = ds.load()
    if "loglik" not in flat or "unit" not in flat["loglik"].dims:
        raise KLToolsError(
            f"{source} has no loglik variable with a unit dim; export one with kltools export"
        )
    for name in list(flat.variables):
        if flat[name].dtype.kind in ("S", "O", "U", "T"):
            flat[name] = flat[name].astype(str).astype(object)
    return flat


def _flat_from_csv(source: Path) -> Any:
    import pandas as pd
    import xarray as xr

    frame = pd.read_csv(source, keep_default_na=False, na_values=[""])
    for col in ("text", "loglik"):
        if col not in frame.columns:
            raise KLToolsError(f"{source} has no {col!r} column; give a long-format CSV")
    labels = [c for c in frame.columns if c not in _CSV_FIXED]
    if not labels:
        raise KLToolsError(f"{source} has no unit label column (e.g. model); add one")
    if "spec" not in frame.columns:
        frame["spec"] = frame[labels].astype(str).agg("/".join, axis=1)
    ukeys = [*labels, "spec"] + [c for c in ("dtype", "quantization") if c in frame.columns]
    units = frame[ukeys].drop_duplicates().reset_index(drop=True)
    texts = list(dict.fromkeys(frame["text"].astype(str)))
    layered = "layer" in frame.columns
    layers = sorted({int(v) for v in frame["layer"]}) if layered else None
    shape = (len(units), len(layers), len(texts)) if layered else (len(units), len(texts))
    ll = np.full(shape, np.nan, dtype=np.float32)
    nt = np.full((len(units), len(texts)), -1, dtype=np.int32)
    u_index = {tuple(r): i for i, r in enumerate(units.itertuples(index=False, name=None))}
    t_index = {t: i for i, t in enumerate(texts)}
    rows = frame[ukeys].itertuples(index=False, name=None)
    ui = np.fromiter((u_index[r] for r in rows), dtype=np.int64, count=len(frame))
    ti = frame["text"].astype(str).map(t_index).to_numpy()
    values = frame["loglik"].to_numpy(dtype=np.float64).astype(np.float32)
    if layered:
        li = frame["layer"].astype(int).map({v: i for i, v in enumerate(layers)}).to_numpy()
        ll[ui, li, ti] = values
    else:
        ll[ui, ti] = values
    if "n_tokens" in frame.columns:
        nt[ui, ti] = frame["n_tokens"].to_numpy(dtype=np.int64)
    if np.isnan(ll).any():
        raise KLToolsError(f"{source} lacks some (unit, text) rows or has empty loglik values")
    coords: dict[str, Any] = {k: ("unit", units[k].tolist()) for k in labels}
    coords["spec"] = ("unit", units["spec"].astype(str).tolist())
    for k in ("dtype", "quantization"):
        if k in units.columns:
            coords[k] = ("unit", units[k].astype(str).tolist())
    coords["text"] = ("text", texts)
    if "text_bytes" in frame.columns:
        tb = frame.drop_duplicates("text").set_index(frame.drop_duplicates("text")["text"])
        coords["text_bytes"] = ("text", tb.loc[texts, "text_bytes"].to_numpy(dtype=np.int64))
    inner = ["layer", "text"] if layered else ["text"]
    if layered:
        coords["layer"] = ("layer", layers)
    return xr.Dataset(
        {"loglik": (["unit", *inner], ll), "n_tokens": (("unit", "text"), nt)}, coords=coords
    )


def _flat_from_pickle(source: Path, dim: str) -> Any:
    import xarray as xr

    from kltools.safepickle import safe_load

    obj = safe_load(source)
    if not isinstance(obj, Mapping) or not obj:
        raise KLToolsError(f"{source} does not hold a non-empty {{name: array}} mapping")
    names = [str(k) for k in obj]
    arrays = [np.asarray(v, dtype=np.float64) for v in obj.values()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise KLToolsError(
            f"{source}: every vector must be one-dimensional and of one length, got {shapes}"
        )
    ll = np.stack(arrays).astype(np.float32)
    return xr.Dataset(
        {
            "loglik": (("unit", "text"), ll),
            "n_tokens": (("unit", "text"), np.full(ll.shape, -1, dtype=np.int32)),
        },
        coords={dim: ("unit", names), "spec": ("unit", names)},
    )


def _check_texts_match(flat: Any, ids: tuple[str, ...], n_bytes: Any, what: str) -> None:
    got = [str(t) for t in flat["text"].values] if "text" in flat.coords else None
    if got is not None and tuple(got) != tuple(ids):
        raise KLToolsError(
            f"the texts of the file ({len(got)}, first {got[:2]}) are not those of {what} "
            f"({len(ids)}, first {list(ids[:2])}); give the matching --texts or store"
        )
    if got is None and flat.sizes["text"] != len(ids):
        raise KLToolsError(
            f"the vectors have {flat.sizes['text']} entries but {what} has {len(ids)} texts; "
            "give the text set the vectors were computed on"
        )
    if "text_bytes" in flat.coords and not np.array_equal(
        np.asarray(flat["text_bytes"].values, dtype=np.int64), np.asarray(n_bytes, np.int64)
    ):
        raise KLToolsError(f"the text_bytes of the file differ from those of {what}")


def import_vectors(
    source: Any,
    store: Any,
    *,
    texts: Any = None,
    dim: str = "model",
    bos: str | None = None,
    dtype: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Add the vectors of ``source`` (``.nc``, ``.csv``, ``.pkl``) to a store as done units.

    Parameters
    ----------
    source : str or path
    store : str or path
        Created if missing; otherwise its text set, BOS policy and layers must match.
    texts : TextSet, optional
        The texts the vectors were computed on. Needed for a pickle or CSV going into a new
        store (it gives the text ids, their bytes and the text-set hash); checked against the
        file's text ids when both are there. A netCDF export carries its own.
    dim : str
        The label of the units of a pickle (its keys), default ``model``.
    bos, dtype : str, optional
        BOS policy and weight dtype to record for a pickle or a CSV without them (default:
        the store's, else ``paper`` and ``float32``).
    log : callable, optional
        Gets one line per unit (added or skipped).

    Returns
    -------
    list of str
        The labels of the units added.
    """
    from kltools import store as kstore
    from kltools.extraction import unit_label

    src = Path(source)
    if not src.is_file():
        raise KLToolsError(f"no file {src}; give a .nc, .csv or .pkl file")
    kind = _suffix(src, (".nc", ".csv", ".pkl", ".pickle"), "--from")
    if kind == ".nc":
        flat = _flat_from_nc(src)
    elif kind == ".csv":
        flat = _flat_from_csv(src)
    else:
        flat = _flat_from_pickle(src, dim)
    dest = Path(store)
    existing = kstore.open_units(dest) if (dest / "zarr.json").is_file() else None
    src_attrs = dict(flat.attrs)
    if texts is not None:
        _check_texts_match(flat, texts.ids, texts.n_bytes, f"text set {texts.name!r}")
        text_side = kstore.TextSide(texts.ids, texts.n_bytes, texts.domains)
        sha, name = texts.sha256, texts.name
    elif existing is not None:
        text_side = kstore.texts_of(existing)
        _check_texts_match(flat, text_side.ids, text_side.n_bytes, f"store {dest}")
        sha, name = existing.attrs["textset_sha256"], existing.attrs["textset_name"]
    elif "textset_sha256" in src_attrs and "text_bytes" in flat.coords:
        text_side = kstore.texts_of(flat)
        sha, name = src_attrs["textset_sha256"], src_attrs.get("textset_name", src.stem)
    else:
        raise KLToolsError(
            f"{src} does not say which texts its vectors score; give --texts (the text set "
            "they were computed on)"
        )
    store_attrs = existing.attrs if existing is not None else {}
    layers = src_attrs.get("layers", store_attrs.get("layers"))
    if "layer" in flat.dims:
        layers = [int(v) for v in flat["layer"].values]
    elif isinstance(layers, (np.ndarray, list)):
        layers = [int(v) for v in layers]
    else:
        layers = None
    bos = bos or src_attrs.get("bos_policy") or store_attrs.get("bos_policy") or "paper"
    run_dtype = dtype or src_attrs.get("dtype") or store_attrs.get("dtype") or "float32"
    text_side.sha256, text_side.name = sha, name
    header = {
        **{k: v for k, v in src_attrs.items() if k not in ("format", "store_id", "exported_from")},
        **kstore.base_header(text_side, bos=bos, layers=layers),
        "dtype": run_dtype,
        "imported_from": str(src),
    }
    if kind == ".nc" and "created" in src_attrs:
        header["created"] = src_attrs["created"]
    labels = kstore.unit_labels(flat)
    if not labels:
        raise KLToolsError(f"{src} has no unit labels (e.g. a model coordinate along unit)")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records, metas = [], []
    for j in range(flat.sizes["unit"]):
        coords = {k: kstore.label_value(flat[k].values[j]) for k in labels}
        q = str(flat["quantization"].values[j]) if "quantization" in flat.coords else ""
        resolved = {"kind": "imported", "path_or_id": str(src), "commit": None}
        run: dict[str, Any] = {}
        if "resolved" in flat.variables:
            resolved = json.loads(str(flat["resolved"].values[j]) or "null") or resolved
        if "run" in flat.variables and str(flat["run"].values[j]):
            run = json.loads(str(flat["run"].values[j]))
        records.append(
            {
                "spec": str(flat["spec"].values[j]),
                "coords": coords,
                "dtype": str(flat["dtype"].values[j]) if "dtype" in flat.coords else run_dtype,
                "quantization": kstore.quantization_of(q),
                "resolved": resolved,
            }
        )
        metas.append({**run, "imported_from": str(src), "imported": now})
    rows = kstore.prepare(dest, text_side, header, records, log=log)
    ll = np.asarray(flat["loglik"].values, dtype=np.float32)
    nt = np.asarray(flat["n_tokens"].values) if "n_tokens" in flat else None
    added = []
    for j, (row, rec) in enumerate(zip(rows, records)):
        label = unit_label(rec)
        if kstore.unit_done(dest, row):
            if log:
                log(f"kltools: skip {label} (already in the store)")
            continue
        ntok = nt[j] if nt is not None else np.full(ll.shape[-1], -1, dtype=np.int32)
        kstore.write_unit(dest, row, ll[j], ntok, metas[j])
        added.append(label)
        if log:
            log(f"kltools: imported {label}")
    return added
