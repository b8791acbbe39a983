"""``build_rehearsal(root)``: train the rehearsal's models and lay them out as a hub cache.

Layout under ``root`` (default :func:`default_root`)::

    hub/                      the Hugging Face hub cache: HF_HUB_CACHE=<root>/hub
                              (or HF_HOME=<root>), models--ORG--NAME/{blobs,refs,snapshots}
    pile/rehearsal-pile.jsonl held-out suite corpus documents as Pile records
                              (``text``, ``meta.pile_set_name``): a local Pile dump
    texts/pile.jsonl          the text set: kltools.texts.pile_recipe(source=that dump)
    rehearsal.json            the manifest, written last: every repository with its revisions
                              and commits, bytes, storage dtype, architecture, lineage parent,
                              held-out losses, the step -> update map, build seconds

A build is skipped when ``rehearsal.json`` carries the same plan digest; otherwise the hub is
rebuilt in a temporary folder and renamed into place, so a killed build leaves no half hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError
from kltools.rehearsal import plan as P

FORMAT = "kltools.rehearsal/1"
#: bumped when the builder's code changes what it writes (part of the plan digest)
BUILDER_VERSION = 2
#: texts in the rehearsal's text set (full, smoke)
N_TEXTS = {False: 1000, True: 48}
#: bytes of training text per tokenizer
TOKENIZER_BYTES = {False: 1_500_000, True: 400_000}
#: tokens per training window (full: plan.TRAIN["seq_len"]; smoke: shorter, for speed)
SEQ_LEN = {False: P.TRAIN["seq_len"], True: 64}


def default_root() -> Path:
    """``$KLTOOLS_REHEARSAL_ROOT``, else ``<project root>/rehearsal-hub``."""
    from kltools.paths import project_root

    env = os.environ.get("KLTOOLS_REHEARSAL_ROOT")
    return Path(env) if env else project_root() / "rehearsal-hub"


def hub_cache(root: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache folder of a rehearsal root (what ``HF_HUB_CACHE`` must name)."""
    return Path(root if root is not None else default_root()) / "hub"


