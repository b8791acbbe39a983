"""Scale-out of :func:`kltools.extraction.extract` on Dask distributed.

An extraction is a list of independent units (model x revision x variant); each one is
scored by :func:`kltools.extraction.run_unit`, which writes its own region of the zarr store and
sets its done flag last. So the units can run on any number of Dask workers at once, all
writing into the one store (a shared filesystem for remote workers): no two units touch the
same file, a unit whose worker dies is simply not done (Dask reruns it elsewhere, or the next
``kltools extract`` run does), and finished units are never lost. Each worker takes the unit's
lease (:mod:`kltools.leases`) before computing it, so a Dask run and other ``kltools extract``
processes on the same store never compute one unit at the same time; the lease of a worker
that died is taken over by the next worker that gets the unit.

Scheduler specs (``kltools extract --scheduler`` and ``extract(..., scheduler=)``):

``local:N``
    A :class:`distributed.LocalCluster` of ``N`` worker *processes*, one thread each, started
    for the run and closed after it. On a laptop or a 2-core VM, ``local:2`` keeps both cores
    busy with two units at once (each torch uses one thread).
``tcp://host:port`` (or ``tls://``, ``ucx://``, ``inproc://``)
    An existing Dask scheduler, e.g. one started by dask-jobqueue on Slurm or by dask-cuda on
    a multi-GPU node (see the book page *Scale-out*). The client is closed after the run; the
    cluster is left running.

Every worker gets ``torch.set_num_threads(1)`` (and ``OMP_NUM_THREADS=1`` for local
clusters) unless ``threads_per_worker`` says otherwise, so N workers never oversubscribe N
cores.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from kltools.errors import KLToolsError

_LOCAL = re.compile(r"^local:(\d+)$")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://\S+$")


def parse_scheduler(spec: str) -> tuple[str, int | str]:
    """Validate a scheduler spec: ``("local", n_workers)`` or ``("address", address)``."""
    if not isinstance(spec, str):
        raise KLToolsError(f"scheduler {spec!r} must be 'local:N' or a tcp://host:port address")
    text = spec.strip()
    m = _LOCAL.match(text)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise KLToolsError(f"scheduler {spec!r}: local:N needs N >= 1 workers")
        return "local", n
    if _ADDRESS.match(text):
        return "address", text
    raise KLToolsError(
        f"scheduler {spec!r} is not 'local:N' (N worker processes here) or the address of a "
        "Dask scheduler (tcp://host:port)"
    )


def _set_torch_threads(n: int) -> int:
    """Set torch's intra-op threads in this (worker) process; return the new count."""
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


class TorchThreads(WorkerPlugin):
    """A Dask worker plugin that sets ``torch.set_num_threads(n)`` in every worker."""

    name = "kltools-torch-threads"

    def __init__(self, n: int = 1) -> None:
        self.n = n

    def setup(self, worker: Any) -> None:
        """Called by Dask on each worker (present and future)."""
        _set_torch_threads(self.n)


def make_client(spec: str, *, threads_per_worker: int = 1) -> Any:
    """A Dask ``Client`` for a scheduler spec (see the module docstring).

    Parameters
    ----------
    spec : str
        ``local:N`` or a scheduler address such as ``tcp://10.0.0.5:8786``.
    threads_per_worker : int
        torch threads in each worker (1: one unit per core).

    Returns
    -------
    distributed.Client
        For ``local:N`` the client owns its LocalCluster: ``client.close()`` followed by
        ``client.cluster.close()`` (or :func:`scheduler_client`) shuts it down.
    """
    kind, value = parse_scheduler(spec)
    from distributed import Client, LocalCluster

    if kind == "local":
        threads = str(threads_per_worker)
        cluster = LocalCluster(
            n_workers=int(value),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
        )
        client = Client(cluster)
    else:
        try:
            client = Client(str(value), timeout="20s")
        except OSError as exc:
            raise KLToolsError(f"cannot reach the Dask scheduler at {value}: {exc}") from exc
    client.register_plugin(TorchThreads(threads_per_worker))
    return client


@contextlib.contextmanager
def scheduler_client(spec: str, *, threads_per_worker: int = 1) -> Iterator[Any]:
    """``make_client`` as a context manager: closes the client (and a local cluster) on exit."""
    client = make_client(spec, threads_per_worker=threads_per_worker)
    cluster = client.cluster if parse_scheduler(spec)[0] == "local" else None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
