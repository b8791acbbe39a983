"""Reading a release: every file checked against the layout, one clear line per mismatch."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from kltools.errors import KLToolsError
from kltools.released import open_release, verify
from kltools.released.layout import (
    LAYERS,
    OYAMA,
    PRETRAINING,
    QUANTIZATION,
    RUNS,
    SIBLINGS,
    STEPS,
    TEXTS,
    WEIGHT_DISTANCE,
)
from kltools.released.synthetic import (
    ANOMALOUS,
    COPY_RUN,
    MISSING_CHECKPOINTS,
    write_synthetic_release,
)


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, dict]:
    d = tmp_path / "rel"
    return d, write_synthetic_release(d)


def test_every_file_reads_back_as_written(release: tuple[Path, dict]) -> None:
    d, c = release
    rel = open_release(d)
    assert rel.texts() == tuple(c["texts"])
    n_bytes = [len(t.encode("utf-8")) for t in c["texts"]]
    assert rel.mean_bytes() == pytest.approx(sum(n_bytes) / len(n_bytes), rel=1e-15)
    assert rel.mean_bytes() > max(len(t) for t in c["texts"]) / 2  # bytes, not characters
    assert rel.model_list() == tuple(c["model_list"])
    pre = rel.pretraining()
    assert list(pre) == list(RUNS)
    assert list(pre["410m"]) == list(STEPS)
    for run, step in MISSING_CHECKPOINTS:
        assert pre[run][step] is None
    np.testing.assert_array_equal(pre["1b"][ANOMALOUS[1]], c["pretraining"]["1b"][ANOMALOUS[1]])
    assert pre[COPY_RUN][0].tobytes() == pre[COPY_RUN][143000].tobytes()
    assert pre["410m"][1000].dtype == np.float32
    np.testing.assert_array_equal(rel.oyama(), c["oyama"])
    assert rel.quantization(4)[c["model_list"][2]] is None
    np.testing.assert_array_equal(
        rel.quantization(8)[c["model_list"][0]], c["quant8"][c["model_list"][0]]
    )
    layers = rel.layers()
    assert layers[c["model_list"][1]] is None
    assert sorted(layers[c["model_list"][0]]) == list(range(5))
    assert sorted(layers[c["model_list"][3]]) == list(range(7))
    assert rel.types()[c["model_list"][3]] == "gptj"
    sib = rel.siblings()
    assert sib[c["model_list"][5]] == (c["model_list"][0],)
    assert sib[c["model_list"][8]] == (c["model_list"][0],)
    assert len(sib[c["model_list"][10]]) == 2 and sib[c["model_list"][0]] == ()
    assert set(rel.colors()) == set(c["colors"])
    wd = rel.weight_distances()
    assert list(wd) == ["410m", "1b", "1.4b", "2.8b", "6.9b"]
    np.testing.assert_array_equal(wd["1b"], c["weight_distances"]["1b"])


def test_json_is_written_as_the_authors_files(release: tuple[Path, dict]) -> None:
    d, c = release
    raw = (d / TEXTS).read_text(encoding="utf-8")
    assert raw.startswith('[\n  "') and not raw.endswith("\n")
    assert "東京" in raw  # non-ASCII kept, as in the authors' texts.json
    assert not (d / SIBLINGS).read_text().endswith("\n")
    assert (d / SIBLINGS).read_text().startswith('{\n    "')


def _rewrite(d: Path, name: str, obj) -> None:
    (d / name).write_bytes(pickle.dumps(obj, protocol=4))


def _errors(d: Path, call) -> str:
    rel = open_release(d, verify=False)
    with pytest.raises(KLToolsError) as err:
        call(rel)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_mismatches_are_one_line_each(release: tuple[Path, dict]) -> None:
    d, c = release
    m0 = c["model_list"][0]
    q8 = dict(c["quant8"])
    q8[m0] = q8[m0][:-1]
    _rewrite(d, QUANTIZATION[8], q8)
    msg = _errors(d, lambda r: r.quantization(8))
    assert msg == (
        f"{QUANTIZATION[8]}: vector for {m0} has {len(c['texts']) - 1} values, "
        f"{TEXTS} has {len(c['texts'])}"
    )
    pre = {r: dict(p) for r, p in c["pretraining"].items()}
    pre["410m"][3] = pre["410m"][2]
    _rewrite(d, PRETRAINING, pre)
    assert "run 410m has step 3, not a Pythia step" in _errors(d, lambda r: r.pretraining())
    pre = {r: dict(p) for r, p in c["pretraining"].items()}
    pre["410m-seed10"] = pre.pop("410m-seed9")
    _rewrite(d, PRETRAINING, pre)
    assert "has run '410m-seed10'" in _errors(d, lambda r: r.pretraining())
    pre = {r: dict(p) for r, p in c["pretraining"].items()}
    pre["1b"][1000] = pre["1b"][1000].astype(np.int32)
    _rewrite(d, PRETRAINING, pre)
    assert "vector for 1b@1000 has dtype int32" in _errors(d, lambda r: r.pretraining())
    pre["1b"][1000] = np.full(len(c["texts"]), np.nan, dtype=np.float32)
    _rewrite(d, PRETRAINING, pre)
    assert "1b@1000 has 40 non-finite values" in _errors(d, lambda r: r.pretraining())
    _rewrite(d, OYAMA, c["oyama"][:-1])
    msg = _errors(d, lambda r: r.oyama())
    assert msg.startswith(f"{OYAMA}: has shape (11, 40);")
    lay = dict(c["layers"])
    lay[m0] = {k: v for k, v in lay[m0].items() if k != 2}
    _rewrite(d, LAYERS, lay)
    assert "not 0 … L without gaps" in _errors(d, lambda r: r.layers())
    wd = dict(c["weight_distances"])
    wd["1b"] = wd["1b"].copy()
    wd["1b"][0, 20] = 1.0
    _rewrite(d, WEIGHT_DISTANCE, wd)
    assert "outside [i, i+1 … i+10]" in _errors(d, lambda r: r.weight_distances())
    q8 = {"not/listed": c["quant8"][m0]}
    _rewrite(d, QUANTIZATION[8], q8)
    assert "has 'not/listed', not one of the first 50" in _errors(d, lambda r: r.quantization(8))
    sib = dict(c["siblings"])
    del sib[m0]
    (d / SIBLINGS).write_text(json.dumps(sib))
    assert f"lacks {m0}" in _errors(d, lambda r: r.siblings())


def test_a_pickle_that_runs_code_is_refused(release: tuple[Path, dict], tmp_path: Path) -> None:
    d, _ = release

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    _rewrite(d, LAYERS, {"x": Evil()})
    assert "refused to load the pickle" in _errors(d, lambda r: r.layers())
    assert not (tmp_path / "ran").exists()


def test_open_release_verifies_the_manifest(release: tuple[Path, dict]) -> None:
    d, c = release
    verify(d)
    data = (d / OYAMA).read_bytes()
    (d / OYAMA).write_bytes(data[:-10])
    with pytest.raises(
        KLToolsError, match=r"oyama2025_logp.pkl in .* is truncated: \d+ of \d+ bytes"
    ):
        open_release(d)
    (d / OYAMA).write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(KLToolsError, match="sha256 .* differs from the manifest"):
        open_release(d)
    (d / OYAMA).write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    with pytest.raises(KLToolsError, match="is a Git LFS pointer, not the file"):
        open_release(d)
    (d / OYAMA).unlink()
    with pytest.raises(KLToolsError, match="oyama2025_logp.pkl is missing"):
        open_release(d)


def test_a_copy_without_manifest_gets_one(tmp_path: Path) -> None:
    d = tmp_path / "copy"
    write_synthetic_release(d, manifest=False)
    lines: list[str] = []
    from kltools.released.manifest import ensure_manifest, read_manifest

    ensure_manifest(d, log=lines.append)
    assert len(lines) == 1 and "wrote one" in lines[0] and "local copy" in lines[0]
    doc = read_manifest(d)
    assert doc["origin"] == "local copy" and doc["commit"] is None
    open_release(d)  # now verified against it
