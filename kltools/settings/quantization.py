"""The quantization settings: 8-bit, 4-bit and every other scheme under its own label.

KL between each base model's full-precision vector and its quantized copy (paper §3.2), on
all analysis texts. The paper's Fig. 3 labels mean exactly two bitsandbytes schemes:
**8-bit** = LLM.int8() (``bnb-int8``) and **4-bit** = ``bnb-fp4``. Every other scheme (NF4,
round-to-nearest per channel or group-wise) is reported under its own label
(:data:`SCHEME_LABELS`) and never pooled with them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kltools.config import Settings
from kltools.pairs import PairSet, build_pairs
from kltools.settings.stores import quantization_store, resamples, text_positions
from kltools.sources.suite import scheme_info

__all__ = [
    "baseline_note",
    "paper_baselines",
    "map_points",
    "PAPER_SCHEMES",
    "SCHEME_LABELS",
    "eight_bit",
    "four_bit",
    "quantization",
    "verify_quantized",
]

#: the paper's two settings and the scheme each one means
PAPER_SCHEMES: dict[str, str] = {"bnb-int8": "8-bit", "bnb-fp4": "4-bit"}


def scheme_label(scheme: str) -> str:
    """The setting label of a scheme: the paper's ``8-bit``/``4-bit``, else a label of its own."""
    if scheme in PAPER_SCHEMES:
        return PAPER_SCHEMES[scheme]
    family, bits = scheme_info(scheme)
    if family == "bitsandbytes":
        return f"{bits}-bit {scheme.removeprefix('bnb-').upper()} (bnb)"
    group = scheme.split("g")[-1] if "g" in scheme else ""
    return f"{bits}-bit RTN" + (f" g{group}" if group else " per channel")


#: every scheme the suite can build -> its setting label
SCHEME_LABELS: dict[str, str] = {
    s: scheme_label(s)
    for s in ("bnb-int8", "bnb-fp4", "bnb-nf4", "rtn8", "rtn4", "rtn3", "rtn4g32", "rtn3g32")
}


@functools.lru_cache(maxsize=4)
def quantization(s: Settings) -> PairSet:
    """Every (base, copy) pair of the quantization store, each scheme under its own label.

    Labels: ``model`` (the base's short name), ``variant`` (scheme), ``family``, ``bits``.
    """
    from kltools.sources import quant_catalogue

    ds = quantization_store(s)
    cat = quant_catalogue(s).set_index(["model", "variant"])
    ll = ds.loglik
    rows = []
    for (model, variant), r in cat[cat.usable].iterrows():
        full = ll.sel(model=model, variant="full").values
        copy = ll.sel(model=model, variant=variant).values
        family, bits = scheme_info(variant)
        labels = {
            "setting": scheme_label(variant),
            "a": r.base_spec,
            "b": r.spec,
            "model": model,
            "variant": variant,
            "family": family,
            "bits": bits,
        }
        if r.quantization:
            labels["quantization"] = r.quantization
        rows.append((full, copy, labels))
    return build_pairs(rows, ll["text_bytes"].values, text_positions(s, ll), resamples(s))


def eight_bit(s: Settings) -> PairSet:
    """The paper's 8-bit: each model vs its LLM.int8() (bitsandbytes int8) copy."""
    return quantization(s).setting("8-bit")


def four_bit(s: Settings) -> PairSet:
    """The paper's 4-bit: each model vs its bitsandbytes FP4 copy."""
    return quantization(s).setting("4-bit")


