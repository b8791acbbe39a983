"""The authors' model metadata and the paper's model sets derived from it.

References are computed here from the raw JSON files and from the definitions (Kishino et al.,
Findings of ACL 2026, as the authors' code computes them), not with :mod:`kltools.metadata`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from kltools import metadata
from kltools.config import Settings
from kltools.errors import KLToolsError
from kltools.sources import pythia

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "kltools" / "data" / "paper" / "model_info"
PAPER_FT_COUNTS = {
    "mistral": 25,
    "llama-3": 20,
    "others": 11,
    "gemma": 5,
    "falcon": 2,
    "deepseek": 2,
    "llama-2": 1,
}


def _raw(name: str):
    return json.loads((SHIPPED / name).read_text(encoding="utf-8"))


def _single(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return None


def _reference_edges(names, types, parents) -> list[tuple[str, str, str]]:
    """(child, parent, type): child listed and typed, one parent, the parent listed."""
    listed = set(names)
    out = []
    for child in names:
        parent = _single(parents.get(child))
        if parent in listed and child in types:
            out.append((child, parent, types[child]))
    return out


def _reference_draws(names, edges, seed, first_appearance=False):
    """The authors' draws, written from the definition: integer ids are rows of ``names``;
    per type (first appearance) a generator re-seeded with ``seed`` samples two of the type's
    candidates (a set of the ids of its children and parents) once per edge; Random samples
    as many pairs from the set of every drawn type's candidates, continuing the generator."""
    row = {n: i for i, n in enumerate(names)}
    intra, pooled = [], []
    gen = random.Random(seed)
    for typ in dict.fromkeys(t for _, _, t in edges):
        mine = [(c, p) for c, p, t in edges if t == typ]
        ids = [row[x] for c, p in mine for x in (c, p)]
        candidates = list(dict.fromkeys(ids)) if first_appearance else list(set(ids))
        if len(candidates) < 2:
            continue
        pooled.extend(candidates)
        gen = random.Random(seed)
        for _ in mine:
            a, b = gen.sample(candidates, 2)
            intra.append((typ, names[a], names[b]))
    everyone = list(dict.fromkeys(pooled)) if first_appearance else list(set(pooled))
    rand = []
    for _ in edges:
        a, b = gen.sample(everyone, 2)
        rand.append((names[a], names[b]))
    return intra, rand


# ------------------------------------------------------------------------------ the shipped files


def test_shipped_files_are_the_release_and_source_md_lists_them() -> None:
    text = (SHIPPED / "SOURCE.md").read_text()
    assert "shimo-lab/modelmap" in text and "kl-scale/data/model_info" in text
    assert "194c5436ed01d16381b1b903d3e2feec916a534c" in text
    listed = dict(re.findall(r"\| `([a-z0-9_]+\.json)` \| `([0-9a-f]{64})` \|", text))
    assert set(listed) == set(metadata.FILES) and len(listed) == 4
    for name, digest in listed.items():
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name
        assert metadata.SHA256[name] == digest
    assert metadata.check_against(SHIPPED) == dict.fromkeys(metadata.FILES, "same")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'kltools = ["data/**/*"]' in pyproject  # shipped as package data
    names = metadata.model_list()
    assert names == _raw("model_list.json") and len(names) == 1018 == len(set(names))
    assert metadata.model_types() == _raw("modelname2type.json")
    assert metadata.siblings() == _raw("sibling_info.json")
    colors = metadata.type_colors()
    assert set(colors) == set(_raw("type2color.json")) and all(len(c) == 4 for c in colors.values())


