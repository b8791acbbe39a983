"""Tests of kltools.montecarlo against an exact KL computed by enumerating all sequences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kltools.errors import KLToolsError
from kltools.montecarlo import mc_kl, sequence_logprob

LENGTH = 4


@pytest.fixture(scope="module")
def char_models(make_tiny_neox):
    """Two tiny random GPT-NeoX models over a 6-token vocabulary, different seeds."""
    big = {"initializer_range": 0.4}  # peaked distributions, so the KL is far from zero
    p_dir = make_tiny_neox(11, tokenizer="chars", **big)
    q_dir = make_tiny_neox(12, tokenizer="chars", **big)
    p = AutoModelForCausalLM.from_pretrained(p_dir).eval()
    q = AutoModelForCausalLM.from_pretrained(q_dir).eval()
    return p, q, AutoTokenizer.from_pretrained(p_dir), p_dir, q_dir


@torch.inference_mode()
def exact_logprobs(model, eos: int, vocab: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """log p of every sequence of ``length`` tokens after EOS, by brute-force enumeration.

    Independent of kltools: one forward pass over all V**L sequences, float64 log-softmax.
    """
    seqs = torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)
    ids = torch.cat([torch.full((seqs.shape[0], 1), eos), seqs], dim=1)
    logits = model(input_ids=ids).logits[:, :-1].double()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, seqs.unsqueeze(-1)).squeeze(-1)
    return seqs.numpy(), logp.sum(dim=1).numpy()


def test_fixture_tokenizer_is_tiny(char_models) -> None:
    p, _, tok, _, _ = char_models
    assert len(tok) == p.config.vocab_size == 6
    assert tok.eos_token_id == 0
    assert tok.decode(tok("ab cd")["input_ids"]) == "ab cd"


def test_mc_matches_exact_enumeration(char_models) -> None:
    p, q, tok, _, _ = char_models
    V, eos = p.config.vocab_size, tok.eos_token_id
    seqs, lp = exact_logprobs(p, eos, V, LENGTH)
    _, lq = exact_logprobs(q, eos, V, LENGTH)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-9)
    exact = float(np.sum(np.exp(lp) * (lp - lq)))
    assert exact > 0.05

    res = mc_kl(p, q, tok, n_samples=3000, length=LENGTH, seed=0, batch_size=500)
    assert res.n == 3000 and res.log_ratio.shape == (3000,) and res.tokens.shape == (3000, LENGTH)
    assert abs(res.mean - exact) < 4 * res.se, (res.mean, exact, res.se)
    assert res.se < 0.2 * exact

    # per-sample log-ratios equal the enumerated table at the sampled sequences
    index = {tuple(s): i for i, s in enumerate(seqs.tolist())}
    rows = [index[tuple(t)] for t in res.tokens.tolist()]
    assert np.allclose(res.log_ratio, (lp - lq)[rows], atol=1e-4)

    # sampled sequence frequencies follow p: compare the most likely sequences
    counts = np.bincount(rows, minlength=len(seqs)) / res.n
    top = np.argsort(-lp)[:5]
    se_freq = np.sqrt(np.exp(lp[top]) * (1 - np.exp(lp[top])) / res.n)
    assert np.all(np.abs(counts[top] - np.exp(lp[top])) < 5 * se_freq)

    # bytes: every non-EOS char token decodes to one byte
    n_bytes = (res.tokens != eos).sum(axis=1).mean()
    assert res.mean_bytes == pytest.approx(n_bytes)
    assert res.bits_per_byte == pytest.approx(res.mean / (n_bytes * math.log(2)))


def test_mc_is_deterministic_and_zero_for_same_model(char_models) -> None:
    p, q, tok, p_dir, q_dir = char_models
    a = mc_kl(p, q, tok, n_samples=64, length=3, seed=5, batch_size=16)
    b = mc_kl(p_dir, q_dir, p_dir, n_samples=64, length=3, seed=5, batch_size=16)
    assert np.array_equal(a.tokens, b.tokens)
    assert np.allclose(a.log_ratio, b.log_ratio)
    c = mc_kl(p, q, tok, n_samples=64, length=3, seed=6, batch_size=16)
    assert not np.array_equal(a.tokens, c.tokens)
    same = mc_kl(p, p, tok, n_samples=32, length=3, seed=0)
    assert np.all(same.log_ratio == 0.0) and same.mean == 0.0


def test_sequence_logprob_float32_softmax_float64_sum(char_models) -> None:
    p, _, tok, _, _ = char_models
    seqs, lp = exact_logprobs(p, tok.eos_token_id, p.config.vocab_size, 3)
    got = sequence_logprob(p, torch.tensor(seqs[:50]), tok.eos_token_id, batch_size=7)
    assert got.dtype == np.float64
    assert np.allclose(got, lp[:50], atol=1e-5)


def test_mc_on_bpe_models(make_tiny_neox, tiny_neox) -> None:
    other = make_tiny_neox(1)
    res = mc_kl(tiny_neox, other, tiny_neox, n_samples=24, length=8, seed=0, batch_size=8)
    assert res.mean_bytes > 0
    assert np.isfinite(res.log_ratio).all()
    assert res.se_bits_per_byte == pytest.approx(res.se / (res.mean_bytes * math.log(2)))


def test_mc_user_errors(char_models, tiny_neox) -> None:
    p, q, tok, _, _ = char_models
    with pytest.raises(KLToolsError, match="n_samples"):
        mc_kl(p, q, tok, n_samples=1, length=2, seed=0)
    with pytest.raises(KLToolsError, match="length"):
        mc_kl(p, q, tok, n_samples=4, length=0, seed=0)
    with pytest.raises(KLToolsError, match="vocabularies differ"):
        mc_kl(p, tiny_neox, tok, n_samples=4, length=2, seed=0)


def _perturbed(model, eps: float, seed: int = 0):
    """A copy of ``model`` with N(0, eps^2) noise added to every parameter."""
    import copy

    q = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in q.parameters():
            param.add_(eps * torch.randn(param.shape, generator=gen))
    return q


def test_variance_estimator_converges_to_exact_kl_for_nearby_models(char_models) -> None:
    """The paper's estimator Var_p(l_p - l_q)/2 approximates KL(p||q) to second order: its
    relative error shrinks with the perturbation (exact enumeration), and on texts sampled
    from p the kltools estimate agrees with the exact KL."""
    from kltools.kl import kl_between

    p, _, tok, _, _ = char_models
    V, eos = p.config.vocab_size, tok.eos_token_id
    _, lp = exact_logprobs(p, eos, V, LENGTH)
    w = np.exp(lp)
    rel_err = {}
    for eps in (0.01, 0.001):
        _, lq = exact_logprobs(_perturbed(p, eps), eos, V, LENGTH)
        d = lp - lq
        exact = float(np.sum(w * d))
        half_var = float(np.sum(w * (d - exact) ** 2)) / 2
        rel_err[eps] = abs(half_var / exact - 1)
    assert rel_err[0.001] < 0.03
    assert rel_err[0.001] < rel_err[0.01] / 5

    q = _perturbed(p, 0.003)
    _, lq = exact_logprobs(q, eos, V, LENGTH)
    exact = float(np.sum(w * (lp - lq)))
    res = mc_kl(p, q, tok, n_samples=4000, length=LENGTH, seed=1, batch_size=1000)
    lp_s = sequence_logprob(p, torch.tensor(res.tokens), eos, batch_size=1000)
    lq_s = sequence_logprob(q, torch.tensor(res.tokens), eos, batch_size=1000)
    assert kl_between(lp_s, lq_s, units="nats") == pytest.approx(exact, rel=0.15)
    assert abs(res.mean - exact) < 4 * res.se


def test_cached_sampler_draws_what_the_full_prefix_sampler_draws(tiny_neox) -> None:
    """KV-cached ancestral sampling = re-running the whole prefix at every step (same RNG)."""
    from kltools.montecarlo import sample_sequences

    model = AutoModelForCausalLM.from_pretrained(tiny_neox).eval()

    @torch.inference_mode()
    def full_prefix(n: int, length: int, gen: torch.Generator) -> torch.Tensor:
        ids = torch.zeros((n, 1), dtype=torch.long)
        for _ in range(length):
            probs = torch.softmax(model(input_ids=ids).logits[:, -1].float(), dim=-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], dim=1)
        return ids[:, 1:]

    got = sample_sequences(
        model, 0, n=6, length=24, generator=torch.Generator().manual_seed(7), batch_size=6
    )
    want = full_prefix(6, 24, torch.Generator().manual_seed(7))
    assert torch.equal(got, want)


def _result(log_ratio: np.ndarray, mean_bytes: float = 100.0):
    from kltools.montecarlo import MCResult

    n = log_ratio.size
    return MCResult(
        mean=float(log_ratio.mean()),
        se=float(log_ratio.std(ddof=1) / math.sqrt(n)),
        n=n,
        mean_bytes=mean_bytes,
        bits_per_byte=float(log_ratio.mean()) / (mean_bytes * math.log(2)),
        log_ratio=log_ratio,
        tokens=np.zeros((n, 1), dtype=np.int64),
    )


def test_half_variance_equals_mean_for_gaussian_log_ratios() -> None:
    """For Gaussian r with E[exp(-r)] = 1 (mean = var/2) the two agree within the bootstrap error;
    for a skewed r with the same normalisation they do not."""
    from kltools.montecarlo import half_variance_vs_mean

    rng = np.random.default_rng(0)
    sigma2 = 3.0
    gauss = [_result(rng.normal(sigma2 / 2, math.sqrt(sigma2), 4000), b) for b in (90.0, 110.0)]
    out = half_variance_vs_mean(gauss, n_boot=200, seed=1)
    assert abs(out["z"]) < 3
    assert out["ratio"] == pytest.approx(1.0, abs=4 * out["ratio_se"])
    assert out["mc"] == pytest.approx(np.mean([g.bits_per_byte for g in gauss]))
    assert out["ratio_se"] == pytest.approx(out["half_var_se"] / out["mc"], rel=0.5)

    # r = log p - log q for p = Exp(1), q = Exp(rate 3) evaluated under p: E_p[exp(-r)] = 1 holds
    # but r is skewed: KL = log(1/3) + 3 - 1 = 0.901, Var/2 = 2 * Var(x) = 2
    x = rng.exponential(1.0, 20000)
    skewed = _result(-x - (np.log(3.0) - 3.0 * x))
    out = half_variance_vs_mean([skewed], n_boot=200, seed=1)
    assert np.mean(np.exp(-skewed.log_ratio)) == pytest.approx(1.0, abs=0.05)
    assert out["ratio"] == pytest.approx(2.0 / (3.0 - 1.0 - math.log(3.0)), rel=0.1)
    assert out["z"] > 5

    with pytest.raises(KLToolsError, match="at least one"):
        half_variance_vs_mean([], n_boot=10, seed=0)
