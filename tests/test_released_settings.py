"""Every distribution of the released profile against an independent computation.

A synthetic release in the authors' exact layout, with the real one's quirks (an anomalous
``1b@116000``, ``None`` entries, seeds 3 and 4 present, ``2.8b``'s early checkpoints byte
copies of its last one, a type with a single candidate, merges in ``sibling_info``), goes
through the released source (import, stores, settings). The reference below reads the
release's files directly and computes each distribution from the paper's definitions (the
authors' code as the paper describes it), with none of kltools' settings code:

- KL(a, b) = Var(ℓ_a − ℓ_b) / 2 / (B̄ ln 2), population variance, B̄ the mean UTF-8 bytes of the
  texts in use;
- pretraining: the main sizes and the seed runs (seeds 3 and 4 left out) preprocessed apart,
  without ``1b@116000``: clip at the group's 2 % quantile, score each text by its largest jump
  between consecutive available post-warm-up checkpoints, drop the top 3 %, B̄ of the kept
  texts; Early / Later the first / last k one-interval pairs per size from the warm-up end;
  Seed and Size every pair at the last step;
- quantization: each model's row of the earlier paper's matrix against its 8-/4-bit vector,
  all texts;
- fine-tuning: every typed single-parent edge; Intra-type and Random drawn as the authors
  draw them (ids are rows of the model list, candidates a set of ids, ``random.Random(0)``
  re-seeded per type with two or more candidates, Random continuing the last generator);
- layers: every adjacent pair of sorted hidden-state indices of every model.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from kltools.released.synthetic import write_synthetic_release

SIZES = ("410m", "1b", "1.4b", "2.8b", "6.9b")
SEEDS = ("410m-seed1", "410m-seed2", "410m-seed5", "410m-seed6", "410m-seed7", "410m-seed8",
         "410m-seed9")  # fmt: skip
K, AFTER = 5, 2000


def _kl(a: np.ndarray, b: np.ndarray, mean_bytes: float) -> float:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.mean((d - d.mean()) ** 2) / 2 / (mean_bytes * math.log(2)))


def _group(pre: dict, runs: tuple[str, ...], n_bytes: np.ndarray):
    """The paper's preprocessing of one group: (vectors[run][step], kept text mask, B̄)."""
    vec = {r: {t: np.asarray(v, np.float64) for t, v in pre[r].items()
               if v is not None and (r, t) != ("1b", 116000)} for r in runs}  # fmt: skip
    clip = np.quantile(np.concatenate([v for per in vec.values() for v in per.values()]), 0.02)
    vec = {r: {t: np.maximum(v, clip) for t, v in per.items()} for r, per in vec.items()}
    score = np.zeros(len(n_bytes))
    for per in vec.values():
        steps = sorted(t for t in per if t >= AFTER)
        for t0, t1 in zip(steps, steps[1:]):
            score = np.maximum(score, np.abs(per[t1] - per[t0]))
    drop = np.argsort(-score, kind="stable")[: int(round(0.03 * len(n_bytes)))]
    keep = np.ones(len(n_bytes), bool)
    keep[drop] = False
    return {r: {t: v[keep] for t, v in per.items()} for r, per in vec.items()}, n_bytes[keep].mean()


def _authors_draws(edges: list[tuple[str, str, str]], order: list[str]):
    """Intra-type and Random pairs as the authors draw them (ids: rows of ``order``)."""
    ids = {m: i for i, m in enumerate(order)}
    name = {i: m for m, i in ids.items()}
    intra, pooled, rng = [], [], random.Random(0)
    for typ in dict.fromkeys(t for _, _, t in edges):
        mine = [(c, p) for c, p, t in edges if t == typ]
        cands = list({x for c, p in mine for x in (ids[c], ids[p])})
        if len(cands) < 2:
            continue
        pooled += cands
        rng = random.Random(0)
        intra += [tuple(name[i] for i in rng.sample(cands, 2)) for _ in mine]
    union = list(set(pooled))
    rand = [tuple(name[i] for i in rng.sample(union, 2)) for _ in edges]
    return intra, rand


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory):
    """The synthetic release, its contents, and the released settings reading it."""
    from kltools.config import Settings
    from kltools.settings import clear_caches

    root = tmp_path_factory.mktemp("released-settings")
    contents = write_synthetic_release(root / "release")
    mp = pytest.MonkeyPatch()
    mp.setenv("KLTOOLS_RELEASED_DIR", str(root / "release"))
    mp.setenv("KLTOOLS_DATA_ROOT", str(root / "data"))
    clear_caches()
    s = Settings(
        profile="released", n_texts=10000, dtype="float16", batch_size=1, n_boot=20,
        after_step=AFTER, early_later_k=K, quant_schemes=("bnb-int8", "bnb-fp4"),
        floor_settings=(),
    )  # fmt: skip
    yield s, contents
    clear_caches()
    mp.undo()


