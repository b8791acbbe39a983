"""The CUDA checks: speed, memory bound and CPU agreement of kltools extraction on one GPU.

Usage::

    python benchmarks/gpu_check.py [--dry-run] [--texts N] [--json out.json]
    make gpu-check          # on a machine with one CUDA GPU (about 5-8 minutes)
    make gpu-check DRY=1    # the same code path on CPU with tiny shapes (seconds)

For random Pythia-160m-shaped (hidden 768, 12 layers, 12 heads) and Pythia-410m-shaped
(hidden 1024, 24 layers, 16 heads) models with Pythia's 50,304-row vocabulary (see
``benchlib``) and ~1,000-byte corpus texts, it prints:

- the GPU matmul roofline (fp32 / bf16) and, per method, tokens/s and its ratio to the
  paper's method (one text per forward, full-vocabulary fp32 log-softmax) on the GPU;
- the automatic batch (tokens per forward from free memory) and the log-softmax chunk, and
  the peak allocated CUDA memory of each method next to what one batch of full fp32 logits
  would take (the bound kltools avoids);
- agreement: per-text log-likelihood of fp32 on the GPU vs fp32 on the CPU (max |diff| in
  nats and KL in bits/byte), and KL(fp32 GPU, bf16 GPU) in bits/byte;
- the logit lens over all layers on the GPU (tokens/s).

Checks that fail print FAIL and make the exit status 1. ``--dry-run`` runs every line of the
same code on the CPU with tiny shapes and says so at the top and the bottom: its numbers say
nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

#: fp32 GPU vs fp32 CPU: largest per-text difference allowed, in nats (~400 tokens a text)
MAX_ABS_NATS = 1e-2
#: fp32 GPU vs fp32 CPU: largest KL allowed, bits/byte (the book's floor is far above)
MAX_KL_GPU_CPU = 1e-7


def _sync(dev: str) -> None:
    import torch

    if dev == "cuda":
        torch.cuda.synchronize()


def _reset_peak(dev: str) -> None:
    import torch

    if dev == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_bytes(dev: str) -> int:
    """Peak allocated CUDA memory since the last reset; on CPU (dry run) this process's RSS."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if dev == "cuda" else B.self_peak_rss()


def timed(dev: str, fn: Any, repeats: int) -> tuple[float, int, Any]:
    """Best wall seconds (synchronised), peak memory of the last run, last result."""
    best, out, peak = float("inf"), None, 0
    for _ in range(repeats):
        _reset_peak(dev)
        _sync(dev)
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
        peak = _peak_bytes(dev)
    return best, peak, out


def paper_method_on(model: Any, tokenizer: Any, texts: list[str], dev: str) -> list[float]:
    """The paper's method on a device: one text per forward, full fp32 log-softmax."""
    import torch

    out = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]], device=dev)
        with torch.inference_mode():
            logits = model(ids).logits[0, :-1]
            logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, 1:, None])
            out.append(logp.double().sum().item())
    return out


