"""The paper's hub models (profile ``pythia``): Pythia sizes and PolyPythia seeds, copies
quantized at load time with bitsandbytes, fine-tuning lineages and logit-lens models.

The quantization, fine-tuning and layer sets are the paper's by default, read from the
authors' metadata (:mod:`kltools.metadata`): the first 50 of ``model_list.json`` for
quantization and layers, the 66 typed single-parent edges of ``sibling_info.json`` for
fine-tuning. ``hub_models``, ``layer_models`` and ``lineages_file`` override them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kltools.errors import KLToolsError

if TYPE_CHECKING:
    import xarray as xr

    from kltools.config import Settings
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
    "layer_count",
    "texts",
    "weights_file",
    "EXCLUDED",
    "SEEDS",
    "SEED_SIZE",
    "SIZES",
    "hub_models",
    "layer_models",
    "lineage_table",
    "lineages",
    "load_lineages_json",
    "paper_lineages",
    "pretraining_runs",
    "pythia_steps",
    "quant_catalogue",
]

#: what this source provides (:data:`kltools.sources.CAPABILITIES`)
CAPABILITIES: frozenset[str] = frozenset({"models", "published_magnitudes", "weights", "hub"})
#: text-set names this source knows besides ``"source"`` (its own: the Pile recipe)
TEXTSETS: tuple[str, ...] = ("pile",)

#: Pythia sizes of the paper (hub ``EleutherAI/pythia-<size>``) and their parameter counts
SIZES: dict[str, int] = {
    "410m": 405_334_016,
    "1b": 1_011_781_632,
    "1.4b": 1_414_647_808,
    "2.8b": 2_775_208_960,
    "6.9b": 6_857_302_016,
}
#: PolyPythia seeds used by the paper (3 and 4 excluded as anomalous)
SEEDS: tuple[int, ...] = (1, 2, 5, 6, 7, 8, 9)
#: the size PolyPythia's seeds have
SEED_SIZE = "410m"
#: (run, step) checkpoints the paper excludes
EXCLUDED: frozenset[tuple[str, int]] = frozenset({("pythia-1b", 116000)})
#: the paper's two quantization schemes (Fig. 3 "8-bit" and "4-bit")
PAPER_SCHEMES: tuple[str, ...] = ("bnb-int8", "bnb-fp4")


def pythia_steps() -> tuple[int, ...]:
    """The paper's 154 Pythia checkpoint steps: 0, 1, 2, 4, …, 512, then 1000 … 143000."""
    return tuple([0] + [2**k for k in range(10)] + list(range(1000, 143001, 1000)))


def pretraining_runs(profile: str = "pythia") -> list[Run]:
    """The 5 Pythia sizes, then the 7 PolyPythia seeds of 410m; excluded checkpoints left out."""
    from kltools.sources import Run

    def run(name: str, size: str, seed: int, in_seeds: bool) -> Run:
        excl = tuple(s for m, s in EXCLUDED if m == name)
        steps = tuple(s for s in pythia_steps() if s not in excl)
        return Run(
            name, f"EleutherAI/{name}", size, seed, steps, SIZES[size], in_seeds, not in_seeds, excl
        )

    runs = [run(f"pythia-{s}", s, 0, False) for s in SIZES]
    return runs + [run(f"pythia-{SEED_SIZE}-seed{k}", SEED_SIZE, k, True) for k in SEEDS]


def hub_models(s: Settings) -> list[str]:
    """The quantization setting's hub models: ``s.hub_models``, else the paper's (the first 50
    of the authors' ``model_list.json``)."""
    from kltools import metadata

    return list(s.hub_models) or metadata.quantization_models()


def layer_models(s: Settings) -> dict[str, str]:
    """label -> hub id of the layer setting's models: ``s.layer_models``, else the paper's (the
    first 50 of the authors' ``model_list.json``). The label is the id's last part, or the
    whole id where two models share it (``meta-llama/`` and ``NousResearch/``
    ``Meta-Llama-3-8B-Instruct``)."""
    from collections import Counter

    from kltools import metadata

    ids = list(s.layer_models) or metadata.layer_models()
    short = Counter(m.split("/")[-1] for m in ids)
    return {(m.split("/")[-1] if short[m.split("/")[-1]] == 1 else m): m for m in ids}


