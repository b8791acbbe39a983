"""Extraction speed, memory and numerics: kltools against the paper's method and lm-eval.

Usage::

    python benchmarks/bench_extract.py [--quick] [--json out.json] [--texts N] [--repeats R]

Every number is measured in this one run, on this machine, and every speed is also printed
as a RATIO against a baseline measured in the same process (interleaved repeats, best of R),
because the machine may be shared. Sections:

1. roofline: ``torch.nn.functional.linear`` of an unembedding-shaped product (512 rows x d x
   vocabulary) in float32 and bfloat16: the FLOP/s every method is compared with.
2. in-process, per model shape (the tiny suite's ``s`` size and Pythia-70m, random weights;
   see ``benchlib``): (a) the paper's method written plainly (one text per forward, the
   full-vocabulary float32 log-softmax, gather, sum); (b) lm-evaluation-harness
   ``HFLM.loglikelihood_rolling`` (batch 16) on the same model directory; (c) kltools
   ``score_texts`` in float32 and bfloat16, and with the logit lens over all layers. Printed:
   tokens/s, ratios, achieved FLOP/s as a fraction of the roofline, the time the lens would
   take at the roofline, max |kltools - paper| in nats, and KL(float32, bfloat16) in
   bits/byte next to the float32 batch/padding floor the book measures (batch 1 vs auto).
3. whole processes (the targets): ``python -m kltools extract`` (float32, bfloat16) against a
   process running (a) and one running (b), each with its own peak RSS (``os.wait4``).
4. scale-out: ``extract(..., scheduler="local:2")`` against one process with two torch
   threads, on several units of the tiny shape (with and without the cluster start).
5. analysis: ``kl_matrix`` on 10,000 vectors x 10,000 texts (Gram form, float64).
6. the book's workload: every checkpoint of one suite run (``tiny-s``, 34 units) on the
   suite's first 300 texts, extracted into a store by the present per-unit path (a fresh
   ``from_pretrained`` per unit, per-text tokenisation, 16 windows per batch as
   ``params/tiny.yaml`` had it; :func:`present_path`) and by the many-units path, in this
   process, interleaved. Printed: wall and CPU seconds, the split per unit into load /
   tokenise / forward / normalise / write, the ratio, the achieved FLOP/s against the float32
   roofline of the run's own shape, the largest difference of any value, and a projection
   of the pretraining store (every checkpoint of every run) at N = 1000 and 2000 texts.
   Skipped (with a line saying so) when the suite is not built (``make suite``).

``--quick`` shrinks every size (tiny shapes, a few texts, one repeat) so that
``tests/test_bench.py`` runs the same code in seconds; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

#: the targets of the issue "Speed and scale" (name -> (threshold, "min" or "max"))
TARGETS: dict[str, tuple[float, str]] = {
    "process kltools fp32 / paper fp32": (1.0, "min"),
    "process kltools fp32 / lm-eval": (1.3, "min"),
    "process kltools bf16 / paper fp32": (2.5, "min"),
    "in-process kltools bf16 / paper fp32": (2.5, "min"),
    "lens time / roofline time": (1.2, "max"),
    "peak RSS kltools extract fp32 (GB)": (1.5, "max"),
    "book workload now / present": (3.0, "min"),
    "book workload roofline fraction": (0.5, "min"),
}


# ------------------------------------------------------------------------------- methods


def paper_method(model: Any, tokenizer: Any, texts: list[str]) -> list[float]:
    """The paper's extraction, plainly: one text per forward, full fp32 log-softmax, gather."""
    import torch

    out = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, 1:, None])
        out.append(logp.double().sum().item())
    return out


def lm_eval_rolling(lm: Any, texts: list[str]) -> list[float]:
    """lm-evaluation-harness ``loglikelihood_rolling`` of each text (every token scored)."""
    from lm_eval.api.instance import Instance

    reqs = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
        for i, t in enumerate(texts)
    ]
    return list(lm.loglikelihood_rolling(reqs, disable_tqdm=True))


