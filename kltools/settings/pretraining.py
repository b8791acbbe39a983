"""The pretraining settings: Later, Early, Seed, Size, consecutive checkpoints and Table 1.

Definitions (paper §3.1, as the authors' code builds them):

- **Preprocessing per group.** The main sizes and the seed runs are preprocessed
  *separately* (:func:`group`): each group gets its own clip value (the 2 % quantile of its
  log-likelihoods), its own dropped texts (the 3 % with the largest post-warm-up jump) and
  hence its own B̄. The map of Fig. 1 preprocesses every run it shows together (group
  ``"all"``).
- **Early / Later** come from the main sizes only: per size, the consecutive pairs exactly one
  checkpoint interval apart (the evenly spaced part of the grid) whose start step is at least
  ``after_step``, in order; the first ``k`` are Early, the last ``k`` Later, pooled over sizes.
  A checkpoint that is missing (excluded) removes the pairs it would be part of.
- **Seed**: every pair of the seed runs at their last common step; **Size**: every pair of the
  main sizes at their last common step.
- **Copies** (:mod:`kltools.integrity`): a checkpoint identical to another of its run (the hub
  serves some) stays in every setting, as in the authors' code, with its KL of 0
  (:func:`integrity_note` says so); ``exclude_copies`` leaves the copies out (:func:`group`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.config import Settings
from kltools.errors import KLToolsError
from kltools.grid import grid_interval
from kltools.kl import interval
from kltools.pairs import PairSet, build_pairs, concat
from kltools.settings.stores import pretraining_store, resamples, text_positions

__all__ = [
    "Group",
    "audit",
    "consecutive",
    "copies_effect",
    "early",
    "group",
    "integrity",
    "integrity_note",
    "later",
    "reference_model",
    "seed",
    "size",
    "table1",
    "trend",
]

GROUPS = ("sizes", "seeds", "all")


@dataclass(frozen=True)
class Group:
    """A preprocessed group of pretraining runs.

    Attributes
    ----------
    name : {"sizes", "seeds", "all"}
    loglik : xarray.DataArray
        ``(model, step, text)`` in nats (float64), clipped, with the group's kept texts.
    positions : numpy.ndarray
        The kept texts' positions in the analysis text set (for the shared resamples).
    info : dict
        :func:`kltools.analysis.pretraining_preprocess`'s record (``clip_value``,
        ``n_clipped``, ``dropped``, ``n_kept``, ``mean_bytes_before``/``after``, ``scores``);
        ``{}``-like with ``n_kept`` only when preprocessing is off.
    """

    name: str
    loglik: xr.DataArray
    positions: np.ndarray
    info: dict[str, Any]

    @property
    def models(self) -> list[str]:
        """The group's runs."""
        return [str(m) for m in self.loglik["model"].values]

    def spec(self, model: str, step: int) -> str:
        """The unit spec of a checkpoint of the group."""
        return f"{self.loglik['spec_base'].sel(model=model).item()}@step{int(step)}"

    def finite_steps(self, model: str) -> list[int]:
        """The steps at which ``model`` has a complete vector."""
        da = self.loglik.sel(model=model)
        ok = np.isfinite(da).all("text").values
        return [int(t) for t in da["step"].values[ok]]

    def last_common_step(self) -> int:
        """The last step at which every run of the group has a vector."""
        common = set.intersection(*(set(self.finite_steps(m)) for m in self.models))
        if not common:
            raise KLToolsError(f"the {self.name} runs share no checkpoint")
        return max(common)