def test_a_changed_file_fails_in_one_line_and_check_against_names_it(tmp_path: Path) -> None:
    release = tmp_path / "model_info"
    shutil.copytree(SHIPPED, release)
    raw = (release / "sibling_info.json").read_bytes()
    (release / "sibling_info.json").write_bytes(raw.replace(b"null", b"None ", 1))
    (release / "type2color.json").unlink()
    with pytest.raises(KLToolsError) as err:
        metadata.siblings(release)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "sibling_info.json" in message and metadata.SHA256["sibling_info.json"] in message
    assert metadata.model_list(release) == _raw("model_list.json")  # the others still read
    with pytest.raises(KLToolsError, match="type2color.json"):
        metadata.type_colors(release)
    got = metadata.check_against(release)
    assert got["model_list.json"] == got["modelname2type.json"] == "same"
    assert got["sibling_info.json"].startswith("differs") and got["type2color.json"] == "missing"


# ------------------------------------------------------------------------------ the paper's sets


def test_the_pythia_catalogue_quantizes_and_lenses_the_first_50_of_the_model_list() -> None:
    first50 = _raw("model_list.json")[:50]
    for s in (Settings(profile="pythia"), _pythia_yaml_settings()):
        assert pythia.hub_models(s) == first50
        cat = pythia.quant_catalogue(s)
        assert list(dict.fromkeys(cat.base_spec)) == first50
        assert set(cat.variant) == {"bnb-int8", "bnb-fp4", "bnb-nf4"}
        layers = pythia.layer_models(s)
        assert list(layers.values()) == first50 and len(layers) == 50  # labels unique
    assert metadata.quantization_models() == metadata.layer_models() == first50
    override = Settings(profile="pythia", hub_models=("a/x",), layer_models=("a/x", "b/x"))
    assert pythia.hub_models(override) == ["a/x"]
    assert pythia.layer_models(override) == {"a/x": "a/x", "b/x": "b/x"}


def _pythia_yaml_settings() -> Settings:
    import yaml

    doc = yaml.safe_load((ROOT / "params" / "pythia.yaml").read_text())
    return Settings.from_parameters(doc["common"])


def test_the_pythia_fine_tuning_lineages_are_the_66_typed_single_parent_edges() -> None:
    ref = _reference_edges(
        _raw("model_list.json"), _raw("modelname2type.json"), _raw("sibling_info.json")
    )
    assert len(ref) == 66 and Counter(t for _, _, t in ref) == PAPER_FT_COUNTS
    edges = metadata.ft_edges()
    assert list(zip(edges.model, edges.parent, edges.type)) == ref
    table, source = pythia.lineages(_pythia_yaml_settings())
    assert "sibling_info.json" in source
    assert list(table.columns) == [
        "model", "spec", "parent", "type", "generation", "method", "domain"
    ]  # fmt: skip
    children = table[table.parent.notna()]
    assert list(zip(children.model, children.parent, children.type)) == ref
    assert table.model.is_unique and set(table.parent.dropna()) <= set(table.model)
    roots = table[table.parent.isna()]
    types = _raw("modelname2type.json")
    assert all(types[m] == t for m, t in zip(roots.model, roots.type))
    assert (roots.generation == 0).all() and (children.generation >= 1).all()
    # a second generation: DeepSeek-Prover-V1.5-RL <- SFT <- Base
    gen = dict(zip(table.model, table.generation))
    assert gen["deepseek-ai/DeepSeek-Prover-V1.5-RL"] == 2


def test_draw_pairs_on_the_shipped_metadata_are_the_reference_draws() -> None:
    names = _raw("model_list.json")
    ref = _reference_edges(names, _raw("modelname2type.json"), _raw("sibling_info.json"))
    got = metadata.draw_pairs(metadata.ft_edges(), seed=0)
    intra, rand = _reference_draws(names, ref, 0)
    assert [(t, a, b) for st, t, a, b in got if st == "Intra-type"] == intra
    assert [(a, b) for st, _, a, b in got if st == "Random"] == rand
    assert [(p, c) for st, _, p, c in got if st == "FT"] == [(p, c) for c, p, _ in ref]
    assert len(intra) == len(rand) == 66