def make_hflm(model_dir: Path, batch_size: int = 16) -> Any:
    """lm-eval's HFLM on a local directory, float32, CPU."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model_dir), device="cpu", batch_size=batch_size, dtype="float32")


def fused_scores(loaded: Any, texts: list[str]) -> Any:
    """kltools bf16 with the compiled fused logsumexp forced on (as a large unit gets it)."""
    import kltools.extraction as kx

    saved, kx.COMPILE_MIN_LOGITS = kx.COMPILE_MIN_LOGITS, 0
    try:
        return kx.score_texts(loaded, texts).loglik
    finally:
        kx.COMPILE_MIN_LOGITS = saved


def worker_main(args: argparse.Namespace) -> int:
    """``--worker paper|lmeval``: one whole process scoring the texts like (a) or (b)."""
    from kltools.texts import load_texts

    texts = list(load_texts(args.texts_file).texts)
    if args.worker == "paper":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(args.model, dtype="float32").eval()
        tok = AutoTokenizer.from_pretrained(args.model)
        values = paper_method(model, tok, texts)
    else:
        values = lm_eval_rolling(make_hflm(Path(args.model)), texts)
    print(sum(values))
    return 0


# ------------------------------------------------------------------------------- setup


def setup(work: Path, quick: bool, n_texts: int) -> dict[str, Any]:
    """Tokenizers, models (tiny shape, Pythia-70m shape), texts; printed as it goes."""
    tiny_label, tiny_cfg = B.tiny_suite_shape()
    if quick:
        tiny_cfg = {**tiny_cfg, "vocab_size": 512, "max_position_embeddings": 2048}
        big_label, big_cfg = "pythia-70m (QUICK: 64 wide)", B.pythia_shape(64, 2, 2, vocab=1024)
        tok_vocab = (512, 512)
    else:
        big_label, big_cfg = "pythia-70m shape", B.SHAPES["pythia-70m"]
        tok_vocab = (tiny_cfg["vocab_size"], B.PYTHIA_BPE_VOCAB)
    t0 = time.perf_counter()
    tok_tiny = B.train_bpe(work / "tok_tiny", tok_vocab[0], 300_000 if quick else 2_000_000)
    tok_big = B.train_bpe(work / "tok_big", tok_vocab[1], 300_000 if quick else 2_000_000)
    shapes = {
        "tiny": (tiny_label, tiny_cfg, B.build_model(work / "tiny", tiny_cfg, tok_tiny)),
        "pythia70m": (big_label, big_cfg, B.build_model(work / "p70m", big_cfg, tok_big)),
    }
    texts = B.corpus_texts(n_texts)
    jsonl = texts.to_jsonl(work / "texts.jsonl")
    print(
        f"setup: {len(texts.texts)} corpus texts, mean {texts.mean_bytes:.0f} bytes; BPE "
        f"{tok_vocab[0]} / {tok_vocab[1]} tokens; models saved in {time.perf_counter() - t0:.1f} s"
    )
    return {"shapes": shapes, "texts": texts, "jsonl": jsonl}


def _cfg_line(label: str, cfg: dict[str, Any]) -> str:
    return (
        f"{label}: hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
        f"{cfg['num_attention_heads']} heads, MLP {cfg['intermediate_size']}, "
        f"vocab {cfg['vocab_size']}, context {cfg['max_position_embeddings']}"
    )


# ------------------------------------------------------------------------------- sections


def section_roofline(shapes: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Matmul roofline per shape and dtype (FLOP/s)."""
    print("\n== 1. matmul roofline (F.linear, 512 rows x hidden x vocab, best of 5)")
    out: dict[str, dict[str, float]] = {}
    for key, (label, cfg, _d) in shapes.items():
        out[key] = {}
        for dtype in ("float32", "bfloat16"):
            flops = B.matmul_roofline(dtype, 512, cfg["hidden_size"], cfg["vocab_size"])
            out[key][dtype] = flops
            print(f"  {label:32s} {dtype:9s} {flops / 1e9:8.1f} GFLOP/s")
    return out


