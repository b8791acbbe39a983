"""``kltools suite build|list``: build the offline model suite and print its catalogue."""

from __future__ import annotations

import argparse
import json
import sys

from kltools.errors import KLToolsError
from kltools.suite.profiles import DEFAULT_SUITE, PROFILES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``suite build`` and ``suite list`` to the ``kltools`` parser."""
    suite = subparsers.add_parser("suite", help="build or list the offline model suite")
    sub = suite.add_subparsers(dest="suite_command", metavar="SUITE_COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile",
        default=DEFAULT_SUITE,
        help=f"one of {', '.join(PROFILES)} (default {DEFAULT_SUITE})",
    )
    common.add_argument(
        "--root", default=None, help="suite base folder (default: $KLTOOLS_SUITE_ROOT or ./suite)"
    )
    b = sub.add_parser("build", parents=[common], help="build whatever is missing (idempotent)")
    b.add_argument(
        "--jobs", type=int, default=2, help="worker processes, one torch thread each (default 2)"
    )
    b.set_defaults(func=cmd_build)
    ls = sub.add_parser("list", parents=[common], help="print the plan and what is built")
    ls.add_argument("--json", action="store_true", help="one JSON list of model objects")
    ls.set_defaults(func=cmd_list)


def _check(args: argparse.Namespace) -> None:
    if args.profile not in PROFILES:
        raise KLToolsError(
            f"unknown suite profile {args.profile!r}; choose one of {', '.join(PROFILES)}"
        )
    if getattr(args, "jobs", 1) < 1:
        raise KLToolsError(f"--jobs must be >= 1 (got {args.jobs})")


def cmd_build(args: argparse.Namespace) -> int:
    """``kltools suite build``."""
    _check(args)
    from kltools.suite.builder import build, profile_root

    result = build(args.profile, args.root, args.jobs)
    where = profile_root(args.profile, args.root)
    print(
        f"suite {args.profile}: {len(result['built'])} built, {len(result['skipped'])} already there, "
        f"{result['seconds']:.1f} s; {where}; fingerprint {result['fingerprint'][:16]}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``kltools suite list``."""
    _check(args)
    from kltools.suite.builder import list_models

    models = list_models(args.profile, args.root)
    if args.json:
        json.dump(models, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'spec':<44} {'kind':<10} {'variant':<9} {'params':>9} {'non-emb':>8} built")
    for m in models:
        print(
            f"{m['spec']:<44} {m['kind']:<10} {m['variant'] or '-':<9} {m['n_params']:>9} "
            f"{m['n_nonembedding_params']:>8} {'yes' if m['built'] else 'no'}"
        )
    n_built = sum(m["built"] for m in models)
    print(f"{n_built} of {len(models)} models built")
    return 0