def verify_quantized(
    spec: str, variant: str, quantization: str | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Check that a quantized copy really is quantized (never silently full precision).

    bitsandbytes: the loaded model must hold ``Linear8bitLt`` (int8) or ``Linear4bit`` layers
    of the scheme's type. Round-to-nearest: every weight listed in the copy's
    ``quantization.json`` lies on its grid and differs from the parent's.

    Returns ``spec``, ``variant``, ``ok``, ``check`` and ``detail``.
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
        ok = n > 0 and (bits == 8 or qtypes == {variant.removeprefix("bnb-")})
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
    group = RTN_SCHEMES[variant][1]
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


def verification(s: Settings) -> Any:
    """:func:`verify_quantized` of every usable copy of the catalogue (a table)."""
    import logging

    import pandas as pd
    from transformers.utils import logging as hf_logging

    from kltools.sources import quant_catalogue

    hf_logging.disable_progress_bar()  # pages show results, not progress bars or kernel notes
    for name in ("bitsandbytes", "transformers", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    from kltools.sources import can

    cat = quant_catalogue(s)
    if not can(s, "models"):
        out = pd.DataFrame(columns=["spec", "variant", "ok", "check", "detail"])
        out.attrs["not_run"] = (
            "the copies' weights are not here (published vectors only): their quantization "
            "is the authors' (bitsandbytes at load time)"
        )
        return out
    return pd.DataFrame(
        [
            verify_quantized(r.spec, r.variant, r.quantization, s.device)
            for r in cat[cat.usable].itertuples()
        ]
    )


def catalogue_report(s: Settings) -> str:
    """Which copies run here and which are left out, and why (Markdown)."""
    from kltools.sources import quant_catalogue

    cat = quant_catalogue(s)
    skipped = cat[~cat.usable]
    used = cat[cat.usable]
    labels = ", ".join(f"{v} → {scheme_label(v)}" for v in dict.fromkeys(used.variant))
    text = (
        f"**{len(used)} copies** of {used.model.nunique()} models are compared; settings: {labels}."
    )
    if len(skipped):
        text += f" **{len(skipped)} copies cannot run here and are left out:** " + "; ".join(
            f"`{r.spec}` ({r.note})" for r in skipped.itertuples()
        )
    return text


def verification_report(checks: Any) -> str:
    """One sentence if every copy is quantized; raises otherwise (never a silent fp32 copy)."""
    from kltools.errors import KLToolsError

    if checks.attrs.get("not_run"):
        return f"Not verified here: {checks.attrs['not_run']}."
    if not checks.ok.all():
        raise KLToolsError(f"not quantized: {', '.join(checks[~checks.ok].spec)}")
    return f"All **{len(checks)}** copies verified quantized."


def per_model_report(pairs: PairSet) -> str:
    """Within each model and family: is every 8-bit copy closer than every 4-bit one? (Markdown)"""
    f = pairs.frame
    cases = [
        bool(g[g.bits == 8].kl.max() < g[g.bits == 4].kl.min())
        for _, g in f.groupby(["model", "family"])
        if (g.bits == 8).any() and (g.bits == 4).any()
    ]
    top = f.loc[f.kl.idxmax()]
    return (
        f"- Within a model and family, every 8-bit copy is closer than every 4-bit copy in "
        f"**{sum(cases)} of {len(cases)}** cases (all schemes, not only the paper's two).\n"
        f"- Largest KL: `{top.variant}` of `{top.model}` at {top.kl:.3g} bits/byte; smallest: "
        f"{f.kl.min():.3g} bits/byte.\n"
        "- Whether these stand above the numerical floor is the subject of the next chapter."
    )


def map_points(loglik: xr.DataArray, variants: Sequence[str] | None = ("8-bit",)) -> xr.DataArray:
    """The quantization store's vectors (``(model, variant, text)``) as map points: every base
    model (variant ``full``) and its copies of ``variants``.

    ``variants`` are Fig. 3 setting names (``"8-bit"``: LLM.int8(), as the paper's Fig. 2a,
    which shows the originals and their 8-bit copies only) or scheme names; None keeps every
    copy.
    """
    from kltools.maps import flat_points

    pts = flat_points(loglik, ("model", "variant"))
    if variants is None:
        return pts
    schemes = {k for k, v in PAPER_SCHEMES.items() if v in variants} | set(variants)
    keep = np.flatnonzero(np.isin(pts["variant"].values, ["full", *schemes]))
    return pts.isel(point=keep).assign_coords(point=np.arange(keep.size))


def paper_baselines(s: Settings) -> pd.DataFrame:
    """The quantization KLs against both baselines, where the authors' release is here.

    The paper measures a quantized vector against the earlier paper's full-precision vector of
    the model (another extraction run); the book against the full-precision vector extracted in
    the same run. For every copy of the paper's two schemes whose model the release lists:
    ``same pipeline`` (the book's KL), ``paper's baseline`` (our copy against the release's
    row) and their ratio: how much of a small KL is pipeline noise. Empty, with the reason in
    ``attrs["not_run"]``, when the source runs no model of the paper or the release is absent.
    """
    from kltools.kl import half_variance, nats_to_bpb
    from kltools.released import open_release
    from kltools.released.compare import local_release
    from kltools.sources import can

    cols = ["model", "variant", "same pipeline", "paper's baseline", "ratio"]
    out = pd.DataFrame(columns=cols)
    where = local_release()
    if not (can(s, "models") and can(s, "published_magnitudes")):
        out.attrs["not_run"] = (
            "the published baseline vectors are the paper's models', which this profile does "
            "not run"
            if can(s, "models")
            else "this profile's baseline is the paper's own"
        )
        return out
    if where is None:
        out.attrs["not_run"] = "the authors' release is not on this machine"
        return out
    rel = open_release(where)
    row = {m: i for i, m in enumerate(rel.model_list())}
    ll = quantization_store(s).loglik
    if ll.sizes["text"] > rel.n_texts():
        out.attrs["not_run"] = "this run scored other texts than the release's"
        return out
    oyama = rel.oyama()
    mean_bytes = float(ll["text_bytes"].mean())
    rows = []
    for r in quantization(s).frame.itertuples():
        if r.variant not in PAPER_SCHEMES or r.model not in row:
            continue
        copy = ll.sel(model=r.model, variant=r.variant).values.astype(np.float64)
        theirs = np.asarray(oyama[row[r.model]][: ll.sizes["text"]], np.float64)
        paper = float(nats_to_bpb(half_variance(copy - theirs), mean_bytes))
        rows.append([r.model, r.variant, float(r.kl), paper, paper / r.kl if r.kl else np.nan])
    return pd.DataFrame(rows, columns=cols)


def baseline_note(s: Settings) -> str:
    """One Markdown paragraph on the two baselines (:func:`paper_baselines`)."""
    t = paper_baselines(s)
    if not len(t):
        why = t.attrs.get("not_run", "no copy of the paper's schemes is listed in the release")
        return (
            f"**The paper's baseline** (the earlier paper's vectors) is not compared here: {why}."
        )
    return (
        f"**Both baselines**, {len(t)} copies: against the earlier paper's vector (the paper's "
        f"baseline, another extraction run) the KL is {t.ratio.median():.3g} times the same-"
        f"pipeline KL (median; range {t.ratio.min():.3g}–{t.ratio.max():.3g}): the excess is "
        "pipeline noise, not quantization."
    )