def quant_catalogue(s: Settings) -> pd.DataFrame:
    """Load-time bitsandbytes quantization of the hub models (:func:`hub_models`)."""
    from kltools.sources.suite import scheme_info

    rows = []
    for m in hub_models(s):
        for scheme in s.quant_schemes or (*PAPER_SCHEMES, "bnb-nf4"):
            family, bits = scheme_info(scheme)
            if family != "bitsandbytes":
                raise KLToolsError(
                    f"hub models are quantized with bitsandbytes only, not {scheme!r}"
                )
            rows.append(
                dict(
                    model=m,
                    base_spec=m,
                    variant=scheme,
                    family=family,
                    bits=bits,
                    spec=m,
                    quantization=scheme.removeprefix("bnb-"),
                    usable=True,
                    note="",
                )
            )
    return pd.DataFrame(
        rows,
        columns=[
            "model",
            "base_spec",
            "variant",
            "family",
            "bits",
            "spec",
            "quantization",
            "usable",
            "note",
        ],
    )


def load_lineages_json(path: str | Path | None = None) -> pd.DataFrame:
    """A lineages file (default ``kltools/data/lineages.json``, the rehearsal's subset of the
    paper's edges): ``{"lineages": [{"model", "parent", "type"[, "generation", "method",
    "domain"]}, …]}``, roots with parent null. A relative path not found as given is read
    from the project root (a chapter runs in ``notebooks/``; parameter files name paths from
    the project root)."""
    from kltools.paths import project_root

    p = Path(path) if path else Path(__file__).parent.parent / "data" / "lineages.json"
    if not p.is_absolute() and not p.exists() and (project_root() / p).exists():
        p = project_root() / p
    try:
        doc = json.loads(p.read_text())
        rows = [
            dict(
                model=it["model"],
                spec=it["model"],
                parent=it.get("parent"),
                type=it["type"],
                generation=int(it.get("generation", 0 if it.get("parent") is None else 1)),
                method=it.get("method", "hub"),
                domain=it.get("domain", ""),
            )
            for it in doc["lineages"]
        ]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise KLToolsError(f"cannot read lineages from {p}: {exc!r}") from exc
    return pd.DataFrame(rows, columns=LINEAGE_COLUMNS)


#: the columns of a lineage table
LINEAGE_COLUMNS = ["model", "spec", "parent", "type", "generation", "method", "domain"]


def lineage_table(edges: pd.DataFrame, types: Mapping[str, str]) -> pd.DataFrame:
    """The lineages of fine-tuning ``edges`` (``model``, ``parent``, ``type``): each child's
    row, with the edge's type, then every parent that is no child as a root row (its own type
    from ``types``), so that the fine-tuning store scores it. ``generation``: the number of
    edges up to a root."""
    parent_of = dict(zip(edges.model, edges.parent))

    def generation(m: str) -> int:
        g = 0
        while m in parent_of and g <= len(parent_of):
            m, g = parent_of[m], g + 1
        return g

    rows = [
        dict(model=c, spec=c, parent=p, type=t, generation=generation(c), method="hub", domain="")
        for c, p, t in zip(edges.model, edges.parent, edges.type)
    ]
    rows += [
        dict(model=p, spec=p, parent=None, type=types.get(p, "others"), generation=0,
             method="pretrained", domain="")
        for p in dict.fromkeys(edges.parent)
        if p not in parent_of
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=LINEAGE_COLUMNS)


def paper_lineages(directory: Path | None = None) -> pd.DataFrame:
    """The paper's fine-tuning lineages (:func:`lineage_table`): every edge of
    :func:`kltools.metadata.ft_edges` and its parents."""
    from kltools import metadata

    return lineage_table(metadata.ft_edges(directory), metadata.model_types(directory))


def lineages(s: Settings) -> tuple[pd.DataFrame, str]:
    """The fine-tuning lineages and where they come from: ``s.lineages_file`` when set, else
    the paper's (:func:`paper_lineages`)."""
    from kltools import metadata

    if s.lineages_file:
        return load_lineages_json(s.lineages_file), f"the lineages file {s.lineages_file}"
    return paper_lineages(), (
        f"the authors' metadata ({metadata.REPOSITORY}, sibling_info.json at "
        f"{metadata.COMMIT[:7]}): every typed single-parent edge"
    )


