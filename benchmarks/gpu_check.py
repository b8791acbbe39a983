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
- the logit lens over all layers on the GPU (tokens/s);
- **the pythia profile** (``--section pythia``): random models of the real Pythia-410m and -1b
  shapes written as hub revisions ``step1000/2000/3000`` into a Hugging Face cache in the real
  layout (:mod:`kltools.rehearsal.hubcache`), then the profile's own code path on the GPU:
  ``resolve_model("EleutherAI/pythia-1b@step2000")`` offline, ``kltools.extract`` with the
  profile's dtype and batch size on 1,000 texts per revision (tokens/s, peak CUDA memory, the
  recorded commit of each unit checked), per-text agreement with the CPU, the streamed weight
  distances (:mod:`kltools.weightspace`) on the GPU, and the projected GPU hours and download of
  the paper's full run from the measured throughput (:mod:`pythia_cost`);
- **the authors' vectors** (``--section release``): when their release is on the machine and
  ``EleutherAI/pythia-410m@step143000`` can be read, our float16 extraction of it on 1,000 of
  their texts beside their published vector (max |diff|, correlation, KL in bits/byte).

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
import pythia_cost as C  # noqa: E402

#: fp32 GPU vs fp32 CPU: largest per-text difference allowed, in nats (~400 tokens a text)
MAX_ABS_NATS = 1e-2
#: fp32 GPU vs fp32 CPU: largest KL allowed, bits/byte (the book's floor is far above)
MAX_KL_GPU_CPU = 1e-7
#: our float16 extraction vs the authors' published vector of the same checkpoint: largest KL
#: allowed, bits/byte (two pipelines: padding, batch and kernel choice differ; the paper's
#: smallest setting, Later, is about 0.02)
MAX_KL_RELEASE = 1e-3


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


#: revisions of the pythia section (three consecutive 1,000-step checkpoints)
PYTHIA_STEPS = (1000, 2000, 3000)