def plan_digest(smoke: bool) -> str:
    """sha256 over everything that decides the rehearsal's contents."""
    blob = json.dumps(
        {
            "format": FORMAT,
            "builder": BUILDER_VERSION,
            "smoke": smoke,
            "runs": [asdict(r) for r in P.pythia_runs(smoke)],
            "hub": [asdict(h) for h in P.hub_models(smoke)],
            "tokenizers": P.TOKENIZERS,
            "architectures": P.ARCHITECTURES,
            "train": P.TRAIN,
            "n_texts": N_TEXTS[smoke],
            "tokenizer_bytes": TOKENIZER_BYTES[smoke],
            "seq_len": SEQ_LEN[smoke],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def read_manifest(root: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The manifest of a built rehearsal, or None."""
    path = Path(root if root is not None else default_root()) / "rehearsal.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _worker_init() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _job(kind: str, item: Any, work: str, out: str) -> dict[str, Any]:
    """One training job (runs in a worker process, one torch thread)."""
    from kltools.rehearsal import train as T

    with T.torch_threads(1):
        if kind == "run":
            return T.train_pythia_run(item, work, out)
        return T.train_hub_model(item, work, out)


def _prepare(work: Path, root_tmp: Path, smoke: bool, log: Any) -> dict[str, Any]:
    """Tokenizers, token pools, the Pile-format dump and the text set."""
    import numpy as np
    from transformers import AutoTokenizer

    from kltools.rehearsal import train as T
    from kltools.texts import load_texts, pile_recipe

    train_docs, heldout_docs = T.corpus_split()
    families = list(dict.fromkeys(["neox", *sorted({h.family for h in P.hub_models(smoke)})]))
    (work / "data").mkdir(parents=True, exist_ok=True)
    seq, bs = SEQ_LEN[smoke], P.TRAIN["batch_size"]
    for fam in families:
        log(f"rehearsal: tokenizer and token pools of {fam}")
        tok_dir = T.train_family_tokenizer(
            fam, train_docs, work / "tokenizers" / fam, TOKENIZER_BYTES[smoke]
        )
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        updates = P.TOTAL_UPDATES if fam == "neox" else P.TRAIN["root_updates"]
        n_pre = updates * bs
        pre_docs = train_docs[: len(train_docs) // 2]
        np.save(work / "data" / f"{fam}-pretrain.npy", T.token_windows(tok, pre_docs, n_pre, seq))
        np.save(work / "data" / f"{fam}-heldout.npy", T.token_windows(tok, heldout_docs, 8, seq))
        rest = train_docs[len(train_docs) // 2 :]
        for domain in P.FT_DOMAINS:
            docs = [d for d in rest if d.domain == domain]
            pool = T.token_windows(tok, docs, P.TRAIN["ft_updates"] * bs, seq)
            np.save(work / "data" / f"{fam}-ft-{domain}.npy", pool)
    dump = root_tmp / "pile" / "rehearsal-pile.jsonl"
    dump.parent.mkdir(parents=True, exist_ok=True)
    with dump.open("w", encoding="utf-8") as f:
        for d in heldout_docs:
            f.write(json.dumps({"text": d.text, "meta": {"pile_set_name": d.domain}}) + "\n")
    n = N_TEXTS[smoke]
    ts = pile_recipe(n, source=dump, n_docs=len(heldout_docs))
    if len(ts) < n:
        raise KLToolsError(f"the rehearsal's Pile recipe gave {len(ts)} of {n} texts")
    (root_tmp / "texts").mkdir(parents=True, exist_ok=True)
    ts.to_jsonl(root_tmp / "texts" / "pile.jsonl")
    back = load_texts(root_tmp / "texts" / "pile.jsonl")
    return {
        "file": "texts/pile.jsonl",
        "n": len(back),
        "mean_bytes": float(back.mean_bytes),
        "sha256": back.sha256,
        "recipe": "kltools.texts.pile_recipe(source=pile/rehearsal-pile.jsonl): the paper's "
        "constants on the held-out suite corpus documents",
    }


def _run_jobs(jobs: list[tuple[str, Any, str]], work: Path, n_workers: int) -> list[dict]:
    """Run ``(kind, item, out)`` jobs, in worker processes when ``n_workers > 1``."""
    if n_workers <= 1 or len(jobs) <= 1:
        _worker_init_in_process()
        return [_job(kind, item, str(work), out) for kind, item, out in jobs]
    ctx = get_context("spawn")
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_worker_init) as pool:
        futures = [pool.submit(_job, kind, item, str(work), out) for kind, item, out in jobs]
        return [f.result() for f in futures]


def _worker_init_in_process() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def build_rehearsal(
    root: str | os.PathLike[str] | None = None,
    *,
    smoke: bool = False,
    jobs: int = 2,
    verbose: bool = True,
) -> dict[str, Any]:
    """Build the rehearsal hub (or reuse it if built with the same plan).

    A rebuild gives every revision a new commit, so it removes ``<root>/data`` (where
    ``make rehearsal-book`` keeps its stores); a store elsewhere refuses units of the old
    commits (:func:`kltools.store.prepare`).

    Parameters
    ----------
    root : path, optional
        Where to build (default :func:`default_root`); the hub cache is ``<root>/hub``.
    smoke : bool
        The small version the tests use (every Pythia run at 11 steps, one lineage).
    jobs : int
        Worker processes for training (one torch thread each).
    verbose : bool
        Progress lines on stderr.

    Returns
    -------
    dict
        The manifest (also ``<root>/rehearsal.json``), with ``built`` False when reused.
    """
    if int(jobs) < 1:
        raise KLToolsError(f"rehearsal build: --jobs must be >= 1 (got {jobs})")
    base = Path(root if root is not None else default_root()).expanduser().resolve()
    digest = plan_digest(smoke)
    old = read_manifest(base)
    if old is not None and old.get("digest") == digest and hub_cache(base).is_dir():
        return {**old, "built": False}

    def log(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    t0, cpu0 = time.time(), _cpu_seconds()
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / ".tmp-build"
    shutil.rmtree(tmp, ignore_errors=True)
    work, staging = tmp / "work", tmp / "staging"
    texts = _prepare(work, tmp, smoke, log)
    from kltools.rehearsal.hubcache import repo_folder

    runs, hubs = P.pythia_runs(smoke), P.hub_models(smoke)
    log(f"rehearsal: training {len(runs)} Pythia runs and {len(hubs)} hub models ({jobs} jobs)")
    first = [("run", r, str(repo_folder(staging, r.repo))) for r in runs]
    first += [("hub", h, str(repo_folder(staging, h.repo))) for h in hubs if h.parent is None]
    results = _run_jobs(first, work, int(jobs))
    generation = 1
    while True:
        wave = [h for h in hubs if h.generation == generation]
        if not wave:
            break
        results += _run_jobs(
            [("hub", h, str(repo_folder(staging, h.repo))) for h in wave], work, int(jobs)
        )
        generation += 1
    log("rehearsal: writing the hub cache")
    repos = _write_cache(tmp / "hub", staging, runs, hubs, {r["repo"]: r for r in results})
    shutil.rmtree(tmp / "work", ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    manifest = {
        "format": FORMAT,
        "digest": digest,
        "smoke": smoke,
        "hub": "hub",
        "texts": texts,
        "steps": list(P.rehearsal_steps(smoke)),
        "update_of_step": {str(s): P.update_of_step(s) for s in P.pythia_step_grid()},
        "repos": repos,
        "bytes": sum(r["bytes"] for r in repos.values()),
        "seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu0, 1),
        "jobs": int(jobs),
    }
    for sub in ("hub", "pile", "texts"):
        shutil.rmtree(base / sub, ignore_errors=True)
        (tmp / sub).rename(base / sub)
    if (base / "data").is_dir():  # make rehearsal-book's stores: units of the previous hub
        shutil.rmtree(base / "data")
        log("rehearsal: removed data/, the stores scored on the previous hub's commits")
    (base / "rehearsal.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    log(
        f"rehearsal: {len(repos)} repositories, "
        f"{sum(len(r['revisions']) for r in repos.values())} revisions, "
        f"{manifest['bytes'] / 2**20:.0f} MiB, {manifest['seconds']:.0f} s "
        f"({manifest['cpu_seconds']:.0f} CPU s); "
        f"HF_HUB_CACHE={base / 'hub'} HF_HUB_OFFLINE=1"
    )
    return {**manifest, "built": True}


def _write_cache(
    cache: Path,
    staging: Path,
    runs: list[P.RunPlan],
    hubs: list[P.HubPlan],
    results: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Move every staged revision folder into the cache; the manifest's ``repos`` entry."""
    from kltools.rehearsal.hubcache import repo_folder, write_snapshot

    repos: dict[str, Any] = {}
    items: list[tuple[str, dict[str, Any]]] = []
    for r in runs:
        items.append((r.repo, {"kind": "pythia-run", "size": r.size, "seed": r.seed,
                               "architecture": "GPTNeoXForCausalLM", "dtype": "float16",
                               "parent": None}))  # fmt: skip
    for h in hubs:
        cls = P.ARCHITECTURES[h.family][0].removesuffix("Config") + "ForCausalLM"
        items.append((h.repo, {"kind": "hub-model", "family": h.family, "architecture": cls,
                               "dtype": P.ARCHITECTURES[h.family][1], "parent": h.parent,
                               "generation": h.generation, "domain": h.domain}))  # fmt: skip
    for repo, info in items:
        src = repo_folder(staging, repo)
        revisions: dict[str, str] = {}
        for folder in sorted(src.iterdir(), key=lambda p: p.name):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            names = [folder.name]
            if folder.name == f"step{P.PYTHIA_FINAL_STEP}":
                names.append("main")
            commit = write_snapshot(cache, repo, folder, names)
            for n in names:
                revisions[n] = commit
        blobs = repo_folder(cache, repo) / "blobs"
        nbytes = sum(f.stat().st_size for f in blobs.iterdir())
        repos[repo] = {
            **info,
            "revisions": dict(sorted(revisions.items(), key=lambda kv: _rev_key(kv[0]))),
            "bytes": nbytes,
            "heldout_loss": results.get(repo, {}).get("heldout_loss", {}),
        }
    return repos


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished worker processes."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _rev_key(rev: str) -> tuple[int, int]:
    return (0, int(rev[4:])) if rev.startswith("step") and rev[4:].isdigit() else (1, 0)
