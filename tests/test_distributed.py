"""kltools.distributed: Dask LocalCluster runs give the serial store; a killed worker loses nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from kltools.distributed import make_client, parse_scheduler, scheduler_client
from kltools.errors import KLToolsError
from kltools.extraction import Unit, extract
from kltools.store import open_store
from kltools.texts import TextSet


@pytest.fixture(scope="module")
def texts(tiny_corpus: str) -> TextSet:
    paras = [p for p in tiny_corpus.split("\n\n") if p][:7]
    return TextSet(name="dist", ids=tuple(f"d{i}" for i in range(len(paras))), texts=paras)


@pytest.fixture(scope="module")
def units(make_tiny_neox) -> list[Unit]:
    return [Unit(str(make_tiny_neox(s)), {"model": f"m{s}"}) for s in range(4)]


def _raw(store: Path) -> dict[str, np.ndarray]:
    """The arrays of a store as written (every row, done or not)."""
    root = zarr.open_group(str(store), mode="r")
    return {k: np.asarray(root[k][:]) for k in ("loglik", "n_tokens", "done")}


def _serial(units: list[Unit], texts: TextSet, store: Path) -> dict[str, np.ndarray]:
    """A serial run with one torch thread (the workers' setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extract(units, texts, store, progress=False)
    finally:
        torch.set_num_threads(before)
    return _raw(store)


def test_parse_scheduler() -> None:
    assert parse_scheduler("local:2") == ("local", 2)
    assert parse_scheduler("tcp://10.1.2.3:8786") == ("address", "tcp://10.1.2.3:8786")
    for bad in ("local:0", "local", "2", "http://x:1", ""):
        with pytest.raises(KLToolsError):
            parse_scheduler(bad)


def test_bad_scheduler_refused_before_work(tmp_path: Path, units, texts) -> None:
    with pytest.raises(KLToolsError, match="not 'local:N'"):
        extract(units, texts, tmp_path / "s.zarr", scheduler="local:two", progress=False)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.slow
def test_local_cluster_store_identical_to_serial(tmp_path: Path, units, texts) -> None:
    ref = _serial(units, texts, tmp_path / "serial.zarr")
    ds = extract(units, texts, tmp_path / "dask.zarr", scheduler="local:2", progress=False)
    got = _raw(tmp_path / "dask.zarr")
    for key in ("loglik", "n_tokens", "done"):
        np.testing.assert_array_equal(got[key], ref[key])
    assert got["done"].tolist() == [1] * len(units)
    assert list(ds.model.values) == [u.coords["model"] for u in units]
    np.testing.assert_array_equal(ds.loglik.values, open_store(tmp_path / "serial.zarr").loglik)
    # local:N workers are separate processes with one torch thread each
    with scheduler_client("local:2") as client:
        threads = client.run(lambda: torch.get_num_threads())
        worker_pids = set(client.run(os.getpid).values())
    assert set(threads.values()) == {1} and os.getpid() not in worker_pids


@pytest.mark.slow
def test_killed_worker_loses_no_finished_unit(tmp_path: Path, make_tiny_neox, texts) -> None:
    many = TextSet(
        name="dist-many",
        ids=tuple(f"k{i}" for i in range(40 * len(texts.texts))),
        texts=list(texts.texts) * 40,
    )
    units = [Unit(str(make_tiny_neox(s)), {"model": f"m{s}"}) for s in range(8)]
    ref = _serial(units, many, tmp_path / "serial.zarr")
    store = tmp_path / "dask.zarr"
    client = make_client("local:2")
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            extract(units, many, store, scheduler=client, progress=False)
            outcome["ok"] = True
        except Exception as exc:  # a lost worker may surface as an error: allowed
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.time() + 120
        done_at_kill: np.ndarray | None = None
        while time.time() < deadline and worker.is_alive():
            if (store / "done").exists():
                done = np.asarray(zarr.open_array(str(store / "done"), mode="r")[:])
                if 1 <= done.sum() < len(units):
                    done_at_kill = done.copy()
                    snapshot = _raw(store)
                    victim = next(iter(client.run(os.getpid).values()))
                    os.kill(victim, signal.SIGKILL)
                    break
            time.sleep(0.05)
        worker.join(timeout=300)
    finally:
        client.close()
        client.cluster.close()
    assert done_at_kill is not None, "every unit finished before a worker could be killed"
    after = _raw(store)
    finished = done_at_kill.astype(bool)
    assert after["done"][finished].all()  # no finished unit was lost
    np.testing.assert_array_equal(after["loglik"][finished], snapshot["loglik"][finished])
    np.testing.assert_array_equal(after["loglik"][finished], ref["loglik"][finished])
    # a rerun completes the rest and gives the serial store
    final = _serial(units, many, store)
    for key in ("loglik", "n_tokens", "done"):
        np.testing.assert_array_equal(final[key], ref[key])
