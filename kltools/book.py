"""The executable book: papermill execution with cache keys, the Jupyter Book render, checks.

Three commands (``kltools book …``, called by ``make book`` / ``make chapter`` and CI):

- ``build --profile P [--params FILE] [--force]``: build the offline model suite (tiny/smoke),
  execute every chapter notebook found in ``notebooks/`` whose cache key changed, render.
- ``chapter NAME --params FILE``: rerun one chapter with new parameters, then render.
- ``check --profile P``: verify the rendered book (pages, errors, figures); one line per problem.

Layout (all under the project root, :func:`kltools.paths.project_root`):

=============================  =========================================================
``notebooks/NN_name.ipynb``    chapter sources (outputs stripped, one ``parameters`` cell)
``params/<profile>.yaml``      ``profile``, ``common`` and ``chapters.<name>`` parameters
``build/executed/``            executed notebooks ``NN_name.ipynb`` + cache keys
                               ``NN_name.key.json``; a failed run leaves
                               ``NN_name.partial.ipynb`` (``$KLTOOLS_BUILD_ROOT/executed``
                               when that variable is set; it must lie inside the root)
``build/figures/<name>/``      figure files a chapter saves with :func:`save_figure`
``build/_toc.yml``             the table of contents actually rendered (generated)
``_build/html/``               the rendered book (Jupyter Book 1.x)
=============================  =========================================================

Executed notebooks live in ``build/``, not ``_build/``: Jupyter Book 1.x always excludes
``_build`` from its sources and ``jupyter-book clean`` empties it.

The top-level ``_toc.yml`` is static and lists every chapter of the design; the render uses
``build/_toc.yml``, the same table filtered to chapters that have an executed notebook, so
the book builds while chapters are being written.

Notebooks run with papermill in the ``python3`` kernel of the running interpreter, with the
working directory ``notebooks/`` (as when a reader opens them in Jupyter) and the
environment variables ``KLTOOLS_ROOT``, ``KLTOOLS_PROFILE``, ``KLTOOLS_CHAPTER``,
``KLTOOLS_PARAMETER_NAMES`` and ``KLTOOLS_FIGURES_DIR``. The kernel is pinned to the running
interpreter by a kernelspec the build writes to ``build/jupyter/kernels/python3/`` and puts
first on ``JUPYTER_PATH`` (see :func:`kernel_environ`), whatever other ``python3``
kernelspecs the machine has.

A chapter notebook, for this module:

1. is ``notebooks/NN_name.ipynb`` with ``NN_name`` a value of :data:`CHAPTERS`, outputs
   stripped, kernelspec ``python3``;
2. has one code cell tagged ``parameters`` of plain assignments with literal defaults
   (``n_texts = 2000``; annotations such as ``n_texts: int = 2000`` are honoured); the
   defaults are those of the ``tiny`` profile, and ``profile = "tiny"`` is declared if the
   chapter branches on the profile;
3. calls ``show_parameters(globals())`` (from :mod:`kltools.book`) in the very next cell, so
   that the first output is the parameter table;
4. shows at least one figure inline (``book check`` requires an ``<img>`` on the page) and
   may save figure files with :func:`save_figure` into ``build/figures/<name>/``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kltools.errors import KLToolsError
from kltools.hashing import sha256_file
from kltools.paths import project_root, suite_root

#: chapter name (``make chapter CH=…``) -> notebook stem, in book order
CHAPTERS: dict[str, str] = {
    "method": "01_method",
    "trajectories": "02_trajectories",
    "consecutive": "03_consecutive",
    "seeds_sizes": "04_seeds_sizes",
    "diffusion": "05_diffusion",
    "quantization": "06_quantization",
    "floor": "07_floor",
    "finetuning": "08_finetuning",
    "layers": "09_layers",
    "scale": "10_scale",
}

#: the profiles with a parameter file in ``params/``
PROFILES: tuple[str, ...] = ("tiny", "smoke", "pythia")

#: profiles whose models come from the offline suite (built before the chapters run)
SUITE_PROFILES: tuple[str, ...] = ("tiny", "smoke")

#: keys allowed at the top level of a profile parameter file
_PROFILE_FILE_KEYS = {"profile", "description", "common", "chapters"}

#: the kernel papermill runs chapters in
KERNEL_NAME = "python3"

_TRACEBACK = "Traceback (most recent call last)"


# --------------------------------------------------------------------------- locations


def notebooks_dir() -> Path:
    """Folder of the chapter notebooks: ``<root>/notebooks``."""
    return project_root() / "notebooks"


def executed_dir() -> Path:
    """Folder of executed notebooks: ``$KLTOOLS_BUILD_ROOT/executed``, else ``<root>/build/executed``."""
    env = os.environ.get("KLTOOLS_BUILD_ROOT")
    base = Path(env).resolve() if env else project_root() / "build"
    return base / "executed"


def figures_dir(chapter: str | None = None) -> Path:
    """Folder where a chapter saves figure files (``$KLTOOLS_FIGURES_DIR`` while it runs)."""
    env = os.environ.get("KLTOOLS_FIGURES_DIR")
    if env and chapter is None:
        return Path(env)
    name = chapter or os.environ.get("KLTOOLS_CHAPTER") or "interactive"
    return executed_dir().parent / "figures" / name


def html_dir() -> Path:
    """Folder of the rendered book: ``<root>/_build/html``."""
    return project_root() / "_build" / "html"


def params_path(profile: str) -> Path:
    """The parameter file of a profile: ``<root>/params/<profile>.yaml``."""
    return project_root() / "params" / f"{profile}.yaml"


def chapter_stem(name: str) -> str:
    """The notebook stem of chapter ``name`` (``"method"`` -> ``"01_method"``); validates it."""
    if name in CHAPTERS:
        return CHAPTERS[name]
    by_stem = {stem: n for n, stem in CHAPTERS.items()}
    if name in by_stem:  # accept "03_consecutive" too
        return name
    raise KLToolsError(f"unknown chapter {name!r}; known chapters: {', '.join(CHAPTERS)}")


def chapter_name(name_or_stem: str) -> str:
    """The chapter name for a name or a notebook stem (``"01_method"`` -> ``"method"``)."""
    stem = chapter_stem(name_or_stem)
    return next(n for n, s in CHAPTERS.items() if s == stem)


def notebook_path(name: str) -> Path:
    """The source notebook of chapter ``name``."""
    return notebooks_dir() / f"{chapter_stem(name)}.ipynb"


def executed_path(name: str) -> Path:
    """The executed notebook of chapter ``name``."""
    return executed_dir() / f"{chapter_stem(name)}.ipynb"


def key_path(name: str) -> Path:
    """The cache-key file stored beside the executed notebook of chapter ``name``."""
    return executed_dir() / f"{chapter_stem(name)}.key.json"


def partial_path(name: str) -> Path:
    """Where a failed execution of chapter ``name`` leaves its partially executed notebook."""
    return executed_dir() / f"{chapter_stem(name)}.partial.ipynb"


def available_chapters() -> list[str]:
    """Names of the chapters whose notebook exists in ``notebooks/``, in book order."""
    return [name for name in CHAPTERS if notebook_path(name).is_file()]


# --------------------------------------------------------------------------- parameters


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; one-line errors for the user's mistakes."""
    p = Path(path)
    if not p.is_file():
        raise KLToolsError(f"parameter file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise KLToolsError(f"parameter file {p} is not valid YAML{where}: {problem}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KLToolsError(f"parameter file {p} must hold a mapping, not {type(doc).__name__}")
    return doc


def is_profile_file(doc: Mapping[str, Any]) -> bool:
    """Whether a parameter document is a full profile file (``common``/``chapters``) or flat."""
    return "common" in doc or "chapters" in doc


def validate_profile_doc(doc: Mapping[str, Any], source: str | Path) -> str:
    """Check the structure of a profile parameter file and return its profile name."""
    unknown = sorted(set(doc) - _PROFILE_FILE_KEYS)
    if unknown:
        raise KLToolsError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_PROFILE_FILE_KEYS))}"
        )
    profile = doc.get("profile")
    if profile not in PROFILES:
        raise KLToolsError(
            f"{source}: 'profile' must be one of {', '.join(PROFILES)}, not {profile!r}"
        )
    for key in ("common", "chapters"):
        if not isinstance(doc.get(key) or {}, dict):
            raise KLToolsError(f"{source}: '{key}' must be a mapping")
    chapters = doc.get("chapters") or {}
    bad = sorted(set(chapters) - set(CHAPTERS))
    if bad:
        raise KLToolsError(
            f"{source}: unknown chapter section(s) {', '.join(bad)}; known: {', '.join(CHAPTERS)}"
        )
    for name, section in chapters.items():
        if not isinstance(section or {}, dict):
            raise KLToolsError(f"{source}: chapters.{name} must be a mapping")
    common_profile = (doc.get("common") or {}).get("profile", profile)
    if common_profile != profile:
        raise KLToolsError(
            f"{source}: common.profile {common_profile!r} differs from profile {profile!r}"
        )
    return str(profile)


