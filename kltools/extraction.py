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

Numerics and speed
------------------
Windows are sorted by length (longest first) and batched with right padding and an attention
mask (:func:`cpu_batch_tokens` tokens per batch on CPU, by model width; from free
memory on CUDA). For the architectures the lens knows, the model *body* runs on the batch and
the unembedding runs only on the scored positions, in chunks of :func:`logits_chunk_rows`
positions, so at most one chunk of full-vocabulary logits exists at a time (memory bounded
by the chunk, never by batch x sequence x vocabulary; the lens stacks its layers into the
same chunked pass). Log-softmax is float32 whatever the model dtype (see
:func:`token_logprobs`); the gathered target log-probabilities are summed per text in
float64. Batched and one-at-a-time results agree to 1e-4 nats (tested).

Many small units
----------------
A store of the book holds hundreds of small units (every checkpoint of every suite run) on
one text set. :func:`run_unit` therefore keeps, per process, what does not change between
units: the token ids of the text set (:func:`tokenise`, keyed by tokenizer identity, text-set
hash and BOS policy) and one model object per architecture, whose weights alone are read for
the next checkpoint (:func:`kltools.models.load_model_reusing`). Values are those of the
per-unit path up to the float32 batching floor (tested on every unit of the smoke suite).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kltools.errors import KLToolsError

