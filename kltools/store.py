"""The zarr store of log-likelihood vectors: schema, units, region writes, resume, reading.

Layout (zarr v3 directory)
--------------------------
``loglik``    float32 (unit, [layer,] text), chunks (1, [n_layer,] n_text), fill NaN; nats,
              summed over the tokens of each text. attrs: ``units="nat"``,
              ``long_name="summed log-likelihood"``.
``n_tokens``  int32 (unit, text), chunks (1, n_text): tokens scored per text.
``done``      int8 (unit,), chunks (1,): 1 once the unit's region is completely written.
``text_bytes`` int64 (text,): UTF-8 bytes per text.
``texts/``    group whose attrs hold the text ids and (if known) domains.
``units/u<i>`` one group per unit whose attrs are written by the process that ran it: times
              (``started``, ``finished``), tokens, seconds, device, resolved source and commit,
              and ``normaliser`` (``log_softmax`` or ``fused_logsumexp``, see kltools.extraction).
root attrs    provenance (format, kltools/torch/transformers versions, dtype, device,
              bos_policy, textset_sha256, textset_name, mean_bytes, n_text, layers, created)
              and ``units``: the list of unit records (spec, coords, dtype, quantization,
              resolved) in row order.

Consistency
-----------
Every metadata write of zarr's local store is an atomic rename, and every unit owns its own
chunks, so concurrent workers never write the same file. A unit is written in this order:
its ``loglik`` and ``n_tokens`` rows, its ``units/u<i>`` attrs, then ``done[i] = 1``. Readers
(:func:`open_store`) expose **only units whose done flag is 1**, so a process killed at any
moment leaves a readable store in which the unit in flight is simply absent; rerunning the
same extraction recomputes only the units whose flag is 0. A new store is built in a
temporary folder and renamed into place. New units are appended by resizing the arrays first
and then rewriting the root ``units`` list (rows beyond that list are ignored). One
coordinating process (:func:`kltools.extraction.extract`) should set a store up at a time; it
holds an advisory lock on ``<store>/.kltools.lock`` while doing so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError

FORMAT = "kltools-loglik/1"
_UNIT_FIELDS = ("spec", "dtype", "quantization")


def _open(path: Any, mode: str = "r") -> Any:
    """Open the root group of a kltools store, or raise a one-line error."""
    import zarr

    p = Path(path)
    if not (p / "zarr.json").is_file():
        if p.exists():
            raise KLToolsError(f"{p} exists but is not a kltools store; give another --store path")
        raise KLToolsError(f"no store at {p}; create it with kltools extract")
    root = zarr.open_group(str(p), mode=mode)
    if root.attrs.get("format") != FORMAT:
        raise KLToolsError(f"{p} is a zarr store but not a kltools store ({FORMAT})")
    return root


def run_header(
    texts: Any, *, bos: str, layers: Sequence[int] | None, dtype: str, device: str
) -> dict[str, Any]:
    """Provenance attrs of a store created for this run."""
    import torch
    import transformers

    from kltools import __version__

    return {
        "format": FORMAT,
        "kltools_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "dtype": dtype,
        "device": device,
        "bos_policy": bos,
        "textset_sha256": texts.sha256,
        "textset_name": texts.name,
        "mean_bytes": float(texts.mean_bytes),
        "n_text": len(texts.texts),
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


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Advisory exclusive lock on ``<store>/.kltools.lock`` (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path / ".kltools.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _create(path: Path, texts: Any, header: Mapping[str, Any]) -> None:
    """Build an empty store in a temporary sibling folder and rename it into place."""
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w")
        n_text = len(texts.texts)
        layers = header["layers"]
        shape = (0, len(layers), n_text) if layers is not None else (0, n_text)
        ll = root.create_array(
            "loglik", shape=shape, chunks=(1, *shape[1:]), dtype="float32", fill_value=np.nan
        )
        ll.attrs.update({"units": "nat", "long_name": "summed log-likelihood"})
        nt = root.create_array(
            "n_tokens", shape=(0, n_text), chunks=(1, n_text), dtype="int32", fill_value=0
        )
        nt.attrs.update({"long_name": "scored tokens per text"})
        root.create_array("done", shape=(0,), chunks=(1,), dtype="int8", fill_value=0)
        tb = root.create_array("text_bytes", shape=(n_text,), dtype="int64", fill_value=0)
        tb[:] = np.asarray(texts.n_bytes, dtype=np.int64)
        tb.attrs.update({"units": "byte", "long_name": "UTF-8 bytes per text"})
        tg = root.create_group("texts")
        domains = getattr(texts, "domains", None)
        tg.attrs.update(
            {"ids": list(texts.ids), "domains": list(domains) if domains is not None else None}
        )
        root.create_group("units")
        root.attrs.update({**header, "units": []})
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _key(rec: Mapping[str, Any]) -> str:
    """Identity of a unit record: spec, coords, dtype, quantization."""
    return json.dumps(
        [rec["spec"], sorted(rec["coords"].items()), rec["dtype"], rec["quantization"]]
    )


def _label(rec: Mapping[str, Any]) -> str:
    """Identity of a unit in the unstacked view: coords, dtype, quantization."""
    return json.dumps([sorted(rec["coords"].items()), rec["dtype"], rec["quantization"]])


def _check_units(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> None:
    """Units must share coordinate names and have distinct labels."""
    allrecs = [*old, *new]
    names = {tuple(sorted(r["coords"])) for r in allrecs}
    if len(names) > 1:
        raise KLToolsError(
            f"units in one store must share coordinate names, got {sorted(names)}; "
            "give every unit the same coords keys"
        )
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


def prepare(
    store: Any, texts: Any, header: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Create or open a store and make rows for the given units; return their row indices.

    Units already in the store (same spec, coords, dtype and quantization) keep their row.
    Nothing is written to an existing store that is incompatible (another text set, BOS
    policy or layer list) or when two units would share a label.
    """
    path = Path(store)
    if not path.exists():
        _check_units([], records)
        _create(path, texts, header)
    root = _open(path)
    _check_compatible(path, root.attrs, header)
    _check_units(list(root.attrs.get("units", [])), records)
    with _lock(path):
        root = _open(path, mode="r+")
        old = list(root.attrs.get("units", []))
        keys = {_key(r): i for i, r in enumerate(old)}
        indices: list[int] = []
        added: list[dict[str, Any]] = []
        for rec in records:
            k = _key(rec)
            if k not in keys:
                keys[k] = len(old) + len(added)
                added.append(dict(rec))
            indices.append(keys[k])
        if added:
            n = len(old) + len(added)
            for name in ("loglik", "n_tokens", "done"):
                arr = root[name]
                arr.resize((n, *arr.shape[1:]))
            root.attrs["units"] = [*old, *added]
    return indices


