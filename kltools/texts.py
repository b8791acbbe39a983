"""Text sets: the fixed texts every model is scored on.

A :class:`TextSet` is an immutable, ordered collection of texts with unique ids (and optionally a
domain and other per-text fields). Its :attr:`TextSet.sha256` identifies the content, so stores
extracted on different text sets are never mixed.

Sources that :func:`load_texts` understands:

* a ``.jsonl`` file: one JSON object per line, field ``text`` required, ``id`` and ``domain``
  optional, any other field kept in :attr:`TextSet.meta`; blank lines are ignored;
* a ``.txt`` file: documents separated by one or more blank lines (lines holding only
  whitespace count as blank), each document stripped of surrounding whitespace, with no further
  cutting; line endings ``\\r\\n`` and ``\\r`` are read as ``\\n``;
* a built-in name: ``"demo"`` (public-domain texts shipped in ``kltools/data/textsets``), or a
  suite profile (:data:`kltools.suite.profiles.PROFILES`) whose analysis set the suite builds under
  ``suite_root(profile)/texts/analysis.jsonl``.

:func:`make_analysis_set` is the paper's recipe (chunk documents into at most 1024 UTF-8 bytes,
keep chunks longer than 256 bytes, ``random.seed(42)``, sample 40,000, keep the first 10,000);
:func:`pile_recipe` applies it to the Pile as the paper did.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError
from kltools.paths import suite_root
from kltools.suite.profiles import PROFILES as SUITE_PROFILES

__all__ = [
    "SUITE_TEXTSETS",
    "TextSet",
    "builtin_textsets",
    "chunk_document",
    "load_texts",
    "make_analysis_set",
    "pile_recipe",
]

#: suite profiles whose analysis text set ``load_texts(<profile>)`` resolves
SUITE_TEXTSETS: tuple[str, ...] = tuple(SUITE_PROFILES)

_BUILTIN_DIR = Path(__file__).resolve().parent / "data" / "textsets"


@dataclass(frozen=True)
class TextSet:
    """An ordered, immutable set of texts.

    Parameters
    ----------
    name : str
        A short label recorded in stores (``textset_name``).
    ids : sequence of str
        One unique, non-empty id per text.
    texts : sequence of str
        The texts; none may be empty.
    domains : sequence of str, optional
        One domain label per text (for the Pile: ``pile_set_name``).
    meta : mapping of str to sequence, optional
        Extra per-text fields (e.g. ``doc_idx``, ``chunk_idx``), each a sequence as long as
        ``texts``. Stored as a dict of tuples.

    Raises
    ------
    KLToolsError
        If lengths differ, an id repeats or is empty, or a text is empty.
    """

    name: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    domains: tuple[str, ...] | None = None
    meta: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = tuple(str(i) for i in self.ids)
        texts = tuple(self.texts)
        domains = None if self.domains is None else tuple(str(d) for d in self.domains)
        meta = {str(k): tuple(v) for k, v in dict(self.meta or {}).items()}
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "domains", domains)
        object.__setattr__(self, "meta", meta)
        n = len(texts)
        if len(ids) != n:
            raise KLToolsError(
                f"text set {self.name!r}: {len(ids)} ids for {n} texts; give one id per text"
            )
        if domains is not None and len(domains) != n:
            raise KLToolsError(
                f"text set {self.name!r}: {len(domains)} domains for {n} texts; "
                "give one domain per text or none"
            )
        for key, values in meta.items():
            if len(values) != n:
                raise KLToolsError(
                    f"text set {self.name!r}: meta field {key!r} has {len(values)} values for "
                    f"{n} texts; give one value per text"
                )
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise KLToolsError(
                    f"text set {self.name!r}: text {i} is a {type(t).__name__}, not a str"
                )
            if not t:
                raise KLToolsError(
                    f"text set {self.name!r}: text {i} (id {ids[i]!r}) is empty; drop empty texts"
                )
        if len(set(ids)) != n:
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise KLToolsError(f"text set {self.name!r}: id {dup!r} occurs more than once")
        if any(not i for i in ids):
            raise KLToolsError(f"text set {self.name!r}: an id is empty; ids must be non-empty")

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return (
            f"TextSet(name={self.name!r}, n={len(self)}, mean_bytes={self.mean_bytes:.1f}, "
            f"domains={'yes' if self.domains is not None else 'no'}, "
            f"meta={list(self.meta)}, sha256={self.sha256[:12]}...)"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    @cached_property
    def n_bytes(self) -> np.ndarray:
        """UTF-8 byte length of each text (read-only ``int64`` array)."""
        arr = np.fromiter(
            (len(t.encode("utf-8")) for t in self.texts), dtype=np.int64, count=len(self)
        )
        arr.flags.writeable = False
        return arr

    @property
    def mean_bytes(self) -> float:
        """Mean UTF-8 byte length B̄ of the texts (NaN for an empty set)."""
        return float(self.n_bytes.mean()) if len(self) else float("nan")

    @cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the texts in order, independent of name, ids, domains and meta.

        The hashed byte stream is, for each text in order, the 8-byte little-endian unsigned
        length of its UTF-8 encoding followed by those bytes. The length prefix makes the
        framing unambiguous (``["ab", "c"]`` and ``["a", "bc"]`` hash differently).
        """
        h = hashlib.sha256()
        for t in self.texts:
            b = t.encode("utf-8")
            h.update(struct.pack("<Q", len(b)))
            h.update(b)
        return h.hexdigest()

    def subset(self, n: int | None = None, indices: Sequence[int] | None = None) -> TextSet:
        """A new text set with the first ``n`` texts or the texts at ``indices`` (in that order).

        Parameters
        ----------
        n : int, optional
            Keep the first ``n`` texts (``1 <= n``; larger than ``len`` keeps all).
        indices : sequence of int, optional
            Keep these positions, in the order given (no repeats).

        Returns
        -------
        TextSet
            Named ``"<name>[:n]"`` or ``"<name>[<k> of <len>]"``.
        """
        if (n is None) == (indices is None):
            raise KLToolsError("TextSet.subset: give exactly one of n= or indices=")
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise KLToolsError(f"TextSet.subset: n must be a positive integer, not {n!r}")
            idx = list(range(min(int(n), len(self))))
            name = f"{self.name}[:{int(n)}]"
        else:
            idx = [int(i) for i in np.asarray(indices).reshape(-1)]
            bad = [i for i in idx if not -len(self) <= i < len(self)]
            if bad:
                raise KLToolsError(
                    f"TextSet.subset: index {bad[0]} out of range for {len(self)} texts"
                )
            idx = [i % len(self) for i in idx]
            name = f"{self.name}[{len(idx)} of {len(self)}]"
        return TextSet(
            name=name,
            ids=[self.ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            domains=None if self.domains is None else [self.domains[i] for i in idx],
            meta={k: [v[i] for i in idx] for k, v in self.meta.items()},
        )

    def records(self) -> Iterator[dict[str, Any]]:
        """One dict per text: ``id``, ``text``, ``domain`` (if any) and the meta fields."""
        for i, (tid, text) in enumerate(zip(self.ids, self.texts)):
            rec: dict[str, Any] = {"id": tid, "text": text}
            if self.domains is not None:
                rec["domain"] = self.domains[i]
            for k, v in self.meta.items():
                rec[k] = v[i]
            yield rec

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write the set as JSON lines (``id``, ``text``, ``domain``, meta fields); UTF-8.

        ``load_texts(path)`` reads it back to an equal set (up to the name, which becomes the
        file stem).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="\n") as f:
            for rec in self.records():
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return path


