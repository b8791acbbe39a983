"""Fine-tuned children of suite models: full fine-tuning and LoRA (merged), per domain.

A child starts from its parent's weights (a run's final checkpoint, or another child for a
second generation) and trains on the profile's fine-tuning pool of one domain (training
documents never used in pretraining), with the pretraining optimizer and a short warm-up +
cosine schedule. LoRA (``peft``) adapts every Linear of the transformer blocks
(``query_key_value``, ``dense``, ``dense_h_to_4h``, ``dense_4h_to_h``), rank ``lora_rank``,
alpha = 2 × rank, and is merged into the weights before saving, so every child is a plain
Hugging Face folder. ``lineage.json`` beside the weights records parent, method, domain, steps,
learning rate, seed and the held-out loss of parent and child.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kltools.suite.profiles import Profile, Unit, unit_digest
from kltools.suite.train import (
    heldout_loss,
    lr_at,
    make_optimizer,
    save_model_dir,
    setup_torch,
)

LORA_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


def model_path(root: Path, name: str) -> Path:
    """Folder of a suite model by name: a variant folder, or a run's final checkpoint."""
    folder = root / name
    if (folder / "config.json").is_file():
        return folder
    info = json.loads((folder / "run.json").read_text())
    return folder / f"step{info['final_step']}"


def finetune(unit: Unit, profile: Profile, root: Path, position: int = 0) -> dict[str, Any]:
    """Fine-tune ``unit.params['parent']`` and save the child as ``root/<unit.name>``.

    Parameters
    ----------
    unit : Unit
        A ``finetune`` unit of :func:`kltools.suite.profiles.plan`.
    profile : Profile
        Its profile.
    root : Path
        ``suite_root(profile)``, with the parent already built.
    position : int
        tqdm bar position.

    Returns
    -------
    dict
        The lineage record (also written to ``lineage.json``).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    setup_torch(1)
    p = unit.params
    parent_dir = model_path(root, p["parent"])
    seed = int(p["ft_seed"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(parent_dir), dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    heldout = np.load(root / "data" / "heldout.npy")
    loss_parent = heldout_loss(model, heldout)
    windows = np.load(root / "data" / f"ft-{p['domain']}.npy")
    order = np.random.default_rng(seed).permutation(len(windows))
    lora_info = None
    if p["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=profile.lora_rank,
            lora_alpha=2 * profile.lora_rank,
            lora_dropout=0.0,
            bias="none",
            target_modules=list(LORA_TARGETS),
        )
        model = get_peft_model(model, cfg)
        lora_info = {
            "rank": profile.lora_rank,
            "alpha": 2 * profile.lora_rank,
            "targets": list(LORA_TARGETS),
        }
    params = [q for q in model.parameters() if q.requires_grad]
    opt = make_optimizer(params, p["lr"])
    warmup = max(1, p["steps"] // 8)
    model.train()
    bs = profile.batch_size
    for t in tqdm(range(p["steps"]), desc=unit.name, position=position, leave=False):
        lr = lr_at(t, p["lr"], warmup, p["steps"], 0.1)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = order[(t * bs) % len(order) : (t * bs) % len(order) + bs]
        x = torch.from_numpy(windows[idx].astype(np.int64))
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if p["method"] == "lora":
        model = model.merge_and_unload()
    loss_child = heldout_loss(model, heldout)
    lineage = {
        "name": unit.name,
        "digest": unit_digest(unit, profile),
        "parent": p["parent"],
        "parent_path": str(parent_dir.relative_to(root)),
        "generation": p["generation"],
        "method": p["method"],
        "domain": p["domain"],
        "steps": p["steps"],
        "lr": p["lr"],
        "warmup_steps": warmup,
        "schedule": "linear warm-up, cosine decay to 0.1 x lr",
        "seed": seed,
        "batch_size": bs,
        "seq_len": profile.seq_len,
        "lora": lora_info,
        "heldout_loss_parent": loss_parent,
        "heldout_loss_child": loss_child,
    }
    digest = save_model_dir(model, root / "tokenizer", root / unit.name, {"lineage.json": lineage})
    return {**lineage, "sha256": digest}
