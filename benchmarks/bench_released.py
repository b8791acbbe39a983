"""Importing the authors' release at its real shape: wall time and peak memory.

Usage::

    python benchmarks/bench_released.py [--texts 10000] [--models 1018] [--keep DIR]

A child process writes a synthetic release of the real shape with
:func:`kltools.released.write_release` into a temporary folder: 14 runs x 154 checkpoints x
10,000 texts (float32, with the real file's ``None`` entries), the 1,018 x 10,000 model
matrix (float64, the widest a "float array" can be), the 8-/4-bit copies and the logit-lens
vectors of the first 50 models (33 hidden states for most, other depths for a few), five
154 x 154 weight-distance matrices and 10,000 texts of ~970 UTF-8 bytes. This process then
times, separately:

1. ``verify``: the sha256 of every file against ``MANIFEST.json``;
2. ``open + read``: :func:`open_release` and every reading method (safe unpickling and the
   layout checks);
3. ``import``: :func:`import_release` into fresh stores (zarr writes through the store API);

and prints each wall time, the total and this process's peak RSS (``getrusage``; the
generation ran in the child, so it is not counted). With ``--book`` it then builds every
chapter of the ``released`` profile on that release (``kltools book build --profile released
--no-render``, in a child process, into the temporary folder) and prints its wall time and the
largest peak RSS of any process it ran (the build and each chapter's kernel). Synthetic
values: the numbers measure I/O, bookkeeping and the analyses' arithmetic, which do not depend
on the values.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(directory: Path, n_texts: int, n_models: int) -> None:
    """Write a synthetic release of the real shape into ``directory``
    (:mod:`kltools.released.synthetic`, with the real release's layer depths)."""
    from kltools.released.synthetic import write_synthetic_release

    write_synthetic_release(
        directory, n_texts=n_texts, n_models=n_models, depths=(32, 32, 32, 32, 28, 32, 24, 32, 40)
    )


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=10000)
    ap.add_argument("--models", type=int, default=1018)
    ap.add_argument("--keep", default=None, help="work in this folder and keep it")
    ap.add_argument("--book", action="store_true", help="then build every released chapter")
    ap.add_argument("--generate-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    if args.generate_only:
        generate(Path(args.generate_only), args.texts, args.models)
        return 0
    from kltools.released import import_release, open_release, verify

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_released."))
    rel_dir, data = work / "release", work / "data"
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, __file__, "--generate-only", str(rel_dir)]
    cmd += ["--texts", str(args.texts), "--models", str(args.models)]
    subprocess.run(cmd, check=True, env=env)
    size = sum(p.stat().st_size for p in rel_dir.rglob("*") if p.is_file())
    print(f"generated {size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s (not timed)")
    times = {}
    t = time.perf_counter()
    verify(rel_dir)
    times["verify (sha256 of every file)"] = time.perf_counter() - t
    t = time.perf_counter()
    rel = open_release(rel_dir, verify=False)
    rel.texts(), rel.model_list(), rel.types(), rel.siblings(), rel.colors()
    rel.pretraining(), rel.oyama(), rel.quantization(8), rel.quantization(4)
    rel.layers(), rel.weight_distances()
    times["open + read (safe unpickling, layout checks)"] = time.perf_counter() - t
    t = time.perf_counter()
    paths = import_release(rel, data)
    times["import (zarr stores)"] = time.perf_counter() - t
    for k, v in times.items():
        print(f"{k:<48} {v:8.1f} s")
    print(f"{'total':<48} {sum(times.values()):8.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this process: {peak:.2f} GiB; stores: {', '.join(sorted(paths))}")
    if args.book:
        t = time.perf_counter()
        book_env = {
            **env,
            "KLTOOLS_RELEASED_DIR": str(rel_dir),
            "KLTOOLS_DATA_ROOT": str(work / "data-book"),
            "KLTOOLS_BUILD_ROOT": str(work / "build"),
            "HF_HUB_OFFLINE": "1",
        }
        book = [sys.executable, "-m", "kltools", "book", "build", "--profile", "released"]
        run = subprocess.run([*book, "--no-render"], env=book_env, cwd=root)
        wall = time.perf_counter() - t
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        print(f"{'released book (import + 10 chapters, no render)':<48} {wall:8.1f} s"
              f"{'' if run.returncode == 0 else ' (FAILED)'}")  # fmt: skip
        print(f"largest peak RSS of a child process (build or kernel): {kids:.2f} GiB")
    print(f"load average at the end {os.getloadavg()}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
