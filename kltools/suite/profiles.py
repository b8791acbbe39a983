"""Profiles of the offline model suite and the plan of what a profile builds.

A :class:`Profile` fixes every size, step count and schedule; :func:`plan` expands it into the
list of build units (pretraining runs, fine-tuned and quantized variants) with their names,
dependencies and parameters. Nothing here imports torch.

Naming (names carry the profile, so they are unique across profiles):

- pretraining runs ``<profile>-<size>`` (seed 0) and ``<profile>-<seed_size>-seed<k>``;
  checkpoint ``S`` of run ``NAME`` is ``NAME@stepS``;
- fine-tuned children ``<parent>-ft-<domain>-<method>`` (``method`` is ``full`` or ``lora``);
  a second-generation child appends another ``-ft-<domain>-<method>``;
- quantized copies ``<base>-q-<scheme>``: ``rtn8``, ``rtn4``, ``rtn4g32``, ``rtn3g32`` (round to
  nearest: bits, ``g<size>`` = group-wise, else per output channel) and ``bnb-int8``,
  ``bnb-fp4``, ``bnb-nf4`` (bitsandbytes, stored pre-quantized).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from kltools.errors import KLToolsError


@dataclass(frozen=True)
class SizeSpec:
    """One model size: GPT-NeoX width, depth, heads and peak learning rate."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    lr: float


