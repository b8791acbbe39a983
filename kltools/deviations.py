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

#: the paper's model sets (the authors' metadata, :mod:`kltools.metadata`)
PAPER_QUANT = (
    "the first 50 models of the authors' model_list.json; bitsandbytes LLM.int8() and fp4 "
    "(float16 compute)"
)
PAPER_FT = (
    "every typed single-parent edge of the authors' sibling_info.json within model_list.json: "
    "66 (mistral 25, llama-3 20, others 11, gemma 5, falcon 2, deepseek 2, llama-2 1)"
)
PAPER_LAYERS = (
    "the first 50 models of the authors' model_list.json, every adjacent pair of hidden states "
    "(v1 Table 3 prints Llama-2-7b and Llama-3-8B)"
)

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
            PAPER_QUANT,
            f"{', '.join(p.quant_bases)} with {', '.join(p.quant_schemes)}, stored "
            "pre-quantized, 4-bit compute dtype float32 (CPU); other schemes each under their "
            "own label",
            "the suite's models; 4-bit bitsandbytes on CPU needs widths divisible by 64",
            ("quantization", "floor", "scale"),
        ),
        Deviation(
            "fine-tuned models",
            PAPER_FT,
            f"children of {', '.join(p.ft_parents)} on {', '.join(p.ft_domains)} "
            f"({', '.join(p.ft_methods)}), one second generation",
            "offline: the suite fine-tunes its own models",
            ("finetuning", "scale"),
        ),
        Deviation(
            "layer models",
            PAPER_LAYERS,
            "the final checkpoint of every suite run",
            "offline",
            ("layers", "scale"),
        ),
    ]


def _pythia_rows(s: Settings) -> list[Deviation]:
    """Where a run of the ``pythia`` profile departs from the paper's own setting."""
    from kltools import metadata
    from kltools.sources.pythia import hub_models, layer_models, pythia_steps

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
    rows.append(
        Deviation(
            "weight dtype and log-softmax",
            "float16 weights on CUDA; log-softmax in the logits' dtype (float16, unless the model "
            "class casts its logits to float32)",
            f"{s.dtype} weights on {s.device}; log-softmax in float32 always",
            "a float16 log-softmax over a full vocabulary loses precision; float32 removes that "
            "error from every setting",
            EVERY,
        )
    )
    rows.append(
        Deviation(
            "batch size and padding",
            "one text at a time (batch 1, no padding)",
            f"batches of {s.batch_size} texts sorted by length, right-padded with an attention "
            "mask",
            "throughput; the floor chapter measures what batch size changes (batch1, batch64)",
            EVERY,
        )
    )
    rows.append(
        Deviation(
            "quantization baseline",
            "each model's full-precision vector from the earlier paper (Oyama et al., 2025): "
            "another extraction run, another pipeline",
            "the full-precision vector extracted here, in the same run as its quantized copies",
            "a quantized copy then differs from its baseline by quantization alone; the floor "
            "chapter measures what a pipeline change alone adds",
            ("quantization", "floor", "scale"),
        )
    )
    compute = "float16" if s.device == "cuda" else "float32"
    quant = hub_models(s)
    if quant != metadata.quantization_models() or compute != "float16":
        rows.append(
            Deviation(
                "quantized models",
                PAPER_QUANT,
                f"{_models(quant)} with "
                f"{', '.join(s.quant_schemes or ('bnb-int8', 'bnb-fp4', 'bnb-nf4'))} at load "
                f"time, 4-bit compute dtype {compute}; nf4 under its own label",
                _why_subset(quant, metadata.quantization_models()),
                ("quantization", "floor", "scale"),
            )
        )
    rows.append(
        Deviation(
            "fine-tuning edge source",
            "parents collected by the authors from hub metadata (base_models / card base_model) "
            "at the time of their run",
            "the parents the authors released (sibling_info.json of shimo-lab/modelmap at "
            f"{metadata.COMMIT[:7]}), not re-read from today's model cards",
            "model cards change; the released file is the paper's set",
            ("finetuning", "scale"),
        )
    )
    if s.lineages_file:
        from kltools.sources.pythia import load_lineages_json

        table = load_lineages_json(s.lineages_file)
        edges = table[table.parent.notna()]
        counts = ", ".join(f"{t} {n}" for t, n in edges.type.value_counts().items())
        rows.append(
            Deviation(
                "fine-tuned models",
                PAPER_FT,
                f"{len(edges)} edges of {s.lineages_file} ({counts})",
                "a parameter of this run (`lineages_file`)",
                ("finetuning", "scale"),
            )
        )
    layers = list(layer_models(s).values())
    if layers != metadata.layer_models():
        rows.append(
            Deviation(
                "layer models",
                PAPER_LAYERS,
                _models(layers),
                _why_subset(layers, metadata.layer_models()),
                ("layers", "scale"),
            )
        )
    return rows


def _models(ids: list[str]) -> str:
    """``n models: a, b, …`` (ids shortened to their last part)."""
    return f"{len(ids)} models: " + ", ".join(m.split("/")[-1] for m in ids)