def _ours(pairs) -> np.ndarray:
    return np.sort(pairs.frame.kl.to_numpy(np.float64))


def test_pretraining_settings_are_the_definitions(released) -> None:
    from kltools import settings as S

    s, c = released
    n_bytes = np.asarray([len(t.encode("utf-8")) for t in c["texts"]], np.float64)
    sizes, mb_sizes = _group(c["pretraining"], SIZES, n_bytes)
    seeds, mb_seeds = _group(c["pretraining"], SEEDS, n_bytes)
    size = [_kl(sizes[a][143000], sizes[b][143000], mb_sizes)
            for i, a in enumerate(SIZES) for b in SIZES[i + 1:]]  # fmt: skip
    seed = [_kl(seeds[a][143000], seeds[b][143000], mb_seeds)
            for i, a in enumerate(SEEDS) for b in SEEDS[i + 1:]]  # fmt: skip
    early, later = [], []
    for r in SIZES:
        steps = sorted(sizes[r])
        one = [(a, b) for a, b in zip(steps, steps[1:]) if b - a == 1000 and a >= AFTER]
        kls = [_kl(sizes[r][a], sizes[r][b], mb_sizes) for a, b in one]
        early += kls[:K]
        later += kls[-K:]
    np.testing.assert_allclose(_ours(S.size(s)), np.sort(size), rtol=1e-9)
    np.testing.assert_allclose(_ours(S.seed(s)), np.sort(seed), rtol=1e-9)
    np.testing.assert_allclose(_ours(S.early(s)), np.sort(early), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(_ours(S.later(s)), np.sort(later), rtol=1e-9)
    assert 0.0 in _ours(S.early(s))  # 2.8b's copies: a pair of copies stays, with a KL of 0


def test_quantization_finetuning_and_layers_are_the_definitions(released) -> None:
    from kltools import settings as S

    s, c = released
    n_bytes = np.asarray([len(t.encode("utf-8")) for t in c["texts"]], np.float64)
    mb = n_bytes.mean()
    order = list(c["model_list"])
    # the stores hold float32 (the book's format): the earlier paper's rows are rounded to it
    row = {m: np.asarray(c["oyama"][i], np.float32) for i, m in enumerate(order)}
    exact = {m: np.asarray(c["oyama"][i], np.float64) for i, m in enumerate(order)}
    for bits, setting in ((8, S.eight_bit), (4, S.four_bit)):
        copies = c["quant8"] if bits == 8 else c["quant4"]
        ref = [_kl(row[m], v, mb) for m, v in copies.items() if v is not None]
        np.testing.assert_allclose(_ours(setting(s)), np.sort(ref), rtol=1e-9)
        unrounded = [_kl(exact[m], v, mb) for m, v in copies.items() if v is not None]
        np.testing.assert_allclose(_ours(setting(s)), np.sort(unrounded), rtol=1e-4)

    parents = {m: p for m, p in c["siblings"].items()}
    single = {m: (p if isinstance(p, str) else p[0] if isinstance(p, list) and len(p) == 1
                  else None) for m, p in parents.items()}  # fmt: skip
    edges = [(m, single[m], c["types"][m]) for m in order
             if single.get(m) in set(order) and m in c["types"]]  # fmt: skip
    ft = [_kl(row[p], row[ch], mb) for ch, p, _ in edges]
    np.testing.assert_allclose(_ours(S.ft(s)), np.sort(ft), rtol=1e-9)
    intra, rand = _authors_draws(edges, order)
    np.testing.assert_allclose(
        _ours(S.intra_type(s)), np.sort([_kl(row[a], row[b], mb) for a, b in intra]), rtol=1e-9
    )
    np.testing.assert_allclose(
        _ours(S.random_pairs(s)), np.sort([_kl(row[a], row[b], mb) for a, b in rand]), rtol=1e-9
    )

    layer = [_kl(per[k], per[k + 1], mb) for per in c["layers"].values() if per is not None
             for k in sorted(per)[:-1]]  # fmt: skip
    np.testing.assert_allclose(_ours(S.layer(s)), np.sort(layer), rtol=1e-9)


def test_released_profile_runs_no_model(released) -> None:
    """The Monte-Carlo check, the floor and the copies' verification say why they are not run."""
    from kltools import claims, validation
    from kltools.settings import numerics, quantization

    s, _ = released
    mc = validation.estimate_vs_mc(s)
    assert not len(mc) and "no model is run" in mc.attrs["not_run"]
    verdict = claims.estimate_matches_mc_corpus(mc)
    assert verdict.verdict == "not tested" and "no model is run" in verdict.reason
    assert not len(numerics.floor(s)) and not len(numerics.bf16(s))
    assert "Not verified here" in quantization.verification_report(quantization.verification(s))
