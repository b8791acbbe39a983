"""Cache keys: a chapter is executed again only when something it depends on changed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kltools.book.layout import executed_path, key_path, notebooks_dir
from kltools.hashing import sha256_file
from kltools.paths import project_root


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def notebook_source_hash(nb_path: str | Path) -> str:
    """Hash of a notebook's cells (type, source, tags); outputs and execution counts excluded."""
    import nbformat

    nb = nbformat.read(Path(nb_path), as_version=4)
    cells = [
        {
            "type": c.cell_type,
            "source": c.source,
            "tags": sorted(c.get("metadata", {}).get("tags", [])),
        }
        for c in nb.cells
    ]
    return _sha256_bytes(json.dumps(cells, sort_keys=True).encode())


def package_source_hash(root: Path | None = None) -> str:
    """Hash of every file of the ``kltools`` package (or of ``root``), bytecode caches excluded."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_file(path).encode())
    return h.hexdigest()


def _looks_like_path(value: str) -> bool:
    """Whether a string parameter is meant as a path: it has a separator or a file suffix."""
    if not value or "\n" in value or len(value) > 4096:
        return False
    return "/" in value or os.sep in value or bool(Path(value).suffix) or value.startswith("~")


def _input_paths(params: Mapping[str, Any]) -> list[Path]:
    """Existing files or folders that string parameters name: values with a ``/`` or a file
    suffix (``texts.jsonl``, ``data/x.zarr``), absolute or relative to the project root or
    to ``notebooks/`` (the chapters' working directory). Bare words (``suite``, ``cpu``) are
    never paths."""
    found: set[Path] = set()

    def visit(value: Any) -> None:
        if isinstance(value, str) and _looks_like_path(value):
            candidate = Path(value).expanduser()
            bases = [None] if candidate.is_absolute() else [project_root(), notebooks_dir()]
            for base in bases:
                p = candidate if base is None else base / candidate
                with contextlib.suppress(OSError):
                    if p.exists():
                        found.add(p.resolve())
                        return
        elif isinstance(value, Mapping):
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    visit(dict(params))
    return sorted(found)


def path_hash(path: Path) -> str:
    """Content hash of a file; for a folder, a hash of its file names, sizes and mtimes."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def source_fingerprint(profile: str) -> str | None:
    """What the profile's source reads, summarised (:func:`kltools.sources.fingerprint`: the
    suite's ``FINGERPRINT``, the release's manifest), if anything."""
    from kltools.config import Settings
    from kltools.sources import fingerprint

    return fingerprint(Settings(profile=profile))


def cache_components(
    nb_path: str | Path, params: Mapping[str, Any], profile: str
) -> dict[str, Any]:
    """What a chapter's result depends on, each part hashed: the key is a hash of this."""
    from kltools import __version__

    return {
        "notebook": notebook_source_hash(nb_path),
        "parameters": _sha256_bytes(json.dumps(dict(params), sort_keys=True, default=str).encode()),
        "profile": profile,
        "kltools_version": __version__,
        "kltools_source": package_source_hash(),
        "source_fingerprint": source_fingerprint(profile),
        "inputs": {str(p): path_hash(p) for p in _input_paths(params)},
    }


def cache_key(components: Mapping[str, Any]) -> str:
    """The cache key of a chapter: sha256 of its components."""
    return _sha256_bytes(json.dumps(dict(components), sort_keys=True).encode())


def stored_key(name: str) -> dict[str, Any] | None:
    """The key file beside chapter ``name``'s executed notebook, or None."""
    path = key_path(name)
    if not path.is_file() or not executed_path(name).is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def changed_components(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Names of the cache components that differ (``["no previous result"]`` if none stored)."""
    if not old:
        return ["no previous result"]
    before = old.get("components", {})
    return [k for k in new if before.get(k) != new[k]]
