"""The ``kltools`` command line: a thin layer that parses, validates and calls the library.

Subcommands are registered by the modules that own them (each exposes
``register(subparsers)``), so this file stays a dispatcher:

- ``kltools extract`` / ``kl`` / ``export`` / ``import`` -> :mod:`kltools.cli`
- ``kltools suite build|list``         -> :mod:`kltools.suite.cli`
- ``kltools rehearsal build|list``     -> :mod:`kltools.rehearsal.cli`
- ``kltools released fetch|check|write|import`` -> :mod:`kltools.released.cli`
- ``kltools book build|chapter|check``  -> :mod:`kltools.book`

Errors of the user's making (:class:`kltools.errors.KLToolsError`) are printed as one line
and exit with status 2; nothing is printed as a traceback for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kltools.errors import KLToolsError

#: Modules that contribute subcommands, in help order.
CLI_MODULES = (
    "kltools.cli",
    "kltools.suite.cli",
    "kltools.rehearsal.cli",
    "kltools.released.cli",
    "kltools.book",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    from kltools import __version__

    parser = argparse.ArgumentParser(
        prog="kltools",
        description="Log-likelihood vectors and the KL scale for language models.",
    )
    parser.add_argument("--version", action="version", version=f"kltools {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the module is not written yet / not installed
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kltools`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except KLToolsError as exc:
        print(f"kltools: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "kltools: interrupted; finished units are kept, rerun the command to resume",
            file=sys.stderr,
        )
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
