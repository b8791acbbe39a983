"""Training the rehearsal's models: tokenizers, token pools, Pythia runs, hub roots, children.

Everything reuses the offline suite's pieces: the committed corpus and its held-out split
(:mod:`kltools.suite.corpus`), the byte-level BPE trainer (:mod:`kltools.suite.tokenizer`),
Pythia's optimizer and schedule (:func:`kltools.suite.train.make_optimizer`,
:func:`kltools.suite.train.lr_at`) and the GPT-NeoX builder
(:func:`kltools.suite.train.build_model`). Each job writes plain Hugging Face model folders,
one per revision, into a staging folder; :mod:`kltools.rehearsal.builder` then lays them out
as a hub cache.

A model folder holds what a hub snapshot holds: ``config.json``, ``generation_config.json``,
``model.safetensors`` (in the real model's storage dtype: float16 for Pythia, GPT-NeoX and
Llama-2, bfloat16 for Llama-3, Mistral and Qwen2), the tokenizer files,
``README.md`` (the model card; children name their parent in ``base_model``) and
``.gitattributes``.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kltools.rehearsal import plan as P

GITATTRIBUTES = (
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
)

#: a family's stored dtype; Pythia checkpoints are float16 on the hub
STORED_DTYPE = {"neox": "float16", **{f: a[1] for f, a in P.ARCHITECTURES.items()}}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads and deterministic algorithms; restore both afterwards."""
    import torch

    old_n, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(n)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_n)
        torch.use_deterministic_algorithms(old_det)


# ------------------------------------------------------------------------------ data


def corpus_split() -> tuple[list[Any], list[Any]]:
    """(training documents shuffled with ``random.Random(0)``, held-out documents)."""
    from kltools.suite.corpus import load_split

    train, heldout = load_split()
    train = list(train)
    random.Random(0).shuffle(train)
    return train, list(heldout)


