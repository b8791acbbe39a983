"""The pretraining chapters' units, store and analyses (paper §3.1–3.2, Table 1, Figs. 1, 4, 5).

Every pretraining chapter (``method``, ``trajectories``, ``consecutive``, ``seeds_sizes``,
``diffusion``) reads one store, ``<data_root(profile)>/pretraining.zarr``, with
``loglik(model, step, text)``: every checkpoint of every pretraining run, extracted once and
resumed when interrupted.

Profiles
--------
``tiny`` / ``smoke``
    Every checkpoint of every pretraining run of the offline suite
    (:func:`kltools.suite.list_models`): the sizes at seed 0 and the seeds of the seed size.
``pythia``
    ``EleutherAI/pythia-{410m,1b,1.4b,2.8b,6.9b}`` at the paper's 154 revisions ``stepN``
    (0, 1, 2, 4, …, 512, then 1,000 … 143,000 every 1,000; ``pythia-1b@step116000`` excluded)
    and PolyPythia ``EleutherAI/pythia-410m-seed{1,2,5,6,7,8,9}`` (seeds 3 and 4 excluded),
    on the Pile text set (:func:`kltools.texts.pile_recipe`). Needs the hub and a GPU.

A run is labelled by its ``model`` name (``tiny-s``, ``tiny-s-seed1``, ``pythia-410m``,
``pythia-410m-seed1``); :func:`pretraining_store` adds ``size``, ``seed``, ``n_params`` and
``seed_group`` as coordinates on the ``model`` dim.

Nothing here imports torch at import time; the functions that load models import it lazily.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.errors import KLToolsError

__all__ = [
    "PAPER_TABLE1",
    "PYTHIA_EXCLUDED",
    "PYTHIA_SEEDS",
    "PYTHIA_SIZES",
    "Run",
    "checkpoint_coordinates",
    "compare_with_paper",
    "consecutive_by_model",
    "diffusion_summary",
    "early_late_pairs",
    "agreement_threshold",
    "estimate_vs_mc",
    "mc_length_for",
    "final_step",
    "heldout_losses",
    "hub_weight_distances",
    "kl_vs_n",
    "loglik_lag_distances",
    "nearest_step",
    "ordering_check",
    "pretraining_runs",
    "pretraining_store",
    "pretraining_texts",
    "pretraining_units",
    "project_2d",
    "pythia_steps",
    "seed_size_table",
    "validation_pairs",
    "weight_lag_distances",
]

#: Pythia sizes of the paper (hub ``EleutherAI/pythia-<size>``)
PYTHIA_SIZES: tuple[str, ...] = ("410m", "1b", "1.4b", "2.8b", "6.9b")
#: PolyPythia seeds used by the paper (``EleutherAI/pythia-410m-seed<k>``; 3 and 4 excluded)
PYTHIA_SEEDS: tuple[int, ...] = (1, 2, 5, 6, 7, 8, 9)
#: PolyPythia seeds the paper excludes as anomalous
PYTHIA_SEEDS_EXCLUDED: tuple[int, ...] = (3, 4)
#: (model, step) checkpoints the paper excludes
PYTHIA_EXCLUDED: frozenset[tuple[str, int]] = frozenset({("pythia-1b", 116000)})
#: the size PolyPythia's seeds have (the reference of Table 1)
PYTHIA_SEED_SIZE = "410m"

#: Table 1 of the paper (v1), Pythia-410M, bits/byte: value and the printed error
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "consecutive 10k→11k": (0.069, 0.0011),
    "consecutive 50k→51k": (0.053, 0.0010),
    "consecutive 100k→101k": (0.023, 0.00042),
    "seeds (average)": (0.11, 0.0024),
    "vs 1B": (0.28, 0.010),
    "vs 1.4B": (0.52, 0.018),
    "vs 2.8B": (1.0, 0.036),
    "vs 6.9B": (1.7, 0.060),
}

_SUITE_PROFILES = ("tiny", "smoke")


def pythia_steps() -> tuple[int, ...]:
    """The paper's 154 Pythia checkpoint steps: 0, 1, 2, 4, …, 512, then 1000 … 143000."""
    log = [0] + [2**k for k in range(10)]
    return tuple(log + list(range(1000, 143001, 1000)))


def _check_profile(profile: str) -> str:
    if profile not in (*_SUITE_PROFILES, "pythia"):
        raise KLToolsError(f"unknown profile {profile!r}; use tiny, smoke or pythia")
    return profile


@dataclass(frozen=True)
class Run:
    """One pretraining run: its label, where its checkpoints are, its size and seed.

    ``spec_base`` plus ``@step<S>`` is what :func:`kltools.models.resolve_model` takes.
    ``seed_group`` marks the runs compared in the seed setting (suite: every seed of the seed
    size, seed 0 included; pythia: PolyPythia seeds only, as in the paper).
    """

    model: str
    spec_base: str
    size: str
    seed: int
    steps: tuple[int, ...]
    n_params: int
    seed_group: bool
    size_group: bool


def _pythia_params(size: str) -> int:
    """Total parameter count of a Pythia size (from the Pythia paper's table, rounded)."""
    return {
        "410m": 405_334_016,
        "1b": 1_011_781_632,
        "1.4b": 1_414_647_808,
        "2.8b": 2_775_208_960,
        "6.9b": 6_857_302_016,
    }[size]


def pretraining_runs(
    profile: str, *, sizes: Sequence[str] | None = None, seeds: bool = True
) -> list[Run]:
    """The pretraining runs of a profile.

    Parameters
    ----------
    profile : {"tiny", "smoke", "pythia"}
    sizes : sequence of str, optional
        Keep only these sizes (suite: ``xs``, ``s``, ``m``; pythia: ``410m`` …); default all.
    seeds : bool
        Include the extra seeds of the seed size.

    Returns
    -------
    list of Run
        Seed-0 runs by size first, then the extra seeds.
    """
    _check_profile(profile)
    if profile == "pythia":
        known = PYTHIA_SIZES
        runs = [
            Run(
                f"pythia-{s}",
                f"EleutherAI/pythia-{s}",
                s,
                0,
                pythia_steps(),
                _pythia_params(s),
                False,
                True,
            )
            for s in PYTHIA_SIZES
        ]
        if seeds:
            runs += [
                Run(
                    f"pythia-{PYTHIA_SEED_SIZE}-seed{k}",
                    f"EleutherAI/pythia-{PYTHIA_SEED_SIZE}-seed{k}",
                    PYTHIA_SEED_SIZE,
                    k,
                    pythia_steps(),
                    _pythia_params(PYTHIA_SEED_SIZE),
                    True,
                    False,
                )
                for k in PYTHIA_SEEDS
            ]
    else:
        from kltools.suite import get_profile, list_models

        prof = get_profile(profile)
        known = tuple(s.name for s in prof.sizes)
        by_name: dict[str, list[dict[str, Any]]] = {}
        for entry in list_models(profile):
            if entry["kind"] == "checkpoint":
                by_name.setdefault(entry["name"], []).append(entry)
        runs = []
        for name, entries in by_name.items():
            first = entries[0]
            seed = int(first["seed"])
            if seed and not seeds:
                continue
            runs.append(
                Run(
                    name,
                    name,
                    str(first["size"]),
                    seed,
                    tuple(sorted(int(e["step"]) for e in entries)),
                    int(first["n_params"]),
                    first["size"] == prof.seed_size,
                    seed == 0,
                )
            )
        runs.sort(key=lambda r: (r.seed != 0, r.seed, known.index(r.size)))
    if sizes is not None:
        bad = [s for s in sizes if s not in known]
        if bad:
            raise KLToolsError(
                f"profile {profile!r} has no size {bad[0]!r}; sizes: {', '.join(known)}"
            )
        runs = [r for r in runs if r.size in sizes]
    if not runs:
        raise KLToolsError(f"no pretraining runs selected in profile {profile!r}")
    return runs


