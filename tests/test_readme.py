"""The README's examples and the rerun guide's commands run as written.

Every ```python block of ``README.md`` and ``book/rerun.md`` is executed on the ``smoke``
suite: its model names are checked against the ``tiny`` suite's catalogue first (a name or a
checkpoint the suite does not have fails), then each ``tiny-<run>@step<N>`` is replaced by
``smoke-<run>@step<M>``, ``M`` the smoke checkpoint of the same rank as ``N`` (rank from the
start, the last checkpoint for the last). Every ``kltools`` command of their shell blocks is
checked with ``--help`` (each alternative of ``a|b``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kltools.suite.profiles import get_profile, plan

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "book" / "rerun.md"]
SPEC = re.compile(r"\btiny-([\w-]+?)@step(\d+)\b")


def blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a Markdown file."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S)


def _runs(profile: str) -> dict[str, tuple[int, ...]]:
    p = get_profile(profile)
    return {u.name: p.checkpoint_steps() for u in plan(p) if u.kind == "run"}


def to_smoke(code: str) -> str:
    """``code`` with every tiny model spec checked and mapped onto the smoke suite."""
    tiny, smoke = _runs("tiny"), _runs("smoke")

    def swap(m: re.Match[str]) -> str:
        run, step = f"tiny-{m[1]}", int(m[2])
        assert run in tiny, f"{m[0]}: the tiny suite has no run {run}"
        assert step in tiny[run], f"{m[0]}: {run} has no checkpoint at step {step}"
        target = f"smoke-{m[1]}"
        assert target in smoke, f"{m[0]}: no smoke counterpart {target}"
        rank = tiny[run].index(step)
        steps = smoke[target]
        mapped = steps[-1] if rank == len(tiny[run]) - 1 else steps[min(rank, len(steps) - 1)]
        return f"{target}@step{mapped}"

    return SPEC.sub(swap, code)


def test_the_mapping_rejects_a_checkpoint_the_suite_lacks() -> None:
    with pytest.raises(AssertionError, match="no checkpoint at step 128"):
        to_smoke('kltools.extract(["tiny-s@step128"])')
    assert to_smoke('"tiny-s@step64", "tiny-s@step320", "tiny-m@step0"') == (
        '"smoke-s@step32", "smoke-s@step48", "smoke-m@step0"'
    )


def test_python_examples_run_as_written(
    smoke_suite_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLTOOLS_SUITE_ROOT", str(smoke_suite_root))
    monkeypatch.chdir(tmp_path)
    examples = [(doc, i, code) for doc in DOCS for i, code in enumerate(blocks(doc, "python"))]
    assert examples, "no python example found"
    for doc, i, code in examples:
        namespace: dict[str, object] = {}
        exec(compile(to_smoke(code), f"{doc.name}[python block {i}]", "exec"), namespace)
    assert (tmp_path / "s.zarr").is_dir()  # the README's example wrote its store


def shell_commands(path: Path) -> list[list[str]]:
    """Every ``kltools`` subcommand path named in the shell blocks of ``path``, alternatives
    expanded (``book build|chapter`` gives two)."""
    found: list[list[str]] = []
    for block in blocks(path, "bash"):
        for line in block.splitlines():
            words = line.split("#", 1)[0].split()
            if "kltools" not in words:
                continue
            path_words: list[list[str]] = []
            for w in words[words.index("kltools") + 1 :]:
                if not re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", w):
                    break
                path_words.append(w.split("|"))
            commands = [[]]
            for options in path_words:
                commands = [c + [o] for c in commands for o in options]
            found += [c for c in commands if c]
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_shell_commands_exist(doc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kltools.__main__ import main

    commands = shell_commands(doc)
    assert commands, f"{doc.name}: no kltools command found"
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([*command, "--help"])
        assert done.value.code == 0, f"{doc.name}: kltools {' '.join(command)} --help failed"
    capsys.readouterr()
