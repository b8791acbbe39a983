"""Log-likelihood extraction: tokenisation, rolling windows, batching, units, resumable runs.

BOS policies
------------
``paper``
    The tokenizer's defaults (``tokenizer(text)``): for GPT-NeoX/Pythia no BOS is added, so the
    first token of a text has no context and is **never scored**; a tokenizer that adds a BOS
    (Llama) gets it, and the BOS is the unscored first token. This is the paper's convention.
``prefix``
    Exactly lm-evaluation-harness ``HFLM.loglikelihood_rolling``: the text is encoded as
    ``HFLM.tok_encode`` does (tokenizer defaults, special tokens off if the text already starts
    with the prefix token's string) and the prefix token (BOS if the tokenizer has one, else EOS)
    is put in front, so **every** token of the text is scored.

Rolling windows (both policies)
-------------------------------
Texts longer than the model's context ``L`` (``max_position_embeddings``; see
:func:`kltools.models.max_length`) are never truncated. With ``s`` the token sequence (for
``prefix`` it starts with the prefix token) and ``s[1:]`` the scored targets, the windows are
those of lm-evaluation-harness (``get_rolling_token_windows`` with ``context_len=1`` and
``make_disjoint_window``): the first window feeds ``s[0:min(L, n)]`` and scores all of its
next-token predictions; each later window predicts the next ``min(L, remaining)`` targets and
feeds the ``L`` tokens that end just before its last target, scoring only its own targets. So
the windows are disjoint blocks of ``L`` predictions (the first prediction of a block sees one
token of context), and the last block is right-aligned to use a full window of context.

Numerics
--------
Windows are sorted by length (longest first) and batched with right padding and an attention
mask; log-softmax is computed in float32 whatever the model dtype, chunked along positions so
that at most about 64 Mi float32 values of full-vocabulary logits exist at once, and the
gathered target log-probabilities are summed per text in float64.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kltools.errors import KLToolsError

BOS_POLICIES = ("paper", "prefix")
#: float32 values of full-vocabulary logits allowed at once in the log-softmax
LOGSOFTMAX_BUDGET = 64 * 2**20
#: tokens per batch when ``batch_size`` is None (also bounded by the logits budget)
AUTO_BATCH_TOKENS = 8192
_RESERVED = ("unit", "text", "layer", "spec", "dtype", "quantization")


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """One extraction unit: model x revision x variant.

    Parameters
    ----------
    spec : str
        What :func:`kltools.models.resolve_model` takes (``tiny-s@step64``, a directory, a hub
        id).
    coords : mapping, optional
        Labels of the unit in the store, e.g. ``{"model": "tiny-s", "step": 64}``; default
        ``{"model": spec}``. Values are str or int.
    dtype : str, optional
        Overrides the run's dtype for this unit (recorded in the store).
    quantization : {None, "int8", "fp4", "nf4"}
        bitsandbytes quantization of this unit (recorded in the store).
    """

    spec: str
    coords: Mapping[str, str | int] = field(default=None)  # type: ignore[assignment]
    dtype: str | None = None
    quantization: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not self.spec.strip():
            raise KLToolsError(f"unit spec {self.spec!r} is empty: give a model spec")
        coords = dict(self.coords) if self.coords is not None else {"model": self.spec}
        if not coords:
            raise KLToolsError(f"unit {self.spec!r} has empty coords: give at least one label")
        for key, value in coords.items():
            if not isinstance(key, str) or not key.isidentifier() or key in _RESERVED:
                raise KLToolsError(
                    f"unit {self.spec!r}: coordinate name {key!r} is not allowed "
                    f"(use an identifier other than {', '.join(_RESERVED)})"
                )
            if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
                raise KLToolsError(
                    f"unit {self.spec!r}: coordinate {key}={value!r} must be a str or an int"
                )
            if isinstance(value, np.integer):
                coords[key] = int(value)
        object.__setattr__(self, "coords", dict(coords))

    def __hash__(self) -> int:
        return hash((self.spec, tuple(sorted(self.coords.items())), self.dtype, self.quantization))

    def record(self, run_dtype: str) -> dict[str, Any]:
        """The unit's identity as stored: spec, coords, effective dtype and quantization."""
        return {
            "spec": self.spec,
            "coords": dict(self.coords),
            "dtype": self.dtype or run_dtype,
            "quantization": self.quantization,
        }


