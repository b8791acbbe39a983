"""The authors' model metadata, and the paper's model sets derived from it.

Kishino et al. (Findings of ACL 2026) released four metadata files with their code
(``shimo-lab/modelmap``, folder ``kl-scale/data/model_info``); byte-for-byte copies ship in
``kltools/data/paper/model_info`` (see its ``SOURCE.md``). Every reader here checks the
file's sha256 against :data:`SHA256` and raises one :class:`~kltools.errors.KLToolsError` on a
mismatch. Each takes ``directory`` (default: the shipped copies), so a downloaded release can
be read the same way; :func:`check_against` says which of its files differ from the copies.

The paper's sets, as the authors' code computes them:

- :func:`quantization_models`, :func:`layer_models`: the first 50 of ``model_list.json``;
- :func:`ft_edges` (:func:`edges_of`): every parent → child edge of ``sibling_info.json``
  whose child and parent are both in ``model_list.json``, whose child has a single parent (a
  string or a list of one; longer lists are merges) and a type; 66 edges on the shipped
  copies;
- :func:`draw_pairs`: the FT, Intra-type and Random pairs of the fine-tuning setting.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kltools.errors import KLToolsError
from kltools.hashing import sha256_file

__all__ = [
    "COMMIT",
    "DIRECTORY",
    "FILES",
    "REPOSITORY",
    "SHA256",
    "check_against",
    "draw_pairs",
    "edges_of",
    "ft_edges",
    "layer_models",
    "model_list",
    "model_types",
    "quantization_models",
    "siblings",
    "single_parent",
    "type_colors",
]

#: where the authors' metadata comes from (GitHub repository, folder, commit)
REPOSITORY = "shimo-lab/modelmap"
FOLDER = "kl-scale/data/model_info"
COMMIT = "194c5436ed01d16381b1b903d3e2feec916a534c"
#: the shipped copies
DIRECTORY = Path(__file__).parent / "data" / "paper" / "model_info"
#: sha256 of each file at :data:`COMMIT` (also listed in the folder's ``SOURCE.md``)
SHA256: dict[str, str] = {
    "model_list.json": "1d2d480da159ef96a3b61b3e4e005ec097f16246b2fd72db1a4d3763104d06f8",
    "modelname2type.json": "a0536e669678a785286cfb40d706ca76b1cb940952d356f3c4f64da6c7a6b825",
    "sibling_info.json": "4a352d268e0f831d9389be05423946d099252bf2f71077f2dd892e717995cba5",
    "type2color.json": "10cf9f80b34296bd78e8a26ff0174c192bfe2a296bc24656713f2cb359ab7e9a",
}
FILES: tuple[str, ...] = tuple(SHA256)
#: how many models of ``model_list.json`` the quantization and layer settings use
N_MODELS = 50


def _read(name: str, directory: Path | None) -> Any:
    """The JSON of metadata file ``name``, after checking its sha256."""
    path = Path(directory if directory is not None else DIRECTORY) / name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KLToolsError(f"cannot read the authors' metadata file {path}: {exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise KLToolsError(
            f"{path} has sha256 {digest}, not the {SHA256[name]} of {REPOSITORY} {FOLDER}/{name} "
            f"at commit {COMMIT[:12]}; restore the file or compare it with "
            "kltools.metadata.check_against"
        )
    return json.loads(raw.decode("utf-8"))


def model_list(directory: Path | None = None) -> list[str]:
    """The 1018 hub ids of ``model_list.json``, in its order (the rows of the release's
    ``oyama2025_logp.pkl``)."""
    return list(_read("model_list.json", directory))


def model_types(directory: Path | None = None) -> dict[str, str]:
    """Model -> type (``modelname2type.json``: ``mistral``, ``llama-3``, …, ``others``)."""
    return dict(_read("modelname2type.json", directory))


def siblings(directory: Path | None = None) -> dict[str, str | list[str] | None]:
    """Model -> parent as released (``sibling_info.json``): None, an id, or a list of ids."""
    return dict(_read("sibling_info.json", directory))


def type_colors(directory: Path | None = None) -> dict[str, tuple[float, ...]]:
    """Type -> RGBA colour (``type2color.json``; no entry for ``bloom`` or ``deepseek``)."""
    return {k: tuple(float(x) for x in v) for k, v in _read("type2color.json", directory).items()}


def check_against(directory: Path | str) -> dict[str, str]:
    """Compare the shipped copies with the files of a downloaded release's ``model_info``.

    Returns file -> ``"same"``, ``"differs"`` (with both sha256) or ``"missing"``, for every
    file of :data:`FILES`.
    """
    out: dict[str, str] = {}
    for name in FILES:
        theirs = Path(directory) / name
        if not theirs.is_file():
            out[name] = "missing"
            continue
        a, b = sha256_file(theirs), sha256_file(DIRECTORY / name)
        out[name] = "same" if a == b else f"differs (release {a}, shipped {b})"
    return out


def quantization_models(n: int = N_MODELS, directory: Path | None = None) -> list[str]:
    """The quantization setting's models: the first ``n`` (50) of ``model_list.json``."""
    return model_list(directory)[:n]