@functools.lru_cache(maxsize=16)
def group(s: Settings, name: str) -> Group:
    """The runs of group ``name`` (main ``sizes``, ``seeds``, or ``all``), preprocessed on their own.

    With ``s.preprocess`` False the raw log-likelihoods and all texts are kept. With
    ``s.exclude_copies`` the checkpoints :func:`audit` calls copies are NaN (left out of every
    pair, like an excluded checkpoint) before the preprocessing.
    """
    from kltools.analysis import pretraining_preprocess

    if name not in GROUPS:
        raise KLToolsError(f"unknown run group {name!r}; one of {', '.join(GROUPS)}")
    ds = pretraining_store(s)
    if name == "all":
        keep = np.ones(ds.sizes["model"], dtype=bool)
    else:
        keep = ds["in_sizes" if name == "sizes" else "in_seeds"].values.astype(bool)
    models = ds["model"].values[keep]
    if name == "sizes":
        models = models[np.argsort(ds["n_params"].values[keep], kind="stable")]
    ll = ds.loglik.sel(model=models).astype(np.float64)
    if s.exclude_copies:
        from kltools.integrity import drop_copies

        ll = drop_copies(ll, audit(s))
    if len(models) == 0:
        raise KLToolsError(f"profile {s.profile!r} has no runs in the {name} group")
    info: dict[str, Any] = {"n_kept": ll.sizes["text"], "dropped": np.zeros(0, dtype=int)}
    if s.preprocess:
        ll, info = pretraining_preprocess(
            ll,
            clip_quantile=s.clip_quantile,
            drop_fraction=s.drop_fraction,
            after_step=s.after_step,
        )
    return Group(name, ll, text_positions(s, ll), info)


@functools.lru_cache(maxsize=4)
def _audit(s: Settings) -> pd.DataFrame:
    from dataclasses import replace

    from kltools import integrity
    from kltools.sources import can, pretraining_runs

    ds = pretraining_store(s)
    held = {int(t) for t in ds["step"].values}
    runs = [replace(r, steps=tuple(t for t in r.steps if t in held)) for r in pretraining_runs(s)]
    return integrity.audit(ds.loglik, runs, weights=can(s, "models"))  # weight files: models


def audit(s: Settings) -> pd.DataFrame:
    """The checkpoint-integrity findings of the pretraining runs (:func:`kltools.integrity.audit`).

    Over the store's vectors and, where the source runs the models, their checkpoints' weight files,
    at the store's steps. Does not depend on ``exclude_copies`` or the preprocessing.
    """
    return _audit(s.replace(exclude_copies=False, preprocess=True)).copy()


def integrity(s: Settings) -> pd.DataFrame:
    """The audit as a short table for a page (:func:`kltools.integrity.summary`)."""
    from kltools.integrity import summary

    return summary(audit(s))


def copies_effect(s: Settings) -> pd.DataFrame:
    """Each pretraining setting's median KL with the copies kept and left out, where they differ.

    Columns ``setting``, ``pairs (copies kept)``, ``median (copies kept)``, ``pairs (copies
    left out)``, ``median (copies left out)`` (bits/byte); one row per setting (Later, Early,
    Seed, Size, Consecutive of the main sizes) whose pairs or median change; empty when none.
    """
    cols = ["setting", "pairs (copies kept)", "median (copies kept)"]
    cols += ["pairs (copies left out)", "median (copies left out)"]
    rows = []
    for name, fn in (
        ("Later", later),
        ("Early", early),
        ("Seed", seed),
        ("Size", size),
        ("Consecutive", lambda x: consecutive(x, "sizes")),
    ):
        kept = fn(s.replace(exclude_copies=False)).frame.kl
        try:
            left = fn(s.replace(exclude_copies=True)).frame.kl
        except KLToolsError:  # leaving the copies out leaves too few checkpoints for the setting
            left = pd.Series(dtype=np.float64)
        same_median = bool(kept.median() == left.median()) or (kept.empty and left.empty)
        if len(kept) != len(left) or not same_median:
            rows.append([name, len(kept), float(kept.median()), len(left), float(left.median())])
    return pd.DataFrame(rows, columns=cols)


def integrity_note(s: Settings) -> str:
    """One Markdown paragraph: what the audit found, and what the settings do with the copies
    (with each changed median, copies kept and left out)."""
    from kltools.integrity import copies_of, note

    found = audit(s)
    text = note(found, excluded=s.exclude_copies)
    if copies_of(found):
        effect = copies_effect(s)
        if len(effect):
            changes = "; ".join(
                f"{name} {a:.3g} → {b:.3g} bits/byte ({n} → {m} pairs)"
                for name, n, a, m, b in effect.itertuples(index=False, name=None)
            )
            text += f" Median with the copies kept → left out: {changes}."
        else:
            text += " Leaving them out changes no setting's median."
    return text


