"""Several writers on one store: leases, two real ``kltools extract`` processes, a kill.

The processes run ``python -m kltools extract`` on tiny random models (one torch thread each,
so the two share the 2-core machine and every result is bit-reproducible).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from kltools.leases import Holder, Lease, try_lease
from kltools.store import writers_dir

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
N_UNITS = 6


# --------------------------------------------------------------------------- leases


def _fake(directory: Path, name: str, *, host: str, pid: int, store_id: str = "S") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / f"{name}.lease"
    rec = {"host": host, "pid": pid, "token": "t", "store_id": store_id, "taken": 0}
    file.write_text(json.dumps(rec))
    return file


def test_lease_is_exclusive_and_released(tmp_path: Path) -> None:
    first = try_lease(tmp_path, "u0", "S")
    assert isinstance(first, Lease)
    second = try_lease(tmp_path, "u0", "S")  # same process, another claim: refused
    assert isinstance(second, Holder) and second.pid == os.getpid()
    assert isinstance(try_lease(tmp_path, "u1", "S"), Lease)  # other units are free
    first.release()
    assert not (tmp_path / "u0.lease").exists()
    assert isinstance(try_lease(tmp_path, "u0", "S"), Lease)


def test_live_lease_of_another_host_is_respected(tmp_path: Path) -> None:
    _fake(tmp_path, "u0", host="elsewhere", pid=1)
    got = try_lease(tmp_path, "u0", "S")
    assert isinstance(got, Holder) and got.host == "elsewhere"


def test_stale_leases_are_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a holder on this host whose process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _fake(tmp_path, "u0", host=socket.gethostname(), pid=dead.pid)
    assert isinstance(try_lease(tmp_path, "u0", "S"), Lease)
    # a lease of an earlier store at this path
    _fake(tmp_path, "u1", host="elsewhere", pid=1, store_id="old")
    assert isinstance(try_lease(tmp_path, "u1", "S"), Lease)
    # a holder on another host whose heartbeat is older than the ttl
    monkeypatch.setenv("KLTOOLS_LEASE_TTL", "30")
    file = _fake(tmp_path, "u2", host="elsewhere", pid=1)
    old = file.stat().st_mtime - 31
    os.utime(file, (old, old))
    assert isinstance(try_lease(tmp_path, "u2", "S"), Lease)


def test_heartbeat_keeps_a_lease_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLTOOLS_LEASE_TTL", "0.6")  # heartbeat every 0.1 s
    lease = try_lease(tmp_path, "u0", "S")
    assert isinstance(lease, Lease)
    file = tmp_path / "u0.lease"
    os.utime(file, (0, 0))
    deadline = time.monotonic() + 10
    while file.stat().st_mtime == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert file.stat().st_mtime > 0
    assert not lease.lost
    file.unlink()  # another writer broke it
    _fake(tmp_path, "u0", host="elsewhere", pid=1, store_id="S")
    assert lease.lost
    lease.release()
    assert (tmp_path / "u0.lease").exists()  # not ours: left alone


# --------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def job(tmp_path_factory, make_tiny_neox, tiny_corpus: str) -> dict:
    """Texts (enough work per unit that a kill lands mid-unit) and the command's arguments."""
    work = tmp_path_factory.mktemp("writers")
    paras = [p for p in tiny_corpus.split("\n\n") if p]
    rows = [{"id": f"w{i}", "text": paras[i % len(paras)] + f" ({i})"} for i in range(80)]
    texts = work / "texts.jsonl"
    texts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = [f"--model={make_tiny_neox(s)}" for s in range(N_UNITS)]
    args = ["extract", *models, "--texts", str(texts), "--batch-size", "8", "--quiet"]
    ref = work / "serial.zarr"
    out = subprocess.run(
        [sys.executable, "-m", "kltools", *args, "--store", str(ref)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return {"args": args, "ref": ref}


def _start(args: list[str], store: Path, quiet: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kltools", *[a for a in args if quiet or a != "--quiet"]]
    return subprocess.Popen(
        [*cmd, "--store", str(store)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _arrays(store: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(store), mode="r")
    return {k: np.asarray(root[k][:]) for k in ("loglik", "n_tokens", "done", "spec", "model")}


def _same(store: Path, ref: Path) -> None:
    got, want = _arrays(store), _arrays(ref)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["done"].all()


def test_two_processes_give_the_serial_store(tmp_path: Path, job: dict) -> None:
    store = tmp_path / "shared.zarr"
    procs = [_start(job["args"], store, quiet=False) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    _same(store, job["ref"])
    computed = [o[1].count("kltools: done") for o in outs]
    assert sum(computed) == N_UNITS  # each unit computed by exactly one of them
    assert not writers_dir(store).exists()  # no lease left behind


def _leases_of(store: Path, pid: int) -> list[str]:
    out = []
    for f in writers_dir(store).glob("u*.lease"):
        try:
            if json.loads(f.read_text()).get("pid") == pid:
                out.append(f.name)
        except (OSError, ValueError):
            pass
    return out


def _n_done(store: Path) -> int:
    try:
        return int(np.asarray(zarr.open_array(str(store / "done"), mode="r")[:]).sum())
    except Exception:  # not created yet
        return 0


@pytest.mark.slow
def test_killed_writer_loses_nothing(tmp_path: Path, job: dict) -> None:
    store = tmp_path / "killed.zarr"
    a, b = _start(job["args"], store), _start(job["args"], store)
    deadline = time.monotonic() + 300
    held: list[str] = []
    while time.monotonic() < deadline and a.poll() is None:
        held = _leases_of(store, a.pid) if writers_dir(store).exists() else []
        if held and _n_done(store) >= 1:
            break
        time.sleep(0.02)
    a.send_signal(signal.SIGKILL)
    a.wait()
    assert held, "the first writer finished before it could be killed mid-unit"
    done_at_kill = _n_done(store)
    assert done_at_kill < N_UNITS
    out = b.communicate(timeout=600)
    assert b.returncode == 0, out[1][-2000:]
    _same(store, job["ref"])  # the other writer took over the killed one's unit
    # a rerun has nothing to do and changes nothing
    rerun = subprocess.run(
        [sys.executable, "-m", "kltools", *job["args"][:-1], "--store", str(store)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0 and rerun.stderr.count("kltools: skip") == N_UNITS
    _same(store, job["ref"])
