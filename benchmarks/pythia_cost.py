"""What the ``pythia`` profile downloads and computes, and what that costs on one GPU.

Pure functions, no torch and no network, so ``python benchmarks/gpu_check.py --plan`` prints the
download list anywhere and ``make gpu-check`` turns its measured throughput into a projection.

- :data:`REAL_SHAPES`: the published configs (width, depth, heads, key/value heads, MLP width,
  vocabulary, MLP kind) of every model the profile names. Parameter counts are *computed* from
  them (:func:`param_count`); a test checks the Pythia counts against the Pythia paper's.
- :func:`full_run`: every extraction unit of the profile, read from the code and the parameter
  file that define them (:func:`kltools.settings.stores.pretraining_units` and
  :mod:`kltools.sources` on the ``common`` parameters of ``params/pythia.yaml``,
  ``kltools/data/lineages.json``).
- :func:`disk_bytes`: 2 bytes per parameter and revision (16-bit checkpoints).
- :func:`project`: GPU seconds of each unit = tokens × FLOPs per token ÷ the FLOP/s measured on
  the nearest measured shape (the larger one for every model bigger than it).
"""

from __future__ import annotations

import json
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


def shape_of(repo: str) -> dict[str, Any]:
    """The published shape of a repository (a PolyPythia seed has its size's shape)."""
    base = repo.split("@")[0]
    if base.startswith("EleutherAI/pythia-") and "-seed" in base:
        base = base.split("-seed")[0]
    if base in REAL_SHAPES:
        return REAL_SHAPES[base]
    if base in _REPO_SHAPE:
        return REAL_SHAPES[_REPO_SHAPE[base]]
    for e in _lineages():
        if e["model"] == base:
            return REAL_SHAPES[_FAMILY_SHAPE[e["type"]]]
    raise KeyError(f"no published shape for {repo!r}; add it to REAL_SHAPES")


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


def _lineages() -> list[dict[str, Any]]:
    return json.loads((ROOT / "kltools" / "data" / "lineages.json").read_text())["lineages"]


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
    model of the checked-in lineages. Layers: every :func:`kltools.sources.layer_models` model
    with the logit lens. The method chapter's Monte-Carlo sampling and the scale chapter (which
    reads these stores) are not counted.
    """
    from kltools.settings.stores import pretraining_units
    from kltools.sources import floor_models, layer_models, quant_catalogue

    s = pythia_settings()
    per_repo = Counter(u.spec.split("@")[0] for u in pretraining_units(s))
    work = [Work(repo, "pretraining", n, n) for repo, n in per_repo.items()]
    for repo, rows in quant_catalogue(s).groupby("base_spec", sort=False):
        work.append(Work(str(repo), "quantization", 1 + len(rows), 1))
    for repo in floor_models(s).values():
        work.append(Work(repo, "floor", len(s.floor_settings), 1))
    for e in _lineages():
        work.append(Work(e["model"], "finetuning", 1, 1))
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
        lines.append(
            f"  {repo:46s} {max(1, revs.get(repo, 0)):9d} "
            f"{param_count(shape_of(repo)):14,d} {b / 1e9:8.1f}"
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


def weight_lines(max_lag: int = 10) -> list[str]:
    """Weight distances per Pythia size: bytes read, and float32 memory streamed vs windowed."""
    lines = [f"  {'size':8s} {'read (TB)':>10s} {'streamed ≤ 2 ckpt (GB)':>23s} "
             f"{'window of ' + str(max_lag + 1) + ' (GB)':>17s}"]  # fmt: skip
    for repo, w in ((w.repo, w) for w in full_run() if w.chapter == "pretraining"):
        if "-seed" in repo:
            continue
        n = param_count(shape_of(repo))
        lines.append(
            f"  {repo.split('-', 1)[1]:8s} {w.revisions * 2 * n / 1e12:10.2f} "
            f"{2 * 4 * n / 1e9:23.1f} {(max_lag + 1) * 4 * n / 1e9:17.1f}"
        )
    return lines


def page_text(n_texts: int = 10000) -> str:
    """What ``book/pythia-plan.txt`` holds (``python benchmarks/pythia_cost.py --write``)."""
    parts = [
        "Generated by `python benchmarks/pythia_cost.py --write` from the published model shapes,",
        "kltools.settings.stores.pretraining_units and kltools.sources on params/pythia.yaml,",
        "and kltools/data/lineages.json. Bytes: 2 per parameter and revision (16-bit weights).",
        "",
        "Downloads",
        *plan_lines(),
        "",
        f"Forward compute of the extractions ({n_texts} texts per unit)",
        *compute_lines(n_texts),
        "",
        "Weight distances (diffusion chapter, weight_space: true), window 10",
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
