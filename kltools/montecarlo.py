"""Monte-Carlo KL by sampling texts from a model: an independent check of the estimator.

``KL(p || q) = E_{x ~ p}[log p(x) - log q(x)]``. :func:`mc_kl` draws token sequences
``x = (y_1, ..., y_L)`` from ``p`` by ancestral sampling (temperature 1, no top-k/top-p), each
started from the EOS token as the document start, and averages the log-ratio summed over the
``L`` sampled tokens. The result is the KL between the two models' distributions over
length-``L`` continuations of a document start, in nats per sequence; dividing by the mean
UTF-8 bytes of the decoded samples times ``ln 2`` puts it in bits/byte, the scale of
:func:`kltools.kl.kl_matrix`.

The scoring loop is written here on the model's forward pass (independent of
:mod:`kltools.extraction`): log-softmax in float32, sums in float64.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kltools.errors import KLToolsError

__all__ = ["MCResult", "mc_kl", "sample_sequences", "sequence_logprob"]


@dataclass(frozen=True)
class MCResult:
    """A Monte-Carlo KL estimate.

    Attributes
    ----------
    mean : float
        Estimate of KL(p || q) in nats per sequence.
    se : float
        Its standard error, ``std(log_ratio, ddof=1) / sqrt(n)``.
    n : int
        Number of samples.
    mean_bytes : float
        Mean UTF-8 byte length of the decoded samples (special tokens skipped).
    bits_per_byte : float
        ``mean / (mean_bytes ln 2)``.
    log_ratio : numpy.ndarray
        Per-sample ``log p(x) - log q(x)`` (float64, nats).
    tokens : numpy.ndarray
        The sampled token ids, shape (n, length) (without the EOS start).
    """

    mean: float
    se: float
    n: int
    mean_bytes: float
    bits_per_byte: float
    log_ratio: np.ndarray
    tokens: np.ndarray

    @property
    def se_bits_per_byte(self) -> float:
        """Standard error on the bits/byte scale (B̄ taken as fixed)."""
        return self.se / (self.mean_bytes * math.log(2.0))


def _load(model: Any, device: str) -> torch.nn.Module:
    """A model object as is, or a model directory loaded with transformers."""
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        except OSError as e:
            raise KLToolsError(f"cannot load model from {model}: {e}") from e
        return model.to(device).eval()
    if not isinstance(model, torch.nn.Module):
        raise KLToolsError(f"expected a causal LM or a model directory, got {type(model).__name__}")
    return model.eval()


def _load_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer)
    return tokenizer


def _start_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise KLToolsError("the tokenizer has no EOS token to start the samples from")
    return int(eos)


@torch.inference_mode()
def sample_sequences(
    model: torch.nn.Module,
    start_id: int,
    *,
    n: int,
    length: int,
    generator: torch.Generator,
    batch_size: int = 64,
    device: str = "cpu",
) -> torch.Tensor:
    """Ancestral samples of ``length`` tokens after ``start_id`` (temperature 1).

    Each step runs the full prefix through the model (no cache: simple and exact; the cost is
    quadratic in ``length``, fine for the short sequences used here).

    Returns
    -------
    torch.Tensor
        Token ids, shape (n, length), on the CPU; the start token is not included.
    """
    out = []
    for s in range(0, n, batch_size):
        b = min(batch_size, n - s)
        ids = torch.full((b, 1), start_id, dtype=torch.long, device=device)
        for _ in range(length):
            logits = model(input_ids=ids).logits[:, -1, :].float()
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, nxt], dim=1)
        out.append(ids[:, 1:].cpu())
    return torch.cat(out, dim=0)


@torch.inference_mode()
def sequence_logprob(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    start_id: int,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """``log p(y_1..y_L | start)`` for each row of ``tokens``: float32 log-softmax, float64 sum.

    Parameters
    ----------
    tokens : torch.Tensor, shape (n, L)
        Token ids (without the start token).

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    res = []
    for s in range(0, tokens.shape[0], batch_size):
        y = tokens[s : s + batch_size].to(device)
        start = torch.full((y.shape[0], 1), start_id, dtype=torch.long, device=device)
        ids = torch.cat([start, y], dim=1)
        logits = model(input_ids=ids[:, :-1]).logits.float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        res.append(logp.double().sum(dim=1).cpu().numpy())
    return np.concatenate(res)


def mc_kl(
    p_model: Any,
    q_model: Any,
    tokenizer: Any,
    *,
    n_samples: int,
    length: int,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> MCResult:
    """Monte-Carlo estimate of KL(p || q) over length-``length`` samples from ``p``.

    Parameters
    ----------
    p_model, q_model : torch.nn.Module or path
        Causal LMs sharing ``tokenizer`` (``forward(input_ids=...)`` returning ``.logits``);
        a path is loaded with ``AutoModelForCausalLM`` in float32 onto ``device``.
    tokenizer : tokenizer or path
        Supplies the EOS start token and decodes samples for ``mean_bytes``.
    n_samples : int
        Sequences drawn (at least 2).
    length : int
        Tokens per sequence (at least 1; at most the models' context minus one).
    seed : int
        Seeds the ``torch.Generator`` used for sampling (same seed and batch size: same
        samples).
    batch_size : int
    device : str

    Returns
    -------
    MCResult
    """
    for name, value, low in (("n_samples", n_samples, 2), ("length", length, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise KLToolsError(f"mc_kl: {name} must be an integer >= {low}, not {value!r}")
    if batch_size < 1:
        raise KLToolsError(f"mc_kl: batch_size must be >= 1, not {batch_size}")
    p = _load(p_model, device)
    q = _load(q_model, device)
    tok = _load_tokenizer(tokenizer)
    if p.config.vocab_size != q.config.vocab_size:
        raise KLToolsError(
            f"mc_kl: the models' vocabularies differ ({p.config.vocab_size} vs "
            f"{q.config.vocab_size}); both must share the tokenizer"
        )
    start = _start_id(tok)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    tokens = sample_sequences(
        p, start, n=n_samples, length=length, generator=gen, batch_size=batch_size, device=device
    )
    lp = sequence_logprob(p, tokens, start, batch_size=batch_size, device=device)
    lq = sequence_logprob(q, tokens, start, batch_size=batch_size, device=device)
    ratio = lp - lq
    texts = tok.batch_decode(tokens.tolist(), skip_special_tokens=True)
    mean_bytes = float(np.mean([len(t.encode("utf-8")) for t in texts]))
    mean = float(ratio.mean())
    se = float(ratio.std(ddof=1) / math.sqrt(n_samples))
    bpb = mean / (mean_bytes * math.log(2.0)) if mean_bytes > 0 else float("nan")
    return MCResult(
        mean=mean,
        se=se,
        n=n_samples,
        mean_bytes=mean_bytes,
        bits_per_byte=bpb,
        log_ratio=ratio,
        tokens=tokens.numpy(),
    )
