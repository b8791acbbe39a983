"""The authors' published vectors (profile ``released``): the paper's own numbers on a CPU.

The release (:mod:`kltools.released`: ``kl-scale/data`` of ``shimo-lab/modelmap``) holds the
log-likelihood vectors behind every figure of the paper, extracted by the authors on the
paper's models. This source imports them once into the profile's stores
(:func:`kltools.released.import_release`), labelled as the ``pythia`` profile's extraction
labels them, so every setting reads them unchanged:

- the pretraining runs are the ``pythia`` profile's (5 sizes, PolyPythia seeds 1, 2, 5–9;
  ``pythia-1b@116000`` excluded), on the 154 checkpoints of the release;
- quantization: the first 50 models of ``model_list.json``, each against the row of the
  earlier paper's vectors (``oyama2025_logp.pkl``, another extraction run: the paper's
  baseline), in 8-bit (LLM.int8()) and 4-bit (fp4);
- fine-tuning: the typed single-parent edges of ``sibling_info.json`` (the paper's 66);
- layers: every model of ``layer_logp.pkl``;
- weight distances: the release's ``weight_distance.pkl`` for the five sizes.

It runs no model (no Monte-Carlo check, no numerical floor: those chapters say *not tested*)
and reads no hub. The text set is the authors' ``texts.json``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kltools.errors import KLToolsError

if TYPE_CHECKING:
    import xarray as xr

    from kltools.config import Settings
    from kltools.released import Release
    from kltools.sources import Run
    from kltools.texts import TextSet

__all__ = [
    "model_order",
    "fingerprint",
    "prepare",
    "deviation_rows",
    "uses_paper_texts",
    "CAPABILITIES",
    "TEXTSETS",
    "check_models",
    "fill_store",
    "imported_stores",
    "layer_count",
    "layer_models",
    "lineages",
    "pretraining_runs",
    "quant_catalogue",
    "release",
    "texts",
    "weights_file",
]

#: what this source provides (:data:`kltools.sources.CAPABILITIES`)
CAPABILITIES: frozenset[str] = frozenset({"published_magnitudes", "weights"})
#: text-set names this source knows besides ``"source"`` (its own: ``texts.json``)
TEXTSETS: tuple[str, ...] = ("release",)
#: the release's two quantization schemes: variant -> (bits, load-time bitsandbytes type)
SCHEMES: dict[str, tuple[int, str]] = {"bnb-int8": (8, "int8"), "bnb-fp4": (4, "fp4")}


@functools.lru_cache(maxsize=1)
def _release_at(directory: str) -> Release:
    from kltools.released import open_release

    return open_release(Path(directory))


def release() -> Release:
    """The release, checked against its manifest (``$KLTOOLS_RELEASED_DIR``, else the default
    download folder; downloaded there first when online). One line and exit 2 otherwise."""
    from kltools.released import release_dir

    return _release_at(str(release_dir()))


@functools.lru_cache(maxsize=4)
def imported_stores(s: Settings) -> dict[str, Path]:
    """Import the release into the profile's data root (once: an unchanged store is kept).

    Returns ``{store name: path}`` (:func:`kltools.released.import_release`).
    """
    from kltools.paths import data_root
    from kltools.released import import_release

    table, _ = lineages(s)
    return import_release(release(), data_root(s.profile), finetuning_models=list(table.model))


def pretraining_runs(profile: str = "released") -> list[Run]:
    """The ``pythia`` profile's runs: the 5 sizes, then the 7 PolyPythia seeds of 410M."""
    from kltools.sources import pythia

    return pythia.pretraining_runs(profile)


def quant_catalogue(s: Settings) -> pd.DataFrame:
    """The quantization models (the first 50 of ``model_list.json``, or ``s.hub_models``) in
    the release's two schemes; a copy the release has no vector of is not usable."""
    rel = release()
    q = {bits: rel.quantization(bits) for bits, _ in SCHEMES.values()}
    rows = []
    for m in s.hub_models or rel.quant_models():
        for variant, (bits, qtype) in SCHEMES.items():
            if s.quant_schemes and variant not in s.quant_schemes:
                continue
            have = q[bits].get(m) is not None
            rows.append(
                dict(
                    model=m,
                    base_spec=m,
                    variant=variant,
                    family="bitsandbytes",
                    bits=bits,
                    spec=m,
                    quantization=qtype,
                    usable=have,
                    note="" if have else "no vector in the release",
                )
            )
    return pd.DataFrame(rows)


