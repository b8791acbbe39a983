"""Rebuild the suite's English corpus from pinned public packages and check every download.

The committed corpus (``kltools/data/corpus/*.jsonl.xz`` + ``MANIFEST.json``) is what the suite
trains on; this script shows where it comes from and rebuilds it byte for byte:

=======  ===============================================  ==========================  =============
domain   source                                           package (pinned)            licence
=======  ===============================================  ==========================  =============
prose    World English Bible (SWORD module, OSIS markup)  Debian sword-text-web        public domain
prose    King James Version 1769 (SWORD module)           Debian sword-text-kjv        public domain
docs     Django documentation (reStructuredText)          PyPI Django 5.1.4 sdist      BSD-3-Clause
code     Django source code (``django/``, ``tests/``)     PyPI Django 5.1.4 sdist      BSD-3-Clause
=======  ===============================================  ==========================  =============

Downloads go through the ordinary clients (``apt-get download``, ``pip download``); the sha256
of every downloaded file is checked against the pins below before anything is read. Usage::

    python scripts/build_corpus.py [--out kltools/data/corpus] [--cache DIR] [--check]

``--check`` rebuilds into a temporary folder and compares with the committed files.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import io
import json
import lzma
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

#: downloaded files: name -> (how to fetch, version, sha256, licence)
SOURCES: dict[str, dict[str, str]] = {
    "sword-text-web_426.0-1_all.deb": {
        "fetch": "apt-get download sword-text-web=426.0-1",
        "registry": "debian (bookworm main)",
        "package": "sword-text-web",
        "version": "426.0-1",
        "sha256": "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
        "licence": "public-domain (World English Bible)",
    },
    "sword-text-kjv_14.3-1_all.deb": {
        "fetch": "apt-get download sword-text-kjv=14.3-1",
        "registry": "debian (bookworm main)",
        "package": "sword-text-kjv",
        "version": "14.3-1",
        "sha256": "9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57",
        "licence": "public-domain (King James Version, 1769 text)",
    },
    "Django-5.1.4.tar.gz": {
        "fetch": "pip download --no-deps --no-binary :all: django==5.1.4",
        "registry": "pypi",
        "package": "Django",
        "version": "5.1.4",
        "sha256": "de450c09e91879fa5a307f696e57c851955c910a438a35e6b4c895e86bedc82a",
        "licence": "BSD-3-Clause",
    },
}

#: at most this many bytes of code (django/ first, then tests/, in path order)
CODE_CAP_BYTES = 9_000_000
#: documents shorter than this (bytes) are dropped
MIN_DOC_BYTES = 200


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, cache: Path) -> Path:
    """Download one pinned source into ``cache`` (unless there) and check its sha256."""
    spec = SOURCES[name]
    path = cache / name
    if not path.is_file():
        cmd = spec["fetch"].split()
        if cmd[0] == "pip":
            cmd = [sys.executable, "-m", *cmd, "-d", str(cache), "-q"]
        subprocess.run(cmd, cwd=cache, check=True)
    if not path.is_file():
        raise SystemExit(f"build_corpus: {spec['fetch']} did not produce {name}")
    got = sha256_file(path)
    if got != spec["sha256"]:
        raise SystemExit(f"build_corpus: sha256 mismatch for {name}: {got} != {spec['sha256']}")
    return path


def deb_members(deb: Path) -> dict[str, bytes]:
    """The regular files of a .deb's data archive, by path (``dpkg-deb --fsys-tarfile``)."""
    raw = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True)
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name.lstrip("./")] = tar.extractfile(m).read()
    return out


def sword_blocks(files: dict[str, bytes], module_dir: str) -> Iterator[str]:
    """Decompressed text blocks of a SWORD zText module (``ot`` then ``nt``)."""
    for testament in ("ot", "nt"):
        bzs = files.get(f"{module_dir}/{testament}.bzs")
        bzz = files.get(f"{module_dir}/{testament}.bzz")
        if bzs is None or bzz is None:
            continue
        for i in range(len(bzs) // 12):
            off, size, _ = struct.unpack("<III", bzs[12 * i : 12 * i + 12])
            yield zlib.decompress(bzz[off : off + size]).decode("utf-8")


_CHAPTER = re.compile(r'<chapter\b[^>]*\bsID="([^"]+)"[^>]*/>')


def osis_to_text(osis: str) -> str:
    """Plain text of an OSIS fragment: notes dropped, paragraphs and poetry lines kept."""
    s = re.sub(r"<note\b.*?</note>", " ", osis, flags=re.S)  # a note stands for a space
    s = re.sub(r'<div\b[^>]*\beID="[^"]*"[^>]*type="x-p"[^>]*/>', "\n", s)
    s = re.sub(r"</title>|<lb\b[^>]*/>|</l>|<l\b[^>]*\beID=[^>]*/>", "\n", s)
    s = re.sub(r"<[^>]+>", "", s)
    s = html.unescape(s)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in s.split("\n")]
    lines = [re.sub(r" ([,.;:!?\u2019\u201d])", r"\1", line) for line in lines]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def bible_documents(deb: Path, module: str, source: str) -> Iterator[dict[str, str]]:
    """One document per chapter of a SWORD Bible module; ``group`` is the chapter's osisID."""
    files = deb_members(deb)
    module_dir = f"usr/share/sword/modules/texts/ztext/{module}"
    for block in sword_blocks(files, module_dir):
        parts = _CHAPTER.split(block)
        # parts: [before, id1, body1, id2, body2, ...]; text before the first chapter is
        # front matter (prefaces, book titles) and is attached to nothing.
        for osis_id, body in zip(parts[1::2], parts[2::2]):
            text = osis_to_text(body)
            if len(text.encode("utf-8")) >= MIN_DOC_BYTES:
                yield {"group": osis_id, "source": source, "title": osis_id, "text": text}


