"""What the rehearsal hub holds: repositories, revisions, architectures, the step map.

The rehearsal stands in for the Hugging Face hub of the ``pythia`` profile. Every repository
id and revision is the real one (``EleutherAI/pythia-410m`` at ``step1000``,
``meta-llama/Llama-2-7b-hf`` at ``main`` …); the weights are small models of the same
architecture class, trained here for a few hundred updates. Nothing here imports torch.

Pretraining runs
    ``EleutherAI/pythia-{410m,1b,1.4b,2.8b,6.9b}`` and ``EleutherAI/pythia-410m-seed{1..9}``
    (seeds 3 and 4 included, so the profile's exclusion of them is exercised). Each holds the
    revisions of :func:`rehearsal_steps` plus ``step143000`` and ``main`` (the same commit, as
    the final checkpoint on the hub). ``pythia-1b`` has no ``step116000`` (the paper's
    exclusion; the rehearsal hub lacks it, so asking for it fails like a missing revision).
    Pythia step ``S`` is update :func:`update_of_step` ``(S)`` of a tiny GPT-NeoX run whose
    warm-up and cosine schedule are Pythia's, scaled: 1 % warm-up, decay to 10 %.

Hub models
    A subset of the paper's sets (:mod:`kltools.metadata`), named in ``params/rehearsal.yaml``:
    its quantization and layer models (``hub_models``, ``layer_models``: some of the first 50
    of the authors' ``model_list.json``, one or more of each architecture class the rehearsal
    builds) and its fine-tuning lineages (``lineages_file``, ``kltools/data/lineages.json``:
    some of the paper's typed single-parent edges, every type with at least two edges whose
    architecture the rehearsal builds). Each root (a model without a parent here) is a
    scaled-down model of its real architecture class (:data:`ROOT_FAMILIES`) with its family's
    tokenizer; each fine-tuned child starts from its parent's weights, is fine-tuned briefly
    on one corpus domain, and names its parent in the model card's ``base_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError

#: Pythia sizes of the paper (``EleutherAI/pythia-<size>``)
PYTHIA_SIZES: tuple[str, ...] = ("410m", "1b", "1.4b", "2.8b", "6.9b")
#: every PolyPythia seed on the hub (the profile uses 1, 2, 5-9; 3 and 4 are held too)
PYTHIA_SEEDS: tuple[int, ...] = tuple(range(1, 10))
#: the final Pythia step (``main`` points at the same commit)
PYTHIA_FINAL_STEP = 143000
#: (repo, step) revisions the real hub lacks and the rehearsal leaves out
MISSING_REVISIONS: frozenset[tuple[str, int]] = frozenset({("EleutherAI/pythia-1b", 116000)})

#: scaled-down GPT-NeoX shapes (hidden, layers, heads) standing in for each Pythia size;
#: widths are multiples of 64 so bitsandbytes 4-bit runs on the CPU
PYTHIA_SHAPES: dict[str, tuple[int, int, int]] = {
    "410m": (64, 2, 4),
    "1b": (128, 2, 4),
    "1.4b": (128, 3, 4),
    "2.8b": (192, 3, 6),
    "6.9b": (192, 4, 6),
}

#: tokenizer families: (vocabulary, BOS added by the tokenizer, bos, eos, unk, training seed)
TOKENIZERS: dict[str, dict[str, Any]] = {
    "neox": {"vocab": 1000, "add_bos": False, "bos": "<|endoftext|>", "eos": "<|endoftext|>"},
    "llama-2": {"vocab": 1100, "add_bos": True, "bos": "<s>", "eos": "</s>", "unk": "<unk>"},
    "llama-3": {
        "vocab": 1280,
        "add_bos": True,
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",
    },
    "mistral": {"vocab": 1050, "add_bos": True, "bos": "<s>", "eos": "</s>", "unk": "<unk>"},
    "qwen2": {"vocab": 1150, "add_bos": False, "bos": None, "eos": "<|endoftext|>"},
}

#: architecture class per root family: (config class, stored dtype, config fields)
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama-2": (
        "LlamaConfig",
        "float16",
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 4096,
         "rms_norm_eps": 1e-5, "tie_word_embeddings": False},
    ),
    "llama-3": (
        "LlamaConfig",
        "bfloat16",
        {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 8192,
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False},
    ),
    "mistral": (
        "MistralConfig",
        "bfloat16",
        {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
         "sliding_window": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False},
    ),
    "qwen2": (
        "Qwen2Config",
        "bfloat16",
        {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
         "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False},
    ),
    "neox": (
        "GPTNeoXConfig",
        "float16",
        {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 2048, "rotary_pct": 0.25,
         "rotary_emb_base": 10000, "use_parallel_residual": True, "hidden_act": "gelu",
         "layer_norm_eps": 1e-5, "tie_word_embeddings": False},
    ),
}  # fmt: skip

#: the family (architecture class and tokenizer of :data:`ARCHITECTURES`) of every hub model
#: the rehearsal may build from scratch: the roots of the rehearsal's subset of the paper's sets
ROOT_FAMILIES: dict[str, str] = {
    "mistralai/Mistral-7B-v0.1": "mistral",
    "meta-llama/Llama-2-7b-hf": "llama-2",
    "meta-llama/Llama-2-13b-hf": "llama-2",
    "upstage/SOLAR-10.7B-v1.0": "llama-2",  # a Llama with the Llama-2 tokenizer
    "meta-llama/Meta-Llama-3-8B": "llama-3",
    "deepseek-ai/DeepSeek-Prover-V1.5-Base": "llama-3",  # a Llama (bfloat16, adds a BOS)
    "Qwen/Qwen2-1.5B": "qwen2",
    "OpenAssistant/oasst-sft-4-pythia-12b-epoch-3.5": "neox",  # a GPT-NeoX (Pythia 12B)
}
#: the smoke rehearsal's hub models: Llama-2-7b and Llama-2-13b with their paper children
SMOKE_HUB: tuple[str, ...] = (
    "meta-llama/Llama-2-7b-hf",
    "rinna/youri-7b",
    "meta-llama/Llama-2-13b-hf",
    "haoranxu/ALMA-13B-Pretrain",
)

#: corpus domains the children are fine-tuned on, in turn
FT_DOMAINS: tuple[str, ...] = ("prose", "docs", "code")

#: training constants: pretraining (Pythia runs and hub roots) and fine-tuning
TRAIN = {
    "seq_len": 256,
    "batch_size": 2,
    "pythia_lr": 3e-3,
    "root_updates": 80,
    "root_lr": 3e-3,
    "ft_updates": 12,
    "ft_lr": 1e-3,
    "final_lr_ratio": 0.1,
}


def pythia_step_grid() -> tuple[int, ...]:
    """The paper's 154 Pythia steps: 0, 1, 2, 4, …, 512, then 1000 … 143000 every 1000."""
    return tuple([0] + [2**k for k in range(10)] + list(range(1000, PYTHIA_FINAL_STEP + 1, 1000)))