def lineages(s: Settings) -> tuple[pd.DataFrame, str]:
    """The paper's fine-tuning lineages, from the release's own metadata: every typed
    single-parent edge of its ``sibling_info.json`` (:func:`kltools.metadata.edges_of`), or
    ``s.lineages_file`` when set. The origin says whether the release's metadata are the
    copies the package ships (:func:`kltools.metadata.check_against`)."""
    from kltools import metadata
    from kltools.sources import pythia

    if s.lineages_file:
        return pythia.load_lineages_json(s.lineages_file), f"the lineages file {s.lineages_file}"
    rel = release()
    types = rel.types()
    parents = {m: (p[0] if len(p) == 1 else list(p) or None) for m, p in rel.siblings().items()}
    edges = metadata.edges_of(rel.model_list(), types, parents)
    same = metadata.check_against(rel.path("model_info"))
    differ = sorted(f for f, verdict in same.items() if verdict != "same")
    note = f"; differs from the shipped copy in {', '.join(differ)}" if differ else ""
    return pythia.lineage_table(edges, types), (
        f"the release's metadata (sibling_info.json): every typed single-parent edge{note}"
    )


def layer_models(s: Settings) -> dict[str, str]:
    """hub id -> hub id of every model with layer vectors in the release (or
    ``s.layer_models``): the imported layer stores label their models by hub id."""
    have = [m for m, per in release().layers().items() if per is not None]
    return {m: m for m in (s.layer_models or have)}


def texts(s: Settings) -> TextSet:
    """The authors' evaluation texts (``texts.json``)."""
    return release().textset()


def fill_store(s: Settings, units: Sequence[Any], path: Path, **options: Any) -> xr.Dataset:
    """The imported store at ``path`` (the release is imported first, once).

    ``options`` (batch size, dtype, BOS) cannot change published vectors: the stores record
    the authors' extraction. A store the release does not have (the numerical floor, an
    extraction under other numerics) is one clear error.
    """
    from kltools.store import open_store

    paths = {p.resolve() for p in imported_stores(s).values()}
    if Path(path).resolve() not in paths:
        raise KLToolsError(
            f"the release has no store {Path(path).name}: the authors published vectors of "
            "their own extraction only (no re-extraction under other numerics)"
        )
    return open_store(path)


def check_models(s: Settings, specs: Sequence[str]) -> None:
    """Nothing to load: the models' vectors are the release's (missing ones are NaN)."""


def layer_count(s: Settings, spec: str) -> int:
    """The largest hidden-state index of the model's layer vectors in the release."""
    per = release().layers().get(spec)
    if per is None:
        raise KLToolsError(f"the release has no layer vectors of {spec}")
    return int(max(per))


def weights_file(s: Settings, model: str, grid: Sequence[int]) -> Path:
    """The release's weight distances of run ``model`` as the project's JSON layout.

    The authors' matrix ``[i, j]`` holds Σ(θ_i − θ_j)² for the next 10 checkpoints of the
    154-step grid; zeros are entries they did not compute (NaN here).
    """
    from kltools.grid import lag_deltas, lag_pairs
    from kltools.paths import data_root
    from kltools.released.layout import STEPS, WEIGHT_DISTANCE
    from kltools.released.manifest import sha256_file
    from kltools.suite.weights import save_weight_distances, weight_distance_array

    runs = {r.model: r for r in pretraining_runs(s.profile)}
    if model not in runs:
        raise KLToolsError(f"weight_models names {model!r}, not a run of the release")
    matrices = release().weight_distances()
    size = runs[model].size
    if size not in matrices:
        raise KLToolsError(f"the release has no weight distances of size {size}")
    m = np.asarray(matrices[size], dtype=np.float64)
    steps = [int(t) for t in STEPS]
    window = int(s.window)
    values = np.full((len(steps), window), np.nan)
    for i, j, k in lag_pairs(len(steps), window):
        if m[i, j] > 0:
            values[i, k - 1] = m[i, j]
    key = sha256_file(release().path(WEIGHT_DISTANCE))[:10]
    path = data_root(s.profile) / "weights" / f"{model}-w{window}-{key}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weight_distances(weight_distance_array(values, steps, lag_deltas(steps, window)), path)
    return path


def uses_paper_texts(s: Settings) -> bool:
    """Whether the run scores the paper's texts (the authors' ``texts.json``)."""
    return s.textset in ("source", "release")


def deviation_rows(s: Settings, rehearsal: bool | None = None) -> list[Any]:
    """What the published vectors cannot provide here (:mod:`kltools.deviations`)."""
    from kltools.deviations import _released_rows

    return _released_rows(s)


def fingerprint(s: Settings) -> str | None:
    """The sha256 of the release's ``MANIFEST.json`` (every file's size and sha256), or None
    when no release is on this machine."""
    import hashlib

    from kltools.released.compare import local_release
    from kltools.released.manifest import MANIFEST

    d = local_release()
    if d is None or not (d / MANIFEST).is_file():
        return None
    return hashlib.sha256((d / MANIFEST).read_bytes()).hexdigest()


def prepare(s: Settings) -> None:
    """Find the release (or download it), check it, and import it once, before any chapter:
    a missing or damaged release fails here, in one line."""
    imported_stores(s)


def model_order(s: Settings) -> list[str] | None:
    """The release's own ``model_list.json`` (the rows its draws number the models by)."""
    return list(release().model_list())