def _pairs(
    s: Settings, g: Group, pairs: list[tuple[str, int, str, int, dict[str, Any]]]
) -> PairSet:
    """KLs of checkpoint pairs ``(model_a, step_a, model_b, step_b, labels)`` of one group."""
    ll = g.loglik
    rows = [
        (
            ll.sel(model=ma, step=ta).values,
            ll.sel(model=mb, step=tb).values,
            {"a": g.spec(ma, ta), "b": g.spec(mb, tb), **labels},
        )
        for ma, ta, mb, tb, labels in pairs
    ]
    return build_pairs(rows, ll["text_bytes"].values, g.positions, resamples(s))


@functools.lru_cache(maxsize=16)
def consecutive(s: Settings, name: str = "sizes") -> PairSet:
    """KL between consecutive available checkpoints of every run of a group (setting
    ``Consecutive``).

    Labels: ``model``, ``size``, ``step``, ``step_next`` and ``one_interval`` (the two
    checkpoints are exactly one grid interval apart, :func:`grid_interval`).
    """
    g = group(s, name)
    pairs = []
    for m in g.models:
        steps = g.finite_steps(m)
        interval = grid_interval(steps)
        size_label = str(g.loglik["size"].sel(model=m).item())
        pairs += [
            (
                m,
                t0,
                m,
                t1,
                {
                    "setting": "Consecutive",
                    "model": m,
                    "size": size_label,
                    "step": t0,
                    "step_next": t1,
                    "one_interval": t1 - t0 == interval,
                },
            )
            for t0, t1 in zip(steps[:-1], steps[1:])
        ]
    return _pairs(s, g, pairs)


@functools.lru_cache(maxsize=16)
def _early_later(s: Settings) -> PairSet:
    """Early and Later pairs of the main sizes (see the module docstring)."""
    cons = consecutive(s, "sizes")
    f = cons.frame
    eligible = f.one_interval.to_numpy(bool) & (f.step.to_numpy() >= s.after_step)
    k = s.early_later_k
    parts = []
    for m in dict.fromkeys(f.model):
        idx = np.flatnonzero(eligible & (f.model == m).to_numpy())
        if idx.size < k:
            raise KLToolsError(
                f"{m} has {idx.size} one-interval pairs starting at step >= {s.after_step}, "
                f"fewer than early_later_k={k}; lower early_later_k or after_step"
            )
        for setting, rows in (("Early", idx[:k]), ("Later", idx[-k:])):
            mask = np.zeros(len(f), dtype=bool)
            mask[rows] = True
            parts.append(cons.select(mask).relabel(setting))
    return concat(parts)


def early(s: Settings) -> PairSet:
    """The paper's Early distribution: the first ``k`` post-warm-up one-interval pairs per size."""
    return _early_later(s).setting("Early")


def later(s: Settings) -> PairSet:
    """The paper's Later distribution: the last ``k`` one-interval pairs per size."""
    return _early_later(s).setting("Later")


def _all_pairs_at_last_step(s: Settings, name: str, setting: str) -> PairSet:
    g = group(s, name)
    t = g.last_common_step()
    ms = g.models
    return _pairs(
        s,
        g,
        [
            (a, t, b, t, {"setting": setting, "step": t})
            for i, a in enumerate(ms)
            for b in ms[i + 1 :]
        ],
    )


@functools.lru_cache(maxsize=16)
def seed(s: Settings) -> PairSet:
    """The paper's Seed distribution: every pair of the seed runs at their last common step."""
    return _all_pairs_at_last_step(s, "seeds", "Seed")


@functools.lru_cache(maxsize=16)
def size(s: Settings) -> PairSet:
    """The paper's Size distribution: every pair of the main sizes at their last common step."""
    return _all_pairs_at_last_step(s, "sizes", "Size")


def reference_model(s: Settings) -> str:
    """Table 1's reference run: the main run of the seed runs' size (Pythia-410M in the paper)."""
    ds = pretraining_store(s)
    seeded = set(ds["size"].values[ds["in_seeds"].values.astype(bool)].tolist())
    for m in group(s, "sizes").models:
        if ds["size"].sel(model=m).item() in seeded:
            return m
    return group(s, "sizes").models[0]