def rehearsal_steps(smoke: bool = False) -> tuple[int, ...]:
    """The Pythia steps the rehearsal holds (besides ``step143000``/``main``).

    Full: the 11 log-spaced steps 0 … 512, 1000 … 12000 (the warm-up boundary at 2000, the
    Early window and diffusion windows from 1000) and 110000 … 120000 (the Later window, and
    115000 … 117000 around ``pythia-1b``'s missing ``step116000``): 34 steps. Smoke: 0, 1, 2,
    512, 1000 … 4000 and 115000 … 117000.
    """
    if smoke:
        return (0, 1, 2, 512, 1000, 2000, 3000, 4000, 115000, 116000, 117000)
    log = [0] + [2**k for k in range(10)]
    return tuple(log + list(range(1000, 12001, 1000)) + list(range(110000, 120001, 1000)))


def book_steps() -> tuple[int, ...]:
    """The steps ``params/rehearsal.yaml`` extracts: 24 of the hub's 34, for a CPU.

    The 11 log-spaced steps, 1000 … 6000 (the warm-up boundary at 2000, four Early pairs,
    diffusion windows from 1000) and 114000 … 120000 (the Later pairs, and ``pythia-1b``'s
    missing ``step116000`` bridged by its neighbours).
    """
    log = [0] + [2**k for k in range(10)]
    return tuple(log + list(range(1000, 6001, 1000)) + list(range(114000, 120001, 1000)))