def _write_hub_run(
    cache: Path, repo: str, cfg: dict[str, Any], tok_dir: Path, dev: str, work: Path
) -> dict[str, str]:
    """Random GPT-NeoX weights of ``cfg`` as hub revisions ``step<S>`` of ``repo`` (float16,
    as Pythia's checkpoints), each a small drift from the previous; ``{revision: commit}``."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from kltools.rehearsal.hubcache import write_snapshot

    torch.manual_seed(0)
    with torch.device(dev):
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**cfg)).half().eval()
    commits = {}
    for i, step in enumerate(PYTHIA_STEPS):
        if i:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * (1e-3 * float(p.float().std()) + 1e-6))
        folder = work / "staging" / repo.replace("/", "--") / f"step{step}"
        model.save_pretrained(folder)
        for f in tok_dir.iterdir():
            if f.is_file():
                (folder / f.name).write_bytes(f.read_bytes())
        revs = [f"step{step}"] + (["main"] if step == PYTHIA_STEPS[-1] else [])
        commits[f"step{step}"] = write_snapshot(cache, repo, folder, revs)
    del model
    return commits


def check_pythia_profile(
    work: Path, tok_dir: Path, dev: str, dry: bool, n_texts: int, n_cpu: int
) -> tuple[dict[str, float], list[str]]:
    """The pythia profile's hub code path on the GPU at the real 410m and 1b shapes."""
    import json

    import numpy as np
    import yaml
    from huggingface_hub import constants
    from transformers.utils import logging as hf_logging

    from kltools.extraction import Unit, extract, score_texts
    from kltools.kl import kl_between
    from kltools.models import load_model, resolve_model
    from kltools.weightspace import hub_checkpoint_files, hub_weight_distances

    res: dict[str, float] = {}
    fails: list[str] = []
    hf_logging.disable_progress_bar()
    profile = yaml.safe_load((C.ROOT / "params" / "pythia.yaml").read_text())["common"]
    # the profile's dtype on the GPU; float32 in the dry run (16-bit matmuls crawl on a CPU)
    dtype, batch_size = ("float32" if dry else profile["dtype"]), profile["batch_size"]
    cache = work / "hub"
    os.environ["HF_HUB_CACHE"] = str(cache)
    constants.HF_HUB_CACHE = str(cache)
    if dry:
        shapes = {
            "EleutherAI/pythia-410m": B.pythia_shape(64, 2, 4, vocab=1024),
            "EleutherAI/pythia-1b": B.pythia_shape(128, 2, 4, vocab=1024),
        }
    else:
        shapes = {
            "EleutherAI/pythia-410m": dict(B.SHAPES["pythia-410m"]),
            "EleutherAI/pythia-1b": B.pythia_shape(2048, 16, 8),
        }
    texts = B.corpus_texts(n_texts)
    cpu_texts = list(texts.texts[:n_cpu])
    print(
        f"\n== pythia profile: {len(PYTHIA_STEPS)} revisions x {len(texts)} texts per shape, "
        f"dtype {dtype}, batch {batch_size} (params/pythia.yaml), hub cache in the real layout"
    )
    measured: dict[str, dict[str, float]] = {}
    tokens_per_text = []
    for repo, cfg in shapes.items():
        t0 = time.perf_counter()
        commits = _write_hub_run(cache, repo, cfg, tok_dir, dev, work)
        t_write = time.perf_counter() - t0
        ref = resolve_model(f"{repo}@step{PYTHIA_STEPS[1]}")
        if ref.commit != commits[f"step{PYTHIA_STEPS[1]}"]:
            fails.append(f"{repo}: resolved commit {ref.commit} is not the cached revision's")
        units = [Unit(f"{repo}@step{s}", {"model": repo, "step": s}) for s in PYTHIA_STEPS]
        store = work / f"{repo.replace('/', '--')}.zarr"
        _reset_peak(dev)
        _sync(dev)
        t0 = time.perf_counter()
        ds = extract(
            units, texts, store, dtype=dtype, device=dev, batch_size=batch_size, progress=False
        )
        _sync(dev)
        wall = time.perf_counter() - t0
        peak = _peak_bytes(dev)
        records = json.loads(ds.attrs["units"])  # one record per unit, in extraction order
        recorded = [u["resolved"]["commit"] for u in records]
        if recorded != [commits[f"step{s}"] for s in PYTHIA_STEPS]:
            fails.append(f"{repo}: the store recorded commits {recorded}, not the revisions'")
        scoring = [float(u["run"]["seconds"]) for u in records]
        ntok = int(ds.n_tokens.values.sum()) if "n_tokens" in ds else 0
        tokens_per_text.append(ntok / (len(units) * len(texts)))
        tps, tps_scoring = ntok / wall, ntok / sum(scoring)
        ll = ds.loglik.sel(model=repo)
        kl_next = kl_between(
            ll.isel(step=0).values, ll.isel(step=1).values, mean_bytes=texts.mean_bytes
        )
        print(
            f"  {repo} shape (hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers): "
            f"{tps:,.0f} tokens/s with loading ({tps_scoring:,.0f} scoring only), "
            f"{wall:.1f} s for {len(units)} units; peak "
            f"{'CUDA allocated' if dev == 'cuda' else 'RSS (dry run)'} {peak / 2**30:.2f} GiB; "
            f"cache written in {t_write:.1f} s; KL(step{PYTHIA_STEPS[0]}, step{PYTHIA_STEPS[1]}) "
            f"{kl_next:.2e} bits/byte; recorded commits {'ok' if recorded == [commits[f'step{s}'] for s in PYTHIA_STEPS] else 'FAIL'}"
        )
        measured[repo] = {"tokens_per_s": tps}
        # per-text agreement: fp32 on the device vs fp32 on the CPU, and the profile's dtype
        spec = f"{repo}@step{PYTHIA_STEPS[0]}"
        cpu32 = score_texts(load_model(spec, device="cpu"), cpu_texts).loglik
        dev32 = score_texts(load_model(spec, device=dev), cpu_texts).loglik
        dev_prof = ll.isel(step=0).values[:n_cpu]
        diff = float(np.abs(np.asarray(dev32) - np.asarray(cpu32)).max())
        kl_cpu = kl_between(cpu32, dev32, mean_bytes=texts.mean_bytes)
        kl_prof = kl_between(cpu32, dev_prof, mean_bytes=texts.mean_bytes)
        ok = diff <= MAX_ABS_NATS and kl_cpu <= MAX_KL_GPU_CPU
        print(
            f"  per text, {n_cpu} texts: fp32 {dev} vs fp32 cpu max |diff| {diff:.2e} nats, KL "
            f"{kl_cpu:.2e} bits/byte ({'ok' if ok else 'FAIL'}); {dtype} {dev} vs fp32 cpu KL "
            f"{kl_prof:.2e} bits/byte"
        )
        if not ok:
            fails.append(f"{repo} shape: fp32 {dev} vs cpu differs by {diff:.2e} nats")
        label = repo.split("/")[1]
        res.update(
            {
                f"pythia {label} tokens/s": tps,
                f"pythia {label} scoring tokens/s": tps_scoring,
                f"pythia {label} peak GiB": peak / 2**30,
                f"pythia {label} max abs diff gpu-cpu (nats)": diff,
                f"pythia {label} KL gpu-cpu (bits/byte)": kl_cpu,
                f"pythia {label} KL {dtype}-cpu fp32 (bits/byte)": kl_prof,
            }
        )
    # streamed weight distances on the device, at the larger shape
    repo = "EleutherAI/pythia-1b"
    _reset_peak(dev)
    t0 = time.perf_counter()
    dw = hub_weight_distances(repo, PYTHIA_STEPS, max_lag=2, device=dev)
    _sync(dev)
    sec = time.perf_counter() - t0
    read = sum(
        f.stat().st_size for st in PYTHIA_STEPS for f in hub_checkpoint_files(repo, f"step{st}")
    )
    gbps = read / sec / 1e9
    print(
        f"  weight distances ({repo} shape, {len(PYTHIA_STEPS)} revisions, window 2): {sec:.1f} s, "
        f"{read / sec / 1e6:,.1f} MB/s of checkpoint read, peak {_peak_bytes(dev) / 2**30:.2f} GiB; "
        f"D_W(step{PYTHIA_STEPS[0]}, +1) = {float(dw.values[0, 0]):.4g}"
    )
    res["pythia weight distances GB/s"] = gbps
    # the paper's full run, projected from the measured throughput
    n_full = int(profile["n_texts"])
    tpt = float(np.mean(tokens_per_text))
    rows = C.project(measured, n_texts=n_full, tokens_per_text=tpt)
    disk = C.disk_bytes(C.full_run())
    print(
        f"\n  projected full run (make book PROFILE=pythia): {n_full} texts of {tpt:.0f} tokens "
        "(this check's 8k BPE cuts texts into more tokens than Pythia's tokenizer, so hours are "
        "an upper bound); FLOPs per token from each model's published shape, FLOP/s measured "
        "above (with loading) on the nearest smaller measured shape"
    )
    for line in C.summary_lines(rows, disk):
        print(line)
    dw_hours = sum(
        154 * 2 * C.param_count(C.REAL_SHAPES[f"EleutherAI/pythia-{s}"])
        for s in ("410m", "1b", "1.4b", "2.8b", "6.9b")
    ) / (gbps * 1e9) / 3600 if gbps > 0 else float("nan")  # fmt: skip
    print(f"  weight distances of all five sizes (each checkpoint read once): {dw_hours:.1f} h")
    res["pythia projected GPU hours"] = sum(r["hours"] for r in rows)
    res["pythia projected weight-distance hours"] = dw_hours
    res["pythia download TB"] = sum(disk.values()) / 1e12
    res["pythia tokens per text"] = tpt
    return res, fails


