"""Part II of the book: quantized copies, the numerical floor, fine-tuning, layers, the scale.

Every chapter of a profile scores the SAME text set (:func:`analysis_texts`), so every KL of
part II sits on one scale with the pretraining KLs of part I. Stores live in
``kltools.paths.data_root(profile)/<chapter>.zarr`` (:func:`store_path`); extraction goes
through :func:`kltools.extract` and is resumable.

Point estimates use the kltools estimator (``Var(l_i - l_j) / 2`` in bits/byte, the same as
``||q_i - q_j||^2 / (2N)`` after double-centring). Bootstrap intervals resample the texts with
``numpy.random.default_rng(seed)`` (:func:`boot_indices`): the same resamples for every
setting, so intervals of different settings are comparable; B̄ is recomputed per resample.

Settings built here (paper-notes §3):

- **quantization**: each base model against its round-to-nearest (RTN) and bitsandbytes copies;
  :func:`verify_quantized` checks that every copy really is quantized.
- **floor**: the same model extracted with another dtype, batch size/padding or BOS policy.
- **fine-tuning**: FT (child vs parent), Intra-type and Random pairs over lineages.
- **layers**: adjacent logit-lens layers (k -> k+1) of each model.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kltools.errors import KLToolsError

__all__ = [
    "FLOOR_SETTINGS",
    "PAPER_NUMBERS",
    "PairKL",
    "adjacent_layer_kl",
    "analysis_texts",
    "bnb_usable_on_cpu",
    "boot_indices",
    "bos_floor",
    "extract_floor",
    "extract_layers",
    "extract_models",
    "extract_quantization",
    "fetch_hub_lineages",
    "finetuning_pairs",
    "floor_pairs",
    "hub_lineages",
    "hub_quant_catalogue",
    "kl_to_final",
    "layer_points",
    "lineage_models",
    "load_lineages_json",
    "check_order",
    "flat_points",
    "map_points",
    "paper_comparison",
    "median_table",
    "pretraining_pairs",
    "pair_kl",
    "quant_catalogue",
    "quant_pairs",
    "quant_units",
    "require_models",
    "store_path",
    "suite_lineages",
    "verify_quantized",
]

# --------------------------------------------------------------------------------------------
# the paper's published numbers (paper-notes §4), bits/byte

#: (setting, statistic) -> value as printed (v1 Tables 1-3); None where the paper gives no number
PAPER_NUMBERS: dict[str, dict[str, Any]] = {
    "Later": {"value": 0.023, "what": "Pythia-410M 100k->101k (Table 1)"},
    "Early": {"value": 0.069, "what": "Pythia-410M 10k->11k (Table 1)"},
    "Seed": {"value": 0.11, "what": "Pythia-410M between seeds, avg. (Table 1)"},
    "Size": {"value": 0.28, "what": "Pythia-410M vs 1B; up to 1.7 vs 6.9B (Table 1)"},
    "FT": {"value": 0.40, "what": "fine-tuning pairs, all types, median (Table 2)"},
    "Random": {"value": 2.1, "what": "random pairs, all types, median (Table 2)"},
    "Intra-type": {"value": None, "what": "no number printed"},
    "8-bit": {"value": None, "what": "no number printed (Fig. 3 only)"},
    "4-bit": {"value": None, "what": "no number printed (Fig. 3 only)"},
    "Layer": {"value": 1.3, "what": "Llama-2-7b 31->32 (Table 3; 0.61 at 1->2, 1.6 at 16->17)"},
    "Floor": {"value": None, "what": "not measured by the paper"},
}

# --------------------------------------------------------------------------------------------
# texts, stores, models


def analysis_texts(profile: str, n_texts: int, textset: str | None = None) -> Any:
    """The text set every chapter of ``profile`` scores (first ``n_texts`` texts).

    The same set as the pretraining chapters
    (:func:`kltools.experiments.pretraining.pretraining_texts`): the suite's analysis set for
    ``tiny``/``smoke``, the paper's Pile recipe for ``pythia`` (fails at once when the hub is
    offline and no cached copy exists).
    """
    from kltools.experiments.pretraining import pretraining_texts

    if isinstance(n_texts, bool) or not isinstance(n_texts, int) or n_texts < 2:
        raise KLToolsError(f"n_texts must be an integer >= 2, not {n_texts!r}")
    if textset == "suite" and profile == "pythia":
        textset = "pile"
    return pretraining_texts(profile, n_texts, textset)


def store_path(profile: str, chapter: str, suffix: str = "") -> Path:
    """``data_root(profile)/<chapter><suffix>.zarr``."""
    from kltools.paths import data_root

    return data_root(profile) / f"{chapter}{suffix}.zarr"


def require_models(specs: Iterable[str]) -> list[Any]:
    """Resolve every spec before any work, so a missing model fails at once with one message.

    Raises
    ------
    KLToolsError
        For the first spec that cannot be resolved (e.g. a hub id with the hub offline),
        saying how many of the requested models are affected.
    """
    from kltools.models import resolve_model

    specs = list(dict.fromkeys(specs))
    refs, bad = [], []
    for spec in specs:
        try:
            refs.append(resolve_model(spec))
        except KLToolsError as exc:
            bad.append((spec, str(exc)))
    if bad:
        more = f" ({len(bad)} of {len(specs)} models unavailable)" if len(bad) > 1 else ""
        raise KLToolsError(f"{bad[0][1]}{more}")
    return refs


# --------------------------------------------------------------------------------------------
# bootstrap over texts


def boot_indices(n_texts: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_texts)`` resampled text positions (with replacement), ``default_rng(seed)``."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise KLToolsError(f"n_boot must be an integer >= 2, not {n_boot!r}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, n_texts, size=n_texts) for _ in range(n_boot)])


def pair_kl(
    a: np.ndarray, b: np.ndarray, text_bytes: np.ndarray, idx: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """KL in bits/byte of row pairs ``(a[p], b[p])``, with bootstrap replicates.

    Parameters
    ----------
    a, b : array, shape (P, N)
        Log-likelihoods (nats) of P pairs on the same N texts.
    text_bytes : array, shape (N,)
    idx : array, shape (n_boot, N), optional
        Resamples from :func:`boot_indices`.

    Returns
    -------
    (point (P,), replicates (n_boot, P) or None)
        ``Var(a - b) / (2 B̄ ln 2)`` (population variance), B̄ recomputed per resample.
    """
    d = np.atleast_2d(np.asarray(a, np.float64)) - np.atleast_2d(np.asarray(b, np.float64))
    nb = np.asarray(text_bytes, np.float64)
    if d.shape[-1] != nb.size:
        raise KLToolsError(f"pair_kl: {d.shape[-1]} texts but {nb.size} text_bytes")
    point = d.var(axis=-1) / (2.0 * nb.mean() * math.log(2.0))
    if idx is None:
        return point, None
    reps = np.stack([d[:, i].var(axis=-1) / (2.0 * nb[i].mean() * math.log(2.0)) for i in idx])
    return point, reps


@dataclass
class PairKL:
    """KLs of a set of model pairs: one row per pair, plus bootstrap replicates.

    Attributes
    ----------
    frame : pandas.DataFrame
        At least ``setting``, ``a``, ``b``, ``kl`` (bits/byte); ``lo``/``hi`` (95 % percentile
        interval of the pair's KL) when replicates exist; other columns describe the pair.
    reps : numpy.ndarray or None
        ``(n_boot, len(frame))`` replicates on the shared text resamples.
    """

    frame: pd.DataFrame
    reps: np.ndarray | None = None

    @staticmethod
    def concat(parts: Sequence[PairKL]) -> PairKL:
        """Stack several pair sets (replicates kept only if every part has them)."""
        parts = [p for p in parts if len(p.frame)]
        if not parts:
            return PairKL(pd.DataFrame(columns=["setting", "a", "b", "kl"]), None)
        frame = pd.concat([p.frame for p in parts], ignore_index=True)
        reps = None
        if all(p.reps is not None for p in parts):
            reps = np.concatenate([p.reps for p in parts], axis=1)
        return PairKL(frame, reps)

    def select(self, mask: Any) -> PairKL:
        """The rows where ``mask`` is true."""
        m = np.asarray(mask, bool)
        return PairKL(
            self.frame[m].reset_index(drop=True), None if self.reps is None else self.reps[:, m]
        )


def _pairs_from(
    rows: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    text_bytes: np.ndarray,
    idx: np.ndarray | None,
) -> PairKL:
    """Build a :class:`PairKL` from ``(vector_a, vector_b, info)`` rows."""
    if not rows:
        return PairKL(pd.DataFrame(columns=["setting", "a", "b", "kl"]), None)
    a = np.stack([r[0] for r in rows])
    b = np.stack([r[1] for r in rows])
    point, reps = pair_kl(a, b, text_bytes, idx)
    frame = pd.DataFrame([r[2] for r in rows])
    frame["kl"] = point
    if reps is not None:
        frame["lo"], frame["hi"] = np.quantile(reps, [0.025, 0.975], axis=0)
    return PairKL(frame, reps)


def median_table(pairs: PairKL, by: Sequence[str] = ("setting",), ci: float = 0.95) -> pd.DataFrame:
    """Median, mean, sd and count of the pair KLs per group, with a bootstrap interval of the median.

    The interval is the percentile interval of the group's median over the shared text
    resamples (NaN without replicates).
    """
    f = pairs.frame
    rows = []
    alpha = (1.0 - ci) / 2.0
    for key, g in f.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row.update(
            n=len(g),
            median=float(g.kl.median()),
            mean=float(g.kl.mean()),
            sd=float(g.kl.std(ddof=1)) if len(g) > 1 else float("nan"),
        )
        if pairs.reps is not None:
            meds = np.median(pairs.reps[:, g.index.to_numpy()], axis=1)
            row["median_lo"], row["median_hi"] = np.quantile(meds, [alpha, 1 - alpha])
        else:
            row["median_lo"] = row["median_hi"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# quantization

#: scheme -> (family, bits, bitsandbytes name or None)
_SCHEME_INFO: dict[str, tuple[str, int]] = {
    "bnb-int8": ("bitsandbytes", 8),
    "bnb-fp4": ("bitsandbytes", 4),
    "bnb-nf4": ("bitsandbytes", 4),
}


def scheme_info(scheme: str) -> tuple[str, int]:
    """``(family, bits)`` of a quantization scheme (``rtn8``, ``rtn4g32``, ``bnb-nf4`` …)."""
    from kltools.suite.profiles import RTN_SCHEMES

    if scheme in RTN_SCHEMES:
        return "round-to-nearest", RTN_SCHEMES[scheme][0]
    if scheme in _SCHEME_INFO:
        return _SCHEME_INFO[scheme]
    raise KLToolsError(f"unknown quantization scheme {scheme!r}")


def bnb_usable_on_cpu(config: Mapping[str, Any], scheme: str, blocksize: int = 64) -> bool:
    """Whether bitsandbytes can run ``scheme`` on the CPU for a GPT-NeoX config.

    4-bit on the CPU needs every Linear input size (hidden and intermediate) to be a multiple
    of the blocksize (bitsandbytes 0.50 fails otherwise); int8 and RTN always run.
    """
    if scheme not in ("bnb-fp4", "bnb-nf4"):
        return True
    sizes = [config.get("hidden_size"), config.get("intermediate_size")]
    return all(isinstance(s, int) and s % blocksize == 0 for s in sizes)


def quant_catalogue(
    profile: str, bases: Sequence[str] | None = None, device: str = "cpu"
) -> pd.DataFrame:
    """The suite's quantized copies, one row per (base, scheme).

    Columns: ``model`` (base short name, e.g. ``s``), ``base_spec``, ``variant`` (scheme),
    ``family``, ``bits``, ``spec`` (the stored copy), ``quantization`` (None: the copy is
    stored pre-quantized), ``usable`` and ``note`` (why a copy cannot run here).

    Parameters
    ----------
    profile : {"tiny", "smoke"}
    bases : sequence of str, optional
        Base short names (``s``, ``m``); default every base of the profile.
    device : str
        ``cpu``: 4-bit bitsandbytes copies of models whose sizes are not multiples of 64 are
        marked unusable (:func:`bnb_usable_on_cpu`).
    """
    from kltools.suite import list_models

    rows = []
    for e in list_models(profile):
        if e["kind"] != "quant":
            continue
        short = e["parent"].removeprefix(f"{profile}-")
        if bases is not None and short not in bases:
            continue
        family, bits = scheme_info(e["scheme"])
        usable, note = bool(e["built"]), "" if e["built"] else "not built"
        if usable and device != "cuda" and family == "bitsandbytes":
            cfg = json.loads((Path(e["path"]) / "config.json").read_text())
            if not bnb_usable_on_cpu(cfg, e["scheme"]):
                usable = False
                note = "bitsandbytes 4-bit on CPU needs sizes divisible by 64"
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
    if bases is not None:
        missing = sorted(set(bases) - {r["model"] for r in rows})
        if missing:
            raise KLToolsError(f"profile {profile!r} has no quantized copies of {missing}")
    return pd.DataFrame(rows)


def hub_quant_catalogue(models: Sequence[str], schemes: Sequence[str]) -> pd.DataFrame:
    """Load-time bitsandbytes quantization of hub models (``pythia`` profile), same columns."""
    rows = []
    for m in models:
        for s in schemes:
            family, bits = scheme_info(s)
            if family != "bitsandbytes":
                raise KLToolsError(f"hub models are quantized with bitsandbytes only, not {s!r}")
            rows.append(
                dict(
                    model=m,
                    base_spec=m,
                    variant=s,
                    family=family,
                    bits=bits,
                    spec=m,
                    quantization=s.removeprefix("bnb-"),
                    usable=True,
                    note="",
                )
            )
    return pd.DataFrame(rows)


def quant_units(catalogue: pd.DataFrame) -> list[Any]:
    """Units of the quantization store: each base (``variant="full"``) and its usable copies."""
    from kltools.extraction import Unit

    units = []
    for model, g in catalogue.groupby("model", sort=False):
        units.append(Unit(g.base_spec.iloc[0], {"model": model, "variant": "full"}))
        for r in g[g.usable].itertuples():
            units.append(Unit(r.spec, {"model": model, "variant": r.variant}, None, r.quantization))
    return units


def extract_quantization(
    catalogue: pd.DataFrame,
    texts: Any,
    store: Any,
    *,
    bos: str = "paper",
    dtype: str = "float32",
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
) -> Any:
    """Extract the units of :func:`quant_units`; the store's view has dims (model, variant)."""
    from kltools.extraction import extract
    from kltools.store import open_store

    extract(
        quant_units(catalogue),
        texts,
        store,
        bos=bos,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )
    return open_store(store, dims=("model", "variant"))


def verify_quantized(
    spec: str, variant: str, quantization: str | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Check that a quantized copy really is quantized (never silently full precision).

    bitsandbytes: the loaded model must hold ``Linear8bitLt`` (int8) or ``Linear4bit`` layers.
    Round-to-nearest: every weight listed in the copy's ``quantization.json`` must lie on its
    grid (at most ``2**bits - 1`` levels per group, ``w / scale`` integral) and differ from the
    parent's full-precision weight.

    Returns
    -------
    dict
        ``spec``, ``variant``, ``ok`` (bool), ``check`` (what was checked), ``detail``.
    """
    family, bits = scheme_info(variant)
    out: dict[str, Any] = {"spec": spec, "variant": variant}
    if family == "bitsandbytes":
        import bitsandbytes as bnb

        from kltools.models import load_model

        loaded = load_model(spec, device=device, quantization=quantization)
        cls = bnb.nn.Linear8bitLt if bits == 8 else bnb.nn.Linear4bit
        n = sum(isinstance(m, cls) for m in loaded.model.modules())
        qtypes = {
            str(getattr(getattr(m.weight, "quant_state", None), "quant_type", ""))
            for m in loaded.model.modules()
            if isinstance(m, bnb.nn.Linear4bit)
        }
        want = variant.removeprefix("bnb-")
        ok = n > 0 and (bits == 8 or qtypes == {want})
        out.update(ok=ok, check=f"{cls.__name__} layers", detail=f"{n} layers {sorted(qtypes)}")
        return out
    from safetensors.numpy import load_file

    from kltools.models import resolve_model
    from kltools.suite.profiles import RTN_SCHEMES
    from kltools.suite.quantize import rtn_levels

    path = Path(resolve_model(spec).path_or_id)
    record = json.loads((path / "quantization.json").read_text())
    parent = load_file(str(Path(resolve_model(record["parent"]).path_or_id) / "model.safetensors"))
    weights = load_file(str(path / "model.safetensors"))
    _, group = RTN_SCHEMES[variant]
    worst_levels, worst_err, changed = 0, 0.0, 0
    for name in record["covered"]:
        levels, err = rtn_levels(weights[name], bits, group)
        worst_levels, worst_err = max(worst_levels, levels), max(worst_err, err)
        changed += int(not np.array_equal(weights[name], parent[name]))
    n = len(record["covered"])
    ok = n > 0 and worst_levels <= 2**bits - 1 and worst_err < 1e-3 and changed == n
    out.update(
        ok=ok,
        check="weights on the RTN grid",
        detail=f"{n} weights, <= {worst_levels} levels/group (max {2**bits - 1}), "
        f"|w/scale - round| <= {worst_err:.1e}, {changed}/{n} differ from parent",
    )
    return out


def quant_pairs(ds: Any, catalogue: pd.DataFrame, idx: np.ndarray | None) -> PairKL:
    """KL between each base (``variant="full"``) and each of its copies in a quantization store."""
    ll = ds.loglik
    tb = ll.text_bytes.values
    rows = []
    info = catalogue.set_index(["model", "variant"])
    for model in ll.model.values:
        full = ll.sel(model=model, variant="full").values
        for variant in ll.variant.values:
            if variant == "full":
                continue
            v = ll.sel(model=model, variant=variant).values
            if not np.isfinite(v).all() or not np.isfinite(full).all():
                continue
            family, bits = scheme_info(str(variant))
            label = f"{bits}-bit" if bits in (8, 4) else f"{bits}-bit (extra)"
            r = info.loc[(model, variant)] if (model, variant) in info.index else None
            rows.append(
                (
                    full,
                    v,
                    dict(
                        setting=label,
                        a=str(model),
                        b=str(r.spec) if r is not None else str(variant),
                        model=str(model),
                        variant=str(variant),
                        family=family,
                        bits=bits,
                    ),
                )
            )
    return _pairs_from(rows, tb, idx)


# --------------------------------------------------------------------------------------------
# numerical floor

#: setting -> (dtype, batch_size; None = the run's batch size)
FLOOR_SETTINGS: dict[str, tuple[str, int | None]] = {
    "fp32": ("float32", None),
    "bf16": ("bfloat16", None),
    "fp16": ("float16", None),
    "batch1": ("float32", 1),
    "batch64": ("float32", 64),
}

#: pairs of floor settings compared, with a readable label
FLOOR_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("fp32", "bf16", "dtype fp32 vs bf16"),
    ("fp32", "fp16", "dtype fp32 vs fp16"),
    ("batch1", "batch64", "batch 1 vs 64 (padding)"),
    ("fp32", "batch1", "batch default vs 1"),
)


def extract_floor(
    specs: Mapping[str, str],
    texts: Any,
    store: Any,
    *,
    settings: Sequence[str] = tuple(FLOOR_SETTINGS),
    batch_size: int | None = None,
    bos: str = "paper",
    device: str = "auto",
    progress: bool = False,
) -> Any:
    """Extract each model under every floor setting into one store (coords model, setting).

    ``specs`` maps a model label to its spec. ``batch_size`` is the run's batch size (the
    ``fp32``/``bf16``/``fp16`` settings use it, as the quantization chapter does).
    """
    from kltools.extraction import Unit, extract
    from kltools.store import open_store

    unknown = sorted(set(settings) - set(FLOOR_SETTINGS))
    if unknown:
        raise KLToolsError(f"unknown floor setting(s) {unknown}; known: {list(FLOOR_SETTINGS)}")
    groups: dict[int | None, list[Any]] = {}
    for s in settings:
        dtype, bs = FLOOR_SETTINGS[s]
        bs = batch_size if bs is None else bs
        for label, spec in specs.items():
            groups.setdefault(bs, []).append(Unit(spec, {"model": label, "setting": s}, dtype))
    for bs, units in groups.items():
        extract(units, texts, store, bos=bos, device=device, batch_size=bs, progress=progress)
    ds = open_store(store, dims=("model", "setting", "dtype"))
    # each setting has one dtype: collapse the dtype dim (the other cells are NaN)
    loglik = ds.loglik.max("dtype", skipna=True, keep_attrs=True)
    return ds.drop_dims("dtype").assign(loglik=loglik)


def extract_models(
    specs: Mapping[str, str],
    texts: Any,
    store: Any,
    *,
    bos: str = "paper",
    dtype: str = "float32",
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
) -> Any:
    """Extract models labelled by ``specs`` (label -> spec) into a store with dims (model, text)."""
    from kltools.extraction import Unit, extract
    from kltools.store import open_store

    units = [Unit(spec, {"model": label}) for label, spec in specs.items()]
    extract(
        units,
        texts,
        store,
        bos=bos,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )
    return open_store(store, dims=("model",)).sel(model=list(specs))


def floor_pairs(ds: Any, idx: np.ndarray | None) -> PairKL:
    """KL of the :data:`FLOOR_PAIRS` for every model of a floor store (setting ``Floor``)."""
    ll = ds.loglik
    have = set(ll.setting.values.tolist())
    rows = []
    for model in ll.model.values:
        for s1, s2, label in FLOOR_PAIRS:
            if s1 in have and s2 in have:
                rows.append(
                    (
                        ll.sel(model=model, setting=s1).values,
                        ll.sel(model=model, setting=s2).values,
                        dict(
                            setting="Floor",
                            a=f"{model} {s1}",
                            b=f"{model} {s2}",
                            model=str(model),
                            comparison=label,
                        ),
                    )
                )
    return _pairs_from(rows, ll.text_bytes.values, idx)


def bos_floor(ds_paper: Any, ds_prefix: Any, idx: np.ndarray | None) -> PairKL:
    """KL between the ``paper`` and ``prefix`` BOS policies for each model (raw vectors).

    The two stores score different tokens (``prefix`` also scores each text's first token), so
    kltools refuses to combine them by default; this compares the raw vectors on purpose and
    labels the result ``comparison="BOS paper vs prefix"``. Both stores must hold the same
    texts.
    """
    a, b = ds_paper.loglik, ds_prefix.loglik
    if ds_paper.attrs.get("textset_sha256") != ds_prefix.attrs.get("textset_sha256"):
        raise KLToolsError("bos_floor: the two stores hold different text sets")
    if ds_paper.attrs.get("bos_policy") == ds_prefix.attrs.get("bos_policy"):
        raise KLToolsError("bos_floor: both stores use the same BOS policy")
    rows = []
    for model in b.model.values:
        if model not in a.model.values:
            continue
        pa = a.sel(model=model)
        pa = pa.sel(setting="fp32") if "setting" in pa.dims else pa
        pb = b.sel(model=model)
        pb = pb.sel(setting="fp32") if "setting" in pb.dims else pb
        rows.append(
            (
                pa.values,
                pb.values,
                dict(
                    setting="BOS policy",
                    a=f"{model} paper",
                    b=f"{model} prefix",
                    model=str(model),
                    comparison="BOS paper vs prefix (raw vectors)",
                ),
            )
        )
    return _pairs_from(rows, a.text_bytes.values, idx)


# --------------------------------------------------------------------------------------------
# fine-tuning lineages


def suite_lineages(profile: str) -> pd.DataFrame:
    """The suite's lineages: each fine-tuned child and its parent, plus the roots.

    Columns: ``model`` (name), ``spec``, ``parent`` (None for a root), ``type`` (the base
    model family: the root's size, e.g. ``s``), ``generation`` (0 for a root), ``method``,
    ``domain``.
    """
    from kltools.suite import list_models

    entries = list_models(profile)
    children = [e for e in entries if e["kind"] == "finetune" and e["built"]]
    if not children:
        raise KLToolsError(f"profile {profile!r} has no built fine-tuned models; build the suite")
    by_name = {e["name"]: e for e in children}
    rows = {}
    for e in children:
        root = e["parent"]
        while root in by_name:
            root = by_name[root]["parent"]
        typ = root.removeprefix(f"{profile}-")
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
    return pd.DataFrame(list(rows.values()))


def load_lineages_json(path: str | Path | None = None) -> pd.DataFrame:
    """The checked-in hub lineages (``kltools/data/lineages.json``), same columns as above."""
    p = Path(path) if path is not None else Path(__file__).parent.parent / "data" / "lineages.json"
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KLToolsError(f"cannot read lineages from {p}: {exc}") from exc
    rows = []
    for item in doc["lineages"]:
        rows.append(
            dict(
                model=item["model"],
                spec=item["model"],
                parent=item.get("parent"),
                type=item["type"],
                generation=int(item.get("generation", 0 if item.get("parent") is None else 1)),
                method=item.get("method", "hub"),
                domain=item.get("domain", ""),
            )
        )
    return pd.DataFrame(rows)


def fetch_hub_lineages(children: Sequence[str], types: Mapping[str, str]) -> pd.DataFrame:
    """Parents of hub models from their card's ``base_model`` (single parent only).

    ``types`` maps a root model id to its type. Children whose card names no parent, several
    parents, or a parent outside ``types``' lineages are dropped.
    """
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
    known = dict(types)
    changed = True
    while changed:
        changed = False
        for child, parent in list(parent_of.items()):
            if parent in known and child not in known:
                known[child] = known[parent]
                gen = next(r["generation"] for r in rows if r["model"] == parent) + 1
                rows.append(
                    dict(
                        model=child,
                        spec=child,
                        parent=parent,
                        type=known[parent],
                        generation=gen,
                        method="hub",
                        domain="",
                    )
                )
                changed = True
    return pd.DataFrame(rows)


def hub_lineages(path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """Hub lineages for the ``pythia`` profile: from hub metadata when online, else the file.

    Returns
    -------
    (DataFrame, str)
        The lineages and where they came from (``"hub metadata"`` or the file path).
    """
    from kltools.models import _hub_offline

    listed = load_lineages_json(path)
    if _hub_offline():
        return listed, f"checked-in list {path or 'kltools/data/lineages.json'} (hub offline)"
    roots = listed[listed.parent.isna()]
    children = listed[listed.parent.notna()].model.tolist()
    try:
        fetched = fetch_hub_lineages(children, dict(zip(roots.model, roots.type)))
    except Exception as exc:  # network errors of every flavour
        return listed, f"checked-in list (hub metadata unavailable: {type(exc).__name__})"
    return fetched, "hub metadata (card base_model)"


def lineage_models(lineages: pd.DataFrame) -> dict[str, str]:
    """model label -> spec, for every model in the lineages."""
    return dict(zip(lineages.model, lineages.spec))


def finetuning_pairs(lineages: pd.DataFrame, ll: Any, idx: np.ndarray | None, seed: int) -> PairKL:
    """FT, Intra-type and Random pairs (paper-notes §3) and their KLs.

    - FT: every (parent, child) edge;
    - Intra-type: for each type, as many pairs as its FT pairs, drawn without replacement
      from all pairs of the type's lineage set;
    - Random: as many pairs as FT pairs in total, drawn from all pairs of all lineage models.

    ``ll`` holds the log-likelihoods with a ``model`` dim labelled by ``lineages.model``.
    """
    rng = np.random.default_rng(seed)
    have = set(ll.model.values.tolist())
    lin = lineages[lineages.model.isin(have)]
    lin = lin[lin.parent.isna() | lin.parent.isin(have)]
    typ = dict(zip(lin.model, lin.type))
    tb = ll.text_bytes.values

    def row(a: str, b: str, setting: str, t: str) -> tuple[np.ndarray, np.ndarray, dict]:
        return (
            ll.sel(model=a).values,
            ll.sel(model=b).values,
            dict(setting=setting, a=a, b=b, type=t),
        )

    def draw(models: list[str], k: int) -> list[tuple[str, str]]:
        pairs = [(x, y) for i, x in enumerate(models) for y in models[i + 1 :]]
        k = min(k, len(pairs))
        return [pairs[i] for i in sorted(rng.choice(len(pairs), size=k, replace=False))]

    rows = []
    ft = lin[lin.parent.notna()]
    for r in ft.itertuples():
        rows.append(row(r.parent, r.model, "FT", r.type))
    for t, g in lin.groupby("type", sort=True):
        k = int((g.parent.notna()).sum())
        for a, b in draw(g.model.tolist(), k):
            rows.append(row(a, b, "Intra-type", t))
    for a, b in draw(lin.model.tolist(), len(ft)):
        rows.append(row(a, b, "Random", typ[a] if typ[a] == typ[b] else "mixed"))
    return _pairs_from(rows, tb, idx)


# --------------------------------------------------------------------------------------------
# layers


def extract_layers(
    specs: Mapping[str, str],
    texts: Any,
    profile: str,
    *,
    bos: str = "paper",
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int | None = None,
    progress: bool = False,
) -> list[Any]:
    """Logit-lens extraction (``layers="all"``) of each model; one store per model depth.

    Stores: ``store_path(profile, "layers", f"_L{depth}")`` (a store holds one layer list).
    Returns the datasets, one per depth, with dims ``(model, layer, text)``.
    """
    from kltools.extraction import Unit, extract
    from kltools.models import n_layers_of

    refs = require_models(specs.values())
    by_depth: dict[int, list[Any]] = {}
    for (label, spec), ref in zip(specs.items(), refs):
        by_depth.setdefault(n_layers_of(ref), []).append(Unit(spec, {"model": label}))
    out = []
    for depth, units in sorted(by_depth.items()):
        out.append(
            extract(
                units,
                texts,
                store_path(profile, "layers", f"_L{depth}"),
                layers="all",
                bos=bos,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                progress=progress,
            )
        )
    return out


def adjacent_layer_kl(
    datasets: Sequence[Any], idx: np.ndarray | None, from_layer: int = 1
) -> PairKL:
    """KL between adjacent lens layers ``k -> k+1`` (``k >= from_layer``) of every model.

    Layer 0 is the embedding output; the last layer is the model's own output. The paper's
    "Layer" distribution starts at block 1 (``from_layer=1``).
    """
    rows = []
    for ds in datasets:
        ll = ds.loglik
        layers = [int(k) for k in ll.layer.values]
        for model in ll.model.values:
            for k0, k1 in zip(layers[:-1], layers[1:]):
                if k0 < from_layer:
                    continue
                rows.append(
                    (
                        ll.sel(model=model, layer=k0).values,
                        ll.sel(model=model, layer=k1).values,
                        dict(
                            setting="Layer",
                            a=f"{model} L{k0}",
                            b=f"{model} L{k1}",
                            model=str(model),
                            layer=k0,
                            layer_next=k1,
                            depth=layers[-1],
                        ),
                    )
                )
    tb = datasets[0].loglik.text_bytes.values if datasets else np.ones(1)
    return _pairs_from(rows, tb, idx)


def kl_to_final(datasets: Sequence[Any], idx: np.ndarray | None) -> PairKL:
    """KL between each lens layer and the model's own output (the last layer)."""
    rows = []
    for ds in datasets:
        ll = ds.loglik
        last = int(ll.layer.values[-1])
        for model in ll.model.values:
            fin = ll.sel(model=model, layer=last).values
            for k in ll.layer.values[:-1]:
                rows.append(
                    (
                        ll.sel(model=model, layer=int(k)).values,
                        fin,
                        dict(
                            setting="to final",
                            a=f"{model} L{int(k)}",
                            b=f"{model} L{last}",
                            model=str(model),
                            layer=int(k),
                            depth=last,
                            relative_depth=int(k) / last,
                        ),
                    )
                )
    tb = datasets[0].loglik.text_bytes.values if datasets else np.ones(1)
    return _pairs_from(rows, tb, idx)


def layer_points(datasets: Sequence[Any]) -> Any:
    """All (model, layer) vectors of several lens stores as one ``(point, text)`` array.

    Coordinates ``model``, ``layer`` and ``depth`` on ``point``; ``text_bytes`` kept, so
    :func:`kltools.map_coordinates` (``dim="point"``) maps them together.
    """
    import xarray as xr

    from kltools.kl import check_compatible

    check_compatible(*[ds.loglik.assign_attrs(ds.attrs) for ds in datasets])
    parts = []
    for ds in datasets:
        st = ds.loglik.stack(point=("model", "layer")).transpose("point", "text")
        depth = int(ds.loglik.layer.values[-1])
        models = [m for m, _ in st.point.values]
        layers = [int(k) for _, k in st.point.values]
        parts.append(
            xr.DataArray(
                st.values,
                dims=("point", "text"),
                coords={
                    "model": ("point", models),
                    "layer": ("point", layers),
                    "depth": ("point", [depth] * len(models)),
                    "text_bytes": ("text", ds.loglik.text_bytes.values),
                },
            )
        )
    out = xr.concat(parts, dim="point")
    return out.assign_coords(point=np.arange(out.sizes["point"]))


# --------------------------------------------------------------------------------------------
# maps


def map_points(loglik: Any, dim: str = "model", seed: int = 42) -> pd.DataFrame:
    """2-D map of the labels of ``dim``: PCA (= classical MDS) of the scaled map coordinates.

    The coordinates are :func:`kltools.map_coordinates` (squared distances = KL in bits/byte).
    Returns a frame with ``x``, ``y`` and every coordinate on ``dim``; attrs ``explained``.
    """
    from sklearn.decomposition import PCA

    from kltools.kl import map_coordinates

    coords = map_coordinates(loglik, dim=dim)
    X = np.asarray(coords.transpose(dim, "text").values, np.float64)
    n_comp = min(2, X.shape[0])
    pca = PCA(n_components=n_comp, random_state=seed).fit(X)
    xy = pca.transform(X)
    if n_comp < 2:
        xy = np.column_stack([xy, np.zeros(len(xy))])
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    for c, v in coords.coords.items():
        if v.dims == (dim,):
            df[c] = v.values
    df.attrs["explained"] = [float(v) for v in pca.explained_variance_ratio_]
    return df


# --------------------------------------------------------------------------------------------
# pretraining settings on the shared resamples (for the scale)


def pretraining_pairs(ds: Any, idx: np.ndarray | None, *, after_step: float, k: int) -> PairKL:
    """Later, Early, Seed and Size pairs of the pretraining store, on the shared resamples.

    - Early / Later: the first / last ``k`` consecutive-checkpoint pairs at step
      ``>= after_step`` of every run, pooled (:func:`kltools.analysis.early_later`, through
      :func:`kltools.experiments.pretraining.early_late_pairs`);
    - Seed: every pair of the seed runs at the last common step;
    - Size: every pair of the sizes (seed 0) at the last common step.
    """
    from kltools.experiments import pretraining as P

    ll = ds.loglik
    cons = P.consecutive_by_model(ll)
    sets = P.early_late_pairs(cons, after_step=after_step, k=k)
    rows = []
    for r in sets.itertuples():
        rows.append(
            (
                ll.sel(model=r.model, step=r.step).values,
                ll.sel(model=r.model, step=r.step_next).values,
                dict(
                    setting=r.group,
                    a=f"{r.model}@{r.step}",
                    b=f"{r.model}@{r.step_next}",
                    model=r.model,
                ),
            )
        )
    last = P.final_step(ll)
    for setting, models in (("Seed", P.seed_models(ds)), ("Size", P.size_order(ds))):
        for i, x in enumerate(models):
            for y in models[i + 1 :]:
                rows.append(
                    (
                        ll.sel(model=x, step=last).values,
                        ll.sel(model=y, step=last).values,
                        dict(setting=setting, a=f"{x}@{last}", b=f"{y}@{last}", model=x),
                    )
                )
    return _pairs_from(rows, ll.text_bytes.values, idx)


# --------------------------------------------------------------------------------------------
# tables and verdicts


def flat_points(loglik: Any, dims: Sequence[str]) -> Any:
    """Stack ``dims`` into one ``point`` dim (labels as coordinates), dropping incomplete vectors."""
    st = loglik.stack(point=tuple(dims)).transpose("point", "text")
    st = st.reset_index("point")
    ok = np.isfinite(st.values).all(axis=1)
    st = st.isel(point=np.flatnonzero(ok))
    return st.assign_coords(point=np.arange(st.sizes["point"]))


def paper_comparison(medians: pd.DataFrame, settings: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's number (:data:`PAPER_NUMBERS`) beside our median and its bootstrap interval.

    ``medians``: :func:`median_table` with a ``setting`` column.
    """
    rows = []
    med = medians.set_index("setting")
    for s in settings or list(med.index):
        if s not in med.index:
            continue
        paper = PAPER_NUMBERS.get(s, {"value": None, "what": "—"})
        r = med.loc[s]
        rows.append(
            {
                "setting": s,
                "paper [bits/byte]": "—" if paper["value"] is None else f"{paper['value']:g}",
                "paper's quantity": paper["what"],
                "ours: median [bits/byte]": f"{r['median']:.3g}",
                "ours: 95% bootstrap interval": f"[{r['median_lo']:.3g}, {r['median_hi']:.3g}]",
                "pairs": int(r["n"]),
            }
        )
    return pd.DataFrame(rows)


def check_order(medians: pd.DataFrame, order: Sequence[str]) -> dict[str, Any]:
    """Whether the medians of ``order`` increase strictly (e.g. Floor < 8-bit < 4-bit).

    Returns ``holds`` (point estimates), ``separated`` (each upper interval end below the next
    lower end), ``missing`` (settings without data) and ``text``: one sentence with the numbers,
    ending in "holds", "holds, but the intervals overlap" or "not reproduced".
    """
    med = medians.set_index("setting")
    present = [s for s in order if s in med.index]
    missing = [s for s in order if s not in med.index]
    parts = [f"{s} {med.loc[s, 'median']:.3g}" for s in present]
    if len(present) < 2:
        return {
            "holds": False,
            "separated": False,
            "missing": missing,
            "text": f"{' < '.join(order)}: not testable here (missing {', '.join(missing)})",
        }
    vals = [float(med.loc[s, "median"]) for s in present]
    holds = all(a < b for a, b in zip(vals, vals[1:]))
    sep = all(
        float(med.loc[a, "median_hi"]) < float(med.loc[b, "median_lo"])
        for a, b in zip(present, present[1:])
    )
    verdict = (
        ("holds" if sep else "holds, but the intervals overlap") if holds else "not reproduced"
    )
    note = f" ({', '.join(missing)} missing)" if missing else ""
    return {
        "holds": holds,
        "separated": sep,
        "missing": missing,
        "text": f"{' < '.join(present)}: medians {' · '.join(parts)} bits/byte → **{verdict}**{note}",
    }