def update_of_step(step: int) -> int:
    """The training update of the tiny run that stands for Pythia step ``step``.

    ``0 -> 0``; ``2**k -> k + 1`` (the log-spaced steps 1 … 512 become updates 1 … 10);
    ``1000 j -> 10 + j``. So Pythia's 143,000 steps are 153 updates, its 1 % warm-up
    (1,430 steps) :data:`WARMUP_UPDATES` updates, and every 1,000-step checkpoint is one update
    after the previous one.
    """
    if step == 0:
        return 0
    if step < 1000:
        k = step.bit_length() - 1
        if 2**k != step:
            raise KLToolsError(f"Pythia has no checkpoint step{step} below 1000 (only 2**k)")
        return k + 1
    if step % 1000:
        raise KLToolsError(f"Pythia has no checkpoint step{step} (1000-step spacing above 512)")
    return 10 + step // 1000


#: total updates of a rehearsal run (Pythia step 143000)
TOTAL_UPDATES = update_of_step(PYTHIA_FINAL_STEP)
#: warm-up updates (Pythia: 1 % of 143,000 steps = 1,430, between steps 1000 and 2000)
WARMUP_UPDATES = update_of_step(2000)


@dataclass(frozen=True)
class RunPlan:
    """One Pythia pretraining run of the rehearsal."""

    repo: str
    size: str
    seed: int
    steps: tuple[int, ...]
    config: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class HubPlan:
    """One hub model of the rehearsal (a family root or a fine-tuned child)."""

    repo: str
    family: str
    parent: str | None
    domain: str | None
    generation: int
    seed: int


def neox_config(size: str, vocab: int) -> dict[str, Any]:
    """GPT-NeoX config fields of a rehearsal Pythia size (Pythia layout, scaled down)."""
    from kltools.suite.profiles import pythia_shape

    hidden, layers, heads = PYTHIA_SHAPES[size]
    return pythia_shape(hidden, layers, heads, vocab=vocab)


