"""The book's commands: build every chapter, rerun one, check the rendered book."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kltools.book import hygiene
from kltools.book.cache import stored_key
from kltools.book.execute import build_suite, execute_chapter, needs_execution, report_line
from kltools.book.layout import (
    CHAPTERS,
    PROFILES,
    available_chapters,
    chapter_name,
    chapter_stem,
    executed_dir,
    executed_path,
    html_dir,
    notebook_path,
    notebooks_dir,
    partial_path,
)
from kltools.book.params import (
    declared_parameters,
    is_profile_file,
    load_profile,
    load_yaml_mapping,
    resolve_parameters,
    validate_profile_doc,
)
from kltools.book.render import render
from kltools.errors import KLToolsError
from kltools.paths import project_root
from kltools.sources import DEFAULT_PROFILE


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
    require_hub_models(profile, plan, force=force)
    prepare_source(profile, plan)
    print(f"chapters ({profile}): {len(chapters)} of {len(CHAPTERS)} written")
    runs = []
    for name, params in plan.items():
        run = execute_chapter(name, params, profile, force=force)
        print(report_line(run), flush=True)
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


#: chapters that read the pretraining store (every checkpoint of every run)
PRETRAINING_CHAPTERS = (
    "method",
    "trajectories",
    "consecutive",
    "seeds_sizes",
    "diffusion",
    "scale",
)


def prepare_source(profile: str, plan: Mapping[str, Mapping[str, Any]]) -> None:
    """Make the profile's source ready before any chapter starts (:func:`kltools.sources.prepare`:
    the released profile finds, checks and imports the authors' vectors once), so a missing
    release fails here in one line instead of once per chapter."""
    from kltools.config import Settings
    from kltools.sources import prepare

    if plan:
        prepare(Settings.from_parameters(next(iter(plan.values()))))


def require_hub_models(
    profile: str, plan: Mapping[str, Mapping[str, Any]], *, force: bool = False
) -> None:
    """Resolve every hub model the chapters about to run read, before any of them starts.

    ``plan``: chapter -> parameters; the chapters that will run are those whose cache is stale
    (every one with ``force``). The ``pythia`` profile reads the Hugging Face hub (or its
    cache, offline): a repository or revision that is missing fails here, in one line naming
    it, instead of once per chapter. The models each chapter reads from its source's catalogue
    (quantization bases, floor and layer models: the paper's sets by default) are checked;
    fine-tuning lineages are resolved by their chapter. Sources that do not read the
    hub (the local suite, built just before; published vectors) are not checked here.
    """
    from kltools.config import Settings
    from kltools.settings.stores import pretraining_units
    from kltools.sources import can, check_models, floor_models, layer_models, quant_catalogue

    if not can(Settings(profile=profile), "hub"):
        return
    to_run = {n: p for n, p in plan.items() if force or needs_execution(n, p, profile)}
    specs: list[str] = []
    for name, params in to_run.items():
        s = Settings.from_parameters(params)
        chapter = chapter_name(name)
        if chapter in PRETRAINING_CHAPTERS:
            specs += [u.spec for u in pretraining_units(s)]
        if chapter in ("quantization", "scale"):
            specs += list(quant_catalogue(s).base_spec)
        if chapter in ("floor", "scale") and s.floor_settings:
            specs += list(floor_models(s).values())
        if chapter in ("layers", "scale"):
            specs += list(layer_models(s).values())
    if to_run:
        check_models(s, specs)


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
    chosen = profile or doc.get("profile") or os.environ.get("KLTOOLS_PROFILE") or DEFAULT_PROFILE
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
    print(report_line(run), flush=True)
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
    """Errors, tracebacks, stderr outputs, path reprs and machine paths in an executed
    notebook, one line each (see :mod:`kltools.book.hygiene`)."""
    import nbformat

    return hygiene.notebook_problems(nbformat.read(nb_file, as_version=4), label)


def check(profile: str) -> list[str]:
    """Problems with the rendered book, one line each (empty when all is well).

    Every page of the site: no dangling internal link, no path repr or machine path, no
    mention of files outside the repository.

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
    if html_root.is_dir():
        problems.extend(hygiene.html_problems(html_root))
    figures = executed_dir().parent / "figures"
    if figures.is_dir():
        problems.extend(hygiene.figure_problems(figures))
    return problems