def pretraining_units(
    profile: str,
    *,
    sizes: Sequence[str] | None = None,
    seeds: bool = True,
    steps: Sequence[int] | None = None,
) -> list[Any]:
    """Extraction units of every checkpoint of every pretraining run.

    Parameters
    ----------
    profile : {"tiny", "smoke", "pythia"}
    sizes, seeds
        As for :func:`pretraining_runs`.
    steps : sequence of int, optional
        Keep only these steps (each run keeps those it has); default every checkpoint. GPU
        users thin the pythia profile with it.

    Returns
    -------
    list of kltools.extraction.Unit
        ``spec`` ``<run>@step<S>`` (suite) or ``EleutherAI/pythia-<size>@step<S>``; coords
        ``{"model": run name, "step": S}``. Paper exclusions (``pythia-1b@step116000``) are
        left out.
    """
    from kltools.extraction import Unit

    wanted = None if steps is None else {int(s) for s in steps}
    units = []
    for run in pretraining_runs(profile, sizes=sizes, seeds=seeds):
        for s in run.steps:
            if wanted is not None and s not in wanted:
                continue
            if (run.model, s) in PYTHIA_EXCLUDED and profile == "pythia":
                continue
            units.append(Unit(f"{run.spec_base}@step{s}", {"model": run.model, "step": int(s)}))
    if not units:
        raise KLToolsError(f"no checkpoint of profile {profile!r} is at the steps {sorted(wanted)}")
    return units


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def pretraining_texts(profile: str, n_texts: int | None = None, textset: str | None = None):
    """The text set of the pretraining chapters (first ``n_texts`` texts).

    ``textset``: ``"suite"`` (default for tiny/smoke: the suite's analysis set), ``"pile"``
    (default for pythia: :func:`kltools.texts.pile_recipe`, cached as jsonl under
    ``data_root("pythia")/texts``), or a ``.jsonl``/``.txt`` path.

    Raises
    ------
    KLToolsError
        At once, before any model is touched, when the Pile is asked for with the hub offline
        and no cached copy exists.
    """
    from kltools.paths import data_root
    from kltools.texts import load_texts, pile_recipe

    _check_profile(profile)
    if n_texts is not None and (isinstance(n_texts, bool) or int(n_texts) < 2):
        raise KLToolsError(f"n_texts must be an integer >= 2, not {n_texts!r}")
    choice = textset or ("pile" if profile == "pythia" else "suite")
    if choice == "suite":
        if profile not in _SUITE_PROFILES:
            raise KLToolsError("textset 'suite' needs profile tiny or smoke; use 'pile' or a path")
        ts = load_texts(profile)
    elif choice == "pile":
        n = int(n_texts or 10000)
        cache = data_root("pythia") / "texts" / f"pile-{n}.jsonl"
        if cache.is_file():
            ts = load_texts(cache)
        elif _hub_offline():
            raise KLToolsError(
                "the pythia profile needs the Hugging Face hub (the Pile text set and the "
                "EleutherAI checkpoints) but HF_HUB_OFFLINE=1; run it on a connected GPU "
                f"machine, or give textset=<a .jsonl of texts> (no cached {cache.name} either)"
            )
        else:
            ts = pile_recipe(n)
            cache.parent.mkdir(parents=True, exist_ok=True)
            ts.to_jsonl(cache)
    else:
        ts = load_texts(choice)
    if n_texts is not None and int(n_texts) < len(ts):
        ts = ts.subset(n=int(n_texts))
    return ts


def _store_path(profile: str, texts: Any, bos: str, dtype: str) -> Path:
    """``pretraining.zarr``, or a keyed sibling if that store holds other texts/BOS/dtype."""
    from kltools.paths import data_root

    base = data_root(profile) / "pretraining.zarr"
    if not base.exists():
        return base
    try:
        import zarr

        attrs = dict(zarr.open_group(str(base), mode="r").attrs)
    except Exception:  # not a store: let kltools.store report it
        return base
    if (
        attrs.get("textset_sha256") == texts.sha256
        and attrs.get("bos_policy") == bos
        and attrs.get("dtype") == dtype
    ):
        return base
    key = hashlib.sha256(f"{texts.sha256}|{bos}|{dtype}".encode()).hexdigest()[:10]
    return data_root(profile) / f"pretraining-{bos}-{dtype}-{key}.zarr"


_STORE_KEYS = (
    "profile",
    "n_texts",
    "bos",
    "dtype",
    "device",
    "batch_size",
    "sizes",
    "seeds",
    "steps",
    "textset",
)


