"""Where each profile's models come from: one catalogue per profile, one interface.

``tiny`` and ``smoke`` read the offline suite (:mod:`kltools.sources.suite`); ``pythia`` names
the paper's hub models (:mod:`kltools.sources.pythia`). Every function here takes a
:class:`kltools.config.Settings` and returns the same shape whatever the profile, so no
chapter branches on the profile.

- :func:`pretraining_runs`: the runs, each with its size, seed, steps and group (``sizes``:
  the main sizes; ``seeds``: the runs of the seed setting);
- :func:`quant_catalogue`: each base model and its quantized copies;
- :func:`lineages`: fine-tuning lineages (model, parent, type, generation, method, domain);
- :func:`layer_models`, :func:`floor_models`: the models of the layer and floor chapters;
- :func:`can`: what the profile's source can provide (:data:`CAPABILITIES`), so that a claim
  or a chapter that needs something a source lacks says *not tested* with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from kltools.config import Settings

__all__ = [
    "CAPABILITIES",
    "Run",
    "can",
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


def _module(profile: str):
    if profile == "pythia":
        from kltools.sources import pythia

        return pythia
    from kltools.sources import suite

    return suite


#: what a source may provide, and what lacking it means for a reader
CAPABILITIES: dict[str, str] = {
    "models": "runs the models themselves (Monte-Carlo sampling, re-extraction, logit lens)",
    "published_magnitudes": "its models are the paper's, so its KLs can be compared with the "
    "paper's published numbers (a small-model suite measures orderings, not magnitudes)",
    "weights": "weight-space distances between checkpoints",
    "heldout_loss": "a held-out loss recorded for every checkpoint",
}


def can(s: Settings, capability: str) -> bool:
    """Whether the profile's source provides ``capability`` (a key of :data:`CAPABILITIES`)."""
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
    return capability in _module(s.profile).CAPABILITIES


def pretraining_runs(s: Settings) -> list[Run]:
    """The profile's pretraining runs: main sizes by size, then the extra seeds."""
    return _module(s.profile).pretraining_runs(s.profile)


def quant_catalogue(s: Settings) -> pd.DataFrame:
    """One row per (base, scheme): ``model``, ``base_spec``, ``variant``, ``family``, ``bits``,
    ``spec``, ``quantization`` (load-time bitsandbytes type, or None), ``usable``, ``note``."""
    return _module(s.profile).quant_catalogue(s)


def lineages(s: Settings) -> tuple[pd.DataFrame, str]:
    """The fine-tuning lineages and where they come from (restricted to ``s.types``)."""
    table, source = _module(s.profile).lineages(s)
    if s.types:
        table = table[table.type.isin(s.types)].reset_index(drop=True)
    return table, source


def layer_models(s: Settings) -> dict[str, str]:
    """label -> spec of the layer chapter's models (default: every run's final checkpoint)."""
    if s.layer_models:
        return {m.split("/")[-1]: m for m in s.layer_models}
    return {r.model: r.spec(r.steps[-1]) for r in pretraining_runs(s)}


def floor_models(s: Settings) -> dict[str, str]:
    """label -> spec of the floor chapter's models (default: the quantization bases)."""
    if s.floor_models:
        return {m.split("/")[-1]: m for m in s.floor_models}
    cat = quant_catalogue(s)
    return dict(zip(cat.model, cat.base_spec))
