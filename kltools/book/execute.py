"""Executing one chapter with papermill, in a kernel pinned to this interpreter."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kltools.book import cache, clean
from kltools.book.compose import finish_executed
from kltools.book.layout import (
    chapter_name,
    executed_dir,
    executed_path,
    figures_dir,
    key_path,
    log_path,
    notebook_path,
    notebooks_dir,
    partial_path,
)
from kltools.book.params import declared_parameters
from kltools.errors import KLToolsError
from kltools.paths import project_root
from kltools.results import results_path

#: the kernel papermill runs chapters in
KERNEL_NAME = "python3"


@dataclass(frozen=True)
class ChapterRun:
    """The outcome of one chapter in a build."""

    name: str
    status: str  # "cached" | "executed" | "failed"
    seconds: float
    notebook: Path
    reason: str = ""
    error: str = ""
    stderr_moved: int = 0  # stderr outputs moved from the page to the build log
    log: Path | None = None  # the chapter's build log


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
    spec["argv"] = [
        sys.executable,
        *list(spec["argv"])[1:],
        "--IPKernelApp.log_level=CRITICAL",
        # warnings, logging and sys.stderr go to the chapter's build log, not to its page
        f"--IPKernelApp.exec_lines={clean.STARTUP_LINE}",
        # inline figures at twice the pixels, shown at the same size (sharp when zoomed)
        "--InlineBackend.figure_formats=retina",
    ]
    spec["display_name"] = "Python 3 (kltools book)"
    text = json.dumps(spec, indent=1) + "\n"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    if not spec_file.is_file() or spec_file.read_text(encoding="utf-8") != text:
        spec_file.write_text(text, encoding="utf-8")
    paths = [str(folder), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    return {"JUPYTER_PATH": os.pathsep.join(dict.fromkeys(paths))}


def cache_state(
    name: str, params: Mapping[str, Any], profile: str
) -> tuple[dict[str, Any], str, dict[str, Any] | None, bool]:
    """Chapter ``name``'s cache components, key, stored key file, and whether it must run
    (no executed notebook, or its key changed)."""
    components = cache.cache_components(notebook_path(name), params, profile)
    key = cache.cache_key(components)
    old = cache.stored_key(name)
    return components, key, old, old is None or old.get("key") != key


def needs_execution(name: str, params: Mapping[str, Any], profile: str) -> bool:
    """Whether chapter ``name`` must run (see :func:`cache_state`)."""
    return cache_state(name, params, profile)[3]


class _DropUnknownParameterNotes(logging.Filter):
    """Papermill notes every injected parameter a notebook does not declare; the book injects
    the profile's common parameters into every chapter on purpose (declared once, in the
    parameter file), so those notes say nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Passed unknown parameter")


@contextlib.contextmanager
def _common_parameters_expected() -> Iterator[None]:
    log = logging.getLogger("papermill")
    note = _DropUnknownParameterNotes()
    log.addFilter(note)
    try:
        yield
    finally:
        log.removeFilter(note)


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
    components, key, old, stale = cache_state(name, params, profile)
    if not force and not stale:
        return ChapterRun(chapter_name(name), "cached", 0.0, out)
    reason = "forced" if force else ", ".join(cache.changed_components(old, components))

    executed_dir().mkdir(parents=True, exist_ok=True)
    partial = partial_path(name)
    partial.unlink(missing_ok=True)
    figs = figures_dir(chapter_name(name))
    shutil.rmtree(figs, ignore_errors=True)  # the folder holds this run's figures only
    figs.mkdir(parents=True, exist_ok=True)
    results_path(chapter_name(name), executed_dir()).unlink(missing_ok=True)  # this run's only
    log = log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    env = {
        **kernel_environ(),
        **clean.quiet_environ(log),
        "KLTOOLS_ROOT": str(project_root()),
        "KLTOOLS_PROFILE": profile,
        "KLTOOLS_CHAPTER": chapter_name(name),
        "KLTOOLS_PARAMETER_NAMES": ",".join(params),
        "KLTOOLS_DECLARED_NAMES": ",".join(declared_parameters(src)),
        "KLTOOLS_FIGURES_DIR": str(figs),
    }
    start = time.perf_counter()
    try:
        with _environ(env), _common_parameters_expected():
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
            chapter_name(name),
            "failed",
            seconds,
            partial,
            reason,
            " ".join(message.split()),
            log=log,
        )
    seconds = time.perf_counter() - start
    try:
        moved = finish_executed(partial, chapter_name(name), log, figs)
    except KLToolsError as exc:  # a placeholder or a name the page does not show: this chapter
        out.unlink(missing_ok=True)
        key_path(name).unlink(missing_ok=True)
        return ChapterRun(chapter_name(name), "failed", seconds, partial, reason, str(exc), log=log)
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
    return ChapterRun(
        chapter_name(name), "executed", seconds, out, reason, stderr_moved=moved, log=log
    )


def build_suite(profile: str) -> str:
    """Build (or reuse) the offline model suite of ``profile`` with :func:`kltools.suite.build`."""
    from kltools.config import Settings
    from kltools.sources import can

    if not can(Settings(profile=profile), "suite"):
        return f"suite: not used by profile {profile!r}"
    from kltools.suite import build as build_models

    start = time.perf_counter()
    build_models(profile)
    return f"suite: {profile} ready in {time.perf_counter() - start:.1f} s"


def report_line(run: ChapterRun) -> str:
    """One line per chapter for the build log."""
    if run.status == "cached":
        return f"  {run.name:<13} cached     {run.seconds:7.1f} s"
    if run.status == "executed":
        line = f"  {run.name:<13} executed   {run.seconds:7.1f} s  ({run.reason})"
        if run.log is not None and clean.log_lines(run.log):
            line += (
                f"; {clean.log_lines(run.log)} log lines ({run.stderr_moved} stderr outputs "
                f"kept off the page) in {_shown(run.log)}"
            )
        return line
    return (
        f"  {run.name:<13} FAILED     {run.seconds:7.1f} s  {run.error}\n"
        f"  {'':<13} partially executed notebook: {run.notebook}"
        + (
            f"\n  {'':<13} its stderr and warnings: {_shown(run.log)}"
            if run.log is not None and clean.log_lines(run.log)
            else ""
        )
    )


def _shown(path: Path) -> str:
    """A path relative to the project root when it lies inside it."""
    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)
