"""One typed settings object per chapter, built from the chapter's parameters.

A chapter's ``parameters`` cell holds plain literals; its first library call is
``s = Settings.from_parameters(globals())``, which keeps the names this module knows, checks
their types and freezes them. Every library function of the book takes ``s`` (never
``globals()``), so the same parameters mean the same thing in every chapter, and ``s`` is
hashable (the stores and preprocessed groups are cached per settings).

The defaults are the ``tiny`` profile's (``params/tiny.yaml`` states them for readers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from kltools.errors import KLToolsError
from kltools.sources import DEFAULT_PROFILE, PROFILES

__all__ = ["PROFILES", "SHARED_PARAMETERS", "Settings"]

#: the parameters every chapter shares: declared once, in a profile file's ``common`` section
#: (never in a chapter's ``parameters`` cell), and always in a chapter's parameter table
SHARED_PARAMETERS: tuple[str, ...] = (
    "profile", "textset", "n_texts", "bos", "dtype", "device", "batch_size", "seed", "n_boot",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Every parameter a chapter can pass to the library (see each chapter for its meaning)."""

    profile: str = DEFAULT_PROFILE
    textset: str = "source"
    n_texts: int = 300
    bos: str = "paper"
    dtype: str = "float32"
    device: str = "cpu"
    batch_size: int = 16
    seed: int = 42
    n_boot: int = 100
    # pretraining (chapters 1-5 and the scale)
    steps: tuple[int, ...] = ()
    preprocess: bool = True
    clip_quantile: float = 0.02
    drop_fraction: float = 0.03
    after_step: int = 64
    early_later_k: int = 10
    consecutive_fractions: tuple[float, ...] = (0.07, 0.35, 0.70)
    exclude_copies: bool = False  # leave out checkpoints that copy another (kltools.integrity)
    # chapter 1 (Monte Carlo)
    mc_pairs: tuple[str, ...] = ("near_late", "near_late2", "mid", "seed", "size", "early_late")
    mc_samples: int = 256
    mc_length: int = 0
    mc_batch_size: int = 128
    n_grid: tuple[int, ...] = (25, 50, 100, 200, 300)
    # chapter 2 (maps)
    tsne_perplexity: float = 30.0
    ft_tsne_perplexity: float = 20.0
    segment_width: float = 6.0
    # chapter 5 (diffusion)
    window: int = 10
    min_start: int = 0
    fig5_fractions: tuple[float, ...] = (8 / 143, 135 / 143, 120 / 143)
    weight_space: bool = True
    weight_models: tuple[str, ...] = ()
    # part II
    quant_bases: tuple[str, ...] = ()
    quant_schemes: tuple[str, ...] = ()
    hub_models: tuple[str, ...] = ()
    floor_models: tuple[str, ...] = ()
    floor_settings: tuple[str, ...] = ("fp32", "bf16", "fp16", "batch1", "batch64")
    compare_bos: bool = True
    lineages_file: str = ""
    types: tuple[str, ...] = ()
    pair_seed: int = 0
    layer_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise KLToolsError(f"unknown profile {self.profile!r}; use {', '.join(PROFILES)}")
        if isinstance(self.n_texts, bool) or int(self.n_texts) < 2:
            raise KLToolsError(f"n_texts must be an integer >= 2, not {self.n_texts!r}")
        if isinstance(self.n_boot, bool) or int(self.n_boot) < 2:
            raise KLToolsError(f"n_boot must be an integer >= 2, not {self.n_boot!r}")

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> Settings:
        """The settings named in ``params`` (a chapter's ``globals()`` or a mapping).

        Names this class does not know (the notebook's own variables) are ignored; known names
        are converted to the field's type (lists become tuples).
        """
        values = {}
        for f in fields(cls):
            if f.name in params:
                values[f.name] = _convert(f.name, params[f.name], getattr(cls, f.name))
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return Settings.from_parameters({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (tuples become lists)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }


def _convert(name: str, value: Any, default: Any) -> Any:
    """``value`` in the type of ``default`` (one clear error when it cannot be)."""
    try:
        if isinstance(default, tuple):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError
            return tuple(value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or int(value) != value:
                raise TypeError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        kind = type(default).__name__ if not isinstance(default, tuple) else "list"
        raise KLToolsError(f"parameter {name} must be a {kind}, not {value!r}") from None