def unit_label(record: Mapping[str, Any]) -> str:
    """A one-line label of a unit record: its coords, plus dtype/quantization when set."""
    parts = [f"{k}={v}" for k, v in record["coords"].items()]
    if record.get("dtype"):
        parts.append(f"dtype={record['dtype']}")
    if record.get("quantization"):
        parts.append(f"quantization={record['quantization']}")
    return f"{record['spec']} [{' '.join(parts)}]"


def as_unit(unit: Unit | str) -> Unit:
    """A :class:`Unit` from a Unit or a bare spec string."""
    if isinstance(unit, Unit):
        return unit
    if isinstance(unit, str):
        return Unit(unit)
    raise KLToolsError(f"{unit!r} is not a model spec or a kltools Unit")


# --------------------------------------------------------------------------- tokenisation


def prefix_token_id(tokenizer: Any) -> int:
    """lm-evaluation-harness's prefix token: BOS if the tokenizer has one, else EOS."""
    if tokenizer.bos_token_id is not None:
        return int(tokenizer.bos_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise KLToolsError("the tokenizer has neither a BOS nor an EOS token; use --bos paper")


def encode(tokenizer: Any, text: str, bos: str) -> list[int]:
    """Token ids of one text under a BOS policy (see the module docstring).

    Returns
    -------
    list of int
        The sequence ``s``; its targets are ``s[1:]``.
    """
    if bos == "paper":
        return [int(t) for t in tokenizer(text)["input_ids"]]
    if bos == "prefix":
        prefix = prefix_token_id(tokenizer)
        kwargs = {}
        if text.startswith(tokenizer.decode(prefix)):
            kwargs["add_special_tokens"] = False
        return [prefix, *(int(t) for t in tokenizer.encode(text, **kwargs))]
    raise KLToolsError(f"unknown BOS policy {bos!r}: use one of {', '.join(BOS_POLICIES)}")


@dataclass(frozen=True)
class Window:
    """One forward window: feed ``seq[start:end]``, score its last ``n_score`` predictions."""

    text: int
    start: int
    end: int
    n_score: int


def rolling_windows(n_seq: int, max_len: int) -> list[tuple[int, int, int]]:
    """Windows ``(start, end, n_score)`` over a sequence of ``n_seq`` tokens.

    The input of a window is ``s[start:end]``, its targets ``s[start+1:end+1]``, of which the
    last ``n_score`` are scored; together the windows score each of ``s[1:]`` exactly once.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    n_target = n_seq - 1
    if n_target <= 0:
        return []
    first = min(max_len, n_target)
    out = [(0, first, first)]
    done = first
    while done < n_target:
        k = min(n_target - done, max_len)
        end = done + k
        out.append((end - max_len, end, k))
        done = end
    return out


# --------------------------------------------------------------------------- scoring


@dataclass
class ScoreResult:
    """Per-text summed log-likelihoods.

    Attributes
    ----------
    loglik : np.ndarray
        float64, (n_text,) or (n_layer, n_text) with the lens; nats, summed over tokens.
    n_tokens : np.ndarray
        int64 (n_text,): tokens scored per text.
    layers : tuple of int or None
        The lens layers of the rows of ``loglik``; None for the model's output only.
    seconds : float
        Wall time of the scoring.
    """

    loglik: np.ndarray
    n_tokens: np.ndarray
    layers: tuple[int, ...] | None = None
    seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Tokens scored over all texts."""
        return int(self.n_tokens.sum())


def normalize_layers(layers: Any, n_layers: int, label: str = "model") -> tuple[int, ...] | None:
    """``None`` -> None (output logits only); ``"all"`` -> 0..L; else validated indices."""
    from kltools.lens import check_layers

    if layers is None or layers == "none":
        return None
    if isinstance(layers, str):
        if layers == "all":
            return tuple(range(n_layers + 1))
        raise KLToolsError(f"layers={layers!r}: use 'all', 'none' or a list of integers")
    return check_layers(list(layers), n_layers, label)


def _batches(windows: list[Window], batch_size: int | None, vocab: int) -> list[list[Window]]:
    """Length-sorted batches (longest first) of at most batch_size windows."""
    order = sorted(windows, key=lambda w: (-(w.end - w.start), w.text, w.start))
    out: list[list[Window]] = []
    cur: list[Window] = []
    for w in order:
        if cur:
            longest = cur[0].end - cur[0].start
            n = len(cur) + 1
            full = (
                n > batch_size
                if batch_size
                else n * longest > AUTO_BATCH_TOKENS or n * longest * vocab > 4 * LOGSOFTMAX_BUDGET
            )
            if full:
                out.append(cur)
                cur = []
        cur.append(w)
    if cur:
        out.append(cur)
    return out


def _target_logprob_sums(
    logits_fn: Callable[[int, int], Any], targets: Any, score_mask: Any, vocab: int
) -> Any:
    """Sum over positions of float32 log-softmax at the targets, chunked along positions.

    ``logits_fn(t0, t1)`` returns (B, t1 - t0, V) logits in any dtype. Returns float64 (B,).
    """
    import torch

    bsz, seq = targets.shape
    step = max(1, LOGSOFTMAX_BUDGET // max(1, bsz * vocab))
    total = torch.zeros(bsz, dtype=torch.float64, device=targets.device)
    for t0 in range(0, seq, step):
        t1 = min(seq, t0 + step)
        logp = torch.log_softmax(logits_fn(t0, t1).float(), dim=-1)
        picked = logp.gather(-1, targets[:, t0:t1, None]).squeeze(-1)
        del logp
        total += torch.where(score_mask[:, t0:t1], picked.double(), 0.0).sum(dim=1)
    return total


def score_texts(
    loaded: Any,
    texts: Sequence[str],
    *,
    bos: str = "paper",
    layers: Any = None,
    batch_size: int | None = None,
    text_ids: Sequence[str] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> ScoreResult:
    """Summed log-likelihood of each text under a loaded model (optionally per lens layer).

    Parameters
    ----------
    loaded : kltools.models.LoadedModel
    texts : sequence of str
    bos : {"paper", "prefix"}
        BOS policy, see the module docstring.
    layers : None, "all" or sequence of int
        None: the model's output only, result (n_text,). Otherwise lens layers 0..L (see
        :mod:`kltools.lens`), result (n_layer, n_text).
    batch_size : int, optional
        Windows per forward pass; default: up to ``AUTO_BATCH_TOKENS`` tokens per batch.
    text_ids : sequence of str, optional
        Names of the texts for error messages.
    on_progress : callable, optional
        Called with the fraction of the work done by each batch.

    Returns
    -------
    ScoreResult

    Raises
    ------
    KLToolsError
        On a NaN or infinite result, naming the model and the text.
    """
    import torch

    from kltools.lens import lens_logits
    from kltools.models import max_length

    if bos not in BOS_POLICIES:
        raise KLToolsError(f"unknown BOS policy {bos!r}: use one of {', '.join(BOS_POLICIES)}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise KLToolsError(f"batch size {batch_size!r} must be a positive integer")
    model, tok = loaded.model, loaded.tokenizer
    label = loaded.ref.spec
    n_layer = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    lens = normalize_layers(layers, n_layer, label)
    ctx = max_length(model, tok)
    t_start = time.perf_counter()

    seqs = [encode(tok, t, bos) for t in texts]
    windows = [Window(i, *w) for i, s in enumerate(seqs) for w in rolling_windows(len(s), ctx)]
    vocab = int(model.get_output_embeddings().weight.shape[0])
    rows = len(lens) if lens is not None else 1
    sums = np.zeros((rows, len(texts)), dtype=np.float64)
    n_tokens = np.zeros(len(texts), dtype=np.int64)
    device = next(model.parameters()).device
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    batches = _batches(windows, batch_size, vocab)
    for batch in batches:
        width = batch[0].end - batch[0].start
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        targets = torch.zeros((len(batch), width), dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        score = torch.zeros((len(batch), width), dtype=torch.bool)
        for r, w in enumerate(batch):
            n = w.end - w.start
            seq = seqs[w.text]
            ids[r, :n] = torch.tensor(seq[w.start : w.end])
            targets[r, :n] = torch.tensor(seq[w.start + 1 : w.end + 1])
            attn[r, :n] = 1
            score[r, n - w.n_score : n] = True
            n_tokens[w.text] += w.n_score
        ids, targets, attn, score = (x.to(device) for x in (ids, targets, attn, score))
        with torch.inference_mode():
            out = model(
                input_ids=ids,
                attention_mask=attn,
                output_hidden_states=lens is not None,
                use_cache=False,
            )
            layer_list = lens if lens is not None else (None,)
            for row, k in enumerate(layer_list):
                if k is None:

                    def fn(t0: int, t1: int, _out: Any = out) -> Any:
                        return _out.logits[:, t0:t1]
                else:

                    def fn(t0: int, t1: int, _k: int = k, _out: Any = out) -> Any:
                        hs = [h[:, t0:t1] for h in _out.hidden_states]
                        return lens_logits(model, hs, _k, _out.logits[:, t0:t1])

                total = _target_logprob_sums(fn, targets, score, vocab).cpu().numpy()
                for r, w in enumerate(batch):
                    sums[row, w.text] += total[r]
            del out
        if on_progress is not None:
            on_progress(1.0 / len(batches))
    bad = np.where(~np.isfinite(sums).all(axis=0))[0]
    if bad.size:
        tid = text_ids[bad[0]] if text_ids is not None else str(int(bad[0]))
        raise KLToolsError(
            f"model {label!r} gave a non-finite log-likelihood for text {tid!r}; "
            "try --dtype float32 (nothing was stored for this unit)"
        )
    loglik = sums if lens is not None else sums[0]
    return ScoreResult(loglik, n_tokens, lens, time.perf_counter() - t_start)


# --------------------------------------------------------------------------- runs


def run_unit(store_path: str, unit_index: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """Score one unit and write it into its region of the store (picklable, for schedulers).

    Parameters
    ----------
    store_path : str
        The zarr store, already prepared by :func:`extract` (the unit's row exists).
    unit_index : int
        Row of the unit in the store.
    config : mapping
        ``unit`` (a record: spec, coords, dtype, quantization), ``ref`` (ModelRef fields),
        ``device``, ``bos``, ``layers``, ``batch_size``, ``texts``, ``text_ids``.

    Returns
    -------
    dict
        Summary: spec, tokens, seconds, tokens_per_s, mean_loglik, skipped.
    """
    from transformers.utils import logging as hf_logging

    from kltools import store as kstore
    from kltools.models import ModelRef, load_model

    unit = config["unit"]
    if kstore.unit_done(store_path, unit_index):
        return {"label": unit_label(unit), "skipped": True}
    hf_logging.disable_progress_bar()
    started = time.time()
    ref = ModelRef(**config["ref"])
    loaded = load_model(
        ref, dtype=unit["dtype"], device=config["device"], quantization=unit["quantization"]
    )
    res = score_texts(
        loaded,
        config["texts"],
        bos=config["bos"],
        layers=config["layers"],
        batch_size=config["batch_size"],
        text_ids=config["text_ids"],
        on_progress=config.get("on_progress"),
    )
    finished = time.time()
    meta = {
        "started": started,
        "finished": finished,
        "seconds": res.seconds,
        "tokens": res.total_tokens,
        "tokens_per_s": res.total_tokens / max(res.seconds, 1e-9),
        "device": loaded.info["device"],
        "source": loaded.info["source"],
        "commit": loaded.info["commit"],
    }
    kstore.write_unit(store_path, unit_index, res.loglik, res.n_tokens, meta)
    del loaded
    return {
        "label": unit_label(unit),
        "skipped": False,
        "tokens": res.total_tokens,
        "seconds": res.seconds,
        "tokens_per_s": meta["tokens_per_s"],
        "mean_loglik": float(np.mean(res.loglik)),
    }


def _check_texts(texts: Any) -> None:
    """A TextSet with at least one text."""
    for attr in ("ids", "texts", "sha256", "n_bytes"):
        if not hasattr(texts, attr):
            raise KLToolsError(
                f"texts must be a kltools TextSet (kltools.load_texts), not {type(texts).__name__}"
            )
    if len(texts.texts) == 0:
        raise KLToolsError(f"text set {getattr(texts, 'name', '?')!r} is empty; give some texts")


def extract(
    units: Sequence[Unit | str],
    texts: Any,
    store: Any,
    *,
    layers: Any = None,
    bos: str = "paper",
    dtype: str = "float32",
    device: str = "auto",
    batch_size: int | None = None,
    scheduler: Any = None,
    progress: bool = True,
) -> Any:
    """Extract the log-likelihood vectors of several units into a resumable zarr store.

    Every argument is validated and every model resolved before any work starts; finished
    units in the store are skipped; each remaining unit is scored and written into its own
    region (see :func:`run_unit`), so a killed run loses at most the unit in flight.

    Parameters
    ----------
    units : sequence of Unit or str
    texts : kltools.texts.TextSet
    store : str or path
        The zarr store directory (created if missing; must match texts, bos and layers).
    layers : None, "all" or sequence of int
        Logit-lens layers (0 = embeddings, L = final); None = output logits only.
    bos : {"paper", "prefix"}
    dtype : {"float32", "bfloat16", "float16"}
        Default weight dtype (a unit's ``dtype`` overrides it).
    device : {"auto", "cpu", "cuda"}
    batch_size : int, optional
    scheduler : executor, optional
        Anything with ``submit(fn, *args)`` returning futures with ``.result()`` (a
        ``concurrent.futures`` executor, a dask ``Client``); None runs units in this process.
    progress : bool
        Show a progress bar and one summary line per unit on stderr.

    Returns
    -------
    xarray.Dataset
        :func:`kltools.store.open_store` of the store.
    """
    from kltools import store as kstore
    from kltools.models import (
        check_dtype,
        check_quantization,
        n_layers_of,
        resolve_device,
        resolve_model,
    )

    if bos not in BOS_POLICIES:
        raise KLToolsError(f"unknown BOS policy {bos!r}: use one of {', '.join(BOS_POLICIES)}")
    check_dtype(dtype)
    dev = resolve_device(device)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise KLToolsError(f"batch size {batch_size!r} must be a positive integer")
    _check_texts(texts)
    ulist = [as_unit(u) for u in units]
    if not ulist:
        raise KLToolsError("no units to extract: give at least one model")
    for u in ulist:
        if u.dtype is not None:
            check_dtype(u.dtype)
        check_quantization(u.quantization)
    records = [u.record(dtype) for u in ulist]
    refs = [resolve_model(u.spec) for u in ulist]
    lens: tuple[int, ...] | None = None
    if layers is not None and layers != "none":
        depths = {ref.spec: n_layers_of(ref) for ref in refs}
        if layers == "all" and len(set(depths.values())) > 1:
            raise KLToolsError(
                f"--layers all needs models of equal depth, got {depths}; give layer indices"
            )
        for spec, depth in depths.items():
            lens = normalize_layers(layers, depth, f"model {spec!r}")
    for rec, ref in zip(records, refs):
        rec["resolved"] = {"kind": ref.kind, "path_or_id": ref.path_or_id, "commit": ref.commit}
    header = kstore.run_header(texts, bos=bos, layers=lens, dtype=dtype, device=dev)
    indices = kstore.prepare(store, texts, header, records)

    pending: list[tuple[int, dict[str, Any], Any]] = []
    finished: list[dict[str, Any]] = []
    for i, rec, ref in zip(indices, records, refs):
        if kstore.unit_done(store, i):
            finished.append(rec)
        elif all(i != p[0] for p in pending):
            pending.append((i, rec, ref))
    log = _Reporter(progress, len(pending))
    for rec in finished:
        log.line(f"kltools: skip {unit_label(rec)} (already in the store)")

    def config_of(rec: dict[str, Any], ref: Any) -> dict[str, Any]:
        return {
            "unit": {k: rec[k] for k in ("spec", "coords", "dtype", "quantization")},
            "ref": asdict(ref),
            "device": dev,
            "bos": bos,
            "layers": list(lens) if lens is not None else None,
            "batch_size": batch_size,
            "texts": list(texts.texts),
            "text_ids": list(texts.ids),
        }

    str_store = str(store)
    if scheduler is None:
        for i, rec, ref in pending:
            cfg = config_of(rec, ref)
            cfg["on_progress"] = log.advance
            log.summary(run_unit(str_store, i, cfg))
    else:
        futures = [scheduler.submit(run_unit, str_store, i, config_of(r, f)) for i, r, f in pending]
        for fut in futures:
            log.summary(fut.result())
            log.advance(1.0)
    log.close()
    return kstore.open_store(store)


class _Reporter:
    """tqdm bar over units (with ETA) plus one summary line per unit, on stderr."""

    def __init__(self, enabled: bool, n_units: int) -> None:
        self.enabled = enabled
        self.bar = None
        if enabled and n_units:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=n_units,
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.1f}/{total} units [{elapsed}<{remaining}]",
            )

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def advance(self, fraction: float) -> None:
        if self.bar is not None:
            self.bar.update(fraction)

    def summary(self, s: Mapping[str, Any]) -> None:
        if s.get("skipped"):
            self.line(f"kltools: skip {s['label']} (already in the store)")
            return
        self.line(
            f"kltools: done {s['label']}: {s['tokens']} tokens in {s['seconds']:.2f} s "
            f"({s['tokens_per_s']:.0f} tokens/s), mean loglik {s['mean_loglik']:.4f} nats/text"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