@dataclass(frozen=True)
class Profile:
    """Every constant of one suite profile (see :data:`PROFILES`)."""

    name: str
    vocab_size: int
    seq_len: int
    batch_size: int
    total_steps: int
    warmup_steps: int
    final_lr_ratio: float
    log_steps_until: int
    checkpoint_every: int
    sizes: tuple[SizeSpec, ...]
    seed_size: str
    n_seeds: int
    tokenizer_bytes: int
    heldout_eval_windows: int
    n_texts: int
    text_max_bytes: int
    text_min_bytes: int
    ft_parents: tuple[str, ...]
    ft_domains: tuple[str, ...]
    ft_methods: tuple[str, ...]
    ft_steps: int
    ft_lr: dict[str, float]
    ft_second_gen: tuple[tuple[str, str, str], ...]
    quant_bases: tuple[str, ...]
    quant_schemes: tuple[str, ...]
    lora_rank: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    def checkpoint_steps(self) -> tuple[int, ...]:
        """Pythia-like checkpoint steps: 0, 1, 2, 4, ... doubling, then evenly spaced."""
        steps = [0]
        s = 1
        while s <= self.log_steps_until and s <= self.total_steps:
            steps.append(s)
            s *= 2
        s = self.checkpoint_every * (steps[-1] // self.checkpoint_every + 1)
        while s <= self.total_steps:
            steps.append(s)
            s += self.checkpoint_every
        if steps[-1] != self.total_steps:
            steps.append(self.total_steps)
        return tuple(steps)

    def size(self, name: str) -> SizeSpec:
        """The :class:`SizeSpec` called ``name``."""
        for spec in self.sizes:
            if spec.name == name:
                return spec
        raise KLToolsError(f"profile {self.name!r} has no size {name!r}")


TINY = Profile(
    name="tiny",
    vocab_size=4096,
    seq_len=640,
    batch_size=3,
    total_steps=320,
    warmup_steps=32,
    final_lr_ratio=0.1,
    log_steps_until=64,
    checkpoint_every=10,
    sizes=(
        SizeSpec("xs", d_model=32, n_layers=1, n_heads=2, lr=5e-3),
        SizeSpec("s", d_model=64, n_layers=2, n_heads=2, lr=4e-3),
        SizeSpec("m", d_model=128, n_layers=3, n_heads=4, lr=3e-3),
    ),
    seed_size="s",
    n_seeds=5,
    tokenizer_bytes=6_000_000,
    heldout_eval_windows=8,
    n_texts=2000,
    text_max_bytes=1024,
    text_min_bytes=256,
    ft_parents=("s", "m"),
    ft_domains=("prose", "docs", "code"),
    ft_methods=("full", "lora"),
    ft_steps=40,
    ft_lr={"full": 1e-3, "lora": 4e-3},
    ft_second_gen=(("m-ft-code-full", "docs", "full"),),
    quant_bases=("s", "m", "s-seed1", "s-seed2", "s-seed3"),
    quant_schemes=("rtn8", "rtn4", "rtn4g32", "rtn3g32", "bnb-int8", "bnb-fp4", "bnb-nf4"),
)

SMOKE = Profile(
    name="smoke",
    vocab_size=1024,
    seq_len=384,
    batch_size=4,
    total_steps=48,
    warmup_steps=4,
    final_lr_ratio=0.1,
    log_steps_until=8,
    checkpoint_every=8,
    sizes=(
        SizeSpec("xs", d_model=16, n_layers=1, n_heads=2, lr=5e-3),
        SizeSpec("s", d_model=32, n_layers=2, n_heads=2, lr=5e-3),
        SizeSpec("m", d_model=64, n_layers=2, n_heads=2, lr=5e-3),
    ),
    seed_size="s",
    n_seeds=2,
    tokenizer_bytes=1_500_000,
    heldout_eval_windows=8,
    n_texts=64,
    text_max_bytes=512,
    text_min_bytes=128,
    ft_parents=("s",),
    ft_domains=("code",),
    ft_methods=("full", "lora"),
    ft_steps=6,
    ft_lr={"full": 2e-3, "lora": 1e-2},
    ft_second_gen=(("s-ft-code-full", "prose", "full"),),
    quant_bases=("m",),
    quant_schemes=("rtn8", "rtn4g32", "rtn3g32", "bnb-int8", "bnb-nf4"),
)

#: the profiles ``kltools suite`` knows
PROFILES: dict[str, Profile] = {p.name: p for p in (TINY, SMOKE)}
#: the suite profile built when none is named
DEFAULT_SUITE: str = TINY.name

#: round-to-nearest schemes: name -> (bits, group size or None for per output channel)
RTN_SCHEMES: dict[str, tuple[int, int | None]] = {
    "rtn8": (8, None),
    "rtn4": (4, None),
    "rtn3": (3, None),
    "rtn8g128": (8, 128),
    "rtn4g128": (4, 128),
    "rtn4g64": (4, 64),
    "rtn4g32": (4, 32),
    "rtn3g64": (3, 64),
    "rtn3g32": (3, 32),
}
#: bitsandbytes schemes (``kltools.models.load_model`` names)
BNB_SCHEMES = ("int8", "fp4", "nf4")


def get_profile(profile: str | Profile) -> Profile:
    """The :class:`Profile` called ``profile`` (or ``profile`` itself)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise KLToolsError(
            f"unknown suite profile {profile!r}; choose one of {', '.join(PROFILES)}"
        ) from None


@dataclass(frozen=True)
class Unit:
    """One build unit of the suite: a pretraining run or a variant.

    ``kind`` is ``run``, ``finetune`` or ``quant``; ``deps`` are names of units that must be
    built first; ``params`` holds everything the builder needs.
    """

    name: str
    kind: str
    deps: tuple[str, ...]
    params: dict[str, Any]

    def cost(self) -> float:
        """A rough relative cost, used to start expensive units first."""
        return float(self.params.get("cost", 1.0))


#: GPT-NeoX config fields of Pythia's layout shared by every size (parallel residual, rotary on a
#: quarter of each head, untied embeddings, GELU); the benchmarks build their shapes from it too
NEOX_LAYOUT: dict[str, Any] = {
    "rotary_pct": 0.25,
    "rotary_emb_base": 10000,
    "use_parallel_residual": True,
    "tie_word_embeddings": False,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "initializer_range": 0.02,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
}


def pythia_shape(hidden: int, layers: int, heads: int, vocab: int = 50304) -> dict[str, Any]:
    """GPT-NeoX config fields of a Pythia-shaped model (MLP width 4x hidden, context 2048)."""
    return {
        **NEOX_LAYOUT,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "max_position_embeddings": 2048,
    }


def model_config(profile: Profile, size: SizeSpec) -> dict[str, Any]:
    """GPT-NeoX config fields of one size (Pythia layout, :data:`NEOX_LAYOUT`)."""
    return {
        "vocab_size": profile.vocab_size,
        "hidden_size": size.d_model,
        "num_hidden_layers": size.n_layers,
        "num_attention_heads": size.n_heads,
        "intermediate_size": 4 * size.d_model,
        "max_position_embeddings": profile.seq_len,
        **NEOX_LAYOUT,
    }


def count_params(profile: Profile, size: SizeSpec) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of a GPT-NeoX model of this size.

    Non-embedding excludes the input embedding and the (untied) unembedding, as Pythia does.
    """
    d, n_layers, v = size.d_model, size.n_layers, profile.vocab_size
    ff = 4 * d
    per_layer = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d)
    non_embedding = n_layers * per_layer + 2 * d
    return non_embedding + 2 * v * d, non_embedding