BOS_POLICIES = ("paper", "prefix")
#: bytes of float32 full-vocabulary logits per log-softmax chunk on CPU (tuned by make bench:
#: on the Pythia-70m shape 128 MiB, i.e. 512-row chunks, ran 3% faster than 64 MiB)
LOGITS_CHUNK_BYTES_CPU = 128 * 2**20
#: at most this many positions per chunk on CPU: with a small vocabulary the byte budget alone
#: gives chunks of thousands of rows whose logits leave the cache between the unembedding and
#: the log-softmax (tiny-s, vocabulary 4096: 4096-row chunks 1.7 s, 512-row chunks 1.0 s per
#: 300 texts); the Pythia vocabulary reaches it too (128 MiB / 50k -> 667 rows)
CPU_CHUNK_MAX_ROWS = 512
#: bytes of float32 full-vocabulary logits per log-softmax chunk on CUDA
LOGITS_CHUNK_BYTES_CUDA = 256 * 2**20
#: tokens per forward batch on CPU when ``batch_size`` is None, for a model of hidden size
#: 512 (Pythia-70m: a ~450-token window runs alone, measured ~5% faster in fp32 than padded
#: batches of 2-8); narrower models get proportionally more, see :func:`cpu_batch_tokens`
CPU_BATCH_TOKENS = 512
#: at most this many tokens per CPU forward batch (the narrowest models)
CPU_MAX_BATCH_TOKENS = 8192
#: upper bound of the automatic CUDA batch, in tokens
CUDA_MAX_BATCH_TOKENS = 65536


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
        from kltools.store import RESERVED

        for key, value in coords.items():
            if not isinstance(key, str) or not key.isidentifier() or key in RESERVED:
                raise KLToolsError(
                    f"unit {self.spec!r}: coordinate name {key!r} is not allowed "
                    f"(use an identifier other than {', '.join(RESERVED)})"
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


#: token ids of text sets already tokenised in this process, keyed by
#: (tokenizer identity, text-set hash, BOS policy); see :func:`tokenise`
_TOKEN_CACHE: dict[tuple[str, str, str], list[list[int]]] = {}
#: text sets kept in :data:`_TOKEN_CACHE` (least recently used dropped first)
TOKEN_CACHE_ENTRIES = 8
_TOKEN_LOCK = threading.Lock()


def tokenizer_identity(tokenizer: Any) -> str | None:
    """A sha256 naming what a tokenizer does (None when it cannot be named: no caching).

    Hashes the fast tokenizer's full serialisation (vocabulary, merges, normaliser,
    pre-tokeniser, post-processor), its class and its special-token ids. Computed once per
    tokenizer object.
    """
    import hashlib

    cached = getattr(tokenizer, "_kltools_identity", None)
    if cached is not None:
        return cached
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    h = hashlib.sha256(backend.to_str().encode())
    for part in (type(tokenizer).__name__, tokenizer.bos_token_id, tokenizer.eos_token_id):
        h.update(repr(part).encode())
    ident = h.hexdigest()
    try:
        tokenizer._kltools_identity = ident
    except AttributeError:  # pragma: no cover - a tokenizer refusing attributes
        pass
    return ident


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over the texts, in order (length-prefixed, so boundaries count)."""
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        b = t.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def tokenise(tokenizer: Any, texts: Sequence[str], bos: str) -> list[list[int]]:
    """Token ids of every text under a BOS policy, computed once per process and reused.

    Equal to ``[encode(tokenizer, t, bos) for t in texts]``. The suite's checkpoints share
    one tokenizer, so a store of many units tokenises its texts once: the ids are cached by
    :func:`tokenizer_identity`, :func:`texts_digest` and the policy. The ``paper`` policy
    encodes the whole list in one batched call of the fast tokenizer. The returned lists
    are shared: do not modify them.
    """
    if bos not in BOS_POLICIES:
        raise KLToolsError(f"unknown BOS policy {bos!r}: use one of {', '.join(BOS_POLICIES)}")
    ident = tokenizer_identity(tokenizer)
    key = (ident, texts_digest(texts), bos) if ident is not None else None
    if key is not None:
        with _TOKEN_LOCK:
            if key in _TOKEN_CACHE:
                _TOKEN_CACHE[key] = _TOKEN_CACHE.pop(key)  # most recently used last
                return _TOKEN_CACHE[key]
    if bos == "paper" and ident is not None and texts:
        seqs = [[int(t) for t in ids] for ids in tokenizer(list(texts))["input_ids"]]
    else:
        seqs = [encode(tokenizer, t, bos) for t in texts]
    if key is not None:
        with _TOKEN_LOCK:  # units may run in threads (a thread-pool scheduler)
            _TOKEN_CACHE[key] = seqs
            while len(_TOKEN_CACHE) > TOKEN_CACHE_ENTRIES:
                _TOKEN_CACHE.pop(next(iter(_TOKEN_CACHE)))
    return seqs


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
    normaliser : str
        How the log-normaliser was computed: ``log_softmax`` (eager float32 log-softmax and
        gather: the paper's arithmetic) or ``fused_logsumexp`` (compiled float32 logsumexp
        and a recomputed target logit; equal up to rounding, see :func:`token_logprobs`).
    timings : dict
        Wall seconds of ``tokenise`` (token ids and windows), ``forward`` (the model body)
        and ``normalise`` (the rest: packing, unembedding, log-normaliser, gather, sums). On CUDA the split
        between the last two follows the host, not the device.
    """

    loglik: np.ndarray
    n_tokens: np.ndarray
    layers: tuple[int, ...] | None = None
    seconds: float = 0.0
    normaliser: str = "log_softmax"
    timings: dict[str, float] = field(default_factory=dict)

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


def logits_chunk_rows(vocab: int, device: str, fused: bool = False) -> int:
    """Positions per log-softmax chunk: the float32 logits of a chunk fit the device's budget.

    On CPU also at most :data:`CPU_CHUNK_MAX_ROWS` positions, so a chunk's logits stay in cache.
    ``fused``: the chunk of the fused normaliser (:func:`fused_lse`), which writes no
    log-softmax, so twice the rows fit the same memory (and the larger matmuls run closer to
    the roofline: the lens on the Pythia-70m shape ran 4% faster).
    """
    if str(device).startswith("cuda"):
        return max(1, LOGITS_CHUNK_BYTES_CUDA // (4 * max(1, vocab)))
    rows = max(1, min(CPU_CHUNK_MAX_ROWS, LOGITS_CHUNK_BYTES_CPU // (4 * max(1, vocab))))
    return 2 * rows if fused else rows


def batch_tokens_for_memory(
    free_bytes: int,
    *,
    hidden: int,
    intermediate: int,
    vocab: int,
    itemsize: int,
    lens_rows: int,
    chunk_rows: int,
) -> int:
    """Tokens per batch that fit ``free_bytes`` of accelerator memory (pure arithmetic).

    The log-softmax chunk is set aside first (float32 logits, their log-softmax and a cast:
    ``chunk_rows x vocab x (12 + itemsize)`` bytes); the rest, with a 40% margin for the
    allocator and attention workspaces, is divided by the activations of one token (a few
    hidden-width and MLP-width vectors, plus the hidden states the lens keeps). The
    vocabulary enters only through the chunk: memory is bounded by the chunk size, never by
    batch x sequence x vocabulary. Clamped to [256, :data:`CUDA_MAX_BATCH_TOKENS`].
    """
    chunk_bytes = chunk_rows * vocab * (12 + itemsize)
    per_token = itemsize * (8 * hidden + 3 * intermediate + lens_rows * hidden) + 64
    usable = int(0.6 * max(0, free_bytes - chunk_bytes))
    return int(min(CUDA_MAX_BATCH_TOKENS, max(256, usable // per_token)))


def cpu_batch_tokens(hidden: int) -> int:
    """Tokens per CPU forward batch for a model of width ``hidden``.

    :data:`CPU_BATCH_TOKENS` at width 512 and above; a narrower model gets proportionally
    more tokens (up to :data:`CPU_MAX_BATCH_TOKENS`), so that the fixed cost of a forward
    call (Python, masks, rotary tables) is spread over as much arithmetic as a wide model's
    batch. For the tiny suite's widths 32 / 64 / 128: 8192 / 4096 / 2048 tokens; a forward of
    512 tokens of the width-32 model spent most of its time outside the arithmetic.
    """
    scaled = CPU_BATCH_TOKENS * 512 // max(1, int(hidden))
    return int(min(CPU_MAX_BATCH_TOKENS, max(CPU_BATCH_TOKENS, scaled)))


def auto_batch_tokens(model: Any, device: str, lens_rows: int, chunk_rows: int) -> int:
    """Tokens per forward batch when ``batch_size`` is None.

    On CPU :func:`cpu_batch_tokens` of the model's width (measured by ``make bench``). On
    CUDA, :func:`batch_tokens_for_memory` of the free memory reported by
    ``torch.cuda.mem_get_info`` after the weights are loaded.
    """
    cfg = getattr(model.config, "text_config", None) or model.config
    d = int(getattr(cfg, "hidden_size", 1024))
    if not str(device).startswith("cuda"):
        return cpu_batch_tokens(d)
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return batch_tokens_for_memory(
        int(free),
        hidden=d,
        intermediate=int(getattr(cfg, "intermediate_size", 4 * d) or 4 * d),
        vocab=int(model.get_output_embeddings().weight.shape[0]),
        itemsize=next(model.parameters()).element_size(),
        lens_rows=lens_rows,
        chunk_rows=chunk_rows,
    )


def _batches(windows: list[Window], batch_size: int | None, max_tokens: int) -> list[list[Window]]:
    """Length-sorted batches (longest first): batch_size windows, else at most max_tokens."""
    order = sorted(windows, key=lambda w: (-(w.end - w.start), w.text, w.start))
    out: list[list[Window]] = []
    cur: list[Window] = []
    for w in order:
        if cur:
            longest = cur[0].end - cur[0].start
            n = len(cur) + 1
            full = n > batch_size if batch_size else n * longest > max_tokens
            if full:
                out.append(cur)
                cur = []
        cur.append(w)
    if cur:
        out.append(cur)
    return out


def split_head(model: Any) -> tuple[Any, Any] | None:
    """``(body, unembedding)`` when the logits are exactly ``unembedding(body(x))``, else None.

    True for the architectures the lens knows (:data:`kltools.lens.FINAL_NORMS`) with a
    plain ``nn.Linear`` head and no logit scaling or soft-capping; other models (or a
    quantized head) are scored through ``model(...).logits``.
    """
    import torch

    from kltools.lens import FINAL_NORMS

    cfg = model.config
    if getattr(cfg, "model_type", None) not in FINAL_NORMS:
        return None
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier"):
        if getattr(cfg, attr, None) not in (None, 1, 1.0):
            return None
    head = model.get_output_embeddings()
    body = getattr(model, str(getattr(model, "base_model_prefix", "")), None)
    if type(head) is not torch.nn.Linear or body is None:
        return None
    return body, head


def _lse_float32(logits: Any) -> Any:
    """``logsumexp`` of each row in float32 (the body that :func:`fused_lse` compiles)."""
    import torch

    return torch.logsumexp(logits.float(), -1)


_FUSED: dict[str, Any] = {}


#: compile the fused logsumexp only for units with at least this many logits to normalise
#: (scored tokens x vocabulary x lens layers); below it the ~4 s of compilation cost more
#: than they save (measured by ``make bench``). Above it the fused path runs in every dtype:
#: in float32 it made the Pythia-70m shape 8% faster, 10% with the lens over all layers.
COMPILE_MIN_LOGITS = 2 * 10**9


def fused_lse() -> Callable[[Any], Any] | None:
    """A compiled float32 row-``logsumexp`` of low-precision logits, or None if unavailable.

    ``torch.compile`` fuses the cast and both reductions into one pass over the logits that
    writes nothing but the result (about 4x faster on CPU than a cast plus eager log-softmax,
    measured by ``make bench``). Compiled once per process (the kernel is cached on disk by
    torch); set ``KLTOOLS_COMPILE=0`` to disable. Any failure to compile (no C++ compiler)
    falls back to the eager path silently, with the same numerics up to rounding.
    """
    import os

    if os.environ.get("KLTOOLS_COMPILE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if "cpu" not in _FUSED:
        import torch

        try:
            fn = torch.compile(_lse_float32, dynamic=True)
            probe = torch.randn(3, 7).bfloat16()
            if not torch.allclose(fn(probe), _lse_float32(probe), atol=1e-5):
                raise RuntimeError("compiled logsumexp disagrees")
            _FUSED["cpu"] = fn
        except Exception:  # noqa: BLE001 - any compiler problem means: use eager
            _FUSED["cpu"] = None
    return _FUSED["cpu"]


def token_logprobs(
    hidden: Any, targets: Any, head: Any, chunk_rows: int, fused: bool = True
) -> Any:
    """float32 ``log p(target)`` of each row of ``hidden`` through the unembedding ``head``.

    The full-vocabulary logits exist for ``chunk_rows`` rows at a time. Eager float32 path:
    log-softmax and gather, exactly the paper's arithmetic. Fused path (``fused`` on CPU, any
    dtype): the float32 log-normaliser of each row comes from the compiled logsumexp of
    :func:`fused_lse`, which reads the logits once and writes nothing else, and the target
    logit is recomputed in float32 from the same inputs (a dot product per row); in float32
    this differs from the eager path by rounding only (≤ 2e-5 nats per text on the
    Pythia-70m shape), and with low-precision weights the rounding of the logits reaches the
    result only through the log-normaliser. Low-precision weights without the fused path:
    the logits are cast to float32 and normalised eagerly.

    Parameters
    ----------
    hidden : torch.Tensor, (M, d)
        Final-normed hidden states (the inputs of the unembedding).
    targets : torch.Tensor, (M,) long
    head : torch.nn.Linear
    chunk_rows : int
        Rows per chunk (:func:`logits_chunk_rows`).
    fused : bool
        Allow the compiled logsumexp (CPU; :func:`score_texts` sets it for units of at least
        :data:`COMPILE_MIN_LOGITS` logits).

    Returns
    -------
    torch.Tensor, (M,) float32
    """
    import torch
    import torch.nn.functional as F

    weight, bias = head.weight, head.bias
    lse_fn = fused_lse() if fused and hidden.device.type == "cpu" else None
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk_rows):
        h, t = hidden[s : s + chunk_rows], targets[s : s + chunk_rows, None]
        logits = F.linear(h, weight, bias)
        if logits.dtype == torch.float32 and lse_fn is None:
            out[s : s + chunk_rows] = torch.log_softmax(logits, -1).gather(-1, t).squeeze(-1)
            continue
        if lse_fn is not None:
            lse = lse_fn(logits)
        else:
            logits = logits.float()
            lse = (logits.gather(-1, t) - torch.log_softmax(logits, -1).gather(-1, t)).squeeze(-1)
        del logits
        exact = (h.float() * weight.index_select(0, t[:, 0]).float()).sum(-1)
        if bias is not None:
            exact = exact + bias.index_select(0, t[:, 0]).float()
        out[s : s + chunk_rows] = exact - lse
    return out


def _lens_inputs(model: Any, hidden_states: Sequence[Any], layers: Sequence[int], sel: Any) -> Any:
    """Unembedding inputs of the lens layers at the selected flat positions, stacked (R*M, d)."""
    import torch

    from kltools.lens import final_norm

    last = len(hidden_states) - 1
    rows = []
    for k in layers:
        h = hidden_states[k].reshape(-1, hidden_states[k].shape[-1]).index_select(0, sel)
        rows.append(h if k == last else final_norm(model)(h))
    return torch.cat(rows)


def _batch_logprobs(
    model: Any,
    split: Any,
    ids: Any,
    attn: Any,
    targets: Any,
    sel: Any,
    lens: Any,
    chunk: int,
    fused: bool,
    times: dict[str, float] | None = None,
) -> Any:
    """(rows, M) float32 log-probabilities of the selected flat positions of one batch.

    ``times``: ``forward`` and ``normalise`` wall seconds are added to it.
    """
    from kltools.lens import lens_logits

    flat_t = targets.reshape(-1).index_select(0, sel)
    want_hs = lens is not None
    t0 = time.perf_counter()
    if split is not None:
        body, head = split
        out = body(
            input_ids=ids, attention_mask=attn, use_cache=False, output_hidden_states=want_hs
        )
        if times is not None:
            times["forward"] = times.get("forward", 0.0) + time.perf_counter() - t0
        if lens is None:
            last = out.last_hidden_state
            h = last.reshape(-1, last.shape[-1]).index_select(0, sel)
            return token_logprobs(h, flat_t, head, chunk, fused)[None]
        h = _lens_inputs(model, out.hidden_states, lens, sel)
        lp = token_logprobs(h, flat_t.repeat(len(lens)), head, chunk, fused)
        return lp.reshape(len(lens), -1)
    out = model(input_ids=ids, attention_mask=attn, use_cache=False, output_hidden_states=want_hs)
    if times is not None:
        times["forward"] = times.get("forward", 0.0) + time.perf_counter() - t0
    vocab = out.logits.shape[-1]
    rows = []
    for k in lens if lens is not None else (None,):
        if k is None:
            logits = out.logits.reshape(-1, vocab).index_select(0, sel)
        else:
            hs = [h.reshape(-1, h.shape[-1]).index_select(0, sel)[None] for h in out.hidden_states]
            own = out.logits.reshape(-1, vocab).index_select(0, sel)[None]
            logits = lens_logits(model, hs, k, own)[0]
        rows.append(_logprobs_of_logits(logits, flat_t, chunk))
    import torch

    return torch.stack(rows)


def _logprobs_of_logits(logits: Any, targets: Any, chunk_rows: int) -> Any:
    """float32 log-softmax at the targets of given (M, V) logits, chunked along rows."""
    import torch

    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    for s in range(0, logits.shape[0], chunk_rows):
        logp = torch.log_softmax(logits[s : s + chunk_rows].float(), -1)
        out[s : s + chunk_rows] = logp.gather(-1, targets[s : s + chunk_rows, None]).squeeze(-1)
    return out


def _pack(batch: list[Window], seqs: list[list[int]], pad_id: int) -> tuple[Any, ...]:
    """Right-padded ids, targets, attention mask and the flat indices of scored positions."""
    import torch

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
    sel = score.reshape(-1).nonzero().squeeze(1)
    return ids, targets, attn, sel, sel // width


def score_texts(
    loaded: Any,
    texts: Sequence[str],
    *,
    bos: str = "paper",
    layers: Any = None,
    batch_size: int | None = None,
    text_ids: Sequence[str] | None = None,
    on_progress: Callable[[float], None] | None = None,
    batch_tokens: int | None = None,
    token_ids: Sequence[Sequence[int]] | None = None,
) -> ScoreResult:
    """Summed log-likelihood of each text under a loaded model (optionally per lens layer).

    The model body runs on length-sorted, right-padded batches; the unembedding and the
    float32 log-softmax run only on the scored positions, in chunks of
    :func:`logits_chunk_rows` positions, so memory is bounded by the chunk, never by
    batch x sequence x vocabulary (see :func:`token_logprobs`).

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
        Windows per forward pass; default: :func:`auto_batch_tokens` tokens per batch.
    text_ids : sequence of str, optional
        Names of the texts for error messages.
    on_progress : callable, optional
        Called with the fraction of the work done by each batch.
    batch_tokens : int, optional
        Tokens per forward pass when ``batch_size`` is None (default
        :func:`auto_batch_tokens`); ``make bench`` sets it to rerun the earlier fixed size.
    token_ids : sequence of sequences of int, optional
        The texts' token ids under ``bos`` when the caller has them; default
        :func:`tokenise` (cached per tokenizer, text set and policy).

    Returns
    -------
    ScoreResult

    Raises
    ------
    KLToolsError
        On a NaN or infinite result, naming the model and the text.
    """
    import torch

    from kltools.models import max_length

    if bos not in BOS_POLICIES:
        raise KLToolsError(f"unknown BOS policy {bos!r}: use one of {', '.join(BOS_POLICIES)}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise KLToolsError(f"batch size {batch_size!r} must be a positive integer")
    if batch_tokens is not None and (not isinstance(batch_tokens, int) or batch_tokens < 1):
        raise KLToolsError(f"batch tokens {batch_tokens!r} must be a positive integer")
    model, tok = loaded.model, loaded.tokenizer
    label = loaded.ref.spec
    n_layer = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    lens = normalize_layers(layers, n_layer, label)
    ctx = max_length(model, tok)
    t_start = time.perf_counter()

    if token_ids is not None:
        if len(token_ids) != len(texts):
            raise KLToolsError(f"{len(token_ids)} token id lists for {len(texts)} texts")
        seqs = [list(s) for s in token_ids]
    else:
        seqs = tokenise(tok, texts, bos)
    windows = [Window(i, *w) for i, s in enumerate(seqs) for w in rolling_windows(len(s), ctx)]
    times = {"tokenise": time.perf_counter() - t_start, "forward": 0.0}
    vocab = int(model.get_output_embeddings().weight.shape[0])
    rows = len(lens) if lens is not None else 1
    sums = np.zeros((rows, len(texts)), dtype=np.float64)
    n_tokens = np.zeros(len(texts), dtype=np.int64)
    for w in windows:
        n_tokens[w.text] += w.n_score
    device = next(model.parameters()).device
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    split = split_head(model)
    fused = int(n_tokens.sum()) * vocab * rows >= COMPILE_MIN_LOGITS
    fused = fused and split is not None and device.type == "cpu" and fused_lse() is not None
    chunk = logits_chunk_rows(vocab, str(device), fused)
    max_tokens = batch_tokens or auto_batch_tokens(model, str(device), rows, chunk)
    if split is None:  # the whole (B, T, V) logits exist: bound them as well
        max_tokens = max(1, min(max_tokens, 4 * LOGITS_CHUNK_BYTES_CUDA // (4 * vocab)))
    batches = _batches(windows, batch_size, max_tokens)
    for batch in batches:
        ids, targets, attn, sel, row_of = (x.to(device) for x in _pack(batch, seqs, pad_id))
        with torch.inference_mode():
            lp = _batch_logprobs(model, split, ids, attn, targets, sel, lens, chunk, fused, times)
            per_window = torch.zeros((rows, len(batch)), dtype=torch.float64, device=device)
            per_window.index_add_(1, row_of, lp.double())
        per_window = per_window.cpu().numpy()
        for r, w in enumerate(batch):
            sums[:, w.text] += per_window[:, r]
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
    seconds = time.perf_counter() - t_start
    times["normalise"] = max(0.0, seconds - times["tokenise"] - times["forward"])
    return ScoreResult(
        loglik,
        n_tokens,
        lens,
        seconds,
        "fused_logsumexp" if fused else "log_softmax",
        times,
    )


# --------------------------------------------------------------------------- many small units
#
# A store of the book holds hundreds of small units: every checkpoint of every run, scored on
# one text set. What one unit would do on its own is done once for all of them:
# - the token ids of the text set, once per tokenizer and BOS policy (:func:`tokenise`);
# - the model object, once per architecture: a later checkpoint only reads its weights
#   (:func:`kltools.models.load_model_reusing`);
# - forward batches sized for the model (:func:`auto_batch_tokens`).


def load_unit_model(ref: Any, unit: Mapping[str, Any], device: str) -> Any:
    """The loaded model of one unit, reusing a released model of the same architecture."""
    from kltools.models import load_model, load_model_reusing

    if unit.get("quantization"):
        return load_model(
            ref, dtype=unit["dtype"], device=device, quantization=unit["quantization"]
        )
    return load_model_reusing(ref, dtype=unit["dtype"], device=device)


def release_unit_model(loaded: Any) -> None:
    """Hand a unit's model back for the next unit of the same architecture."""
    from kltools.models import release_model

    release_model(loaded)


# --------------------------------------------------------------------------- runs


def run_unit(store_path: str, unit_index: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """Score one unit and write it into its region of the store (picklable, for schedulers).

    The unit is computed only if it is not done and this process can take its lease (see
    :mod:`kltools.leases`); the lease is held, heartbeating, until the done flag is written.

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
        Summary: label, skipped (done before), busy (another writer holds the unit: its
        description), tokens, seconds, tokens_per_s, mean_loglik.
    """
    from kltools import store as kstore
    from kltools.leases import Lease

    unit = config["unit"]
    if kstore.unit_done(store_path, unit_index):
        return {"label": unit_label(unit), "skipped": True}
    lease = kstore.claim_unit(store_path, unit_index)
    if not isinstance(lease, Lease):
        return {"label": unit_label(unit), "skipped": False, "busy": lease.describe()}
    with lease:
        if kstore.unit_done(store_path, unit_index):  # finished by another writer meanwhile
            return {"label": unit_label(unit), "skipped": True}
        return _compute_unit(store_path, unit_index, config, lease)


def _compute_unit(
    store_path: str, unit_index: int, config: Mapping[str, Any], lease: Any
) -> dict[str, Any]:
    """Load, score and write one unit whose lease this process holds."""
    from transformers.utils import logging as hf_logging

    from kltools import store as kstore
    from kltools.models import ModelRef

    unit = config["unit"]
    hf_logging.disable_progress_bar()
    started = time.time()
    t_load = time.perf_counter()
    ref = ModelRef(**config["ref"])
    loaded = load_unit_model(ref, unit, config["device"])
    t_load = time.perf_counter() - t_load
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
        "normaliser": res.normaliser,
    }
    release_unit_model(loaded)
    del loaded
    if lease.lost and kstore.unit_done(store_path, unit_index):
        # this process stalled past the lease's ttl and another writer finished the unit
        return {"label": unit_label(unit), "skipped": True}
    t_write = time.perf_counter()
    kstore.write_unit(store_path, unit_index, res.loglik, res.n_tokens, meta)
    t_write = time.perf_counter() - t_write
    return {
        "label": unit_label(unit),
        "skipped": False,
        "tokens": res.total_tokens,
        "seconds": res.seconds,
        "tokens_per_s": meta["tokens_per_s"],
        "mean_loglik": float(np.mean(res.loglik)),
        "timings": {"load": t_load, **res.timings, "write": t_write},
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
    open_result: bool = True,
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
    scheduler : str or executor, optional
        None runs units in this process. A string is a Dask scheduler spec (``"local:N"``:
        N one-thread worker processes started for this run; ``"tcp://host:port"``: an
        existing Dask cluster), see :mod:`kltools.distributed`. Anything else with
        ``submit(fn, *args)`` returning futures with ``.result()`` (a ``concurrent.futures``
        executor, a Dask ``Client``) is used as given. Units run concurrently and each writes
        its own region of the store; a unit lost with its worker is recomputed by a rerun.
    progress : bool
        Show a progress bar and one summary line per unit on stderr.
    open_result : bool
        False: return None instead of opening the store (the CLI; saves importing xarray).

    Returns
    -------
    xarray.Dataset or None
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
    if isinstance(scheduler, str):
        from kltools.distributed import parse_scheduler

        parse_scheduler(scheduler)
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
    log = _Reporter(progress, 0)
    indices = kstore.prepare(store, texts, header, records, log=log.line)

    pending: list[tuple[int, dict[str, Any], Any]] = []
    finished: list[dict[str, Any]] = []
    for i, rec, ref in zip(indices, records, refs):
        if kstore.unit_done(store, i):
            finished.append(rec)
        elif all(i != p[0] for p in pending):
            pending.append((i, rec, ref))
    log.start(len(pending))
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
    try:
        if scheduler is None:
            _run_here(str_store, pending, config_of, log)
        elif isinstance(scheduler, str):
            if pending:
                from kltools.distributed import scheduler_client

                with scheduler_client(scheduler) as client:
                    _run_on(client, str_store, pending, config_of, log)
        else:
            _run_on(scheduler, str_store, pending, config_of, log)
    finally:
        log.close()
        from kltools.leases import tidy

        tidy(kstore.writers_dir(store))
    return kstore.open_store(store) if open_result else None


def _run_here(
    store: str,
    pending: Sequence[tuple[int, dict[str, Any], Any]],
    config_of: Callable[[dict[str, Any], Any], dict[str, Any]],
    log: _Reporter,
) -> None:
    """Run the pending units in this process; wait for those other writers hold."""
    todo = list(pending)
    attempt = 0
    while todo:
        busy = []
        for item in todo:
            cfg = config_of(item[1], item[2])
            cfg["on_progress"] = log.advance
            summary = run_unit(store, item[0], cfg)
            if summary.get("busy"):
                log.waiting(summary)
                busy.append(item)
            else:
                log.summary(summary)
                if summary.get("skipped"):  # finished by another writer while pending here
                    log.advance(1.0)
        todo = busy
        if todo:
            time.sleep(_wait_seconds(attempt))
            attempt += 1


def _run_on(
    executor: Any,
    store: str,
    pending: Sequence[tuple[int, dict[str, Any], Any]],
    config_of: Callable[[dict[str, Any], Any], dict[str, Any]],
    log: _Reporter,
) -> None:
    """Submit every pending unit to an executor; report each as it finishes (in order).

    Units another writer holds come back ``busy`` and are submitted again after a wait.
    """
    todo = list(pending)
    attempt = 0
    while todo:
        futures = [executor.submit(run_unit, store, i, config_of(r, f)) for i, r, f in todo]
        busy = []
        for item, fut in zip(todo, futures):
            summary = fut.result()
            if summary.get("busy"):
                log.waiting(summary)
                busy.append(item)
            else:
                log.summary(summary)
                log.advance(1.0)
        todo = busy
        if todo:
            time.sleep(_wait_seconds(attempt))
            attempt += 1


def _wait_seconds(attempt: int) -> float:
    """Poll interval while other writers hold units (0.2 s, growing to 2 s)."""
    return min(2.0, 0.2 * 1.5**attempt)


class _Reporter:
    """tqdm bar over units (with ETA) plus one summary line per unit, on stderr."""

    def __init__(self, enabled: bool, n_units: int) -> None:
        self.enabled = enabled
        self.bar = None
        self.waited: set[str] = set()
        self.start(n_units)

    def start(self, n_units: int) -> None:
        """Show the bar over ``n_units`` units (none when 0)."""
        if self.enabled and n_units and self.bar is None:
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

    def waiting(self, s: Mapping[str, Any]) -> None:
        """Say once per unit that another writer holds it."""
        if s["label"] not in self.waited:
            self.waited.add(s["label"])
            self.line(f"kltools: wait {s['label']} (another writer holds it: {s['busy']})")

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
