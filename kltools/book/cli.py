"""``kltools book …``: the command line of the book."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kltools.book.commands import build, check, rerun_chapter
from kltools.book.layout import CHAPTERS, PROFILES, available_chapters
from kltools.sources import DEFAULT_PROFILE


def _cmd_build(args: argparse.Namespace) -> int:
    return build(
        args.profile,
        args.params,
        force=args.force,
        do_render=not args.no_render,
        with_suite=not args.no_suite,
    )


def _cmd_chapter(args: argparse.Namespace) -> int:
    return rerun_chapter(
        args.name,
        args.params,
        profile=args.profile,
        do_render=not args.no_render,
        with_suite=not args.no_suite,
    )


def _cmd_check(args: argparse.Namespace) -> int:
    problems = check(args.profile)
    if args.browser:
        problems.extend(_browser_check(args.screenshots))
    for line in problems:
        print(line)
    if problems:
        print(f"kltools book check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"kltools book check: {len(available_chapters())} chapter(s) OK ({args.profile})")
    return 0


def _browser_check(screenshots: str | None) -> list[str]:
    """Every page in headless Chromium; print each page's height; screenshots if asked."""
    from pathlib import Path

    from kltools.book import browser
    from kltools.book.layout import html_dir

    root = html_dir()
    reports, problems = browser.check_pages(root)
    tallest = max(reports, key=lambda r: r.height, default=None)
    for r in reports:
        print(f"browser: {r.page}: {r.height} px tall, {len(r.images)} image(s)")
        if screenshots:
            shot = Path(screenshots) / (r.page.replace("/", "__").removesuffix(".html") + ".png")
            browser.screenshot(root / r.page, shot, r.height)
    if tallest is not None:
        print(
            f"browser: {len(reports)} page(s) checked in Chromium at {browser.WIDTH} px; "
            f"tallest {tallest.page} ({tallest.height} px, limit {browser.MAX_HEIGHT})"
        )
    return problems


def _cmd_results(args: argparse.Namespace) -> int:
    from kltools.book import scoreboard

    results = scoreboard.load(args.dir, args.profile)
    if not results:
        print(
            f"kltools book results: no results files{' of profile ' + args.profile if args.profile else ''} "
            "in the build; run make book first",
            file=sys.stderr,
        )
        return 1
    ran = scoreboard.executed_chapters(args.dir)
    text = scoreboard.format_results(results, args.format, args.kind, ran)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def _cmd_teach(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kltools.book import teach
    from kltools.book.layout import notebook_path

    notebooks = [notebook_path(n) for n in available_chapters()]
    indexes = teach.generate(notebooks, Path(args.out))
    n_ex = sum(len(ix.exercises) for ix in indexes.values())
    n_sol = sum(sum(ix.solutions.values()) for ix in indexes.values())
    print(
        f"kltools book teach: {len(notebooks)} chapter(s), {n_ex} exercises, {n_sol} solution "
        f"cells -> {args.out}/student and {args.out}/teacher"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``kltools book build|chapter|check|results|teach`` to the top-level CLI."""
    book = subparsers.add_parser("book", help="execute the chapters and render the book")
    sub = book.add_subparsers(dest="book_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser(
        "build", help="build the suite, execute changed chapters, render _build/html"
    )
    p.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE)
    p.add_argument("--params", help="profile parameter file (default: params/<profile>.yaml)")
    p.add_argument(
        "--force", action="store_true", help="re-execute every chapter, ignoring the cache"
    )
    p.add_argument("--no-render", action="store_true", help="execute only; skip Jupyter Book")
    p.add_argument("--no-suite", action="store_true", help="do not (re)build the model suite first")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("chapter", help="rerun one chapter with a parameter file, then re-render")
    p.add_argument("name", help=f"chapter name: {', '.join(CHAPTERS)}")
    p.add_argument(
        "--params",
        required=True,
        help="a profile file, or a flat mapping of this chapter's parameters",
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        help="profile for a flat file (default: its 'profile' key, else tiny)",
    )
    p.add_argument("--no-render", action="store_true", help="execute only; skip Jupyter Book")
    p.add_argument("--no-suite", action="store_true", help="do not (re)build the model suite first")
    p.set_defaults(func=_cmd_chapter)

    p = sub.add_parser(
        "check", help="check the rendered book: pages, errors, figures, links (and in Chromium)"
    )
    p.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE)
    p.add_argument(
        "--browser",
        action="store_true",
        help="also open every page in headless Chromium: height, overflow, images",
    )
    p.add_argument("--screenshots", metavar="DIR", help="with --browser: a full-page PNG per page")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("results", help="print the pairs and verdicts every chapter wrote")
    p.add_argument("--profile", choices=PROFILES, help="only results of this profile")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument(
        "--kind",
        choices=("all", "pairs", "claims", "summaries", "deviations", "findings", "scoreboard"),
        default="all",
        help="what to print (csv: 'all' means the pairs)",
    )
    p.add_argument("--dir", help="folder of the results files (default: build/executed)")
    p.set_defaults(func=_cmd_results)

    p = sub.add_parser(
        "teach", help="write the student (no solutions) and teacher versions of every chapter"
    )
    p.add_argument("--out", default="build/teach", help="output folder (default: build/teach)")
    p.set_defaults(func=_cmd_teach)
