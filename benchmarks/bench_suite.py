"""Time the suite build: a cold build, a no-op rebuild, peak memory, and scoring throughput.

Usage::

    python benchmarks/bench_suite.py [--profile tiny] [--jobs 2] [--root DIR] [--keep]
                                     [--n-texts 1000] [--json out.json]

The cold build runs ``python -m kltools suite build`` in a fresh folder (a temporary one unless
``--root`` is given); the peak RSS is the largest *sum* of resident memory over the build's
whole process tree (workers included), sampled every 0.2 s from ``/proc``. Then it times a
second, no-op build. Finally, it measures the scoring throughput of each size's final
checkpoint (fp32, one torch thread, batches of 16 analysis texts, padded; tokens/s counts real
tokens) and the implied time to score every checkpoint and variant on ``--n-texts`` texts.
Timings on a shared machine are noisy: the load average before and after is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) of ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        stack.extend(_children(p))
    return total


def timed_build(profile: str, root: Path, jobs: int) -> tuple[float, int, int]:
    """Run one build in a subprocess; (seconds, peak tree RSS in bytes, return code)."""
    cmd = [sys.executable, "-m", "kltools", "suite", "build", "--profile", profile]
    cmd += ["--root", str(root), "--jobs", str(jobs)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.2)
    return time.perf_counter() - t0, peak, proc.returncode


def throughput(profile: str, root: Path, n_texts: int) -> dict[str, dict[str, float]]:
    """Tokens/s of each size's final checkpoint (fp32, 1 thread) and the implied scoring time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kltools.suite.builder import list_models
    from kltools.suite.profiles import get_profile

    torch.set_num_threads(1)
    p = get_profile(profile)
    proot = root / p.name
    texts = [
        json.loads(line)["text"]
        for line in (proot / "texts" / "analysis.jsonl").read_text().splitlines()[:64]
    ]
    models = list_models(p, root)
    out: dict[str, dict[str, float]] = {}
    for size in p.sizes:
        folder = proot / f"{p.name}-{size.name}" / f"step{p.total_steps}"
        tok = AutoTokenizer.from_pretrained(folder)
        tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        n_tok, t0 = 0, time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(texts), 16):
                enc = tok(texts[i : i + 16], return_tensors="pt", padding=True)
                model(**enc).logits.float().log_softmax(-1)
                n_tok += int(enc["attention_mask"].sum())
        tps = n_tok / (time.perf_counter() - t0)
        n_models = sum(1 for m in models if m["size"] == size.name)
        tokens_per_text = n_tok / len(texts)
        out[size.name] = {
            "tokens_per_s_1thread": tps,
            "n_models_of_this_size": n_models,
            "tokens_per_text": tokens_per_text,
            "implied_core_seconds_all_models": n_models * n_texts * tokens_per_text / tps,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--root", type=Path, default=None, help="suite base folder (default: temp)")
    parser.add_argument("--n-texts", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_suite_")
        root = Path(tmp.name)
    result: dict[str, object] = {"profile": args.profile, "jobs": args.jobs, "cpus": os.cpu_count()}
    result["loadavg_before"] = os.getloadavg()
    cold, peak, rc = timed_build(args.profile, root, args.jobs)
    if rc != 0:
        print(f"bench_suite: the cold build failed (exit {rc})", file=sys.stderr)
        return 1
    noop, noop_peak, rc = timed_build(args.profile, root, args.jobs)
    result.update(
        cold_build_s=round(cold, 1),
        peak_rss_gb=round(peak / 2**30, 3),
        noop_build_s=round(noop, 2),
        loadavg_after=os.getloadavg(),
    )
    tp = throughput(args.profile, root, args.n_texts)
    result["throughput"] = tp
    result["implied_scoring_minutes_2_cores"] = round(
        sum(v["implied_core_seconds_all_models"] for v in tp.values()) / 2 / 60, 1
    )
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