# --------------------------------------------------------------------------------------------
# loading


def builtin_textsets() -> list[str]:
    """Names :func:`load_texts` accepts besides paths: shipped sets, then suite profiles."""
    shipped = sorted(p.stem for p in _BUILTIN_DIR.glob("*.jsonl"))
    return shipped + [s for s in SUITE_TEXTSETS if s not in shipped]


def _read_utf8(path: Path) -> str:
    """Read ``path`` as strict UTF-8, naming the line and byte offset of a bad byte."""
    if not path.is_file():
        raise KLToolsError(f"text file not found: {path}; check the path")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise KLToolsError(
            f"{path} is not valid UTF-8: byte offset {e.start} (line {line}): {e.reason}; "
            "re-encode the file as UTF-8"
        ) from None


def _parse_jsonl(path: Path, name: str) -> TextSet:
    content = _read_utf8(path)
    ids: list[str] = []
    texts: list[str] = []
    domains: list[str] = []
    any_domain = False
    meta: dict[str, dict[int, Any]] = {}
    for lineno, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise KLToolsError(
                f"{path} line {lineno} is not JSON ({e.msg}); each line must be one JSON object"
            ) from None
        if not isinstance(obj, dict) or "text" not in obj:
            raise KLToolsError(f"{path} line {lineno} has no field 'text'; every line needs one")
        text = obj["text"]
        if not isinstance(text, str) or not text:
            raise KLToolsError(
                f"{path} line {lineno}: field 'text' must be a non-empty string; drop empty texts"
            )
        k = len(texts)
        texts.append(text)
        ids.append(str(obj["id"]) if "id" in obj else f"t{k:05d}")
        if "domain" in obj:
            any_domain = True
        domains.append("" if obj.get("domain") is None else str(obj["domain"]))
        for key, value in obj.items():
            if key not in ("id", "text", "domain"):
                meta.setdefault(key, {})[k] = value
    if not texts:
        raise KLToolsError(f"{path} holds no texts; give a file with at least one line")
    full_meta = {key: [vals.get(i) for i in range(len(texts))] for key, vals in meta.items()}
    return TextSet(name, ids, texts, domains if any_domain else None, full_meta)


