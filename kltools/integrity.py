"""Are the checkpoints what they claim to be? Copies, revisions without weights, missing vectors.

The hub is known to serve wrong Pythia checkpoints (public reports on EleutherAI/pythia):
branches of ``pythia-2.8b`` that are byte copies of ``main``, ``step0`` = ``step1`` (=
``step2``) for every size, PolyPythia revisions without weights. Two copies of one checkpoint
have a KL of exactly 0, so a pair of copies silently enters a distribution. :func:`audit`
looks for them with whatever evidence a profile's source has, and returns one tidy table of
findings (:data:`COLUMNS`):

- **vectors** (every store, extracted or imported): a checkpoint whose stored log-likelihood
  vector is bit-identical (as float32) to another checkpoint's of the same run is a ``copy``;
- **weights**: the weight files of each checkpoint, by content hash, compared within a run.
  A hub spec (``org/name@stepN``) is read from the Hugging Face cache without hashing
  anything: a snapshot file links to ``blobs/<etag>`` and the etag of a git-LFS file (every
  ``*.safetensors`` and ``*.bin``) is the sha256 of its content. A cached snapshot without a
  weight file is a revision with ``no weights``. With the hub online, a revision the cache
  lacks is read from the hub's file listing (``lfs.sha256``). A suite or local checkpoint's
  weight files are small and are hashed;
- **store**: a checkpoint of a run that the store lacks, or holds with NaN (the release's
  ``None`` entries), is a ``missing vector``.

Identical checkpoints form a group; every member but one is reported as a copy of that one
(``same_as``): the run's final checkpoint when it is in the group (the hub's known failure is
final weights served on earlier branches), else the earliest. :func:`drop_copies` sets the
copies to NaN, so the pairs that would include them disappear like an excluded checkpoint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import xarray as xr

    from kltools.sources import Run

__all__ = [
    "COLUMNS",
    "FINDINGS",
    "Weights",
    "audit",
    "checkpoint_weights",
    "copies_of",
    "drop_copies",
    "group_copies",
    "listing_weights",
    "missing_vectors",
    "note",
    "summary",
    "vector_copies",
    "weight_audit",
]

#: what the audit can find
FINDINGS: tuple[str, ...] = ("copy", "no weights", "missing vector")
#: the columns of :func:`audit`'s table (``check``: the evidence it came from)
COLUMNS: tuple[str, ...] = ("run", "step", "finding", "same_as", "evidence", "check")
#: suffixes of weight files (the hub stores them with git LFS: etag = sha256)
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin")


@dataclass(frozen=True)
class Weights:
    """The weight files of one checkpoint, by content.

    Attributes
    ----------
    files : tuple of (str, str)
        ``(file name, sha256)`` of each weight file, sorted by name; empty: the checkpoint has
        no weight file.
    where : str
        Where the hashes come from: ``hub cache`` (blob names), ``hub`` (the hub's listing)
        or ``files`` (hashed here).
    """

    files: tuple[tuple[str, str], ...]
    where: str

    @property
    def key(self) -> frozenset[str]:
        """The content identity: the set of the files' sha256."""
        return frozenset(sha for _, sha in self.files)

    def describe(self) -> str:
        """The files in words, for a finding's evidence."""
        shown = ", ".join(f"{name} {sha[:12]}…" for name, sha in self.files[:2])
        more = f" and {len(self.files) - 2} more" if len(self.files) > 2 else ""
        return f"{shown}{more}"


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}).astype({"step": "int64"})


def _frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    rows = list(rows)
    if not rows:
        return _empty()
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out["step"] = out["step"].astype("int64")
    return out


def _label(run: str, step: int) -> str:
    return f"{run}@step{int(step)}"


# --------------------------------------------------------------------------- grouping


def group_copies(keys: Mapping[int, Hashable], final_step: int | None = None) -> dict[int, int]:
    """``{step: step it duplicates}`` of the checkpoints of one run whose keys are equal.

    Parameters
    ----------
    keys : mapping
        ``{step: content key}`` (a vector's bytes hash, a set of weight hashes).
    final_step : int, optional
        The run's final step: a group holding it is reported as copies of it; any other group
        as copies of its earliest step.
    """
    groups: dict[Hashable, list[int]] = {}
    for step in sorted(keys):
        groups.setdefault(keys[step], []).append(int(step))
    out: dict[int, int] = {}
    for steps in groups.values():
        if len(steps) < 2:
            continue
        keep = final_step if final_step in steps else steps[0]
        out.update({t: keep for t in steps if t != keep})
    return out


# --------------------------------------------------------------------------- vectors


