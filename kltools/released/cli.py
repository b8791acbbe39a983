"""``kltools released fetch|check|write|import``: the authors' release from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kltools.errors import KLToolsError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``released fetch``, ``check``, ``write`` and ``import`` to the ``kltools`` parser."""
    rel = subparsers.add_parser(
        "released", help="the authors' released vectors: fetch, check, write, import"
    )
    sub = rel.add_subparsers(dest="released_command", metavar="RELEASED_COMMAND")
    sub.required = True
    f = sub.add_parser("fetch", help="download the release (resumable) and write its manifest")
    f.add_argument(
        "--to",
        default=None,
        metavar="DIR",
        help="where to put it (default: DATA_ROOT/released/kl-scale-data)",
    )
    f.add_argument("--commit", default=None, help="commit of shimo-lab/modelmap (default: pinned)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=cmd_fetch)
    c = sub.add_parser("check", help="check a release against its manifest and its layout")
    c.add_argument(
        "dir",
        nargs="?",
        default=None,
        metavar="DIR",
        help="the release (default: $KLTOOLS_RELEASED_DIR, else the downloaded copy)",
    )
    c.set_defaults(func=cmd_check)
    w = sub.add_parser("write", help="write the project's stores as a release directory")
    w.add_argument(
        "--from-stores", required=True, metavar="DATA_ROOT", help="folder holding the .zarr stores"
    )
    w.add_argument("--to", required=True, metavar="DIR", help="the release directory to write")
    w.add_argument(
        "--texts",
        required=True,
        metavar="TEXTS",
        help="the text set the stores were built on (.jsonl, .txt or a built-in name)",
    )
    w.add_argument(
        "--lineages",
        default=None,
        metavar="FILE",
        help="lineages JSON giving types and parents (default: kltools/data/lineages.json)",
    )
    w.set_defaults(func=cmd_write)
    y = sub.add_parser(
        "synthetic",
        help="write a synthetic release in the authors' layout (random numbers, the real quirks)",
    )
    y.add_argument("--to", required=True, metavar="DIR", help="the release directory to write")
    y.add_argument("--texts", type=int, default=40, metavar="N", help="texts (default 40)")
    y.add_argument("--models", type=int, default=12, metavar="M", help="models (default 12)")
    y.set_defaults(func=cmd_synthetic)
    i = sub.add_parser("import", help="import the release's vectors into stores")
    i.add_argument("dir", nargs="?", default=None, metavar="DIR", help="the release (as check)")
    i.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="where the stores go (default: DATA_ROOT/released)",
    )
    i.add_argument(
        "--finetuning-models",
        default=None,
        metavar="FILE",
        help="a file of hub ids, one a line, for finetuning.zarr (default: every listed model)",
    )
    i.set_defaults(func=cmd_import)


def _release(directory: str | None):
    from kltools.released.fetch import release_dir
    from kltools.released.layout import open_release
    from kltools.released.manifest import ensure_manifest

    if directory is None:
        return open_release(release_dir(download=False), verify=False)
    d = Path(directory)
    if not d.is_dir():
        raise KLToolsError(
            f"no release directory {d}; give the folder kltools released fetch wrote"
        )
    ensure_manifest(d)
    return open_release(d, verify=False)


def cmd_fetch(args: argparse.Namespace) -> int:
    """``kltools released fetch``."""
    from kltools.released.fetch import fetch
    from kltools.released.manifest import PINNED_COMMIT, read_manifest

    commit = args.commit or PINNED_COMMIT
    if len(commit) != 40 or any(ch not in "0123456789abcdef" for ch in commit):
        raise KLToolsError(f"--commit {commit!r} is not a 40-hex-digit commit")
    d = fetch(args.to, commit, progress=not args.quiet)
    doc = read_manifest(d) or {"files": []}
    size = sum(f["size"] for f in doc["files"])
    print(
        f"released: {len(doc['files'])} files, {size / 2**20:.1f} MiB in {d} (commit {commit[:12]})"
    )
    return 0


def summary(rel) -> list[str]:
    """Lines describing a release, reading (and so checking) every file."""
    import numpy as np

    texts = rel.texts()
    pre = rel.pretraining()
    n_none = sum(v is None for per in pre.values() for v in per.values())
    n_ckpt = sum(len(per) for per in pre.values())
    models = rel.model_list()
    quant = {b: rel.quantization(b) for b in (8, 4)}
    layers = rel.layers()
    depths = sorted({max(p) for p in layers.values() if p is not None})
    parents = rel.siblings().values()
    wd = rel.weight_distances()
    filled = {s: int(np.count_nonzero(d)) for s, d in wd.items()}
    return [
        f"texts: {len(texts)}, mean {rel.mean_bytes():.4f} UTF-8 bytes per text (B̄)",
        f"pretraining: {len(pre)} runs, {n_ckpt} checkpoints ({n_none} not computed)",
        f"models: {len(models)} listed, {len(set(rel.types().values()))} types, "
        f"{sum(len(p) == 1 for p in parents)} with one parent, "
        f"{sum(len(p) > 1 for p in parents)} merges; matrix {rel.oyama().shape}",
        *(
            f"{b}-bit copies: {sum(v is not None for v in q.values())} of {len(q)}"
            for b, q in quant.items()
        ),
        f"layers: {sum(p is not None for p in layers.values())} of {len(layers)} models, "
        f"depths {', '.join(map(str, depths)) or '-'}",
        f"weight distances: {', '.join(f'{s} ({n})' for s, n in filled.items()) or 'none'}",
    ]


def cmd_check(args: argparse.Namespace) -> int:
    """``kltools released check``."""
    rel = _release(args.dir)
    from kltools.released.manifest import read_manifest

    doc = read_manifest(rel.directory) or {}
    print(
        f"released: {rel.directory}: manifest OK ({len(doc.get('files', []))} files, "
        f"{doc.get('origin')}, commit {str(doc.get('commit'))[:12]})"
    )
    for line in summary(rel):
        print(f"  {line}")
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    """``kltools released write``."""
    from kltools.released.write import export_stores
    from kltools.sources.pythia import load_lineages_json
    from kltools.texts import load_texts

    root = Path(args.from_stores)
    if not root.is_dir():
        raise KLToolsError(f"--from-stores {root} is not a folder")
    texts = load_texts(args.texts)
    d = export_stores(root, args.to, texts=texts, lineages=load_lineages_json(args.lineages))
    from kltools.released.layout import open_release

    rel = open_release(d)
    print(f"released: wrote {d}")
    for line in summary(rel):
        print(f"  {line}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    """``kltools released synthetic``: what CI builds the released book from."""
    from kltools.released.synthetic import write_synthetic_release

    if args.texts < 2 or args.models < 12:
        raise KLToolsError("--texts must be at least 2 and --models at least 12")
    write_synthetic_release(Path(args.to), n_texts=args.texts, n_models=args.models)
    print(f"released: wrote a synthetic release (random numbers) to {args.to}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``kltools released import``."""
    from kltools.paths import data_root
    from kltools.released.importer import import_release

    rel = _release(args.dir)
    models = None
    if args.finetuning_models:
        p = Path(args.finetuning_models)
        if not p.is_file():
            raise KLToolsError(f"--finetuning-models {p} is not a file")
        models = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    dest = Path(args.data_root) if args.data_root else data_root("released")
    paths = import_release(
        rel, dest, finetuning_models=models, log=lambda s: print(s, file=sys.stderr)
    )
    print(f"released: {len(paths)} outputs in {dest}: {', '.join(sorted(paths))}")
    return 0