def django_documents(sdist: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Documentation (``docs/**/*.txt``) and code (``django/``, ``tests/`` ``*.py``) documents."""
    docs: list[dict[str, str]] = []
    code: list[dict[str, str]] = []
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        texts = {m.name: tar.extractfile(m).read() for m in members}
    prefix = "Django-5.1.4/"
    for name, raw in texts.items():
        rel = name[len(prefix) :]
        if rel.startswith("docs/") and rel.endswith(".txt"):
            text = raw.decode("utf-8").strip()
            if len(text.encode("utf-8")) >= MIN_DOC_BYTES:
                docs.append(
                    {"group": rel, "source": "django-5.1.4-docs", "title": rel, "text": text}
                )
    used = 0
    for top in ("django/", "tests/"):
        for name, raw in texts.items():
            rel = name[len(prefix) :]
            if not (rel.startswith(top) and rel.endswith(".py")):
                continue
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                continue
            n = len(text.encode("utf-8"))
            if n < MIN_DOC_BYTES or used + n > CODE_CAP_BYTES:
                continue
            used += n
            code.append({"group": rel, "source": "django-5.1.4-code", "title": rel, "text": text})
    return docs, code


def write_domain(out: Path, domain: str, docs: list[dict[str, str]]) -> dict[str, object]:
    """Write ``<domain>.jsonl.xz`` (deterministic xz) and return its manifest entry."""
    lines = []
    for i, d in enumerate(docs):
        rec = {"id": f"{domain}/{i:05d}", "domain": domain, **d}
        lines.append(json.dumps(rec, ensure_ascii=False, sort_keys=True))
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    path = out / f"{domain}.jsonl.xz"
    path.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    return {
        "file": path.name,
        "domain": domain,
        "n_documents": len(docs),
        "n_bytes_uncompressed": len(raw),
        "sha256": sha256_file(path),
        "sha256_uncompressed": hashlib.sha256(raw).hexdigest(),
    }


def build(out: Path, cache: Path) -> dict[str, object]:
    """Fetch, check and convert every source; write the corpus and MANIFEST.json to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    paths = {name: fetch(name, cache) for name in SOURCES}
    prose = list(bible_documents(paths["sword-text-web_426.0-1_all.deb"], "engWEB2015eb", "web"))
    prose += list(bible_documents(paths["sword-text-kjv_14.3-1_all.deb"], "engKJV2006eb", "kjv"))
    docs, code = django_documents(paths["Django-5.1.4.tar.gz"])
    files = [write_domain(out, d, x) for d, x in (("prose", prose), ("docs", docs), ("code", code))]
    manifest = {
        "description": "English corpus of the kltools offline model suite (see scripts/build_corpus.py)",
        "sources": [{"file": k, **v} for k, v in SOURCES.items()],
        "files": files,
        "split": "held-out documents: sha256('heldout:' + group) as an integer mod 1000 < 150",
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "kltools" / "data" / "corpus")
    parser.add_argument("--cache", type=Path, default=None, help="download folder (default: temp)")
    parser.add_argument("--check", action="store_true", help="rebuild to a temp dir and compare")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "downloads"
        target = Path(tmp) / "corpus" if args.check else args.out
        manifest = build(target, cache)
        for f in manifest["files"]:
            print(f"{f['file']}: {f['n_documents']} documents, {f['n_bytes_uncompressed']} bytes")
        if args.check:
            bad = [
                f["file"]
                for f in manifest["files"]
                if not (args.out / f["file"]).is_file()
                or sha256_file(args.out / f["file"]) != f["sha256"]
            ]
            if bad:
                print(f"build_corpus: committed files differ from the rebuild: {bad}")
                return 1
            print("build_corpus: the committed corpus matches the rebuild")
        shutil.rmtree(Path(tmp) / "downloads", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