def unit_done(store: Any, index: int) -> bool:
    """Whether the unit at row ``index`` is completely written."""
    import zarr

    done = zarr.open_array(str(Path(store) / "done"), mode="r")
    return index < done.shape[0] and bool(done[index])


def write_unit(
    store: Any, index: int, loglik: np.ndarray, n_tokens: np.ndarray, meta: Mapping[str, Any]
) -> None:
    """Write one unit's region, then its run attrs, then its done flag (in that order)."""
    import zarr

    path = Path(store)
    ll = zarr.open_array(str(path / "loglik"), mode="r+")
    values = np.asarray(loglik, dtype=np.float32)
    if values.shape != ll.shape[1:]:
        raise ValueError(f"unit region has shape {ll.shape[1:]}, got {values.shape}")
    ll[index] = values
    zarr.open_array(str(path / "n_tokens"), mode="r+")[index] = np.asarray(n_tokens, np.int32)
    group = zarr.open_group(str(path / "units" / f"u{index}"), mode="a")
    group.attrs.update(dict(meta))
    zarr.open_array(str(path / "done"), mode="r+")[index] = 1


def _order(values: list[Any]) -> list[Any]:
    """Distinct values: sorted if all are numbers, else in order of first appearance."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return distinct


def _run_attrs(path: Path, index: int) -> dict[str, Any]:
    """The ``units/u<i>`` attrs written by the process that ran the unit."""
    import zarr

    try:
        return dict(zarr.open_group(str(path / "units" / f"u{index}"), mode="r").attrs)
    except (FileNotFoundError, KeyError, ValueError):
        return {}


def open_store(path: Any, dims: Sequence[str] | str | None = None) -> Any:
    """Open a store as an xarray Dataset with the unit dim unstacked into coordinate dims.

    Only units whose ``done`` flag is set are exposed; a unit in flight or killed is absent.

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
    import zarr

    p = Path(path)
    root = _open(p)
    attrs = dict(root.attrs)
    records = list(attrs.pop("units", []))
    done = np.asarray(root["done"][:]).astype(bool)
    rows = [i for i in range(len(records)) if i < done.size and done[i]]
    ll_arr = root["loglik"]
    layers = attrs.get("layers")
    ll = np.asarray(ll_arr.oindex[rows]) if rows else np.zeros((0, *ll_arr.shape[1:]), "f4")
    nt = np.asarray(root["n_tokens"].oindex[rows]) if rows else np.zeros((0, ll.shape[-1]), "i4")
    texts_attrs = dict(zarr.open_group(str(p / "texts"), mode="r").attrs)
    recs = [records[i] for i in rows]
    keys = sorted(records[0]["coords"]) if records else []
    fields = {
        r: {**rec["coords"], **{f: rec[f] for f in _UNIT_FIELDS}} for r, rec in zip(rows, recs)
    }
    if dims is None:
        dims = [
            *keys,
            *(f for f in ("dtype", "quantization") if len({fields[r][f] for r in rows}) > 1),
        ]
    elif isinstance(dims, str):
        dims = [dims]
    dims = list(dims)
    text_coords: dict[str, Any] = {
        "text": ("text", list(texts_attrs["ids"])),
        "text_bytes": ("text", np.asarray(root["text_bytes"][:])),
    }
    if texts_attrs.get("domains") is not None:
        text_coords["domain"] = ("text", list(texts_attrs["domains"]))
    inner = (["layer"] if layers is not None else []) + ["text"]
    extra = {"layer": ("layer", list(layers))} if layers is not None else {}
    run_info = [{**records[r], "row": r, "run": _run_attrs(p, r)} for r in rows]
    out_attrs = {**attrs, "units": json.dumps(run_info)}
    if dims == ["unit"]:
        coords = {k: ("unit", [fields[r].get(k) for r in rows]) for k in [*keys, *_UNIT_FIELDS]}
        ds = xr.Dataset(
            {"loglik": (["unit", *inner], ll)},
            coords={**coords, **text_coords, **extra, "n_tokens": (("unit", "text"), nt)},
            attrs=out_attrs,
        )
        ds["loglik"].attrs.update(dict(ll_arr.attrs))
        return ds
    allowed = [*keys, *_UNIT_FIELDS]
    for d in dims:
        if d not in allowed:
            raise KLToolsError(f"dim {d!r} is not a unit label of store {p}; use one of {allowed}")
    if len(set(dims)) != len(dims):
        raise KLToolsError(f"dims {dims} repeat a name")
    for k in allowed:
        if k not in dims and k != "spec":
            varying = {json.dumps(fields[r][k]) for r in rows}
            if len(varying) > 1:
                raise KLToolsError(
                    f"units of store {p} differ in {k!r}; include it in dims (e.g. dims={[*dims, k]})"
                )
    axes = {d: _order([fields[r][d] for r in rows]) for d in dims}
    shape = tuple(len(axes[d]) for d in dims)
    grid = np.full((*shape, *ll.shape[1:]), np.nan, dtype=np.float32)
    ntok = np.full((*shape, ll.shape[-1]), -1, dtype=np.int64)
    filled: set[tuple[int, ...]] = set()
    per_unit = {f: np.full(shape, None, dtype=object) for f in _UNIT_FIELDS if f not in dims}
    for j, r in enumerate(rows):
        idx = tuple(axes[d].index(fields[r][d]) for d in dims)
        if idx in filled:
            raise KLToolsError(
                f"two units of store {p} share the labels {dict(zip(dims, (fields[r][d] for d in dims)))}; "
                "add the distinguishing label to dims"
            )
        filled.add(idx)
        grid[idx] = ll[j]
        ntok[idx] = nt[j]
        for f, arr in per_unit.items():
            arr[idx] = fields[r][f]
    coords: dict[str, Any] = {d: (d, axes[d]) for d in dims}
    coords.update({f: (tuple(dims), arr) for f, arr in per_unit.items()})
    n_tokens = ntok if len(filled) == int(np.prod(shape)) else np.where(ntok < 0, np.nan, ntok)
    coords["n_tokens"] = ((*dims, "text"), n_tokens)
    ds = xr.Dataset(
        {"loglik": ([*dims, *inner], grid)},
        coords={**coords, **text_coords, **extra},
        attrs=out_attrs,
    )
    ds["loglik"].attrs.update(dict(ll_arr.attrs))
    return ds