def texts(s: Settings) -> TextSet:
    """The paper's text set: the authors' ``texts.json`` when their release is on this
    machine (:func:`kltools.released.compare.local_release`), else the Pile recipe
    (:func:`kltools.texts.pile_recipe`), cached.

    Raises at once, before any model is touched, when the Pile is needed with the hub offline
    and no cached copy exists.
    """
    from kltools.models import _hub_offline
    from kltools.paths import data_root
    from kltools.released import open_release
    from kltools.released.compare import local_release
    from kltools.texts import load_texts, pile_recipe

    release = local_release()
    if release is not None:  # the authors' own texts: our vectors line up with theirs
        return open_release(release).textset()
    cache = data_root(s.profile) / "texts" / f"pile-{s.n_texts}.jsonl"
    if cache.is_file():
        return load_texts(cache)
    if _hub_offline():
        raise KLToolsError(
            "the pythia profile needs the Hugging Face hub (the Pile text set and the "
            "EleutherAI checkpoints) but HF_HUB_OFFLINE=1; run it on a connected GPU "
            f"machine, or give textset=<a .jsonl of texts> (no cached {cache.name} either)"
        )
    ts = pile_recipe(s.n_texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    ts.to_jsonl(cache)
    return ts


def fill_store(s: Settings, units: Sequence[Any], path: Path, **options: Any) -> xr.Dataset:
    """Extract ``units`` from the hub models (:func:`kltools.sources.extract_units`)."""
    from kltools.sources import extract_units

    return extract_units(s, units, path, **options)


def check_models(s: Settings, specs: Sequence[str]) -> None:
    """Every hub repository and revision named resolves (from the cache when offline)."""
    from kltools.sources import resolve_all

    resolve_all(specs)


def weights_file(s: Settings, model: str, grid: Sequence[int]) -> Path:
    """A run's weight distances, streamed once from its hub revisions and cached.

    Streamed from the revisions ``step<S>`` of ``grid`` the run has by
    :func:`kltools.weightspace.hub_weight_distances` (at most two checkpoints of float32
    weights held at once, whatever the window), from the Hugging Face cache when
    ``HF_HUB_OFFLINE=1`` (the rehearsal hub, or a filled cache), and cached as
    ``data_root(profile)/weights/<run>-<key>.json``, keyed by the steps and the window.
    """
    from kltools.paths import data_root
    from kltools.weightspace import hub_weight_distances

    runs = {r.model: r for r in pretraining_runs(s.profile)}
    if model not in runs:
        raise KLToolsError(
            f"weight_models names {model!r}, not a pretraining run of the {s.profile} profile "
            f"({', '.join(runs)})"
        )
    run = runs[model]
    steps = [int(t) for t in grid if int(t) in run.steps]
    key = hashlib.sha256(json.dumps([run.spec_base, steps, s.window]).encode()).hexdigest()[:10]
    path = data_root(s.profile) / "weights" / f"{model}-{key}.json"
    if not path.is_file():
        hub_weight_distances(run.spec_base, steps, max_lag=s.window, device=s.device, out=path)
    return path


def layer_count(s: Settings, spec: str) -> int:
    """The number of blocks of model ``spec``, read from its config."""
    from kltools.models import n_layers_of, resolve_model

    return n_layers_of(resolve_model(spec))


def uses_paper_texts(s: Settings) -> bool:
    """Whether the run scores the paper's texts (the Pile recipe, or the authors' own)."""
    return s.textset in ("source", "pile")


def deviation_rows(s: Settings, rehearsal: bool | None = None) -> list[Any]:
    """Where the run departs from the paper's setting, and the rehearsal's stand-ins when it
    reads the rehearsal hub (``rehearsal``; default: :func:`kltools.deviations.rehearsal_active`)."""
    from kltools.deviations import _pythia_rows, _rehearsal_rows, rehearsal_active

    if rehearsal is None:
        rehearsal = rehearsal_active()
    return [*(_rehearsal_rows(s) if rehearsal else []), *_pythia_rows(s)]


def fingerprint(s: Settings) -> str | None:
    """None: every unit records the hub commit it was extracted from (the stores check it)."""
    return None


def prepare(s: Settings) -> None:
    """Nothing here: the book resolves the hub models before the chapters
    (:func:`kltools.book.commands.require_hub_models`)."""


def model_order(s: Settings) -> list[str] | None:
    """None: the authors' ``model_list.json`` the package ships."""
    return None
