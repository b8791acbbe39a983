"""Quantized copies of suite models.

Two families:

**Round to nearest (RTN)**, dependency-free, :func:`rtn_quantize`. Symmetric: for each group of
weights, ``scale = max|w| / qmax`` with ``qmax = 2**(bits-1) - 1`` and
``w_hat = scale * clamp(round(w / scale), -qmax, qmax)``, so a group has at most
``2**bits - 1`` levels, each an integer multiple of its scale. A group is one output channel
(a row of the weight matrix; ``group_size=None``) or ``group_size`` consecutive input weights
of a row. Covered: the weight of every ``nn.Linear`` inside the transformer blocks (attention
``query_key_value`` and ``dense``, MLP ``dense_h_to_4h`` and ``dense_4h_to_h``); not covered
(kept in fp32): embedding, unembedding (``embed_out``), layer norms, biases — the same coverage
as bitsandbytes through transformers, which keeps the output head in full precision. The copy
is saved as a normal Hugging Face folder with the dequantized fp32 weights and
``quantization.json`` recording the scheme.

**bitsandbytes** (as the paper): LLM.int8 (``int8``) and 4-bit ``fp4`` / ``nf4`` (blocksize 64,
compute dtype float32 on the CPU). The model is quantized by ``from_pretrained`` with a
``BitsAndBytesConfig`` and saved **pre-quantized** with ``save_pretrained`` (this round-trips on
the CPU with bitsandbytes 0.50): loading the folder with ``AutoModelForCausalLM.from_pretrained``
gives ``Linear8bitLt`` / ``Linear4bit`` layers again. ``quantization.json`` records the scheme;
``config.json`` holds transformers' ``quantization_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError
from kltools.suite.profiles import BNB_SCHEMES, RTN_SCHEMES, Profile, Unit, unit_digest
from kltools.suite.train import save_model_dir, setup_torch

#: Linear layers that RTN quantizes (names inside each GPT-NeoX layer)
RTN_TARGETS = (
    "attention.query_key_value",
    "attention.dense",
    "mlp.dense_h_to_4h",
    "mlp.dense_4h_to_h",
)


def _grouped(w: np.ndarray, group_size: int | None) -> np.ndarray:
    """View a (out, in) matrix as (out, n_groups, group) groups of the input dimension."""
    out_f, in_f = w.shape
    g = in_f if group_size is None else group_size
    if in_f % g:
        raise KLToolsError(f"rtn: input size {in_f} is not a multiple of the group size {g}")
    return w.reshape(out_f, in_f // g, g)


def rtn_quantize(weight: np.ndarray, bits: int, group_size: int | None = None) -> np.ndarray:
    """Symmetric round-to-nearest quantization, returned dequantized (float32).

    Parameters
    ----------
    weight : ndarray, shape (out, in)
        A Linear weight.
    bits : int
        2..8 bits; levels are the integers in ``[-qmax, qmax]``, ``qmax = 2**(bits-1) - 1``.
    group_size : int, optional
        Group of consecutive input weights sharing a scale; None = one scale per output
        channel (row).

    Returns
    -------
    ndarray
        ``scale * q`` with integer ``q``, same shape, float32.
    """
    if not 2 <= bits <= 8:
        raise KLToolsError(f"rtn: bits must be in 2..8 (got {bits})")
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise KLToolsError(f"rtn: expected a 2-d weight, got shape {w.shape}")
    qmax = 2 ** (bits - 1) - 1
    groups = _grouped(w, group_size)
    scale = np.abs(groups).max(axis=-1, keepdims=True) / qmax
    scale = np.where(scale == 0, np.float32(1.0), scale).astype(np.float32)
    q = np.clip(np.rint(groups / scale), -qmax, qmax)
    return (q * scale).astype(np.float32).reshape(w.shape)


def rtn_levels(weight: np.ndarray, bits: int, group_size: int | None = None) -> tuple[int, float]:
    """Check a dequantized weight: (most distinct levels in a group, worst |w/scale − round|).

    The scale of each group is recovered as ``max|w| / qmax`` (the largest weight sits on
    level ±qmax). A really quantized weight gives at most ``2**bits`` levels and an integer
    error near 0 (float32 rounding only).
    """
    qmax = 2 ** (bits - 1) - 1
    groups = _grouped(np.asarray(weight, dtype=np.float32), group_size)
    scale = np.abs(groups).max(axis=-1, keepdims=True) / qmax
    scale = np.where(scale == 0, 1.0, scale)
    ratio = groups / scale
    err = float(np.abs(ratio - np.rint(ratio)).max())
    flat = groups.reshape(-1, groups.shape[-1])
    levels = max(len(np.unique(row)) for row in flat)
    return levels, err


def quantize_model_rtn(model, bits: int, group_size: int | None) -> list[str]:
    """Replace the covered Linear weights of a GPT-NeoX model by their RTN copies, in place.

    Returns
    -------
    list of str
        Names of the quantized weights.
    """
    import torch

    done = []
    for name, module in model.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and name.endswith(RTN_TARGETS)
            and ".layers." in name
        ):
            w = module.weight.detach().cpu().numpy()
            module.weight.data = torch.from_numpy(rtn_quantize(w, bits, group_size))
            done.append(f"{name}.weight")
    if not done:
        raise KLToolsError("rtn: the model has no GPT-NeoX block Linear layers to quantize")
    return done


def bnb_config(scheme: str):
    """transformers ``BitsAndBytesConfig`` of ``int8``, ``fp4`` or ``nf4``."""
    import torch
    from transformers import BitsAndBytesConfig

    if scheme == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if scheme in ("fp4", "nf4"):
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=scheme, bnb_4bit_compute_dtype=torch.float32
        )
    raise KLToolsError(f"unknown bitsandbytes scheme {scheme!r}; choose int8, fp4 or nf4")


def quantize_unit(unit: Unit, profile: Profile, root: Path) -> dict[str, Any]:
    """Build one ``quant`` unit: a quantized copy of a run's final checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    from kltools.suite.finetune import model_path

    setup_torch(1)
    p = unit.params
    src = model_path(root, p["parent"])
    scheme = p["scheme"]
    record: dict[str, Any] = {
        "name": unit.name,
        "digest": unit_digest(unit, profile),
        "parent": p["parent"],
        "scheme": scheme,
    }
    if scheme in RTN_SCHEMES:
        bits, group = RTN_SCHEMES[scheme]
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
        covered = quantize_model_rtn(model, bits, group)
        record.update(
            method="rtn",
            bits=bits,
            group_size=group,
            granularity="per output channel" if group is None else f"groups of {group} inputs",
            symmetric=True,
            levels="integers in [-(2**(bits-1)-1), 2**(bits-1)-1] times a per-group scale",
            scale="max|w| / (2**(bits-1)-1) per group",
            stored="dequantized float32",
            covered=covered,
            not_covered="embed_in, embed_out, layer norms, biases",
        )
    else:
        kind = scheme.removeprefix("bnb-")
        if kind not in BNB_SCHEMES:
            raise KLToolsError(f"unknown quantization scheme {scheme!r}")
        model = AutoModelForCausalLM.from_pretrained(
            str(src), quantization_config=bnb_config(kind), device_map="cpu", dtype=torch.float32
        )
        record.update(
            method="bitsandbytes",
            bits=8 if kind == "int8" else 4,
            quant_type=kind,
            stored="pre-quantized bitsandbytes weights (save_pretrained)",
            covered="nn.Linear layers of the blocks (transformers keeps embed_out in full precision)",
        )
    digest = save_model_dir(
        model, root / "tokenizer", root / unit.name, {"quantization.json": record}
    )
    return {**record, "sha256": digest}
