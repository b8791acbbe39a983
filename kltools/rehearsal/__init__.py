"""The rehearsal hub: the ``pythia`` profile's hub code path, offline, on small models.

``kltools rehearsal build --root DIR`` trains small models of the real architecture classes
and writes them into a Hugging Face hub cache under the real repository ids and revisions
(``EleutherAI/pythia-410m@step1000``, ``meta-llama/Llama-2-7b-hf`` …). With
``HF_HUB_CACHE=DIR/hub`` and ``HF_HUB_OFFLINE=1``, :func:`kltools.models.resolve_model` and
:func:`kltools.models.load_model` resolve and load them exactly as after a download, so the
hub path (revision resolution, recorded commits, hub tokenizers, bitsandbytes at load time,
model-card lineages) runs on any CPU.

Modules: :mod:`~kltools.rehearsal.plan` (what it holds), :mod:`~kltools.rehearsal.hubcache`
(the cache layout), :mod:`~kltools.rehearsal.train` (training), :mod:`~kltools.rehearsal.builder`
(the build), :mod:`~kltools.rehearsal.cli` (the command).
"""

from __future__ import annotations

from kltools.rehearsal.builder import build_rehearsal, default_root, hub_cache, read_manifest

__all__ = ["build_rehearsal", "default_root", "hub_cache", "read_manifest"]