def _parse_txt(path: Path, name: str) -> TextSet:
    content = _read_utf8(path).replace("\r\n", "\n").replace("\r", "\n")
    docs: list[str] = []
    current: list[str] = []
    for line in content.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            docs.append("\n".join(current).strip())
            current = []
    if current:
        docs.append("\n".join(current).strip())
    if not docs:
        raise KLToolsError(f"{path} holds no texts; give a file with at least one document")
    return TextSet(name, [f"t{i:05d}" for i in range(len(docs))], docs)


def _resolve_builtin(name: str) -> Path:
    shipped = _BUILTIN_DIR / f"{name}.jsonl"
    if shipped.is_file():
        return shipped
    if name in SUITE_TEXTSETS:
        path = suite_root(name) / "texts" / "analysis.jsonl"
        if not path.is_file():
            raise KLToolsError(
                f"the {name!r} text set is not built yet ({path} missing); run "
                f"`kltools suite build --profile {name}`"
            )
        return path
    raise KLToolsError(
        f"unknown text set {name!r}; give a .jsonl or .txt path or one of: "
        + ", ".join(builtin_textsets())
    )


def load_texts(source: str | os.PathLike[str] | TextSet, *, limit: int | None = None) -> TextSet:
    """Load a text set from a file or a built-in name.

    Parameters
    ----------
    source : str, path or TextSet
        A ``.jsonl`` or ``.txt`` path (see the module docstring for the formats), a built-in
        name (see :func:`builtin_textsets`), or a TextSet (returned as is, or cut by ``limit``).
    limit : int, optional
        Keep only the first ``limit`` texts.

    Returns
    -------
    TextSet
        Named after the file stem or the built-in name.

    Raises
    ------
    KLToolsError
        Missing or empty file, invalid UTF-8, a bad jsonl line, an unknown name, or a suite text
        set that has not been built.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise KLToolsError(f"limit must be a positive integer, not {limit!r}")
    if isinstance(source, TextSet):
        ts = source
    else:
        text = os.fspath(source)
        path = Path(text)
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".txt"):
            if not path.is_file():
                raise KLToolsError(f"text file not found: {path}; check the path")
            parser = _parse_jsonl if suffix == ".jsonl" else _parse_txt
            ts = parser(path, path.stem)
        elif path.exists():
            raise KLToolsError(
                f"cannot read texts from {path}: use a .jsonl or .txt file or a built-in name"
            )
        elif os.sep in text or "/" in text or suffix:
            raise KLToolsError(f"text file not found: {path}; give a .jsonl or .txt path")
        else:
            ts = _parse_jsonl(_resolve_builtin(text), text)
    if limit is not None and limit < len(ts):
        ts = ts.subset(n=limit)
    return ts


# --------------------------------------------------------------------------------------------
# the paper's recipe


def chunk_document(text: str, max_bytes: int = 1024) -> list[str]:
    """Cut a document into consecutive chunks of at most ``max_bytes`` UTF-8 bytes.

    Each cut is placed ``max_bytes`` after the previous one and moved back to the nearest
    character boundary, so no character is split and concatenating the chunks gives ``text``
    back. Nothing is stripped or dropped.

    Parameters
    ----------
    text : str
        The document.
    max_bytes : int
        Largest chunk size in bytes; at least 4 (the longest UTF-8 character).

    Returns
    -------
    list of str
        The chunks, in order (empty for an empty document).
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 4:
        raise KLToolsError(f"max_bytes must be an integer >= 4, not {max_bytes!r}")
    data = text.encode("utf-8")
    chunks: list[str] = []
    start, n = 0, len(data)
    while start < n:
        end = min(start + max_bytes, n)
        while end < n and (data[end] & 0xC0) == 0x80:  # a continuation byte: move back
            end -= 1
        chunks.append(data[start:end].decode("utf-8"))
        start = end
    return chunks