def pretraining_store(
    params: Mapping[str, Any] | None = None,
    *,
    profile: str | None = None,
    n_texts: int | None = None,
    bos: str = "paper",
    dtype: str = "float32",
    device: str = "auto",
    batch_size: int | None = None,
    sizes: Sequence[str] | None = None,
    seeds: bool = True,
    steps: Sequence[int] | None = None,
    textset: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Extract (resumably) and open the pretraining store: ``loglik(model, step, text)``.

    Parameters
    ----------
    params : mapping, optional
        A chapter's parameters (or its ``globals()``); the keys ``profile``, ``n_texts``,
        ``bos``, ``dtype``, ``device``, ``batch_size``, ``sizes``, ``seeds``, ``steps``,
        ``textset`` found there fill the arguments not given explicitly. ``batch_size`` 0 or
        None means automatic; ``steps`` None/empty means every checkpoint.
    profile, n_texts, bos, dtype, device, batch_size, sizes, seeds, steps, textset
        See :func:`pretraining_units`, :func:`pretraining_texts`, :func:`kltools.extract`.
    progress : bool
        Progress bar on stderr while extracting.

    Returns
    -------
    xarray.Dataset
        The store's view restricted to the requested units, with ``size``, ``seed``,
        ``n_params``, ``seed_group`` and ``size_group`` coordinates on ``model``; attrs
        ``store_path``.
    """
    from kltools.extraction import extract
    from kltools.store import open_store

    given = {
        "profile": profile,
        "n_texts": n_texts,
        "bos": bos,
        "dtype": dtype,
        "device": device,
        "batch_size": batch_size,
        "sizes": sizes,
        "seeds": seeds,
        "steps": steps,
        "textset": textset,
    }
    defaults = {"bos": "paper", "dtype": "float32", "device": "auto", "seeds": True}
    if params is not None:
        for key in _STORE_KEYS:
            if key in params and (given[key] is None or given[key] == defaults.get(key)):
                given[key] = params[key]
    prof = given["profile"] or os.environ.get("KLTOOLS_PROFILE") or "tiny"
    _check_profile(prof)
    if given["textset"] == "suite" and prof == "pythia":
        given["textset"] = "pile"
    texts = pretraining_texts(prof, given["n_texts"], given["textset"])
    units = pretraining_units(
        prof, sizes=given["sizes"] or None, seeds=bool(given["seeds"]), steps=given["steps"] or None
    )
    path = _store_path(prof, texts, given["bos"], given["dtype"])
    extract(
        units,
        texts,
        path,
        bos=given["bos"],
        dtype=given["dtype"],
        device=given["device"],
        batch_size=given["batch_size"] or None,
        progress=progress,
    )
    ds = open_store(path, dims=("model", "step"))
    models = list(dict.fromkeys(u.coords["model"] for u in units))
    step_list = sorted({int(u.coords["step"]) for u in units})
    ds = ds.sel(model=models, step=step_list)
    runs = {r.model: r for r in pretraining_runs(prof, sizes=given["sizes"] or None, seeds=True)}
    ds = ds.assign_coords(
        size=("model", [runs[m].size for m in models]),
        seed=("model", [runs[m].seed for m in models]),
        n_params=("model", [runs[m].n_params for m in models]),
        seed_group=("model", [runs[m].seed_group for m in models]),
        size_group=("model", [runs[m].size_group for m in models]),
    )
    ds.attrs["store_path"] = str(path)
    ds.attrs["profile"] = prof
    return ds


# --------------------------------------------------------------------------------------------
# small helpers on the store view


def final_step(loglik: xr.DataArray, models: Sequence[str] | None = None) -> int:
    """The last step at which every given model (default: all) has a finite vector."""
    da = loglik if models is None else loglik.sel(model=list(models))
    ok = np.isfinite(da).all("text").all("model")
    steps = da["step"].values[ok.values]
    if steps.size == 0:
        raise KLToolsError("no step at which every model has log-likelihoods")
    return int(steps.max())


def nearest_step(steps: Sequence[int], target: float) -> int:
    """The step of ``steps`` closest to ``target`` (the earlier one on a tie)."""
    arr = np.asarray(sorted(int(s) for s in steps))
    return int(arr[np.argmin(np.abs(arr - target))])


def size_order(ds: xr.Dataset | xr.DataArray) -> list[str]:
    """The seed-0 runs ordered by parameter count (one per size)."""
    sub = ds["model"].where(ds["size_group"], drop=True)
    n = ds["n_params"].sel(model=sub.values).values
    return [str(m) for _, m in sorted(zip(n, sub.values.tolist()))]


def seed_models(ds: xr.Dataset | xr.DataArray) -> list[str]:
    """The runs of the seed setting (``seed_group``), by seed."""
    sub = ds["model"].where(ds["seed_group"], drop=True)
    seeds = ds["seed"].sel(model=sub.values).values
    return [str(m) for _, m in sorted(zip(seeds, sub.values.tolist()))]


def reference_model(ds: xr.Dataset | xr.DataArray) -> str:
    """The seed-0 run of the seed size (Pythia-410M in the paper): Table 1's reference."""
    seeded = {str(s) for s in ds["size"].values[ds["seed_group"].values]}
    for m in size_order(ds):
        if str(ds["size"].sel(model=m).item()) in seeded:
            return m
    return size_order(ds)[0]


def _ckpt_label(model: str, step: int) -> str:
    return f"{model}@{int(step)}"


def stack_checkpoints(loglik: xr.DataArray) -> xr.DataArray:
    """``loglik(model, step, text)`` -> ``(ckpt, text)`` over the finite checkpoints.

    ``ckpt`` labels are ``model@step``; ``model``, ``step`` (and ``size``/``seed`` if present)
    are coordinates along it.
    """
    extra = [c for c in ("size", "seed") if c in loglik.coords]
    st = loglik.stack(ckpt=("model", "step"))
    keep = np.isfinite(st).all("text").values
    st = st.isel(ckpt=np.flatnonzero(keep))
    models = st["model"].values.tolist()
    steps = st["step"].values.tolist()
    out = xr.DataArray(
        st.transpose("ckpt", "text").values,
        dims=("ckpt", "text"),
        coords={
            "ckpt": [_ckpt_label(m, s) for m, s in zip(models, steps)],
            "model": ("ckpt", models),
            "step": ("ckpt", np.asarray(steps, dtype=np.int64)),
            "text": loglik["text"].values,
            "text_bytes": ("text", loglik["text_bytes"].values),
        },
        attrs=dict(loglik.attrs),
    )
    for c in extra:
        out = out.assign_coords({c: ("ckpt", loglik[c].sel(model=models).values)})
    return out


# --------------------------------------------------------------------------------------------
# chapter 1: the method, validated by Monte Carlo


def validation_pairs(
    ds: xr.Dataset, roles: Sequence[str], *, after_step: float
) -> list[dict[str, Any]]:
    """Pairs of checkpoints that probe where the estimate holds (near) and breaks (far).

    Roles: ``near_late`` (the reference run's last two checkpoints) and ``near_late2`` (the
    consecutive pair before them), kind "near"; ``mid`` (its two consecutive checkpoints
    around the middle of the post-warm-up phase: near in steps, but while the learning rate is
    high the per-token divergence may already be too large), kind "mid"; ``seed`` (the first
    two seeds at the final step), ``size`` (the reference run vs the next larger size, final
    step), ``far_size`` (smallest vs largest size, final), ``early_late`` (the reference run
    at ``after_step`` vs its final checkpoint).

    Returns
    -------
    list of dict
        ``role``, ``a`` and ``b`` as ``(model, step)``, ``kind`` ("near", "mid" or "far").
    """
    ref = reference_model(ds)
    steps = [
        int(s) for s in ds["step"].values if np.isfinite(ds.loglik.sel(model=ref, step=s)).all()
    ]
    last = final_step(ds.loglik)
    sizes = size_order(ds)
    seeds = seed_models(ds)
    post = [s for s in steps if s >= after_step]
    out = []
    for role in roles:
        if role == "near_late":
            a, b = (ref, steps[-2]), (ref, steps[-1])
        elif role == "near_late2":
            if len(steps) < 3:
                raise KLToolsError("near_late2: fewer than 3 checkpoints in the store")
            a, b = (ref, steps[-3]), (ref, steps[-2])
        elif role == "mid":
            if len(post) < 2:
                raise KLToolsError(f"mid: fewer than 2 checkpoints at step >= {after_step}")
            i = min(len(post) // 2, len(post) - 2)
            a, b = (ref, post[i]), (ref, post[i + 1])
        elif role == "seed":
            if len(seeds) < 2:
                raise KLToolsError("seed: fewer than 2 seeds in the store")
            a, b = (seeds[0], last), (seeds[1], last)
        elif role == "size":
            i = sizes.index(ref)
            other = sizes[i + 1] if i + 1 < len(sizes) else sizes[i - 1]
            a, b = (ref, last), (other, last)
        elif role == "far_size":
            a, b = (sizes[0], last), (sizes[-1], last)
        elif role == "early_late":
            start = nearest_step(steps, after_step)
            a, b = (ref, start), (ref, steps[-1])
        else:
            raise KLToolsError(
                f"unknown validation pair role {role!r}; use near_late, near_late2, mid, seed, "
                "size, far_size, early_late"
            )
        kind = "near" if role.startswith("near") else ("mid" if role == "mid" else "far")
        out.append({"role": role, "a": a, "b": b, "kind": kind})
    return out


def _spec_of(ds: xr.Dataset, model: str, step: int) -> str:
    """The model spec of a checkpoint in a pretraining store view."""
    if "spec" in ds.coords:
        spec = ds["spec"].sel(model=model, step=step).item()
        if spec:
            return str(spec)
    return f"{model}@step{int(step)}"


def mc_length_for(ds: xr.Dataset, length: int | None, context: int | None = None) -> int:
    """Tokens per Monte-Carlo sample: ``length`` if positive, else the texts' median length.

    The median number of scored tokens per text in the store (so the sampled sequences are as
    long as the texts the estimate is computed on), capped at ``context - 1``.
    """
    if length is not None and int(length) > 0:
        out = int(length)
    else:
        n_tok = ds["n_tokens"] if "n_tokens" in ds else None
        if n_tok is None:
            raise KLToolsError(
                "mc_length 0 (automatic) needs n_tokens in the store; give mc_length"
            )
        out = int(np.median(np.asarray(n_tok.values).ravel()))
    if context is not None:
        out = min(out, int(context) - 1)
    return max(1, out)


def estimate_vs_mc(
    ds: xr.Dataset,
    pairs: Sequence[Mapping[str, Any]],
    *,
    n_samples: int,
    length: int | None,
    seed: int,
    n_boot: int,
    device: str = "cpu",
    batch_size: int = 64,
    dtype: str = "float32",
) -> pd.DataFrame:
    """Validate the estimator against Monte-Carlo KL, and measure the effect of the text set.

    For each pair ``(p, q)``, :func:`kltools.montecarlo.mc_kl` draws ``n_samples`` sequences of
    ``length`` tokens from p (KL(p‖q) = mean log-ratio) and from q (KL(q‖p)); their average
    is the symmetrised KL (half the Jeffreys divergence) that the estimate approximates.
    Two estimates are set beside it:

    * ``estimate_sampled``: the paper's estimator, Var/2 of the log-likelihood difference,
      with the models' own samples as the text set (one direction's samples at a time, then
      averaged). This is the setting the second-order argument is about (texts drawn from
      the model), so it tests the approximation itself: ``ratio`` = estimate_sampled / MC.
    * ``estimate``: the same estimator on the store's fixed text set (the corpus; what every
      chapter uses), with a bootstrap over texts: ``ratio_corpus`` = estimate / MC. It differs
      from 1 when the corpus is not distributed like the models' samples.

    Parameters
    ----------
    length : int or None
        Tokens per sample; 0 or None: the texts' median length (:func:`mc_length_for`).

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``role``, ``kind``, ``a``, ``b``, ``length``, ``n_samples``;
        ``mc_pq``, ``mc_pq_se``, ``mc_qp``, ``mc_qp_se``, ``mc_sym``, ``mc_sym_se``,
        ``kl_per_token`` (the symmetrised MC KL in nats per sampled token);
        ``estimate_sampled``, ``estimate_sampled_se``, ``ratio``, ``ratio_se``, ``z`` and
        ``agree`` (|z| ≤ 2, from a joint bootstrap over the samples) and ``verdict``
        ("agree", "disagree", or "inconclusive" when the ratio's ±2 s.e. interval is wider
        than ±50%); ``estimate``, ``estimate_se``, ``estimate_lo``, ``estimate_hi``,
        ``ratio_corpus``, ``ratio_corpus_se``, ``z_corpus``.
    """
    from transformers.utils import logging as hf_logging

    from kltools.kl import bootstrap_kl
    from kltools.models import load_model, max_length
    from kltools.montecarlo import half_variance_vs_mean, mc_kl

    hf_logging.disable_progress_bar()
    cache: dict[str, Any] = {}

    def get(spec: str) -> Any:
        if spec not in cache:
            cache[spec] = load_model(spec, dtype=dtype, device=device)
        return cache[spec]

    rows = []
    for k, pair in enumerate(pairs):
        (ma, sa), (mb, sb) = pair["a"], pair["b"]
        two = xr.concat(
            [
                ds.loglik.sel(model=ma, step=sa, drop=True),
                ds.loglik.sel(model=mb, step=sb, drop=True),
            ],
            dim=xr.DataArray(["p", "q"], dims="pair_model", name="pair_model"),
        )
        boot = bootstrap_kl(two, dim="pair_model", n_boot=n_boot, seed=seed)
        est = float(boot.kl.values[0, 1])
        est_se = float(boot.se.values[0, 1])
        p = get(_spec_of(ds, ma, sa))
        q = get(_spec_of(ds, mb, sb))
        n_len = mc_length_for(ds, length, max_length(p.model, p.tokenizer))
        dev = p.info.get("device", device)
        common = dict(n_samples=n_samples, length=n_len, batch_size=batch_size, device=dev)
        pq = mc_kl(p.model, q.model, p.tokenizer, seed=seed + 2 * k, **common)
        qp = mc_kl(q.model, p.model, p.tokenizer, seed=seed + 2 * k + 1, **common)
        check = half_variance_vs_mean([pq, qp], n_boot=n_boot, seed=seed + k)
        sym = check["mc"]
        sym_se = math.hypot(pq.se_bits_per_byte, qp.se_bits_per_byte) / 2
        ratio_c = est / sym if sym > 0 else float("nan")
        ratio_c_se = abs(ratio_c) * math.hypot(
            est_se / est if est else 0.0, sym_se / sym if sym else 0.0
        )
        z_c = (est - sym) / math.hypot(est_se, sym_se) if (est_se or sym_se) else float("nan")
        z = check["z"]
        rows.append(
            {
                "role": pair["role"],
                "kind": pair["kind"],
                "a": _ckpt_label(ma, sa),
                "b": _ckpt_label(mb, sb),
                "length": n_len,
                "n_samples": int(n_samples),
                "mc_pq": pq.bits_per_byte,
                "mc_pq_se": pq.se_bits_per_byte,
                "mc_qp": qp.bits_per_byte,
                "mc_qp_se": qp.se_bits_per_byte,
                "mc_sym": sym,
                "mc_sym_se": sym_se,
                "kl_per_token": (pq.mean + qp.mean) / 2 / n_len,
                "estimate_sampled": check["half_var"],
                "estimate_sampled_se": check["half_var_se"],
                "ratio": check["ratio"],
                "ratio_se": check["ratio_se"],
                "z": z,
                "agree": bool(abs(z) <= 2.0),
                "verdict": (
                    "inconclusive"
                    if not 2 * check["ratio_se"] <= 0.5
                    else ("agree" if abs(z) <= 2.0 else "disagree")
                ),
                "estimate": est,
                "estimate_se": est_se,
                "estimate_lo": float(boot.lo.values[0, 1]),
                "estimate_hi": float(boot.hi.values[0, 1]),
                "ratio_corpus": ratio_c,
                "ratio_corpus_se": ratio_c_se,
                "z_corpus": z_c,
            }
        )
    return pd.DataFrame(rows)


def agreement_threshold(mc: pd.DataFrame) -> float | None:
    """The per-token KL up to which the estimator agrees with Monte Carlo, or None.

    Pairs sorted by ``kl_per_token``: the largest value such that every pair at or below it
    has verdict "agree". None if the closest pair does not agree (no clean threshold).
    """
    last = None
    for row in mc.sort_values("kl_per_token").itertuples():
        if row.verdict != "agree":
            break
        last = float(row.kl_per_token)
    return last


def se_exponent(study: pd.DataFrame) -> float:
    """Least-squares slope of log(bootstrap s.e.) on log N in a :func:`kl_vs_n` table (1/√N: −0.5)."""
    ok = (study.se > 0) & (study.n > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(study.n[ok]), np.log(study.se[ok]), 1)[0])


def variance_se(d: np.ndarray) -> float:
    """Sampling s.e. of ``Var(d)/2`` over texts: ``sqrt((mu4 - sigma^4) / N) / 2``."""
    d = np.asarray(d, dtype=np.float64)
    c = d - d.mean()
    mu4 = float(np.mean(c**4))
    s2 = float(np.mean(c**2))
    return math.sqrt(max(mu4 - s2**2, 0.0) / d.size) / 2


def kl_vs_n(
    a: xr.DataArray,
    b: xr.DataArray,
    ns: Sequence[int],
    *,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """The estimate between two vectors on the first-drawn ``N`` texts, for each ``N``.

    Texts are drawn once in a seeded random order; ``N`` takes the first ``N`` (nested
    subsets). Returns ``n``, ``kl`` (bits/byte), ``se`` (bootstrap), ``se_formula``
    (:func:`variance_se`, in bits/byte), ``lo``, ``hi``.
    """
    from kltools.kl import bootstrap_kl

    n_all = a.sizes["text"]
    order = np.random.default_rng(seed).permutation(n_all)
    rows = []
    for n in ns:
        n = int(min(n, n_all))
        idx = order[:n]
        two = xr.concat(
            [a.isel(text=idx), b.isel(text=idx)],
            dim=xr.DataArray(["p", "q"], dims="pair_model", name="pair_model"),
        )
        boot = bootstrap_kl(two, dim="pair_model", n_boot=n_boot, seed=seed)
        mb = float(two["text_bytes"].mean())
        d = (two.values[0] - two.values[1]).astype(np.float64)
        rows.append(
            {
                "n": n,
                "kl": float(boot.kl.values[0, 1]),
                "se": float(boot.se.values[0, 1]),
                "se_formula": variance_se(d) / (mb * math.log(2)),
                "lo": float(boot.lo.values[0, 1]),
                "hi": float(boot.hi.values[0, 1]),
            }
        )
    return pd.DataFrame(rows).drop_duplicates("n")


# --------------------------------------------------------------------------------------------
# chapter 2: the map


def checkpoint_coordinates(loglik: xr.DataArray) -> xr.DataArray:
    """Scaled map coordinates (:func:`kltools.map_coordinates`) of every finite checkpoint."""
    from kltools.kl import map_coordinates

    return map_coordinates(stack_checkpoints(loglik), dim="ckpt")


def project_2d(
    coords: xr.DataArray, method: str = "tsne", *, perplexity: float = 30.0, seed: int = 42
) -> pd.DataFrame:
    """A 2-D picture of the checkpoints: t-SNE (the paper's) or PCA (= classical MDS).

    t-SNE: scikit-learn, ``init="pca"``, ``random_state=seed``, perplexity capped at
    ``(n - 1) / 3`` so that few points still work. PCA of the scaled double-centred
    coordinates is classical MDS of the KL "distances" (squared distances = KL in bits/byte).

    Returns
    -------
    pandas.DataFrame
        ``ckpt``, ``model``, ``step`` (and ``size``, ``seed``), ``x``, ``y``; attrs
        ``perplexity`` (t-SNE) or ``explained`` (PCA: variance fractions of the two axes).
    """
    X = np.asarray(coords.transpose("ckpt", "text").values, dtype=np.float64)
    n = X.shape[0]
    attrs: dict[str, Any] = {"method": method}
    if method == "tsne":
        from sklearn.manifold import TSNE

        perp = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
        xy = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(X)
        attrs["perplexity"] = perp
    elif method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(X)
        xy = pca.transform(X)
        attrs["explained"] = [float(v) for v in pca.explained_variance_ratio_]
    else:
        raise KLToolsError(f"unknown projection {method!r}; use 'tsne' or 'pca'")
    df = pd.DataFrame({"ckpt": coords["ckpt"].values, "x": xy[:, 0], "y": xy[:, 1]})
    for c in ("model", "step", "size", "seed"):
        if c in coords.coords:
            df[c] = coords[c].values
    df.attrs.update(attrs)
    return df


# --------------------------------------------------------------------------------------------
# chapter 3: consecutive checkpoints


def consecutive_by_model(loglik: xr.DataArray, *, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Consecutive-checkpoint KL (bits/byte) of every run, long format.

    Each run uses its own finite checkpoints (a paper exclusion is bridged: the pair spans it).
    Columns ``model``, ``size``, ``seed``, ``step``, ``step_next``, ``kl`` (and ``se``).
    """
    from kltools.analysis import consecutive_kl

    frames = []
    for m in loglik["model"].values:
        da = loglik.sel(model=m)
        ok = np.isfinite(da).all("text").values
        da = da.isel(step=np.flatnonzero(ok))
        if da.sizes["step"] < 2:
            continue
        ck = consecutive_kl(da, dim="step", n_boot=n_boot, seed=seed)
        df = pd.DataFrame(
            {
                "model": str(m),
                "step": ck["step"].values.astype(int),
                "step_next": ck["step_next"].values.astype(int),
                "kl": ck.values,
            }
        )
        if "se" in ck.coords:
            df["se"] = ck["se"].values
        for c in ("size", "seed"):
            if c in loglik.coords:
                df[c] = loglik[c].sel(model=m).item()
        frames.append(df)
    if not frames:
        raise KLToolsError("consecutive_by_model: no run has 2 finite checkpoints")
    return pd.concat(frames, ignore_index=True)


def early_late_pairs(consecutive: pd.DataFrame, *, after_step: float, k: int) -> pd.DataFrame:
    """Early/Later sets (:func:`kltools.analysis.early_later`) from a long consecutive table.

    Each model's pairs starting at ``>= after_step``: the first ``k`` are Early, the last ``k``
    Later (pooled over models). ``k`` is lowered to half the available pairs when a model has
    fewer than ``2k`` (the column ``k`` records the value used).
    """
    from kltools.analysis import early_later

    frames = []
    for m, part in consecutive.groupby("model", sort=False):
        post = part[part["step"] >= after_step]
        kk = int(min(k, max(len(post) // 2, 1)))
        da = xr.DataArray(
            part["kl"].values,
            dims="step",
            coords={"step": part["step"].values, "step_next": ("step", part["step_next"].values)},
        )
        df = early_later(da, after_step=after_step, k=kk)
        df.insert(1, "model", m)
        df["k"] = kk
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def heldout_losses(profile: str, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Held-out loss (nats/token) per checkpoint from each suite run's ``metrics.json``.

    Columns ``model``, ``step``, ``heldout_loss``. The pythia profile has none (empty frame).
    """
    if profile not in _SUITE_PROFILES:
        return pd.DataFrame(columns=["model", "step", "heldout_loss"])
    from kltools.suite import profile_root

    root = profile_root(profile)
    names = models or [r.model for r in pretraining_runs(profile)]
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


# --------------------------------------------------------------------------------------------
# chapter 4: seeds and sizes


def _pair_boot(loglik: xr.DataArray, labels: Sequence[str], n_boot: int, seed: int) -> xr.Dataset:
    from kltools.kl import bootstrap_kl

    return bootstrap_kl(
        loglik.sel(ckpt=list(labels)), dim="ckpt", n_boot=n_boot, seed=seed, keep_replicates=True
    )


def seed_size_table(
    ds: xr.Dataset,
    *,
    n_boot: int,
    seed: int,
    consecutive_fractions: Sequence[float] = (0.07, 0.35, 0.70),
    step: int | None = None,
) -> pd.DataFrame:
    """Table 1: late consecutive checkpoints, seeds and sizes, with bootstrap errors.

    Rows (all in bits/byte, one bootstrap over texts shared by every row):

    - ``consecutive``: the reference run's consecutive pairs starting nearest to each fraction
      of its last step (paper: 10k→11k, 50k→51k, 100k→101k of 143k: 0.07, 0.35, 0.70);
    - ``seed``: every pair of the seed runs at ``step`` (default: last common step), and their
      average (``seeds (average)``, whose interval comes from averaging each replicate);
    - ``size``: the reference run vs every other size at ``step``, and the average over all
      size pairs.

    Columns ``setting``, ``quantity``, ``a``, ``b``, ``kl``, ``se``, ``lo``, ``hi``,
    ``n_pairs``.
    """
    ll = ds.loglik
    last = step if step is not None else final_step(ll)
    ref = reference_model(ds)
    ref_steps = [int(s) for s in ll["step"].values if np.isfinite(ll.sel(model=ref, step=s)).all()]
    labels: list[str] = []
    cons = []
    for f in consecutive_fractions:
        i = ref_steps.index(nearest_step(ref_steps[:-1], f * ref_steps[-1]))
        a, b = _ckpt_label(ref, ref_steps[i]), _ckpt_label(ref, ref_steps[i + 1])
        cons.append((f, a, b, ref_steps[i], ref_steps[i + 1]))
        labels += [a, b]
    seeds = seed_models(ds)
    sizes = size_order(ds)
    labels += [_ckpt_label(m, last) for m in [*seeds, *sizes]]
    labels = list(dict.fromkeys(labels))
    stacked = stack_checkpoints(ll)
    boot = _pair_boot(stacked, labels, n_boot, seed)
    alpha = (1 - boot.attrs["ci"]) / 2

    def row(setting: str, quantity: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
        kl = np.mean([float(boot.kl.sel(ckpt=a, ckpt_=b)) for a, b in pairs])
        reps = np.mean([boot.replicates.sel(ckpt=a, ckpt_=b).values for a, b in pairs], axis=0)
        lo, hi = np.quantile(reps, [alpha, 1 - alpha])
        one = len(pairs) == 1
        return {
            "setting": setting,
            "quantity": quantity,
            "a": pairs[0][0] if one else "",
            "b": pairs[0][1] if one else "",
            "kl": float(kl),
            "se": float(reps.std(ddof=1)),
            "lo": float(lo),
            "hi": float(hi),
            "n_pairs": len(pairs),
        }

    rows = [row("consecutive", f"consecutive {sa}→{sb}", [(a, b)]) for _, a, b, sa, sb in cons]
    seed_pairs = [
        (_ckpt_label(x, last), _ckpt_label(y, last))
        for i, x in enumerate(seeds)
        for y in seeds[i + 1 :]
    ]
    if seed_pairs:
        rows += [
            row("seed", f"seed {a.split('@')[0]} vs {b.split('@')[0]}", [(a, b)])
            for a, b in seed_pairs
        ]
        rows.append(row("seed", "seeds (average)", seed_pairs))
    for m in sizes:
        if m != ref:
            rows.append(
                row(
                    "size",
                    f"vs {ds['size'].sel(model=m).item()}",
                    [(_ckpt_label(ref, last), _ckpt_label(m, last))],
                )
            )
    size_pairs = [
        (_ckpt_label(x, last), _ckpt_label(y, last))
        for i, x in enumerate(sizes)
        for y in sizes[i + 1 :]
    ]
    if size_pairs:
        rows.append(row("size", "sizes (average of all pairs)", size_pairs))
    out = pd.DataFrame(rows)
    out.attrs.update(
        {
            "step": last,
            "reference": ref,
            "reference_rank": sizes.index(ref),
            "n_boot": n_boot,
            "ci": boot.attrs["ci"],
        }
    )
    return out


def ordering_check(table: pd.DataFrame) -> dict[str, Any]:
    """Check ``late consecutive < seed < size`` on a :func:`seed_size_table`.

    Uses the last consecutive row (latest pair), the seed average and the smallest
    reference-vs-size value. ``*_holds`` compares point estimates; ``*_separated`` asks the
    95% intervals not to overlap.
    """
    cons = table[table.setting == "consecutive"].iloc[-1]
    seed_rows = table[table.quantity == "seeds (average)"]
    size_rows = table[(table.setting == "size") & (table.n_pairs == 1)]
    out: dict[str, Any] = {
        "late_consecutive": float(cons.kl),
        "late_consecutive_label": cons.quantity,
    }
    seed = float(seed_rows.kl.iloc[0]) if len(seed_rows) else float("nan")
    size_row = size_rows.loc[size_rows.kl.idxmin()] if len(size_rows) else None
    size = float(size_row.kl) if size_row is not None else float("nan")
    out.update(
        seed=seed, size_min=size, size_min_label=size_row.quantity if size_row is not None else ""
    )
    out["consecutive_lt_seed_holds"] = bool(cons.kl < seed)
    out["seed_lt_size_holds"] = bool(seed < size)
    out["consecutive_lt_seed_separated"] = bool(
        len(seed_rows) and cons.hi < float(seed_rows.lo.iloc[0])
    )
    out["seed_lt_size_separated"] = bool(
        len(seed_rows) and size_row is not None and float(seed_rows.hi.iloc[0]) < size_row.lo
    )
    out["holds"] = out["consecutive_lt_seed_holds"] and out["seed_lt_size_holds"]
    return out


def compare_with_paper(
    ours: pd.DataFrame, paper: Mapping[str, tuple[float, float]], mapping: Mapping[str, str]
) -> pd.DataFrame:
    """The paper's number beside ours (with our bootstrap interval).

    Parameters
    ----------
    ours : pandas.DataFrame
        Rows with ``quantity``, ``kl``, ``lo``, ``hi`` (and optionally ``se``).
    paper : mapping
        ``paper quantity -> (value, printed error)``, e.g. :data:`PAPER_TABLE1`.
    mapping : mapping
        ``paper quantity -> our quantity`` (our row standing for it); unmapped paper rows are
        listed with "—" for ours.

    Returns
    -------
    pandas.DataFrame
        ``paper quantity``, ``paper``, ``paper error``, ``ours (quantity)``, ``ours``,
        ``95% interval``, ``ours / paper``.
    """
    rows = []
    idx = ours.set_index("quantity")
    for q, (value, err) in paper.items():
        mine = mapping.get(q)
        if mine is not None and mine in idx.index:
            r = idx.loc[mine]
            rows.append(
                {
                    "paper quantity": q,
                    "paper": value,
                    "paper error": err,
                    "ours (quantity)": mine,
                    "ours": float(r.kl),
                    "95% interval": f"[{float(r.lo):.3g}, {float(r.hi):.3g}]",
                    "ours / paper": float(r.kl) / value,
                }
            )
        else:
            rows.append(
                {
                    "paper quantity": q,
                    "paper": value,
                    "paper error": err,
                    "ours (quantity)": "—",
                    "ours": float("nan"),
                    "95% interval": "—",
                    "ours / paper": float("nan"),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# chapter 5: diffusion


def loglik_lag_distances(loglik: xr.DataArray, K: int) -> xr.DataArray:
    """``D_ℓ(t, t+k)``, KL in bits/byte from each checkpoint to the next ``K``, per run.

    Dims ``(model, step, lag)`` with coordinate ``delta`` (step difference). Runs with a
    missing checkpoint have NaN where it is involved.
    """
    from kltools.analysis import lag_distances
    from kltools.kl import kl_matrix

    kl = kl_matrix(loglik, dim="step", skipna=True)
    return lag_distances(kl.reindex(step=loglik["step"].values, step_=loglik["step"].values), K=K)


def weight_lag_distances(profile: str, models: Sequence[str], K: int) -> xr.DataArray:
    """``D_W(t, t+k)`` of suite runs from their ``weight_distances.json`` (``(model, step, lag)``).

    For the pythia profile use :func:`hub_weight_distances` (cached under
    ``data_root("pythia")/weights``) — this function reads that cache there.
    """
    from kltools.suite.weights import load_weight_distances

    if profile in _SUITE_PROFILES:
        from kltools.suite import profile_root

        folders = [profile_root(profile) / m for m in models]
    else:
        from kltools.paths import data_root

        folders = [data_root("pythia") / "weights" / f"{m}.json" for m in models]
    arrays = []
    for m, f in zip(models, folders):
        da = load_weight_distances(f)
        if da.sizes["lag"] < K:
            raise KLToolsError(f"{m}: weight distances hold {da.sizes['lag']} lags, fewer than {K}")
        da = da.isel(lag=slice(0, K)).rename({"delta_step": "delta"})
        arrays.append(da.expand_dims(model=[m]))
    out = xr.concat(arrays, dim="model", join="outer")
    out.name = "D"
    return out


def hub_weight_distances(
    repo: str,
    steps: Sequence[int],
    *,
    max_lag: int = 10,
    device: str = "cuda",
    out: str | os.PathLike[str] | None = None,
    load_flat: Callable[[int], Any] | None = None,
) -> xr.DataArray:
    """``D_W`` of a hub run: ``Σ (θ_t' − θ_t)²`` from each revision ``step<S>`` to the next ``max_lag``.

    Keeps a rolling window of ``max_lag + 1`` flattened float32 checkpoints on ``device``
    (pythia-410m: about 18 GB on the GPU for ``max_lag`` 10), differences in float32, squares
    summed in float64 — the definition of :mod:`kltools.suite.weights`. Written to ``out`` in
    that module's JSON format when given (what :func:`weight_lag_distances` reads).

    ``load_flat(step)`` overrides how a checkpoint's flat weights are obtained (default:
    ``transformers`` from the hub, parameters sorted by name).
    """
    import torch

    from kltools.suite.weights import save_weight_distances, weight_distance_array

    if load_flat is None:

        def load_flat(step: int) -> Any:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(
                repo, revision=f"step{step}", dtype=torch.float32
            )
            sd = model.state_dict()
            flat = torch.cat([sd[k].reshape(-1).float() for k in sorted(sd)]).to(device)
            del model, sd
            return flat

    steps = [int(s) for s in steps]
    n = len(steps)
    values = np.full((n, max_lag), np.nan)
    delta = np.full((n, max_lag), np.nan)
    window: list[tuple[int, Any]] = []
    for j, s in enumerate(steps):
        cur = load_flat(s)
        for i, prev in window:
            lag = j - i
            diff = (cur - prev).double()
            values[i, lag - 1] = float(torch.dot(diff, diff))
            delta[i, lag - 1] = s - steps[i]
        window.append((j, cur))
        window = window[-max_lag:]
    da = weight_distance_array(values, steps, delta)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_weight_distances(da, out)
    return da


def diffusion_summary(c_l: xr.Dataset, c_w: xr.Dataset | None) -> pd.DataFrame:
    """Per run: median exponent and R² in log-likelihood and weight space, and the claims.

    ``c_l``/``c_w`` are :func:`kltools.analysis.diffusion_exponents` results with a ``model``
    dim. Columns ``model``, ``n_starts``, ``c_l (median)``, ``R² ℓ (median)``, ``c_W
    (median)``, ``R² W (median)``, ``share c_l<1``, ``share c_l<c_W``, ``c_l<1`` and
    ``c_l<c_W`` (medians compared).
    """
    rows = []
    for m in c_l["model"].values:
        cl = c_l.c.sel(model=m).values
        r2l = c_l.r2.sel(model=m).values
        row: dict[str, Any] = {
            "model": str(m),
            "n_starts": int(np.isfinite(cl).sum()),
            "c_l (median)": float(np.nanmedian(cl)) if np.isfinite(cl).any() else float("nan"),
            "R² ℓ (median)": float(np.nanmedian(r2l)) if np.isfinite(r2l).any() else float("nan"),
            "share c_l<1": float(np.mean(cl[np.isfinite(cl)] < 1))
            if np.isfinite(cl).any()
            else float("nan"),
        }
        if c_w is not None and m in c_w["model"].values:
            cw = c_w.c.sel(model=m).reindex(step=c_l["step"].values).values
            r2w = c_w.r2.sel(model=m).values
            both = np.isfinite(cl) & np.isfinite(cw)
            row["c_W (median)"] = float(np.nanmedian(cw)) if np.isfinite(cw).any() else float("nan")
            row["R² W (median)"] = (
                float(np.nanmedian(r2w)) if np.isfinite(r2w).any() else float("nan")
            )
            row["share c_l<c_W"] = (
                float(np.mean(cl[both] < cw[both])) if both.any() else float("nan")
            )
        rows.append(row)
    df = pd.DataFrame(rows)
    df["c_l<1"] = df["c_l (median)"] < 1
    if "c_W (median)" in df:
        df["c_l<c_W"] = df["c_l (median)"] < df["c_W (median)"]
    return df


# --------------------------------------------------------------------------------------------
# summaries the chapters print


#: the paper's text set (paper-notes §2): mean UTF-8 bytes per text and number of texts
PAPER_MEAN_BYTES = 972.3188
PAPER_N_TEXTS = 10000


def method_comparison(mc: pd.DataFrame, loglik: xr.DataArray) -> pd.DataFrame:
    """Chapter 1's "compared with the paper" table (text set, error size, near-pair agreement).

    ``mc`` is :func:`estimate_vs_mc`'s table. The paper's relative error is Table 1's
    100k→101k consecutive pair, 0.00042 / 0.023.
    """
    from kltools.kl import mean_bytes_of

    near = mc[mc.kind == "near"]
    rel = near.estimate_se / near.estimate
    rows = [
        ("texts N", f"{PAPER_N_TEXTS}", f"{loglik.sizes['text']}", ""),
        ("mean bytes per text B̄", f"{PAPER_MEAN_BYTES:.1f}", f"{mean_bytes_of(loglik):.1f}", ""),
        (
            "relative s.e. of a late consecutive KL",
            f"{0.00042 / 0.023:.3f} (100k→101k)",
            f"{rel.iloc[0]:.3f} ({near.a.iloc[0]}→{near.b.iloc[0]})" if len(near) else "—",
            "bootstrap over texts",
        ),
        (
            "estimate ≈ KL for near models",
            "stated (second-order expansion)",
            (
                f"{int((near.verdict == 'agree').sum())}/{len(near)} near pairs agree within 2 s.e., "
                f"{int((near.verdict == 'inconclusive').sum())} inconclusive; "
                f"ratios {', '.join(f'{r:.2f} ± {2 * e:.2f}' for r, e in zip(near.ratio, near.ratio_se))}"
            )
            if len(near)
            else "—",
            "estimator on the models' own samples vs Monte Carlo",
        ),
        (
            "estimate on the fixed text set / KL, near pairs",
            "not reported (Pile texts, Pile-trained models)",
            ", ".join(
                f"{r:.2f} ± {2 * e:.2f}" for r, e in zip(near.ratio_corpus, near.ratio_corpus_se)
            )
            if len(near)
            else "—",
            "estimator on the corpus texts vs Monte Carlo",
        ),
    ]
    return pd.DataFrame(rows, columns=["quantity", "paper", "ours", "how ours is measured"])


def straightness(loglik: xr.DataArray, consecutive: pd.DataFrame) -> pd.DataFrame:
    """How winding each trajectory is on the map (squared map distances are KL in bits/byte).

    Per run: ``path`` = Σ sqrt(consecutive KL) (length along the trajectory on the map),
    ``chord`` = sqrt(KL(first, last)), ``straightness`` = chord / path (1 = a straight line;
    small = winding or spiralling), and ``kl_first_last``.
    """
    from kltools.kl import kl_between

    rows = []
    for m, part in consecutive.groupby("model", sort=False):
        first, last = int(part.step.min()), int(part.step_next.max())
        a = loglik.sel(model=m, step=first)
        b = loglik.sel(model=m, step=last)
        kl = kl_between(a, b)
        path = float(np.sqrt(part.kl.clip(lower=0)).sum())
        rows.append(
            {
                "model": m,
                "checkpoints": len(part) + 1,
                "kl_first_last": kl,
                "path": path,
                "chord": math.sqrt(kl),
                "straightness": math.sqrt(kl) / path if path > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def trend_check(consecutive: pd.DataFrame, *, after_step: float) -> pd.DataFrame:
    """Does consecutive KL fall after warm-up? Per run: Spearman ρ(step, KL) and first/last KL.

    Columns ``model``, ``pairs``, ``spearman``, ``first``, ``last``, ``median``, ``falls``
    (ρ < 0 and last < first).
    """
    rows = []
    for m, part in consecutive.groupby("model", sort=False):
        post = part[part.step >= after_step].sort_values("step")
        if len(post) < 3:
            continue
        rho = float(pd.Series(post.step.values).corr(pd.Series(post.kl.values), method="spearman"))
        rows.append(
            {
                "model": m,
                "pairs": len(post),
                "spearman": rho,
                "first": float(post.kl.iloc[0]),
                "last": float(post.kl.iloc[-1]),
                "median": float(post.kl.median()),
                "falls": bool(rho < 0 and post.kl.iloc[-1] < post.kl.iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def table1_mapping(table: pd.DataFrame) -> dict[str, str]:
    """Which of our :func:`seed_size_table` rows stands for each row of :data:`PAPER_TABLE1`.

    Consecutive rows in order (paper 10k, 50k, 100k ↔ our fractions), the seed average, and
    the reference-vs-larger sizes in increasing size (paper 1B, 1.4B, 2.8B, 6.9B); paper rows
    with no counterpart are left out (the suite has fewer sizes).
    """
    paper = list(PAPER_TABLE1)
    out: dict[str, str] = {}
    cons = table[table.setting == "consecutive"].quantity.tolist()
    for p, q in zip([k for k in paper if k.startswith("consecutive")], cons):
        out[p] = q
    if (table.quantity == "seeds (average)").any():
        out["seeds (average)"] = "seeds (average)"
    sizes = table[(table.setting == "size") & (table.n_pairs == 1)]
    cand = sizes.quantity.tolist()[int(table.attrs.get("reference_rank", 0)) :]
    for p, q in zip([k for k in paper if k.startswith("vs ")], cand):
        out[p] = q
    return out


def pick_starts(c: xr.Dataset, n: int = 3) -> list[int]:
    """``n`` start steps spread over the fitted starts of an exponent table (finite c)."""
    ok = np.isfinite(c.c).any([d for d in c.c.dims if d != "step"]).values
    steps = c["step"].values[ok]
    if steps.size == 0:
        raise KLToolsError("no start step has a complete window; lower window or min_start")
    idx = np.unique(np.linspace(0, steps.size - 1, min(n, steps.size)).round().astype(int))
    return [int(steps[i]) for i in idx]


def ensure_hub_weight_distances(
    models: Sequence[str], steps: Sequence[int], *, max_lag: int, device: str = "cuda"
) -> list[Path]:
    """Compute (once) and cache ``D_W`` of pythia runs under ``data_root("pythia")/weights``."""
    from kltools.paths import data_root

    paths = []
    for m in models:
        path = data_root("pythia") / "weights" / f"{m}.json"
        if not path.is_file():
            if _hub_offline():
                raise KLToolsError(
                    f"weight distances of {m} need its hub checkpoints but HF_HUB_OFFLINE=1; "
                    "set weight_space = False or run on a connected GPU machine"
                )
            run_steps = [s for s in steps if (m, int(s)) not in PYTHIA_EXCLUDED]
            hub_weight_distances(
                f"EleutherAI/{m}", run_steps, max_lag=max_lag, device=device, out=path
            )
        paths.append(path)
    return paths


def consecutive_comparison(
    consecutive: pd.DataFrame, model: str, fractions: Sequence[float] = (0.07, 0.35, 0.70)
) -> pd.DataFrame:
    """The paper's three consecutive pairs (Table 1) beside ours at the same training fractions.

    ``consecutive`` needs an ``se`` column (:func:`consecutive_by_model` with ``n_boot``); our
    interval is ±2 s.e. Returns :func:`compare_with_paper`'s table.
    """
    ours = consecutive[consecutive.model == model]
    paper = dict(list(PAPER_TABLE1.items())[:3])
    rows = []
    for q, frac in zip(paper, fractions):
        s0 = nearest_step(ours.step.values, frac * ours.step_next.max())
        r = ours[ours.step == s0].iloc[0]
        rows.append(
            {
                "quantity": q,
                "kl": r.kl,
                "lo": r.kl - 2 * r.se,
                "hi": r.kl + 2 * r.se,
                "pair": f"{model} {r.step}→{r.step_next}",
            }
        )
    frame = pd.DataFrame(rows)
    comp = compare_with_paper(frame, paper, {q: q for q in frame.quantity})
    comp["ours (quantity)"] = frame["pair"].values
    comp["95% interval"] = comp["95% interval"] + " (±2 s.e.)"
    return comp
