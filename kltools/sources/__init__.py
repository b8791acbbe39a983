"""Where each profile's models and vectors come from: a profile IS a source.

A source is a module of this package; :data:`SOURCES` maps each profile to its module.
``tiny`` and ``smoke`` read the offline suite (:mod:`kltools.sources.suite`); ``pythia``
names the paper's hub models (:mod:`kltools.sources.pythia`); ``released`` imports the
authors' published vectors (:mod:`kltools.sources.released`). Nothing outside this package
compares profile names: settings, chapters and the book ask the functions below, which take a
:class:`kltools.config.Settings` and return the same shape whatever the profile.

What a source provides (each module defines these names):

- ``CAPABILITIES``: which of :data:`CAPABILITIES` it has (:func:`can`);
- ``pretraining_runs(profile)``: the runs, each with its size, seed, steps and group
  (``sizes``: the main sizes; ``seeds``: the runs of the seed setting);
- ``quant_catalogue(s)``: each base model and its quantized copies;
- ``lineages(s)``: fine-tuning lineages (model, parent, type, generation, method, domain);
- ``layer_models(s)``: label -> spec of the layer chapter's models;
- ``texts(s)``: the profile's own text set (``textset = "source"``);
- ``fill_store(s, units, path, **options)``: make the store at ``path`` hold ``units``
  (extracted from the models, or imported from published vectors);
- ``weights_file(s, model, grid)``: the weight distances of one run (a JSON file);
- ``heldout_losses(s, models)``: held-out loss per checkpoint (empty when it has none);
- ``check_models(s, specs)``: fail at once, in one line, when a model cannot be read;
- ``layer_count(s, spec)``: how many blocks a model has (the layer stores group by depth);
- ``uses_paper_texts(s)``, ``deviation_rows(s, rehearsal)``: how the run departs from the
  paper (:mod:`kltools.deviations`);
- ``fingerprint(s)``: a summary of what it reads, for the chapters' cache keys;
- ``model_order(s)``: the model list numbering the fine-tuning draws (None: the shipped one);
- ``prepare(s)``: make it ready before any chapter runs, or fail at once in one line.

:func:`floor_models` derives the floor chapter's models from the quantization bases.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import xarray as xr

    from kltools.config import Settings
    from kltools.texts import TextSet

__all__ = [
    "CAPABILITIES",
    "DEFAULT_PROFILE",
    "PROFILES",
    "analysis_texts",
    "extract_units",
    "Run",
    "SOURCES",
    "can",
    "check_models",
    "fill_store",
    "fingerprint",
    "heldout_losses",
    "prepare",
    "layer_count",
    "model_order",
    "resolve_all",
    "source",
    "texts",
    "weights_file",
    "floor_models",
    "layer_models",
    "lineages",
    "pretraining_runs",
    "quant_catalogue",
]


@dataclass(frozen=True)
class Run:
    """One pretraining run: its label, where its checkpoints are, its size and seed.

    ``spec_base`` plus ``@step<S>`` is what :func:`kltools.models.resolve_model` takes.
    ``in_sizes``: one of the main sizes (seed 0); ``in_seeds``: a run of the seed setting
    (suite: every seed of the seed size, seed 0 included; pythia: the PolyPythia seeds).
    """

    model: str
    spec_base: str
    size: str
    seed: int
    steps: tuple[int, ...]
    n_params: int
    in_seeds: bool
    in_sizes: bool
    excluded: tuple[int, ...] = ()

    def spec(self, step: int) -> str:
        """The unit spec of the checkpoint at ``step``."""
        return f"{self.spec_base}@step{int(step)}"


#: profile -> the module of :mod:`kltools.sources` that provides it
SOURCES: dict[str, str] = {
    "tiny": "suite",
    "smoke": "suite",
    "pythia": "pythia",
    "released": "released",
}
#: every profile of the book
PROFILES: tuple[str, ...] = tuple(SOURCES)
#: the profile a command or a notebook runs when none is named
DEFAULT_PROFILE = "tiny"


def source(profile: str) -> ModuleType:
    """The source module of ``profile``."""
    if profile not in SOURCES:
        from kltools.errors import KLToolsError

        raise KLToolsError(f"unknown profile {profile!r}; use {', '.join(PROFILES)}")
    return importlib.import_module(f"kltools.sources.{SOURCES[profile]}")


#: what a source may provide, and what lacking it means for a reader
CAPABILITIES: dict[str, str] = {
    "models": "runs the models themselves (Monte-Carlo sampling, re-extraction, logit lens)",
    "published_magnitudes": "its models are the paper's, so its KLs can be compared with the "
    "paper's published numbers (a small-model suite measures orderings, not magnitudes)",
    "weights": "weight-space distances between checkpoints",
    "heldout_loss": "a held-out loss recorded for every checkpoint",
    "hub": "reads its models from the Hugging Face hub (or a filled cache of it)",
    "suite": "its models are the offline suite, built on this machine before the chapters",
}


def can(s: Settings, capability: str) -> bool:
    """Whether the profile's source provides ``capability`` (a key of :data:`CAPABILITIES`)."""
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
    return capability in source(s.profile).CAPABILITIES


def texts(s: Settings) -> TextSet:
    """The profile's own text set (before ``s.n_texts`` takes its first texts)."""
    return source(s.profile).texts(s)


@functools.lru_cache(maxsize=8)
def analysis_texts(s: Settings) -> TextSet:
    """The texts every chapter of the run scores: the first ``s.n_texts`` of the text set.

    ``s.textset``: ``"source"`` (the profile's own set, :func:`texts`), a name the source
    knows (``"suite"``, ``"pile"``), or a ``.jsonl``/``.txt`` path (relative paths are also
    looked up from the project root, where parameter files name them).
    """
    from kltools.texts import load_texts

    ts = texts(s) if s.textset in ("source", *source(s.profile).TEXTSETS) else None
    if ts is None:
        ts = load_texts(_text_file(s.textset))
    return ts.subset(n=s.n_texts) if s.n_texts < len(ts) else ts


