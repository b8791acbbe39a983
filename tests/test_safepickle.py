"""The restricted unpickler: arrays and containers load; anything that could run code is refused
before it runs."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from kltools.errors import KLToolsError
from kltools.safepickle import safe_load, safe_loads


class _Payload:
    """A class whose unpickling would create a file (a custom reduce)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _System(f"touch {marker}"),
        "builtins.eval": _Eval(f"open({str(marker)!r}, 'w').close()"),
        "custom reduce": _Payload(str(marker)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "custom reduce"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_code_running_pickles_are_refused_before_they_run(
    tmp_path: Path, kind: str, protocol: int
) -> None:
    marker = tmp_path / "ran"
    payload = _payloads(marker)[kind]
    # hidden inside an ordinary-looking structure, after a real array
    data = pickle.dumps({"ok": np.zeros(3), "bad": [payload]}, protocol=protocol)
    # the plain loader would run it (a sanity check on the payload itself)
    if kind == "custom reduce":
        pickle.loads(data)
        assert marker.exists()
        marker.unlink()
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(KLToolsError) as err:
        safe_load(path)
    assert not marker.exists()
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    expected = {
        "os.system": ("posix.system", "os.system", "nt.system"),
        "builtins.eval": ("builtins.eval", "__builtin__.eval"),  # protocol 2: py2 names
        # protocols 2-3 reach a method through getattr
        "custom reduce": ("pathlib.Path.touch", "pathlib._local.Path.touch", "getattr"),
    }[kind]
    assert any(name in msg for name in expected), msg


def test_refusal_names_what(tmp_path: Path) -> None:
    with pytest.raises(KLToolsError, match=r"^release/x\.pkl: refused .*builtins\.eval"):
        safe_loads(pickle.dumps(_Eval("1")), what="release/x.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_structures_round_trip(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(0)
    obj = {
        "410m": {0: rng.normal(size=7).astype(np.float32), 1: None, 2: np.float32(1.5)},
        "m/x": rng.normal(size=(3, 4)),
        "fortran": np.asfortranarray(rng.normal(size=(2, 3)).astype(np.float32)),
        "strided": np.arange(10, dtype=np.float64)[::3],
        "ints": np.arange(5, dtype=np.int64),
        "scalars": (np.int64(3), np.float64(2.5), 7, 1.25, True, None, "s", b"raw\x00\xff"),
        "layers": {k: np.full(4, k, dtype=np.float32) for k in range(3)},
        "empty": [],
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = safe_load(path)
    assert got.keys() == obj.keys()
    assert got["410m"][1] is None
    for key in ("m/x", "fortran", "strided", "ints"):
        assert got[key].dtype == obj[key].dtype
        np.testing.assert_array_equal(got[key], obj[key])
    a = got["410m"][0]
    assert a.dtype == np.float32 and a.shape == (7,)
    np.testing.assert_array_equal(a, obj["410m"][0])
    assert got["410m"][2] == np.float32(1.5) and got["410m"][2].dtype == np.float32
    assert got["scalars"] == obj["scalars"]
    assert got["empty"] == []
    for k in range(3):
        np.testing.assert_array_equal(got["layers"][k], obj["layers"][k])


def test_file_objects_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps([np.ones(2)], protocol=4))
    with path.open("rb") as fh:
        np.testing.assert_array_equal(safe_load(fh)[0], np.ones(2))
    truncated = tmp_path / "t.pkl"
    truncated.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(KLToolsError, match="t.pkl: not a readable pickle"):
        safe_load(truncated)
    with pytest.raises(KLToolsError, match="cannot open"):
        safe_load(tmp_path / "missing.pkl")


def test_out_of_band_buffers_are_refused() -> None:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(np.ones(4), protocol=5, buffer_callback=buffers.append)
    assert buffers  # numpy wrote its data out of band
    with pytest.raises(KLToolsError, match="not a readable pickle"):
        safe_loads(data)


def test_protocol2_bytes_codec_other_than_latin1_is_refused() -> None:
    # what protocol 2 writes for bytes, with another codec: refused, never looked up
    data = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x09\x00\x00\x00rot13_zzzq\x01\x86q\x02Rq\x03."
    with pytest.raises(KLToolsError, match="not a readable pickle"):
        safe_loads(data)


def test_import_vectors_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    from kltools.exchange import import_vectors
    from kltools.texts import TextSet

    texts = TextSet("t", ["a", "b"], ["one text", "another text"])
    marker = tmp_path / "ran"
    path = tmp_path / "vectors.pkl"
    path.write_bytes(pickle.dumps({"m": np.zeros(2), "x": _Payload(str(marker))}))
    with pytest.raises(KLToolsError, match="refused to load the pickle"):
        import_vectors(path, tmp_path / "s.zarr", texts=texts)
    assert not marker.exists() and not (tmp_path / "s.zarr").exists()
    path.write_bytes(pickle.dumps({"m": np.array([-1.0, -2.0]), "n": np.array([-3.0, -4.0])}))
    assert len(import_vectors(path, tmp_path / "s.zarr", texts=texts)) == 2


def test_pickles_written_by_numpy_1_load() -> None:
    # numpy 1 names its helpers numpy.core.*; protocol 2 writes globals as text lines
    arrays = {"a": np.arange(4, dtype=np.float32), "s": np.float64(0.5)}
    data = pickle.dumps(arrays, protocol=2)
    old = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != data and b"numpy._core" not in old
    got = safe_loads(old)
    np.testing.assert_array_equal(got["a"], arrays["a"])
    assert got["s"] == 0.5
