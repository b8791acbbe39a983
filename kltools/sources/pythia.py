"""The paper's hub models (profile ``pythia``): Pythia sizes and PolyPythia seeds, copies
quantized at load time with bitsandbytes, hub fine-tuning lineages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from kltools.errors import KLToolsError

if TYPE_CHECKING:
    from kltools.config import Settings
    from kltools.sources import Run

__all__ = [
    "CAPABILITIES",
    "EXCLUDED",
    "SEEDS",
    "SEED_SIZE",
    "SIZES",
    "fetch_hub_lineages",
    "lineages",
    "load_lineages_json",
    "pretraining_runs",
    "pythia_steps",
    "quant_catalogue",
]

#: what this source provides (:data:`kltools.sources.CAPABILITIES`)
CAPABILITIES: frozenset[str] = frozenset({"models", "published_magnitudes", "weights"})

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


def quant_catalogue(s: Settings) -> pd.DataFrame:
    """Load-time bitsandbytes quantization of the hub models ``s.hub_models``."""
    from kltools.sources.suite import scheme_info

    rows = []
    for m in s.hub_models:
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
    """The checked-in hub lineages (``kltools/data/lineages.json``)."""
    p = Path(path) if path else Path(__file__).parent.parent / "data" / "lineages.json"
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KLToolsError(f"cannot read lineages from {p}: {exc}") from exc
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
    return pd.DataFrame(rows)


def fetch_hub_lineages(children: Sequence[str], types: Mapping[str, str]) -> pd.DataFrame:
    """Parents of hub models from their card's ``base_model`` (single parent only)."""
    from huggingface_hub import HfApi

    api = HfApi()
    parent_of: dict[str, str] = {}
    for child in children:
        card = api.model_info(child).card_data or {}
        base = card.get("base_model") if hasattr(card, "get") else None
        if isinstance(base, list):
            base = base[0] if len(base) == 1 else None
        if isinstance(base, str):
            parent_of[child] = base
    rows = [
        dict(model=r, spec=r, parent=None, type=t, generation=0, method="pretrained", domain="")
        for r, t in types.items()
    ]
    generation = dict.fromkeys(types, 0)
    known = dict(types)
    changed = True
    while changed:
        changed = False
        for child, parent in parent_of.items():
            if parent in known and child not in known:
                known[child], generation[child] = known[parent], generation[parent] + 1
                rows.append(
                    dict(
                        model=child,
                        spec=child,
                        parent=parent,
                        type=known[parent],
                        generation=generation[child],
                        method="hub",
                        domain="",
                    )
                )
                changed = True
    return pd.DataFrame(rows)


def lineages(s: Settings) -> tuple[pd.DataFrame, str]:
    """Hub lineages: from hub metadata when online, else the checked-in file."""
    from kltools.models import _hub_offline

    listed = load_lineages_json(s.lineages_file or None)
    if _hub_offline():
        return (
            listed,
            f"checked-in list {s.lineages_file or 'kltools/data/lineages.json'} (hub offline)",
        )
    roots = listed[listed.parent.isna()]
    children = listed[listed.parent.notna()].model.tolist()
    try:
        fetched = fetch_hub_lineages(children, dict(zip(roots.model, roots.type)))
    except Exception as exc:  # network errors of every flavour
        return listed, f"checked-in list (hub metadata unavailable: {type(exc).__name__})"
    return fetched, "hub metadata (card base_model)"
