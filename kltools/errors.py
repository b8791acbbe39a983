"""User-facing errors.

Every problem caused by the user's input (a missing path, an offline hub, a store built on
another text set, ...) is raised as :class:`KLToolsError` with a one-line message that names
what is wrong and what to do. The CLI prints it as ``kltools: error: <message>`` and exits
with status 2, without a traceback. Bugs stay ordinary exceptions.
"""

from __future__ import annotations


class KLToolsError(Exception):
    """An error in the user's input or environment, reported as one line."""

    def __init__(self, message: str) -> None:
        message = " ".join(str(message).split())  # one line, always
        super().__init__(message)
