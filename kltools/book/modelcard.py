"""A model card of the offline suite, generated from its definition and its build record.

:func:`modelcard_markdown` writes one Markdown page from :mod:`kltools.suite.profiles` (what
the profile asks for) and from what ``kltools suite build`` wrote under ``suite/<profile>/``
(``data/data.json``, each run's ``run.json``, each fine-tune's ``lineage.json``, each
quantized copy's ``quantization.json``): the corpus and its domains, the tokenizer, every
run with its parameter count and the tokens it saw, the schedule and optimizer, the
fine-tuning recipes and what every quantization label means. Nothing on the page is typed:
a unit that is not built is listed as such.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kltools.book.tables import header_text
from kltools.suite.profiles import DEFAULT_SUITE, Profile, get_profile, plan

__all__ = ["modelcard_markdown", "optimizer_settings", "write_modelcard"]

PAGE_NAME = "modelcard"


def optimizer_settings() -> dict[str, Any]:
    """The suite's optimizer settings, read off the optimizer it builds (name, lr-free
    hyperparameters: betas, eps, weight decay)."""
    import torch

    from kltools.suite.train import make_optimizer

    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    group = opt.param_groups[0]
    return {
        "optimizer": type(opt).__name__,
        "betas": tuple(group["betas"]),
        "eps": group["eps"],
        "weight_decay": group["weight_decay"],
    }


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header_text(h) for h in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
        "",
    ]


def _corpus_lines() -> list[str]:
    from kltools.suite.corpus import manifest

    m = manifest()
    lines = [
        "## Corpus",
        "",
        f"{m.get('description', '')}. Documents are split into training and held-out by "
        f"hash ({m.get('split', '')}); the analysis texts come from the held-out documents.",
        "",
    ]
    lines += _table(
        ["domain", "documents", "bytes (uncompressed)"],
        [
            [f["domain"], f"{f['n_documents']:,}", f"{f['n_bytes_uncompressed']:,}"]
            for f in m["files"]
        ],
    )
    lines += _table(
        ["source", "version", "licence"],
        [
            [s.get("package", s.get("file", "")), s.get("version", ""), s.get("licence", "")]
            for s in m["sources"]
        ],
    )
    return lines


def modelcard_markdown(
    profile: str | Profile = DEFAULT_SUITE, root: str | os.PathLike[str] | None = None
) -> str:
    """The model card of suite ``profile`` (a Markdown page); ``root`` as in
    :func:`kltools.suite.builder.profile_root`."""
    from kltools.settings.quantization import scheme_label
    from kltools.suite.builder import profile_root
    from kltools.suite.profiles import BNB_SCHEMES, RTN_SCHEMES

    p = get_profile(profile)
    proot = profile_root(p, root)
    units = plan(p)
    data = _read(proot / "data" / "data.json") or {}
    texts = data.get("texts", {})
    opt = optimizer_settings()
    lines = [
        f"# Model card: the `{p.name}` suite",
        "",
        f"Generated from the suite's definition (`kltools.suite.profiles`) and its build record "
        f"(what `kltools suite build --profile {p.name}` wrote). Every model is a GPT-NeoX "
        "(Pythia architecture) trained from scratch by `kltools` on CPU.",
        "",
    ]
    if not data:
        lines += [
            f"The `{p.name}` suite is not built here, so the card shows its definition only "
            f"(`kltools suite build --profile {p.name}`).",
            "",
        ]
    lines += _corpus_lines()
    lines += [
        "## Tokenizer and texts",
        "",
        f"A byte-level BPE tokenizer with a vocabulary of {p.vocab_size:,} tokens, trained on "
        f"{p.tokenizer_bytes:,} bytes of the training documents; end of text `<|endoftext|>` "
        "(no BOS token, like Pythia's).",
        "",
        f"Training windows of {p.seq_len} tokens"
        + (
            f" ({data['pretrain_windows']:,} pretraining windows)"
            if "pretrain_windows" in data
            else ""
        )
        + f". The analysis set: {p.n_texts:,} held-out chunks of {p.text_min_bytes}–"
        f"{p.text_max_bytes} UTF-8 bytes, built with the paper's recipe"
        + (
            f"; mean {texts['mean_bytes']:.1f} bytes and {texts['tokens_mean']:.0f} tokens per text"
            if "mean_bytes" in texts and "tokens_mean" in texts
            else ""
        )
        + ". It is downloadable with the book's results (`texts.jsonl` in the archive).",
        "",
        "## Pretraining runs",
        "",
        f"Schedule: linear warm-up over {p.warmup_steps} steps, cosine decay to "
        f"{p.final_lr_ratio} × the peak learning rate at step {p.total_steps}; batches of "
        f"{p.batch_size} windows of {p.seq_len} tokens ({p.batch_size * p.seq_len:,} tokens per "
        f"step). Optimizer: {opt['optimizer']}, betas {opt['betas']}, eps {opt['eps']:g}, weight "
        f"decay {opt['weight_decay']:g}. Checkpoints at steps "
        f"{', '.join(str(s) for s in p.checkpoint_steps())}. Seed runs: {p.n_seeds} seeds of "
        f"size `{p.seed_size}` (the main run is seed 0).",
        "",
    ]
    rows = []
    for u in (u for u in units if u.kind == "run"):
        run = _read(proot / u.name / "run.json")
        spec = p.size(u.params["size"]) if "size" in u.params else None
        if run:
            cfg, sched = run.get("config", {}), run.get("schedule", {})
            tokens = sched.get("tokens_per_step", 0) * run.get("final_step", 0)
            shape = (
                f"{cfg.get('hidden_size')} × {cfg.get('num_hidden_layers')} × "
                f"{cfg.get('num_attention_heads')}"
            )
            rows.append(
                [
                    f"`{u.name}`",
                    shape,
                    f"{run.get('n_params', 0):,} ({run.get('n_nonembedding_params', 0):,})",
                    f"{tokens:,}",
                    f"{run.get('lr'):g}",
                    run.get("seed"),
                    f"{run.get('heldout_loss_final', float('nan')):.3f}",
                ]
            )
        else:
            shape = f"{spec.d_model} × {spec.n_layers} × {spec.n_heads}" if spec else ""
            lr = f"{spec.lr:g}" if spec else ""
            rows.append([f"`{u.name}`", shape, "not built", "", lr, u.params.get("seed", ""), ""])
    lines += _table(
        [
            "run",
            "width × layers × heads",
            "parameters (non-embedding)",
            "tokens seen",
            "peak lr",
            "seed",
            "held-out loss",
        ],
        rows,
    )
    lines += ["Held-out loss: nats per token on held-out windows at the last checkpoint.", ""]
    lines += ["## Fine-tuned children", ""]
    rows, schedules = [], set()
    for u in (u for u in units if u.kind == "finetune"):
        rec = _read(proot / u.name / "lineage.json")
        if rec:
            lora = rec.get("lora") or {}
            recipe = f"LoRA rank {lora['rank']}, alpha {lora['alpha']}" if lora else "all weights"
            schedules.add(str(rec.get("schedule", "")))
            rows.append(
                [
                    f"`{u.name}`",
                    f"`{rec.get('parent')}`",
                    f"{rec.get('domain')} (generation {rec.get('generation')})",
                    recipe,
                    f"{rec.get('steps')} at lr {rec.get('lr'):g}",
                ]
            )
        else:
            rows.append([f"`{u.name}`", "", u.params.get("domain", ""), "not built", ""])
    if schedules:
        lines += [f"Schedule of every fine-tune: {'; '.join(sorted(schedules))}.", ""]
    lines += _table(["child", "parent", "domain", "trains", "steps"], rows)
    lines += [
        "## Quantized copies and their labels",
        "",
        "Each label is the name of a scheme; the book's chapters label the paper's two schemes "
        "`8-bit` (`bnb-int8`) and `4-bit` (`bnb-fp4`) as the paper does, and every other "
        "scheme under its own label.",
        "",
    ]
    rows = []
    for scheme in p.quant_schemes:
        if scheme.removeprefix("bnb-") in BNB_SCHEMES and scheme.startswith("bnb-"):
            what = (
                f"bitsandbytes {scheme.removeprefix('bnb-').upper()} weights, stored pre-quantized"
            )
        else:
            bits, group = RTN_SCHEMES[scheme]
            scope = (
                f"one scale per group of {group} inputs"
                if group
                else "one scale per output channel"
            )
            what = f"round to nearest, {bits} bits, symmetric, {scope}; stored dequantized"
        copies = [u for u in units if u.kind == "quant" and u.params.get("scheme") == scheme]
        built = [u for u in copies if (proot / u.name / "quantization.json").is_file()]
        rows.append(
            [
                f"`{scheme}`",
                scheme_label(scheme),
                what,
                ", ".join(f"`{u.name}` (of `{u.deps[0]}`)" for u in copies),
                f"{len(built)} of {len(copies)}",
            ]
        )
    lines += _table(["label", "setting in the book", "what it is", "copies", "built"], rows)
    return "\n".join(lines)


def write_modelcard(directory: Path, profile: str | Profile = DEFAULT_SUITE) -> Path:
    """Write :func:`modelcard_markdown` to ``<directory>/modelcard.md``; returns the path."""
    path = directory / f"{PAGE_NAME}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(modelcard_markdown(profile) + "\n", encoding="utf-8")
    return path
