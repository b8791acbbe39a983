"""Writing a directory in exactly the release's layout.

:func:`write_release` writes every file the authors' loading code reads (pickles with
``pickle.dump``, protocol 4; JSON as the authors' files: ``texts.json`` and
``model_list.json`` indented by 2, the other ``model_info`` files by 4, non-ASCII kept, no
trailing newline) and a ``MANIFEST.json``. Tests build fixture releases with it, the benchmark
a release of the real shape, and :func:`export_stores` turns the stores the project built
(for instance the rehearsal's) into a release, so the import path can be checked end to end.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError
from kltools.released.layout import (
    COLORS,
    LAYERS,
    MODEL_LIST,
    N_QUANT_MODELS,
    OYAMA,
    PRETRAINING,
    QUANTIZATION,
    RUNS,
    SIBLINGS,
    STEPS,
    TEXTS,
    TYPES,
    WEIGHT_DISTANCE,
)

__all__ = ["export_stores", "write_release"]


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=4)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json(path: Path, obj: Any, indent: int) -> None:
    _atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8"))


def write_release(
    directory: Any,
    *,
    texts: Sequence[str],
    pretraining: Mapping[str, Mapping[int, np.ndarray | None]],
    oyama: np.ndarray,
    quant8: Mapping[str, np.ndarray | None],
    quant4: Mapping[str, np.ndarray | None],
    layers: Mapping[str, Mapping[int, np.ndarray] | None],
    weight_distances: Mapping[str, np.ndarray],
    model_list: Sequence[str],
    types: Mapping[str, str],
    siblings: Mapping[str, str | list[str] | None],
    colors: Mapping[str, Sequence[float]],
    manifest: bool = True,
) -> Path:
    """Write a release directory in the authors' layout; return it.

    The arguments are the files' contents as the layout describes them (see
    :mod:`kltools.released.layout`); they are written as given (the reader checks them), so a
    test can also write a malformed release. ``manifest``: also write ``MANIFEST.json``
    (origin ``kltools write_release``, no commit).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _json(d / TEXTS, list(texts), 2)
    _json(d / MODEL_LIST, list(model_list), 2)
    _json(d / TYPES, dict(types), 4)
    _json(d / SIBLINGS, dict(siblings), 4)
    _json(d / COLORS, {k: list(v) for k, v in colors.items()}, 4)
    _pickle(d / PRETRAINING, {r: dict(per) for r, per in pretraining.items()})
    _pickle(d / OYAMA, oyama)
    _pickle(d / QUANTIZATION[8], dict(quant8))
    _pickle(d / QUANTIZATION[4], dict(quant4))
    _pickle(d / LAYERS, {m: None if v is None else dict(v) for m, v in layers.items()})
    _pickle(d / WEIGHT_DISTANCE, dict(weight_distances))
    if manifest:
        from kltools.released.manifest import (
            REQUIRED_FILES,
            _now,
            sha256_file,
            write_manifest,
        )

        entries = [
            {
                "path": name,
                "size": (d / name).stat().st_size,
                "sha256": sha256_file(d / name),
                "url": None,
                "date": _now(),
            }
            for name in REQUIRED_FILES
        ]
        write_manifest(d, entries, commit=None, origin="kltools write_release")
    return d


# --------------------------------------------------------------------------- export

#: RGBA colours given to the types of an exported release, in order of first appearance
_PALETTE: tuple[tuple[float, float, float, float], ...] = (
    (0.122, 0.467, 0.706, 1.0),
    (1.0, 0.498, 0.055, 1.0),
    (0.173, 0.627, 0.173, 1.0),
    (0.839, 0.153, 0.157, 1.0),
    (0.580, 0.404, 0.741, 1.0),
    (0.549, 0.337, 0.294, 1.0),
    (0.890, 0.467, 0.761, 1.0),
    (0.498, 0.498, 0.498, 1.0),
    (0.737, 0.741, 0.133, 1.0),
    (0.090, 0.745, 0.812, 1.0),
)
_VARIANT_BITS = {"bnb-int8": 8, "bnb-fp4": 4}


def _hub_id(spec: str) -> str:
    return str(spec).split("@", 1)[0]


def _rows(flat: Any) -> list[tuple[dict[str, Any], np.ndarray]]:
    from kltools.store import label_value, unit_labels

    keys = unit_labels(flat)
    ll = np.asarray(flat["loglik"].values, dtype=np.float32)
    out = []
    for j in range(flat.sizes["unit"]):
        labels = {k: label_value(flat[k].values[j]) for k in keys}
        labels["spec"] = str(flat["spec"].values[j])
        out.append((labels, ll[j]))
    return out