#: the checkpoint set beside the authors' published vector when their release is here
RELEASE_CHECKPOINT = "EleutherAI/pythia-410m@step143000"


def check_release(dev: str, n_texts: int) -> tuple[dict[str, float], list[str]]:
    """Our extraction of one checkpoint against the authors' published vector of it.

    Runs only when the release is on this machine (``KLTOOLS_RELEASED_DIR`` or the default
    download folder: :func:`kltools.released.compare.local_release`) and the checkpoint is in
    the Hugging Face cache (or the hub is reachable); otherwise it says why it is skipped.
    Scores the release's first ``n_texts`` texts in float16 on ``dev`` (the paper's dtype)
    and prints the largest per-text difference, the correlation and the KL between the two
    extractions (bits/byte); a KL above :data:`MAX_KL_RELEASE` fails.
    """
    from kltools import extract
    from kltools.errors import KLToolsError
    from kltools.released import open_release
    from kltools.released.compare import compare_vectors, local_release

    where = local_release()
    if where is None:
        print("release: SKIP (the authors' release is not here: kltools released fetch)")
        return {}, []
    rel = open_release(where)
    texts = rel.textset().subset(n=min(n_texts, rel.n_texts()))
    ours_path = Path(tempfile.mkdtemp(prefix="kltools-release-")) / "ours.zarr"
    try:
        ds = extract([RELEASE_CHECKPOINT], texts, ours_path, dtype="float16", device=dev,
                     progress=False)  # fmt: skip
    except KLToolsError as exc:
        print(f"release: SKIP ({RELEASE_CHECKPOINT} cannot be read here: {exc})")
        return {}, []
    ours = ds.loglik.values.reshape(-1)
    theirs = rel.pretraining()["410m"][143000][: len(ours)]
    mean_bytes = float(texts.mean_bytes)
    c = compare_vectors(ours, theirs, mean_bytes)
    print(
        f"release: {RELEASE_CHECKPOINT} on {len(ours)} of the authors' texts, float16 on {dev}: "
        f"max |diff| {c['max_abs_nats']:.3g} nats, correlation {c['correlation']:.6f}, "
        f"KL(ours, theirs) {c['kl_bpb']:.3g} bits/byte"
    )
    bad = (
        [f"release: KL {c['kl_bpb']:.3g} > {MAX_KL_RELEASE}"]
        if c["kl_bpb"] > MAX_KL_RELEASE
        else []
    )
    return {f"release {k}": v for k, v in c.items()}, bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="same code on CPU, tiny shapes")
    parser.add_argument("--texts", type=int, default=None, help="texts per model (default 32)")
    parser.add_argument("--repeats", type=int, default=None, help="best of R (default 2)")
    parser.add_argument("--json", default=None, help="also write the numbers as JSON")
    parser.add_argument(
        "--section", choices=("all", "shapes", "pythia", "release"), default="all",
        help="run every section (default), only the shape checks, only the pythia profile, or "
        "only the comparison with the authors' published vectors",
    )  # fmt: skip
    parser.add_argument(
        "--pythia-texts", type=int, default=None, help="texts per revision (default 1000)"
    )
    parser.add_argument(
        "--plan", action="store_true", help="print what PROFILE=pythia downloads, then exit"
    )
    args = parser.parse_args(argv)
    if args.plan:
        print("\n".join(C.plan_lines()))
        return 0
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
        for label, cfg in shapes.items() if args.section in ("all", "shapes") else ():
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
        if args.section in ("all", "pythia"):
            n_pythia = args.pythia_texts or (12 if dry else 1000)
            res, bad = check_pythia_profile(work, tok, dev, dry, n_pythia, 4 if dry else 16)
            results.update(res)
            fails.extend(bad)
        if args.section in ("all", "release"):
            res, bad = check_release(dev, 16 if dry else 1000)
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
