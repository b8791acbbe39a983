"""Store overhead: the xarray-dataset layout against the layout before it, in one process.

Usage::

    python benchmarks/bench_store.py [--units 238] [--texts 300] [--repeats 3]

Times, per unit, what an extraction spends on the store besides scoring: creating the rows
(``prepare``), writing a unit (``write_unit``: its loglik and n_tokens rows, its run record,
its done flag; plus taking and releasing the unit's lease in the current layout), and reading
the whole store back (``open_store``, unstacked into model x step), on a store the shape of
the book's pretraining store (238 units x 300 texts by default). The older layout's code
(``kltools-loglik/1``) is loaded from git (commit 9af9bda) into the same process; the two are
run interleaved, best of ``--repeats``, and printed with their ratio (machines are shared:
compare ratios). Synthetic values, no model: scoring time is not part of it.
"""

from __future__ import annotations

import argparse
import importlib.util
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=238)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
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
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
