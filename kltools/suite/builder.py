"""Build, list and fingerprint the offline model suite.

``build(profile)`` prepares the data (tokenizer, token pools, analysis texts), then runs every
unit of :func:`kltools.suite.profiles.plan` that is not built yet — pretraining runs, then
fine-tunes and quantized copies as soon as their parents exist — in ``jobs`` worker processes
(each pinned to one torch thread, so results do not depend on ``jobs``). It is idempotent and
resumable: a unit counts as built only when its completion marker exists (``run.json`` for a
run, written last; a variant folder appears by an atomic rename). Finally it writes
``FINGERPRINT``: a sha256 over the plan, the data files and every built file's hash, which the
book's cache keys on.

Layout under ``<root>/<profile>/`` (``root`` defaults to :func:`kltools.paths.suite_root`)::

    tokenizer/  data/  texts/analysis.jsonl  FINGERPRINT
    <profile>-<size>[-seed<k>]/stepS/...   run.json  metrics.json  weight_distances.json
    <profile>-<parent>-ft-<domain>-<method>/  (config.json, model.safetensors, lineage.json)
    <profile>-<base>-q-<scheme>/              (config.json, model.safetensors, quantization.json)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError
from kltools.hashing import sha256_file
from kltools.paths import suite_root
from kltools.suite.profiles import (
    DEFAULT_SUITE,
    Profile,
    Unit,
    get_profile,
    plan,
    plan_digest,
    unit_digest,
)


def profile_root(profile: str | Profile, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/<profile>``; ``root`` defaults to ``suite_root()`` (``$KLTOOLS_SUITE_ROOT``)."""
    p = get_profile(profile)
    base = Path(root) if root is not None else suite_root()
    return base / p.name


RECORDS = {"run": "run.json", "finetune": "lineage.json", "quant": "quantization.json"}


def is_built(unit: Unit, proot: Path, profile: str | Profile | None = None) -> bool:
    """Whether ``unit`` is complete under ``proot``.

    Its record (``run.json``, written last, or the record inside an atomically renamed
    variant folder) must exist and, when ``profile`` is given, carry the digest of the unit
    under the current settings (else the unit was built under other settings).
    """
    folder = proot / unit.name
    record = folder / RECORDS[unit.kind]
    if not record.is_file():
        return False
    if unit.kind != "run" and not (folder / "model.safetensors").is_file():
        return False
    if profile is None:
        return True
    try:
        return json.loads(record.read_text()).get("digest") == unit_digest(unit, profile)
    except (OSError, json.JSONDecodeError):
        return False


def _data_ready(p: Profile, proot: Path) -> bool:
    """Whether ``data/data.json`` exists and was prepared with this profile's settings."""
    from kltools.suite.profiles import data_digest

    f = proot / "data" / "data.json"
    try:
        return f.is_file() and json.loads(f.read_text()).get("digest") == data_digest(p)
    except (OSError, json.JSONDecodeError):
        return False


