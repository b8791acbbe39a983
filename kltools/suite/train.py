"""Pretraining runs of GPT-NeoX models (Pythia's architecture) on the suite's token pool.

One run = one size and one seed. The seed fixes both the initialisation
(``torch.manual_seed(seed)`` before the model is built) and the order of the training windows
(``numpy.random.default_rng(seed)``), as in PolyPythia. The schedule is Pythia's shape: AdamW
(betas 0.9/0.95, weight decay 0.01, gradient clipping 1.0), linear warm-up, cosine decay to
``final_lr_ratio`` of the peak. Checkpoint ``stepS`` holds the weights after ``S`` optimizer
updates (``step0`` is the initialisation).

Every checkpoint is written to a temporary folder and renamed into place, so a killed build
never leaves a folder that looks complete. ``run.json`` is written last and marks the run as
done; ``metrics.json`` holds the held-out loss per checkpoint and ``weight_distances.json``
the weight-space distances (:mod:`kltools.suite.weights`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from kltools.hashing import sha256_file
from kltools.suite.profiles import Profile, Unit, unit_digest


def setup_torch(threads: int = 1) -> None:
    """Deterministic single-process torch: fixed thread count, deterministic algorithms."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def lr_at(step: int, peak: float, warmup: int, total: int, final_ratio: float) -> float:
    """Learning rate of update ``step`` (0-based): linear warm-up, then cosine decay.

    Parameters
    ----------
    step : int
        0-based index of the optimizer update.
    peak : float
        Peak learning rate, reached at the end of the warm-up.
    warmup, total : int
        Warm-up length and total number of updates.
    final_ratio : float
        The rate decays to ``final_ratio * peak`` at the last update.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    return peak * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def heldout_loss(model, windows: np.ndarray, batch: int = 4) -> float:
    """Mean next-token cross-entropy (nats/token) of ``model`` on the held-out windows."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            x = torch.from_numpy(windows[i : i + batch].astype(np.int64))
            logits = model(input_ids=x).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += x[:, 1:].numel()
    model.train()
    return total / count


def save_model_dir(
    model, tokenizer_dir: Path, dest: Path, extra: dict[str, Any] | None = None
) -> str:
    """Save ``model`` + tokenizer as a Hugging Face folder at ``dest``, atomically.

    Writes into ``<dest.parent>/.tmp-<dest.name>`` and renames; an existing ``dest`` is
    replaced. ``extra`` maps file names to JSON content written alongside.

    Returns
    -------
    str
        sha256 of ``model.safetensors``.
    """
    tmp = dest.parent / f".tmp-{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for f in sorted(tokenizer_dir.iterdir()):
        shutil.copy2(f, tmp / f.name)
    for name, content in (extra or {}).items():
        (tmp / name).write_text(json.dumps(content, indent=1, sort_keys=True))
    digest = sha256_file(tmp / "model.safetensors")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return digest


def build_model(config: dict[str, Any], seed: int):
    """A freshly initialised ``GPTNeoXForCausalLM`` (fp32, SDPA attention) from ``seed``."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(**config)
    cfg._attn_implementation = "sdpa"
    return GPTNeoXForCausalLM(cfg)


def make_optimizer(params, lr: float):
    """Pythia's optimizer settings: AdamW, betas (0.9, 0.95), eps 1e-8, weight decay 0.01."""
    import torch

    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)


def train_run(unit: Unit, profile: Profile, root: Path, position: int = 0) -> dict[str, Any]:
    """Train one pretraining run and write its folder ``root/<unit.name>``.

    Parameters
    ----------
    unit : Unit
        A ``run`` unit of :func:`kltools.suite.profiles.plan`.
    profile : Profile
        Its profile.
    root : Path
        ``suite_root(profile)``; ``data/`` and ``tokenizer/`` must be prepared.
    position : int
        tqdm bar position.

    Returns
    -------
    dict
        The content written to ``run.json``.
    """
    import torch
    from tqdm.auto import tqdm

    from kltools.suite.weights import save_weight_distances, weight_distances

    setup_torch(1)
    p = unit.params
    run_dir = root / unit.name
    # An unfinished or outdated run restarts from step 0 (no optimizer state is kept), so clear
    # its folder: checkpoints of an earlier plan must never mix with this one's.
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    tok_dir = root / "tokenizer"
    windows = np.load(root / "data" / "pretrain.npy")
    heldout = np.load(root / "data" / "heldout.npy")
    seed = int(p["seed"])
    order = np.random.default_rng(seed).permutation(len(windows))
    model = build_model(p["config"], seed)
    opt = make_optimizer(model.parameters(), p["lr"])
    ckpts = set(p["steps"])
    hashes: dict[str, str] = {}
    metrics: dict[str, list] = {"step": [], "heldout_loss": [], "train_loss": [], "lr": []}
    recent: list[float] = []

    def checkpoint(step: int, lr: float) -> None:
        metrics["step"].append(step)
        metrics["heldout_loss"].append(heldout_loss(model, heldout))
        metrics["train_loss"].append(float(np.mean(recent)) if recent else None)
        metrics["lr"].append(lr)
        recent.clear()
        hashes[str(step)] = save_model_dir(model, tok_dir, run_dir / f"step{step}")

    checkpoint(0, 0.0)
    model.train()
    bs = profile.batch_size
    bar = tqdm(
        range(profile.total_steps), desc=unit.name, position=position, leave=False, mininterval=1.0
    )
    for t in bar:
        lr = lr_at(t, p["lr"], profile.warmup_steps, profile.total_steps, profile.final_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = order[(t * bs) % len(order) : (t * bs) % len(order) + bs]
        x = torch.from_numpy(windows[idx].astype(np.int64))
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        recent.append(loss.item())
        if t + 1 in ckpts:
            checkpoint(t + 1, lr)
            bar.set_postfix(heldout=f"{metrics['heldout_loss'][-1]:.3f}", refresh=False)
    bar.close()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    distances = weight_distances(run_dir, max_lag=10)
    save_weight_distances(distances, run_dir / "weight_distances.json")
    info = {
        "name": unit.name,
        "digest": unit_digest(unit, profile),
        "profile": profile.name,
        "size": p["size"],
        "seed": seed,
        "final_step": profile.total_steps,
        "steps": sorted(int(s) for s in hashes),
        "checkpoint_sha256": hashes,
        "weight_distances_sha256": sha256_file(run_dir / "weight_distances.json"),
        "metrics_sha256": sha256_file(run_dir / "metrics.json"),
        "config": p["config"],
        "n_params": p["n_params"],
        "n_nonembedding_params": p["n_nonembedding_params"],
        "lr": p["lr"],
        "schedule": {
            "warmup_steps": profile.warmup_steps,
            "total_steps": profile.total_steps,
            "final_lr_ratio": profile.final_lr_ratio,
            "decay": "cosine",
            "batch_size": profile.batch_size,
            "seq_len": profile.seq_len,
            "tokens_per_step": profile.batch_size * profile.seq_len,
        },
        "heldout_loss_first": metrics["heldout_loss"][0],
        "heldout_loss_final": metrics["heldout_loss"][-1],
    }
    tmp = run_dir / ".tmp-run.json"
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    os.replace(tmp, run_dir / "run.json")
    return info
