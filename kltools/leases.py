"""Leases: which writer holds a unit of a store (or the store's metadata) right now.

Several ``kltools extract`` processes may work on one store at once (two terminals, Slurm
array jobs, Dask workers). Before a writer computes a unit it takes that unit's *lease*, a
small file ``<dir>/<name>.lease`` holding the holder's host, pid, a random token, the store's
``store_id`` and the time it was taken. The file is created atomically: its content is
written to a private temporary file which is then hard-linked to the lease name, and
``link`` fails if the name exists, so exactly one writer wins and nobody ever reads a
half-written lease. While it works, the holder *heartbeats*: a thread touches the file's
modification time every ``ttl / 6`` seconds.

A lease is **stale**, and may be broken by another writer, when

- it was taken for another store (``store_id`` differs: the store was deleted and rebuilt), or
- its holder ran on this host and that process no longer exists (killed, crashed), or
- its last heartbeat is older than the time-to-live (``ttl``, default :data:`LEASE_TTL_S`,
  ``$KLTOOLS_LEASE_TTL``): a holder on another host that died, hung or lost the network.

Ages are measured on the file system's own clock (the mtime of a probe file written just
before), so clocks of different hosts need not agree. Breaking renames the stale file to a
private name (only one breaker can win the rename) and checks that what it took is what it
judged stale; if another writer re-took the lease in between, its lease is linked back.

What this guarantees: on a local file system and on NFSv3/v4 (where ``link``, ``rename``
and ``utime`` are atomic on the server) one unit is computed by one writer at a time, except
after a holder stalled for longer than the ttl (then both may finish it; results of one
setup are deterministic, every chunk write is an atomic rename, and the done flag is set
last, so the store still holds one whole result). Object stores (S3, GCS) have no atomic
exclusive create through this code path: do not run several writers on a store there, use
one coordinating process and Dask (``--scheduler``) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: seconds after the last heartbeat at which a lease of another host counts as abandoned
LEASE_TTL_S = 60.0


def lease_ttl() -> float:
    """The time-to-live in seconds: ``$KLTOOLS_LEASE_TTL`` if set, else :data:`LEASE_TTL_S`."""
    try:
        value = float(os.environ.get("KLTOOLS_LEASE_TTL", LEASE_TTL_S))
    except ValueError:
        value = LEASE_TTL_S
    return max(value, 0.5)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease that could not be taken."""

    host: str
    pid: int
    token: str
    store_id: str
    taken: float
    age: float

    def describe(self) -> str:
        """``host:pid, heartbeat 3 s ago``."""
        return f"{self.host}:{self.pid}, heartbeat {self.age:.0f} s ago"


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _fs_now(directory: Path) -> float:
    """The file system's current time: the mtime of a probe file written now."""
    probe = directory / f".now.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}"
    try:
        probe.write_bytes(b"")
        return probe.stat().st_mtime
    except OSError:
        return time.time()
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _read(file: Path) -> tuple[dict[str, Any], float] | None:
    """Content and mtime of a lease file, or None if it vanished."""
    try:
        mtime = file.stat().st_mtime
        return json.loads(file.read_text()), mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}, time.time()  # unreadable: treat as live until it ages out


class Lease:
    """A lease this process holds; heartbeats until :meth:`release`."""

    def __init__(self, file: Path, token: str, ttl: float) -> None:
        self.file = file
        self.token = token
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(ttl / 6.0,), name=f"lease {file.name}", daemon=True
        )
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self.held():
                self._lost = True
                return
            with contextlib.suppress(OSError):
                os.utime(self.file)

    def held(self) -> bool:
        """Whether the lease file is still this lease (not broken by another writer)."""
        got = _read(self.file)
        return got is not None and got[0].get("token") == self.token

    @property
    def lost(self) -> bool:
        """True once a heartbeat found the lease taken over by another writer."""
        return self._lost or not self.held()

    def release(self) -> None:
        """Stop heartbeating and remove the lease file if it is still ours."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.held():
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _stale(info: dict[str, Any], mtime: float, now: float, store_id: str, ttl: float) -> bool:
    if info.get("store_id") not in (None, store_id):
        return True
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        if not _pid_alive(info["pid"]):
            return True
    return now - mtime > ttl


def _break(file: Path, info: dict[str, Any], token: str) -> None:
    """Remove a stale lease; if a fresh one got in between, put that one back."""
    taken = file.with_name(f"{file.name}.broken.{token}")
    try:
        os.rename(file, taken)
    except FileNotFoundError:
        return
    try:
        got = _read(taken)
        if got is not None and got[0].get("token") != info.get("token"):
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                os.link(taken, file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            taken.unlink()


def try_lease(directory: Path, name: str, store_id: str) -> Lease | Holder:
    """Take the lease ``name`` in ``directory``, or say who holds it.

    Returns
    -------
    Lease
        Held by this process (heartbeating) until released; a context manager.
    Holder
        The live holder, when the lease is taken and not stale.
    """
    ttl = lease_ttl()
    directory = Path(directory)
    file = directory / f"{name}.lease"
    token = uuid.uuid4().hex
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": token,
        "store_id": store_id,
        "taken": time.time(),
    }
    last: Holder | None = None
    for _ in range(20):
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{name}.{token}.tmp"
        try:
            tmp.write_text(json.dumps(record))
            os.link(tmp, file)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the directory was removed meanwhile: make it again
            continue
        else:
            return Lease(file, token, ttl)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        got = _read(file)
        if got is None:
            continue
        info, mtime = got
        now = _fs_now(directory)
        if _stale(info, mtime, now, store_id, ttl):
            _break(file, info, token)
            continue
        last = Holder(
            host=str(info.get("host", "?")),
            pid=int(info.get("pid", -1)),
            token=str(info.get("token", "")),
            store_id=str(info.get("store_id", "")),
            taken=float(info.get("taken", mtime)),
            age=max(0.0, now - mtime),
        )
        return last
    raise RuntimeError(f"could not take or read the lease {file} (it keeps changing)")


@contextlib.contextmanager
def exclusive(directory: Path, name: str, store_id: str, poll: float = 0.05) -> Any:
    """Hold the lease ``name`` for the duration of a ``with`` block, waiting for it."""
    delay = poll
    while True:
        got = try_lease(directory, name, store_id)
        if isinstance(got, Lease):
            break
        time.sleep(delay)
        delay = min(2 * delay, 1.0)
    try:
        yield got
    finally:
        got.release()


def tidy(directory: Path) -> None:
    """Remove the lease directory if no lease is left in it."""
    with contextlib.suppress(OSError):
        directory.rmdir()