def make_analysis_set(
    documents: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    max_bytes: int = 1024,
    min_bytes: int = 256,
    seed: int = 42,
    sample_size: int = 40000,
    n: int = 10000,
    name: str = "analysis",
) -> TextSet:
    """The paper's analysis-set recipe on any stream of documents.

    Every document is cut with :func:`chunk_document` (``max_bytes``); chunks longer than
    ``min_bytes`` bytes are kept, in document then chunk order; ``random.seed(seed)`` and
    ``random.sample(chunks, min(sample_size, len(chunks)))`` draw a sample (done with a private
    ``random.Random(seed)``, which gives the same sample without touching the global state);
    the first ``n`` sampled chunks form the set.

    Parameters
    ----------
    documents : iterable of (str, mapping)
        ``(text, meta)`` pairs; ``meta["domain"]`` (else ``meta["pile_set_name"]``), when
        present, becomes the chunk's domain.
    max_bytes, min_bytes, seed, sample_size, n
        The recipe's constants (paper: 1024, 256, 42, 40000, 10000).
    name : str
        Name of the returned set.

    Returns
    -------
    TextSet
        ids ``d<doc>_c<chunk>``, domains (if any document had one; else None) and meta fields
        ``doc_idx`` (position of the document in the stream) and ``chunk_idx``.
    """
    if min_bytes < 0 or n < 1 or sample_size < 1:
        raise KLToolsError(
            f"make_analysis_set: need min_bytes >= 0, n >= 1, sample_size >= 1 "
            f"(got {min_bytes}, {n}, {sample_size})"
        )
    # One pass over the documents. Kept chunks are spilled to a temporary file; memory holds
    # only their offsets and labels (about 20 bytes per chunk: ~120 MB for the paper's 5.7
    # million chunks instead of several GB of text). random.sample picks positions that depend
    # only on the population's length, so sampling range(len) and reading the chosen chunks
    # back gives exactly random.sample(chunks, k).
    offsets, doc_ids, chunk_ids, dom_codes = (array("q"), array("q"), array("q"), array("i"))
    domains: dict[str | None, int] = {}
    with tempfile.TemporaryFile() as spill:
        pos = 0
        for doc_idx, (doc, meta) in enumerate(documents):
            meta = meta or {}
            domain = meta.get("domain", meta.get("pile_set_name"))
            code = domains.setdefault(domain, len(domains))
            for chunk_idx, chunk in enumerate(chunk_document(doc, max_bytes)):
                raw = chunk.encode("utf-8")
                if len(raw) > min_bytes:
                    spill.write(raw)
                    offsets.append(pos)
                    pos += len(raw)
                    doc_ids.append(doc_idx)
                    chunk_ids.append(chunk_idx)
                    dom_codes.append(code)
        offsets.append(pos)
        if len(doc_ids) == 0:
            raise KLToolsError(
                f"make_analysis_set: no chunk is longer than {min_bytes} bytes; give longer "
                "documents"
            )
        picked = random.Random(seed).sample(range(len(doc_ids)), min(sample_size, len(doc_ids)))
        picked = picked[:n]
        texts = []
        for i in picked:
            spill.seek(offsets[i])
            texts.append(spill.read(offsets[i + 1] - offsets[i]).decode("utf-8"))
    names = {code: dom for dom, code in domains.items()}
    sample_domains = [names[dom_codes[i]] for i in picked]
    has_domain = any(d is not None for d in sample_domains)
    return TextSet(
        name=name,
        ids=[f"d{doc_ids[i]}_c{chunk_ids[i]}" for i in picked],
        texts=texts,
        domains=[("" if d is None else str(d)) for d in sample_domains] if has_domain else None,
        meta={"doc_idx": [doc_ids[i] for i in picked], "chunk_idx": [chunk_ids[i] for i in picked]},
    )


