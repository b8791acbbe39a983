"""The store of log-likelihood vectors: an xarray dataset in a zarr (v3) directory.

``xarray.open_zarr(path)`` reads a store with nothing from kltools::

    <xarray.Dataset>
    Dimensions:       (unit: 238, text: 300)            # + layer: L+1 for a logit-lens store
    Coordinates:
        model         (unit) <U8  'tiny-xs' 'tiny-xs' …  # one variable per unit label
        step          (unit) int64 0 1 2 4 …
        spec          (unit) str  'tiny-xs@step0' …      # what resolve_model took
        dtype         (unit) str  'float32' …            # weight dtype of the unit
        quantization  (unit) str  'none' …               # bitsandbytes scheme or 'none'
        done          (unit) bool True True … False      # the unit's region is complete
        resolved      (unit) str   JSON: where the model came from (kind, path, commit)
        run           (unit) str   JSON: the run that computed it (times, tokens, device, …)
      * text          (text) str  'suite-0000' …
        text_bytes    (text) int64 …                     # UTF-8 bytes per text
        domain        (text) str  …                      # where the text set knows it
    Data variables:
        loglik        (unit, text) float32 …   units: nat, long_name: summed log-likelihood
        n_tokens      (unit, text) int32 …     tokens scored per text (-1: unknown, imported)
    Attributes: format, store_id, provenance (textset_sha256, textset_name, bos_policy, dtype,
        device, layers, kltools/torch/transformers versions, created, mean_bytes, n_text)

``unit`` is a stacked dimension: one row per extraction unit (model x revision x variant),
its labels are coordinates along it (``ds.set_index(unit=["model", "step"]).unstack("unit")``
gives the grid). Rows whose ``done`` is False are pending (NaN). :func:`open_store` is the
convenience that keeps only finished rows, unstacks them into their labels, converts
``quantization='none'`` to None and checks the view is unambiguous.

Writes
------
The unit dimension grows by appending: :func:`prepare` resizes every ``unit`` array, writes
the new rows' labels and refreshes the consolidated metadata (readers that open the
consolidated snapshot always see arrays of one length). Finished rows are never rewritten.
Each unit then writes only its own chunks (``loglik`` and ``n_tokens`` are chunked one row
per chunk, ``run`` and ``done`` one element per chunk), in the order loglik, n_tokens, run,
done. Every chunk and metadata write of zarr's local store is a write to a temporary file and
an atomic rename, so a process killed at any moment leaves a readable store in which the
unit in flight is simply not done; rerunning the same extraction computes only the rest.

Several writers
---------------
Writers coordinate through leases (:mod:`kltools.leases`) in a folder next to the store,
``.<store name>.writers/`` (so the store itself stays a pure zarr hierarchy): ``meta`` while
a writer creates the store or appends rows, ``u<row>`` while it computes a unit. See
:mod:`kltools.leases` for what is safe where (local disks and NFS: yes; object stores: no).

Older stores
------------
Stores of the layout before this one (``kltools-loglik/1``: ``units/u<i>`` groups, a
``texts`` group, arrays without dimension names) are read by :func:`open_store` as they are
and converted once, keeping every finished unit, when :func:`prepare` (any extraction or
import) first writes to them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError

FORMAT = "kltools-loglik/2"
FORMAT_V1 = "kltools-loglik/1"
_UNIT_FIELDS = ("spec", "dtype", "quantization")
#: names of the store's own variables, which no unit label may take
RESERVED = (
    "unit",
    "text",
    "layer",
    "spec",
    "dtype",
    "quantization",
    "done",
    "run",
    "resolved",
    "loglik",
    "n_tokens",
    "text_bytes",
    "domain",
)
#: rows per chunk of the label arrays (written only by :func:`prepare`, under its lease)
LABEL_CHUNK = 256
_NONE = "none"


# --------------------------------------------------------------------------- paths, opening


def writers_dir(path: Any) -> Path:
    """The folder of the leases of a store: ``.<name>.writers`` next to it."""
    p = Path(path)
    return p.parent / f".{p.name}.writers"


def _backup_path(path: Path) -> Path:
    return path.parent / f".{path.name}.v1-backup"


def _format_of(path: Path) -> str:
    """The ``format`` root attribute of a store, or a one-line error."""
    _recover_conversion(path)
    meta = path / "zarr.json"
    if not meta.is_file():
        if path.exists():
            raise KLToolsError(
                f"{path} exists but is not a kltools store; give another --store path"
            )
        raise KLToolsError(f"no store at {path}; create it with kltools extract")
    try:
        fmt = json.loads(meta.read_text()).get("attributes", {}).get("format")
    except ValueError:
        fmt = None
    if fmt not in (FORMAT, FORMAT_V1):
        raise KLToolsError(f"{path} is a zarr store but not a kltools store ({FORMAT})")
    return str(fmt)


def _root_attrs(path: Path) -> dict[str, Any]:
    return dict(json.loads((path / "zarr.json").read_text()).get("attributes", {}))


def _array(path: Path, name: str, mode: str = "r") -> Any:
    import zarr

    return zarr.open_array(str(path / name), mode=mode)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence zarr's notes on consolidated metadata (not in the v3 spec, used on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def _consolidate(path: Path) -> None:
    import zarr

    with _quiet():
        zarr.consolidate_metadata(str(path))


# --------------------------------------------------------------------------- header, checks


def run_header(
    texts: Any, *, bos: str, layers: Sequence[int] | None, dtype: str, device: str
) -> dict[str, Any]:
    """Provenance attrs of a store created for this run."""
    import torch
    import transformers

    return {
        **base_header(texts, bos=bos, layers=layers),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "dtype": dtype,
        "device": device,
    }


def base_header(texts: Any, *, bos: str, layers: Sequence[int] | None) -> dict[str, Any]:
    """The attrs every store has, whatever wrote it (extraction or import)."""
    from kltools import __version__

    return {
        "format": FORMAT,
        "kltools_version": __version__,
        "bos_policy": bos,
        "textset_sha256": texts.sha256,
        "textset_name": texts.name,
        "mean_bytes": float(np.mean(np.asarray(texts.n_bytes, dtype=np.float64))),
        "n_text": len(texts.ids),
        "layers": list(layers) if layers is not None else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _check_compatible(path: Path, attrs: Mapping[str, Any], header: Mapping[str, Any]) -> None:
    """Refuse to add to a store built on another text set, BOS policy or layer list."""
    if attrs.get("textset_sha256") != header["textset_sha256"]:
        raise KLToolsError(
            f"store {path} was built on text set {attrs.get('textset_name')!r} "
            f"(sha256 {str(attrs.get('textset_sha256'))[:12]}) but the texts given are "
            f"{header['textset_name']!r} (sha256 {header['textset_sha256'][:12]}); "
            "use another --store"
        )
    if attrs.get("bos_policy") != header["bos_policy"]:
        raise KLToolsError(
            f"store {path} was built with --bos {attrs.get('bos_policy')}, not "
            f"{header['bos_policy']}; use the same policy or another --store"
        )
    if attrs.get("layers") != header["layers"]:
        raise KLToolsError(
            f"store {path} holds layers {attrs.get('layers')}, not {header['layers']}; "
            "use the same --layers or another --store"
        )


def _key(rec: Mapping[str, Any]) -> str:
    """Identity of a unit record: spec, coords, dtype, quantization."""
    return json.dumps(
        [rec["spec"], sorted(rec["coords"].items()), rec["dtype"], rec["quantization"]]
    )


def _label(rec: Mapping[str, Any]) -> str:
    """Identity of a unit in the unstacked view: coords, dtype, quantization."""
    return json.dumps([sorted(rec["coords"].items()), rec["dtype"], rec["quantization"]])


def _label_kinds(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{label: "int" | "str"}`` for the units' coords; mixed kinds are refused."""
    kinds: dict[str, set[str]] = {}
    for rec in records:
        for k, v in rec["coords"].items():
            if k in RESERVED:
                raise KLToolsError(
                    f"unit {rec['spec']!r}: coordinate name {k!r} is a variable of the store; "
                    f"use another name (not {', '.join(RESERVED)})"
                )
            kinds.setdefault(k, set()).add("str" if isinstance(v, str) else "int")
    for k, ks in kinds.items():
        if len(ks) > 1:
            raise KLToolsError(
                f"unit label {k!r} mixes integers and strings; give every unit the same kind"
            )
    return {k: ks.pop() for k, ks in kinds.items()}