def load_profile(profile: str, path: str | Path | None = None) -> dict[str, Any]:
    """Load and validate the parameter file of ``profile`` (``params/<profile>.yaml`` by default)."""
    if profile not in PROFILES:
        raise KLToolsError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    source = Path(path) if path is not None else params_path(profile)
    doc = load_yaml_mapping(source)
    if not is_profile_file(doc):
        raise KLToolsError(f"{source}: a profile file needs 'common' and/or 'chapters' sections")
    found = validate_profile_doc(doc, source)
    if found != profile:
        raise KLToolsError(f"{source} is for profile {found!r}, not {profile!r}")
    return doc


@dataclass(frozen=True)
class DeclaredParameter:
    """A parameter declared in a notebook's ``parameters`` cell."""

    name: str
    type_name: str  # "int", "float", "str", "bool", "list", "dict", "None" (unknown)
    default: str  # the source text of the default value


def declared_parameters(nb_path: str | Path) -> dict[str, DeclaredParameter]:
    """The parameters a notebook declares in its cell tagged ``parameters`` (papermill's view)."""
    import nbformat
    import papermill

    path = Path(nb_path)
    if not path.is_file():
        raise KLToolsError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise KLToolsError(f"{path} has no cell tagged 'parameters'")
    found = papermill.inspect_notebook(str(path))
    out: dict[str, DeclaredParameter] = {}
    for name, info in found.items():
        type_name = str(info.get("inferred_type_name") or "None")
        default = str(info.get("default") or "")
        if type_name == "None":
            type_name = _literal_type(default)
        out[name] = DeclaredParameter(name, type_name, default)
    return out


