"""The suite's English corpus: committed compressed documents, split by document.

The corpus lives in ``kltools/data/corpus/`` as one xz-compressed JSON-lines file per domain
(``prose``, ``docs``, ``code``) plus ``MANIFEST.json`` (sources, versions, licences, sha256);
``scripts/build_corpus.py`` rebuilds it from pinned public packages. A document is held out
when ``int(sha256("heldout:" + group)) % 1000 < 150``; ``group`` is the chapter id for the two
Bible translations (so a chapter is held out in both) and the file path otherwise.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kltools.errors import KLToolsError

#: the committed corpus
CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "corpus"
#: held-out share, in thousandths
HELDOUT_PER_MILLE = 150
DOMAINS = ("prose", "docs", "code")


@dataclass(frozen=True)
class Document:
    """One corpus document."""

    id: str
    domain: str
    group: str
    source: str
    text: str

    @property
    def heldout(self) -> bool:
        """Whether the document belongs to the held-out split (deterministic, by group)."""
        return is_heldout(self.group)


def is_heldout(group: str) -> bool:
    """The split rule: sha256 of ``"heldout:" + group`` modulo 1000 below 150."""
    digest = hashlib.sha256(f"heldout:{group}".encode()).hexdigest()
    return int(digest, 16) % 1000 < HELDOUT_PER_MILLE


def manifest(corpus_dir: Path = CORPUS_DIR) -> dict:
    """The corpus ``MANIFEST.json``."""
    path = corpus_dir / "MANIFEST.json"
    if not path.is_file():
        raise KLToolsError(
            f"suite corpus manifest {path} is missing; run scripts/build_corpus.py to rebuild it"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def verify(corpus_dir: Path = CORPUS_DIR) -> None:
    """Check every corpus file against the sha256 in the manifest.

    Raises
    ------
    KLToolsError
        If a file is missing or its hash differs.
    """
    for entry in manifest(corpus_dir)["files"]:
        path = corpus_dir / entry["file"]
        if not path.is_file():
            raise KLToolsError(f"suite corpus file {path} is missing; run scripts/build_corpus.py")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != entry["sha256"]:
            raise KLToolsError(
                f"suite corpus file {path} has sha256 {got[:12]}…, the manifest says "
                f"{entry['sha256'][:12]}…; restore it (git checkout) or rerun scripts/build_corpus.py"
            )


def iter_documents(corpus_dir: Path = CORPUS_DIR) -> Iterator[Document]:
    """Every document, domain by domain in manifest order, each in file order."""
    for entry in manifest(corpus_dir)["files"]:
        raw = lzma.decompress((corpus_dir / entry["file"]).read_bytes()).decode("utf-8")
        for line in raw.splitlines():
            rec = json.loads(line)
            yield Document(rec["id"], rec["domain"], rec["group"], rec["source"], rec["text"])


def load_split(corpus_dir: Path = CORPUS_DIR) -> tuple[list[Document], list[Document]]:
    """(training documents, held-out documents), each in corpus order; hashes checked first."""
    verify(corpus_dir)
    train: list[Document] = []
    heldout: list[Document] = []
    for doc in iter_documents(corpus_dir):
        (heldout if doc.heldout else train).append(doc)
    return train, heldout