def _nearest_start(frame: pd.DataFrame, target: float) -> int:
    """Row position of the pair whose start step is nearest ``target`` (earlier on a tie)."""
    return int(np.argmin(np.abs(frame.step.to_numpy() - target)))


def table1(s: Settings) -> pd.DataFrame:
    """Table 1 on this profile, every row from the same pair sets as the settings.

    Rows: the reference run's one-interval consecutive pairs nearest each of
    ``s.consecutive_fractions`` of training (paper: 10k, 50k, 100k of 143k), the seed pairs'
    mean, and the reference run against each larger size. Columns ``key`` (the paper's row,
    :data:`kltools.paper.TABLE1`), ``quantity``, ``a``, ``b``, ``kl``, ``lo``, ``hi``,
    ``n_pairs``, ``kind``.
    """
    from kltools import paper

    ref = reference_model(s)
    cons = consecutive(s, "sizes")
    mine = cons.select(((cons.frame.model == ref) & cons.frame.one_interval).to_numpy())
    last = int(mine.frame.step_next.max())
    rows = []
    keys = [k for k in paper.TABLE1 if k.startswith("consecutive")]
    for key, frac in zip(keys, s.consecutive_fractions):
        i = _nearest_start(mine.frame, frac * last)
        rows.append(_row(mine.select(np.arange(len(mine)) == i), key, "single pair"))
    rows.append(_row(seed(s), "seeds (average)", "mean"))
    sz = size(s)
    larger = [m for m in group(s, "sizes").models[group(s, "sizes").models.index(ref) + 1 :]]
    for key, m in zip([k for k in paper.TABLE1 if k.startswith("vs ")], larger):
        pick = sz.frame.a.str.startswith(f"{_base(s, ref)}@") & sz.frame.b.str.startswith(
            f"{_base(s, m)}@"
        )
        rows.append(_row(sz.select(pick.to_numpy()), key, "single pair"))
    return pd.DataFrame(rows)


def _base(s: Settings, model: str) -> str:
    return str(pretraining_store(s)["spec_base"].sel(model=model).item())


def _row(pairs: PairSet, key: str, kind: str) -> dict[str, Any]:
    """One Table 1 row: the mean of the pairs' KLs and its interval over the resamples."""
    reps = pairs.reps.mean(axis=1)
    one = len(pairs) == 1
    f = pairs.frame
    return {
        "key": key,
        "quantity": f"{f.a.iloc[0]} vs {f.b.iloc[0]}" if one else f"mean of {len(f)} pairs",
        "a": f.a.iloc[0] if one else "",
        "b": f.b.iloc[0] if one else "",
        "kl": float(f.kl.mean()),
        "lo": float(interval(reps)[0]),
        "hi": float(interval(reps)[1]),
        "n_pairs": len(f),
        "kind": kind,
    }


def trend(s: Settings) -> pd.DataFrame:
    """Does consecutive KL fall after warm-up? Per size: Spearman ρ(step, KL), first/last KL.

    Over the one-interval pairs starting at ``after_step`` or later (those Early and Later are
    drawn from). Columns ``model``, ``pairs``, ``spearman``, ``first``, ``last``, ``median``.
    """
    f = consecutive(s, "sizes").frame
    f = f[f.one_interval & (f.step >= s.after_step)]
    rows = []
    for m, part in f.groupby("model", sort=False):
        part = part.sort_values("step")
        rho = float(part.step.corr(part.kl, method="spearman")) if len(part) > 2 else float("nan")
        rows.append(
            {
                "model": m,
                "pairs": len(part),
                "spearman": rho,
                "first": float(part.kl.iloc[0]),
                "last": float(part.kl.iloc[-1]),
                "median": float(part.kl.median()),
            }
        )
    return pd.DataFrame(rows)


def describe(s: Settings) -> str:
    """One Markdown sentence about the pretraining store: runs, checkpoints, texts, B̄, BOS."""
    ds = pretraining_store(s)
    ll = ds.loglik
    runs = ", ".join(
        f"`{m}` (size {z}, seed {k})"
        for m, z, k in zip(ll.model.values, ds["size"].values, ds["seed"].values)
    )
    return (
        f"The pretraining store holds **{ll.sizes['model']} runs × {ll.sizes['step']} checkpoints × "
        f"{ll.sizes['text']} texts** (B̄ = {float(ll.text_bytes.mean()):.1f} bytes per text, BOS "
        f"policy `{ds.attrs['bos_policy']}`); runs: {runs}."
    )


