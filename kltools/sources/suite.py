"""The offline suite's catalogue (profiles ``tiny`` and ``smoke``): runs, copies, lineages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kltools.errors import KLToolsError

if TYPE_CHECKING:
    import xarray as xr

    from kltools.config import Settings
    from kltools.sources import Run
    from kltools.texts import TextSet

__all__ = ["bnb_usable_on_cpu", "lineages", "pretraining_runs", "quant_catalogue", "scheme_info"]

#: what this source provides (:data:`kltools.sources.CAPABILITIES`)
CAPABILITIES: frozenset[str] = frozenset({"models", "weights", "heldout_loss", "suite"})
#: text-set names this source knows besides ``"source"``
TEXTSETS: tuple[str, ...] = ("suite",)

#: bitsandbytes schemes: name -> (family, bits)
_BNB: dict[str, tuple[str, int]] = {
    "bnb-int8": ("bitsandbytes", 8),
    "bnb-fp4": ("bitsandbytes", 4),
    "bnb-nf4": ("bitsandbytes", 4),
}


def scheme_info(scheme: str) -> tuple[str, int]:
    """``(family, bits)`` of a quantization scheme (``rtn8``, ``rtn4g32``, ``bnb-nf4`` …)."""
    from kltools.suite.profiles import RTN_SCHEMES

    if scheme in RTN_SCHEMES:
        return "round-to-nearest", RTN_SCHEMES[scheme][0]
    if scheme in _BNB:
        return _BNB[scheme]
    raise KLToolsError(f"unknown quantization scheme {scheme!r}")


def pretraining_runs(profile: str) -> list[Run]:
    """Every pretraining run of the suite, main sizes (by size) first, then the extra seeds."""
    from kltools.sources import Run
    from kltools.suite import get_profile, list_models

    prof = get_profile(profile)
    known = [s.name for s in prof.sizes]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in list_models(profile):
        if entry["kind"] == "checkpoint":
            by_name.setdefault(entry["name"], []).append(entry)
    runs = []
    for name, entries in by_name.items():
        first = entries[0]
        seed = int(first["seed"])
        steps = tuple(sorted(int(e["step"]) for e in entries))
        in_seeds = first["size"] == prof.seed_size
        runs.append(
            Run(
                name,
                name,
                str(first["size"]),
                seed,
                steps,
                int(first["n_params"]),
                in_seeds,
                seed == 0,
            )
        )
    if not runs:
        raise KLToolsError(f"the {profile} suite has no pretraining runs; build it first")
    return sorted(runs, key=lambda r: (r.seed != 0, r.seed, known.index(r.size)))


def bnb_usable_on_cpu(config: dict[str, Any], scheme: str, blocksize: int = 64) -> bool:
    """Whether bitsandbytes can run ``scheme`` on the CPU for a GPT-NeoX config.

    4-bit on the CPU needs every Linear input size (hidden and intermediate) to be a multiple
    of the blocksize (bitsandbytes 0.50 fails otherwise); int8 and RTN always run.
    """
    if scheme not in ("bnb-fp4", "bnb-nf4"):
        return True
    sizes = [config.get("hidden_size"), config.get("intermediate_size")]
    return all(isinstance(s, int) and s % blocksize == 0 for s in sizes)


def quant_catalogue(s: Settings) -> pd.DataFrame:
    """The suite's quantized copies, one row per (base, scheme) (see :mod:`kltools.sources`)."""
    from kltools.suite import list_models

    rows = []
    for e in list_models(s.profile):
        if e["kind"] != "quant":
            continue
        short = e["parent"].removeprefix(f"{s.profile}-")
        if (s.quant_bases and short not in s.quant_bases) or (
            s.quant_schemes and e["scheme"] not in s.quant_schemes
        ):
            continue
        family, bits = scheme_info(e["scheme"])
        usable, note = bool(e["built"]), "" if e["built"] else "not built"
        if usable and s.device != "cuda" and family == "bitsandbytes":
            cfg = json.loads((Path(e["path"]) / "config.json").read_text())
            if not bnb_usable_on_cpu(cfg, e["scheme"]):
                usable, note = False, "bitsandbytes 4-bit on CPU needs sizes divisible by 64"
        rows.append(
            dict(
                model=short,
                base_spec=e["parent"],
                variant=e["scheme"],
                family=family,
                bits=bits,
                spec=e["spec"],
                quantization=None,
                usable=usable,
                note=note,
            )
        )
    missing = sorted(set(s.quant_bases) - {r["model"] for r in rows})
    if missing:
        raise KLToolsError(f"profile {s.profile!r} has no quantized copies of {missing}")
    return pd.DataFrame(rows)


