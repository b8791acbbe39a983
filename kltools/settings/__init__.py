"""One function per distribution of the paper's Fig. 3, each returning a :class:`~kltools.pairs.PairSet`.

=============  =================================================  ===========================
setting        function                                           module
=============  =================================================  ===========================
Later, Early   :func:`later`, :func:`early`                       :mod:`.pretraining`
Seed, Size     :func:`seed`, :func:`size`                         :mod:`.pretraining`
8-bit, 4-bit   :func:`eight_bit`, :func:`four_bit`                :mod:`.quantization`
FT, Intra-type, Random  :func:`ft`, :func:`intra_type`, :func:`random_pairs`  :mod:`.finetuning`
Layer          :func:`layer`                                      :mod:`.layers`
Floor          :func:`floor`                                      :mod:`.numerics`
bf16, fp16     :func:`bf16`, :func:`fp16`                         :mod:`.numerics`
=============  =================================================  ===========================

Every function takes the chapter's :class:`~kltools.config.Settings`; the chapter of a setting
and the scale chapter call the same function, so a setting's values are the same wherever
they appear. :func:`scale` gathers them all: the paper's ten settings in the order of Fig. 3
(:data:`PAPER_SETTINGS`), then the book's own (the Floor, and the dtype changes bf16 and fp16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kltools.settings.finetuning import ft, intra_type, random_pairs
from kltools.settings.layers import layer
from kltools.settings.numerics import bf16, floor, fp16
from kltools.settings.pretraining import early, later, seed, size
from kltools.settings.quantization import eight_bit, four_bit

if TYPE_CHECKING:
    from kltools.config import Settings
    from kltools.pairs import PairSet

__all__ = [
    "GROUPS",
    "ORDER",
    "PAPER_SETTINGS",
    "bf16",
    "clear_caches",
    "early",
    "eight_bit",
    "floor",
    "four_bit",
    "fp16",
    "ft",
    "intra_type",
    "later",
    "layer",
    "random_pairs",
    "report",
    "scale",
    "seed",
    "size",
]

#: the paper's ten settings of Fig. 3, in the paper's order
PAPER_SETTINGS: tuple[str, ...] = (
    "Later",
    "Early",
    "Seed",
    "Size",
    "8-bit",
    "4-bit",
    "FT",
    "Intra-type",
    "Random",
    "Layer",
)
#: every setting of the scale: the paper's ten, then the book's own (the pipeline's floor, and
#: the dtype changes fp32 vs bf16 and fp32 vs fp16, perturbations placed beside 8-bit)
ORDER: tuple[str, ...] = (*PAPER_SETTINGS, "Floor", "bf16", "fp16")
#: the panels of Fig. 3
GROUPS: dict[str, tuple[str, ...]] = {
    "pretraining": ("Later", "Early", "Seed", "Size"),
    "quantization": ("8-bit", "4-bit"),
    "fine-tuning": ("FT", "Intra-type", "Random"),
    "layers": ("Layer",),
    "numerics": ("Floor", "bf16", "fp16"),
}

_FUNCTIONS = {
    "Later": later,
    "Early": early,
    "Seed": seed,
    "Size": size,
    "8-bit": eight_bit,
    "4-bit": four_bit,
    "FT": ft,
    "Intra-type": intra_type,
    "Random": random_pairs,
    "Layer": layer,
    "Floor": floor,
    "bf16": bf16,
    "fp16": fp16,
}


def scale(s: Settings) -> PairSet:
    """Every setting of :data:`ORDER`, by the same functions as their chapters."""
    from kltools.pairs import concat

    return concat([_FUNCTIONS[name](s) for name in ORDER])


def report(pairs: PairSet) -> str:
    """The scale in a few numbers: pairs, settings, smallest and largest median (Markdown)."""
    import math

    from kltools.pairs import summarise

    med = summarise(pairs).set_index("setting")["median"]
    low, high = med.idxmin(), med.idxmax()
    span = math.log10(med[high] / max(med[low], 1e-12))
    return (
        f"- {len(pairs)} pairs in {len(med)} settings, all on the same "
        f"{int(pairs.frame.n_texts.max())} texts (pretraining settings: the texts their group keeps).\n"
        f"- Smallest median: {low} ({med[low]:.3g} bits/byte); largest: {high} ({med[high]:.3g} "
        f"bits/byte): the scale spans {span:.1f} decades."
    )


def clear_caches() -> None:
    """Forget every cached store, group and pair set (after the stores changed on disk)."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("kltools.settings") or name in ("kltools.validation",):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
