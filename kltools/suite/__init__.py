"""The offline Pythia-style model suite: corpus, tokenizer, runs, variants, weight distances.

Public API (imported lazily; ``import kltools.suite`` does not import torch):

- :func:`plan` (profile) -> list of build units;
- :func:`build` (profile=DEFAULT_SUITE, root=None, jobs=2) -> summary dict;
- :func:`list_models` (profile=DEFAULT_SUITE, root=None) -> list of dicts (the catalogue);
- :func:`fingerprint` (profile, root=None) -> str;
- :func:`weight_distances`, :func:`load_weight_distances` (diffusion chapter);
- :func:`rtn_quantize` (dependency-free round-to-nearest quantizer).

Command line: ``kltools suite build|list`` (:mod:`kltools.suite.cli`).
"""

from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    "plan": "kltools.suite.profiles",
    "get_profile": "kltools.suite.profiles",
    "PROFILES": "kltools.suite.profiles",
    "build": "kltools.suite.builder",
    "list_models": "kltools.suite.builder",
    "fingerprint": "kltools.suite.builder",
    "profile_root": "kltools.suite.builder",
    "weight_distances": "kltools.suite.weights",
    "load_weight_distances": "kltools.suite.weights",
    "rtn_quantize": "kltools.suite.quantize",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'kltools.suite' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
