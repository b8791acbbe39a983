"""How each profile differs from the paper, as data: one table, generated from the code.

:func:`deviations` lists every difference of a run (its :class:`~kltools.config.Settings`)
from the paper — the scale-downs of the suite profiles (sizes, steps, texts, warm-up, k,
window …) and the book's own choices — each with the chapters it concerns. Each chapter shows
its own rows (:func:`chapter_table`); :func:`page` renders every profile's table as a book page.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kltools.config import Settings

__all__ = ["Deviation", "chapter_table", "deviations", "page"]

PRETRAINING = ("method", "trajectories", "consecutive", "seeds_sizes", "diffusion", "scale")
EVERY = (*PRETRAINING, "quantization", "floor", "finetuning", "layers")


@dataclass(frozen=True)
class Deviation:
    """One way a run differs from the paper."""

    topic: str
    paper: str
    ours: str
    why: str
    chapters: tuple[str, ...]

    def record(self, chapter: str) -> dict[str, str]:
        """A :mod:`kltools.results` ``deviations`` record."""
        return {
            "chapter": chapter,
            "topic": self.topic,
            "paper": self.paper,
            "ours": self.ours,
            "why": self.why,
        }


def _suite_rows(s: Settings) -> list[Deviation]:
    """The scale-downs of an offline suite profile (read from its definition, nothing built)."""
    from kltools.suite import get_profile

    p = get_profile(s.profile)
    steps = p.checkpoint_steps()
    interval = p.checkpoint_every
    n_pairs = sum(1 for a, b in zip(steps, steps[1:]) if b - a == interval and a >= s.after_step)
    small = f"on 2 CPU cores the {s.profile} suite trains in minutes"
    sizes = ", ".join(f"{z.name} ({z.n_layers} blocks, width {z.d_model})" for z in p.sizes)
    return [
        Deviation(
            "models",
            "Pythia 410M–6.9B (5 sizes), trained on the Pile",
            f"{len(p.sizes)} sizes of a Pythia-architecture suite: {sizes}",
            small,
            EVERY,
        ),
        Deviation(
            "training length",
            "143,000 steps, 154 checkpoints (every 1,000 after 512)",
            f"{p.total_steps} steps, {len(steps)} checkpoints (every {interval} after "
            f"{p.log_steps_until})",
            small,
            PRETRAINING,
        ),
        Deviation(
            "warm-up end",
            "Early/Later and text scores from step 2,000",
            f"from step {s.after_step} (warm-up {p.warmup_steps} of {p.total_steps} steps)",
            "the same share of training",
            PRETRAINING,
        ),
        Deviation(
            "Early/Later size",
            "first/last 50 of about 141 one-interval pairs per size",
            f"first/last {s.early_later_k} of {n_pairs} one-interval pairs per size",
            "fewer checkpoints",
            ("consecutive", "scale"),
        ),
        Deviation(
            "seed runs",
            "7 PolyPythia seeds of 410M (seeds 3, 4 excluded), 21 pairs",
            f"{p.n_seeds} seeds of size {p.seed_size}, the main run included, "
            f"{p.n_seeds * (p.n_seeds - 1) // 2} pairs",
            "the suite trains the main run as seed 0",
            ("seeds_sizes", "scale", "trajectories"),
        ),
        Deviation(
            "diffusion window",
            "10 checkpoints (Δ = 1k … 10k steps), starts from 1,000",
            f"{s.window} checkpoints, starts from the first evenly spaced checkpoint",
            "fewer checkpoints",
            ("diffusion",),
        ),
        Deviation(
            "quantized models",
            "up to 50 popular hub models; bnb int8 and fp4 (float16 compute)",
            f"{', '.join(p.quant_bases)} with {', '.join(p.quant_schemes)}, stored "
            "pre-quantized, 4-bit compute dtype float32 (CPU); other schemes each under their "
            "own label",
            "the suite's models; 4-bit bitsandbytes on CPU needs widths divisible by 64",
            ("quantization", "floor", "scale"),
        ),
        Deviation(
            "fine-tuned models",
            "hub lineages (mistral, llama-3, …; 66 FT pairs)",
            f"children of {', '.join(p.ft_parents)} on {', '.join(p.ft_domains)} "
            f"({', '.join(p.ft_methods)}), one second generation",
            "offline: the suite fine-tunes its own models",
            ("finetuning", "scale"),
        ),
        Deviation(
            "layer models",
            "Llama-2-7b, Llama-3-8B (32 layers)",
            "the final checkpoint of every suite run",
            "offline",
            ("layers", "scale"),
        ),
    ]


def _pythia_rows(s: Settings) -> list[Deviation]:
    """Where a run of the ``pythia`` profile departs from the paper's own setting."""
    from kltools.sources import layer_models
    from kltools.sources.pythia import pythia_steps

    rows: list[Deviation] = []
    paper_steps = pythia_steps()
    if s.steps and set(paper_steps) - set(s.steps):
        kept = len(set(paper_steps) & {int(t) for t in s.steps})
        rows.append(
            Deviation(
                "checkpoints",
                f"all {len(paper_steps)} Pythia revisions (step0 … step143000)",
                f"{kept} of them (`steps`)",
                "a parameter of this run (fewer downloads and extractions)",
                PRETRAINING,
            )
        )
    for topic, value, paper_value, chapters in (
        ("warm-up end", s.after_step, 2000, PRETRAINING),
        ("Early/Later size", s.early_later_k, 50, ("consecutive", "scale")),
        ("diffusion window", s.window, 10, ("diffusion",)),
        ("diffusion start", s.min_start, 1000, ("diffusion",)),
    ):
        if value != paper_value:
            rows.append(
                Deviation(
                    topic,
                    f"{paper_value:,}",
                    f"{value:,}",
                    "a parameter of this run (fewer checkpoints)",
                    chapters,
                )
            )
    if not s.weight_space:
        rows.append(
            Deviation(
                "weight-space exponents",
                "c_W from the Pythia checkpoints (Fig. 5)",
                "not computed (`weight_space: false`): the claim c_ℓ < c_W is not tested",
                "reads every revision of a run (streamed, two checkpoints at a time)",
                ("diffusion",),
            )
        )
    if s.dtype != "float16":
        rows.append(
            Deviation(
                "weight dtype",
                "float16 (log-softmax in float32)",
                f"{s.dtype} (log-softmax in float32)",
                "16-bit matrix products are slow on a CPU",
                EVERY,
            )
        )
    compute = "float16" if s.device == "cuda" else "float32"
    rows.append(
        Deviation(
            "quantized models",
            "up to 50 popular hub models; bnb int8 and fp4 (float16 compute)",
            f"{len(s.hub_models)} hub models with {', '.join(s.quant_schemes or ('bnb-int8', 'bnb-fp4', 'bnb-nf4'))}"
            f" at load time, 4-bit compute dtype {compute}; nf4 under its own label",
            "the paper does not list its 50 models",
            ("quantization", "floor", "scale"),
        )
    )
    rows.append(
        Deviation(
            "fine-tuned models",
            "parent→child pairs from hub metadata (66 FT pairs)",
            "hub model cards (base_model) when online, else the checked-in "
            f"{s.lineages_file or 'kltools/data/lineages.json'}",
            "the paper does not list its models; the list is checked in for offline runs",
            ("finetuning", "scale"),
        )
    )
    paper_layers = ("meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B")
    if tuple(layer_models(s).values()) != paper_layers:
        rows.append(
            Deviation(
                "layer models",
                "Llama-2-7b, Llama-3-8B (32 layers)",
                ", ".join(layer_models(s).values()),
                "a parameter of this run",
                ("layers", "scale"),
            )
        )
    return rows


