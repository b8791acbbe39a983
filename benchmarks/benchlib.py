"""Shared helpers of ``bench_extract.py`` and ``gpu_check.py``: shapes, texts, models, timing.

Models are random GPT-NeoX networks of published shapes (no hub access is needed): the
suite's ``tiny-s`` size (from :mod:`kltools.suite.profiles` when importable) and Pythia-70m /
160m / 410m. Their tokenizer is a byte-level BPE trained here on the suite corpus in a few
seconds (``kltools.suite.tokenizer.train_tokenizer``). For the Pythia shapes the model keeps
Pythia's 50,304-row vocabulary while the tokenizer has fewer tokens (``PYTHIA_BPE_VOCAB``):
the extra rows are never targets but still enter every softmax, so the arithmetic per token
is Pythia's; only the token count per text differs (a smaller BPE cuts a text into more
tokens than Pythia's tokenizer does). Texts are ~1,000-byte chunks of suite corpus documents
(cut with :func:`kltools.texts.chunk_document`, as the paper's recipe does), taken
round-robin over the corpus domains.
"""

from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kltools.suite.profiles import pythia_shape

#: BPE vocabulary of the tokenizer used with the Pythia shapes (the models keep 50,304 rows)
PYTHIA_BPE_VOCAB = 8192


def tiny_suite_shape() -> tuple[str, dict[str, Any]]:
    """``(label, config fields)`` of the tiny suite's ``s`` size, or a fallback of that size."""
    try:
        from kltools.suite.profiles import get_profile, model_config

        prof = get_profile("tiny")
        return "tiny-s shape", model_config(prof, prof.size("s"))
    except (ImportError, AttributeError):  # pragma: no cover - the suite is optional
        cfg = pythia_shape(64, 2, 2, vocab=4096)
        cfg["max_position_embeddings"] = 640
        return "tiny-s-like shape (suite not importable)", cfg


SHAPES: dict[str, dict[str, Any]] = {
    "pythia-70m": pythia_shape(512, 6, 8),
    "pythia-160m": pythia_shape(768, 12, 12),
    "pythia-410m": pythia_shape(1024, 24, 16),
}


def corpus_texts(n: int, max_bytes: int = 1024, min_bytes: int = 900) -> Any:
    """A TextSet of ``n`` chunks of suite corpus documents, ``min_bytes``..``max_bytes`` long."""
    from kltools.suite.corpus import DOMAINS, iter_documents
    from kltools.texts import TextSet, chunk_document

    pools: dict[str, list[str]] = {d: [] for d in DOMAINS}
    for doc in iter_documents():
        pool = pools.setdefault(doc.domain, [])
        if len(pool) < n:
            pool.extend(
                c for c in chunk_document(doc.text, max_bytes) if len(c.encode()) >= min_bytes
            )
        if all(len(p) >= n for p in pools.values()):
            break
    mixed = [t for group in itertools.zip_longest(*pools.values()) for t in group if t]
    texts = mixed[:n]
    return TextSet(name=f"bench{n}", ids=tuple(f"b{i}" for i in range(len(texts))), texts=texts)


def train_bpe(out: Path, vocab: int, n_bytes: int = 2_000_000) -> Path:
    """A byte-level BPE with ``vocab`` tokens trained on the first ``n_bytes`` of the corpus."""
    from kltools.suite.corpus import iter_documents
    from kltools.suite.tokenizer import train_tokenizer

    docs, total = [], 0
    for doc in iter_documents():
        docs.append(doc.text)
        total += len(doc.text)
        if total >= n_bytes:
            break
    return train_tokenizer(docs, vocab, out)


def build_model(out: Path, config: dict[str, Any], tokenizer_dir: Path, seed: int = 0) -> Path:
    """Save a random GPT-NeoX of ``config`` (seeded) with the tokenizer of ``tokenizer_dir``."""
    import torch
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if len(tok) > config["vocab_size"]:
        raise ValueError(f"tokenizer has {len(tok)} tokens, model only {config['vocab_size']}")
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(**config)).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def linear_flops_per_token(config: dict[str, Any], context: float, lens_rows: int = 0) -> float:
    """Multiply-add FLOPs (x2) of one scored token: blocks, causal attention, unembedding(s).

    ``context`` is the mean number of keys a query attends to (``(T + 1) / 2`` for a causal
    window of T tokens); ``lens_rows`` unembeddings (the logit lens) replace the single one.
    """
    d, inter = config["hidden_size"], config["intermediate_size"]
    layers, vocab = config["num_hidden_layers"], config["vocab_size"]
    block = 2 * (d * 3 * d + d * d + 2 * d * inter) + 2 * 2 * d * context
    return layers * block + 2 * d * vocab * max(1, lens_rows)


def matmul_roofline(
    dtype: str,
    rows: int,
    d: int,
    vocab: int,
    repeats: int = 5,
    dev: str = "cpu",
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best FLOP/s of ``(rows, d) @ (d, vocab)`` in ``dtype`` on ``dev`` (cpu or cuda).

    ``clock``: ``time.process_time`` gives FLOP per CPU-second (with one torch thread, the
    speed of one core whatever else the machine runs).
    """
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(rows, d, device=dev).to(dt)
    w = torch.randn(vocab, d, device=dev).to(dt)
    best = float("inf")
    with torch.inference_mode():
        torch.nn.functional.linear(a, w)
        for _ in range(repeats):
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            torch.nn.functional.linear(a, w)
            if dev == "cuda":
                torch.cuda.synchronize()
            best = min(best, clock() - t0)
    return 2.0 * rows * d * vocab / best


def best_of(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run every function ``repeats`` times, interleaved; best wall seconds and last result."""
    best = {k: float("inf") for k in fns}
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            last[key] = fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best, last


_HWM_BOOT = """
import atexit, runpy, sys
out, target = sys.argv[1], sys.argv[2]
def _hwm():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(kb)
atexit.register(_hwm)
sys.argv = [target, *sys.argv[3:]]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def run_child(
    target: str, args: Sequence[str], workdir: Path, env: dict[str, str] | None = None
) -> tuple[float, int, int, str]:
    """Run ``python -m target args`` (or a script path) as a whole process.

    Returns (wall seconds, the process's own peak RSS in bytes, return code, stderr tail).
    The peak is the child's ``VmHWM`` written at exit: ``ru_maxrss`` from ``wait4`` is not
    used because Linux carries the parent's high-water mark across fork + exec.
    """
    hwm = workdir / f"hwm-{time.monotonic_ns()}"
    cmd = [sys.executable, "-c", _HWM_BOOT, str(hwm), target, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    peak = int(hwm.read_text()) * 1024 if hwm.exists() else 0
    return wall, peak, proc.returncode, proc.stderr.decode(errors="replace")[-2000:]


def self_peak_rss() -> int:
    """Peak RSS of this process so far, in bytes."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    """Write the results as JSON (if a path is given)."""
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=float))


def cpu_description() -> str:
    """The CPU model and the matrix extensions that set the bfloat16 peak (Linux; else '?')."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    name = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
        "?",
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []
    )
    ext = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name} ({', '.join(ext) or 'no AVX-512'})"
