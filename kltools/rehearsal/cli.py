"""``kltools rehearsal build|list``: the offline stand-in for the pythia profile's hub."""

from __future__ import annotations

import argparse
import json
import sys

from kltools.errors import KLToolsError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rehearsal build`` and ``rehearsal list`` to the ``kltools`` parser."""
    reh = subparsers.add_parser(
        "rehearsal", help="build the offline rehearsal hub of the pythia profile"
    )
    sub = reh.add_subparsers(dest="rehearsal_command", metavar="REHEARSAL_COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        default=None,
        help="rehearsal folder (default: $KLTOOLS_REHEARSAL_ROOT, else rehearsal-hub/ in the project); "
        "the hub cache is ROOT/hub",
    )
    b = sub.add_parser("build", parents=[common], help="train the models and write the hub cache")
    b.add_argument("--smoke", action="store_true", help="the small version the tests use")
    b.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    b.set_defaults(func=cmd_build)
    ls = sub.add_parser("list", parents=[common], help="print the repositories and revisions")
    ls.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    ls.set_defaults(func=cmd_list)


def cmd_build(args: argparse.Namespace) -> int:
    """``kltools rehearsal build``."""
    if args.jobs < 1:
        raise KLToolsError(f"--jobs must be >= 1 (got {args.jobs})")
    from kltools.rehearsal.builder import build_rehearsal, hub_cache

    m = build_rehearsal(args.root, smoke=args.smoke, jobs=args.jobs)
    n_rev = sum(len(r["revisions"]) for r in m["repos"].values())
    state = f"built in {m['seconds']:.0f} s" if m["built"] else "already built"
    print(
        f"rehearsal: {len(m['repos'])} repositories, {n_rev} revisions, "
        f"{m['bytes'] / 2**20:.0f} MiB, {state}; use HF_HUB_CACHE={hub_cache(args.root)} "
        "HF_HUB_OFFLINE=1"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``kltools rehearsal list``."""
    from kltools.rehearsal.builder import default_root, read_manifest

    m = read_manifest(args.root)
    if m is None:
        where = args.root or default_root()
        raise KLToolsError(f"no rehearsal hub at {where}; run kltools rehearsal build first")
    if args.json:
        json.dump(m, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'repository':<46} {'architecture':<22} {'revisions':>9} {'MiB':>7}  parent")
    for repo, r in m["repos"].items():
        print(
            f"{repo:<46} {r['architecture']:<22} {len(r['revisions']):>9} "
            f"{r['bytes'] / 2**20:>7.1f}  {r.get('parent') or '-'}"
        )
    return 0