def train_family_tokenizer(family: str, docs: list[Any], out: Path, n_bytes: int) -> Path:
    """A byte-level BPE for one family, trained on its own sample of the training documents.

    ``neox`` is the suite's tokenizer (:func:`kltools.suite.tokenizer.train_tokenizer`: no BOS
    added, ``<|endoftext|>`` as BOS/EOS/UNK). The others get their family's special tokens
    and, where the real tokenizer adds a BOS (Llama-2, Llama-3, Mistral), a template that
    adds it, so the BOS policies of :mod:`kltools.extraction` meet the real behaviour.
    """
    spec = P.TOKENIZERS[family]
    sample = list(docs)
    random.Random(f"tokenizer:{family}").shuffle(sample)
    texts, total = [], 0
    for d in sample:
        if total >= n_bytes:
            break
        texts.append(d.text)
        total += len(d.text.encode("utf-8"))
    if family == "neox":
        from kltools.suite.tokenizer import train_tokenizer

        return train_tokenizer(texts, spec["vocab"], out)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in (spec.get("unk"), spec["bos"], spec["eos"]) if t]
    specials = list(dict.fromkeys(specials))
    tok = Tokenizer(models.BPE(unk_token=spec.get("unk")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["vocab"],
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if spec["add_bos"]:
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        unk_token=spec.get("unk") or spec["eos"],
        model_max_length=None,
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


def token_windows(tokenizer: Any, docs: list[Any], n_windows: int, seq_len: int) -> np.ndarray:
    """The first ``n_windows`` windows of ``seq_len`` tokens of the documents, each + EOS."""
    eos = tokenizer.eos_token_id
    need = n_windows * seq_len
    stream: list[int] = []
    for i in range(0, len(docs), 32):
        batch = [d.text for d in docs[i : i + 32]]
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            stream += [*ids, eos]
        if len(stream) >= need:
            break
    if len(stream) < need:
        from kltools.errors import KLToolsError

        raise KLToolsError(f"the suite corpus has {len(stream)} of {need} tokens for a pool")
    return np.asarray(stream[:need], dtype=np.int64).reshape(n_windows, seq_len)


# ------------------------------------------------------------------------------ models


def model_card(repo: str, *, parent: str | None, note: str) -> str:
    """A model card: YAML front matter (``base_model`` for children) and one paragraph."""
    meta = ["---", "library_name: transformers", "license: mit", "tags:", "- kltools-rehearsal"]
    if parent:
        meta.append(f"base_model: {parent}")
    meta.append("---")
    body = (
        f"# {repo} (rehearsal stand-in)\n\nNot the real `{repo}`: a small model of the same "
        f"architecture class written by `kltools rehearsal build` so that the hub code path "
        f"of kltools can run offline. {note}\n"
    )
    return "\n".join(meta) + "\n\n" + body


def save_folder(
    model: Any, tokenizer_dir: Path, dest: Path, dtype: str, card: str, extra: dict | None = None
) -> None:
    """Save a copy of ``model`` in ``dtype`` with the tokenizer, card and ``.gitattributes``."""
    import torch

    tmp = dest.parent / f".tmp-{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    copy.deepcopy(model).to(getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
    for f in sorted(tokenizer_dir.iterdir()):
        if f.is_file():
            shutil.copy2(f, tmp / f.name)
    (tmp / "README.md").write_text(card)
    (tmp / ".gitattributes").write_text(GITATTRIBUTES)
    for name, content in (extra or {}).items():
        (tmp / name).write_text(json.dumps(content, indent=1, sort_keys=True))
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)


def mean_loss(model: Any, windows: np.ndarray) -> float:
    """Mean next-token cross-entropy (nats/token) on held-out windows."""
    from kltools.suite.train import heldout_loss

    return float(heldout_loss(model, windows, batch=2))


def train_loop(
    model: Any,
    windows: np.ndarray,
    *,
    updates: int,
    lr: float,
    warmup: int,
    seed: int,
    on_update: Callable[[int], None] | None = None,
) -> None:
    """Pythia's optimizer and schedule for ``updates`` updates; ``on_update(t)`` after each.

    The seed fixes the order of the windows (``numpy.random.default_rng(seed)``), as in
    PolyPythia; the caller seeds the initialisation.
    """
    import torch

    from kltools.suite.train import lr_at, make_optimizer

    bs = P.TRAIN["batch_size"]
    order = np.random.default_rng(seed).permutation(len(windows))
    opt = make_optimizer(model.parameters(), lr)
    model.train()
    for t in range(updates):
        rate = lr_at(t, lr, warmup, updates, P.TRAIN["final_lr_ratio"])
        for group in opt.param_groups:
            group["lr"] = rate
        start = (t * bs) % len(order)
        x = torch.from_numpy(windows[order[start : start + bs]])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if on_update is not None:
            on_update(t + 1)
    model.eval()


def train_pythia_run(run: P.RunPlan, work: str, out: str) -> dict[str, Any]:
    """Train one Pythia run and save its checkpoints as ``<out>/<revision>/`` folders.

    Step ``S`` of :attr:`run.steps` is saved after :func:`~kltools.rehearsal.plan.update_of_step`
    updates; ``step143000`` (also ``main``) after the last one.
    """
    from kltools.suite.train import build_model

    work_dir, out_dir = Path(work), Path(out)
    windows = np.load(work_dir / "data" / "neox-pretrain.npy")
    heldout = np.load(work_dir / "data" / "neox-heldout.npy")
    tok_dir = work_dir / "tokenizers" / "neox"
    model = build_model(run.config, 1234 + run.seed)
    steps = sorted(set(run.steps) | {P.PYTHIA_FINAL_STEP})
    at = {P.update_of_step(s): s for s in steps}
    note = (
        f"Pythia step S is update update_of_step(S) of a {P.TOTAL_UPDATES}-update run "
        f"(kltools.rehearsal.plan); this is seed {run.seed} of the {run.size} shape."
    )
    card = model_card(run.repo, parent=None, note=note)
    losses: dict[str, float] = {}

    def save(update: int) -> None:
        step = at[update]
        losses[f"step{step}"] = mean_loss(model, heldout)
        save_folder(model, tok_dir, out_dir / f"step{step}", STORED_DTYPE["neox"], card)

    if 0 in at:
        model.eval()
        save(0)
    train_loop(
        model,
        windows,
        updates=P.TOTAL_UPDATES,
        lr=P.TRAIN["pythia_lr"],
        warmup=P.WARMUP_UPDATES,
        seed=run.seed,
        on_update=lambda t: save(t) if t in at else None,
    )
    return {"repo": run.repo, "heldout_loss": losses}


def build_hub_config(family: str, vocab: int, tokenizer: Any) -> Any:
    """The transformers config of a family root (its real architecture class, scaled down),
    with the special token ids of its tokenizer."""
    import transformers

    cls_name, _, fields = P.ARCHITECTURES[family]
    return getattr(transformers, cls_name)(
        vocab_size=vocab,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
        **fields,
    )


def train_hub_model(hub: P.HubPlan, work: str, out: str) -> dict[str, Any]:
    """Train a family root from scratch, or fine-tune a child from its parent's saved weights.

    Saves ``<out>/main/``. A child reads its parent from ``<out>/../<parent folder>/main``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kltools.rehearsal.hubcache import repo_folder

    work_dir, out_dir = Path(work), Path(out)
    tok_dir = work_dir / "tokenizers" / hub.family
    heldout = np.load(work_dir / "data" / f"{hub.family}-heldout.npy")
    torch.manual_seed(hub.seed)
    if hub.parent is None:
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        config = build_hub_config(hub.family, P.padded_vocab(len(tok)), tok)
        model = AutoModelForCausalLM.from_config(config)
        model = model.float()
        windows = np.load(work_dir / "data" / f"{hub.family}-pretrain.npy")
        updates, lr = P.TRAIN["root_updates"], P.TRAIN["root_lr"]
        note = f"Pretrained here for {updates} updates on the suite corpus."
    else:
        parent_dir = repo_folder(out_dir.parent, hub.parent) / "main"
        model = AutoModelForCausalLM.from_pretrained(str(parent_dir), dtype=torch.float32)
        windows = np.load(work_dir / "data" / f"{hub.family}-ft-{hub.domain}.npy")
        updates, lr = P.TRAIN["ft_updates"], P.TRAIN["ft_lr"]
        note = (
            f"Fine-tuned from the rehearsal's `{hub.parent}` for {updates} updates on {hub.domain}."
        )
    model.config._attn_implementation = "sdpa"
    train_loop(model, windows, updates=updates, lr=lr, warmup=max(1, updates // 8), seed=hub.seed)
    loss = mean_loss(model, heldout)
    card = model_card(hub.repo, parent=hub.parent, note=note)
    save_folder(model, tok_dir, out_dir / "main", P.ARCHITECTURES[hub.family][1], card)
    return {"repo": hub.repo, "heldout_loss": {"main": loss}}
