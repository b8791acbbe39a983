"""The release's vectors as the project's stores, and its weight distances as tables.

:func:`import_release` writes, with the store API (:func:`kltools.store.write_units`), the
stores the extraction route of the ``pythia`` profile writes, with the same unit labels, so
every setting reads them unchanged:

``pretraining.zarr``
    one unit per (run, step): ``{"model": "pythia-410m" | "pythia-410m-seed1" | … ,
    "step": int}``, spec ``EleutherAI/pythia-410m@step1000``. A checkpoint the release has as
    ``None`` is a missing unit, listed in the attr ``missing_units`` (JSON list of run@step).
    A checkpoint the paper excludes (:data:`kltools.sources.pythia.EXCLUDED`:
    ``pythia-1b@116000``) is left out as the extraction route leaves it out (the settings
    read its absence as the exclusion), listed in ``excluded_units``; ``exclude=()`` keeps it.
``quantization.zarr``
    ``{"model": <hub id>, "variant": "full" | "bnb-int8" | "bnb-fp4"}`` (quantization
    ``int8`` / ``fp4`` on the copies, as a load-time bitsandbytes unit); ``full`` is the
    model's row of ``oyama2025_logp.pkl``, for each of the first 50 models of the list.
``finetuning.zarr``
    ``{"model": <hub id>}``: the oyama rows of the models given (default: every listed model).
``layers_L<depth>.zarr``
    one store per depth (the layer count L), ``{"model": <hub id>}`` with a ``layer`` dim
    0 … L (0: embedding output, L: the model's own output), as ``layers="all"`` writes.

Each store records the text set of ``texts.json`` (ids ``t00000`` …) and CF-style provenance:
``source``, ``references``, ``history``, ``comment`` (extracted by the authors: float16,
batch 1, tokenizer defaults), the repository, commit and every source file's sha256;
BOS policy ``paper``. A store is built in a temporary sibling and swapped in whole; a store
already imported from the same files is kept as it is. ``texts.jsonl`` (the text set) is
written beside the stores, and ``weight_distances.csv`` (:func:`weight_distances`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError
from kltools.released.layout import (
    LAYERS,
    MODEL_LIST,
    OYAMA,
    PRETRAINING,
    QUANTIZATION,
    STEPS,
    TEXTS,
    Release,
)

__all__ = ["import_release", "run_model", "weight_distances"]

#: the authors' extraction, recorded on every imported unit and store
AUTHORS_DTYPE = "float16"
COMMENT = (
    "log-likelihood vectors extracted by the authors (Kishino et al.): float16, batch 1, "
    "tokenizer defaults (no BOS added; the first token is not scored)"
)
REFERENCES = (
    "Kishino, Takase, Oyama, Yamagiwa, Shimodaira: Establishing a Scale for Kullback-Leibler "
    "Divergence in Language Models Across Various Settings, Findings of ACL 2026"
)
_VARIANTS = {8: ("bnb-int8", "int8"), 4: ("bnb-fp4", "fp4")}


def run_model(run: str) -> str:
    """The store's model label of a release run: ``410m-seed1`` -> ``pythia-410m-seed1``."""
    return f"pythia-{run}"


def _provenance(rel: Release, files: Sequence[str]) -> dict[str, Any]:
    from kltools.released.manifest import read_manifest, sha256_file

    doc = read_manifest(rel.directory) or {"files": []}
    known = {f["path"]: f["sha256"] for f in doc["files"]}
    shas = {f: known.get(f) or sha256_file(rel.path(f)) for f in (TEXTS, MODEL_LIST, *files)}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "source": "the authors' released log-likelihood vectors (shimo-lab/modelmap, "
        "kl-scale/data)",
        "references": REFERENCES,
        "comment": COMMENT,
        "history": f"{now}: imported by kltools from {rel.directory}",
        "released_repository": doc.get("repository", "https://github.com/shimo-lab/modelmap"),
        "released_commit": doc.get("commit") or "unknown (a local copy)",
        "released_origin": doc.get("origin", "no manifest"),
        "released_files": json.dumps(shas, sort_keys=True),
        "device": "the authors' GPU",
    }


