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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kltools.errors import KLToolsError
from kltools.kl import half_variance, nats_to_bpb

__all__ = ["MCResult", "half_variance_vs_mean", "mc_kl", "sample_sequences", "sequence_logprob"]


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
        return float(nats_to_bpb(self.se, self.mean_bytes))


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

    Incremental decoding with the model's key/value cache (transformers 5 ``cache=``), so the cost is
    linear in ``length``; the next-token distribution is a float32 softmax of the last logits.
    The samples only have to come from the model: :func:`sequence_logprob` rescores them with
    a full forward pass, so the Monte-Carlo log-ratios never depend on the cache.

    Returns
    -------
    torch.Tensor
        Token ids, shape (n, length), on the CPU; the start token is not included.
    """
    out = []
    for s in range(0, n, batch_size):
        b = min(batch_size, n - s)
        nxt = torch.full((b, 1), start_id, dtype=torch.long, device=device)
        cache = None
        toks = []
        for _ in range(length):
            res = model(input_ids=nxt, cache=cache, use_cache=True)
            cache = res.cache
            probs = torch.softmax(res.logits[:, -1, :].float(), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            toks.append(nxt)
        out.append(torch.cat(toks, dim=1).cpu())
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
    bpb = float(nats_to_bpb(mean, mean_bytes)) if mean_bytes > 0 else float("nan")
    return MCResult(
        mean=mean,
        se=se,
        n=n_samples,
        mean_bytes=mean_bytes,
        bits_per_byte=bpb,
        log_ratio=ratio,
        tokens=tokens.numpy(),
    )


def half_variance_vs_mean(
    results: Sequence[MCResult], *, n_boot: int, seed: int
) -> dict[str, float]:
    """The estimator ``Var/2`` beside the Monte-Carlo mean on the same samples, with errors.

    For samples ``x ~ p`` the log-ratio ``r = log p(x) - log q(x)`` has mean KL(p‖q); if ``r``
    is Gaussian, ``E_p[exp(-r)] = 1`` forces ``mean = Var/2`` exactly, so the paper's
    estimator (half the variance over a text set) equals the KL when the texts come from the
    model. Departures measure the non-Gaussian part (skewness and beyond) of ``r``.

    Each result is one direction (KL(p‖q) from samples of p, KL(q‖p) from samples of q); both
    quantities are put in bits/byte with that direction's mean sample bytes and averaged over
    the directions (the symmetrised KL). Errors come from a joint bootstrap that resamples the
    samples of each direction (mean and variance from the same resample), so their
    correlation is kept.

    Returns
    -------
    dict
        ``mc`` and ``half_var`` (bits/byte), their bootstrap ``mc_se`` and ``half_var_se``,
        ``ratio`` (half_var / mc), ``ratio_se``, ``diff_se`` (s.e. of half_var − mc) and
        ``z`` ((half_var − mc) / diff_se).
    """
    if not results:
        raise KLToolsError("half_variance_vs_mean: give at least one MCResult")
    if n_boot < 2:
        raise KLToolsError(f"half_variance_vs_mean: n_boot must be >= 2, not {n_boot}")
    rng = np.random.default_rng(seed)
    scales = [float(nats_to_bpb(1.0, r.mean_bytes)) for r in results]

    def both(rs: Sequence[np.ndarray]) -> tuple[float, float]:
        m = np.mean([x.mean() * k for x, k in zip(rs, scales)])
        v = np.mean([half_variance(x) * k for x, k in zip(rs, scales)])
        return float(m), float(v)

    mc, hv = both([r.log_ratio for r in results])
    boot = np.array(
        [
            both([r.log_ratio[rng.integers(0, r.n, r.n)] for r in results])
            for _ in range(int(n_boot))
        ]
    )
    ratio = hv / mc if mc > 0 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot[:, 1] / boot[:, 0]
    diff_se = float(np.std(boot[:, 1] - boot[:, 0], ddof=1))
    return {
        "mc": mc,
        "half_var": hv,
        "mc_se": float(np.std(boot[:, 0], ddof=1)),
        "half_var_se": float(np.std(boot[:, 1], ddof=1)),
        "ratio": ratio,
        "ratio_se": float(np.std(ratios[np.isfinite(ratios)], ddof=1)),
        "diff_se": diff_se,
        "z": (hv - mc) / diff_se if diff_se > 0 else float("nan"),
    }
