"""``kltools released``: check, import, write (a round trip through the project's stores),
fetch offline; bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import numpy as np
import pytest

from kltools.__main__ import main
from kltools.released import open_release
from kltools.released.layout import PRETRAINING
from kltools.released.synthetic import write_synthetic_release

STEPS = (0, 1000, 2000, 116000, 142000, 143000)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("cli") / "rel"
    return d, write_synthetic_release(d, steps=STEPS)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kltools: error: "), err
    return err[0]


def test_check_prints_a_summary(release, capsys) -> None:
    d, c = release
    assert main(["released", "check", str(d)]) == 0
    out = capsys.readouterr().out
    assert "manifest OK" in out
    assert f"texts: {len(c['texts'])}, mean" in out
    assert f"pretraining: 14 runs, {14 * len(STEPS)} checkpoints (0 not computed)" in out
    assert "2 merges" in out and "4-bit copies: 11 of 12" in out
    assert "depths 4, 6" in out


def test_check_of_a_broken_release_is_one_line(tmp_path: Path, capsys) -> None:
    d = tmp_path / "rel"
    write_synthetic_release(d, steps=(0, 143000))
    (d / PRETRAINING).write_bytes((d / PRETRAINING).read_bytes()[:100])
    assert main(["released", "check", str(d)]) == 2
    assert "logp/pretraining_logp.pkl in" in _one_error_line(capsys)
    assert main(["released", "check", str(tmp_path / "none")]) == 2
    assert "no release directory" in _one_error_line(capsys)


def test_import_then_write_round_trips(release, tmp_path: Path, capsys) -> None:
    d, c = release
    data = tmp_path / "data"
    assert main(["released", "import", str(d), "--data-root", str(data)]) == 0
    out = capsys.readouterr().out
    assert "pretraining" in out and (data / "pretraining.zarr").is_dir()
    back = tmp_path / "back"
    args = ["released", "write", "--from-stores", str(data), "--to", str(back)]
    assert main([*args, "--texts", str(data / "texts.jsonl")]) == 0
    assert "wrote" in capsys.readouterr().out
    rel = open_release(back)
    assert rel.texts() == tuple(c["texts"])
    pre = rel.pretraining()
    assert 116000 not in pre["1b"]  # the paper's exclusion: not imported, so not exported
    for run, per in c["pretraining"].items():
        for step, v in per.items():
            if (run, step) != ("1b", 116000):
                np.testing.assert_array_equal(pre[run][step], v)
    ms = c["model_list"]
    assert rel.model_list()[:12] == tuple(ms)
    for i, m in enumerate(ms):
        np.testing.assert_array_equal(rel.oyama()[i], c["oyama"][i].astype(np.float32))
        q4 = rel.quantization(4).get(m)
        if c["quant4"][m] is None:
            assert q4 is None or m not in rel.quantization(4)
        else:
            np.testing.assert_array_equal(q4, c["quant4"][m])
        if c["layers"][m] is not None:
            assert sorted(rel.layers()[m]) == sorted(c["layers"][m])
            np.testing.assert_array_equal(rel.layers()[m][1], c["layers"][m][1])
    assert rel.weight_distances() == {}


def test_write_needs_the_stores_texts(release, tmp_path: Path, capsys) -> None:
    d, _ = release
    data = tmp_path / "data"
    assert main(["released", "import", str(d), "--data-root", str(data)]) == 0
    capsys.readouterr()
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "t00000", "text": "another text"}\n')
    args = ["released", "write", "--from-stores", str(data), "--to", str(tmp_path / "x")]
    assert main([*args, "--texts", str(other)]) == 2
    assert "scores text t00001, which the text set 'other' lacks" in _one_error_line(capsys)
    args = ["released", "import", str(d), "--data-root", str(data)]
    assert main([*args, "--finetuning-models", str(tmp_path / "no")]) == 2
    assert "--finetuning-models" in _one_error_line(capsys)


def test_fetch_offline_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    # the module (the package's ``fetch`` attribute is the function of the same name)
    fetch_module = importlib.import_module("kltools.released.fetch")
    monkeypatch.setattr(fetch_module, "RAW_BASE", f"http://127.0.0.1:{port}")
    assert main(["released", "fetch", "--to", str(tmp_path / "r"), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert "cannot be downloaded" in line and str(tmp_path / "r") in line
    assert main(["released", "fetch", "--commit", "main"]) == 2
    assert "not a 40-hex-digit commit" in _one_error_line(capsys)


def test_synthetic_release_command(tmp_path) -> None:
    """``kltools released synthetic`` writes a release that opens and verifies; bad sizes: one
    line, exit 2."""
    from kltools.__main__ import main
    from kltools.released import open_release

    assert main(["released", "synthetic", "--to", str(tmp_path / "syn"), "--texts", "6"]) == 0
    rel = open_release(tmp_path / "syn")
    assert rel.n_texts() == 6 and len(rel.model_list()) == 12
    assert main(["released", "synthetic", "--to", str(tmp_path / "bad"), "--models", "3"]) == 2


def test_released_book_without_a_release_fails_at_once(tmp_path, monkeypatch, capsys) -> None:
    """``kltools book build --profile released`` with no usable release: one line naming what
    is missing, exit 2, before any chapter runs."""
    from kltools.__main__ import main

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("KLTOOLS_RELEASED_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("KLTOOLS_BUILD_ROOT", str(tmp_path / "build"))
    assert main(["book", "build", "--profile", "released", "--no-render", "--no-suite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is missing from the release" in err[0]
    assert not (tmp_path / "build" / "executed").exists() or not any(
        (tmp_path / "build" / "executed").glob("*.ipynb")
    )