def _flat(
    units: list[tuple[dict[str, Any], str, str | None]],
    loglik: np.ndarray,
    text_side: Any,
    layers: Sequence[int] | None,
    now: str,
    source: str,
) -> Any:
    """A flat view (what :func:`kltools.store.open_units` returns) of imported units."""
    import xarray as xr

    n = len(units)
    keys = list(units[0][0]) if units else []
    coords: dict[str, Any] = {}
    for k in keys:
        vals = [u[0][k] for u in units]
        coords[k] = (
            "unit",
            np.asarray(vals, dtype=np.int64 if isinstance(vals[0], int) else object),
        )
    coords["spec"] = ("unit", np.asarray([u[1] for u in units], dtype=object))
    coords["dtype"] = ("unit", np.asarray([AUTHORS_DTYPE] * n, dtype=object))
    coords["quantization"] = ("unit", np.asarray([u[2] or "none" for u in units], dtype=object))
    coords["text"] = ("text", list(text_side.ids))
    coords["text_bytes"] = ("text", np.asarray(text_side.n_bytes, dtype=np.int64))
    resolved = json.dumps({"kind": "released", "path_or_id": source, "commit": None})
    run = json.dumps({"imported_from": source, "imported": now, "extracted_by": "the authors"})
    inner = ["layer", "text"] if layers is not None else ["text"]
    if layers is not None:
        coords["layer"] = ("layer", list(layers))
    return xr.Dataset(
        {
            "loglik": (["unit", *inner], loglik),
            "n_tokens": (("unit", "text"), np.full((n, len(text_side.ids)), -1, dtype=np.int32)),
            "resolved": ("unit", np.asarray([resolved] * n, dtype=object)),
            "run": ("unit", np.asarray([run] * n, dtype=object)),
        },
        coords=coords,
    )


def _write_store(
    path: Path,
    flat: Any,
    header: dict[str, Any],
    log: Callable[[str], None] | None,
) -> Path:
    """Build the store in a temporary sibling and swap it in; keep one already imported from the
    same files with the same units (attr ``released_import_key``)."""
    from kltools import store as kstore

    cols = [flat[k].values for k in [*kstore.unit_labels(flat), "spec", "quantization"]]
    labels = [[str(c[j]) for c in cols] for j in range(flat.sizes["unit"])]
    key = hashlib.sha256(
        json.dumps([header["released_files"], header.get("missing_units"), labels]).encode()
    ).hexdigest()
    header = {**header, "released_import_key": key}
    if (path / "zarr.json").is_file():
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        if attrs.get("released_import_key") == key:
            if log:
                log(f"kltools: {path.name} already imported from these files; kept")
            return path
    tmp = path.parent / f".{path.name}.import-{uuid.uuid4().hex[:8]}"
    try:
        kstore.write_units(tmp, flat, header)
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log:
        log(f"kltools: imported {flat.sizes['unit']} units into {path}")
    return path


def _header(text_side: Any, layers: Sequence[int] | None, prov: dict[str, Any]) -> dict[str, Any]:
    from kltools import store as kstore

    return {
        **kstore.base_header(text_side, bos="paper", layers=layers),
        **prov,
        "dtype": AUTHORS_DTYPE,
    }


