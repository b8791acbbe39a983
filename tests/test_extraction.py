"""kltools.extraction: tokenisation, rolling windows, score_texts numerics, units, extract()."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from kltools.errors import KLToolsError
from kltools.extraction import Unit, encode, extract, rolling_windows, score_texts
from kltools.models import load_model
from kltools.texts import TextSet

SHORT = [
    "We the People",
    "Four score and seven years ago our fathers brought forth on this continent, a new nation.",
    "café 東京 🙂",
    "All legislative Powers herein granted shall be vested in a Congress of the United States.",
]


@pytest.fixture(scope="module")
def long_texts(tiny_corpus: str) -> list[str]:
    """Texts of 20 to ~900 characters (several windows for a 16-token context)."""
    paras = tiny_corpus.split("\n\n")
    return [paras[0][:20], paras[1], paras[4] + " " + paras[5], paras[6], paras[2][:150]]


@pytest.fixture(scope="module")
def small_ctx(make_tiny_neox):
    """A tiny model with a 16-token context, so that rolling windows are exercised."""
    return load_model(str(make_tiny_neox(3, max_position_embeddings=16)), device="cpu")


def _reference_windows(seq: list[int], max_len: int) -> list[tuple[list[int], list[int]]]:
    """lm-evaluation-harness's windows over targets seq[1:] with prefix seq[0]."""
    return [
        make_disjoint_window(w)
        for w in get_rolling_token_windows(seq[1:], seq[0], max_len, context_len=1)
    ]


def _reference_loglik(model, seq: list[int], max_len: int) -> float:
    """Independent per-window computation: full forward, float32 log-softmax, gather, sum."""
    total = 0.0
    for ctx, cont in _reference_windows(seq, max_len):
        inp = (ctx + cont)[-(max_len + 1) :][:-1]
        with torch.no_grad():
            logits = model(torch.tensor([inp])).logits[0]
        logp = torch.log_softmax(logits.float(), -1)[-len(cont) :]
        total += logp.gather(-1, torch.tensor(cont)[:, None]).double().sum().item()
    return total


@pytest.mark.parametrize("n_seq", [0, 1, 2, 5, 16, 17, 18, 33, 47, 100])
@pytest.mark.parametrize("max_len", [1, 4, 16])
def test_windows_match_lm_eval(n_seq: int, max_len: int) -> None:
    seq = list(range(100, 100 + n_seq))
    mine = rolling_windows(n_seq, max_len)
    ref = _reference_windows(seq, max_len) if n_seq > 1 else []
    assert len(mine) == len(ref)
    scored: list[int] = []
    for (start, end, k), (ctx, cont) in zip(mine, ref):
        assert end - start <= max_len
        assert seq[start:end] == (ctx + cont)[-(max_len + 1) :][:-1]
        assert seq[end - k + 1 : end + 1] == cont
        scored += cont
    assert scored == seq[1:]


def test_encode_policies(tiny_neox: Path) -> None:
    tok = load_model(str(tiny_neox), device="cpu").tokenizer
    text = SHORT[1]
    paper = encode(tok, text, "paper")
    assert paper == tok.encode(text)  # tokenizer defaults; Pythia-style: no BOS
    assert encode(tok, text, "prefix") == [tok.bos_token_id, *paper]
    # a text that already starts with the prefix token's string is not given special tokens
    assert encode(tok, "<|endoftext|>" + text, "prefix")[0] == tok.bos_token_id
    with pytest.raises(KLToolsError, match="unknown BOS policy"):
        encode(tok, text, "both")


def test_paper_matches_direct_computation(tiny_neox: Path) -> None:
    lm = load_model(str(tiny_neox), device="cpu")
    res = score_texts(lm, SHORT, bos="paper")
    for i, text in enumerate(SHORT):
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
        assert ids.shape[1] <= 128
        with torch.no_grad():
            logits = lm.model(ids).logits[0]
        logp = torch.log_softmax(logits.float(), -1)[:-1].gather(-1, ids[0, 1:, None])
        assert abs(res.loglik[i] - logp.double().sum().item()) <= 1e-4
        assert res.n_tokens[i] == ids.shape[1] - 1  # the first token is never scored


@pytest.mark.parametrize("bos", ["paper", "prefix"])
def test_rolling_matches_reference(small_ctx, long_texts: list[str], bos: str) -> None:
    res = score_texts(small_ctx, long_texts, bos=bos)
    for i, text in enumerate(long_texts):
        seq = encode(small_ctx.tokenizer, text, bos)
        assert abs(res.loglik[i] - _reference_loglik(small_ctx.model, seq, 16)) <= 1e-4
        assert res.n_tokens[i] == len(seq) - 1
    assert max(res.n_tokens) > 3 * 16  # several windows were used