def section_inprocess(
    key: str,
    shape: tuple[str, dict[str, Any], Path],
    texts: Any,
    roof: dict[str, float],
    repeats: int,
    lens_texts: int,
    results: dict[str, float],
) -> None:
    """(a), (b), (c) in one process, interleaved; speeds, ratios, roofline fractions, KL."""
    import numpy as np

    from kltools.extraction import score_texts
    from kltools.kl import kl_between
    from kltools.models import load_model

    label, cfg, model_dir = shape
    print(f"\n== 2. in-process, {_cfg_line(label, cfg)}")
    f32 = load_model(str(model_dir), device="cpu")
    b16 = load_model(str(model_dir), dtype="bfloat16", device="cpu")
    hflm = make_hflm(model_dir)
    tlist = list(texts.texts)
    n_paper = [len(f32.tokenizer(t)["input_ids"]) - 1 for t in tlist]
    ntok = sum(n_paper)
    mean_ctx = (float(np.mean(n_paper)) + 1) / 2
    fns = {
        "paper fp32": lambda: paper_method(f32.model, f32.tokenizer, tlist),
        "paper bf16": lambda: paper_method(b16.model, b16.tokenizer, tlist),
        "lm-eval fp32": lambda: lm_eval_rolling(hflm, tlist),
        "kltools fp32": lambda: score_texts(f32, tlist).loglik,
        "kltools bf16": lambda: score_texts(b16, tlist).loglik,
        "kltools bf16 fused": lambda: fused_scores(b16, tlist),
    }
    fused_scores(b16, tlist[:1])  # compiles the fused logsumexp once, outside the timings
    best, last = B.best_of(fns, repeats)
    lens_list = tlist[:lens_texts]
    lens_tok = sum(n_paper[:lens_texts])
    lens_best, lens_last = B.best_of(
        {
            "lens fp32": lambda: score_texts(f32, lens_list, layers="all"),
            "paper fp32 (lens texts)": lambda: paper_method(f32.model, f32.tokenizer, lens_list),
        },
        repeats,
    )
    tokens = {k: ntok for k in fns}
    tokens["lm-eval fp32"] = ntok + len(tlist)  # lm-eval also scores the first token
    fpt = B.linear_flops_per_token(cfg, mean_ctx)
    base = best["paper fp32"]
    print(f"  {ntok} scored tokens ({ntok / len(tlist):.0f} per text), best of {repeats}")
    print(
        f"  {'method':22s} {'tokens/s':>10s} {'x paper32':>10s} {'x lm-eval':>10s} {'roofline':>9s}"
    )
    for name, sec in best.items():
        tps = tokens[name] / sec
        dt = "bfloat16" if "bf16" in name else "float32"
        frac = fpt * tps / roof[dt]
        print(
            f"  {name:22s} {tps:10.0f} {base / sec * tokens[name] / ntok:10.2f} "
            f"{best['lm-eval fp32'] / sec * tokens[name] / tokens['lm-eval fp32']:10.2f} "
            f"{frac:8.1%}"
        )
        results[f"{key} {name} tokens/s"] = tps
        results[f"{key} {name} roofline fraction"] = frac
    results[f"{key} in-process kltools fp32 / paper fp32"] = base / best["kltools fp32"]
    results[f"{key} in-process kltools fp32 / lm-eval"] = (
        best["lm-eval fp32"] / best["kltools fp32"] * ntok / tokens["lm-eval fp32"]
    )
    results[f"{key} in-process kltools bf16 / paper fp32"] = base / min(
        best["kltools bf16"], best["kltools bf16 fused"]
    )
    # what bfloat16 could reach at all here: a run at 100% of the bf16 matmul roofline,
    # relative to the paper's float32 speed (bounded by the CPU's bf16 / fp32 peak ratio)
    ceiling = roof["bfloat16"] / roof["float32"] / results[f"{key} paper fp32 roofline fraction"]
    results[f"{key} bf16 ceiling / paper fp32"] = ceiling
    print(
        f"  bf16 ceiling on this CPU: x{ceiling:.2f} of paper fp32 (bf16/fp32 roofline "
        f"{roof['bfloat16'] / roof['float32']:.2f} / the paper's fp32 roofline fraction); "
        f"kltools bf16 reaches x{results[f'{key} in-process kltools bf16 / paper fp32']:.2f}"
    )
    from kltools.models import cpu_native_dtypes

    native = "bfloat16" in cpu_native_dtypes()
    emulated = best["kltools fp32"] / min(best["kltools bf16"], best["kltools bf16 fused"])
    print(
        f"  bfloat16 matmul on this CPU: {'native' if native else 'EMULATED (no AVX-512 BF16/AMX)'}"
        f"; kltools bf16 / kltools fp32 = x{emulated:.2f}"
    )
    results[f"{key} kltools bf16 / kltools fp32"] = emulated
    results["cpu native bfloat16"] = float(native)
    # the logit lens: all L + 1 layers
    lens_rows = cfg["num_hidden_layers"] + 1
    lens_flops = B.linear_flops_per_token(cfg, mean_ctx, lens_rows) * lens_tok
    implied = lens_flops / roof["float32"]
    actual = lens_best["lens fp32"]
    print(
        f"  lens, all {lens_rows} layers, {lens_tok} tokens: {lens_tok / actual:.0f} tokens/s, "
        f"{lens_flops / actual / roof['float32']:.1%} of roofline; time / roofline time "
        f"{actual / implied:.2f} (target <= 1.2); x{lens_best['paper fp32 (lens texts)'] / actual:.3f} "
        "of the paper's output-only speed"
    )
    results[f"{key} lens time / roofline time"] = actual / implied
    # numerics
    paper32 = np.asarray(last["paper fp32"])
    k32, k16 = np.asarray(last["kltools fp32"]), np.asarray(last["kltools bf16"])
    one = score_texts(f32, tlist, batch_size=1).loglik
    lens_out = lens_last["lens fp32"].loglik[-1]
    mb = texts.mean_bytes
    kl16 = kl_between(k32, k16, mean_bytes=mb)
    kl16f = kl_between(k32, np.asarray(last["kltools bf16 fused"]), mean_bytes=mb)
    floor = kl_between(one, k32, mean_bytes=mb)
    fits = np.asarray(n_paper) < int(cfg["max_position_embeddings"])
    diff_fit = float(np.abs(k32 - paper32)[fits].max()) if fits.any() else float("nan")
    print(
        f"  numerics: max|kltools fp32 - paper| {diff_fit:.2e} nats over the {int(fits.sum())} "
        f"texts within the context ({int((~fits).sum())} longer ones: kltools uses rolling "
        "windows, the plain paper method feeds the whole text); "
        f"batched vs one-at-a-time {np.abs(k32 - one).max():.2e} nats; lens last layer vs "
        f"output {np.abs(lens_out - k32[:lens_texts]).max():.2e} nats"
    )
    print(
        f"  KL(fp32, bf16) kltools {kl16:.3e} bits/byte (fused lse {kl16f:.3e}); paper-method bf16 "
        f"{kl_between(paper32, np.asarray(last['paper bf16']), mean_bytes=mb):.3e}; "
        f"book floor (fp32 batch 1 vs auto) {floor:.3e} bits/byte"
    )
    results[f"{key} KL fp32 vs bf16 (bits/byte)"] = kl16
    results[f"{key} KL floor batch (bits/byte)"] = floor
    results[f"{key} max abs kltools-paper (nats)"] = diff_fit


