"""Writing a Hugging Face hub cache in its documented layout (no network involved).

The layout ``huggingface_hub`` reads (and writes after a download)::

    <cache>/models--ORG--NAME/
        blobs/<etag>                       file contents, named by their etag
        refs/<revision>                    the commit hash a branch or tag points at
        snapshots/<commit>/<path>          relative symlink -> ../../blobs/<etag>

An etag is the sha256 of the content for files stored with git LFS (weights, SentencePiece
models) and the git blob sha1 (``sha1(b"blob <size>\\0" + content)``) for the others, as on
the hub. A commit hash here is the sha1 of the repository id and the sorted (path, etag)
pairs, so it is 40 hex digits like a git commit and distinct for distinct contents.
With ``HF_HUB_CACHE=<cache>`` (or ``HF_HOME`` holding ``hub/``) and ``HF_HUB_OFFLINE=1``,
``from_pretrained(repo, revision=...)`` resolves exactly as after a download.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

#: suffixes stored with git LFS on the hub (etag = sha256)
LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pt", ".h5", ".msgpack")


def repo_folder(cache: str | os.PathLike[str], repo: str) -> Path:
    """``<cache>/models--ORG--NAME`` of a model repository id."""
    return Path(cache) / ("models--" + repo.replace("/", "--"))


def etag_of(path: Path) -> str:
    """The hub etag of a file: sha256 for LFS suffixes, else the git blob sha1."""
    if path.suffix in LFS_SUFFIXES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_of(repo: str, etags: Mapping[str, str]) -> str:
    """A 40-hex commit hash of a snapshot: sha1 over the repo id and sorted (path, etag)."""
    h = hashlib.sha1(f"kltools-rehearsal\n{repo}\n".encode())
    for rel in sorted(etags):
        h.update(f"{rel} {etags[rel]}\n".encode())
    return h.hexdigest()


def write_snapshot(
    cache: str | os.PathLike[str],
    repo: str,
    folder: str | os.PathLike[str],
    revisions: Iterable[str],
    *,
    move: bool = True,
) -> str:
    """Put the files of ``folder`` into the cache as one commit of ``repo`` and point refs at it.

    Parameters
    ----------
    cache : path
        The hub cache folder (``HF_HUB_CACHE``).
    repo : str
        ``ORG/NAME``.
    folder : path
        A model folder (``config.json``, weights, tokenizer files, ``README.md`` …); every
        regular file in it, recursively, becomes a file of the snapshot.
    revisions : iterable of str
        Branch or tag names written to ``refs/`` (``main``, ``step1000`` …).
    move : bool
        Move the files into ``blobs/`` (default) instead of copying them.

    Returns
    -------
    str
        The commit hash.
    """
    src = Path(folder)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    etags = {p.relative_to(src).as_posix(): etag_of(p) for p in files}
    commit = commit_of(repo, etags)
    base = repo_folder(cache, repo)
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    snap = base / "snapshots" / commit
    for p in files:
        rel = p.relative_to(src).as_posix()
        blob = base / "blobs" / etags[rel]
        if not blob.exists():
            tmp = blob.with_name(blob.name + ".incomplete")
            (shutil.move if move else shutil.copy2)(str(p), str(tmp))
            os.replace(tmp, blob)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, link.parent)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    for rev in revisions:
        ref = base / "refs" / rev
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return commit


def cached_revisions(cache: str | os.PathLike[str], repo: str) -> dict[str, str]:
    """``{revision: commit}`` of the refs a cached repository holds (empty if absent)."""
    refs = repo_folder(cache, repo) / "refs"
    if not refs.is_dir():
        return {}
    return {
        p.relative_to(refs).as_posix(): p.read_text().strip()
        for p in sorted(refs.rglob("*"))
        if p.is_file()
    }