def check_shape(
    label: str, cfg: dict[str, Any], model_dir: Path, texts: Any, dev: str, repeats: int
) -> tuple[dict[str, float], list[str]]:
    """Speed, memory and agreement for one model shape; (numbers, failed checks)."""
    import numpy as np

    from kltools.extraction import auto_batch_tokens, logits_chunk_rows, score_texts
    from kltools.kl import kl_between
    from kltools.models import load_model

    res: dict[str, float] = {}
    fails: list[str] = []
    tlist = list(texts.texts)
    mb = texts.mean_bytes
    print(
        f"\n== {label}: hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
        f"{cfg['num_attention_heads']} heads, vocab {cfg['vocab_size']}"
    )
    cpu32 = score_texts(load_model(str(model_dir), device="cpu"), tlist)
    g32 = load_model(str(model_dir), device=dev)
    g16 = load_model(str(model_dir), dtype="bfloat16", device=dev)
    ntok = cpu32.total_tokens
    chunk = logits_chunk_rows(cfg["vocab_size"], dev)
    batch_tokens = auto_batch_tokens(g32.model, dev, 1, chunk)
    n_rows = cfg["num_hidden_layers"] + 1
    lens_batch = auto_batch_tokens(g32.model, dev, n_rows, chunk)
    full_logits = batch_tokens * cfg["vocab_size"] * 4
    print(
        f"  automatic batch {batch_tokens} tokens (lens: {lens_batch}); log-softmax chunk "
        f"{chunk} positions = {chunk * cfg['vocab_size'] * 4 / 2**20:.0f} MiB of fp32 logits; "
        f"full fp32 logits of one such batch would be {full_logits / 2**30:.2f} GiB"
    )
    methods = {
        "paper fp32": lambda: paper_method_on(g32.model, g32.tokenizer, tlist, dev),
        "kltools fp32": lambda: score_texts(g32, tlist).loglik,
        "kltools bf16": lambda: score_texts(g16, tlist).loglik,
        "kltools fp32 lens": lambda: score_texts(g32, tlist, layers="all").loglik,
    }
    score_texts(g16, tlist[:1])  # warm-up (kernels, compiled logsumexp on the CPU dry run)
    outs: dict[str, Any] = {}
    mem_label = "peak CUDA allocated" if dev == "cuda" else "peak RSS (dry run)"
    print(f"  {'method':20s} {'tokens/s':>10s} {'x paper':>8s} {mem_label:>20s}")
    base = None
    for name, fn in methods.items():
        sec, peak, outs[name] = timed(dev, fn, repeats)
        base = base or sec
        tps = ntok / sec
        print(f"  {name:20s} {tps:10.0f} {base / sec:8.2f} {peak / 2**30:17.2f} GiB")
        res[f"{label} {name} tokens/s"] = tps
        res[f"{label} {name} peak GiB"] = peak / 2**30
    diff = np.abs(np.asarray(outs["kltools fp32"]) - cpu32.loglik)
    kl_cpu = kl_between(cpu32.loglik, outs["kltools fp32"], mean_bytes=mb)
    kl16 = kl_between(outs["kltools fp32"], outs["kltools bf16"], mean_bytes=mb)
    paper_diff = np.abs(np.asarray(outs["paper fp32"]) - cpu32.loglik).max()
    lens_last = np.abs(outs["kltools fp32 lens"][-1] - outs["kltools fp32"]).max()
    ok_abs, ok_kl = diff.max() <= MAX_ABS_NATS, kl_cpu <= MAX_KL_GPU_CPU
    print(
        f"  fp32 {dev} vs fp32 cpu: max |diff| {diff.max():.2e} nats "
        f"({'ok' if ok_abs else 'FAIL'}, <= {MAX_ABS_NATS}); KL {kl_cpu:.2e} bits/byte "
        f"({'ok' if ok_kl else 'FAIL'}, <= {MAX_KL_GPU_CPU}); paper method on {dev} vs cpu "
        f"{paper_diff:.2e} nats; lens last layer vs output {lens_last:.2e} nats"
    )
    print(f"  KL(fp32, bf16) on {dev}: {kl16:.2e} bits/byte")
    if not ok_abs:
        fails.append(f"{label}: fp32 {dev} vs cpu differs by {diff.max():.2e} nats")
    if not ok_kl:
        fails.append(f"{label}: KL(fp32 {dev}, fp32 cpu) = {kl_cpu:.2e} bits/byte")
    res.update(
        {
            f"{label} max abs diff gpu-cpu (nats)": float(diff.max()),
            f"{label} KL gpu-cpu (bits/byte)": kl_cpu,
            f"{label} KL fp32-bf16 (bits/byte)": kl16,
            f"{label} auto batch tokens": batch_tokens,
            f"{label} chunk positions": chunk,
        }
    )
    return res, fails


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="same code on CPU, tiny shapes")
    parser.add_argument("--texts", type=int, default=None, help="texts per model (default 32)")
    parser.add_argument("--repeats", type=int, default=None, help="best of R (default 2)")
    parser.add_argument("--json", default=None, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    import torch

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; use --dry-run (make gpu-check DRY=1)")
        return 2
    dev = "cpu" if dry else "cuda"
    n_texts = args.texts or (3 if dry else 32)
    repeats = args.repeats or (1 if dry else 2)
    banner = "DRY RUN on CPU with tiny shapes: these numbers say nothing about a GPU"
    if dry:
        print(f"gpu_check: {banner}")
        shapes = {
            "pythia-160m (DRY: tiny)": B.pythia_shape(64, 2, 4, vocab=1024),
            "pythia-410m (DRY: tiny)": B.pythia_shape(96, 3, 4, vocab=1024),
        }
    else:
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
        shapes = {k: B.SHAPES[k] for k in ("pythia-160m", "pythia-410m")}
    t_start = time.perf_counter()
    results: dict[str, float] = {}
    fails: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kltools-gpu-") as tmp:
        work = Path(tmp)
        tok = B.train_bpe(
            work / "tok", 512 if dry else B.PYTHIA_BPE_VOCAB, 300_000 if dry else 2_000_000
        )
        texts = B.corpus_texts(n_texts)
        for label, cfg in shapes.items():
            for dtype in ("float32", "bfloat16"):
                flops = B.matmul_roofline(
                    dtype, 2048, cfg["hidden_size"], cfg["vocab_size"], dev=dev
                )
                results[f"{label} roofline {dtype} GFLOP/s"] = flops / 1e9
                print(f"{label}: matmul roofline {dtype} {flops / 1e12:.2f} TFLOP/s on {dev}")
            model_dir = B.build_model(work / label.split()[0], cfg, tok)
            res, bad = check_shape(label, cfg, model_dir, texts, dev, repeats)
            results.update(res)
            fails.extend(bad)
    results["seconds"] = time.perf_counter() - t_start
    results["dry_run"] = float(dry)
    B.write_json(args.json, results)
    print(
        f"\ngpu_check: {results['seconds']:.0f} s; {'all checks passed' if not fails else 'FAILED:'}"
    )
    for line in fails:
        print(f"  FAIL {line}")
    if dry:
        print(f"gpu_check: {banner}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