def export_stores(
    data_root: Any,
    to: Any,
    *,
    texts: Any,
    lineages: Any = None,
) -> Path:
    """Write the stores of ``data_root`` as a release directory ``to``.

    Reads ``pretraining.zarr`` (models ``pythia-<run>`` at the Pythia steps become the runs
    and steps of ``pretraining_logp.pkl``), ``quantization.zarr`` (``full`` rows, and the
    ``bnb-int8``/``bnb-fp4`` copies as the 8-/4-bit files; ``model`` is the hub id),
    ``layers_L*.zarr`` (the layer file, keyed by the hub id of each unit's spec, without its
    ``@revision``) and ``finetuning.zarr`` (more rows of the model matrix, ``model`` is the hub
    id), whichever exist; other stores, runs and steps are not part of the layout and are
    left out. The model list holds the quantized models, then the layer models, then the
    fine-tuning models; a model's row is its full vector (for a layer model: its last layer,
    the model's own output). Types and parents come from ``lineages`` (a table with ``model``,
    ``parent``, ``type``; default none: every model ``others``). No weight distances (an empty
    mapping). ``texts`` is the TextSet the stores were built on (its texts go to
    ``texts.json``; checked against the stores' text ids and hash).
    """
    from kltools.store import open_units

    root = Path(data_root)
    stores = {p.name: p for p in sorted(root.glob("*.zarr")) if (p / "zarr.json").is_file()}
    if not stores:
        raise KLToolsError(
            f"no kltools store in {root}; give the folder that holds the .zarr stores"
        )

    def opened(name: str) -> Any:
        flat = open_units(stores[name])
        ids = [str(t) for t in flat["text"].values]
        missing = [t for t in ids if t not in set(texts.ids)]
        if missing:
            raise KLToolsError(
                f"store {stores[name]} scores text {missing[0]}, which the text set "
                f"{texts.name!r} lacks; give the texts it was built on"
            )
        sub = texts.subset(indices=[texts.ids.index(t) for t in ids])
        if sub.sha256 != flat.attrs.get("textset_sha256"):
            raise KLToolsError(
                f"store {stores[name]} was built on other texts than {texts.name!r} "
                "(text-set hash differs); give the texts it was built on"
            )
        return flat, sub

    text_set = None
    pretraining: dict[str, dict[int, np.ndarray | None]] = {}
    full: dict[str, np.ndarray] = {}
    quant: dict[int, dict[str, np.ndarray]] = {8: {}, 4: {}}
    layer_vectors: dict[str, dict[int, np.ndarray]] = {}
    order: list[str] = []

    def use(sub: Any) -> None:
        nonlocal text_set
        if text_set is not None and text_set.ids != sub.ids:
            raise KLToolsError(f"the stores of {root} score different texts; export them apart")
        text_set = sub

    if "pretraining.zarr" in stores:
        flat, sub = opened("pretraining.zarr")
        use(sub)
        for labels, v in _rows(flat):
            run = str(labels.get("model", "")).removeprefix("pythia-")
            step = labels.get("step")
            if run in RUNS and step in STEPS:
                pretraining.setdefault(run, {})[int(step)] = v
        pretraining = {r: dict(sorted(pretraining[r].items())) for r in RUNS if r in pretraining}
    if "quantization.zarr" in stores:
        flat, sub = opened("quantization.zarr")
        use(sub)
        for labels, v in _rows(flat):
            m = str(labels["model"])
            if labels.get("variant") == "full":
                full[m] = v
                order.append(m)
            elif labels.get("variant") in _VARIANT_BITS:
                quant[_VARIANT_BITS[labels["variant"]]][m] = v
    for name in sorted(n for n in stores if n.startswith("layers_L")):
        flat, sub = opened(name)
        use(sub)
        layer_ids = [int(k) for k in flat["layer"].values]
        for labels, v in _rows(flat):
            m = _hub_id(labels["spec"])
            layer_vectors[m] = {k: v[i] for i, k in enumerate(layer_ids)}
            full.setdefault(m, v[-1])
            order.append(m)
    if "finetuning.zarr" in stores:
        flat, sub = opened("finetuning.zarr")
        use(sub)
        for labels, v in _rows(flat):
            m = str(labels["model"])  # the hub id (the lineage table's model)
            full.setdefault(m, v)
            order.append(m)
    if text_set is None:
        raise KLToolsError(f"{root} holds none of the stores a release has")
    model_list = list(dict.fromkeys(m for m in order if m in full))
    first = set(model_list[:N_QUANT_MODELS])
    n = len(text_set)
    oyama = np.stack([full[m] for m in model_list]) if model_list else np.zeros((0, n), np.float32)
    table = lineages if lineages is not None else None
    type_of: dict[str, str] = {}
    parent_of: dict[str, str | None] = {}
    if table is not None:
        for r in table.itertuples():
            type_of[str(r.model)] = str(r.type)
            p = r.parent
            parent_of[str(r.model)] = None if p is None or p != p else str(p)
    types = {m: type_of.get(m, "others") for m in model_list}
    palette = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(dict.fromkeys(types.values()))}
    return write_release(
        to,
        texts=list(text_set.texts),
        pretraining=pretraining,
        oyama=oyama,
        quant8={m: v for m, v in quant[8].items() if m in first},
        quant4={m: v for m, v in quant[4].items() if m in first},
        layers={m: v for m, v in layer_vectors.items() if m in first},
        weight_distances={},
        model_list=model_list,
        types=types,
        siblings={m: parent_of.get(m) for m in model_list},
        colors=palette,
    )
