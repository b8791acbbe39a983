"""Reading pickles that may come from elsewhere, without letting them run code.

A pickle names the functions it calls to rebuild its objects (``os.system``, ``builtins.eval``,
any class's ``__reduce__``), and :func:`pickle.load` imports and calls them. :func:`safe_load`
uses an unpickler whose ``find_class`` knows only a fixed allow-list, so such a name is refused
when the pickle's stream names it, before anything it would call has run:

- containers and scalars that pickle writes without naming any function: ``dict``, ``list``,
  ``tuple``, ``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None``;
- numpy arrays, dtypes and scalars, through the helpers numpy's own pickling names
  (``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.multiarray._reconstruct`` and
  ``.scalar``, ``numpy[._]core.numeric._frombuffer``), under both the numpy 1 (``numpy.core``)
  and numpy 2 (``numpy._core``) module names;
- ``_codecs.encode``, which protocol 2 uses to write ``bytes``, accepted for the ``latin1``
  codec only.

Anything else raises :class:`kltools.errors.KLToolsError` naming the file and the refused
global. Out-of-band buffers (protocol 5 ``buffer_callback``) are not accepted either.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from kltools.errors import KLToolsError

__all__ = ["ALLOWED", "safe_load", "safe_loads"]


def _numpy_core() -> tuple[Any, Any]:
    """numpy's ``multiarray`` and ``numeric`` modules (``numpy._core`` on numpy 2)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: latin1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _numpy_core()
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


#: the (module, name) globals a pickle may name, and what each resolves to
ALLOWED: dict[tuple[str, str], Any] = _allowed()


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(module, name) from None


def _load(fh: IO[bytes], what: str) -> Any:
    try:
        return _Unpickler(fh).load()
    except _Refused as exc:
        raise KLToolsError(
            f"{what}: refused to load the pickle: it calls {exc.qualname}, which is not a "
            "plain container or numpy array (pickles can run code; this one is not read)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise KLToolsError(
            f"{what}: not a readable pickle of arrays ({type(exc).__name__}: {exc}); "
            "the file may be truncated or of another format"
        ) from None


def safe_load(source: str | os.PathLike[str] | IO[bytes], *, what: str | None = None) -> Any:
    """Unpickle a file that may hold only containers, scalars and numpy arrays.

    Parameters
    ----------
    source : path or binary file object
    what : str, optional
        How errors name the file (default: the path, or the file object's ``name``).

    Returns
    -------
    object
        The unpickled dicts, lists, tuples, scalars and numpy arrays.

    Raises
    ------
    KLToolsError
        The pickle names a global outside :data:`ALLOWED` (nothing it would call has run), is
        truncated, or is not a pickle; one line naming ``what`` and the refused global.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = what or str(path)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise KLToolsError(f"{label}: cannot open ({exc.strerror})") from None
        with fh:
            return _load(fh, label)
    return _load(source, what or str(getattr(source, "name", "pickle")))


def safe_loads(data: bytes, *, what: str = "pickle") -> Any:
    """:func:`safe_load` of bytes in memory."""
    return _load(io.BytesIO(data), what)
