"""Store overhead: the xarray-dataset layout against the layout before it, in one process.

Usage::

    python benchmarks/bench_store.py [--units 238] [--texts 300] [--repeats 3] [--process]

1. Times, per unit, what an extraction spends on the store besides scoring: creating the rows
(``prepare``), writing a unit (``write_unit``: its loglik and n_tokens rows, its run record,
its done flag; plus taking and releasing the unit's lease in the current layout), and reading
the whole store back (``open_store``, unstacked into model x step), on a store the shape of
the book's pretraining store (238 units x 300 texts by default). The older layout's code
(``kltools-loglik/1``) is loaded from git (commit 9af9bda) into the same process; the two are
run interleaved, best of ``--repeats``, and printed with their ratio (machines are shared:
compare ratios). Synthetic values, no model: scoring time is not part of it.

2. ``--process``: whole ``python -m kltools extract`` processes (start-up, model loads,
   scoring, the store) on four random tiny-s-shaped models and 64 corpus texts, with the code
   of this checkout against the code of commit 9af9bda (the older layout; same scoring code),
   interleaved, best of ``--repeats``, into a fresh store each time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

V1_COMMIT = "9af9bda"


def load_v1(work: Path) -> Any:
    """kltools.store as of the older layout, imported under another name."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "-C", str(root), "show", f"{V1_COMMIT}:kltools/store.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = work / "store_v1.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("kltools_store_v1", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def texts(n: int) -> Any:
    from kltools.texts import TextSet

    return TextSet(
        name="bench",
        ids=tuple(f"t{i:05d}" for i in range(n)),
        texts=tuple(f"text number {i} " * 20 for i in range(n)),
    )


def records(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(
            {
                "spec": f"tiny-{i % 7}@step{i}",
                "coords": {"model": f"tiny-{i % 7}", "step": i},
                "dtype": "float32",
                "quantization": None,
                "resolved": {"kind": "suite", "path_or_id": f"/suite/{i}", "commit": None},
            }
        )
    return out


def one_run(mod: Any, where: Path, ts: Any, recs: list, leases: bool) -> dict[str, float]:
    """prepare + write every unit + open_store on a fresh store; seconds per phase."""
    header = mod.run_header(ts, bos="paper", layers=None, dtype="float32", device="cpu")
    store = where / f"s{time.perf_counter_ns()}.zarr"
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    rows = mod.prepare(store, ts, header, recs)
    t1 = time.perf_counter()
    meta = {"started": 0.0, "finished": 1.0, "seconds": 1.0, "tokens": 1, "device": "cpu"}
    for r in rows:
        ll = -rng.random(len(ts.ids), dtype=np.float64) * 1000
        nt = np.full(len(ts.ids), 250, dtype=np.int64)
        if leases:
            lease = mod.claim_unit(store, r)
            mod.write_unit(store, r, ll, nt, meta)
            lease.release()
        else:
            mod.write_unit(store, r, ll, nt, meta)
    t2 = time.perf_counter()
    ds = mod.open_store(store, dims=("model", "step"))
    assert int(np.isfinite(ds.loglik.values).all(axis=-1).sum()) == len(recs)
    t3 = time.perf_counter()
    return {"prepare": t1 - t0, "write": t2 - t1, "open": t3 - t2}


def processes(work: Path, repeats: int) -> None:
    """Section 2: whole extraction processes, this checkout against the older layout's."""
    root = Path(__file__).resolve().parents[1]
    old = work / "v1src"
    old.mkdir()
    tar = subprocess.run(
        ["git", "-C", str(root), "archive", V1_COMMIT, "kltools"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=tar, check=True)
    label, cfg = B.tiny_suite_shape()
    tok = B.train_bpe(work / "bpe", min(4096, cfg["vocab_size"]), n_bytes=400_000)
    models = [B.build_model(work / f"m{s}", cfg, tok, seed=s) for s in range(4)]
    texts = B.corpus_texts(64)
    jsonl = work / "texts.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(texts.ids, texts.texts))
    )
    env_now = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env_old = {**env_now, "PYTHONPATH": str(old)}
    counter = iter(range(10**6))

    def run(env: dict[str, str]) -> float:
        store = work / f"p{next(counter)}.zarr"
        args = ["extract", *(f"--model={m}" for m in models), "--texts", str(jsonl)]
        wall, _peak, rc, err = B.run_child(
            "kltools", [*args, "--store", str(store), "--quiet"], work, env
        )
        if rc != 0:
            raise RuntimeError(err)
        return wall

    best = {"before (9af9bda)": float("inf"), "now": float("inf")}
    for _ in range(repeats):
        best["before (9af9bda)"] = min(best["before (9af9bda)"], run(env_old))
        best["now"] = min(best["now"], run(env_now))
    print(f"whole kltools extract processes ({label}, 4 units x 64 texts), best of {repeats}:")
    for k, v in best.items():
        print(f"  {k:<20}{v:8.2f} s")
    print(f"  now / before        {best['now'] / best['before (9af9bda)']:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=238)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--process", action="store_true", help="also whole extract processes")
    args = parser.parse_args()
    from kltools import store as current

    print(f"CPU: {B.cpu_description()}; load average {os.getloadavg()[0]:.2f}")
    print(f"store of {args.units} units x {args.texts} texts, best of {args.repeats}")
    ts, recs = texts(args.texts), records(args.units)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        v1 = load_v1(work)
        best: dict[str, dict[str, float]] = {"v1": {}, "v2": {}}
        for _ in range(args.repeats):
            for name, mod, leases in (("v1", v1, False), ("v2", current, True)):
                got = one_run(mod, work, ts, recs, leases)
                for k, v in got.items():
                    best[name][k] = min(best[name].get(k, float("inf")), v)
    print(f"{'phase':<28}{'before (v1)':>14}{'now (v2)':>14}{'now/before':>12}")
    for k, label in (
        ("prepare", "prepare (all rows), s"),
        ("write", "write, ms per unit"),
        ("open", "open_store, s"),
    ):
        a, b = best["v1"][k], best["v2"][k]
        scale = 1000 / args.units if k == "write" else 1.0
        print(f"{label:<28}{a * scale:>14.2f}{b * scale:>14.2f}{b / a:>12.2f}")
    if args.process:
        with tempfile.TemporaryDirectory() as tmp:
            processes(Path(tmp), args.repeats)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