def import_release(
    rel: Release,
    data_dir: Any,
    *,
    finetuning_models: Sequence[str] | None = None,
    exclude: Collection[tuple[str, int]] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the release's vectors as stores in ``data_dir``; return ``{name: path}``.

    Parameters
    ----------
    rel : Release
        From :func:`kltools.released.open_release`.
    data_dir : path
        Where the stores go (a profile's data root).
    finetuning_models : sequence of str, optional
        Hub ids whose oyama rows form ``finetuning.zarr`` (default: every listed model).
    exclude : collection of (model, step), optional
        Checkpoints to leave out of ``pretraining.zarr``, by store label (default: the
        paper's exclusions, as the ``pythia`` profile's extraction leaves them out).
    log : callable, optional
        One line per store.

    Returns
    -------
    dict
        ``pretraining``, ``quantization``, ``finetuning``, ``layers_L<depth>`` (one per
        depth), ``texts`` (``texts.jsonl``) and ``weight_distances`` (a CSV) -> paths.
    """
    from kltools import store as kstore

    out_dir = Path(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ts = rel.textset()
    text_side = kstore.TextSide(ts.ids, ts.n_bytes, None, ts.sha256, ts.name)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    models = rel.model_list()
    row_of = {m: i for i, m in enumerate(models)}
    out: dict[str, Path] = {}
    chosen = list(models) if finetuning_models is None else list(finetuning_models)
    unknown = [m for m in chosen if m not in row_of]
    if unknown:
        raise KLToolsError(
            f"fine-tuning model {unknown[0]} is not in the release's {MODEL_LIST} "
            f"({len(unknown)} such); give models of the list"
        )

    texts_path = out_dir / "texts.jsonl"
    if not texts_path.is_file() or _textset_sha(texts_path) != ts.sha256:
        tmp = texts_path.with_name(f".texts.jsonl.{uuid.uuid4().hex[:8]}")
        ts.to_jsonl(tmp)
        os.replace(tmp, texts_path)
    out["texts"] = texts_path

    # pretraining
    pre = rel.pretraining()
    if exclude is None:
        from kltools.sources.pythia import EXCLUDED as exclude
    left_out = {(str(m), int(t)) for m, t in exclude}
    units, vectors, missing, excluded = [], [], [], []
    for run, per in pre.items():
        for step, v in per.items():
            model = run_model(run)
            if (model, int(step)) in left_out:
                excluded.append(f"{run}@{step}")
                continue
            if v is None:
                missing.append(f"{run}@{step}")
                continue
            units.append(
                ({"model": model, "step": int(step)}, f"EleutherAI/{model}@step{step}", None)
            )
            vectors.append(v)
    prov = _provenance(rel, [PRETRAINING])
    header = {
        **_header(text_side, None, prov),
        "missing_units": json.dumps(missing),
        "excluded_units": json.dumps(excluded),
    }
    flat = _flat(units, _stack(vectors, ts), text_side, None, now, PRETRAINING)
    out["pretraining"] = _write_store(out_dir / "pretraining.zarr", flat, header, log)

    # quantization: the first 50 models' rows, and their 8-/4-bit copies
    oyama = rel.oyama()
    units, vectors, missing = [], [], []
    quant = {bits: rel.quantization(bits) for bits in _VARIANTS}
    for m in rel.quant_models():
        units.append(({"model": m, "variant": "full"}, m, None))
        vectors.append(oyama[row_of[m]])
        for bits, (variant, q) in _VARIANTS.items():
            v = quant[bits].get(m)
            if v is None:
                missing.append(f"{m}@{variant}")
                continue
            units.append(({"model": m, "variant": variant}, m, q))
            vectors.append(v)
    prov = _provenance(rel, [OYAMA, *QUANTIZATION.values()])
    header = {**_header(text_side, None, prov), "missing_units": json.dumps(missing)}
    flat = _flat(units, _stack(vectors, ts), text_side, None, now, OYAMA)
    out["quantization"] = _write_store(out_dir / "quantization.zarr", flat, header, log)

    # fine-tuning: the oyama rows of the given models
    idx = np.asarray([row_of[m] for m in dict.fromkeys(chosen)], dtype=np.int64)
    units = [({"model": models[i]}, models[i], None) for i in idx]
    header = _header(text_side, None, _provenance(rel, [OYAMA]))
    flat = _flat(units, oyama[idx].astype(np.float32), text_side, None, now, OYAMA)
    out["finetuning"] = _write_store(out_dir / "finetuning.zarr", flat, header, log)

    # layers: one store per depth
    by_depth: dict[int, list[tuple[str, dict[int, np.ndarray]]]] = {}
    missing = []
    for m, per in rel.layers().items():
        if per is None:
            missing.append(m)
            continue
        by_depth.setdefault(max(per), []).append((m, per))
    prov = _provenance(rel, [LAYERS])
    for depth, group in sorted(by_depth.items()):
        layer_ids = list(range(depth + 1))
        ll = np.empty((len(group), depth + 1, len(ts)), dtype=np.float32)
        for j, (_, per) in enumerate(group):
            for k in layer_ids:
                ll[j, k] = per[k]
        units = [({"model": m}, m, None) for m, _ in group]
        header = {**_header(text_side, layer_ids, prov), "missing_units": json.dumps(missing)}
        flat = _flat(units, ll, text_side, layer_ids, now, LAYERS)
        out[f"layers_L{depth}"] = _write_store(out_dir / f"layers_L{depth}.zarr", flat, header, log)

    # weight distances: a long table
    tables = weight_distances(rel)
    csv = out_dir / "weight_distances.csv"
    if tables:
        import pandas as pd

        frame = pd.concat([t.assign(model=run) for run, t in tables.items()], ignore_index=True)[
            ["model", "step_a", "step_b", "distance"]
        ]
        tmp = csv.with_name(f".{csv.name}.{uuid.uuid4().hex[:8]}")
        frame.to_csv(tmp, index=False, float_format="%.17g")
        os.replace(tmp, csv)
        out["weight_distances"] = csv
    return out


def _stack(vectors: list[np.ndarray], ts: Any) -> np.ndarray:
    if not vectors:
        return np.zeros((0, len(ts)), dtype=np.float32)
    return np.stack(vectors).astype(np.float32, copy=False)


def _textset_sha(path: Path) -> str | None:
    from kltools.texts import load_texts

    try:
        return load_texts(path).sha256
    except KLToolsError:
        return None


def weight_distances(rel: Release) -> dict[str, Any]:
    """``{pythia-<size>: DataFrame(step_a, step_b, distance)}``: the filled entries, long format.

    ``distance`` is the release's Σ(θ_a − θ_b)² over all parameters (float64); only the
    entries the authors computed (each checkpoint to its next 10, non-zero) are rows.
    """
    import pandas as pd

    steps = np.asarray(STEPS, dtype=np.int64)
    out = {}
    for size, d in rel.weight_distances().items():
        i, j = np.nonzero(np.triu(d, k=1))
        out[run_model(size)] = pd.DataFrame(
            {"step_a": steps[i], "step_b": steps[j], "distance": d[i, j].astype(np.float64)}
        )
    return out