def _literal_type(source: str) -> str:
    """The type name of a literal default (``"1000"`` -> ``"int"``); ``"None"`` if unknown."""
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "None"
    return "None" if value is None else type(value).__name__


def _check_type(chapter: str, name: str, value: Any, type_name: str) -> None:
    """Reject a value whose type cannot stand for the declared one (``1e3`` in YAML is a str)."""
    base = type_name.split("[")[0].strip().lower()
    ok: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "str": (str,),
        "list": (list, tuple),
        "tuple": (list, tuple),
        "dict": (dict,),
    }
    allowed = ok.get(base)
    if allowed is None or value is None:
        return
    if (base in ("int", "float") and isinstance(value, bool)) or not isinstance(value, allowed):
        raise KLToolsError(
            f"chapter {chapter!r}: parameter {name!r} should be {base}, got {value!r} "
            f"({type(value).__name__}); note YAML reads 1e3 as a string, write 1000 or 1.0e+3"
        )


def resolve_parameters(
    name: str,
    doc: Mapping[str, Any],
    declared: Mapping[str, DeclaredParameter],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters chapter ``name`` runs with.

    ``common`` (only the keys the notebook declares; ``profile`` is the file's profile), then
    ``chapters.<name>`` (every key must be declared), then ``overrides`` (a flat mapping from
    ``kltools book chapter``; every key must be declared). Values are type-checked against the
    notebook's defaults.
    """
    chapter = chapter_name(name)
    profile = doc.get("profile")
    common = {"profile": profile, **(doc.get("common") or {})}
    section = dict((doc.get("chapters") or {}).get(chapter) or {})
    extra = dict(overrides or {})
    for label, layer in (("chapters." + chapter, section), ("parameter file", extra)):
        unknown = sorted(set(layer) - set(declared))
        if unknown:
            raise KLToolsError(
                f"chapter {chapter!r}: unknown parameter(s) {', '.join(unknown)} in {label}; "
                f"the notebook declares: {', '.join(declared) or 'none'}"
            )
    params = {k: v for k, v in common.items() if k in declared}
    params.update(section)
    params.update(extra)
    for key, value in params.items():
        _check_type(chapter, key, value, declared[key].type_name)
    return params


# --------------------------------------------------------------------------- cache keys


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
    root = Path(root) if root is not None else Path(__file__).resolve().parent
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


def suite_fingerprint(profile: str) -> str | None:
    """Contents of ``suite_root(profile)/FINGERPRINT`` (written by the suite build), if any."""
    path = suite_root(profile) / "FINGERPRINT"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


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
        "suite_fingerprint": suite_fingerprint(profile),
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


# --------------------------------------------------------------------------- execution


@dataclass(frozen=True)
class ChapterRun:
    """The outcome of one chapter in a build."""

    name: str
    status: str  # "cached" | "executed" | "failed"
    seconds: float
    notebook: Path
    reason: str = ""
    error: str = ""


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (the kernel inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def kernel_environ() -> dict[str, str]:
    """Environment that makes papermill's ``python3`` kernel run this very interpreter.

    A user-level or system kernelspec named ``python3`` may point at another Python. So the
    build writes its own kernelspec, ``build/jupyter/kernels/python3/kernel.json`` with
    ``sys.executable``, and puts that folder first on ``JUPYTER_PATH`` (which Jupyter searches
    before every other kernelspec folder) while the chapters run.
    """
    try:
        from ipykernel.kernelspec import get_kernel_dict
    except ImportError:
        raise KLToolsError(
            f"ipykernel is not installed for {sys.executable}; pip install ipykernel"
        ) from None
    folder = executed_dir().parent / "jupyter"
    spec_file = folder / "kernels" / KERNEL_NAME / "kernel.json"
    spec = dict(get_kernel_dict())  # ipykernel's own spec (encryption, protocol) ...
    # ... run by this interpreter; its own log (TCP notices, a spurious KeyboardInterrupt at
    # shutdown) silenced: cell errors are in the notebook and fail the chapter anyway
    spec["argv"] = [sys.executable, *list(spec["argv"])[1:], "--IPKernelApp.log_level=CRITICAL"]
    spec["display_name"] = "Python 3 (kltools book)"
    text = json.dumps(spec, indent=1) + "\n"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    if not spec_file.is_file() or spec_file.read_text(encoding="utf-8") != text:
        spec_file.write_text(text, encoding="utf-8")
    paths = [str(folder), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    return {"JUPYTER_PATH": os.pathsep.join(dict.fromkeys(paths))}


def _tag_executed(nb_file: Path) -> None:
    """Hide the code of the parameter cells in the rendered page (the table shows the values)."""
    import nbformat

    nb = nbformat.read(nb_file, as_version=4)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        elif "parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, nb_file)


def execute_chapter(
    name: str,
    params: Mapping[str, Any],
    profile: str,
    *,
    force: bool = False,
) -> ChapterRun:
    """Execute chapter ``name`` with papermill unless its cache key is unchanged.

    On success the executed notebook and its key file replace the previous ones. On failure
    the previous result is removed (it belongs to other inputs), the partially executed
    notebook is left at :func:`partial_path`, and the run is reported as ``failed``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    src = notebook_path(name)
    out = executed_path(name)
    components = cache_components(src, params, profile)
    key = cache_key(components)
    old = stored_key(name)
    if not force and old is not None and old.get("key") == key:
        return ChapterRun(chapter_name(name), "cached", 0.0, out)
    reason = "forced" if force else ", ".join(changed_components(old, components))

    executed_dir().mkdir(parents=True, exist_ok=True)
    partial = partial_path(name)
    partial.unlink(missing_ok=True)
    figs = figures_dir(chapter_name(name))
    shutil.rmtree(figs, ignore_errors=True)  # the folder holds this run's figures only
    figs.mkdir(parents=True, exist_ok=True)
    env = {
        **kernel_environ(),
        "KLTOOLS_ROOT": str(project_root()),
        "KLTOOLS_PROFILE": profile,
        "KLTOOLS_CHAPTER": chapter_name(name),
        "KLTOOLS_PARAMETER_NAMES": ",".join(params),
        "KLTOOLS_FIGURES_DIR": str(figs),
    }
    start = time.perf_counter()
    try:
        with _environ(env):
            papermill.execute_notebook(
                str(src),
                str(partial),
                parameters=dict(params),
                kernel_name=KERNEL_NAME,
                cwd=str(notebooks_dir()),
                progress_bar=False,
                log_output=False,
            )
    except (PapermillExecutionError, RuntimeError, OSError) as exc:
        seconds = time.perf_counter() - start
        out.unlink(missing_ok=True)
        key_path(name).unlink(missing_ok=True)
        message = (
            f"{exc.ename}: {exc.evalue}"
            if isinstance(exc, PapermillExecutionError)
            else f"{type(exc).__name__}: {exc}"
        )
        return ChapterRun(
            chapter_name(name), "failed", seconds, partial, reason, " ".join(message.split())
        )
    seconds = time.perf_counter() - start
    _tag_executed(partial)
    os.replace(partial, out)
    record = {
        "key": key,
        "components": components,
        "chapter": chapter_name(name),
        "profile": profile,
        "parameters": dict(params),
        "seconds": round(seconds, 2),
        "executed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    key_path(name).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return ChapterRun(chapter_name(name), "executed", seconds, out, reason)


def build_suite(profile: str) -> str:
    """Build (or reuse) the offline model suite of ``profile`` with :func:`kltools.suite.build`."""
    if profile not in SUITE_PROFILES:
        return f"suite: not used by profile {profile!r}"
    from kltools.suite import build as build_models

    start = time.perf_counter()
    build_models(profile)
    return f"suite: {profile} ready in {time.perf_counter() - start:.1f} s"


def _report(run: ChapterRun) -> str:
    """One line per chapter for the build log."""
    if run.status == "cached":
        return f"  {run.name:<13} cached     {run.seconds:7.1f} s"
    if run.status == "executed":
        return f"  {run.name:<13} executed   {run.seconds:7.1f} s  ({run.reason})"
    return (
        f"  {run.name:<13} FAILED     {run.seconds:7.1f} s  {run.error}\n"
        f"  {'':<13} partially executed notebook: {run.notebook}"
    )


# --------------------------------------------------------------------------- rendering


def rendered_toc() -> dict[str, Any]:
    """The top-level ``_toc.yml`` as rendered now.

    Chapter entries (``…/NN_name``) are pointed at :func:`executed_dir` and kept only when the
    chapter's notebook exists in ``notebooks/`` and has an executed copy; other pages are kept
    when their file exists; parts left empty are dropped.
    """
    root = project_root()
    toc = load_yaml_mapping(root / "_toc.yml")
    stems = set(CHAPTERS.values())
    executed = executed_dir().resolve().relative_to(root).as_posix()

    def resolve(entry: Mapping[str, Any]) -> dict[str, Any] | None:
        file = entry.get("file")
        if file is None:
            return dict(entry)
        stem = Path(str(file)).name
        if stem in stems:
            name = chapter_name(stem)
            if notebook_path(name).is_file() and executed_path(name).is_file():
                return {**entry, "file": f"{executed}/{stem}"}
            return None
        base = root / str(file)
        if any(base.with_suffix(s).is_file() for s in (".md", ".ipynb", ".rst")):
            return dict(entry)
        return None

    parts = []
    for part in toc.get("parts") or []:
        chapters = [e for e in (resolve(c) for c in part.get("chapters") or []) if e is not None]
        if chapters:
            parts.append({**part, "chapters": chapters})
    out = {k: v for k, v in toc.items() if k != "parts"}
    if parts:
        out["parts"] = parts
    return out


def write_rendered_toc() -> Path:
    """Write :func:`rendered_toc` to ``build/_toc.yml`` (only when it changed); return the path."""
    path = executed_dir().parent / "_toc.yml"
    text = "# Generated by kltools book from _toc.yml; do not edit.\n" + yaml.safe_dump(
        rendered_toc(), sort_keys=False
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def render() -> float:
    """Render the book with Jupyter Book 1.x into ``_build/html``; return the seconds taken."""
    root = project_root()
    if not (root / "_config.yml").is_file():
        raise KLToolsError(f"no _config.yml in {root}")
    exe = executed_dir().resolve()
    if not exe.is_relative_to(root):
        raise KLToolsError(
            f"executed notebooks ({exe}) must lie inside the project root {root} to render"
        )
    toc = write_rendered_toc()
    log = executed_dir().parent / "jupyter-book.log"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build",
        str(root),
        "--toc",
        str(toc),
        "--builder",
        "html",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        print(tail, file=sys.stderr)
        raise KLToolsError(f"Jupyter Book render failed (exit {proc.returncode}); full log: {log}")
    warnings = len(re.findall(r"WARNING", proc.stdout + proc.stderr))
    print(f"render: {html_dir()} in {seconds:.1f} s ({warnings} Sphinx warnings; log: {log})")
    return seconds


# --------------------------------------------------------------------------- commands


def build(
    profile: str,
    params_file: str | Path | None = None,
    *,
    force: bool = False,
    do_render: bool = True,
    with_suite: bool = True,
) -> int:
    """``kltools book build``: suite, every available chapter (cached or executed), render.

    Every chapter's parameters are validated before any work starts. A failed chapter does
    not stop the others; the return code is 1 if any chapter failed, else 0.
    """
    doc = load_profile(profile, params_file)
    chapters = available_chapters()
    plan = {
        name: resolve_parameters(name, doc, declared_parameters(notebook_path(name)))
        for name in chapters
    }
    if with_suite:
        print(build_suite(profile))
    _note_strays()
    print(f"chapters ({profile}): {len(chapters)} of {len(CHAPTERS)} written")
    runs = []
    for name, params in plan.items():
        run = execute_chapter(name, params, profile, force=force)
        print(_report(run), flush=True)
        runs.append(run)
    if do_render:
        render()
    failed = [r.name for r in runs if r.status == "failed"]
    if failed:
        print(
            f"kltools book: {len(failed)} chapter(s) failed: {', '.join(failed)}", file=sys.stderr
        )
        return 1
    return 0


def chapter_parameters(
    name: str, params_file: str | Path, profile: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Profile and resolved parameters of chapter ``name`` from a full or a flat parameter file."""
    declared = declared_parameters(notebook_path(name))
    doc = load_yaml_mapping(params_file)
    if is_profile_file(doc):
        found = validate_profile_doc(doc, params_file)
        if profile is not None and profile != found:
            raise KLToolsError(f"{params_file} is for profile {found!r}, not {profile!r}")
        return found, resolve_parameters(name, doc, declared)
    chosen = profile or doc.get("profile") or os.environ.get("KLTOOLS_PROFILE") or "tiny"
    if doc.get("profile", chosen) != chosen:
        raise KLToolsError(f"{params_file} sets profile {doc['profile']!r}, not {chosen!r}")
    base = load_profile(chosen)
    overrides = {k: v for k, v in doc.items() if k != "profile"}  # it selected the base
    return chosen, resolve_parameters(name, base, declared, overrides=overrides)


def rerun_chapter(
    name: str,
    params_file: str | Path,
    *,
    profile: str | None = None,
    do_render: bool = True,
    with_suite: bool = True,
) -> int:
    """``kltools book chapter``: execute one chapter with a parameter file, then re-render.

    Other chapters' executed notebooks are left as they are. Returns 1 if the chapter failed.
    """
    stem = chapter_stem(name)
    if not notebook_path(name).is_file():
        written = ", ".join(available_chapters()) or "none yet"
        raise KLToolsError(
            f"chapter {chapter_name(name)!r} has no notebook notebooks/{stem}.ipynb (written: {written})"
        )
    chosen, params = chapter_parameters(name, params_file, profile)
    if with_suite:
        print(build_suite(chosen))
    run = execute_chapter(name, params, chosen, force=True)
    print(_report(run), flush=True)
    if do_render:
        render()
    if run.status == "failed":
        print(f"kltools book: chapter {run.name} failed", file=sys.stderr)
        return 1
    return 0


def _note_strays() -> None:
    """Mention notebooks in ``notebooks/`` that are not chapters (they are not rendered)."""
    known = {f"{stem}.ipynb" for stem in CHAPTERS.values()}
    if notebooks_dir().is_dir():
        strays = sorted(p.name for p in notebooks_dir().glob("*.ipynb") if p.name not in known)
        if strays:
            print(f"note: not chapters, not rendered: {', '.join(strays)}")


def notebook_problems(nb_file: Path, label: str) -> list[str]:
    """Error outputs and tracebacks in an executed notebook, one line each."""
    import nbformat

    nb = nbformat.read(nb_file, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                problems.append(
                    f"{label}: cell {i} raised {output.get('ename')}: {output.get('evalue')}"
                )
            elif kind == "stream" and _TRACEBACK in output.get("text", ""):
                problems.append(f"{label}: cell {i} printed a traceback ({output.get('name')})")
            elif kind in ("display_data", "execute_result"):
                text = output.get("data", {}).get("text/plain", "")
                if _TRACEBACK in (text if isinstance(text, str) else "".join(text)):
                    problems.append(f"{label}: cell {i} displays a traceback")
    return problems


def check(profile: str) -> list[str]:
    """Problems with the rendered book, one line each (empty when all is well).

    For every chapter notebook in ``notebooks/``: it was executed with ``profile``, its page is
    in ``_build/html`` and not older than its executed notebook, no cell raised or printed a
    traceback, and the page shows at least one figure (an ``<img>``).
    """
    if profile not in PROFILES:
        raise KLToolsError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    problems: list[str] = []
    html_root = html_dir()
    if not (html_root / "index.html").is_file() and not any(html_root.glob("*.html")):
        problems.append(f"book: no rendered book in {html_root}; run make book PROFILE={profile}")
    rel = executed_dir().resolve()
    for name in available_chapters():
        label = f"{chapter_stem(name)} ({name})"
        nb_file = executed_path(name)
        if not nb_file.is_file():
            problems.append(
                f"{label}: not executed (no {nb_file}); see {partial_path(name)} if it failed"
            )
            continue
        record = stored_key(name) or {}
        if record.get("profile") != profile:
            problems.append(
                f"{label}: executed with profile {record.get('profile')!r}, not {profile!r}"
            )
        problems.extend(notebook_problems(nb_file, label))
        try:
            page = html_root / nb_file.resolve().relative_to(project_root()).with_suffix(".html")
        except ValueError:
            page = html_root / rel.name / f"{chapter_stem(name)}.html"
        if not page.is_file():
            problems.append(f"{label}: missing from the rendered book ({page})")
            continue
        if page.stat().st_mtime < nb_file.stat().st_mtime:
            problems.append(
                f"{label}: rendered page is older than its executed notebook; re-render"
            )
        if "<img" not in page.read_text(encoding="utf-8", errors="replace"):
            problems.append(f"{label}: the page shows no figure (no <img> in {page.name})")
    return problems


# --------------------------------------------------------------------------- chapter helpers


def _is_plain(value: Any) -> bool:
    """Whether a value is a plain parameter value (numbers, strings, lists/dicts of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


def parameters_table(params: Mapping[str, Any]):  # -> pandas.DataFrame
    """The table of the parameters a chapter ran with, plus profile and kltools version.

    ``params`` is the parameter mapping, or the notebook's ``globals()``: when the chapter was
    executed by ``kltools book`` only the names papermill injected are taken
    (``$KLTOOLS_PARAMETER_NAMES``); interactively, every plain public value is taken.
    """
    import pandas as pd

    from kltools import __version__

    env_names = os.environ.get("KLTOOLS_PARAMETER_NAMES")
    if env_names is not None:
        names = [n for n in env_names.split(",") if n]
        missing = [n for n in names if n not in params]
        if missing:
            raise KLToolsError(
                f"show_parameters: parameter(s) {', '.join(missing)} not in the mapping given"
            )
    else:
        names = [
            k
            for k, v in params.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES and _is_plain(v)
        ]
    rows = {n: params[n] for n in names}
    rows.setdefault(
        "profile", os.environ.get("KLTOOLS_PROFILE") or "unset (run outside kltools book)"
    )
    rows["kltools version"] = __version__
    table = pd.DataFrame(
        {"value": [v if isinstance(v, str) else repr(v) for v in rows.values()]},
        index=pd.Index(list(rows), name="parameter"),
    )
    return table


def show_parameters(params: Mapping[str, Any]) -> None:
    """Display :func:`parameters_table` (call it in the cell right after the parameters cell)."""
    table = parameters_table(params)
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is always there in a kernel
        print(table.to_string())
        return
    display(table)


def save_figure(fig: Any, name: str, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Save a matplotlib figure as ``<figures_dir()>/<name>.<fmt>``; the inline figure stays."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise KLToolsError(f"figure name {name!r}: use letters, digits, '_', '-', '.' only")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        fig.savefig(path, bbox_inches="tight", dpi=150)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- CLI


def _cmd_build(args: argparse.Namespace) -> int:
    return build(
        args.profile,
        args.params,
        force=args.force,
        do_render=not args.no_render,
        with_suite=not args.no_suite,
    )


def _cmd_chapter(args: argparse.Namespace) -> int:
    return rerun_chapter(
        args.name,
        args.params,
        profile=args.profile,
        do_render=not args.no_render,
        with_suite=not args.no_suite,
    )


def _cmd_check(args: argparse.Namespace) -> int:
    problems = check(args.profile)
    for line in problems:
        print(line)
    if problems:
        print(f"kltools book check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"kltools book check: {len(available_chapters())} chapter(s) OK ({args.profile})")
    return 0


def register(subparsers: Any) -> None:
    """Add ``kltools book build|chapter|check`` to the top-level CLI."""
    book = subparsers.add_parser("book", help="execute the chapters and render the book")
    sub = book.add_subparsers(dest="book_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser(
        "build", help="build the suite, execute changed chapters, render _build/html"
    )
    p.add_argument("--profile", choices=PROFILES, default="tiny")
    p.add_argument("--params", help="profile parameter file (default: params/<profile>.yaml)")
    p.add_argument(
        "--force", action="store_true", help="re-execute every chapter, ignoring the cache"
    )
    p.add_argument("--no-render", action="store_true", help="execute only; skip Jupyter Book")
    p.add_argument("--no-suite", action="store_true", help="do not (re)build the model suite first")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("chapter", help="rerun one chapter with a parameter file, then re-render")
    p.add_argument("name", help=f"chapter name: {', '.join(CHAPTERS)}")
    p.add_argument(
        "--params",
        required=True,
        help="a profile file, or a flat mapping of this chapter's parameters",
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        help="profile for a flat file (default: its 'profile' key, else tiny)",
    )
    p.add_argument("--no-render", action="store_true", help="execute only; skip Jupyter Book")
    p.add_argument("--no-suite", action="store_true", help="do not (re)build the model suite first")
    p.set_defaults(func=_cmd_chapter)

    p = sub.add_parser("check", help="check the rendered book: pages, errors, figures")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.set_defaults(func=_cmd_check)