def fingerprint(profile: str | Profile, root: str | os.PathLike[str] | None = None) -> str:
    """sha256 over the plan, the prepared data and every built unit's file hashes.

    Runs contribute their ``run.json`` (which lists the sha256 of every checkpoint, of
    ``metrics.json`` and ``weight_distances.json``); variants their weights and records.
    Units not built contribute ``"missing"``, so the fingerprint changes when they appear.
    """
    p = get_profile(profile)
    proot = profile_root(p, root)
    items: dict[str, Any] = {"plan": plan_digest(p)}
    for rel in ("data/data.json", "tokenizer/tokenizer.json", "texts/analysis.jsonl"):
        f = proot / rel
        items[rel] = sha256_file(f) if f.is_file() else "missing"
    for unit in plan(p):
        folder = proot / unit.name
        if not is_built(unit, proot, p):
            items[unit.name] = "missing"
        elif unit.kind == "run":
            items[unit.name] = sha256_file(folder / "run.json")
        else:
            record = "lineage.json" if unit.kind == "finetune" else "quantization.json"
            items[unit.name] = [
                sha256_file(folder / "model.safetensors"),
                sha256_file(folder / record),
            ]
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def _execute(kind: str, unit: Unit, profile: Profile, proot: str, position: int) -> dict:
    """Build one unit (runs in a worker process)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = Path(proot)
    if kind == "run":
        from kltools.suite.train import train_run

        return train_run(unit, profile, root, position)
    if kind == "finetune":
        from kltools.suite.finetune import finetune

        return finetune(unit, profile, root, position)
    from kltools.suite.quantize import quantize_unit

    return quantize_unit(unit, profile, root)


def _worker_init() -> None:
    """Pin BLAS/OpenMP to one thread before torch is imported in the worker."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def build(
    profile: str | Profile = DEFAULT_SUITE,
    root: str | os.PathLike[str] | None = None,
    jobs: int = 2,
    *,
    verbose: bool = True,
) -> dict[str, Any]:
    """Build whatever of the suite is missing; reuse what exists.

    Parameters
    ----------
    profile : str or Profile
        ``"tiny"`` (default) or ``"smoke"``.
    root : path, optional
        Suite base folder (the profile goes to ``<root>/<profile>``); default
        :func:`kltools.paths.suite_root`.
    jobs : int
        Worker processes (each uses one torch thread). ``1`` builds in this process.
    verbose : bool
        Print one line per built unit to stderr.

    Returns
    -------
    dict
        ``built`` (unit names built now), ``skipped`` (already there), ``fingerprint``,
        ``seconds``.
    """
    p = get_profile(profile)
    if int(jobs) < 1:
        raise KLToolsError(f"suite build: --jobs must be >= 1 (got {jobs})")
    t0 = time.time()
    proot = profile_root(p, root)
    units = plan(p)
    todo = [u for u in units if not is_built(u, proot, p)]
    data_ready = _data_ready(p, proot)
    fp_file = proot / "FINGERPRINT"
    if not todo and data_ready:
        fp = fingerprint(p, root)
        if not fp_file.is_file() or fp_file.read_text().strip() != fp:
            fp_file.write_text(fp + "\n")
        return {
            "built": [],
            "skipped": [u.name for u in units],
            "fingerprint": fp,
            "seconds": time.time() - t0,
        }
    proot.mkdir(parents=True, exist_ok=True)
    from kltools.suite.data import prepare

    with _exclusive(proot / ".build.lock", p.name, verbose):
        # another build may have finished units while this one waited for the lock
        todo = [u for u in units if not is_built(u, proot, p)]
        if verbose and not _data_ready(p, proot):
            print(
                f"suite {p.name}: preparing tokenizer, token pools and analysis texts",
                file=sys.stderr,
            )
        prepare(p, proot)
        built = _run_units(p, proot, todo, int(jobs), verbose)
        fp = fingerprint(p, root)
        fp_file.write_text(fp + "\n")
    return {
        "built": built,
        "skipped": [u.name for u in units if u.name not in built],
        "fingerprint": fp,
        "seconds": time.time() - t0,
    }