def lineages(s: Settings) -> tuple[pd.DataFrame, str]:
    """Each fine-tuned child of the suite with its parent, plus the roots.

    ``type`` is the root's size (e.g. ``s``), ``generation`` 0 for a root.
    """
    from kltools.suite import list_models

    entries = list_models(s.profile)
    children = [e for e in entries if e["kind"] == "finetune" and e["built"]]
    if not children:
        raise KLToolsError(f"profile {s.profile!r} has no built fine-tuned models; build the suite")
    by_name = {e["name"]: e for e in children}
    rows: dict[str, dict[str, Any]] = {}
    for e in children:
        root = e["parent"]
        while root in by_name:
            root = by_name[root]["parent"]
        typ = root.removeprefix(f"{s.profile}-")
        rows.setdefault(
            root,
            dict(
                model=root,
                spec=root,
                parent=None,
                type=typ,
                generation=0,
                method="pretrained",
                domain="all",
            ),
        )
        rows[e["name"]] = dict(
            model=e["name"],
            spec=e["spec"],
            parent=e["parent"],
            type=typ,
            generation=int(e["generation"]),
            method=e["method"],
            domain=e["domain"],
        )
    return pd.DataFrame(list(rows.values())), f"the {s.profile} suite catalogue"


def texts(s: Settings) -> TextSet:
    """The suite's analysis text set (the Pile recipe mirrored on the suite's corpus)."""
    from kltools.texts import load_texts

    return load_texts(s.profile)


def fill_store(s: Settings, units: Sequence[Any], path: Path, **options: Any) -> xr.Dataset:
    """Extract ``units`` from the suite's models (:func:`kltools.sources.extract_units`)."""
    from kltools.sources import extract_units

    return extract_units(s, units, path, **options)


def check_models(s: Settings, specs: Sequence[str]) -> None:
    """Every suite model named resolves (one line naming the first that does not)."""
    from kltools.sources import resolve_all

    resolve_all(specs)


def weights_file(s: Settings, model: str, grid: Sequence[int]) -> Path:
    """The run folder holding the ``weight_distances.json`` the suite build wrote."""
    from kltools.suite import profile_root

    return profile_root(s.profile) / model


def heldout_losses(s: Settings, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Held-out loss (nats/token) per checkpoint from each suite run's ``metrics.json``.

    Columns ``model``, ``step``, ``heldout_loss``; ``models`` default: every main size.
    """
    from kltools.suite import profile_root

    root = profile_root(s.profile)
    names = models or [r.model for r in pretraining_runs(s.profile) if r.in_sizes]
    frames = []
    for m in names:
        f = root / m / "metrics.json"
        if not f.is_file():
            raise KLToolsError(f"{f} does not exist; build the suite (kltools suite build)")
        raw = json.loads(f.read_text())
        frames.append(
            pd.DataFrame({"model": m, "step": raw["step"], "heldout_loss": raw["heldout_loss"]})
        )
    return pd.concat(frames, ignore_index=True)


def layer_count(s: Settings, spec: str) -> int:
    """The number of blocks of model ``spec``, read from its config."""
    from kltools.models import n_layers_of, resolve_model

    return n_layers_of(resolve_model(spec))


def layer_models(s: Settings) -> dict[str, str]:
    """label -> spec of the layer chapter's models: ``s.layer_models``, else the final
    checkpoint of every pretraining run."""
    if s.layer_models:
        return {m.split("/")[-1]: m for m in s.layer_models}
    return {r.model: r.spec(r.steps[-1]) for r in pretraining_runs(s.profile)}


def uses_paper_texts(s: Settings) -> bool:
    """Whether the run scores the paper's texts (the suite scores its own corpus)."""
    return False


def deviation_rows(s: Settings, rehearsal: bool | None = None) -> list[Any]:
    """How the suite departs from the paper: its scale-downs (:mod:`kltools.deviations`)."""
    from kltools.deviations import _suite_rows

    return _suite_rows(s)


def fingerprint(s: Settings) -> str | None:
    """The suite build's ``FINGERPRINT`` (what was trained, and how), if it is built."""
    from kltools.paths import suite_root

    path = suite_root(s.profile) / "FINGERPRINT"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def prepare(s: Settings) -> None:
    """Nothing: the book builds the suite before the chapters (``kltools suite build``)."""


def model_order(s: Settings) -> list[str] | None:
    """None: the suite's models are numbered after the authors' list, in order of appearance."""
    return None