def _vector_keys(da: xr.DataArray) -> dict[int, bytes]:
    """``{step: sha256 of the float32 vector}`` of a run's finite vectors ``(step, text)``."""
    values = np.asarray(da.values, dtype=np.float32)
    steps = [int(t) for t in da["step"].values]
    return {
        t: hashlib.sha256(np.ascontiguousarray(v).tobytes()).digest()
        for t, v in zip(steps, values)
        if np.isfinite(v).all()
    }


def vector_copies(loglik: xr.DataArray, runs: Sequence[Run]) -> pd.DataFrame:
    """Checkpoints whose log-likelihood vector equals another checkpoint's of the same run.

    ``loglik``: a store's ``(model, step, text)`` grid (NaN where a vector is missing); the
    comparison is bit for bit after conversion to float32 (what the store holds).
    """
    rows = []
    held = {str(m) for m in loglik["model"].values}
    steps_held = {int(t) for t in loglik["step"].values}
    for run in runs:
        if run.model not in held:
            continue
        steps = [t for t in run.steps if t in steps_held]
        da = loglik.sel(model=run.model, step=steps)
        n_text = da.sizes["text"]
        for t, orig in group_copies(_vector_keys(da), max(run.steps)).items():
            rows.append(
                {
                    "run": run.model,
                    "step": t,
                    "finding": "copy",
                    "same_as": _label(run.model, orig),
                    "evidence": f"identical log-likelihood vector (float32, {n_text} texts)",
                    "check": "vectors",
                }
            )
    return _frame(rows)


def missing_vectors(loglik: xr.DataArray, runs: Sequence[Run]) -> pd.DataFrame:
    """Checkpoints of the runs that the store lacks or holds with NaN.

    Only the steps of the store's ``step`` coordinate are asked for (a store restricted to
    some steps lacks nothing else); a step a run excludes is not one of its steps.
    """
    rows = []
    held = {str(m) for m in loglik["model"].values}
    steps_held = [int(t) for t in loglik["step"].values]
    for run in runs:
        wanted = [t for t in steps_held if t in set(run.steps)]
        if run.model not in held:
            rows += [
                {"run": run.model, "step": t, "evidence": "the store has no vector of this run"}
                for t in wanted
            ]
            continue
        bad = ~np.isfinite(np.asarray(loglik.sel(model=run.model, step=wanted).values))
        for t, row in zip(wanted, bad):
            if row.all():
                rows.append({"run": run.model, "step": t, "evidence": "the store has no vector"})
            elif row.any():
                rows.append(
                    {
                        "run": run.model,
                        "step": t,
                        "evidence": f"the vector is NaN for {int(row.sum())} of {row.size} texts",
                    }
                )
    return _frame(
        {**r, "finding": "missing vector", "same_as": None, "check": "store"} for r in rows
    )


# --------------------------------------------------------------------------- weights


def _is_hub_spec(spec: str) -> bool:
    """A hub id (``org/name[@rev]``) that is not a local path (suite names hold no ``/``)."""
    base = spec.rsplit("@", 1)[0]
    return "/" in base and not Path(base).expanduser().exists()


