"""Data preparation of a suite profile: tokenizer, token pools, analysis text set.

Everything is derived from the committed corpus in a fixed order, so the same profile gives
the same files on every machine:

- training documents are shuffled once with ``random.Random(0)``; the tokenizer is trained on
  the first ``tokenizer_bytes`` of them;
- the **pretraining pool** tokenizes those documents in that order (each followed by EOS) and
  cuts the stream into ``total_steps * batch_size`` windows of ``seq_len`` tokens; every run
  sees the same windows, a run's seed fixes their order (as in PolyPythia);
- the **fine-tuning pools** (one per domain) take the next training documents of that domain,
  never seen in pretraining;
- the **held-out windows** (for ``metrics.json``) come from held-out documents, shuffled with
  ``random.Random(1)``;
- the **analysis set** applies the paper's recipe (:func:`kltools.texts.make_analysis_set`) to
  the held-out documents in corpus order.

Files, under ``suite_root(profile)``: ``tokenizer/``, ``data/*.npy`` + ``data/data.json``,
``texts/analysis.jsonl`` + ``texts/documents.json``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np

from kltools.errors import KLToolsError
from kltools.suite.corpus import DOMAINS, Document, load_split
from kltools.suite.profiles import Profile, data_digest
from kltools.suite.tokenizer import EOS, load_tokenizer, train_tokenizer


def _windows(token_lists: list[list[int]], n_windows: int, seq_len: int) -> np.ndarray | None:
    """Concatenate token lists and cut the first ``n_windows`` windows; None if too short."""
    stream = np.fromiter((t for ids in token_lists for t in ids), dtype=np.int64)
    need = n_windows * seq_len
    if stream.size < need:
        return None
    return stream[:need].reshape(n_windows, seq_len).astype(np.uint16)


def _pool(
    docs: list[Document], tok, eos_id: int, n_windows: int, seq_len: int, what: str
) -> tuple[np.ndarray, int]:
    """Tokenize documents in order until ``n_windows`` windows fill; (windows, docs used)."""
    token_lists: list[list[int]] = []
    n_tokens = 0
    need = n_windows * seq_len
    step = 64
    used = 0
    while n_tokens < need:
        if used >= len(docs):
            raise KLToolsError(
                f"the suite corpus has too little text for the {what} pool "
                f"({n_tokens} of {need} tokens); lower the profile's steps or batch size"
            )
        batch = docs[used : used + step]
        for ids in tok([d.text for d in batch])["input_ids"]:
            token_lists.append([*ids, eos_id])
            n_tokens += len(ids) + 1
            used += 1
            if n_tokens >= need:
                break
    windows = _windows(token_lists, n_windows, seq_len)
    assert windows is not None
    return windows, used


def prepare(profile: Profile, root: Path) -> dict:
    """Write the tokenizer, the token pools and the analysis set of ``profile`` under ``root``.

    Idempotent: when ``data/data.json`` exists with this profile's digest the work is skipped
    and its content returned.

    Returns
    -------
    dict
        The content of ``data/data.json`` (pool shapes, documents used, text statistics).
    """
    info_path = root / "data" / "data.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("digest") == data_digest(profile):
            return info
    train, heldout = load_split()
    random.Random(0).shuffle(train)
    tmp = root / ".tmp-prepare"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    # tokenizer
    tok_texts: list[str] = []
    n_bytes = 0
    for doc in train:
        if n_bytes >= profile.tokenizer_bytes:
            break
        tok_texts.append(doc.text)
        n_bytes += len(doc.text.encode("utf-8"))
    train_tokenizer(tok_texts, profile.vocab_size, tmp / "tokenizer")
    tok = load_tokenizer(tmp / "tokenizer")
    eos_id = tok.convert_tokens_to_ids(EOS)
    # pools
    seq = profile.seq_len
    pre, used = _pool(
        train, tok, eos_id, profile.total_steps * profile.batch_size, seq, "pretraining"
    )
    np.save(tmp / "data" / "pretrain.npy", pre)
    rest = train[used:]
    ft_info = {}
    for domain in DOMAINS:
        docs = [d for d in rest if d.domain == domain]
        pool, n_used = _pool(
            docs, tok, eos_id, profile.ft_steps * profile.batch_size, seq, f"{domain} fine-tuning"
        )
        np.save(tmp / "data" / f"ft-{domain}.npy", pool)
        ft_info[domain] = {
            "windows": int(pool.shape[0]),
            "documents": [d.id for d in docs[:n_used]],
        }
    ho = list(heldout)
    random.Random(1).shuffle(ho)
    ho_pool, _ = _pool(ho, tok, eos_id, profile.heldout_eval_windows, seq, "held-out")
    np.save(tmp / "data" / "heldout.npy", ho_pool)
    # analysis set
    text_info = _analysis_set(profile, heldout, tok, tmp / "texts")
    info = {
        "profile": profile.name,
        "digest": data_digest(profile),
        "seq_len": seq,
        "pretrain_windows": int(pre.shape[0]),
        "pretrain_documents": [d.id for d in train[:used]],
        "finetune": ft_info,
        "heldout_windows": int(ho_pool.shape[0]),
        "texts": text_info,
    }
    (tmp / "data" / "data.json").write_text(json.dumps(info, indent=1))
    for sub in ("tokenizer", "texts", "data"):  # data/ last: data.json marks completion
        shutil.rmtree(root / sub, ignore_errors=True)
        (tmp / sub).rename(root / sub)
    shutil.rmtree(tmp, ignore_errors=True)
    return info


def _analysis_set(profile: Profile, heldout: list[Document], tok, out: Path) -> dict:
    """Write ``analysis.jsonl`` (+ ``documents.json``) and check texts fit the context."""
    from kltools.texts import make_analysis_set

    textset = make_analysis_set(
        ((d.text, {"domain": d.domain}) for d in heldout),
        max_bytes=profile.text_max_bytes,
        min_bytes=profile.text_min_bytes,
        seed=42,
        sample_size=40000,
        n=profile.n_texts,
        name=f"{profile.name}-analysis",
    )
    if len(textset) < profile.n_texts:
        raise KLToolsError(
            f"profile {profile.name!r}: only {len(textset)} held-out chunks for "
            f"{profile.n_texts} analysis texts; lower n_texts"
        )
    n_tok = np.array([len(ids) for ids in tok(list(textset.texts))["input_ids"]])
    # +1: the "prefix" policy of kltools.extract puts EOS in front of the text
    if int(n_tok.max()) + 1 > profile.seq_len:
        raise KLToolsError(
            f"profile {profile.name!r}: an analysis text has {int(n_tok.max())} tokens, more "
            f"than the training context {profile.seq_len} allows; raise seq_len"
        )
    out.mkdir(parents=True, exist_ok=True)
    textset.to_jsonl(out / "analysis.jsonl")
    (out / "documents.json").write_text(
        json.dumps(
            {
                "doc_idx_refers_to": "held-out documents in corpus order",
                "ids": [d.id for d in heldout],
            }
        )
    )
    return {
        "n": len(textset),
        "mean_bytes": float(textset.mean_bytes),
        "tokens_mean": float(n_tok.mean()),
        "tokens_max": int(n_tok.max()),
        "sha256": textset.sha256,
    }
