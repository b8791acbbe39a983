"""A synthetic release in exactly the authors' layout, with the quirks of the real one.

For tests, CI (``kltools released synthetic``: the released book built without the real
files) and the benchmark (the real shape). ``release_contents()`` returns the contents (the
keyword arguments of :func:`kltools.released.write_release`);
``write_synthetic_release(directory)`` writes them and returns them. 40 texts and 12 models by
default, so tests are fast; its numbers are random walks, not measurements. Quirks:

- ``1b@116000`` is anomalous (far from its neighbours), as the paper's excluded checkpoint;
- ``None`` entries: ``410m-seed9@40000``, ``410m-seed6@88000``, ``410m-seed2@111000`` (the
  checkpoints the hub lacks), one 4-bit copy and one layer model;
- all nine seeds, 3 and 4 included (the paper drops them in its analysis, not the release);
- ``2.8b``'s checkpoints 0 … 53000 are byte copies of its last one (as the hub served them);
- a type with a single model (``gptj``), merges (a list of two parents), a one-element list
  parent and a plain string parent in ``sibling_info``;
- layer models of two depths (4 and 6 layers), a text with multi-byte characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kltools.released.layout import RUNS, SIZES, STEPS, WINDOW

__all__ = ["release_contents", "write_synthetic_release"]

MISSING_CHECKPOINTS = {("410m-seed9", 40000), ("410m-seed6", 88000), ("410m-seed2", 111000)}
COPY_RUN, COPY_UNTIL = "2.8b", 53000
ANOMALOUS = ("1b", 116000)

_WORDS = (
    "the model scores each text under its own weights and a checkpoint later in training "
    "moves less than one early in training; naïve café smörgåsbord 東京 データ"
).split()


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        words = rng.choice(_WORDS, size=int(rng.integers(60, 160)))
        out.append(" ".join(words))
    return out


#: a subset of the steps for tests that import every checkpoint (each unit costs a store write)
IMPORT_STEPS: tuple[int, ...] = (
    0, 1, 2, 512, 1000, 2000, 3000, 12000, 40000, 53000, 54000, 88000, 111000, 115000,
    116000, 117000, 142000, 143000,
)  # fmt: skip


def release_contents(
    n_texts: int = 40,
    n_models: int = 12,
    seed: int = 0,
    steps: tuple[int, ...] = STEPS,
    depths: tuple[int, ...] = (4, 6),
) -> dict[str, Any]:
    """The contents of a synthetic release (the arguments of ``write_release``); ``steps``: the
    checkpoints the pretraining file holds (default all 154); ``depths``: the layer models'
    block counts, in turn (the real release: about 24–40). At least 12 models."""
    if n_models < 12:
        raise ValueError("a synthetic release needs at least 12 models (its quirks use them)")
    rng = np.random.default_rng(seed)
    texts = _texts(rng, n_texts)
    n_bytes = np.asarray([len(t.encode("utf-8")) for t in texts], dtype=np.float64)
    base = -0.9 * n_bytes  # a text's log-likelihood scales with its length
    pretraining: dict[str, dict[int, np.ndarray | None]] = {}
    for r, run in enumerate(RUNS):
        walk = base + rng.normal(0, 5, n_texts) * (1 + r % 5)
        per: dict[int, np.ndarray | None] = {}
        for step in steps:
            walk = walk + rng.normal(0, 20.0 / (1 + step / 1000), n_texts)
            per[step] = (walk + 0.5 * np.log1p(step)).astype(np.float32)
        for missing_run, step in MISSING_CHECKPOINTS:
            if missing_run == run and step in per:
                per[step] = None
        if run == ANOMALOUS[0] and ANOMALOUS[1] in per:
            per[ANOMALOUS[1]] = (per[ANOMALOUS[1]] - 300 * rng.random(n_texts)).astype(np.float32)
        if run == COPY_RUN:
            last = per[steps[-1]]
            for step in steps:
                if step <= COPY_UNTIL:
                    per[step] = last.copy()
        pretraining[run] = per
    families = ["mistral", "llama-2", "llama-3", "gptj", "others", "mistral", "llama-2",
                "llama-3", "mistral", "others", "llama-2", "mistral"]  # fmt: skip
    model_list = [f"org{i % 3}/model-{i}" for i in range(n_models)]
    types = {m: families[i % len(families)] for i, m in enumerate(model_list)}
    types[model_list[3]] = "gptj"  # the only gptj model
    siblings: dict[str, Any] = dict.fromkeys(model_list)
    siblings[model_list[5]] = model_list[0]  # a plain parent
    siblings[model_list[8]] = [model_list[0]]  # a one-element list
    siblings[model_list[6]] = model_list[1]
    siblings[model_list[10]] = [model_list[1], model_list[6]]  # a merge
    siblings[model_list[11]] = [model_list[0], model_list[5], model_list[8]]  # a merge
    oyama = np.stack(
        [base + rng.normal(0, 30, n_texts) for _ in model_list]
    )  # float64, as a matrix of any float type may come
    quant_models = model_list[:50]
    quant8 = {
        m: (oyama[i] + rng.normal(0, 0.5, n_texts)).astype(np.float32)
        for i, m in enumerate(quant_models)
    }
    quant4 = {
        m: (oyama[i] + rng.normal(0, 3.0, n_texts)).astype(np.float32)
        for i, m in enumerate(quant_models)
    }
    quant4[quant_models[2]] = None
    layers: dict[str, dict[int, np.ndarray] | None] = {}
    for i, m in enumerate(quant_models):
        depth = depths[i % len(depths)]
        per_layer = {
            k: (oyama[i] - 40.0 * (depth - k) + rng.normal(0, 2, n_texts)).astype(np.float32)
            for k in range(depth)
        }
        per_layer[depth] = oyama[i].astype(np.float32)  # the model's own output
        layers[m] = per_layer
    layers[quant_models[1]] = None
    weight = {}
    n = len(STEPS)
    for s, size in enumerate(SIZES):
        d = np.zeros((n, n), dtype=np.float64)
        for i in range(n - WINDOW):  # complete windows only, as the release
            for j in range(i + 1, i + WINDOW + 1):
                d[i, j] = (1 + s) * (j - i) ** 1.3 / (1 + i) + 1e-3
        weight[size] = d
    colors = {
        t: [0.1 * k, 0.5, 1.0 - 0.1 * k, 1.0]
        for k, t in enumerate(["mistral", "llama-2", "llama-3", "gptj", "others"])
    }
    return dict(
        texts=texts,
        pretraining=pretraining,
        oyama=oyama,
        quant8=quant8,
        quant4=quant4,
        layers=layers,
        weight_distances=weight,
        model_list=model_list,
        types=types,
        siblings=siblings,
        colors=colors,
    )


def write_synthetic_release(directory: Path, manifest: bool = True, **kw: Any) -> dict[str, Any]:
    """Write a synthetic release into ``directory`` (:func:`release_contents`'s keywords);
    return its contents."""
    from kltools.released import write_release

    contents = release_contents(**kw)
    write_release(directory, manifest=manifest, **contents)
    return contents
