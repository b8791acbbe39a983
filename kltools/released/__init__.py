"""The authors' released data: fetch, verify, read safely, write, import.

The authors of Kishino et al. (Findings of ACL 2026) published every vector behind their
figures in the folder ``kl-scale/data`` of ``github.com/shimo-lab/modelmap``. This package

- downloads it (:func:`fetch`: resumable, Git LFS aware, pinned commit) or finds a copy the
  user has (:func:`release_dir`, ``KLTOOLS_RELEASED_DIR``), and checks it against its
  ``MANIFEST.json`` (:func:`verify`);
- reads it with one checking method per file (:func:`open_release`, :class:`Release`; the
  pickles through the restricted unpickler of :mod:`kltools.safepickle`);
- writes a directory in the same layout (:func:`write_release`, :func:`export_stores`);
- imports its vectors into the project's stores, labelled as the ``pythia`` profile's
  extraction labels them (:func:`import_release`), and its weight distances as tables
  (:func:`weight_distances`).

Modules: :mod:`~kltools.released.layout`, :mod:`~kltools.released.manifest`,
:mod:`~kltools.released.fetch`, :mod:`~kltools.released.write`,
:mod:`~kltools.released.importer`; the command line is :mod:`~kltools.released.cli`.
"""

from __future__ import annotations

from kltools.released.fetch import default_dir, fetch, release_dir
from kltools.released.importer import import_release, run_model, weight_distances
from kltools.released.layout import Release, open_release
from kltools.released.manifest import PINNED_COMMIT, verify
from kltools.released.write import export_stores, write_release

__all__ = [
    "PINNED_COMMIT",
    "Release",
    "default_dir",
    "export_stores",
    "fetch",
    "import_release",
    "open_release",
    "release_dir",
    "run_model",
    "verify",
    "weight_distances",
    "write_release",
]