def _iter_pile_jsonl(path: Path, n_docs: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Documents of a local Pile-style jsonl dump: ``text`` and ``meta.pile_set_name``."""
    if not path.is_file():
        raise KLToolsError(f"Pile dump not found: {path}; check source=")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno > n_docs:
                break
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise KLToolsError(
                    f"{path} line {lineno} is not valid UTF-8 (byte {e.start} of the line)"
                ) from None
            except json.JSONDecodeError as e:
                raise KLToolsError(f"{path} line {lineno} is not JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise KLToolsError(f"{path} line {lineno} has no string field 'text'")
            meta = obj.get("meta") or {}
            yield obj["text"], {"pile_set_name": meta.get("pile_set_name")}


def _iter_pile_hub(
    dataset: str, split: str, streaming: bool, n_docs: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Documents of the Pile through ``datasets`` (imported lazily)."""
    offline = any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    if offline:
        raise KLToolsError(
            f"cannot stream {dataset!r}: the Hugging Face hub is offline (HF_HUB_OFFLINE); "
            "pass source=<local Pile jsonl dump> or unset HF_HUB_OFFLINE on a connected machine"
        )
    try:
        import datasets
    except ImportError:
        raise KLToolsError(
            "pile_recipe needs the `datasets` package; install kltools[pile]"
        ) from None
    try:
        ds = datasets.load_dataset(dataset, split=split, streaming=streaming)
        for i, row in enumerate(ds):
            if i >= n_docs:
                break
            meta = row.get("meta") or {}
            yield row["text"], {"pile_set_name": meta.get("pile_set_name")}
    except KLToolsError:
        raise
    except Exception as e:  # network, auth, missing dataset: one line for the user
        raise KLToolsError(f"could not read {dataset!r} ({split}): {type(e).__name__}: {e}") from e


def pile_recipe(
    n: int = 10000,
    *,
    n_docs: int = 1_000_000,
    dataset: str = "monology/pile-uncopyrighted",
    split: str = "train",
    streaming: bool = True,
    source: str | os.PathLike[str] | None = None,
    seed: int = 42,
    sample_size: int = 40000,
    max_bytes: int = 1024,
    min_bytes: int = 256,
) -> TextSet:
    """The paper's text set: the first ``n_docs`` Pile documents through :func:`make_analysis_set`.

    Parameters
    ----------
    n : int
        Texts kept (paper: 10,000).
    n_docs : int
        Documents read from the start of the split (paper: 1,000,000).
    dataset, split, streaming
        Passed to ``datasets.load_dataset`` when ``source`` is None (needs the hub).
    source : path, optional
        A local jsonl dump instead of the hub, one Pile record per line (``text`` and
        ``meta.pile_set_name``).
    seed, sample_size, max_bytes, min_bytes
        The recipe's constants (paper: 42, 40000, 1024, 256).

    Returns
    -------
    TextSet
        Named ``"pile"``; domains are ``pile_set_name``; meta fields ``pile_idx`` and
        ``chunk_idx`` as in the paper. The kept chunks are spilled to a temporary file while
        sampling (for the full recipe about 5.7 million chunks, several GB of disk, ~120 MB
        of memory).
    """
    docs = (
        _iter_pile_jsonl(Path(source), n_docs)
        if source is not None
        else _iter_pile_hub(dataset, split, streaming, n_docs)
    )
    ts = make_analysis_set(
        docs,
        max_bytes=max_bytes,
        min_bytes=min_bytes,
        seed=seed,
        sample_size=sample_size,
        n=n,
        name="pile",
    )
    meta = {"pile_idx": ts.meta["doc_idx"], "chunk_idx": ts.meta["chunk_idx"]}
    return TextSet(ts.name, ts.ids, ts.texts, ts.domains, meta)
