"""Tests of kltools.texts: TextSet, load_texts, chunk_document and the paper's sampling recipe."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from kltools.errors import KLToolsError
from kltools.texts import (
    TextSet,
    builtin_textsets,
    chunk_document,
    load_texts,
    make_analysis_set,
    pile_recipe,
)

MULTIBYTE = "Größe 東京都の日本語 🙂🚀 Ωμέγα café — "  # 1-, 2-, 3- and 4-byte characters


# ------------------------------------------------------------------------------ TextSet


def test_textset_properties() -> None:
    ts = TextSet("x", ["a", "b", "c"], ["hi", "東京", "🙂!"], domains=["d1", "d2", "d1"])
    assert len(ts) == 3
    assert ts.n_bytes.dtype == np.int64
    assert ts.n_bytes.tolist() == [2, 6, 5]
    assert ts.mean_bytes == pytest.approx(13 / 3)
    with pytest.raises(ValueError):
        ts.n_bytes[0] = 1  # read-only
    assert isinstance(ts.texts, tuple) and isinstance(ts.ids, tuple)


def test_sha256_framing_is_unambiguous() -> None:
    a = TextSet("a", ["1", "2"], ["ab", "c"])
    b = TextSet("b", ["1", "2"], ["a", "bc"])
    assert a.sha256 != b.sha256
    ref = hashlib.sha256()
    for t in ("ab", "c"):
        raw = t.encode("utf-8")
        ref.update(struct.pack("<Q", len(raw)) + raw)
    assert a.sha256 == ref.hexdigest()
    # name and ids do not enter the hash; order does
    assert TextSet("z", ["p", "q"], ["ab", "c"]).sha256 == a.sha256
    assert TextSet("a", ["1", "2"], ["c", "ab"]).sha256 != a.sha256


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ids": ["a", "a"], "texts": ["x", "y"]}, "occurs more than once"),
        ({"ids": ["a", "b"], "texts": ["x", ""]}, "empty"),
        ({"ids": ["a"], "texts": ["x", "y"]}, "1 ids for 2 texts"),
        ({"ids": ["a", "b"], "texts": ["x", "y"], "domains": ["d"]}, "domains"),
        ({"ids": ["a", "b"], "texts": ["x", "y"], "meta": {"k": [1]}}, "meta field 'k'"),
    ],
)
def test_textset_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(KLToolsError, match=match):
        TextSet("bad", **kwargs)


def test_subset() -> None:
    ts = TextSet("x", list("abcd"), ["t1", "t2", "t3", "t4"], list("pqrs"), {"k": [1, 2, 3, 4]})
    first = ts.subset(n=2)
    assert first.texts == ("t1", "t2") and first.domains == ("p", "q")
    picked = ts.subset(indices=[3, 0])
    assert picked.ids == ("d", "a") and picked.meta["k"] == (4, 1)
    assert ts.subset(n=10).texts == ts.texts
    with pytest.raises(KLToolsError):
        ts.subset()
    with pytest.raises(KLToolsError, match="out of range"):
        ts.subset(indices=[7])
    with pytest.raises(KLToolsError, match="occurs more than once"):
        ts.subset(indices=[1, 1])


def test_jsonl_round_trip(tmp_path: Path) -> None:
    ts = TextSet(
        "rt", ["a", "b"], ["one " + MULTIBYTE, "two\nlines"], ["x", "y"], {"doc_idx": [3, 5]}
    )
    back = load_texts(ts.to_jsonl(tmp_path / "rt.jsonl"))
    assert back == ts
    assert back.sha256 == ts.sha256


# ------------------------------------------------------------------------------ load_texts


def test_load_jsonl_defaults(tmp_path: Path) -> None:
    p = tmp_path / "s.jsonl"
    p.write_text('{"text": "alpha"}\n\n{"text": "beta", "extra": 1}\n', encoding="utf-8")
    ts = load_texts(p)
    assert ts.name == "s"
    assert ts.ids == ("t00000", "t00001")
    assert ts.domains is None
    assert ts.meta == {"extra": (None, 1)}
    assert load_texts(str(p), limit=1).texts == ("alpha",)


def test_load_txt_splitting(tmp_path: Path) -> None:
    p = tmp_path / "docs.txt"
    p.write_bytes(b"\n  First doc\nline two  \n\n \n\t\r\nSecond  doc\r\n\n\n\nthird")
    ts = load_texts(p)
    assert ts.texts == ("First doc\nline two", "Second  doc", "third")


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        (b"", ".jsonl", "holds no texts"),
        (b"\n \n", ".txt", "holds no texts"),
        (b'{"text": "ok"}\nnot json\n', ".jsonl", "line 2 is not JSON"),
        (b'{"text": "ok"}\n{"id": "x"}\n', ".jsonl", "line 2 has no field 'text'"),
        (b'{"text": "ok"}\n{"text": ""}\n', ".jsonl", "line 2"),
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', ".jsonl", r"byte offset 28 \(line 2\)"),
        (b'{"text": "a", "id": "1"}\n{"text": "b", "id": 1}\n', ".jsonl", "more than once"),
    ],
)
def test_load_errors(tmp_path: Path, content: bytes, suffix: str, match: str) -> None:
    p = tmp_path / f"f{suffix}"
    p.write_bytes(content)
    with pytest.raises(KLToolsError, match=match):
        load_texts(p)


def test_load_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(KLToolsError, match="not found"):
        load_texts(tmp_path / "nope.jsonl")
    with pytest.raises(KLToolsError, match="unknown text set 'nope'.*demo"):
        load_texts("nope")
    with pytest.raises(KLToolsError, match="positive integer"):
        load_texts("demo", limit=0)


def test_builtin_demo() -> None:
    ts = load_texts("demo")
    assert ts.name == "demo"
    assert 40 <= len(ts) <= 60
    assert ts.n_bytes.min() >= 300 and ts.n_bytes.max() <= 1024
    assert ts.domains is not None and "declaration" in set(ts.domains)
    assert "demo" in builtin_textsets() and "tiny" in builtin_textsets()


def test_builtin_demo_is_reproducible() -> None:
    import importlib.util

    builder = Path(__file__).resolve().parents[1] / "kltools/data/textsets/build_demo.py"
    spec = importlib.util.spec_from_file_location("build_demo", builder)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build() == load_texts("demo")


def test_suite_textset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(tmp_path))
    with pytest.raises(KLToolsError, match="kltools suite build --profile smoke"):
        load_texts("smoke")
    TextSet("a", ["x"], ["some text"], ["dom"]).to_jsonl(tmp_path / "smoke/texts/analysis.jsonl")
    ts = load_texts("smoke")
    assert ts.name == "smoke" and ts.texts == ("some text",) and ts.domains == ("dom",)


# ------------------------------------------------------------------------------ chunking


def _ref_chunks(text: str, max_bytes: int) -> list[str]:
    """Independent reference: add characters while they fit."""
    chunks, cur, size = [], [], 0
    for ch in text:
        b = len(ch.encode("utf-8"))
        if size + b > max_bytes:
            chunks.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += b
    if cur:
        chunks.append("".join(cur))
    return chunks


@pytest.mark.parametrize("max_bytes", [4, 5, 7, 64, 1024])
def test_chunk_document_multibyte(max_bytes: int) -> None:
    text = MULTIBYTE * 40
    chunks = chunk_document(text, max_bytes)
    assert "".join(chunks) == text
    assert all(0 < len(c.encode("utf-8")) <= max_bytes for c in chunks)
    assert chunks == _ref_chunks(text, max_bytes)


def test_chunk_document_edges() -> None:
    assert chunk_document("") == []
    assert chunk_document("a" * 2048) == ["a" * 1024, "a" * 1024]
    assert chunk_document("a" * 1023 + "東") == ["a" * 1023, "東"]
    with pytest.raises(KLToolsError, match="max_bytes"):
        chunk_document("abc", 3)


# ------------------------------------------------------------------------------ the recipe


def _write_pile(path: Path, n_docs: int = 60) -> list[tuple[str, str]]:
    """A small local stand-in for a Pile jsonl dump, with multi-byte text and varied lengths."""
    rng = np.random.default_rng(7)
    words = ["the", "model", "text", "東京", "日本語", "🙂", "Größe", "naïve", "KL", "bits"]
    sets = ["Pile-CC", "ArXiv", "Github", "Wikipedia (en)"]
    docs = []
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_docs):
            n_words = int(rng.integers(5, 900))
            text = " ".join(words[j] for j in rng.integers(0, len(words), n_words))
            name = sets[i % len(sets)]
            docs.append((text, name))
            f.write(json.dumps({"text": text, "meta": {"pile_set_name": name}}) + "\n")
    return docs


def _reference_recipe(docs, n_docs, max_bytes, min_bytes, seed, sample_size, n):
    """Independent re-implementation with the global `random` module, as the paper did."""
    chunks = []
    for d, (text, name) in enumerate(docs[:n_docs]):
        for c, chunk in enumerate(_ref_chunks(text, max_bytes)):
            if len(chunk.encode("utf-8")) > min_bytes:
                chunks.append({"text": chunk, "pile_set_name": name, "pile_idx": d, "chunk_idx": c})
    state = random.getstate()
    try:
        random.seed(seed)
        sample = random.sample(chunks, min(sample_size, len(chunks)))
    finally:
        random.setstate(state)
    return sample[:n]


@pytest.mark.parametrize(("sample_size", "n"), [(5, 5), (40, 25), (10_000, 10_000)])
def test_pile_recipe_matches_reference(tmp_path: Path, sample_size: int, n: int) -> None:
    src = tmp_path / "pile.jsonl"
    docs = _write_pile(src)
    ts = pile_recipe(n, n_docs=50, source=src, sample_size=sample_size, max_bytes=300)
    ref = _reference_recipe(docs, 50, 300, 256, 42, sample_size, n)
    assert ts.texts == tuple(r["text"] for r in ref)
    assert ts.domains == tuple(r["pile_set_name"] for r in ref)
    assert ts.meta["pile_idx"] == tuple(r["pile_idx"] for r in ref)
    assert ts.meta["chunk_idx"] == tuple(r["chunk_idx"] for r in ref)
    assert max(ts.meta["pile_idx"]) < 50
    assert (ts.n_bytes > 256).all() and (ts.n_bytes <= 300).all()
    for t in ts.texts:  # every text is a character-aligned slice of its document
        t.encode("utf-8").decode("utf-8")
    assert len(ts) == len(ref) > 0


def test_recipe_memory_does_not_hold_the_chunks() -> None:
    """One pass, chunks spilled to disk: the traced peak is a small fraction of the text."""
    import tracemalloc

    def documents(n_docs: int = 1200, words: int = 1600):
        for i in range(n_docs):  # ~9.6 MB of text in ~10k chunks, generated lazily
            yield (" ".join(f"w{i}x{j}" for j in range(words)), {"domain": f"s{i % 3}"})

    total = sum(len(t.encode()) for t, _ in documents())
    tracemalloc.start()
    ts = make_analysis_set(documents(), sample_size=50, n=50)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(ts) == 50 and set(ts.domains) <= {"s0", "s1", "s2"}
    assert peak < total / 10, (peak, total)


def test_recipe_default_constants(tmp_path: Path) -> None:
    src = tmp_path / "pile.jsonl"
    docs = _write_pile(src)
    ts = pile_recipe(n=10, source=src)
    ref = _reference_recipe(docs, 10**6, 1024, 256, 42, 40000, 10)
    assert ts.texts == tuple(r["text"] for r in ref)
    assert (ts.n_bytes > 256).all() and (ts.n_bytes <= 1024).all()


def test_private_rng_equals_global_seed() -> None:
    population = [f"chunk{i}" for i in range(5000)]
    random.seed(42)
    expected = random.sample(population, 400)
    assert random.Random(42).sample(population, 400) == expected


def test_make_analysis_set_domains_and_errors() -> None:
    docs = [("x" * 600, {"domain": "a"}), ("y" * 100, {"domain": "b"}), ("z" * 2000, {})]
    ts = make_analysis_set(docs, n=100, name="s")
    assert ts.name == "s"
    assert sorted(ts.ids) == ["d0_c0", "d2_c0", "d2_c1"]  # doc 1 is too short
    assert dict(zip(ts.ids, ts.domains))["d0_c0"] == "a"
    assert dict(zip(ts.ids, ts.domains))["d2_c0"] == ""
    with pytest.raises(KLToolsError, match="no chunk is longer than 256"):
        make_analysis_set([("short", {})])


def test_pile_recipe_offline_without_source() -> None:
    with pytest.raises(KLToolsError, match="offline"):
        pile_recipe(10)