def layer_models(n: int = N_MODELS, directory: Path | None = None) -> list[str]:
    """The layer setting's models: the first ``n`` (50) of ``model_list.json``."""
    return model_list(directory)[:n]


def single_parent(value: str | Sequence[str] | None) -> str | None:
    """The parent of a ``sibling_info.json`` value: an id, a list of one id, else None
    (no parent, or a merge of several)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return None


def ft_edges(directory: Path | None = None) -> pd.DataFrame:
    """The fine-tuning setting's parent → child edges: columns ``model``, ``parent``, ``type``.

    :func:`edges_of` the released files. On the shipped copies: 66 edges (mistral 25,
    llama-3 20, others 11, gemma 5, falcon 2, deepseek 2, llama-2 1).
    """
    return edges_of(model_list(directory), model_types(directory), siblings(directory))


def edges_of(
    names: Sequence[str],
    types: Mapping[str, str],
    parents: Mapping[str, str | Sequence[str] | None],
) -> pd.DataFrame:
    """Every parent → child edge of ``parents`` (``sibling_info.json``) whose child is in
    ``names`` (``model_list.json``) with a single parent (:func:`single_parent`) that is in
    ``names`` too, and whose child has a type in ``types`` (``modelname2type.json``); the
    edge's type is the child's. In ``names`` order of the child; columns ``model``,
    ``parent``, ``type``."""
    listed = set(names)
    rows = []
    for child in names:
        parent = single_parent(parents.get(child))
        if parent in listed and child in types:
            rows.append({"model": child, "parent": parent, "type": types[child]})
    return pd.DataFrame(rows, columns=["model", "parent", "type"])


def _ids(edges: pd.DataFrame, order: Sequence[str]) -> dict[str, int]:
    """Each model's integer id: its row in ``order``; models outside it get the next ids in
    order of first appearance (child before parent)."""
    ids = {m: i for i, m in enumerate(order)}
    for m in (x for pair in zip(edges.model, edges.parent) for x in pair):
        ids.setdefault(m, len(ids))
    return {m: ids[m] for m in (*edges.model, *edges.parent)}


def draw_pairs(
    edges: pd.DataFrame, seed: int = 0, order: Sequence[str] | None = None
) -> list[tuple[str, str, str, str]]:
    """The fine-tuning setting's pairs ``(setting, type, a, b)``, drawn as the authors' code.

    ``edges``: columns ``model`` (child), ``parent`` and ``type`` (the child's); rows without a
    parent (roots) are ignored. ``order``: the model list whose row numbers are the models'
    integer ids (default: ``model_list.json``; models outside it are numbered after it).

    - **FT**: every edge, ``a`` the parent and ``b`` the child.
    - **Intra-type**: for each type in order of first appearance in ``edges``, a
      ``random.Random`` re-seeded with ``seed`` draws as many pairs as the type has edges, each
      ``sample(candidates, 2)``: two distinct models, the same pair possibly drawn again. The
      candidates are the type's children and parents, deduplicated as the authors do it: a
      Python ``set`` of their integer ids (built child, parent, edge by edge), listed in the
      set's iteration order. A type with fewer than two candidates is skipped.
    - **Random**: as many pairs as edges, each ``sample`` from the set of every drawn type's
      candidates (built in the same way from the per-type lists), by the generator of the
      last drawn type, continuing after it. Labelled with the two models' type when it is the
      same (a model's type: its own edge's as a child, else its first edge's), else ``mixed``.
    """
    e = edges[edges.parent.notna()].reset_index(drop=True)
    out = [("FT", str(t), str(p), str(c)) for c, p, t in zip(e.model, e.parent, e.type)]
    ids = _ids(e, model_list() if order is None else order)
    name = {i: m for m, i in ids.items()}
    type_of: dict[str, str] = dict(zip(e.model, e.type))
    for p, t in zip(e.parent, e.type):
        type_of.setdefault(p, t)
    rng = random.Random(seed)
    pooled: list[int] = []
    for typ in dict.fromkeys(e.type):
        of_type = e[e.type == typ]
        candidates = list(
            {i for c, p in zip(of_type.model, of_type.parent) for i in (ids[c], ids[p])}
        )
        if len(candidates) < 2:
            continue
        pooled += candidates
        rng.seed(seed)
        for _ in range(len(of_type)):
            a, b = rng.sample(candidates, 2)
            out.append(("Intra-type", str(typ), name[a], name[b]))
    everyone = list(set(pooled))
    if len(everyone) >= 2:
        for _ in range(len(e)):
            a, b = (name[i] for i in rng.sample(everyone, 2))
            label = type_of[a] if type_of[a] == type_of[b] else "mixed"
            out.append(("Random", str(label), a, b))
    return out