def test_batched_equals_one_at_a_time(small_ctx, long_texts: list[str]) -> None:
    texts = [*long_texts, *SHORT]
    one = score_texts(small_ctx, texts, batch_size=1)
    for bs in (None, 3, 64):
        res = score_texts(small_ctx, texts, batch_size=bs)
        np.testing.assert_allclose(res.loglik, one.loglik, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(res.n_tokens, one.n_tokens)
    lens_one = score_texts(small_ctx, texts, layers=[0, 1], batch_size=1)
    lens_auto = score_texts(small_ctx, texts, layers=[0, 1])
    np.testing.assert_allclose(lens_auto.loglik, lens_one.loglik, rtol=0, atol=1e-4)


def test_bfloat16_logsoftmax_in_float32(tiny_neox: Path) -> None:
    f32 = score_texts(load_model(str(tiny_neox), device="cpu"), SHORT)
    bf16 = score_texts(load_model(str(tiny_neox), dtype="bfloat16", device="cpu"), SHORT)
    assert bf16.loglik.dtype == np.float64 and np.isfinite(bf16.loglik).all()
    assert np.abs(bf16.loglik - f32.loglik).max() < 0.02 * np.abs(f32.loglik).max()


def test_nan_names_model_and_text(tiny_neox: Path) -> None:
    lm = load_model(str(tiny_neox), device="cpu")
    bad_token = lm.tokenizer("Four")["input_ids"][0]
    with torch.no_grad():
        lm.model.get_input_embeddings().weight[bad_token] = float("nan")
    ids = ["t-ok", "t-bad", "t-ok2"]
    with pytest.raises(KLToolsError, match=r"non-finite log-likelihood for text 't-bad'"):
        score_texts(lm, [SHORT[0], SHORT[1], SHORT[3]], text_ids=ids)


def test_unit() -> None:
    u = Unit("tiny-s@step64", {"model": "tiny-s", "step": np.int64(64)})
    assert u.coords == {"model": "tiny-s", "step": 64} and isinstance(u.coords["step"], int)
    assert Unit("x").coords == {"model": "x"}
    assert hash(u) == hash(Unit("tiny-s@step64", {"step": 64, "model": "tiny-s"}))
    rec = Unit("x", dtype="bfloat16", quantization="int8").record("float32")
    assert (rec["dtype"], rec["quantization"]) == ("bfloat16", "int8")
    with pytest.raises(KLToolsError, match="not allowed"):
        Unit("x", {"text": 1})
    with pytest.raises(KLToolsError, match="str or an int"):
        Unit("x", {"model": 1.5})


def _textset(texts: list[str], name: str = "t") -> TextSet:
    return TextSet(name=name, ids=tuple(f"{name}{i}" for i in range(len(texts))), texts=texts)


def test_extract_validates_before_work(tmp_path: Path, tiny_neox: Path) -> None:
    store = tmp_path / "s.zarr"
    ts = _textset(SHORT)
    with pytest.raises(KLToolsError, match="which has 2 layers"):
        extract([str(tiny_neox)], ts, store, layers=[5], progress=False)
    with pytest.raises(KLToolsError, match="does not exist"):
        extract([str(tiny_neox), "/nonexistent/m"], ts, store, progress=False)
    with pytest.raises(KLToolsError, match="unknown BOS"):
        extract([str(tiny_neox)], ts, store, bos="none", progress=False)
    with pytest.raises(KLToolsError, match="batch size"):
        extract([str(tiny_neox)], ts, store, batch_size=0, progress=False)
    assert not store.exists()


def test_extract_values_and_scheduler(tmp_path: Path, make_tiny_neox) -> None:
    ts = _textset(SHORT)
    units = [Unit(str(make_tiny_neox(s)), {"model": f"m{s}"}) for s in (0, 1, 2)]
    seq = extract(units, ts, tmp_path / "a.zarr", progress=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        par = extract(units, ts, tmp_path / "b.zarr", scheduler=pool, progress=False)
    assert seq.loglik.dims == ("model", "text")
    np.testing.assert_array_equal(seq.loglik.values, par.loglik.values)
    direct = score_texts(load_model(units[1].spec, device="cpu"), SHORT).loglik
    np.testing.assert_array_equal(seq.loglik.sel(model="m1").values, direct.astype(np.float32))
    runs = [u["run"] for u in json.loads(seq.attrs["units"])]
    assert [r["normaliser"] for r in runs] == ["log_softmax"] * 3  # small units: eager


def test_logit_chunks_bounded_by_bytes_and_cpu_rows() -> None:
    """CPU chunks hold at most CPU_CHUNK_MAX_ROWS positions and at most the byte budget."""
    from kltools import extraction as E

    assert E.logits_chunk_rows(4096, "cpu") == E.CPU_CHUNK_MAX_ROWS
    assert E.logits_chunk_rows(50304, "cpu") == min(
        E.CPU_CHUNK_MAX_ROWS, E.LOGITS_CHUNK_BYTES_CPU // (4 * 50304)
    )
    assert E.logits_chunk_rows(1_000_000, "cpu") == E.LOGITS_CHUNK_BYTES_CPU // (4 * 1_000_000)
    assert E.logits_chunk_rows(4096, "cuda:0") == E.LOGITS_CHUNK_BYTES_CUDA // (4 * 4096)
    assert E.logits_chunk_rows(10**9, "cpu") == 1


def test_fused_normaliser_matches_log_softmax_in_float32(
    tiny_neox: Path, long_texts: list[str], monkeypatch
) -> None:
    """The fused path (float32 logsumexp + recomputed target logit), used for large units in
    every dtype, equals the eager log-softmax + gather, lens included."""
    from kltools import extraction as E

    lm = load_model(str(tiny_neox), device="cpu")
    monkeypatch.setattr(E, "COMPILE_MIN_LOGITS", 10**18)
    eager = score_texts(lm, long_texts, layers="all")
    monkeypatch.setattr(E, "COMPILE_MIN_LOGITS", 0)
    fused = score_texts(lm, long_texts, layers="all")
    assert np.abs(fused.loglik - eager.loglik).max() < 1e-3
    assert eager.normaliser == "log_softmax"
    if E.fused_lse() is None:  # no C++ compiler: the eager path, recorded as such
        assert fused.normaliser == "log_softmax"
    else:
        assert fused.normaliser == "fused_logsumexp"
        assert not np.array_equal(fused.loglik, eager.loglik)


# ------------------------------------------------------------------ many small units


def test_tokenise_cached_equals_encode(tiny_neox: Path, long_texts: list[str]) -> None:
    """The cached, batched tokenisation is the per-text encode, for both policies."""
    import kltools.extraction as kx

    tok = load_model(str(tiny_neox), device="cpu").tokenizer
    for bos in ("paper", "prefix"):
        kx._TOKEN_CACHE.clear()
        first = kx.tokenise(tok, long_texts + SHORT, bos)
        assert first == [encode(tok, t, bos) for t in long_texts + SHORT]
        assert kx.tokenise(tok, long_texts + SHORT, bos) is first  # reused, not recomputed
    # another text set, order or policy is another entry
    assert kx.tokenise(tok, SHORT[::-1], "paper") == [encode(tok, t, "paper") for t in SHORT[::-1]]
    assert kx.texts_digest(["ab", "c"]) != kx.texts_digest(["a", "bc"])
    # a tokenizer with other merges has another identity
    other = load_model(str(tiny_neox), device="cpu").tokenizer
    assert kx.tokenizer_identity(other) == kx.tokenizer_identity(tok)
    with pytest.raises(KLToolsError, match="BOS policy"):
        kx.tokenise(tok, SHORT, "nope")


def test_cpu_batch_tokens_grow_for_narrow_models() -> None:
    from kltools.extraction import CPU_BATCH_TOKENS, CPU_MAX_BATCH_TOKENS, cpu_batch_tokens

    assert cpu_batch_tokens(512) == cpu_batch_tokens(4096) == CPU_BATCH_TOKENS
    assert cpu_batch_tokens(128) == 4 * CPU_BATCH_TOKENS
    assert cpu_batch_tokens(16) == CPU_MAX_BATCH_TOKENS


def test_smoke_stores_unchanged_by_the_many_units_path(
    tmp_path: Path, smoke_suite_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every unit of the smoke suite: the many-units path gives the per-unit path's values.

    The per-unit path (a fresh ``from_pretrained`` per unit, per-text tokenisation, 16
    windows per batch as the book used) is the extraction before the speed work; the new
    path reuses model skeletons and token ids and sizes batches by tokens. Values may differ
    only by the float32 batching floor (1e-4 nats per text, see the module docstring) plus
    one unit in the last place of the float32 the store keeps (1.2e-4 nats for a text whose
    log-likelihood exceeds 1024 nats in size, as a few smoke texts do on some CPUs).
    """
    import kltools.extraction as kx
    from kltools.models import clear_reuse_cache
    from kltools.suite import list_models
    from kltools.texts import load_texts

    texts = load_texts("smoke").subset(n=32)  # the texts params/smoke.yaml scores
    units = [
        Unit(m["spec"], {"model": m["name"], "step": m["step"] if m["step"] is not None else -1})
        for m in list_models("smoke")
        if m["built"] and not str(m.get("variant") or "").startswith("bnb")
    ]
    assert len(units) > 40  # every checkpoint of every run, and the variants
    kx._TOKEN_CACHE.clear()
    clear_reuse_cache()
    new = extract(units, texts, tmp_path / "new.zarr", device="cpu", progress=False)
    with monkeypatch.context() as m:
        m.setattr(
            kx,
            "load_unit_model",
            lambda ref, unit, device: load_model(ref, dtype=unit["dtype"], device=device),
        )
        m.setattr(kx, "release_unit_model", lambda loaded: None)
        m.setattr(kx, "tokenise", lambda tok, ts, bos: [encode(tok, t, bos) for t in ts])
        old = extract(
            units, texts, tmp_path / "old.zarr", batch_size=16, device="cpu", progress=False
        )
    assert new.loglik.shape == old.loglik.shape
    np.testing.assert_array_equal(new.n_tokens.values, old.n_tokens.values)
    a, b = new.loglik.values, old.loglik.values
    present = np.isfinite(b)  # (model, step) pairs a run does not have are NaN in both
    np.testing.assert_array_equal(np.isfinite(a), present)
    assert present.sum() == len(units) * len(texts.texts)
    stored_ulp = np.spacing(np.abs(b[present]).astype(np.float32))
    assert (np.abs(a - b)[present] <= 1e-4 + stored_ulp).all()