def plan(profile: str | Profile) -> list[Unit]:
    """Every unit the profile builds, in dependency order.

    Parameters
    ----------
    profile : str or Profile
        A name of :data:`PROFILES`.

    Returns
    -------
    list of Unit
        Pretraining runs first, then fine-tunes (parents before children), then quantized
        copies.
    """
    p = get_profile(profile)
    units: list[Unit] = []
    runs: dict[str, dict[str, Any]] = {}
    for size in p.sizes:
        seeds = range(p.n_seeds) if size.name == p.seed_size else range(1)
        for seed in seeds:
            short = size.name if seed == 0 else f"{size.name}-seed{seed}"
            n_all, n_ne = count_params(p, size)
            params = {
                "short": short,
                "size": size.name,
                "seed": seed,
                "config": model_config(p, size),
                "lr": size.lr,
                "steps": list(p.checkpoint_steps()),
                "n_params": n_all,
                "n_nonembedding_params": n_ne,
                "cost": n_all * p.total_steps,
            }
            runs[short] = params
            units.append(Unit(f"{p.name}-{short}", "run", (), params))
    finetunes: list[tuple[str, str, str]] = [
        (parent, domain, method)
        for parent in p.ft_parents
        for domain in p.ft_domains
        for method in p.ft_methods
    ]
    finetunes += list(p.ft_second_gen)
    for parent, domain, method in finetunes:
        root_short = parent.split("-ft-")[0]
        if root_short not in runs:
            raise KLToolsError(f"profile {p.name!r}: fine-tune parent {parent!r} is not a run")
        base = runs[root_short]
        parent_name = f"{p.name}-{parent}"
        deps = (parent_name,)
        params = {
            "short": f"{parent}-ft-{domain}-{method}",
            "size": base["size"],
            "seed": base["seed"],
            "parent": parent_name,
            "parent_is_run": parent == root_short,
            "domain": domain,
            "method": method,
            "steps": p.ft_steps,
            "lr": p.ft_lr[method],
            "ft_seed": 1000 + len(units),
            "generation": parent.count("-ft-") + 1,
            "n_params": base["n_params"],
            "n_nonembedding_params": base["n_nonembedding_params"],
            "cost": base["n_params"] * p.ft_steps,
        }
        units.append(Unit(f"{p.name}-{params['short']}", "finetune", deps, params))
    for base_short in p.quant_bases:
        if base_short not in runs:
            raise KLToolsError(f"profile {p.name!r}: quantization base {base_short!r} is not a run")
        base = runs[base_short]
        for scheme in p.quant_schemes:
            if scheme not in RTN_SCHEMES and scheme.removeprefix("bnb-") not in BNB_SCHEMES:
                raise KLToolsError(f"profile {p.name!r}: unknown quantization scheme {scheme!r}")
            if scheme in ("bnb-fp4", "bnb-nf4") and p.size(base["size"]).d_model % 64:
                # bitsandbytes' CPU 4-bit kernels need layer widths divisible by 64
                raise KLToolsError(
                    f"profile {p.name!r}: 4-bit bitsandbytes needs d_model % 64 == 0 "
                    f"(size {base['size']!r})"
                )
            params = {
                "short": f"{base_short}-q-{scheme}",
                "size": base["size"],
                "seed": base["seed"],
                "parent": f"{p.name}-{base_short}",
                "scheme": scheme,
                "n_params": base["n_params"],
                "n_nonembedding_params": base["n_nonembedding_params"],
                "cost": base["n_params"] / 100,
            }
            units.append(
                Unit(f"{p.name}-{params['short']}", "quant", (f"{p.name}-{base_short}",), params)
            )
    return units


def plan_digest(profile: str | Profile) -> str:
    """sha256 of the profile's constants and its plan (changes when anything planned changes)."""
    p = get_profile(profile)
    blob = json.dumps(
        {"profile": asdict(p), "units": [asdict(u) for u in plan(p)]}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def unit_digest(unit: Unit, profile: str | Profile) -> str:
    """sha256 of a unit and its profile's constants: a built unit whose record holds another
    digest was built under other settings and is rebuilt."""
    p = get_profile(profile)
    blob = json.dumps({"profile": asdict(p), "unit": asdict(unit)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def data_digest(profile: str | Profile) -> str:
    """sha256 of the profile's constants (the prepared data depend on nothing else)."""
    blob = json.dumps(asdict(get_profile(profile)), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