def _constructed() -> tuple[list[str], dict[str, str], dict]:
    """A small metadata: type ``zeta`` appears before ``alpha`` (sorted order differs), type
    ``solo`` has one candidate (a model listed as its own parent), a merge, a list-of-one
    parent (second generation), an untyped child, a parent outside the list; filler rows make
    the ids large enough that a set's order is neither sorted nor first appearance."""
    names = [f"fill/{i}" for i in range(40)]
    placed = {
        3: "z/base", 11: "z/chat", 19: "a/base", 27: "a/chat", 6: "a/chat2", 2: "z/chat2",
        14: "s/self", 30: "m/merge", 31: "u/untyped", 33: "x/orphan", 35: "b/base", 22: "b/ft",
    }  # fmt: skip
    for i, n in placed.items():
        names[i] = n
    types = {n: "others" for n in names if n.startswith("fill/")}
    types |= {"z/base": "zeta", "z/chat": "zeta", "z/chat2": "zeta", "a/base": "alpha"}
    types |= {"a/chat": "alpha", "a/chat2": "alpha", "s/self": "solo", "m/merge": "alpha"}
    types |= {"x/orphan": "alpha", "b/base": "beta", "b/ft": "beta"}
    parents = {n: None for n in names}
    parents |= {
        "z/chat": "z/base", "z/chat2": ["z/base"], "a/chat": "a/base", "a/chat2": ["a/chat"],
        "s/self": "s/self", "m/merge": ["z/base", "a/base"], "u/untyped": "z/base",
        "x/orphan": "not/listed", "b/ft": "b/base",
    }  # fmt: skip
    return names, types, parents


def test_draw_pairs_follow_the_definition_on_a_constructed_metadata() -> None:
    names, types, parents = _constructed()
    ref = _reference_edges(names, types, parents)
    edges = metadata.edges_of(names, types, parents)
    assert list(zip(edges.model, edges.parent, edges.type)) == ref
    kept = {c for c, _, _ in ref}
    assert {"z/chat2", "a/chat2", "s/self"} <= kept  # lists of one, and the self-parent
    assert not kept & {"m/merge", "u/untyped", "x/orphan"}  # merge, untyped, parent unlisted
    order_of_types = list(dict.fromkeys(t for _, _, t in ref))
    assert order_of_types != sorted(order_of_types)
    got = metadata.draw_pairs(edges, seed=0, order=names)
    intra, rand = _reference_draws(names, ref, 0)
    assert [(t, a, b) for st, t, a, b in got if st == "Intra-type"] == intra
    assert [(a, b) for st, _, a, b in got if st == "Random"] == rand
    assert [(st, p, c) for st, _, p, c in got if st == "FT"] == [("FT", p, c) for c, p, _ in ref]
    assert "solo" not in {t for st, t, _, _ in got if st == "Intra-type"}  # one candidate
    assert len(rand) == len(ref)
    # the candidates' order matters: deduplicated in order of first appearance, other pairs
    assert _reference_draws(names, ref, 0, first_appearance=True) != (intra, rand)
    # extra rows without a parent (roots of a lineage table) change nothing
    roots = edges.iloc[:0].reindex(range(2)).assign(model=["z/base", "a/base"], type="zeta")
    import pandas as pd

    with_roots = pd.concat([roots, edges], ignore_index=True)
    assert metadata.draw_pairs(with_roots, seed=0, order=names) == got
    assert metadata.draw_pairs(edges, seed=1, order=names) != got


def test_a_type_filter_keeps_the_parents_of_its_edges() -> None:
    """Restricting the paper's lineages to a type keeps every edge of that type whole: a
    child's parent stays even when its own type is another (an ``others`` child of a llama-2
    parent)."""
    from kltools import sources
    from kltools.config import Settings

    every, _ = sources.lineages(Settings(profile="pythia"))
    for typ in sorted(set(every.type[every.parent.notna()])):
        table, _ = sources.lineages(Settings(profile="pythia", types=(typ,)))
        edges = table[table.parent.notna()]
        assert set(edges.type) == {typ}
        assert set(edges.parent) <= set(table.model)
        assert len(edges) == int(((every.type == typ) & every.parent.notna()).sum())