def _check_units(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> None:
    """Units must share coordinate names (and kinds) and have distinct labels."""
    allrecs = [*old, *new]
    names = {tuple(sorted(r["coords"])) for r in allrecs}
    if len(names) > 1:
        raise KLToolsError(
            f"units in one store must share coordinate names, got {sorted(names)}; "
            "give every unit the same coords keys"
        )
    _label_kinds(allrecs)
    seen: dict[str, str] = {}
    for rec in allrecs:
        lab, key = _label(rec), _key(rec)
        if lab in seen and seen[lab] != key:
            raise KLToolsError(
                f"units {json.loads(seen[lab])[0]!r} and {rec['spec']!r} have the same coords "
                f"{rec['coords']} (dtype {rec['dtype']}, quantization {rec['quantization']}); "
                "give them distinct coords"
            )
        seen[lab] = key


# --------------------------------------------------------------------------- creating


def _create(path: Path, texts: Any, header: Mapping[str, Any], kinds: Mapping[str, str]) -> None:
    """Build an empty store in a temporary sibling folder and rename it into place.

    ``texts`` needs ``ids``, ``n_bytes`` and ``domains`` (a TextSet or the like).
    """
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w")
        n_text = len(texts.ids)
        layers = header.get("layers")
        inner = (len(layers), n_text) if layers is not None else (n_text,)
        inner_dims = ("layer", "text") if layers is not None else ("text",)
        unit_coords = [*kinds, "spec", "dtype", "quantization", "done", "resolved", "run"]
        text_coords = ["text_bytes"] + (["domain"] if texts.domains is not None else [])
        coords_attr = " ".join([*unit_coords, *text_coords])

        def unit_array(name: str, dtype: Any, fill: Any, chunk: int, attrs: dict) -> None:
            a = root.create_array(
                name,
                shape=(0,),
                chunks=(chunk,),
                dtype=dtype,
                fill_value=fill,
                dimension_names=("unit",),
            )
            a.attrs.update(attrs)

        ll = root.create_array(
            "loglik",
            shape=(0, *inner),
            chunks=(1, *inner),
            dtype="float32",
            fill_value=np.nan,
            dimension_names=("unit", *inner_dims),
        )
        ll.attrs.update(
            {
                "units": "nat",
                "long_name": "summed log-likelihood",
                "description": "natural log of the probability of each text under each unit, "
                "summed over the scored tokens (see the BOS policy)",
                "coordinates": coords_attr,
            }
        )
        nt = root.create_array(
            "n_tokens",
            shape=(0, n_text),
            chunks=(1, n_text),
            dtype="int32",
            fill_value=0,
            dimension_names=("unit", "text"),
        )
        nt.attrs.update(
            {"long_name": "tokens scored per text (-1: unknown)", "coordinates": coords_attr}
        )
        for k, kind in kinds.items():
            dtype = "int64" if kind == "int" else str
            unit_array(k, dtype, 0 if kind == "int" else "", LABEL_CHUNK, {"long_name": k})
        unit_array("spec", str, "", LABEL_CHUNK, {"long_name": "model spec (resolve_model)"})
        unit_array("dtype", str, "", LABEL_CHUNK, {"long_name": "weight dtype"})
        unit_array("quantization", str, "", LABEL_CHUNK, {"long_name": "quantization scheme"})
        unit_array(
            "resolved",
            str,
            "",
            LABEL_CHUNK,
            {"long_name": "model source (JSON: kind, path, commit)"},
        )
        unit_array("run", str, "", 1, {"long_name": "record of the run that wrote the unit (JSON)"})
        unit_array(
            "done", "bool", False, 1, {"long_name": "the unit's loglik and n_tokens are complete"}
        )
        t = root.create_array("text", shape=(n_text,), dtype=str, dimension_names=("text",))
        t[:] = np.asarray(list(texts.ids), dtype=object)
        t.attrs.update({"long_name": "text id"})
        tb = root.create_array(
            "text_bytes", shape=(n_text,), dtype="int64", fill_value=0, dimension_names=("text",)
        )
        tb[:] = np.asarray(texts.n_bytes, dtype=np.int64)
        tb.attrs.update({"units": "byte", "long_name": "UTF-8 bytes per text"})
        if texts.domains is not None:
            dm = root.create_array("domain", shape=(n_text,), dtype=str, dimension_names=("text",))
            dm[:] = np.asarray(list(texts.domains), dtype=object)
            dm.attrs.update({"long_name": "domain of the text"})
        if layers is not None:
            la = root.create_array(
                "layer", shape=(len(layers),), dtype="int64", dimension_names=("layer",)
            )
            la[:] = np.asarray(layers, dtype=np.int64)
            la.attrs.update({"long_name": "logit-lens layer (0: embeddings)"})
        root.attrs.update(
            {
                "title": "log-likelihood vectors of language models",
                "Conventions": "CF-1.10",
                "source": "kltools",
                **header,
                "format": FORMAT,
                "store_id": uuid.uuid4().hex,
            }
        )
        _consolidate(tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "zarr.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer created it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _records(path: Path) -> list[dict[str, Any]]:
    """The unit records of every row of a (current-layout) store."""
    n = _array(path, "spec").shape[0]
    if n == 0:
        return []
    names = _label_names(path, {p.name for p in path.iterdir()})
    cols = {k: _array(path, k)[:] for k in [*names, "spec", "dtype", "quantization", "resolved"]}
    out = []
    for i in range(n):
        out.append(
            {
                "spec": str(cols["spec"][i]),
                "coords": {k: label_value(cols[k][i]) for k in names},
                "dtype": str(cols["dtype"][i]),
                "quantization": quantization_of(cols["quantization"][i]),
                "resolved": json.loads(str(cols["resolved"][i]) or "null"),
            }
        )
    return out


def _label_names(path: Path, names: set[str]) -> list[str]:
    """The unit labels of a store: the non-reserved names in ``loglik``'s coordinates."""
    attrs = json.loads((path / "loglik" / "zarr.json").read_text()).get("attributes", {})
    listed = str(attrs.get("coordinates", "")).split()
    return [k for k in listed if k not in RESERVED and k in names]


def label_value(value: Any) -> Any:
    """A numpy scalar as a Python int or str."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return str(value)


def quantization_of(value: Any) -> str | None:
    text = str(value)
    return None if text in ("", _NONE) else text


def _add_rows(
    path: Path, records: Sequence[Mapping[str, Any]], reuse: Sequence[int] = ()
) -> list[int]:
    """Give new unit records rows (labels only; data pending); the caller holds ``meta``.

    ``reuse``: rows left without a ``spec`` by a writer killed while adding rows, filled first;
    the other records are appended. ``spec`` is written last, so a row with a spec is whole.
    Returns the rows, in the order of ``records``.
    """
    n0 = _array(path, "spec").shape[0]
    rows = [*reuse[: len(records)]]
    rows += list(range(n0, n0 + len(records) - len(rows)))
    n = max([n0, *(r + 1 for r in rows)])
    names = _label_names(path, {p.name for p in path.iterdir()})
    unit_arrays = ["loglik", "n_tokens", *names, "spec", "dtype", "quantization", "resolved"]
    unit_arrays += ["run", "done"]
    opened = {k: _array(path, k, "r+") for k in unit_arrays}
    for k in names:
        want = np.integer if opened[k].dtype.kind in "iu" else str
        for rec in records:
            v = rec["coords"][k]
            ok = isinstance(v, str) if want is str else not isinstance(v, str)
            if not ok:
                raise KLToolsError(
                    f"unit label {k!r} holds {'strings' if want is str else 'integers'} in store "
                    f"{path}, got {v!r} for {rec['spec']!r}; give the same kind"
                )
    if n > n0:
        for a in opened.values():
            a.resize((n, *a.shape[1:]))
    contiguous = rows == list(range(rows[0], rows[0] + len(rows))) if rows else True
    idx = np.asarray(rows, dtype=np.int64)

    def put(name: str, values: list[Any], dtype: Any = object) -> None:
        data = np.asarray(values, dtype=dtype)
        if contiguous:  # the usual case: appended rows, one slice write per chunk
            opened[name][rows[0] : rows[0] + len(rows)] = data
        else:
            opened[name].set_coordinate_selection(idx, data)

    for k in names:
        put(
            k,
            [r["coords"][k] for r in records],
            np.int64 if opened[k].dtype.kind in "iu" else object,
        )
    put("dtype", [r["dtype"] for r in records])
    put("quantization", [r["quantization"] or _NONE for r in records])
    put("resolved", [json.dumps(r.get("resolved")) for r in records])
    put("spec", [r["spec"] for r in records])
    _consolidate(path)
    return rows


def _check_commits(
    path: Path, old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> None:
    """Refuse a unit the store holds from another commit of the same hub revision.

    A revision such as ``main`` can move on the hub, and a rebuilt rehearsal hub gives every
    revision new commits: a store's finished units would otherwise be reused silently for a
    model that is no longer the one asked for.
    """
    stored = {_key(r): ((r.get("resolved") or {}).get("commit")) for r in old if r["spec"]}
    for rec in new:
        was, now = stored.get(_key(rec)), (rec.get("resolved") or {}).get("commit")
        if was and now and was != now:
            raise KLToolsError(
                f"store {path} holds {rec['spec']} from commit {was[:12]}, but it now resolves "
                f"to commit {now[:12]}: the model changed; extract into a new store, or delete "
                "this one to score it again"
            )


def prepare(
    store: Any,
    texts: Any,
    header: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    log: Callable[[str], None] | None = None,
) -> list[int]:
    """Create or open a store and make rows for the given units; return their row indices.

    Units already in the store (same spec, coords, dtype and quantization) keep their row.
    Nothing is written to an existing store that is incompatible (another text set, BOS
    policy or layer list) or when two units would share a label. Holds the store's ``meta``
    lease while it works, so concurrent writers append their rows one after the other. A
    store of the older layout is converted first (``log`` gets one line about it).
    """
    from kltools.leases import exclusive

    path = Path(store)
    _check_units([], records)
    kinds = _label_kinds(records)
    _recover_conversion(path)
    if path.exists():
        fmt = _format_of(path)
        attrs = _root_attrs(path) if fmt == FORMAT else _v1_attrs(path)
        _check_compatible(path, attrs, header)
    with exclusive(writers_dir(path), "meta", "meta"):
        if not path.exists():
            _create(path, texts, header, kinds)
        if _format_of(path) == FORMAT_V1:
            convert_v1(path, log=log)
        attrs = _root_attrs(path)
        _check_compatible(path, attrs, header)
        old = _records(path)
        _check_units([r for r in old if r["spec"]], records)
        _check_commits(path, old, records)
        keys = {_key(r): i for i, r in enumerate(old) if r["spec"]}
        added: dict[str, dict[str, Any]] = {}
        for rec in records:
            k = _key(rec)
            if k not in keys and k not in added:
                added[k] = dict(rec)
        if added:
            free = [i for i, r in enumerate(old) if not r["spec"]]
            for k, row in zip(added, _add_rows(path, list(added.values()), free)):
                keys[k] = row
    return [keys[_key(rec)] for rec in records]


# --------------------------------------------------------------------------- unit writes


def store_id(store: Any) -> str:
    """The random id a store got when it was created (leases name it)."""
    return str(_root_attrs(Path(store)).get("store_id", ""))


def unit_done(store: Any, index: int) -> bool:
    """Whether the unit at row ``index`` is completely written."""
    done = _array(Path(store), "done")
    return index < done.shape[0] and bool(done[index])


def claim_unit(store: Any, index: int) -> Any:
    """Take the lease of row ``index``: a :class:`kltools.leases.Lease`, or its live Holder."""
    from kltools.leases import try_lease

    return try_lease(writers_dir(store), f"u{index}", store_id(store))


def write_unit(
    store: Any, index: int, loglik: np.ndarray, n_tokens: np.ndarray, meta: Mapping[str, Any]
) -> None:
    """Write one unit's region, then its run record, then its done flag (in that order)."""
    path = Path(store)
    ll = _array(path, "loglik", "r+")
    values = np.asarray(loglik, dtype=np.float32)
    if values.shape != ll.shape[1:]:
        raise ValueError(f"unit region has shape {ll.shape[1:]}, got {values.shape}")
    ll[index] = values
    _array(path, "n_tokens", "r+")[index] = np.asarray(n_tokens, np.int32)
    _array(path, "run", "r+")[index] = json.dumps(dict(meta), default=str)
    _array(path, "done", "r+")[index] = True


# --------------------------------------------------------------------------- reading


def _decode_strings(ds: Any) -> Any:
    """numpy StringDType variables (zarr's v3 strings) as object arrays of str."""
    for name in list(ds.variables):
        if ds[name].dtype.kind == "T":
            ds[name] = ds[name].astype(object)
    return ds


def open_units(path: Any, *, pending: bool = False) -> Any:
    """A store's rows as one in-memory Dataset with a ``unit`` dim (what ``open_zarr`` shows).

    Parameters
    ----------
    path : str or path
        A store of the current layout or of the older ``kltools-loglik/1`` (read as is).
    pending : bool
        Keep the rows whose ``done`` flag is False (NaN); default: finished rows only.

    Returns
    -------
    xarray.Dataset
        ``loglik`` (unit, [layer,] text), ``n_tokens`` (unit, text), label coordinates,
        ``spec``/``dtype``/``quantization``/``done`` along ``unit``, ``resolved`` and ``run``
        (JSON strings), text coordinates, the root attrs.
    """
    import xarray as xr

    p = Path(path)
    if _format_of(p) == FORMAT_V1:
        ds = _v1_dataset(p)
    else:
        with _quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            raw = xr.open_dataset(str(p), engine="zarr", consolidated=None, chunks=None)
        done = np.asarray(raw["done"].values, dtype=bool)
        rows = np.arange(done.size) if pending else np.flatnonzero(done)
        ds = raw.isel(unit=rows).load().assign_coords(row=("unit", rows.astype(np.int64)))
        raw.close()
    return _decode_strings(ds)


def _unit_records(flat: Any, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Per-row records (spec, coords, dtype, quantization, resolved, run) of a flat view."""
    cols = {k: flat[k].values for k in [*keys, *_UNIT_FIELDS, "resolved", "run"]}
    out = []
    for j in range(flat.sizes["unit"]):
        run = str(cols["run"][j])
        out.append(
            {
                "spec": str(cols["spec"][j]),
                "coords": {k: label_value(cols[k][j]) for k in keys},
                "dtype": str(cols["dtype"][j]),
                "quantization": quantization_of(cols["quantization"][j]),
                "resolved": json.loads(str(cols["resolved"][j]) or "null"),
                "run": json.loads(run) if run else {},
            }
        )
    return out


def unit_labels(flat: Any) -> list[str]:
    """The unit label names of a flat view (coordinates along ``unit`` that are not reserved)."""
    return [
        str(k)
        for k, v in flat.coords.items()
        if v.dims == ("unit",) and k not in RESERVED and k != "row"
    ]


def _column(values: list[Any]) -> Any:
    """Values along ``unit``: ints as int64, anything else as objects (None stays None)."""
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _order(values: list[Any]) -> list[Any]:
    """Distinct values: sorted if all are numbers, else in order of first appearance."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return distinct


def open_store(path: Any, dims: Sequence[str] | str | None = None) -> Any:
    """Open a store as an xarray Dataset with the unit dim unstacked into coordinate dims.

    Only units whose ``done`` flag is set are exposed; a unit in flight or killed is absent.
    (``xarray.open_zarr(path)`` shows the same data with one stacked ``unit`` dim, pending
    rows included.)

    Parameters
    ----------
    path : str or path
    dims : sequence of str, "unit" or None
        The dims to unstack the units into, e.g. ``("model", "step")``; combinations no unit
        has are NaN. None: every coords key, plus ``dtype``/``quantization`` when they vary.
        ``"unit"``: keep one ``unit`` dim with the labels as coordinates along it. ``spec``,
        ``dtype`` and ``quantization`` may also be named. A label that varies but is not in
        ``dims`` is an error (the view would be ambiguous).

    Returns
    -------
    xarray.Dataset
        ``loglik`` float32 (*dims, [layer,] text) in nats; coordinates ``text``,
        ``text_bytes``, ``n_tokens`` (*dims, text), ``domain`` (if known), ``layer`` (lens);
        per-unit ``spec``/``dtype``/``quantization`` as coordinates where not dims; provenance
        in attrs (``units`` is a JSON list of the exposed units with their run records).
    """
    import xarray as xr

    p = Path(path)
    flat = open_units(p)
    attrs = dict(flat.attrs)
    keys = unit_labels(flat)
    attrs.pop("units", None)
    rows = [int(r) for r in flat["row"].values]
    recs = _unit_records(flat, keys)
    ll = np.asarray(flat["loglik"].values, dtype=np.float32)
    nt = np.asarray(flat["n_tokens"].values)
    layers = attrs.get("layers")
    fields = [{**rec["coords"], **{f: rec[f] for f in _UNIT_FIELDS}} for rec in recs]
    if dims is None:
        dims = [
            *keys,
            *(f for f in ("dtype", "quantization") if len({fl[f] for fl in fields}) > 1),
        ]
    elif isinstance(dims, str):
        dims = [dims]
    dims = list(dims)
    text_coords: dict[str, Any] = {
        "text": ("text", [str(t) for t in flat["text"].values]),
        "text_bytes": ("text", np.asarray(flat["text_bytes"].values, dtype=np.int64)),
    }
    if "domain" in flat.variables:
        text_coords["domain"] = ("text", [str(d) for d in flat["domain"].values])
    inner = (["layer"] if layers is not None else []) + ["text"]
    extra = {"layer": ("layer", list(layers))} if layers is not None else {}
    run_info = [
        {k: rec[k] for k in ("spec", "coords", "dtype", "quantization", "resolved")}
        | {"row": r, "run": rec["run"]}
        for r, rec in zip(rows, recs)
    ]
    out_attrs = {**attrs, "units": json.dumps(run_info)}
    ll_attrs = {k: v for k, v in flat["loglik"].attrs.items() if k != "coordinates"}
    if dims == ["unit"]:
        coords = {
            k: ("unit", _column([fl.get(k) for fl in fields])) for k in [*keys, *_UNIT_FIELDS]
        }
        ds = xr.Dataset(
            {"loglik": (["unit", *inner], ll)},
            coords={**coords, **text_coords, **extra, "n_tokens": (("unit", "text"), nt)},
            attrs=out_attrs,
        )
        ds["loglik"].attrs.update(ll_attrs)
        return ds
    allowed = [*keys, *_UNIT_FIELDS]
    for d in dims:
        if d not in allowed:
            raise KLToolsError(f"dim {d!r} is not a unit label of store {p}; use one of {allowed}")
    if len(set(dims)) != len(dims):
        raise KLToolsError(f"dims {dims} repeat a name")
    for k in allowed:
        if k not in dims and k != "spec":
            varying = {json.dumps(fl[k]) for fl in fields}
            if len(varying) > 1:
                raise KLToolsError(
                    f"units of store {p} differ in {k!r}; include it in dims (e.g. dims={[*dims, k]})"
                )
    axes = {d: _order([fl[d] for fl in fields]) for d in dims}
    shape = tuple(len(axes[d]) for d in dims)
    grid = np.full((*shape, *ll.shape[1:]), np.nan, dtype=np.float32)
    ntok = np.full((*shape, ll.shape[-1]), -1, dtype=np.int64)
    filled: set[tuple[int, ...]] = set()
    per_unit = {f: np.full(shape, None, dtype=object) for f in _UNIT_FIELDS if f not in dims}
    for j, fl in enumerate(fields):
        idx = tuple(axes[d].index(fl[d]) for d in dims)
        if idx in filled:
            raise KLToolsError(
                f"two units of store {p} share the labels {dict(zip(dims, (fl[d] for d in dims)))}; "
                "add the distinguishing label to dims"
            )
        filled.add(idx)
        grid[idx] = ll[j]
        ntok[idx] = nt[j]
        for f, arr in per_unit.items():
            arr[idx] = fl[f]
    coords: dict[str, Any] = {d: (d, axes[d]) for d in dims}
    coords.update({f: (tuple(dims), arr) for f, arr in per_unit.items()})
    n_tokens = ntok if len(filled) == int(np.prod(shape)) else np.where(ntok < 0, np.nan, ntok)
    coords["n_tokens"] = ((*dims, "text"), n_tokens)
    ds = xr.Dataset(
        {"loglik": ([*dims, *inner], grid)},
        coords={**coords, **text_coords, **extra},
        attrs=out_attrs,
    )
    ds["loglik"].attrs.update(ll_attrs)
    return ds


# --------------------------------------------------------------------------- older layout


def _v1_attrs(path: Path) -> dict[str, Any]:
    attrs = _root_attrs(path)
    attrs.pop("units", None)
    return attrs


def _v1_dataset(path: Path) -> Any:
    """A ``kltools-loglik/1`` store's finished units as the flat view of the current layout."""
    import xarray as xr
    import zarr

    root = zarr.open_group(str(path), mode="r")
    attrs = dict(root.attrs)
    records = list(attrs.pop("units", []))
    done = np.asarray(root["done"][:]).astype(bool)
    rows = [i for i in range(len(records)) if i < done.size and done[i]]
    ll_arr = root["loglik"]
    ll = np.asarray(ll_arr.oindex[rows]) if rows else np.zeros((0, *ll_arr.shape[1:]), "f4")
    nt = np.asarray(root["n_tokens"].oindex[rows]) if rows else np.zeros((0, ll.shape[-1]), "i4")
    texts = dict(zarr.open_group(str(path / "texts"), mode="r").attrs)
    keys = sorted(records[0]["coords"]) if records else []
    recs = [records[i] for i in rows]
    layers = attrs.get("layers")
    inner = (["layer"] if layers is not None else []) + ["text"]
    coords: dict[str, Any] = {k: ("unit", [r["coords"][k] for r in recs]) for k in keys}
    runs = []
    for i in rows:
        try:
            runs.append(dict(zarr.open_group(str(path / "units" / f"u{i}"), mode="r").attrs))
        except (FileNotFoundError, KeyError, ValueError):
            runs.append({})
    coords.update(
        {
            "spec": ("unit", [r["spec"] for r in recs]),
            "dtype": ("unit", [r["dtype"] for r in recs]),
            "quantization": ("unit", [r["quantization"] or _NONE for r in recs]),
            "done": ("unit", np.ones(len(rows), dtype=bool)),
            "row": ("unit", np.asarray(rows, dtype=np.int64)),
            "text": ("text", list(texts["ids"])),
            "text_bytes": ("text", np.asarray(root["text_bytes"][:], dtype=np.int64)),
        }
    )
    if texts.get("domains") is not None:
        coords["domain"] = ("text", list(texts["domains"]))
    if layers is not None:
        coords["layer"] = ("layer", list(layers))
    ds = xr.Dataset(
        {
            "loglik": (["unit", *inner], ll, dict(ll_arr.attrs)),
            "n_tokens": (("unit", "text"), nt),
            "resolved": ("unit", [json.dumps(r.get("resolved")) for r in recs]),
            "run": ("unit", [json.dumps(r) for r in runs]),
        },
        coords=coords,
        attrs=attrs,
    )
    return ds


class TextSide:
    """The text side of a store (ids, bytes, domains, hash, name), for building another."""

    def __init__(
        self,
        ids: Sequence[str],
        n_bytes: Any,
        domains: Sequence[str] | None,
        sha256: str = "",
        name: str = "",
    ) -> None:
        self.ids = tuple(str(i) for i in ids)
        self.n_bytes = np.asarray(n_bytes, dtype=np.int64)
        self.domains = tuple(str(d) for d in domains) if domains is not None else None
        self.sha256 = sha256
        self.name = name


def texts_of(flat: Any) -> TextSide:
    """The text ids, bytes and domains of a flat view."""
    domains = flat["domain"].values if "domain" in flat.variables else None
    return TextSide(flat["text"].values, flat["text_bytes"].values, domains)


def write_units(path: Path, flat: Any, header: Mapping[str, Any]) -> None:
    """Create a new store at ``path`` holding the (finished) rows of a flat view."""
    keys = unit_labels(flat)
    recs = _unit_records(flat, keys)
    kinds = _label_kinds(recs) if recs else {}
    _create(path, texts_of(flat), header, kinds)
    if recs:
        _add_rows(path, recs)
    ll = np.asarray(flat["loglik"].values, dtype=np.float32)
    nt = np.asarray(flat["n_tokens"].values)
    for j, rec in enumerate(recs):
        write_unit(path, j, ll[j], nt[j], rec["run"])


def convert_v1(path: Any, *, log: Callable[[str], None] | None = None) -> None:
    """Convert a ``kltools-loglik/1`` store to the current layout in place (once).

    The new store is built in a temporary sibling and swapped in with two renames; a kill
    between them leaves the old store at ``.<name>.v1-backup``, which the next open puts
    back. Finished units are kept; unfinished rows are dropped (an extraction that lists
    them again computes them).
    """
    p = Path(path)
    flat = _v1_dataset(p)
    n_rows = len(_root_attrs(p).get("units", []))
    header = {
        **{k: v for k, v in flat.attrs.items() if k != "units"},
        "format": FORMAT,
        "converted_from": FORMAT_V1,
        "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = p.parent / f".{p.name}.v2-{uuid.uuid4().hex[:8]}"
    write_units(tmp, flat, header)
    backup = _backup_path(p)
    os.rename(p, backup)
    os.rename(tmp, p)
    shutil.rmtree(backup, ignore_errors=True)
    msg = (
        f"kltools: converted store {p} from layout {FORMAT_V1} to {FORMAT} (an xarray "
        f"dataset): {flat.sizes['unit']} finished units kept"
    )
    if n_rows > flat.sizes["unit"]:
        msg += f", {n_rows - flat.sizes['unit']} unfinished dropped (extracted again on request)"
    (log or (lambda s: print(s, file=sys.stderr)))(msg)


def _recover_conversion(path: Path) -> None:
    """Put back an old-layout store whose conversion was killed between its two renames."""
    backup = _backup_path(path)
    if backup.exists() and not path.exists():
        with contextlib.suppress(FileNotFoundError):
            os.rename(backup, path)