def padded_vocab(n_tokens: int) -> int:
    """Embedding rows for a tokenizer of ``n_tokens``: rounded up to a multiple of 128 (as Pythia)."""
    return -(-n_tokens // 128) * 128


def pythia_runs(smoke: bool = False) -> list[RunPlan]:
    """The rehearsal's Pythia runs: every size (seed 0), then ``410m`` seeds 1 … 9.

    Smoke: the same runs (every run the profile reads, so the smoke rehearsal book runs every
    chapter) at the smoke steps; these models train in well under a second each.
    """
    steps = rehearsal_steps(smoke)
    sizes, seeds = PYTHIA_SIZES, PYTHIA_SEEDS
    vocab = padded_vocab(TOKENIZERS["neox"]["vocab"])
    runs = []
    for size in sizes:
        repo = f"EleutherAI/pythia-{size}"
        kept = tuple(s for s in steps if (repo, s) not in MISSING_REVISIONS)
        runs.append(RunPlan(repo, size, 0, kept, neox_config(size, vocab)))
    for seed in seeds:
        runs.append(
            RunPlan(f"EleutherAI/pythia-410m-seed{seed}", "410m", seed, steps,
                    neox_config("410m", vocab))
        )  # fmt: skip
    return runs


def _project_file(rel: str) -> Path:
    from kltools.paths import project_root

    return project_root() / rel


#: parameter keys that name hub models
MODEL_KEYS: tuple[str, ...] = ("hub_models", "floor_models", "layer_models")
#: the rehearsal's parameters (relative to the project root)
PARAMS = "params/rehearsal.yaml"


def _common_and_chapters(path: str | Path | None) -> tuple[Path, list[dict[str, Any]]]:
    import yaml

    p = Path(path) if path is not None else _project_file(PARAMS)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KLToolsError(f"cannot read the rehearsal parameters {p}: {exc}") from exc
    return p, [doc.get("common") or {}, *((doc.get("chapters") or {}).values())]


def params_models(path: str | Path | None = None) -> list[str]:
    """Every hub repository the model lists of ``params/rehearsal.yaml`` name (common or per
    chapter), in order of first mention."""
    _, sections = _common_and_chapters(path)
    repos: list[str] = []
    for section in sections:
        for key, value in (section or {}).items():
            if key in MODEL_KEYS and isinstance(value, list):
                repos += [str(v).split("@")[0] for v in value]
    return list(dict.fromkeys(repos))


def lineage_entries(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The fine-tuning lineages of ``params/rehearsal.yaml`` (its ``lineages_file``, read by
    :func:`kltools.sources.pythia.load_lineages_json`): model, parent, type."""
    from kltools.sources.pythia import load_lineages_json

    p, sections = _common_and_chapters(path)
    files = {str(sec["lineages_file"]) for sec in sections if sec and sec.get("lineages_file")}
    if len(files) != 1:
        raise KLToolsError(f"{p} must name one lineages_file (the rehearsal's edges), not {files}")
    table = load_lineages_json(files.pop())
    return [{"model": m, "parent": par if isinstance(par, str) else None, "type": t}
            for m, par, t in zip(table.model, table.parent, table.type)]  # fmt: skip


def hub_models(smoke: bool = False) -> list[HubPlan]:
    """The rehearsal's hub models, roots first, each child after its parent.

    Every repository that ``params/rehearsal.yaml`` names (its model lists and its lineages
    file) and that is no Pythia run: a root is built from scratch in its family of
    :data:`ROOT_FAMILIES` (one error naming the repositories without one), a child is
    fine-tuned from its parent. Smoke: :data:`SMOKE_HUB`.
    """
    held = {r.repo for r in pythia_runs()}
    entries = [e for e in lineage_entries() if e.get("parent") is not None]
    parent_of = {e["model"]: e["parent"] for e in entries}
    named = [r for r in params_models() if r not in held]
    wanted = list(dict.fromkeys([*named, *(x for e in entries for x in (e["parent"], e["model"]))]))
    roots = [r for r in wanted if r not in parent_of]
    unknown = [r for r in roots if r not in ROOT_FAMILIES]
    if unknown:
        raise KLToolsError(
            f"{PARAMS} names {unknown}, which the rehearsal can build neither as a fine-tuned "
            "child nor from scratch (kltools.rehearsal.plan.ROOT_FAMILIES)"
        )
    plans = [HubPlan(repo, ROOT_FAMILIES[repo], None, None, 0, 100 + i)
             for i, repo in enumerate(roots)]  # fmt: skip
    done = {p.repo: p for p in plans}
    pending = [r for r in wanted if r in parent_of]
    while pending:
        progressed = False
        for child in list(pending):
            parent = done.get(parent_of[child])
            if parent is None:
                continue
            i = len(done)
            plan = HubPlan(child, parent.family, parent.repo,
                           FT_DOMAINS[i % len(FT_DOMAINS)], parent.generation + 1, 100 + i)  # fmt: skip
            plans.append(plan)
            done[plan.repo] = plan
            pending.remove(child)
            progressed = True
        if not progressed:
            raise KLToolsError(f"lineages name parents outside the list: {pending}")
    if smoke:
        plans = [p for p in plans if p.repo in SMOKE_HUB]
    return plans