def preprocessing(s: Settings) -> pd.DataFrame:
    """What the paper's preprocessing did to each group: clip value, texts dropped, B̄."""
    rows = []
    for name in GROUPS:
        g = group(s, name)
        info = g.info
        rows.append(
            {
                "group": name,
                "runs": len(g.models),
                "clip value [nats]": info.get("clip_value", np.nan),
                "values clipped": info.get("n_clipped", 0),
                "texts dropped": len(info["dropped"]),
                "texts kept": info["n_kept"],
                "B̄ before": info.get("mean_bytes_before", float(g.loglik.text_bytes.mean())),
                "B̄ after": info.get("mean_bytes_after", float(g.loglik.text_bytes.mean())),
            }
        )
    return pd.DataFrame(rows)


def preprocessing_effect(s: Settings) -> tuple[PairSet, PairSet, str]:
    """Consecutive KL of the main sizes without and with the paper's preprocessing.

    Returns the raw pairs, the preprocessed pairs and one Markdown sentence on the change.
    """
    raw = consecutive(s.replace(preprocess=False), "sizes")
    clean = consecutive(s.replace(preprocess=True), "sizes")
    change = clean.frame.kl / raw.frame.kl - 1
    info = group(s.replace(preprocess=True), "sizes").info
    text = (
        f"Main sizes: {info['n_clipped']} values clipped at {info['clip_value']:.1f} nats; "
        f"{len(info['dropped'])} of {raw.frame.n_texts.iloc[0]} texts dropped. Consecutive KL changes "
        f"by a median of {change.median():+.1%} (range {change.min():+.1%} to {change.max():+.1%}). "
        f"The chapter continues with the **{'preprocessed' if s.preprocess else 'raw'}** values "
        f"(`preprocess = {s.preprocess}`)."
    )
    return raw, clean, text


def table1_comparison(s: Settings, prefix: str = "") -> pd.DataFrame:
    """:func:`table1` beside the paper's Table 1 (rows whose key starts with ``prefix``)."""
    from kltools import paper

    table = table1(s)
    numbers = {k: v for k, v in paper.TABLE1.items() if k.startswith(prefix)}
    return paper.compare_rows(table[table.key.str.startswith(prefix)], numbers)


def release_agreement(s: Settings) -> pd.DataFrame:
    """This run's pretraining vectors beside the authors' published ones, checkpoint by
    checkpoint (:func:`kltools.released.compare.compare_pretraining`); empty when the source
    runs no model of the paper or the release is not on this machine."""
    from kltools.released.compare import COLUMNS, compare_pretraining, local_release
    from kltools.sources import can

    release = local_release()
    if not (can(s, "models") and can(s, "published_magnitudes")) or release is None:
        return pd.DataFrame(columns=list(COLUMNS))
    from kltools.released import open_release

    return compare_pretraining(pretraining_store(s).loglik, open_release(release))


def release_agreement_note(s: Settings) -> str:
    """One Markdown paragraph: how far this run's vectors are from the authors' (or why that
    is not measured here)."""
    from kltools.sources import can

    if not can(s, "models"):
        return "The vectors of this run are the authors' published ones: nothing to compare."
    if not can(s, "published_magnitudes"):
        return (
            "The models of this run are not the paper's, so no published vector can be set "
            "beside them."
        )
    t = release_agreement(s)
    if not len(t):
        return (
            "The authors' published vectors are not on this machine (`kltools released fetch`), "
            "or none of their checkpoints was extracted here: this run's vectors are not compared "
            "with theirs."
        )
    return (
        f"**Our extraction against the authors'**, {len(t)} checkpoints on their texts: per-text "
        f"differences up to {t.max_abs_nats.max():.3g} nats (median of the largest "
        f"{t.max_abs_nats.median():.3g}), correlation at least {t.correlation.min():.6f}, and a "
        f"KL between the two extractions of one checkpoint of at most {t.kl_bpb.max():.3g} "
        f"bits/byte (median {t.kl_bpb.median():.3g}): read it beside the numerical floor."
    )