def _rehearsal_rows(s: Settings) -> list[Deviation]:
    """The rehearsal's stand-ins (:mod:`kltools.rehearsal`): the hub path on small models."""
    from kltools.rehearsal import plan as P

    shapes = ", ".join(f"{k}: width {h}, {n} blocks" for k, (h, n, _) in P.PYTHIA_SHAPES.items())
    return [
        Deviation(
            "models (rehearsal)",
            "the real hub models: Pythia 410M–6.9B, PolyPythia, 7–8B Llama/Mistral/Qwen/OLMo",
            "the rehearsal hub: small models of the same architecture classes under the real "
            f"repository ids and revisions ({shapes}; hub roots width 64), trained here for "
            f"{P.TOTAL_UPDATES} updates (Pythia step S ≥ 1000 = update {P.update_of_step(1000) - 1} + "
            "S/1000; the steps 1 … 512 = updates 1 … 10)",
            "rehearses the hub code path offline on a CPU; its numbers test the pipeline, "
            "not the paper's claims",
            EVERY,
        ),
        Deviation(
            "texts (rehearsal)",
            "the Pile (monology/pile-uncopyrighted)",
            "the paper's Pile recipe applied to held-out documents of the suite corpus",
            "offline: no Pile download",
            EVERY,
        ),
    ]


