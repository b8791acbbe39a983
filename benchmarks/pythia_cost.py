"""What the ``pythia`` profile downloads and computes, and what that costs on one GPU.

Pure functions, no torch and no network, so ``python benchmarks/gpu_check.py --plan`` prints the
download list anywhere and ``make gpu-check`` turns its measured throughput into a projection.

- :data:`REAL_SHAPES`: the published configs (width, depth, heads, key/value heads, MLP width,
  vocabulary, MLP kind) of the Pythia sizes and of the main hub families. Parameter counts are
  *computed* from them (:func:`param_count`); a test checks the Pythia counts against the
  Pythia paper's. The paper's other models (the first 50 of the authors' ``model_list.json``
  and the 66 fine-tuning edges: 119 repositories of a dozen architectures) get an *estimated*
  shape (:func:`shape_of`): the size their name states (``7b``, ``1.3B``), else their family's
  usual size, spread over a template of their family; :func:`shape_source` says which, and the
  plan marks estimates with ``~``.
- :func:`full_run`: every extraction unit of the profile, read from the code and the parameter
  file that define them (:func:`kltools.settings.stores.pretraining_units` and
  :mod:`kltools.sources` on the ``common`` parameters of ``params/pythia.yaml``: the paper's
  model sets from the authors' metadata).
- :func:`disk_bytes`: 2 bytes per parameter and revision (16-bit checkpoints).
- :func:`project`: GPU seconds of each unit = tokens × FLOPs per token ÷ the FLOP/s measured on
  the nearest measured shape (the larger one for every model bigger than it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: published configs: hidden, layers, heads, kv heads, intermediate, vocab (embedding rows),
#: mlp ("neox": 2 matrices + biases, LayerNorm; "gated": 3 matrices, RMSNorm), qkv bias, qk norm
REAL_SHAPES: dict[str, dict[str, Any]] = {
    "EleutherAI/pythia-410m": dict(d=1024, L=24, h=16, kv=16, ff=4096, V=50304, mlp="neox"),
    "EleutherAI/pythia-1b": dict(d=2048, L=16, h=8, kv=8, ff=8192, V=50304, mlp="neox"),
    "EleutherAI/pythia-1.4b": dict(d=2048, L=24, h=16, kv=16, ff=8192, V=50304, mlp="neox"),
    "EleutherAI/pythia-2.8b": dict(d=2560, L=32, h=32, kv=32, ff=10240, V=50304, mlp="neox"),
    "EleutherAI/pythia-6.9b": dict(d=4096, L=32, h=32, kv=32, ff=16384, V=50432, mlp="neox"),
    "llama-2-7b": dict(d=4096, L=32, h=32, kv=32, ff=11008, V=32000, mlp="gated"),
    "llama-3-8b": dict(d=4096, L=32, h=32, kv=8, ff=14336, V=128256, mlp="gated"),
    "mistral-7b": dict(d=4096, L=32, h=32, kv=8, ff=14336, V=32000, mlp="gated"),
    "qwen2-7b": dict(d=3584, L=28, h=28, kv=4, ff=18944, V=152064, mlp="gated", qkv_bias=True),
    "olmo-2-7b": dict(d=4096, L=32, h=32, kv=32, ff=11008, V=100352, mlp="gated", qk_norm=True),
}

#: lineage type / repository -> shape key
_FAMILY_SHAPE = {"llama-2": "llama-2-7b", "llama-3": "llama-3-8b", "mistral": "mistral-7b"}
_REPO_SHAPE = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "mistralai/Mistral-7B-v0.1": "mistral-7b",
    "Qwen/Qwen2-7B": "qwen2-7b",
    "allenai/OLMo-2-1124-7B": "olmo-2-7b",
}


#: sizes of models whose name states none (parameters, from their model cards)
_KNOWN_SIZES: dict[str, float] = {"microsoft/phi-2": 2.78e9, "microsoft/phi-1_5": 1.42e9}
#: the usual size of a family whose member's name states none
_FAMILY_SIZE: dict[str, float] = {"gemma": 8.5e9, "deepseek": 6.9e9}
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def _base(repo: str) -> str:
    base = repo.split("@")[0]
    if base.startswith("EleutherAI/pythia-") and "-seed" in base:
        base = base.split("-seed")[0]
    return base


def shape_source(repo: str) -> str:
    """Where :func:`shape_of`'s shape comes from: ``published config``, ``size in the name``,
    ``model card`` or ``family default`` (the last three are estimates)."""
    base = _base(repo)
    if base in REAL_SHAPES or base in _REPO_SHAPE:
        return "published config"
    if base in _KNOWN_SIZES:
        return "model card"
    return "size in the name" if _SIZE_IN_NAME.search(base.split("/")[-1]) else "family default"


def _estimated_size(base: str) -> float:
    if base in _KNOWN_SIZES:
        return _KNOWN_SIZES[base]
    m = _SIZE_IN_NAME.search(base.split("/")[-1])
    if m:
        return float(m[1]) * (1e9 if m[2] in "bB" else 1e6)
    from kltools import metadata

    return _FAMILY_SIZE.get(metadata.model_types().get(base, ""), 7e9)


def shape_of(repo: str) -> dict[str, Any]:
    """The shape of a repository: its published config (a PolyPythia seed has its size's), or
    an estimate for the paper's other models: a template of the family (GPT-NeoX for
    ``gpt_neox`` models, else Llama-2-7B) with width and depth scaled by the cube root of the
    estimated size over the template's (``estimated: True``)."""
    base = _base(repo)
    if base in REAL_SHAPES:
        return REAL_SHAPES[base]
    if base in _REPO_SHAPE:
        return REAL_SHAPES[_REPO_SHAPE[base]]
    from kltools import metadata

    family = metadata.model_types().get(base, "")
    template = REAL_SHAPES["EleutherAI/pythia-6.9b" if family == "gpt_neox" else "llama-2-7b"]
    f = (_estimated_size(base) / param_count(template)) ** (1 / 3)
    d = max(128, int(round(template["d"] * f / 128)) * 128)
    return dict(
        template,
        d=d,
        L=max(1, round(template["L"] * f)),
        h=max(1, d // 128),
        kv=max(1, d // 128),
        ff=int(round(template["ff"] * f / 128)) * 128,
        estimated=True,
    )


def param_count(s: Mapping[str, Any]) -> int:
    """Parameters of a decoder of shape ``s`` (untied input and output embeddings)."""
    d, L, ff, V = s["d"], s["L"], s["ff"], s["V"]
    kv_dim = d * s["kv"] // s["h"]
    if s["mlp"] == "neox":  # biases everywhere, two LayerNorms (weight + bias) per block
        attn = d * 3 * d + 3 * d + d * d + d
        mlp = d * ff + ff + ff * d + d
        norms = 2 * 2 * d
        final = 2 * d
    else:  # Llama-style: no biases (Qwen2: q/k/v biases), RMSNorm weights only
        attn = 2 * d * d + 2 * d * kv_dim + (d + 2 * kv_dim if s.get("qkv_bias") else 0)
        mlp = 3 * d * ff
        norms = 2 * d + (d + kv_dim if s.get("qk_norm") else 0)
        final = d
    return L * (attn + mlp + norms) + final + 2 * V * d


def flops_per_token(s: Mapping[str, Any], context: float, lens_rows: int = 0) -> float:
    """Forward FLOPs of one scored token: 2 × matmul weights, attention over ``context`` keys,
    and ``max(1, lens_rows)`` unembeddings (the logit lens scores every layer)."""
    d, L, V = s["d"], s["L"], s["V"]
    kv_dim = d * s["kv"] // s["h"]
    mlp = (2 if s["mlp"] == "neox" else 3) * d * s["ff"]
    block = 2 * (2 * d * d + 2 * d * kv_dim + mlp) + 2 * 2 * d * context
    return L * block + 2 * d * V * max(1, lens_rows)


def pythia_settings() -> Any:
    """The ``common`` parameters of ``params/pythia.yaml`` as :class:`kltools.config.Settings`."""
    import yaml

    from kltools.config import Settings

    doc = yaml.safe_load((ROOT / "params" / "pythia.yaml").read_text())
    return Settings.from_parameters({"profile": "pythia", **(doc.get("common") or {})})


@dataclass(frozen=True)
class Work:
    """Extraction units of one repository in the full run."""

    repo: str
    chapter: str
    units: int
    revisions: int  # distinct hub revisions to download
    lens: bool = False  # logit lens over every layer


def full_run() -> list[Work]:
    """Every extraction of ``make book PROFILE=pythia``, from the code and files that define it.

    Pretraining: :func:`kltools.settings.stores.pretraining_units` (sizes × the paper's 154
    steps, PolyPythia seeds, exclusions). Quantization: each base of
    :func:`kltools.sources.quant_catalogue` in full precision and under each scheme. Floor:
    each :func:`kltools.sources.floor_models` model under each floor setting. Fine-tuning: every
    model of :func:`kltools.sources.lineages` (the paper's edges and their parents). Layers:
    every :func:`kltools.sources.layer_models` model
    with the logit lens. The method chapter's Monte-Carlo sampling and the scale chapter (which
    reads these stores) are not counted.
    """
    from kltools.settings.stores import pretraining_units
    from kltools.sources import floor_models, layer_models, lineages, quant_catalogue

    s = pythia_settings()
    per_repo = Counter(u.spec.split("@")[0] for u in pretraining_units(s))
    work = [Work(repo, "pretraining", n, n) for repo, n in per_repo.items()]
    for repo, rows in quant_catalogue(s).groupby("base_spec", sort=False):
        work.append(Work(str(repo), "quantization", 1 + len(rows), 1))
    for repo in floor_models(s).values():
        work.append(Work(repo, "floor", len(s.floor_settings), 1))
    for model in lineages(s)[0].spec:
        work.append(Work(str(model), "finetuning", 1, 1))
    for repo in layer_models(s).values():
        work.append(Work(repo, "layers", 1, 1, lens=True))
    return work


def disk_bytes(work: list[Work]) -> dict[str, int]:
    """Bytes downloaded per repository: distinct revisions × parameters × 2 (16-bit weights).

    A repository used by several chapters at ``main`` is downloaded once.
    """
    revs: dict[str, int] = {}
    for w in work:
        if w.chapter == "pretraining":
            revs[w.repo] = revs.get(w.repo, 0) + w.revisions
        else:
            revs.setdefault(w.repo, 1)
    return {repo: n * 2 * param_count(shape_of(repo)) for repo, n in revs.items()}


def project(
    measured: Mapping[str, Mapping[str, float]],
    *,
    n_texts: int,
    tokens_per_text: float,
) -> list[dict[str, Any]]:
    """GPU hours of every chapter's extraction, from measured throughput.

    Parameters
    ----------
    measured : mapping
        ``{repo: {"tokens_per_s": …}}`` for the measured shapes (e.g. the Pythia-410m and -1b
        shapes of ``make gpu-check``); their effective FLOP/s is tokens/s × FLOPs per token.
    n_texts, tokens_per_text
        Texts per unit (the profile's ``n_texts``) and mean tokens per text.

    Returns
    -------
    list of dict
        One row per (chapter, repository): ``units``, ``tokens``, ``flop_per_token``,
        ``hours`` and ``rate_from`` (which measured shape's FLOP/s was used: the measured
        shape itself, else the largest measured shape no bigger than it, else the largest).
    """
    context = (tokens_per_text + 1) / 2
    rates = {
        repo: m["tokens_per_s"] * flops_per_token(shape_of(repo), context)
        for repo, m in measured.items()
    }
    by_size = sorted(rates, key=lambda r: param_count(shape_of(r)))
    rows = []
    for w in full_run():
        shape = shape_of(w.repo)
        fpt = flops_per_token(shape, context, lens_rows=shape["L"] + 1 if w.lens else 0)
        base = w.repo.split("-seed")[0] if w.repo.startswith("EleutherAI/") else w.repo
        if base in rates:
            src = base
        else:
            smaller = [r for r in by_size if param_count(shape_of(r)) <= param_count(shape)]
            src = smaller[-1] if smaller else by_size[-1]
        tokens = w.units * n_texts * tokens_per_text
        rows.append(
            dict(
                chapter=w.chapter,
                repo=w.repo,
                units=w.units,
                tokens=tokens,
                flop_per_token=fpt,
                hours=tokens * fpt / rates[src] / 3600,
                rate_from=src,
            )
        )
    return rows


def summary_lines(rows: list[dict[str, Any]], disk: Mapping[str, int]) -> list[str]:
    """Per-chapter units, GPU hours and downloaded bytes, and the totals, as printable lines."""
    by: dict[str, dict[str, float]] = {}
    for r in rows:
        c = by.setdefault(r["chapter"], {"units": 0, "hours": 0.0})
        c["units"] += r["units"]
        c["hours"] += r["hours"]
    lines = [f"  {'chapter':14s} {'units':>7s} {'GPU hours':>10s}"]
    for ch, c in by.items():
        lines.append(f"  {ch:14s} {int(c['units']):7d} {c['hours']:10.1f}")
    total_h = sum(c["hours"] for c in by.values())
    lines.append(f"  {'total':14s} {sum(int(c['units']) for c in by.values()):7d} {total_h:10.1f}")
    lines.append(f"  download: {sum(disk.values()) / 1e12:.2f} TB in {len(disk)} repositories")
    return lines


def plan_lines() -> list[str]:
    """The download list: repository, revisions, parameters (computed), bytes at 2 per parameter."""
    work = full_run()
    disk = disk_bytes(work)
    revs: dict[str, int] = {}
    for w in work:
        revs[w.repo] = revs.get(w.repo, 0) + (w.revisions if w.chapter == "pretraining" else 0)
    lines = [f"  {'repository':46s} {'revisions':>9s} {'parameters':>14s} {'GB':>8s}"]
    for repo, b in sorted(disk.items(), key=lambda kv: -kv[1]):
        approx = "~" if shape_source(repo) != "published config" else " "
        lines.append(
            f"  {repo:46s} {max(1, revs.get(repo, 0)):9d} "
            f"{approx}{param_count(shape_of(repo)):13,d} {b / 1e9:8.1f}"
        )
    lines.append(f"  {'total':46s} {'':9s} {'':14s} {sum(disk.values()) / 1e9:8.1f}")
    return lines


def compute_lines(n_texts: int) -> list[str]:
    """Forward FLOPs of the full run per token of text length, per chapter (no throughput needed).

    ``Σ units × n_texts × FLOPs per token``: multiply by the mean tokens per text and divide by
    the FLOP/s a GPU achieves to get seconds (``make gpu-check`` measures both).
    """
    by: dict[str, list[float]] = {}
    for w in full_run():
        shape = shape_of(w.repo)
        # attention grows with the context; 128 keys on average is a text of ~255 tokens
        fpt = flops_per_token(shape, 128.0, lens_rows=shape["L"] + 1 if w.lens else 0)
        c = by.setdefault(w.chapter, [0, 0.0])
        c[0] += w.units
        c[1] += w.units * n_texts * fpt
    lines = [f"  {'chapter':14s} {'units':>6s} {'PFLOP per token of text length':>31s}"]
    for ch, (units, flop) in by.items():
        lines.append(f"  {ch:14s} {int(units):6d} {flop / 1e15:31.2f}")
    total = sum(v[1] for v in by.values())
    lines.append(f"  {'total':14s} {sum(int(v[0]) for v in by.values()):6d} {total / 1e15:31.2f}")
    return lines


#: sustained read bandwidth assumed for the weight-distance hours (local NVMe, GB/s)
READ_GB_PER_S = 1.0


def weight_lines(max_lag: int = 10) -> list[str]:
    """Weight distances per Pythia size (the diffusion chapter, all five sizes): bytes read,
    float32 memory streamed vs windowed, and hours at :data:`READ_GB_PER_S` (reading the
    checkpoints bounds the time; the squared differences are a few GPU seconds per pair)."""
    lines = [f"  {'size':8s} {'read (TB)':>10s} {'streamed ≤ 2 ckpt (GB)':>23s} "
             f"{'window of ' + str(max_lag + 1) + ' (GB)':>17s} "
             f"{'hours at ' + format(READ_GB_PER_S, 'g') + ' GB/s':>17s}"]  # fmt: skip
    total = 0.0
    for repo, w in ((w.repo, w) for w in full_run() if w.chapter == "pretraining"):
        if "-seed" in repo:
            continue
        n = param_count(shape_of(repo))
        read = w.revisions * 2 * n
        total += read
        lines.append(
            f"  {repo.split('-', 1)[1]:8s} {read / 1e12:10.2f} "
            f"{2 * 4 * n / 1e9:23.1f} {(max_lag + 1) * 4 * n / 1e9:17.1f} "
            f"{read / (READ_GB_PER_S * 1e9) / 3600:17.1f}"
        )
    lines.append(
        f"  {'total':8s} {total / 1e12:10.2f} {'':23s} {'':17s} "
        f"{total / (READ_GB_PER_S * 1e9) / 3600:17.1f}"
    )
    return lines


def page_text(n_texts: int = 10000) -> str:
    """What ``book/pythia-plan.txt`` holds (``python benchmarks/pythia_cost.py --write``)."""
    parts = [
        "Generated by `python benchmarks/pythia_cost.py --write` from the published model shapes,",
        "kltools.settings.stores.pretraining_units and kltools.sources on params/pythia.yaml,",
        "and the authors' metadata (the paper's model sets). Bytes: 2 per parameter and revision",
        "(16-bit weights); parameters marked ~ are estimates (see pythia_cost.shape_of).",
        "",
        "Downloads",
        *plan_lines(),
        "",
        f"Forward compute of the extractions ({n_texts} texts per unit)",
        *compute_lines(n_texts),
        "",
        "Weight distances (diffusion chapter, weight_space: true, all five sizes), window 10",
        *weight_lines(10),
    ]
    return "\n".join(parts) + "\n"


PAGE_FILE = ROOT / "book" / "pythia-plan.txt"

if __name__ == "__main__":
    import sys

    if "--write" in sys.argv[1:]:
        PAGE_FILE.write_text(page_text())
        print(f"wrote {PAGE_FILE}")
    else:
        print(page_text(), end="")