def _text_file(textset: str) -> str:
    """A text-set path as given, or relative to the project root when it is not found as given
    (a chapter runs in ``notebooks/``; parameter files name paths from the project root)."""
    from kltools.paths import project_root

    given = Path(textset)
    if given.is_absolute() or given.exists() or not given.suffix:
        return textset
    rooted = project_root() / given
    return str(rooted) if rooted.exists() else textset


def extract_units(s: Settings, units: Sequence[Any], path: Path, **options: Any) -> xr.Dataset:
    """Extract ``units`` into the store at ``path`` on the run's texts and numerics.

    The run's BOS policy, dtype, device and batch size, unless ``options`` say otherwise
    (the floor extracts under other batch sizes and dtypes). What the sources that run
    models call from their ``fill_store``.
    """
    from kltools.extraction import extract

    opts = dict(bos=s.bos, dtype=s.dtype, device=s.device, batch_size=s.batch_size or None)
    opts.update(options)
    return extract(list(units), analysis_texts(s), path, progress=False, **opts)


def fill_store(s: Settings, units: Sequence[Any], path: Path, **options: Any) -> xr.Dataset:
    """Make the store at ``path`` hold ``units`` (extract them, or import published vectors).

    ``options`` go to :func:`kltools.extraction.extract` (``batch_size``, ``bos``, ``layers``…)
    for sources that extract; a source that imports ignores those it cannot honour and says so
    in the store's attributes. Returns the store (:func:`kltools.extraction.extract`'s value).
    """
    return source(s.profile).fill_store(s, list(units), Path(path), **options)


def weights_file(s: Settings, model: str, grid: Sequence[int]) -> Path:
    """The weight distances of run ``model`` on the checkpoint ``grid`` (a JSON file)."""
    return source(s.profile).weights_file(s, model, grid)


def heldout_losses(s: Settings, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Held-out loss per checkpoint: columns ``model``, ``step``, ``heldout_loss``."""
    if not can(s, "heldout_loss"):
        return pd.DataFrame(columns=["model", "step", "heldout_loss"])
    return source(s.profile).heldout_losses(s, models)


def check_models(s: Settings, specs: Iterable[str]) -> None:
    """Fail at once, in one line, when a model the run needs cannot be read."""
    source(s.profile).check_models(s, list(dict.fromkeys(specs)))


def layer_count(s: Settings, spec: str) -> int:
    """How many blocks the model ``spec`` has (its layer store holds ``L + 1`` layers)."""
    return source(s.profile).layer_count(s, spec)


def model_order(s: Settings) -> list[str] | None:
    """The model list whose rows number the models in the fine-tuning draws (the authors' code
    draws integer row ids): the release's own ``model_list.json``, or None for the copy the
    package ships (:func:`kltools.metadata.model_list`)."""
    return source(s.profile).model_order(s)


def prepare(s: Settings) -> None:
    """Make the source ready before any chapter runs (import published vectors), or fail at
    once, in one line."""
    source(s.profile).prepare(s)


def fingerprint(s: Settings) -> str | None:
    """A summary of what the source reads (the suite's build fingerprint, the release's
    manifest): a chapter's cache key includes it, so new models or vectors re-execute it."""
    return source(s.profile).fingerprint(s)


def resolve_all(specs: Iterable[str]) -> None:
    """Resolve every model spec before any work, so a missing model fails at once in one line
    (what the sources that run models do in ``check_models``)."""
    from kltools.errors import KLToolsError
    from kltools.models import resolve_model

    specs = list(dict.fromkeys(specs))
    bad = []
    for spec in specs:
        try:
            resolve_model(spec)
        except KLToolsError as exc:
            bad.append(str(exc))
    if bad:
        more = f" ({len(bad)} of {len(specs)} models unavailable)" if len(bad) > 1 else ""
        raise KLToolsError(f"{bad[0]}{more}")


def pretraining_runs(s: Settings) -> list[Run]:
    """The profile's pretraining runs: main sizes by size, then the extra seeds."""
    return source(s.profile).pretraining_runs(s.profile)


def quant_catalogue(s: Settings) -> pd.DataFrame:
    """One row per (base, scheme): ``model``, ``base_spec``, ``variant``, ``family``, ``bits``,
    ``spec``, ``quantization`` (load-time bitsandbytes type, or None), ``usable``, ``note``."""
    return source(s.profile).quant_catalogue(s)


def lineages(s: Settings) -> tuple[pd.DataFrame, str]:
    """The fine-tuning lineages and where they come from, restricted to the edges of
    ``s.types`` (a kept child's parent stays, whatever its own type: it is half of the edge)."""
    table, origin = source(s.profile).lineages(s)
    if s.types:
        kept = table.type.isin(s.types)
        parents = set(table.parent[kept & table.parent.notna()])
        table = table[kept | table.model.isin(parents)].reset_index(drop=True)
    return table, origin


def layer_models(s: Settings) -> dict[str, str]:
    """label -> spec of the layer chapter's models (``s.layer_models``, else the source's)."""
    return source(s.profile).layer_models(s)


def floor_models(s: Settings) -> dict[str, str]:
    """label -> spec of the floor chapter's models (default: the quantization bases)."""
    if s.floor_models:
        return {m.split("/")[-1]: m for m in s.floor_models}
    cat = quant_catalogue(s)
    return dict(zip(cat.model, cat.base_spec))
