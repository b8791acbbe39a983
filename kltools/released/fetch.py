"""Downloading the authors' release, and finding the copy to use.

:func:`fetch` downloads every file of the layout over HTTPS from the raw-file host at the
pinned commit. Each file goes to ``<file>.part`` first, resumed with an HTTP ``Range`` request
when a ``.part`` is already there (an interrupted download, in this run or an earlier one), and
is renamed to its final name only when complete, so no file is ever half-written under its
name. A download that turns out to be a Git LFS pointer is fetched again from the LFS media
host and checked against the pointer's sha256 and size. ``MANIFEST.json`` is written at the end.

:func:`release_dir` finds the copy to use: ``$KLTOOLS_RELEASED_DIR`` (a folder the user
already has), else ``<data root>/released/kl-scale-data``, downloaded there on first use.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError
from kltools.released.layout import ALL_FILES
from kltools.released.manifest import (
    FOLDER,
    MANIFEST,
    MEDIA_BASE,
    PINNED_COMMIT,
    RAW_BASE,
    REPOSITORY,
    _now,
    ensure_manifest,
    is_lfs_pointer,
    media_url,
    raw_url,
    read_manifest,
    sha256_file,
    verify,
    write_manifest,
)

__all__ = ["ENV", "default_dir", "fetch", "release_dir"]

#: names a release directory the user already has
ENV = "KLTOOLS_RELEASED_DIR"
_CHUNK = 1 << 20
_ATTEMPTS = 4
_TIMEOUT_S = 60


def default_dir() -> Path:
    """Where a download goes by default: ``<data root>/released/kl-scale-data``."""
    from kltools.paths import data_root

    return data_root("released") / "kl-scale-data"


class _Offline(Exception):
    pass


@contextlib.contextmanager
def _bar(enabled: bool, name: str, total: int | None, done: int) -> Iterator[Callable[[int], Any]]:
    if not enabled:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=done,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        file=sys.stderr,
        leave=False,
    )
    try:
        yield bar.update
    finally:
        bar.close()


def _total_of(resp: Any, start: int) -> int | None:
    """Full file size from ``Content-Range`` (206) or ``Content-Length`` (200)."""
    rng = resp.headers.get("Content-Range")
    if rng:
        m = re.match(r"bytes \d+-\d+/(\d+)", rng)
        if m:
            return int(m.group(1))
    length = resp.headers.get("Content-Length")
    if length is None:
        return None
    return int(length) + (start if resp.status == 206 else 0)


def _download(url: str, part: Path, name: str, progress: bool) -> int:
    """Download ``url`` into ``part``, resuming what is there; return the file's size."""
    last: Exception | None = None
    for _ in range(_ATTEMPTS):
        start = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "kltools"})
        if start:
            req.add_header("Range", f"bytes={start}-")
        try:
            resp = urllib.request.urlopen(req, timeout=_TIMEOUT_S)  # noqa: S310 - https URLs
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the .part is already whole
                return start
            raise KLToolsError(f"{name}: {url} answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if last is None:  # unreachable from the start: offline
                raise _Offline(str(getattr(exc, "reason", exc))) from None
            last = exc
            continue
        with resp:
            if start and resp.status != 206:  # the server ignored the range: start over
                start = 0
            total = _total_of(resp, start)
            mode = "ab" if start else "wb"
            try:
                with open(part, mode) as fh, _bar(progress, name, total, start) as advance:
                    while block := resp.read(_CHUNK):
                        fh.write(block)
                        advance(len(block))
            except (OSError, http.client.HTTPException) as exc:  # a dropped connection
                last = exc
                continue
        size = part.stat().st_size
        if total is not None and size < total:
            last = ConnectionError(f"{size} of {total} bytes")
            continue
        if total is not None and size > total:
            part.unlink()
            raise KLToolsError(f"{name}: got {size} bytes from {url}, more than its {total}")
        return size
    raise KLToolsError(
        f"{name}: the download from {url} kept breaking off ({last}); rerun kltools released "
        "fetch to resume it"
    )


def _lfs_pointer(path: Path) -> tuple[str, int]:
    """The (sha256, size) a Git LFS pointer file names."""
    text = path.read_text(encoding="ascii", errors="replace")
    oid = re.search(r"^oid sha256:([0-9a-f]{64})$", text, re.M)
    size = re.search(r"^size (\d+)$", text, re.M)
    if not oid or not size:
        raise KLToolsError(f"{path.name}: a Git LFS pointer without an oid and size")
    return oid.group(1), int(size.group(1))


def _fetch_one(
    name: str, dest: Path, commit: str, raw_base: str, media_base: str, progress: bool
) -> dict[str, Any]:
    final = dest / name
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    url = raw_url(name, commit, raw_base)
    _download(url, part, name, progress)
    if is_lfs_pointer(part):
        oid, size = _lfs_pointer(part)
        part.unlink()
        url = media_url(name, commit, media_base)
        try:
            _download(url, part, name, progress)
        except _Offline as exc:
            raise KLToolsError(f"{name}: cannot reach {url} ({exc}) for the Git LFS file") from None
        got_size, got = part.stat().st_size, sha256_file(part)
        if (got, got_size) != (oid, size):
            part.unlink()
            raise KLToolsError(
                f"{name}: the LFS file from {url} has {got_size} bytes and sha256 {got[:12]}…, "
                f"its pointer names {size} bytes and {oid[:12]}…; fetch again"
            )
    entry = {
        "path": name,
        "size": part.stat().st_size,
        "sha256": sha256_file(part),
        "url": url,
        "date": _now(),
    }
    os.replace(part, final)
    return entry


def _offline_message(dest: Path, commit: str, why: str) -> str:
    return (
        f"the authors' release is not here and cannot be downloaded ({why}): download the "
        f"folder {FOLDER} of github.com/{REPOSITORY} at commit {commit[:12]} (Git LFS files "
        f"included) into {dest}, or set {ENV} to a folder holding it"
    )


def fetch(
    to: Any = None,
    commit: str = PINNED_COMMIT,
    progress: bool = True,
    *,
    raw_base: str | None = None,
    media_base: str | None = None,
    files: tuple[str, ...] = ALL_FILES,
) -> Path:
    """Download the release into ``to`` (default :func:`default_dir`) and write its manifest.

    Files already complete in ``to`` (listed in an earlier manifest of the same commit and
    passing its check) are kept; interrupted ones are resumed. ``raw_base`` and
    ``media_base`` name the hosts (default :data:`~kltools.released.manifest.RAW_BASE` and
    ``MEDIA_BASE``; tests point them at a local server).

    Returns
    -------
    pathlib.Path
        The release directory, verified.

    Raises
    ------
    KLToolsError
        Offline (one line: what to download and where to put it), an HTTP error, a download
        that keeps breaking off, or an LFS file that does not match its pointer.
    """
    raw_base = raw_base or RAW_BASE
    media_base = media_base or MEDIA_BASE
    dest = Path(to) if to is not None else default_dir()
    dest.mkdir(parents=True, exist_ok=True)
    old = read_manifest(dest)
    kept: dict[str, dict[str, Any]] = {}
    if old is not None and old.get("commit") == commit:
        for entry in old["files"]:
            p = dest / entry["path"]
            if p.is_file() and p.stat().st_size == entry["size"]:
                if sha256_file(p) == entry["sha256"]:
                    kept[entry["path"]] = entry
    entries = []
    for name in files:
        if name in kept:
            entries.append(kept[name])
            continue
        try:
            entries.append(_fetch_one(name, dest, commit, raw_base, media_base, progress))
        except _Offline as exc:
            raise KLToolsError(_offline_message(dest, commit, str(exc))) from None
    write_manifest(dest, entries, commit=commit, origin="download")
    verify(dest)
    return dest


def release_dir(*, download: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """The release directory to use, checked against its manifest.

    ``$KLTOOLS_RELEASED_DIR`` when set (a copy the user has: it gets a manifest on first use),
    else :func:`default_dir`, downloaded there when it has no manifest yet (``download``).
    """
    env = os.environ.get(ENV)
    if env:
        d = Path(env).expanduser()
        if not d.is_dir():
            raise KLToolsError(
                f"{ENV}={env} is not a folder; point it at the release's data folder"
            )
        ensure_manifest(d, log=log)
        return d
    d = default_dir()
    if (d / MANIFEST).is_file():
        verify(d)
        return d
    if not download:
        raise KLToolsError(
            f"the authors' release is not downloaded yet: run kltools released fetch (it puts "
            f"{FOLDER} of github.com/{REPOSITORY} at commit {PINNED_COMMIT[:12]} into {d}), or "
            f"set {ENV} to a folder holding it"
        )
    return fetch(d)