def rehearsal_active() -> bool:
    """Whether this process reads a rehearsal hub (``HF_HUB_CACHE`` names one)."""
    import os
    from pathlib import Path

    cache = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else ""
    )
    return bool(cache) and (Path(cache).parent / "rehearsal.json").is_file()


def deviations(s: Settings, rehearsal: bool | None = None) -> list[Deviation]:
    """Every way a run with settings ``s`` differs from the paper.

    ``rehearsal``: the run reads the rehearsal hub (default: :func:`rehearsal_active`), whose
    stand-in models and texts are listed too.
    """
    from kltools import paper

    if rehearsal is None:
        rehearsal = s.profile == "pythia" and rehearsal_active()

    rows: list[Deviation] = []
    n_paper = paper.TEXT_SET["n_texts"]
    if s.n_texts != n_paper or s.textset != "pile":
        source = "the Pile recipe" if s.textset == "pile" else f"text set {s.textset!r}"
        rows.append(
            Deviation(
                "texts",
                f"{n_paper} Pile chunks (B̄ = {paper.TEXT_SET['mean_bytes']})",
                f"the first {s.n_texts} texts of {source}",
                "extraction cost is linear in N",
                EVERY,
            )
        )
    if s.profile != "pythia":
        rows += _suite_rows(s)
    else:
        rows += _rehearsal_rows(s) if rehearsal else []
        rows += _pythia_rows(s)
    if s.n_boot != 100:
        rows.append(
            Deviation(
                "bootstrap",
                "100 resamples over texts (companion paper)",
                f"{s.n_boot} resamples",
                "run time",
                EVERY,
            )
        )
    if s.pair_seed != 0:
        rows.append(
            Deviation(
                "pair draws",
                "random.Random(0) per type",
                f"seed {s.pair_seed}",
                "a parameter of this run",
                ("finetuning", "scale"),
            )
        )
    if not s.preprocess:
        rows.append(
            Deviation(
                "preprocessing",
                "clip at 2 %, drop 3 % of texts, per group",
                "off (raw log-likelihoods)",
                "a parameter of this run",
                PRETRAINING,
            )
        )
    rows.append(
        Deviation(
            "numerical floor",
            "not measured",
            "same model, other dtype / batch size / BOS policy",
            "shows which small KLs stand above pipeline noise",
            ("floor", "scale"),
        )
    )
    return rows


def chapter_table(s: Settings, chapter: str) -> pd.DataFrame:
    """The deviations that concern one chapter: ``topic``, ``paper``, ``ours``, ``why``."""
    rows = [d.record(chapter) for d in deviations(s) if chapter in d.chapters]
    return pd.DataFrame(rows, columns=["chapter", "topic", "paper", "ours", "why"]).drop(
        columns="chapter"
    )


def page(profiles: tuple[str, ...] = ("tiny", "smoke", "pythia", "rehearsal")) -> str:
    """A Markdown page: for each profile (at its default parameters), every deviation.

    ``rehearsal`` is ``params/rehearsal.yaml``: the pythia profile on the rehearsal hub.
    """
    import yaml

    from kltools.paths import project_root

    out = [
        "# How this book differs from the paper",
        "",
        "Generated from the code (`kltools.deviations`): every way each profile of the book "
        "differs from the paper, with the chapters it concerns.",
        "",
    ]
    for name in profiles:
        doc = yaml.safe_load((project_root() / "params" / f"{name}.yaml").read_text())
        merged = dict(doc.get("common", {}))
        for chapter in doc.get("chapters", {}).values():
            merged.update(chapter or {})
        s = Settings.from_parameters(merged)
        title = (
            f"## Profile `{name}`"
            if name != "rehearsal"
            else "## Rehearsal of `pythia` (`params/rehearsal.yaml`, the rehearsal hub)"
        )
        out += [
            title,
            "",
            "| topic | paper | ours | why | chapters |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {d.topic} | {d.paper} | {d.ours} | {d.why} | {', '.join(d.chapters)} |"
            for d in deviations(s, rehearsal=name == "rehearsal")
        ]
        out.append("")
    return "\n".join(out)
