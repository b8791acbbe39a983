"""Each Fig. 3 setting against an independent computation from the paper's definition.

The stores here are constructed (numbers chosen so that the competing definitions give
different answers: joint vs separate preprocessing of sizes and seeds, Layer with or without
the 0 → 1 pair, pooled vs single quantization schemes, pair draws with vs without
replacement). The library reads them through its store functions, which the tests point at
the constructed data; the expected values are computed here, from the definitions, with numpy.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kltools import settings as S
from kltools.config import Settings
from kltools.settings import finetuning, layers, pretraining, quantization, stores

N = 40
STEPS = [0, 1, 2, 4, 8, 16, 24, 32, 40, 48, 56]
RNG = np.random.default_rng(7)
BYTES = RNG.integers(200, 900, size=N)
TEXT_IDS = [f"t{i}" for i in range(N)]


def half_var_bpb(a: np.ndarray, b: np.ndarray, text_bytes: np.ndarray) -> float:
    """The paper's estimate, written out: Var(a - b) / 2 / (B̄ ln 2), population variance."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(np.mean((d - d.mean()) ** 2) / 2 / (np.mean(text_bytes) * math.log(2)))


def preprocess(ll: np.ndarray, steps: list[int], after: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's cleaning of one group, written out: (clipped kept values, kept positions)."""
    clip = np.nanquantile(ll, 0.02)
    x = np.where(ll < clip, clip, ll)
    post = [i for i, t in enumerate(steps) if t >= after]
    jumps = np.abs(np.diff(x[:, post, :], axis=1))
    score = np.nanmax(jumps.reshape(-1, ll.shape[-1]), axis=0)
    n_drop = round(0.03 * ll.shape[-1])
    drop = np.argsort(-score, kind="stable")[:n_drop]
    keep = np.setdiff1d(np.arange(ll.shape[-1]), drop)
    return x[..., keep], keep


def _pretraining_dataset() -> xr.Dataset:
    """Two main sizes and two seed runs; the seeds have a jumpy text of their own, the main
    size ``b`` a missing checkpoint (step 24, as Pythia-1B's excluded one)."""
    models = ["m-a", "m-b", "m-a-seed1", "m-a-seed2"]
    base = RNG.normal(-300, 40, size=N)
    ll = np.empty((4, len(STEPS), N))
    for i, _ in enumerate(models):
        drift = RNG.normal(0, 1, size=N)
        for j, t in enumerate(STEPS):
            ll[i, j] = base * (1 + 0.3 * i) + drift * np.sqrt(t + 1) + RNG.normal(0, 0.5, size=N)
    ll[2:, 8:, 5] += 400.0  # a text that jumps in the seed runs only
    ll[:2, 7:, 9] += 300.0  # and one that jumps in the main sizes only
    ll[1, STEPS.index(24)] = np.nan
    return xr.Dataset(
        {"loglik": (("model", "step", "text"), ll.astype(np.float32))},
        coords={
            "model": models,
            "step": STEPS,
            "text": TEXT_IDS,
            "text_bytes": ("text", BYTES),
            "size": ("model", ["a", "b", "a", "a"]),
            "seed": ("model", [0, 0, 1, 2]),
            "n_params": ("model", [10, 20, 10, 10]),
            "in_sizes": ("model", [True, True, False, False]),
            "in_seeds": ("model", [False, False, True, True]),
            "spec_base": ("model", models),
        },
        attrs={"bos_policy": "paper"},
    )


class _Texts:
    ids = tuple(TEXT_IDS)
    texts = tuple("x" * int(b) for b in BYTES)
    name = "constructed"
    mean_bytes = float(BYTES.mean())


@pytest.fixture
def constructed(monkeypatch: pytest.MonkeyPatch):
    """Point the store functions at constructed data; clear the per-settings caches."""
    ds = _pretraining_dataset()
    S.clear_caches()
    monkeypatch.setattr(stores, "analysis_texts", lambda s: _Texts())
    monkeypatch.setattr(pretraining, "pretraining_store", lambda s: ds)
    yield ds
    S.clear_caches()


S_PRE = Settings(profile="smoke", n_texts=N, n_boot=10, after_step=8, early_later_k=2)


def test_size_and_seed_are_preprocessed_separately(constructed: xr.Dataset) -> None:
    ll = constructed.loglik.values.astype(float)
    last = STEPS.index(56)
    got_size = S.size(S_PRE).frame
    got_seed = S.seed(S_PRE).frame
    for rows, name, expected_n in ((slice(0, 2), "size", 1), (slice(2, 4), "seed", 1)):
        x, keep = preprocess(ll[rows], STEPS, 8)
        want = half_var_bpb(x[0, last], x[1, last], BYTES[keep])
        got = (got_size if name == "size" else got_seed).kl.to_numpy()
        assert len(got) == expected_n
        assert got[0] == pytest.approx(want, rel=1e-9)
        # the joint preprocessing (one clip, one set of dropped texts) gives another number
        xj, keep_j = preprocess(ll, STEPS, 8)
        joint = half_var_bpb(xj[rows][0, last], xj[rows][1, last], BYTES[keep_j])
        assert abs(joint - want) > 1e-6 * want
    assert got_size.n_texts.iloc[0] == N - 1 and got_size.a.iloc[0] == "m-a@step56"


def test_early_later_are_one_interval_pairs_of_the_main_sizes(constructed: xr.Dataset) -> None:
    ll = constructed.loglik.values.astype(float)
    x, keep = preprocess(ll[:2], STEPS, 8)
    want: dict[str, list[tuple[str, float]]] = {"Early": [], "Later": []}
    for i, m in enumerate(["m-a", "m-b"]):
        have = [j for j, t in enumerate(STEPS) if np.isfinite(ll[i, j]).all()]
        pairs = [
            (j0, j1)
            for j0, j1 in zip(have, have[1:])
            if STEPS[j1] - STEPS[j0] == 8 and STEPS[j0] >= 8
        ]
        for name, chosen in (("Early", pairs[:2]), ("Later", pairs[-2:])):
            want[name] += [
                (f"{m}@step{STEPS[j0]}", half_var_bpb(x[i, j0], x[i, j1], BYTES[keep]))
                for j0, j1 in chosen
            ]
    for name, fn in (("Early", S.early), ("Later", S.later)):
        got = fn(S_PRE).frame
        assert list(got.a) == [a for a, _ in want[name]]
        np.testing.assert_allclose(got.kl, [v for _, v in want[name]], rtol=1e-9)
    # the missing checkpoint removes its pairs: m-b has no 16→24, 24→32 and no 16→32 either
    early_b = S.early(S_PRE).frame.query("model == 'm-b'")
    assert list(zip(early_b.step, early_b.step_next)) == [(8, 16), (32, 40)]
    assert not S.early(S_PRE).frame.model.str.contains("seed").any()


def test_layer_takes_every_adjacent_index_from_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    ll = rng.normal(-200, 30, size=(2, 3, N)).cumsum(axis=1)  # two 2-block models: layers 0, 1, 2
    ds = xr.Dataset(
        {"loglik": (("model", "layer", "text"), ll)},
        coords={
            "model": ["x", "y"],
            "layer": [0, 1, 2],
            "text": TEXT_IDS,
            "text_bytes": ("text", BYTES),
        },
    )
    monkeypatch.setattr(stores, "analysis_texts", lambda s: _Texts())
    monkeypatch.setattr(layers, "layer_stores", lambda s: (ds,))
    monkeypatch.setattr("kltools.sources.layer_models", lambda s: {"x": "x@step1", "y": "y@step1"})
    S.clear_caches()
    got = S.layer(S_PRE).frame
    want = [half_var_bpb(ll[m, k], ll[m, k + 1], BYTES) for m in range(2) for k in range(2)]
    assert list(zip(got.layer_a, got.layer_b)) == [(0, 1), (1, 2), (0, 1), (1, 2)]
    np.testing.assert_allclose(got.kl, want, rtol=1e-9)
    S.clear_caches()


def test_eight_and_four_bit_are_one_scheme_each(monkeypatch: pytest.MonkeyPatch) -> None:
    variants = ["full", "bnb-int8", "bnb-fp4", "bnb-nf4", "rtn4g32", "rtn8"]
    rng = np.random.default_rng(5)
    base = rng.normal(-250, 30, size=N)
    noise = {
        "full": 0,
        "bnb-int8": 0.5,
        "bnb-fp4": 2.0,
        "bnb-nf4": 1.0,
        "rtn4g32": 4.0,
        "rtn8": 0.2,
    }
    ll = np.stack([[base + rng.normal(0, noise[v] + 1e-9, size=N) for v in variants]])
    ds = xr.Dataset(
        {"loglik": (("model", "variant", "text"), ll)},
        coords={
            "model": ["q"],
            "variant": variants,
            "text": TEXT_IDS,
            "text_bytes": ("text", BYTES),
        },
    )
    cat = pd.DataFrame(
        [
            dict(
                model="q",
                base_spec="q",
                variant=v,
                family="",
                bits=0,
                spec=f"q-{v}",
                quantization=None,
                usable=True,
                note="",
            )
            for v in variants[1:]
        ]
    )
    monkeypatch.setattr(stores, "analysis_texts", lambda s: _Texts())
    monkeypatch.setattr(quantization, "quantization_store", lambda s: ds)
    monkeypatch.setattr("kltools.sources.quant_catalogue", lambda s: cat)
    S.clear_caches()
    eight, four = S.eight_bit(S_PRE).frame, S.four_bit(S_PRE).frame
    assert list(eight.b) == ["q-bnb-int8"] and list(four.b) == ["q-bnb-fp4"]
    assert eight.kl.iloc[0] == pytest.approx(half_var_bpb(ll[0, 0], ll[0, 1], BYTES), rel=1e-9)
    assert four.kl.iloc[0] == pytest.approx(half_var_bpb(ll[0, 0], ll[0, 2], BYTES), rel=1e-9)
    labels = set(quantization.quantization(S_PRE).frame.setting)
    assert labels == {"8-bit", "4-bit", "4-bit NF4 (bnb)", "4-bit RTN g32", "8-bit RTN per channel"}
    S.clear_caches()


def _paper_draws(lin: pd.DataFrame, seed: int) -> list[tuple[str, str, str]]:
    """The authors' sampling, written out: models numbered after the 1018 rows of their model
    list (in order of first appearance, child then parent); per type (first appearance)
    Random(seed), sample(candidates, 2) with candidates a set of the ids of the type's
    children and parents; Random from the set of all candidates, continuing the generator."""
    edges = [(c, p, t) for c, p, t in zip(lin.model, lin.parent, lin.type) if isinstance(p, str)]
    out = [("FT", p, c) for c, p, _ in edges]
    ids: dict[str, int] = {}
    for c, p, _ in edges:
        for m in (c, p):
            ids.setdefault(m, 1018 + len(ids))
    name = {i: m for m, i in ids.items()}
    gen, pooled = random.Random(seed), []
    for typ in dict.fromkeys(t for _, _, t in edges):
        mine = [(c, p) for c, p, t in edges if t == typ]
        candidates = list({ids[m] for pair in mine for m in pair})
        pooled += candidates
        gen = random.Random(seed)
        out += [("Intra-type", *map(name.get, gen.sample(candidates, 2))) for _ in mine]
    everyone = list(set(pooled))
    out += [("Random", *map(name.get, gen.sample(everyone, 2))) for _ in edges]
    return out


def test_finetuning_draws_follow_the_authors_sampling() -> None:
    lin = pd.DataFrame(
        {
            "model": ["A", "A1", "A2", "A3", "B", "B1", "B2"],
            "parent": [None, "A", "A", "A1", None, "B", "B"],
            "type": ["a"] * 4 + ["b"] * 3,
        }
    )
    got = [(st, a, b) for st, _, a, b in finetuning.draw_pairs(lin, 0)]
    assert got == _paper_draws(lin, 0)
    intra_b = [p for p in got if p[0] == "Intra-type"][3:]  # type a has 3 FT pairs, b has 2
    random_pairs = [tuple(sorted(p[1:])) for p in got if p[0] == "Random"]
    every_pair = [tuple(sorted(p[1:])) for p in got if p[0] != "FT"]
    assert len(set(every_pair)) < len(every_pair)  # with replacement: some pair drawn twice
    assert len(random_pairs) == 5 and len(intra_b) == 2


def test_scale_gathers_every_setting_in_order() -> None:
    assert S.PAPER_SETTINGS == (
        "Later",
        "Early",
        "Seed",
        "Size",
        "8-bit",
        "4-bit",
        "FT",
        "Intra-type",
        "Random",
        "Layer",
    )
    assert S.ORDER == (*S.PAPER_SETTINGS, "Floor", "bf16", "fp16")
    assert S.GROUPS["numerics"] == ("Floor", "bf16", "fp16")
    assert sum(len(v) for v in S.GROUPS.values()) == len(S.ORDER)
