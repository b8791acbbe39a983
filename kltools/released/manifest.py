"""``MANIFEST.json``: what a release directory holds, where it came from, and its check.

A release directory gets its manifest once, when :func:`kltools.released.fetch` has
downloaded it (``origin: download``) or, for a copy the user already had, on first use
(``origin: local copy``, commit unknown). The manifest lists every file with its size, sha256,
source URL and date; :func:`verify` checks the directory against it on every later use, so a
truncated file, a Git LFS pointer left where the file should be, a changed file or a missing
file is one clear error line rather than a wrong analysis.

The source is pinned: :data:`PINNED_COMMIT` is the commit of ``shimo-lab/modelmap`` whose
``kl-scale/data/model_info`` files were copied and checked (their sha256 are in the paper-data
notes of the project). It must be checked online before a first real download: a later commit
may have moved or replaced files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError
from kltools.released.layout import ALL_FILES, TSNE

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MEDIA_BASE",
    "PINNED_COMMIT",
    "RAW_BASE",
    "REPOSITORY",
    "REQUIRED_FILES",
    "ensure_manifest",
    "is_lfs_pointer",
    "media_url",
    "raw_url",
    "read_manifest",
    "sha256_file",
    "verify",
    "write_manifest",
]

MANIFEST = "MANIFEST.json"
FORMAT = "kltools-released-manifest/1"
REPOSITORY = "shimo-lab/modelmap"
#: the folder of the repository that holds the release
FOLDER = "kl-scale/data"
#: the commit the files are fetched from (check online before relying on it: see above)
PINNED_COMMIT = "194c5436ed01d16381b1b903d3e2feec916a534c"
RAW_BASE = "https://raw.githubusercontent.com"
MEDIA_BASE = "https://media.githubusercontent.com/media"
#: files a release directory must have (the t-SNE caches are optional: nothing reads them)
REQUIRED_FILES: tuple[str, ...] = tuple(f for f in ALL_FILES if f not in TSNE)
_LFS_MAGIC = b"version https://git-lfs"


def raw_url(path: str, commit: str = PINNED_COMMIT, base: str = RAW_BASE) -> str:
    """``<base>/shimo-lab/modelmap/<commit>/kl-scale/data/<path>``."""
    return f"{base.rstrip('/')}/{REPOSITORY}/{commit}/{FOLDER}/{path}"


def media_url(path: str, commit: str = PINNED_COMMIT, base: str = MEDIA_BASE) -> str:
    """Where GitHub serves a Git LFS file: ``<base>/shimo-lab/modelmap/<commit>/…/<path>``."""
    return f"{base.rstrip('/')}/{REPOSITORY}/{commit}/{FOLDER}/{path}"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_lfs_pointer(path: Path) -> bool:
    """Whether the file is a Git LFS pointer (a small text naming the real file's oid)."""
    with open(path, "rb") as fh:
        return fh.read(len(_LFS_MAGIC)) == _LFS_MAGIC


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The directory's manifest, or None when it has none."""
    p = Path(directory) / MANIFEST
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KLToolsError(f"{p} is not readable JSON ({exc}); delete it and fetch again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "files" not in doc:
        raise KLToolsError(f"{p} is not a kltools release manifest ({FORMAT})")
    return doc


def write_manifest(
    directory: Path,
    files: Iterable[dict[str, Any]],
    *,
    commit: str | None,
    origin: str,
) -> dict[str, Any]:
    """Write ``MANIFEST.json`` atomically (temporary file, then rename); return it."""
    d = Path(directory)
    doc = {
        "format": FORMAT,
        "repository": f"https://github.com/{REPOSITORY}",
        "folder": FOLDER,
        "commit": commit,
        "origin": origin,
        "created": _now(),
        "files": sorted(files, key=lambda f: f["path"]),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, d / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return doc


def _check_file(directory: Path, entry: dict[str, Any]) -> None:
    name = entry["path"]
    p = directory / name
    if not p.is_file():
        raise KLToolsError(
            f"{name} is missing from the release at {directory}; run kltools released fetch "
            f"--to {directory}"
        )
    size = p.stat().st_size
    if is_lfs_pointer(p) and entry.get("size", 0) != size:
        raise KLToolsError(
            f"{name} in {directory} is a Git LFS pointer, not the file; fetch the release again"
        )
    if size < entry["size"]:
        raise KLToolsError(
            f"{name} in {directory} is truncated: {size} of {entry['size']} bytes; fetch it again"
        )
    if size != entry["size"]:
        raise KLToolsError(
            f"{name} in {directory} has {size} bytes, the manifest says {entry['size']}; "
            "the file changed: fetch the release again"
        )
    digest = sha256_file(p)
    if digest != entry["sha256"]:
        raise KLToolsError(
            f"{name} in {directory}: sha256 {digest[:12]}… differs from the manifest's "
            f"{entry['sha256'][:12]}…; the file changed: fetch the release again"
        )


def verify(directory: Any) -> dict[str, Any]:
    """Check every file of a release directory against its manifest; return the manifest.

    Raises a one-line :class:`KLToolsError` for a missing manifest or file, a truncated file,
    a Git LFS pointer, or a sha256 that differs.
    """
    d = Path(directory)
    doc = read_manifest(d)
    if doc is None:
        raise KLToolsError(
            f"{d} has no {MANIFEST}; fetch the release there (kltools released fetch --to {d}) "
            "or run kltools released check on it"
        )
    listed = {f["path"] for f in doc["files"]}
    for name in REQUIRED_FILES:
        if name not in listed:
            raise KLToolsError(f"{d}/{MANIFEST} does not list {name}; fetch the release again")
    for entry in doc["files"]:
        _check_file(d, entry)
    return doc


def ensure_manifest(directory: Any, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`verify` a release directory; one without a manifest gets one from its files.

    For a copy the user already had (``KLTOOLS_RELEASED_DIR``): every required file must be
    there and none may be a Git LFS pointer; the manifest then records ``origin: local copy``
    and no commit (nothing says which commit the copy is of), and ``log`` (default: stderr)
    gets one line saying it was written.
    """
    d = Path(directory)
    if read_manifest(d) is not None:
        return verify(d)
    entries = []
    for name in ALL_FILES:
        p = d / name
        if not p.is_file():
            if name in TSNE:
                continue
            raise KLToolsError(
                f"{name} is missing from the release at {d}; copy the whole kl-scale/data "
                f"folder of github.com/{REPOSITORY} there, or run kltools released fetch --to {d}"
            )
        if is_lfs_pointer(p):
            raise KLToolsError(
                f"{name} in {d} is a Git LFS pointer, not the file; fetch it with git lfs pull "
                f"or kltools released fetch --to {d}"
            )
        entries.append(
            {
                "path": name,
                "size": p.stat().st_size,
                "sha256": sha256_file(p),
                "url": None,
                "date": _now(),
            }
        )
    doc = write_manifest(d, entries, commit=None, origin="local copy")
    (log or (lambda s: print(s, file=sys.stderr)))(
        f"kltools: {d} had no {MANIFEST}: wrote one from its {len(entries)} files (a local "
        "copy, commit unknown); later uses check the files against it"
    )
    return doc
