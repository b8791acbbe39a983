"""``kltools extract``, ``kl``, ``export``, ``import``: parse, validate everything, then call the library.

Errors of the user's making are :class:`~kltools.errors.KLToolsError` (one line, exit 2, see
:mod:`kltools.__main__`). No model is loaded and no store is touched before every argument has
been checked: the text file is read, each model spec resolved, the layer indices checked
against each model's depth, the device checked, and the store checked against the text set.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from kltools.errors import KLToolsError

_STEP_SPEC = re.compile(r"^(?P<base>.+)@step(?P<step>\d+)$")


def parse_layers(text: str) -> str | list[int] | None:
    """``all`` | ``none`` | ``i,j,...`` -> "all" | None | list of ints."""
    value = text.strip().lower()
    if value in ("none", ""):
        return None
    if value == "all":
        return "all"
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise KLToolsError(
            f"--layers {text!r} is not 'all', 'none' or comma-separated integers (e.g. 0,2,4)"
        ) from None


def parse_batch_size(text: str | None) -> int | None:
    """A positive integer, or None for automatic batching."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise KLToolsError(f"--batch-size {text!r} must be a positive integer")
    return value


def parse_scheduler_arg(text: str | None) -> str | None:
    """``--scheduler``: None/"none" (this process), ``local:N`` or a Dask scheduler address."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    from kltools.distributed import parse_scheduler

    parse_scheduler(text)
    return text.strip()


def units_from_specs(specs: Sequence[str]) -> list[Any]:
    """Units for command-line specs.

    If every spec ends in ``@stepN``, the units get coords ``{"model": base, "step": N}``
    (a training trajectory); otherwise ``{"model": spec}``.
    """
    from kltools.extraction import Unit

    matches = [_STEP_SPEC.match(s) for s in specs]
    if all(matches):
        return [
            Unit(s, {"model": m.group("base"), "step": int(m.group("step"))})
            for s, m in zip(specs, matches)
        ]
    return [Unit(s, {"model": s}) for s in specs]


def cmd_extract(args: argparse.Namespace) -> int:
    """Handler of ``kltools extract``."""
    from kltools.extraction import extract
    from kltools.models import check_quantization, low_precision_note, resolve_device
    from kltools.texts import load_texts

    layers = parse_layers(args.layers)
    batch_size = parse_batch_size(args.batch_size)
    quantization = check_quantization(args.quantization)
    scheduler = parse_scheduler_arg(args.scheduler)
    texts = load_texts(args.texts)
    units = units_from_specs(args.model)
    if quantization:
        from dataclasses import replace

        units = [replace(u, quantization=quantization) for u in units]
    note = low_precision_note(args.dtype, resolve_device(args.device))
    if note and not args.quiet:
        print(note, file=sys.stderr)
    extract(
        units,
        texts,
        args.store,
        layers=layers,
        bos=args.bos,
        dtype=args.dtype,
        device=args.device,
        batch_size=batch_size,
        scheduler=scheduler,
        progress=not args.quiet,
        open_result=False,
    )
    return 0


def _print_matrix(kl: Any, dim: str, units: str, stream: Any) -> None:
    """Print a (dim, dim_) matrix, one block per combination of any other dims."""
    import itertools

    import pandas as pd

    others = [d for d in kl.dims if d not in (dim, f"{dim}_")]
    header = "bits/byte" if units == "bpb" else "nats/text"
    combos = itertools.product(*(range(kl.sizes[d]) for d in others)) if others else [()]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        for combo in combos:
            sel = kl.isel(dict(zip(others, combo))) if others else kl
            where = ", ".join(f"{d}={sel[d].item()}" for d in others)
            print(f"KL ({header}){' at ' + where if where else ''}:", file=stream)
            frame = sel.transpose(dim, f"{dim}_").to_pandas()
            frame.index.name, frame.columns.name = None, None
            print(frame.to_string(float_format=lambda v: f"{v:.6g}"), file=stream)


def cmd_kl(args: argparse.Namespace) -> int:
    """Handler of ``kltools kl``."""
    from kltools.kl import kl_matrix
    from kltools.store import open_store

    if args.units not in ("bpb", "nats"):
        raise KLToolsError(f"--units {args.units!r}: use bpb or nats")
    ds = open_store(args.store)
    if ds.sizes.get(args.dim, 0) == 0:
        dims = [d for d in ds.loglik.dims if d not in ("text", "layer")]
        raise KLToolsError(
            f"store {args.store} has no units along dim {args.dim!r} (its dims: {dims}); "
            "give --dim one of them, or extract some units first"
        )
    kl = kl_matrix(ds.loglik, dim=args.dim, units=args.units)
    _print_matrix(kl, args.dim, args.units, sys.stdout)
    if args.csv:
        others = [d for d in kl.dims if d not in (args.dim, f"{args.dim}_")]
        if others:
            kl.rename("kl").to_dataframe().to_csv(args.csv)
        else:
            frame = kl.transpose(args.dim, f"{args.dim}_").to_pandas()
            frame.to_csv(args.csv)
        print(f"kltools: wrote {args.csv}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of ``kltools export``."""
    from pathlib import Path

    from kltools.exchange import export_store
    from kltools.store import open_units

    if Path(args.to).suffix.lower() not in (".nc", ".csv"):
        raise KLToolsError(f"--to {args.to} must end in .nc (netCDF) or .csv (long format)")
    n = open_units(args.store).sizes["unit"]
    dest = export_store(args.store, args.to)
    print(f"kltools: wrote {n} units to {dest}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Handler of ``kltools import``."""
    from kltools.exchange import import_vectors
    from kltools.texts import load_texts

    texts = load_texts(args.texts) if args.texts else None
    added = import_vectors(
        args.source,
        args.store,
        texts=texts,
        dim=args.dim,
        bos=args.bos,
        dtype=args.dtype,
        log=(lambda line: print(line, file=sys.stderr)) if not args.quiet else None,
    )
    if not args.quiet:
        print(f"kltools: imported {len(added)} units into {args.store}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``extract``, ``kl``, ``export`` and ``import`` to the top-level ``kltools`` parser."""
    ex = subparsers.add_parser(
        "extract",
        help="score texts with models into a resumable zarr store",
        description=(
            "Score every text with every model and store the summed log-likelihoods (nats) in a "
            "zarr store. Finished units are kept; rerun the same command to resume."
        ),
    )
    ex.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL[@REV]",
        help="local dir (dir@stepN = subfolder), suite name (tiny-s@step64) or hub id; repeat",
    )
    ex.add_argument("--texts", required=True, help="texts: .jsonl, .txt or a built-in name (demo)")
    ex.add_argument("--store", required=True, help="zarr store directory (created if missing)")
    ex.add_argument(
        "--layers",
        default="none",
        help="logit-lens layers: all, none (default: output only) or i,j,... (0 = embeddings)",
    )
    ex.add_argument("--bos", default="paper", choices=("paper", "prefix"), help="BOS policy")
    ex.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="weights"
    )
    ex.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ex.add_argument("--quantization", default="none", choices=("none", "int8", "fp4", "nf4"))
    ex.add_argument("--batch-size", default=None, help="windows per batch (default: automatic)")
    ex.add_argument(
        "--scheduler",
        default=None,
        metavar="local:N|tcp://HOST:PORT",
        help="run units on Dask: local:N worker processes (1 thread each) or a scheduler address",
    )
    ex.add_argument("--quiet", action="store_true", help="no progress bar or summary lines")
    ex.set_defaults(func=cmd_extract)

    kl = subparsers.add_parser(
        "kl",
        help="print the KL matrix of a store",
        description="Print the estimated KL divergence between the units of a store.",
    )
    kl.add_argument("--store", required=True, help="zarr store made by kltools extract")
    kl.add_argument("--dim", default="model", help="unit label to compare along (default: model)")
    kl.add_argument("--units", default="bpb", choices=("bpb", "nats"), help="bits/byte or nats")
    kl.add_argument("--csv", default=None, metavar="FILE", help="also write the matrix as CSV")
    kl.set_defaults(func=cmd_kl)

    ex = subparsers.add_parser(
        "export",
        help="write a store's vectors to netCDF or CSV",
        description=(
            "Write the finished units of a store to a netCDF file (CF attributes, the dataset "
            "xarray.open_zarr shows) or a long-format CSV (unit labels, text, loglik)."
        ),
    )
    ex.add_argument("--store", required=True, help="zarr store made by kltools extract")
    ex.add_argument("--to", required=True, metavar="FILE.nc|FILE.csv", help="the file to write")
    ex.set_defaults(func=cmd_export)

    im = subparsers.add_parser(
        "import",
        help="add vectors from netCDF, CSV or a pickle to a store",
        description=(
            "Add log-likelihood vectors computed elsewhere to a store (created if missing): a "
            ".nc or .csv written by kltools export, or a pickle of {name: array} holding summed "
            "log-likelihoods in nats in the order of --texts. Load only pickles you trust."
        ),
    )
    im.add_argument(
        "--from", dest="source", required=True, metavar="FILE", help=".nc, .csv or .pkl"
    )
    im.add_argument("--store", required=True, help="zarr store (created if missing)")
    im.add_argument(
        "--texts",
        default=None,
        help="the texts the vectors score (needed for a .pkl or .csv going into a new store)",
    )
    im.add_argument("--dim", default="model", help="label of a pickle's keys (default: model)")
    im.add_argument("--bos", default=None, choices=("paper", "prefix"), help="BOS policy to record")
    im.add_argument(
        "--dtype", default=None, choices=("float32", "bfloat16", "float16"), help="dtype to record"
    )
    im.add_argument("--quiet", action="store_true", help="no summary lines")
    im.set_defaults(func=cmd_import)
