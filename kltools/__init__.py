"""kltools: log-likelihood vectors and the double-centred KL scale for language models.

A language model is a distribution over texts. For a fixed text set of N texts, each model
gets a vector of summed log-likelihoods; double-centring the K x N matrix of K models gives
vectors q_i with ||q_i - q_j||^2 / (2N) ~= KL(p_i, p_j) in nats per text (Kishino et al.,
Findings of ACL 2026). kltools extracts those vectors into xarray/zarr stores and computes the
KL scale from them.

The public API is re-exported here lazily (``import kltools`` does not import torch):

>>> import kltools
>>> texts = kltools.load_texts("demo")                              # doctest: +SKIP
>>> ds = kltools.extract(["tiny-s@step1000"], texts, "s.zarr")      # doctest: +SKIP
>>> kltools.kl_matrix(ds.loglik, dim="model")                       # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from kltools.errors import KLToolsError

__version__ = "0.1.0"

#: public name -> module that defines it
_API: dict[str, str] = {
    # texts
    "TextSet": "kltools.texts",
    "load_texts": "kltools.texts",
    "chunk_document": "kltools.texts",
    "pile_recipe": "kltools.texts",
    "make_analysis_set": "kltools.texts",
    # the estimator
    "double_centre": "kltools.kl",
    "kl_matrix": "kltools.kl",
    "map_coordinates": "kltools.kl",
    "bootstrap_kl": "kltools.kl",
    "kl_between": "kltools.kl",
    "check_compatible": "kltools.kl",
    "concat_units": "kltools.kl",
    # analyses
    "consecutive_kl": "kltools.analysis",
    "pretraining_preprocess": "kltools.analysis",
    "lag_distances": "kltools.analysis",
    "diffusion_exponents": "kltools.analysis",
    # the Monte-Carlo check of the estimator
    "mc_kl": "kltools.montecarlo",
    # models and extraction
    "resolve_model": "kltools.models",
    "load_model": "kltools.models",
    "Unit": "kltools.extraction",
    "score_texts": "kltools.extraction",
    "extract": "kltools.extraction",
    "open_store": "kltools.store",
}

__all__ = ["KLToolsError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'kltools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