def _weight_files(names: Iterable[str]) -> list[str]:
    """The weight files among ``names``: the safetensors files if any, else the ``.bin`` ones
    (transformers loads safetensors first; a cache may hold one format only)."""
    names = sorted(names)
    st = [n for n in names if n.endswith(".safetensors")]
    return st or [n for n in names if n.endswith(".bin")]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached_weights(repo: str, revision: str, cache: str | os.PathLike[str]) -> Weights | None:
    """A revision's weights from a hub cache, by blob name; None if the cache lacks it.

    A snapshot file is a link to ``blobs/<etag>``, the etag of an LFS file its sha256. A
    cache written without links (copies) is hashed.
    """
    from kltools.rehearsal.hubcache import repo_folder

    base = repo_folder(cache, repo)
    ref = base / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snap = base / "snapshots" / commit
    if not snap.is_dir():
        return None
    files = []
    for name in _weight_files(p.name for p in snap.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        path = snap / name
        sha = Path(os.readlink(path)).name if path.is_symlink() else _sha256(path)
        files.append((name, sha))
    return Weights(tuple(files), "hub cache")


def listing_weights(info: Any) -> Weights:
    """The weights of a revision from the hub's listing (a ``huggingface_hub.ModelInfo``
    fetched with ``files_metadata=True``): each LFS weight file's ``lfs.sha256``."""
    sha = {
        s.rfilename: s.lfs.sha256
        for s in info.siblings or []
        if s.lfs is not None and s.rfilename.endswith(WEIGHT_SUFFIXES)
    }
    names = _weight_files(n for n in sha if "/" not in n)
    return Weights(tuple((n, sha[n]) for n in names), "hub")


def _hub_weights(repo: str, revision: str) -> Weights | None:
    """A revision's weights from the hub (needs the network); None when it cannot be asked."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except Exception:  # network errors of every flavour: the revision is simply not checked
        return None
    return listing_weights(info)


def checkpoint_weights(spec: str, *, online: bool | None = None) -> Weights | None:
    """The weight files of one checkpoint spec, or None when they cannot be read.

    Hub specs: from the Hugging Face cache (``huggingface_hub.constants.HF_HUB_CACHE``); when
    the cache lacks the revision, or its snapshot holds no weight file, and ``online`` (default:
    unless ``HF_HUB_OFFLINE``), from the hub's listing. Suite and local checkpoints: their
    weight files, hashed.
    """
    from kltools.errors import KLToolsError
    from kltools.models import _hub_offline, resolve_model

    if _is_hub_spec(spec):
        from huggingface_hub import constants

        repo, _, rev = spec.partition("@")
        rev = rev or "main"
        found = _cached_weights(repo, rev, constants.HF_HUB_CACHE)
        if online is None:
            online = not _hub_offline()
        if online and (found is None or not found.files):
            found = _hub_weights(repo, rev) or found
        return found
    try:
        folder = Path(resolve_model(spec).path_or_id)
    except KLToolsError:
        return None
    names = _weight_files(p.name for p in folder.iterdir() if p.is_file())
    return Weights(tuple((n, _sha256(folder / n)) for n in names), "files")


def weight_audit(runs: Sequence[Run], *, online: bool | None = None) -> pd.DataFrame:
    """Copies (identical weight files) and revisions without weights, run by run.

    The table has :data:`COLUMNS`; its ``attrs["checked"]`` counts the checkpoints whose
    weights could be read (a checkpoint that cannot be read is not checked). Read in 8
    threads: asking the hub for many revisions is network-bound.
    """
    from concurrent.futures import ThreadPoolExecutor

    rows, checked = [], 0
    asked = [(run, t) for run in runs for t in run.steps]
    with ThreadPoolExecutor(max_workers=8) as pool:  # the hub's listings are network-bound
        read = list(
            pool.map(lambda rt: checkpoint_weights(rt[0].spec(rt[1]), online=online), asked)
        )
    found = {(run.model, t): w for (run, t), w in zip(asked, read)}
    for run in runs:
        weights = {t: found[(run.model, t)] for t in run.steps}
        weights = {t: w for t, w in weights.items() if w is not None}
        checked += len(weights)
        for t, w in weights.items():
            if not w.files:
                where = "the cached snapshot" if w.where == "hub cache" else "the checkpoint"
                if w.where == "hub":
                    where = "the hub's listing"
                rows.append(
                    {
                        "run": run.model,
                        "step": t,
                        "finding": "no weights",
                        "same_as": None,
                        "evidence": f"{where} of {run.spec(t)} holds no *.safetensors or *.bin file",
                        "check": "weights",
                    }
                )
        keys = {t: w.key for t, w in weights.items() if w.files}
        for t, orig in group_copies(keys, max(run.steps)).items():
            w = weights[t]
            what = {
                "hub cache": "same weight blob sha256 in the hub cache",
                "hub": "same weight file sha256 on the hub",
                "files": "identical weight file sha256",
            }[w.where]
            rows.append(
                {
                    "run": run.model,
                    "step": t,
                    "finding": "copy",
                    "same_as": _label(run.model, orig),
                    "evidence": f"{what}: {w.describe()}",
                    "check": "weights",
                }
            )
    out = _frame(rows)
    out.attrs["checked"] = checked
    return out


# --------------------------------------------------------------------------- the audit


def audit(
    loglik: xr.DataArray | None,
    runs: Sequence[Run],
    *,
    weights: bool = True,
    online: bool | None = None,
) -> pd.DataFrame:
    """Every finding about the checkpoints of ``runs``: one row per (checkpoint, evidence).

    Parameters
    ----------
    loglik : xarray.DataArray or None
        The store's ``(model, step, text)`` grid (None: no vector checks).
    runs : sequence of Run
        The runs and their steps (:func:`kltools.sources.pretraining_runs`).
    weights : bool
        Also compare the checkpoints' weight files (where the source has them).
    online : bool, optional
        Ask the hub for revisions the cache lacks (default: unless ``HF_HUB_OFFLINE``).

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, ordered by run, step and finding; ``attrs``: ``vectors`` (vectors
        compared), ``weights`` (checkpoints whose weights were read), ``checkpoints`` (asked).
    """
    parts = []
    n_vectors = 0
    if loglik is not None:
        parts += [vector_copies(loglik, runs), missing_vectors(loglik, runs)]
        held = {str(m) for m in loglik["model"].values}
        steps = {int(t) for t in loglik["step"].values}
        for run in runs:
            if run.model in held:
                wanted = [t for t in run.steps if t in steps]
                ok = np.isfinite(loglik.sel(model=run.model, step=wanted)).all("text")
                n_vectors += int(ok.sum())
    n_weights = 0
    if weights:
        w = weight_audit(runs, online=online)
        n_weights = int(w.attrs["checked"])
        parts.append(w)
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else _empty()
    order = {r.model: i for i, r in enumerate(runs)}
    out = (
        out.assign(
            _run=out["run"].map(order),
            _finding=out["finding"].map({f: i for i, f in enumerate(FINDINGS)}),
        )
        .sort_values(["_run", "step", "_finding", "check"], kind="stable")
        .drop(columns=["_run", "_finding"])
        .reset_index(drop=True)
    )
    out.attrs = {
        "vectors": n_vectors,
        "weights": n_weights,
        "checkpoints": sum(len(r.steps) for r in runs),
    }
    return out


def copies_of(findings: pd.DataFrame) -> list[tuple[str, int]]:
    """The distinct ``(run, step)`` checkpoints the findings call copies."""
    f = findings[findings["finding"] == "copy"]
    return list(dict.fromkeys(zip(f["run"].astype(str), f["step"].astype(int))))


def drop_copies(loglik: xr.DataArray, findings: pd.DataFrame) -> xr.DataArray:
    """``loglik`` ``(model, step, text)`` with every copy the findings name set to NaN."""
    out = loglik.copy()
    models = {str(m) for m in out["model"].values}
    steps = {int(t) for t in out["step"].values}
    for run, step in copies_of(findings):
        if run in models and step in steps:
            out.loc[{"model": run, "step": step}] = np.nan
    return out


# --------------------------------------------------------------------------- for readers


def summary(findings: pd.DataFrame) -> pd.DataFrame:
    """A short table for a page: one row per check, what it compared and what it found."""
    a = findings.attrs
    rows = []
    checks = (
        ("log-likelihood vectors", "vectors", "copy", a.get("vectors", 0)),
        ("weight files", "weights", "copy", a.get("weights", 0)),
        ("weight files", "weights", "no weights", a.get("weights", 0)),
        ("store", "store", "missing vector", a.get("checkpoints", 0)),
    )
    for label, check, finding, compared in checks:
        hit = findings[(findings["check"] == check) & (findings["finding"] == finding)]
        shown = [f"{r}@step{t}" for r, t in zip(hit["run"], hit["step"])][:3]
        rows.append(
            {
                "evidence": label,
                "finding": finding,
                "checkpoints checked": int(compared),
                "found": len(hit),
                "for example": ", ".join(shown) + (" …" if len(hit) > 3 else ""),
            }
        )
    return pd.DataFrame(rows)


def note(findings: pd.DataFrame, *, excluded: bool) -> str:
    """One Markdown paragraph on the findings and on what the settings do with the copies."""
    a = findings.attrs
    copies = copies_of(findings)
    no_w = findings[findings["finding"] == "no weights"]
    missing = findings[findings["finding"] == "missing vector"]
    checked = (
        f"The audit compared {a.get('vectors', 0)} log-likelihood vectors and the weight files "
        f"of {a.get('weights', 0)} checkpoints, run by run."
    )
    if not copies and not len(no_w) and not len(missing):
        return (
            f"{checked} No checkpoint is a copy of another (a pair of copies would have a KL of "
            "exactly 0), every revision read has weights and no vector is missing."
        )
    parts = []
    if copies:
        runs = sorted({r for r, _ in copies})
        are = "checkpoint is a copy" if len(copies) == 1 else "checkpoints are copies"
        parts.append(
            f"**{len(copies)} {are}** of another checkpoint of their run "
            f"({', '.join(f'`{r}`' for r in runs)})"
        )
    if len(no_w):
        parts.append(f"{len(no_w)} revision{'s have' if len(no_w) > 1 else ' has'} no weights")
    if len(missing):
        n = len(missing)
        parts.append(f"{n} vector{'s are' if n > 1 else ' is'} missing (their pairs are left out)")
    text = f"{checked} " + "; ".join(parts) + "."
    if copies:
        text += (
            " The copies are left out of every pair (`exclude_copies = True`)."
            if excluded
            else " As in the authors' code, the settings keep them: a pair of two copies has a KL "
            "of exactly 0 and enters its distribution (set `exclude_copies = True` to leave "
            "the copies out)."
        )
    return text