def _why_subset(ours: list[str], paper: list[str]) -> str:
    """Why a run's model list differs from the paper's."""
    if set(ours) <= set(paper):
        return f"a parameter of this run: {len(ours)} of the paper's {len(paper)}"
    return "a parameter of this run"


def _rehearsal_rows(s: Settings) -> list[Deviation]:
    """The rehearsal's stand-ins (:mod:`kltools.rehearsal`): the hub path on small models."""
    from kltools.rehearsal import plan as P

    shapes = ", ".join(f"{k}: width {h}, {n} blocks" for k, (h, n, _) in P.PYTHIA_SHAPES.items())
    return [
        Deviation(
            "models (rehearsal)",
            "the real hub models: Pythia 410M–6.9B, PolyPythia, and the 1–13B models of the "
            "authors' metadata",
            "the rehearsal hub: small models of the same architecture classes under the real "
            f"repository ids and revisions ({shapes}; hub roots width 64), trained here for "
            f"{P.TOTAL_UPDATES} updates (Pythia step S ≥ 1000 = update {P.update_of_step(1000) - 1} + "
            "S/1000; the steps 1 … 512 = updates 1 … 10)",
            "rehearses the hub code path offline on a CPU; its numbers test the pipeline, "
            "not the paper's claims",
            EVERY,
        ),
        Deviation(
            "model sets (rehearsal)",
            "quantization and layers: the first 50 of model_list.json; fine-tuning: its 66 typed "
            "single-parent edges",
            "subsets under the real hub ids (params/rehearsal.yaml): at least one model of each "
            "architecture class the rehearsal builds (Llama, Mistral, Qwen2, GPT-NeoX) for "
            "quantization and layers; for fine-tuning, at least two edges of every type with two "
            "or more whose architecture it builds (mistral, llama-3, others, deepseek), and "
            "llama-2's one edge; no gemma or falcon edges (it builds no Gemma or Falcon)",
            "a CPU rehearsal trains every model it holds; the full sets would take hours "
            f"(the hub holds {len(P.hub_models())} such models)",
            ("quantization", "floor", "finetuning", "layers", "scale"),
        ),
        Deviation(
            "texts (rehearsal)",
            "the Pile (monology/pile-uncopyrighted)",
            "the paper's Pile recipe applied to held-out documents of the suite corpus",
            "offline: no Pile download",
            EVERY,
        ),
    ]


def _released_rows(s: Settings) -> list[Deviation]:
    """What the ``released`` profile (the authors' vectors, imported) cannot do here."""
    return [
        Deviation(
            "models",
            "the models themselves, run by the authors",
            "their published log-likelihood vectors (kl-scale/data of shimo-lab/modelmap), "
            "imported; no model is run",
            "the paper's own numbers on a CPU, without a GPU or the hub",
            EVERY,
        ),
        Deviation(
            "stored precision",
            "the authors' vectors as published (the earlier paper's matrix may be float64)",
            "every vector stored as float32 (the book's store format), arithmetic in float64",
            "one store format for every profile; the rounding moves a quantization KL by about "
            "1e-5 of its value (tested)",
            ("quantization", "finetuning", "scale"),
        ),
        Deviation(
            "what needs the models",
            "Monte-Carlo sampling is not in the paper; the floor is not measured",
            "not tested here: the Monte-Carlo check of the estimator and the numerical floor "
            "need the models (the pythia profile runs them)",
            "published vectors cannot be re-extracted or sampled from",
            ("method", "floor", "scale"),
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
    stand-in models and texts are listed too. The rows that depend on where the models come
    from are the source's (``deviation_rows`` of :mod:`kltools.sources`).
    """
    from kltools import paper
    from kltools.sources import can, source

    src = source(s.profile)
    rows: list[Deviation] = []
    n_paper = paper.TEXT_SET["n_texts"]
    if s.n_texts != n_paper or not src.uses_paper_texts(s):
        what = "the Pile recipe" if s.textset == "pile" else f"text set {s.textset!r}"
        rows.append(
            Deviation(
                "texts",
                f"{n_paper} Pile chunks (B̄ = {paper.TEXT_SET['mean_bytes']})",
                f"the first {s.n_texts} texts of {what}",
                "extraction cost is linear in N",
                EVERY,
            )
        )
    rows += src.deviation_rows(s, rehearsal=rehearsal)
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
    if can(s, "models"):
        rows.append(
            Deviation(
                "numerical floor",
                "not measured (the quantized vectors are compared with another run's)",
                "the same model re-extracted with another batch size and padding (the floor); "
                "bfloat16 and float16 as perturbations beside 8-bit; the BOS policy compared",
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


def page(profiles: tuple[str, ...] | None = None) -> str:
    """A Markdown page: for each profile (at its default parameters), every deviation.

    Default: every profile of :data:`kltools.sources.PROFILES`, then the rehearsal.

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
    from kltools.sources import PROFILES

    for name in profiles or (*PROFILES, "rehearsal"):
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