@contextmanager
def _exclusive(lock_path: Path, name: str, verbose: bool) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``: two builds of one folder take turns."""
    import fcntl

    with lock_path.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose:
                print(
                    f"suite {name}: waiting for another build of {lock_path.parent}",
                    file=sys.stderr,
                )
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_units(p: Profile, proot: Path, todo: list[Unit], jobs: int, verbose: bool) -> list[str]:
    """Run the units of ``todo`` in dependency order, ``jobs`` at a time."""
    pending = {u.name: u for u in todo}
    done: list[str] = []

    def ready() -> list[Unit]:
        out = [u for u in pending.values() if all(d not in pending for d in u.deps)]
        return sorted(out, key=lambda u: -u.cost())

    def report(unit: Unit, seconds: float) -> None:
        done.append(unit.name)
        if verbose:
            print(f"suite {p.name}: built {unit.name} ({seconds:.1f} s)", file=sys.stderr)

    if jobs == 1:
        import torch

        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:  # one torch thread, as in the workers; restored afterwards
            while pending:
                unit = ready()[0]
                t = time.time()
                _execute(unit.kind, unit, p, str(proot), 0)
                del pending[unit.name]
                report(unit, time.time() - t)
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)
        return done
    running: dict[Future, tuple[Unit, int, float]] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
        try:
            while pending:
                busy = {u.name for u, _, _ in running.values()}
                slots = sorted(set(range(jobs)) - {s for _, s, _ in running.values()})
                for unit in ready():
                    if not slots:
                        break
                    if unit.name in busy:
                        continue
                    slot = slots.pop(0)
                    fut = pool.submit(_execute, unit.kind, unit, p, str(proot), slot)
                    running[fut] = (unit, slot, time.time())
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    unit, _, t = running.pop(fut)
                    fut.result()  # re-raise a worker's error here
                    del pending[unit.name]
                    report(unit, time.time() - t)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
    return done


def _checkpoint_entry(unit: Unit, p: Profile, proot: Path, step: int) -> dict[str, Any]:
    folder = proot / unit.name / f"step{step}"
    prm = unit.params
    return {
        "name": unit.name,
        "spec": f"{unit.name}@step{step}",
        "path": str(folder),
        "profile": p.name,
        "kind": "checkpoint",
        "size": prm["size"],
        "seed": prm["seed"],
        "step": step,
        "final": step == p.total_steps,
        "variant": None,
        "parent": None,
        "built": is_built(unit, proot, p) and (folder / "model.safetensors").is_file(),
        "n_params": prm["n_params"],
        "n_nonembedding_params": prm["n_nonembedding_params"],
    }


def _variant_entry(unit: Unit, p: Profile, proot: Path) -> dict[str, Any]:
    prm = unit.params
    entry: dict[str, Any] = {
        "name": unit.name,
        "spec": unit.name,
        "path": str(proot / unit.name),
        "profile": p.name,
        "kind": unit.kind,
        "size": prm["size"],
        "seed": prm["seed"],
        "step": None,
        "final": True,
        "variant": None,
        "parent": prm["parent"],
        "built": is_built(unit, proot, p),
        "n_params": prm["n_params"],
        "n_nonembedding_params": prm["n_nonembedding_params"],
    }
    if unit.kind == "finetune":
        entry.update(
            variant=f"ft-{prm['method']}",
            method=prm["method"],
            domain=prm["domain"],
            generation=prm["generation"],
        )
    else:
        entry.update(variant=prm["scheme"], scheme=prm["scheme"])
    return entry


def list_models(
    profile: str | Profile = DEFAULT_SUITE, root: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The suite's catalogue: one dict per model (every checkpoint of every run, every variant).

    Keys: ``name``, ``spec`` (what :func:`kltools.models.resolve_model` takes: ``NAME@stepS``
    for checkpoints, ``NAME`` for variants), ``path``, ``profile``, ``kind`` (``checkpoint``,
    ``finetune``, ``quant``), ``size``, ``seed``, ``step`` (None for variants), ``final``,
    ``variant`` (None, ``ft-full``/``ft-lora``, or the quantization scheme), ``parent``,
    ``built``, ``n_params``, ``n_nonembedding_params``; fine-tunes add ``method``,
    ``domain``, ``generation``; quantized copies add ``scheme``.
    """
    p = get_profile(profile)
    proot = profile_root(p, root)
    out: list[dict[str, Any]] = []
    for unit in plan(p):
        if unit.kind == "run":
            out.extend(_checkpoint_entry(unit, p, proot, s) for s in unit.params["steps"])
        else:
            out.append(_variant_entry(unit, p, proot))
    return out