def section_processes(
    shape: tuple[str, dict[str, Any], Path],
    jsonl: Path,
    work: Path,
    repeats: int,
    results: dict[str, float],
) -> None:
    """Whole processes: kltools extract (fp32, bf16) vs a paper-method and an lm-eval process."""
    label, _cfg, model_dir = shape
    print(
        f"\n== 3. whole processes, {label} (wall incl. start-up and model load; best of {repeats})"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    me = str(Path(__file__).resolve())
    common = ["--model", str(model_dir), "--texts-file", str(jsonl)]
    runs: dict[str, Any] = {
        "paper fp32": lambda i: (me, ["--worker", "paper", *common]),
        "lm-eval fp32": lambda i: (me, ["--worker", "lmeval", *common]),
    }
    for dtype, tag in (("float32", "fp32"), ("bfloat16", "bf16")):
        runs[f"kltools extract {tag}"] = lambda i, dtype=dtype: (
            "kltools",
            [
                "extract",
                "--model",
                str(model_dir),
                "--texts",
                str(jsonl),
                "--quiet",
                "--store",
                str(work / f"proc_{dtype}_{i}.zarr"),
                "--dtype",
                dtype,
            ],
        )
    best = {k: float("inf") for k in runs}
    rss = {k: 0 for k in runs}
    for i in range(repeats):
        for name, cmd in runs.items():
            wall, peak, rc, err = B.run_child(*cmd(i), work, env)
            if rc != 0:
                raise SystemExit(f"bench: {name} failed (exit {rc}):\n{err}")
            best[name], rss[name] = min(best[name], wall), max(rss[name], peak)
    base, lme = best["paper fp32"], best["lm-eval fp32"]
    print(
        f"  {'process':22s} {'wall s':>8s} {'x paper32':>10s} {'x lm-eval':>10s} {'peak RSS':>9s}"
    )
    for name in runs:
        print(
            f"  {name:22s} {best[name]:8.2f} {base / best[name]:10.2f} {lme / best[name]:10.2f} "
            f"{rss[name] / 2**30:7.2f} GB"
        )
        results[f"process {name} peak RSS (GB)"] = rss[name] / 2**30
    results["process kltools fp32 / paper fp32"] = base / best["kltools extract fp32"]
    results["process kltools fp32 / lm-eval"] = lme / best["kltools extract fp32"]
    results["process kltools bf16 / paper fp32"] = base / best["kltools extract bf16"]
    results["peak RSS kltools extract fp32 (GB)"] = rss["kltools extract fp32"] / 2**30


def section_scale_out(
    shape: tuple[str, dict[str, Any], Path],
    texts: Any,
    work: Path,
    n_units: int,
    repeats: int,
    results: dict[str, float],
) -> None:
    """extract(..., scheduler="local:2") vs one process with two torch threads."""
    import torch

    from kltools.distributed import scheduler_client
    from kltools.extraction import Unit, extract
    from kltools.texts import TextSet

    label, cfg, model_dir = shape
    reps = 4  # units of the tiny shape are short: score each text several times
    texts = TextSet(
        name="scale-out",
        ids=tuple(f"r{i}" for i in range(reps * len(texts.texts))),
        texts=list(texts.texts) * reps,
    )
    dirs = [model_dir] + [
        B.build_model(work / f"unit{s}", cfg, model_dir, seed=s) for s in range(1, n_units)
    ]
    units = [Unit(str(d), {"model": f"u{i}"}) for i, d in enumerate(dirs)]
    print(f"\n== 4. scale-out: {n_units} units of the {label}, {len(texts.texts)} texts each")
    threads = torch.get_num_threads()
    counter = iter(range(10**6))

    def serial() -> None:
        extract(units, texts, work / f"serial{next(counter)}.zarr", progress=False)

    def local2() -> None:
        extract(
            units, texts, work / f"local{next(counter)}.zarr", scheduler="local:2", progress=False
        )

    best, _ = B.best_of({"serial": serial, "local:2": local2}, repeats)
    with scheduler_client("local:2") as client:
        warm = B.best_of(
            {
                "warm": lambda: extract(
                    units,
                    texts,
                    work / f"warm{next(counter)}.zarr",
                    scheduler=client,
                    progress=False,
                )
            },
            repeats,
        )[0]["warm"]
    print(f"  one process, {threads} torch threads: {best['serial']:.2f} s")
    print(
        f"  scheduler='local:2' (incl. cluster start): {best['local:2']:.2f} s -> x{best['serial'] / best['local:2']:.2f}"
    )
    print(f"  on a running local:2 cluster: {warm:.2f} s -> x{best['serial'] / warm:.2f}")
    results["scale-out local:2 speed-up incl. start"] = best["serial"] / best["local:2"]
    results["scale-out local:2 speed-up warm cluster"] = best["serial"] / warm


@contextmanager
def present_path() -> Iterator[None]:
    """The per-unit path as it was before the many-units layer, callable for comparison.

    Inside this context :func:`kltools.extraction.extract` loads every unit with a fresh
    ``from_pretrained`` (model and tokenizer), tokenises the texts one by one for every
    unit, and keeps nothing between units. The caller passes ``batch_size=16`` as the book
    did (``params/tiny.yaml``). Everything else (scoring, store writes) is the same code.
    """
    import kltools.extraction as kx
    from kltools.models import load_model

    saved = (kx.load_unit_model, kx.release_unit_model, kx.tokenise)

    def fresh(ref: Any, unit: Any, device: str) -> Any:
        return load_model(
            ref, dtype=unit["dtype"], device=device, quantization=unit["quantization"]
        )

    kx.load_unit_model = fresh
    kx.release_unit_model = lambda loaded: None
    kx.tokenise = lambda tok, texts, bos: [kx.encode(tok, t, bos) for t in texts]
    try:
        yield
    finally:
        kx.load_unit_model, kx.release_unit_model, kx.tokenise = saved


@contextmanager
def unit_summaries(into: list[dict[str, Any]]) -> Iterator[None]:
    """Collect the summary (with its timings) of every unit :func:`extract` runs here."""
    import kltools.extraction as kx

    original = kx.run_unit

    def spy(store: str, index: int, config: Any) -> dict[str, Any]:
        out = original(store, index, config)
        into.append(out)
        return out

    kx.run_unit = spy
    try:
        yield
    finally:
        kx.run_unit = original


def _fresh_caches() -> None:
    """Forget the token ids and model skeletons kept by earlier runs (a cold new path)."""
    import kltools.extraction as kx
    from kltools.models import clear_reuse_cache

    kx._TOKEN_CACHE.clear()
    clear_reuse_cache()


PARTS = ("load", "tokenise", "forward", "normalise", "write")


def section_book(
    profile: str,
    run: str,
    n_texts: int,
    n_units: int,
    repeats: int,
    project: tuple[int, ...],
    work: Path,
    results: dict[str, float],
) -> None:
    """The book's workload: many checkpoints of one suite run, present path vs now."""
    import numpy as np

    from kltools.extraction import Unit
    from kltools.kl import kl_between
    from kltools.models import read_config, resolve_model
    from kltools.store import open_store
    from kltools.suite import list_models
    from kltools.texts import load_texts

    print(f"\n== 6. the book's workload: checkpoints of {run} ({profile} suite)")
    try:
        catalogue = list_models(profile)
        texts_all = load_texts(profile)
    except Exception as exc:  # noqa: BLE001 - the suite is optional here
        print(f"  skipped: the {profile} suite is not available ({exc}); run make suite")
        return
    ckpts = [m for m in catalogue if m["name"] == run and m["kind"] == "checkpoint"]
    if not ckpts or not all(m["built"] for m in ckpts):
        print(f"  skipped: run {run} of the {profile} suite is not built; run make suite")
        return
    units = [Unit(m["spec"], {"model": run, "step": m["step"]}) for m in ckpts[:n_units]]
    texts = texts_all.subset(n=min(n_texts, len(texts_all.texts)))
    cfg = read_config(resolve_model(units[0].spec))
    d, vocab = cfg["hidden_size"], cfg["vocab_size"]
    roof = B.matmul_roofline("float32", 4096, d, vocab)
    roof_cpu = B.matmul_roofline("float32", 4096, d, vocab, clock=time.process_time)
    print(
        f"  {len(units)} units x {len(texts.texts)} texts (mean {texts.mean_bytes:.0f} bytes); "
        f"{_cfg_line(run, cfg)}; float32 roofline (F.linear 4096 x {d} x {vocab}) "
        f"{roof / 1e9:.1f} GFLOP/s"
    )
    paths = {
        "present": lambda i: _book_present(units, texts, work / f"book_present{i}.zarr"),
        "now": lambda i: _book_now(units, texts, work / f"book_now{i}.zarr"),
    }
    best = {k: float("inf") for k in paths}
    cpu_best = {k: float("inf") for k in paths}
    parts: dict[str, dict[str, float]] = {}
    stores: dict[str, Path] = {}
    for i in range(repeats):
        for name, fn in paths.items():
            wall, cpu, summaries, store = fn(i)
            cpu_best[name] = min(cpu_best[name], cpu)
            if wall < best[name]:
                best[name] = wall
                stores[name] = store
                parts[name] = {k: sum(s["timings"].get(k, 0.0) for s in summaries) for k in PARTS}
    tokens = int(sum(s["tokens"] for s in summaries))
    now = open_store(stores["now"]).loglik
    old = open_store(stores["present"]).loglik
    n_tok = open_store(stores["now"]).n_tokens.values
    ctx = (float(np.mean(n_tok)) + 1) / 2 + 0.5
    flops = B.linear_flops_per_token(cfg, ctx) * tokens
    print(f"  {tokens} scored tokens per path; best of {repeats} (caches cleared each time)")
    print(
        f"  {'path':10s} {'wall s':>8s} "
        + " ".join(f"{k:>10s}" for k in PARTS)
        + f" {'other':>8s} {'x present':>10s} {'roofline':>9s}"
    )
    for name in paths:
        other = best[name] - sum(parts[name].values())
        print(
            f"  {name:10s} {best[name]:8.2f} "
            + " ".join(f"{parts[name][k]:10.2f}" for k in PARTS)
            + f" {other:8.2f} {best['present'] / best[name]:10.2f} "
            + f"{flops / best[name] / roof:8.1%}"
        )
    print(
        f"  process CPU seconds: present {cpu_best['present']:.2f}, now {cpu_best['now']:.2f} "
        f"-> x{cpu_best['present'] / cpu_best['now']:.2f} (on a shared machine the CPU-time "
        "ratio is the steadier one; wall time counts the other users' load)"
    )
    results["book workload now / present (CPU time)"] = cpu_best["present"] / cpu_best["now"]
    compute_present = parts["present"]["forward"] + parts["present"]["normalise"]
    bound = best["present"] / compute_present
    print(
        f"  Amdahl bound: the present path spends {compute_present:.2f} of its {best['present']:.2f} s "
        f"in forward + normalise, so removing every other cost gives at most x{bound:.2f}; "
        "more needs less arithmetic per text (or more cores than the present path uses)"
    )
    results["book workload present compute-only bound"] = bound
    print(
        f"  by CPU time: the float32 roofline runs at {roof_cpu / 1e9:.1f} GFLOP per CPU-second; "
        f"the whole extraction, now, at {flops / cpu_best['now'] / roof_cpu:.1%} of it "
        f"(present {flops / cpu_best['present'] / roof_cpu:.1%})"
    )
    results["book workload roofline fraction (CPU time)"] = flops / cpu_best["now"] / roof_cpu
    compute = parts["now"]["forward"] + parts["now"]["normalise"]
    print(
        "  per unit, now: "
        + ", ".join(f"{k} {1000 * parts['now'][k] / len(units):.0f} ms" for k in PARTS)
        + f"; forward + normalise alone run at {flops / compute / roof:.1%} of the roofline "
        f"({flops / compute / 1e9:.1f} GFLOP/s)"
    )
    diff = np.abs(now.values - old.values)
    worst = int(np.unravel_index(np.argmax(diff), diff.shape)[0]) if diff.ndim > 1 else 0
    a, b = now.values.reshape(len(units), -1), old.values.reshape(len(units), -1)
    mb = texts.mean_bytes
    kl = max(kl_between(a[u], b[u], mean_bytes=mb) for u in range(len(units)))
    print(
        f"  numerics: max |now - present| {diff.max():.2e} nats (unit {worst}); "
        f"max over units of KL(now, present) {kl:.2e} bits/byte"
    )
    results["book workload now / present"] = best["present"] / best["now"]
    results["book workload roofline fraction"] = flops / best["now"] / roof
    results["book workload compute roofline fraction"] = flops / compute / roof
    results["book workload max abs diff (nats)"] = float(diff.max())
    for k in PARTS:
        results[f"book workload now {k} s"] = parts["now"][k]
        results[f"book workload present {k} s"] = parts["present"][k]
    results["book workload now seconds"] = best["now"]
    results["book workload present seconds"] = best["present"]
    if project:
        _project_pretraining(
            profile, catalogue, texts_all, parts["now"], len(units), project, results
        )


def _book_present(units: Any, texts: Any, store: Path) -> tuple[float, float, list, Path]:
    from kltools.extraction import extract

    got: list[dict[str, Any]] = []
    with present_path(), unit_summaries(got):
        t0, c0 = time.perf_counter(), time.process_time()
        extract(units, texts, store, batch_size=16, device="cpu", progress=False, open_result=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, got, store


def _book_now(units: Any, texts: Any, store: Path) -> tuple[float, float, list, Path]:
    from kltools.extraction import extract

    _fresh_caches()
    got: list[dict[str, Any]] = []
    with unit_summaries(got):
        t0, c0 = time.perf_counter(), time.process_time()
        extract(units, texts, store, device="cpu", progress=False, open_result=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, got, store


def _project_pretraining(
    profile: str,
    catalogue: list[dict[str, Any]],
    texts_all: Any,
    measured: dict[str, float],
    n_measured: int,
    sizes_n: tuple[int, ...],
    results: dict[str, float],
) -> None:
    """The pretraining store (every checkpoint of every run) at N texts, from measured speeds.

    Per size, the final checkpoint scores the first max(N) texts with the new path (tokens
    per CPU-second: with one torch thread, the speed of one core however loaded the machine
    is); each unit adds the load, tokenise and write time per unit just measured. Linear in N
    (extraction is).
    """
    import torch

    from kltools.extraction import score_texts
    from kltools.models import load_model

    runs: dict[str, list[dict[str, Any]]] = {}
    for m in catalogue:
        if m["kind"] == "checkpoint":
            runs.setdefault(m["name"], []).append(m)
    per_unit = sum(measured[k] for k in ("load", "tokenise", "write")) / n_measured  # wall
    n_max = min(max(sizes_n), len(texts_all.texts))
    tlist = list(texts_all.texts[:n_max])
    speed: dict[str, tuple[float, int]] = {}
    for _name, ckpts in sorted(runs.items()):
        size = ckpts[0]["size"]
        if size in speed:
            continue
        loaded = load_model(ckpts[-1]["spec"], device="cpu")
        score_texts(loaded, tlist[:16])  # warm-up
        c0 = time.process_time()
        res = score_texts(loaded, tlist)
        speed[size] = (res.total_tokens / (time.process_time() - c0), res.total_tokens)
    print(
        "  scoring speed of each size, now, per CPU-second: "
        + ", ".join(f"{s} {v[0]:.0f} tokens" for s, v in speed.items())
    )
    for n in sizes_n:
        n_eff = min(n, len(texts_all.texts))
        total = 0.0
        for ckpts in runs.values():
            tps, tok = speed[ckpts[0]["size"]]
            total += len(ckpts) * (per_unit + tok * n_eff / n_max / tps)
        n_units = sum(len(c) for c in runs.values())
        print(
            f"  projected pretraining store, {n_units} units x {n_eff} texts: {total:.0f} "
            f"CPU-seconds ({total / 60:.1f} min; with {torch.get_num_threads()} torch threads)"
        )
        results[f"pretraining store projected seconds N={n_eff}"] = total


def section_kl(n_models: int, n_texts: int, results: dict[str, float]) -> None:
    """kl_matrix on an n_models x n_texts float64 problem; checked against kl_between."""
    import numpy as np
    import xarray as xr

    from kltools.kl import kl_between, kl_matrix

    rng = np.random.default_rng(0)
    base = rng.normal(-400, 40, n_texts)
    L = (base + rng.normal(0, 2, (n_models, n_texts))).astype(np.float32)
    da = xr.DataArray(
        L, dims=("model", "text"), coords={"text_bytes": ("text", np.full(n_texts, 1000))}
    )
    t0 = time.perf_counter()
    kl = kl_matrix(da)
    sec = time.perf_counter() - t0
    direct = kl_between(L[0], L[1], mean_bytes=1000.0)
    err = abs(float(kl.values[0, 1]) - direct) / direct
    print(f"\n== 5. kl_matrix, {n_models} vectors x {n_texts} texts, float64 Gram form")
    print(f"  {sec:.1f} s; relative error of one entry vs kl_between {err:.1e}")
    results[f"kl_matrix {n_models}x{n_texts} seconds"] = sec


def summary(results: dict[str, float]) -> None:
    """Every target: the measured value and whether it is met."""
    print("\n== targets (issue 'Speed and scale'); ratios from this one run")
    for name, (threshold, kind) in TARGETS.items():
        key = name if name in results else f"pythia70m {name}"
        if key not in results:
            print(f"  {name:44s} not measured")
            continue
        value = results[key]
        ok = value >= threshold if kind == "min" else value <= threshold
        sign = ">=" if kind == "min" else "<="
        print(
            f"  {name:44s} {value:8.3f}  (target {sign} {threshold})  {'MET' if ok else 'NOT MET'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--texts", type=int, default=None, help="number of texts (default 16)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--json", default=None, help="also write the numbers as JSON")
    parser.add_argument(
        "--book-only", action="store_true", help="only section 6, the book's workload"
    )
    parser.add_argument(
        "--book-texts", type=int, default=None, help="texts per unit in section 6 (default 300)"
    )
    parser.add_argument(
        "--book-units", type=int, default=None, help="checkpoints in section 6 (default all)"
    )
    parser.add_argument(
        "--project",
        default=None,
        help="comma-separated N: project the pretraining store's extraction (default 1000,2000)",
    )
    parser.add_argument("--worker", choices=("paper", "lmeval"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--texts-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    import torch

    quick = args.quick
    n_texts = args.texts or (4 if quick else 16)
    repeats = args.repeats or (1 if quick else 2)
    t_start = time.perf_counter()
    print(
        f"bench_extract{' --quick (sizes too small to mean anything)' if quick else ''}: "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"cpu: {B.cpu_description()}")
    results: dict[str, float] = {}
    book_profile, book_run = ("smoke", "smoke-s") if quick else ("tiny", "tiny-s")
    project = tuple(
        int(x) for x in (args.project or ("40" if quick else "1000,2000")).split(",") if x
    )
    book = (
        book_profile,
        book_run,
        args.book_texts or (16 if quick else 300),
        args.book_units or (4 if quick else 1000),
        repeats,
        project,
    )
    with tempfile.TemporaryDirectory(prefix="kltools-bench-") as tmp:
        work = Path(tmp)
        if args.book_only:
            section_book(*book, work, results)
            B.write_json(args.json, results)
            return 0
        env = setup(work, quick, n_texts)
        shapes, texts = env["shapes"], env["texts"]
        roof = section_roofline(shapes)
        for key in ("tiny", "pythia70m"):
            section_inprocess(
                key, shapes[key], texts, roof[key], repeats, 2 if quick else 6, results
            )
        section_processes(shapes["pythia70m"], env["jsonl"], work, repeats, results)
        section_scale_out(shapes["tiny"], texts, work, 2 if quick else 4, repeats, results)
        section_book(*book, work, results)
    section_kl(*((60, 200) if quick else (10_000, 10_000)), results)
    results["bench seconds"] = time.perf_counter() - t_start
    results["bench peak RSS (GB)"] = B.self_peak_rss() / 2**30
    summary(results)
    print(
        f"\nbench: {results['bench seconds']:.0f} s, this process peak RSS "
        f"{results['bench peak RSS (GB)']:.2f} GB, load average now {os.getloadavg()[0]:.2f}"
    )
    B.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
