"""The executable book: papermill execution with cache keys, the Jupyter Book render, checks,
the results pages, the teaching material.

Commands (``kltools book …``, called by ``make book`` / ``make chapter`` / ``make teach``
and CI):

- ``build --profile P [--params FILE] [--force]``: build the offline model suite (tiny/smoke),
  execute every chapter notebook found in ``notebooks/`` whose cache key changed, render.
- ``chapter NAME --params FILE``: rerun one chapter with new parameters, then render.
- ``check --profile P [--browser]``: verify the rendered book (pages, errors, figures, links,
  clean outputs; every page in headless Chromium); one line per problem.
- ``results [--profile P] [--format text|json|csv]``: the pairs and verdicts chapters wrote.
- ``teach [--out DIR]``: student and teacher versions of every chapter.

Layout (all under the project root, :func:`kltools.paths.project_root`):

=============================  =========================================================
``notebooks/NN_name.ipynb``    chapter sources (outputs stripped, one ``parameters`` cell)
``params/<profile>.yaml``      ``profile``, ``common`` and ``chapters.<name>`` parameters
``build/executed/``            executed notebooks ``NN_name.ipynb`` + cache keys
                               ``NN_name.key.json``; a failed run leaves
                               ``NN_name.partial.ipynb`` (``$KLTOOLS_BUILD_ROOT/executed``
                               when that variable is set; it must lie inside the root);
                               the results each chapter writes, ``<name>.results.json``
                               (:mod:`kltools.results`), with ``<name>.pairs.csv`` and
                               ``<name>.claims.csv`` beside it
``build/logs/<name>.log``      what the chapter's kernel wrote to stderr, its warnings
``build/figures/<name>/``      figure files a chapter saves with :func:`save_figure`
                               (PNG at 200 dpi and PDF)
``build/scoreboard.md``        the reproduction report, generated at render time
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
``KLTOOLS_PARAMETER_NAMES``, ``KLTOOLS_DECLARED_NAMES``, ``KLTOOLS_FIGURES_DIR`` and
``KLTOOLS_BUILD_LOG``. The kernel is pinned to the running
interpreter by a kernelspec the build writes to ``build/jupyter/kernels/python3/`` and puts
first on ``JUPYTER_PATH`` (see :func:`kernel_environ`), whatever other ``python3``
kernelspecs the machine has.

A chapter notebook, for this module:

1. is ``notebooks/NN_name.ipynb`` with ``NN_name`` a value of :data:`CHAPTERS`, outputs
   stripped, kernelspec ``python3``;
2. has one code cell tagged ``parameters`` of plain assignments with literal defaults
   (``window = 10``; annotations such as ``window: int = 10`` are honoured): only what a
   reader would change in that chapter. The parameters every chapter shares (profile, text
   set, N, BOS, dtype, device, batch size, seed, resamples) and the settings' parameters are
   declared once, in the ``common`` section of ``params/<profile>.yaml``, which the build
   injects into every chapter; interactively they take :class:`kltools.config.Settings`'s
   defaults (the ``tiny`` profile's);
3. has, right after it, one code cell tagged ``setup`` that imports what the chapter uses
   and calls ``s = start_chapter(globals(), "<name>")`` (:mod:`kltools.book.preamble`), so
   that the first outputs are the parameter table and the deviations table;
4. shows at least one figure inline (``book check`` requires an ``<img>`` on the page) and
   may save figure files with :func:`save_figure` into ``build/figures/<name>/``;
5. writes its results with :func:`kltools.results.write_results` (the build then appends its
   rows of the claims scoreboard and a *Downloads* section to its page, see
   :mod:`kltools.book.compose`; nothing to call in the notebook);
6. ends with its exercises, tagged as :mod:`kltools.book.teach` describes.

The package, one module per job:

===============  ==========================================================================
``preamble``     :func:`start_chapter`, the first call of every chapter
``runtime``      what a notebook imports: :func:`show_parameters`, :func:`save_figure`
``layout``       chapter names and where the files live
``params``       parameter files and the parameters a chapter runs with
``cache``        cache keys
``clean``        clean pages: the kernel's quiet start-up, stderr moved to the build log
``execute``      one chapter through papermill
``scoreboard``   ``kltools book results`` and the claims scoreboard page
``compose``      what the build adds to an executed chapter (downloads, folded solutions)
``render``       Jupyter Book, the generated pages, downloads copied into the site
``commands``     build / chapter / check
``hygiene``      checks of the executed notebooks and rendered pages (stderr, paths, links)
``tables``       tables as a page shows them (:func:`page_table`)
``browser``      the headless-Chromium check of every page
``teach``        student and teacher versions of the chapters
``cli``          ``kltools book …``
===============  ==========================================================================
"""

from __future__ import annotations

from kltools.book.cache import (
    cache_components,
    cache_key,
    changed_components,
    notebook_source_hash,
    package_source_hash,
    path_hash,
    source_fingerprint,
    stored_key,
)
from kltools.book.cli import register
from kltools.book.commands import (
    build,
    chapter_parameters,
    check,
    notebook_problems,
    rerun_chapter,
)
from kltools.book.execute import (
    KERNEL_NAME,
    ChapterRun,
    build_suite,
    execute_chapter,
    kernel_environ,
)
from kltools.book.layout import (
    CHAPTERS,
    PROFILES,
    available_chapters,
    chapter_name,
    chapter_stem,
    executed_dir,
    executed_path,
    figures_dir,
    html_dir,
    key_path,
    notebook_path,
    notebooks_dir,
    params_path,
    partial_path,
)
from kltools.book.params import (
    DeclaredParameter,
    declared_parameters,
    is_profile_file,
    load_profile,
    load_yaml_mapping,
    resolve_parameters,
    validate_profile_doc,
)
from kltools.book.preamble import start_chapter
from kltools.book.render import render, rendered_toc, write_rendered_toc
from kltools.book.runtime import parameters_table, save_figure, show_parameters
from kltools.book.tables import page_table

__all__ = [
    "CHAPTERS",
    "KERNEL_NAME",
    "PROFILES",
    "ChapterRun",
    "DeclaredParameter",
    "available_chapters",
    "build",
    "build_suite",
    "cache_components",
    "cache_key",
    "changed_components",
    "chapter_name",
    "chapter_parameters",
    "chapter_stem",
    "check",
    "declared_parameters",
    "executed_dir",
    "executed_path",
    "execute_chapter",
    "figures_dir",
    "html_dir",
    "is_profile_file",
    "kernel_environ",
    "key_path",
    "load_profile",
    "load_yaml_mapping",
    "notebook_path",
    "notebook_problems",
    "notebook_source_hash",
    "notebooks_dir",
    "page_table",
    "package_source_hash",
    "parameters_table",
    "params_path",
    "partial_path",
    "path_hash",
    "register",
    "render",
    "rendered_toc",
    "rerun_chapter",
    "resolve_parameters",
    "save_figure",
    "show_parameters",
    "start_chapter",
    "stored_key",
    "source_fingerprint",
    "validate_profile_doc",
    "write_rendered_toc",
]
