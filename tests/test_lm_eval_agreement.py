"""--bos prefix agrees with lm-evaluation-harness HFLM.loglikelihood_rolling (run offline).

The model has a 32-token context, so most texts are scored in several rolling windows, and one
text is longer than the context by a wide margin. Texts are scored through the CLI into a store,
and compared with lm_eval run on the same local directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kltools.store import open_store
from kltools.texts import TextSet

PY = Path(sys.executable)


@pytest.fixture(scope="module")
def texts(tiny_corpus: str) -> TextSet:
    paras = tiny_corpus.split("\n\n")
    chosen = [
        "We the People",  # shorter than the context: one window
        paras[1],
        paras[6],  # multi-byte characters
        " ".join(paras[:6]),  # far longer than the context: many windows
        "Liberty",
    ]
    return TextSet(name="agree", ids=tuple(f"a{i}" for i in range(len(chosen))), texts=chosen)


def _lm_eval_rolling(model_dir: Path, texts: list[str]) -> np.ndarray:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), device="cpu", batch_size=3, dtype="float32")
    reqs = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
        for i, t in enumerate(texts)
    ]
    return np.asarray(lm.loglikelihood_rolling(reqs, disable_tqdm=True), dtype=np.float64)


def test_prefix_agrees_with_lm_eval(tmp_path: Path, make_tiny_neox, texts: TextSet) -> None:
    model_dir = make_tiny_neox(7, max_position_embeddings=32)
    jsonl = texts.to_jsonl(tmp_path / "agree.jsonl")
    store = tmp_path / "agree.zarr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(PY), "-m", "kltools", "extract", "--model", str(model_dir), "--texts", str(jsonl)]
    cmd += ["--store", str(store), "--bos", "prefix", "--dtype", "float32", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ds = open_store(store)
    ours = ds.loglik.sel(model=str(model_dir)).values.astype(np.float64)
    ref = _lm_eval_rolling(model_dir, list(texts.texts))
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)
    n_tok = ds.n_tokens.sel(model=str(model_dir)).values
    assert n_tok.max() > 5 * 32  # the long text needed several windows
    assert ds.attrs["bos_policy"] == "prefix"
