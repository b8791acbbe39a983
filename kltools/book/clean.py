"""Clean pages by construction: what a chapter's kernel writes to stderr never reaches a page.

A reader of the book sees prose, figures and tables, never progress bars, library warnings
or log lines. The build guarantees that in two places, neither of them in the notebooks:

1. **Before** a chapter runs, :func:`quiet_environ` gives its kernel environment variables
   that switch progress bars off (tqdm, Hugging Face hub, transformers) and lower library
   verbosity, and the build's kernelspec runs :func:`install` at kernel start-up: Python
   warnings and anything written to ``sys.stderr`` go to the chapter's build log
   (``build/logs/<chapter>.log``) instead of the notebook.
2. **After** it ran, :func:`move_stderr_to_log` removes every remaining ``stderr`` stream
   output from the executed notebook and appends it to the same log. (Text that C libraries
   write to file descriptor 2 goes to the terminal that builds the book, or, when the kernel
   forwards it as a stream, is moved to the log here.)

The build prints one line per chapter with the number of lines sent to the log, so nothing
is lost, and the terminal that builds the book says where to look.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

#: environment variables that silence progress bars and advisory messages in the kernel
QUIET_ENV: dict[str, str] = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

#: the variable that names the chapter's build log inside the kernel
LOG_ENV = "KLTOOLS_BUILD_LOG"

#: the code the build's kernelspec runs at start-up (``--IPKernelApp.exec_lines``); it binds
#: no name in the notebook's namespace
STARTUP_LINE = "__import__('kltools.book.clean', fromlist=['install']).install()"


def quiet_environ(log_path: Path) -> dict[str, str]:
    """Environment of a chapter's kernel: :data:`QUIET_ENV` plus the path of its build log."""
    return {**QUIET_ENV, LOG_ENV: str(log_path)}


class _LogStream:
    """A text stream that appends to the build log (what ``sys.stderr`` becomes in the kernel)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: TextIO | None = None

    def _open(self) -> TextIO:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("a", encoding="utf-8")
        return self._file

    def write(self, text: str) -> int:
        f = self._open()
        f.write(text)
        f.flush()
        return len(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._open().fileno()

    @property
    def encoding(self) -> str:
        return "utf-8"


def install(log_path: str | Path | None = None) -> Path | None:
    """Send warnings, logging and ``sys.stderr`` of this process to the chapter's build log.

    Called at kernel start-up by the build (never by a notebook). Returns the log path, or
    None (and changes nothing) outside a build, when ``$KLTOOLS_BUILD_LOG`` is not set.
    """
    path = Path(log_path) if log_path is not None else None
    if path is None:
        env = os.environ.get(LOG_ENV)
        if not env:
            return None
        path = Path(env)
    stream = _LogStream(path)
    sys.stderr = stream  # type: ignore[assignment]

    def _show(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        stream.write(warnings.formatwarning(message, category, filename, lineno))

    warnings.showwarning = _show
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, logging.StreamHandler)]
    root.addHandler(handler)
    return path


def move_stderr_to_log(nb: Any, log_path: Path, label: str) -> int:
    """Remove every ``stderr`` stream output from notebook ``nb`` (in place) into the log.

    Returns the number of outputs moved. Each is written under a header naming the cell.
    """
    moved: list[str] = []
    for i, cell in enumerate(nb.get("cells", [])):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        kept = []
        for out in outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
                moved.append(f"--- {label}, cell {i}, stderr ---\n{''.join(text)}")
            else:
                kept.append(out)
        cell["outputs"] = kept
    if moved:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as f:
            f.write("\n".join(moved) + "\n")
    return len(moved)


def log_lines(log_path: Path) -> int:
    """Number of lines in a build log (0 if there is none)."""
    if not log_path.is_file():
        return 0
    with log_path.open("rb") as f:
        return sum(1 for _ in f)
