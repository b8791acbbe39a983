"""The layout of the authors' release, as data, and a typed reader that checks it.

The release is the folder ``kl-scale/data`` of ``shimo-lab/modelmap`` (Kishino et al.,
Findings of ACL 2026). :func:`open_release` gives a :class:`Release` with one method per file;
each reads its file once (pickles through :func:`kltools.safepickle.safe_load`), checks it
against the layout and against ``texts.json`` / ``model_info/model_list.json`` (never against
fixed counts, so a smaller release in the same layout reads the same way), and raises one
:class:`~kltools.errors.KLToolsError` line naming the file and what is wrong.

Files (``PATH`` constants below):

- ``texts.json``: the list of evaluation texts (strings);
- ``logp/pretraining_logp.pkl``: ``{run: {step: float vector | None}}``, runs :data:`RUNS`,
  steps :data:`STEPS`; ``None``: not computed;
- ``logp/oyama2025_logp.pkl``: 2-D float array, one row per entry of ``model_list.json``;
- ``logp/{8,4}bit_quantization_logp.pkl``: ``{hub id: vector | None}`` for the first
  :data:`N_QUANT_MODELS` models of the list;
- ``logp/layer_logp.pkl``: ``{hub id: {hidden-state index 0..L: vector} | None}``, the same
  models; index 0 is the embedding output, index L the model's own logits;
- ``weight_distance/weight_distance.pkl``: ``{size: float (154, 154)}``; ``[i, j]`` for
  ``j = i+1 … i+10`` holds the squared weight distance of steps ``i`` and ``j``, all else 0;
- ``model_info/{model_list,modelname2type,sibling_info,type2color}.json``: the models, their
  types, their parent(s) (``null``, an id, or a list: a merge when longer than one), type colours;
- ``tsne/*.pkl``: the authors' cached 2-D coordinates (listed for the manifest, not read).

Every vector holds summed log-likelihoods in nats, one per text of ``texts.json`` in order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kltools.errors import KLToolsError
from kltools.sources.pythia import pythia_steps

__all__ = [
    "ALL_FILES",
    "COLORS",
    "LAYERS",
    "MODEL_LIST",
    "N_QUANT_MODELS",
    "OYAMA",
    "PRETRAINING",
    "QUANTIZATION",
    "RUNS",
    "SEED_RUNS",
    "SIBLINGS",
    "SIZES",
    "STEPS",
    "TEXTS",
    "TSNE",
    "TYPES",
    "WEIGHT_DISTANCE",
    "WINDOW",
    "Release",
    "open_release",
    "text_ids",
]

TEXTS = "texts.json"
PRETRAINING = "logp/pretraining_logp.pkl"
OYAMA = "logp/oyama2025_logp.pkl"
#: bits -> file of the bitsandbytes copies (8: LLM.int8(), 4: FP4)
QUANTIZATION: dict[int, str] = {
    8: "logp/8bit_quantization_logp.pkl",
    4: "logp/4bit_quantization_logp.pkl",
}
LAYERS = "logp/layer_logp.pkl"
WEIGHT_DISTANCE = "weight_distance/weight_distance.pkl"
MODEL_LIST = "model_info/model_list.json"
TYPES = "model_info/modelname2type.json"
SIBLINGS = "model_info/sibling_info.json"
COLORS = "model_info/type2color.json"
TSNE: tuple[str, ...] = (
    "tsne/8bit_quantization_tsne.pkl",
    "tsne/ft_tsne.pkl",
    "tsne/layer_tsne.pkl",
    "tsne/pretraining_tsne_2d.pkl",
)
#: every file of the release, in download order (small files first)
ALL_FILES: tuple[str, ...] = (
    MODEL_LIST,
    TYPES,
    SIBLINGS,
    COLORS,
    TEXTS,
    WEIGHT_DISTANCE,
    QUANTIZATION[8],
    QUANTIZATION[4],
    LAYERS,
    OYAMA,
    PRETRAINING,
    *TSNE,
)

#: the main Pythia sizes (keys of the pretraining and weight-distance files)
SIZES: tuple[str, ...] = ("410m", "1b", "1.4b", "2.8b", "6.9b")
#: the PolyPythia runs of 410m (all nine; the paper drops seeds 3 and 4 in its analysis)
SEED_RUNS: tuple[str, ...] = tuple(f"410m-seed{k}" for k in range(1, 10))
#: the run keys of ``pretraining_logp.pkl``
RUNS: tuple[str, ...] = ("410m", *SEED_RUNS, "1b", "1.4b", "2.8b", "6.9b")
#: the 154 checkpoint steps (rows and columns of the weight-distance matrices)
STEPS: tuple[int, ...] = pythia_steps()
#: the quantization and layer files cover the first this many models of ``model_list.json``
N_QUANT_MODELS = 50
#: each weight-distance row holds the next this many checkpoints
WINDOW = 10


def text_ids(n: int) -> tuple[str, ...]:
    """The ids the release's texts get in a store (``t00000`` …): it ships strings only."""
    return tuple(f"t{i:05d}" for i in range(n))


def _err(path: str, message: str) -> KLToolsError:
    return KLToolsError(f"{path}: {message}")


def _type_name(obj: Any) -> str:
    return "None" if obj is None else type(obj).__name__


class Release:
    """A release directory: one reading, checking method per file (each read once)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"Release({str(self.directory)!r})"

    def path(self, name: str) -> Path:
        """The file ``name`` (a path of the layout) in this release."""
        return self.directory / name

    def _once(self, key: Any, read: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def _json(self, name: str) -> Any:
        p = self.path(name)
        if not p.is_file():
            raise _err(name, f"missing from {self.directory}; fetch the release again")
        try:
            return json.loads(p.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _err(name, f"is not UTF-8 JSON ({exc})") from None

    def _pickle(self, name: str) -> Any:
        from kltools.safepickle import safe_load

        p = self.path(name)
        if not p.is_file():
            raise _err(name, f"missing from {self.directory}; fetch the release again")
        return safe_load(p, what=name)

    # ------------------------------------------------------------------ texts and models

    def texts(self) -> tuple[str, ...]:
        """The evaluation texts, in the order of every vector."""

        def read() -> tuple[str, ...]:
            obj = self._json(TEXTS)
            if not isinstance(obj, list) or not obj:
                raise _err(TEXTS, f"holds a {_type_name(obj)}, not a non-empty list of strings")
            for i, t in enumerate(obj):
                if not isinstance(t, str) or not t:
                    raise _err(TEXTS, f"entry {i} is {_type_name(t)} {t!r:.40}, not a text")
            return tuple(obj)

        return self._once("texts", read)

    def n_texts(self) -> int:
        return len(self.texts())

    def n_bytes(self) -> np.ndarray:
        """UTF-8 bytes of each text."""
        return self._once(
            "n_bytes",
            lambda: np.fromiter(
                (len(t.encode("utf-8")) for t in self.texts()),
                dtype=np.int64,
                count=self.n_texts(),
            ),
        )

    def mean_bytes(self) -> float:
        """B̄: the mean UTF-8 bytes of the texts of ``texts.json`` (the bits/byte unit)."""
        return float(np.mean(self.n_bytes(), dtype=np.float64))

    def textset(self) -> Any:
        """The texts as a :class:`kltools.texts.TextSet` (ids :func:`text_ids`)."""
        from kltools.texts import TextSet

        texts = self.texts()
        return self._once(
            "textset", lambda: TextSet("kl-scale texts.json", text_ids(len(texts)), texts)
        )

    def model_list(self) -> tuple[str, ...]:
        """The hub ids of ``model_list.json``, in the order of the oyama rows."""

        def read() -> tuple[str, ...]:
            obj = self._json(MODEL_LIST)
            if not isinstance(obj, list) or not obj:
                raise _err(MODEL_LIST, f"holds a {_type_name(obj)}, not a non-empty list")
            for i, m in enumerate(obj):
                if not isinstance(m, str) or not m:
                    raise _err(MODEL_LIST, f"entry {i} is {_type_name(m)}, not a hub id")
            if len(set(obj)) != len(obj):
                dup = next(m for m in obj if obj.count(m) > 1)
                raise _err(MODEL_LIST, f"lists {dup} more than once")
            return tuple(obj)

        return self._once("model_list", read)

    def quant_models(self) -> tuple[str, ...]:
        """The models the quantization and layer files may hold: the first 50 of the list."""
        return self.model_list()[:N_QUANT_MODELS]

    def _per_model(self, name: str, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise _err(name, f"holds a {_type_name(obj)}, not a mapping of models")
        listed = self.model_list()
        missing = [m for m in listed if m not in obj]
        extra = [m for m in obj if m not in set(listed)]
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has {extra[0]}"
            n = len(missing) + len(extra)
            raise _err(
                name,
                f"{what}, which {MODEL_LIST} {'lists' if missing else 'does not list'} "
                f"({n} such model{'s' if n > 1 else ''}); the files are of different releases",
            )
        return obj

    def types(self) -> dict[str, str]:
        """model -> type (``modelname2type.json``)."""

        def read() -> dict[str, str]:
            obj = self._per_model(TYPES, self._json(TYPES))
            for m, t in obj.items():
                if not isinstance(t, str) or not t:
                    raise _err(TYPES, f"type of {m} is {_type_name(t)}, not a name")
            return {m: obj[m] for m in self.model_list()}

        return self._once("types", read)

    def siblings(self) -> dict[str, tuple[str, ...]]:
        """model -> its parents (empty: none; one: fine-tuned from it; more: a merge)."""

        def read() -> dict[str, tuple[str, ...]]:
            obj = self._per_model(SIBLINGS, self._json(SIBLINGS))
            out: dict[str, tuple[str, ...]] = {}
            for m in self.model_list():
                p = obj[m]
                if p is None:
                    out[m] = ()
                elif isinstance(p, str) and p:
                    out[m] = (p,)
                elif isinstance(p, list) and p and all(isinstance(x, str) and x for x in p):
                    out[m] = tuple(p)
                else:
                    raise _err(SIBLINGS, f"parent of {m} is {p!r:.60}, not null, an id or ids")
            return out

        return self._once("siblings", read)

    def colors(self) -> dict[str, tuple[float, float, float, float]]:
        """type -> RGBA colour, each channel in [0, 1]."""

        def read() -> dict[str, tuple[float, float, float, float]]:
            obj = self._json(COLORS)
            if not isinstance(obj, dict):
                raise _err(COLORS, f"holds a {_type_name(obj)}, not a mapping of types")
            out = {}
            for t, c in obj.items():
                ok = isinstance(c, list) and len(c) == 4
                ok = ok and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1
                    for x in c
                )
                if not ok:
                    raise _err(COLORS, f"colour of {t} is {c!r:.60}, not 4 numbers in [0, 1]")
                out[t] = (float(c[0]), float(c[1]), float(c[2]), float(c[3]))
            return out

        return self._once("colors", read)

    # ------------------------------------------------------------------ vectors

    def _vector(self, name: str, label: str, v: Any) -> np.ndarray:
        """One text-aligned float vector, checked (returned as float32, as the release has it)."""
        if not isinstance(v, np.ndarray):
            raise _err(name, f"vector for {label} is a {_type_name(v)}, not a numpy array")
        if v.dtype.kind != "f":
            raise _err(name, f"vector for {label} has dtype {v.dtype}, not float")
        n = self.n_texts()
        if v.ndim != 1 or v.shape[0] != n:
            got = f"{v.shape[0]} values" if v.ndim == 1 else f"shape {v.shape}"
            raise _err(name, f"vector for {label} has {got}, {TEXTS} has {n}")
        bad = int(np.count_nonzero(~np.isfinite(v)))
        if bad:
            raise _err(name, f"vector for {label} has {bad} non-finite values")
        return v.astype(np.float32, copy=False)

    def pretraining(self) -> dict[str, dict[int, np.ndarray | None]]:
        """``{run: {step: vector | None}}`` (runs of :data:`RUNS`, steps of :data:`STEPS`)."""

        def read() -> dict[str, dict[int, np.ndarray | None]]:
            obj = self._pickle(PRETRAINING)
            if not isinstance(obj, dict) or not obj:
                raise _err(PRETRAINING, f"holds a {_type_name(obj)}, not a mapping of runs")
            steps = set(STEPS)
            out: dict[str, dict[int, np.ndarray | None]] = {}
            for run in obj:
                if run not in RUNS:
                    raise _err(PRETRAINING, f"has run {run!r}, not one of {', '.join(RUNS)}")
                per = obj[run]
                if not isinstance(per, dict):
                    raise _err(PRETRAINING, f"run {run} holds a {_type_name(per)}, not steps")
                got: dict[int, np.ndarray | None] = {}
                for step, v in per.items():
                    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
                        raise _err(PRETRAINING, f"run {run} has step key {step!r}, not an int")
                    if int(step) not in steps:
                        raise _err(PRETRAINING, f"run {run} has step {step}, not a Pythia step")
                    label = f"{run}@{int(step)}"
                    got[int(step)] = None if v is None else self._vector(PRETRAINING, label, v)
                out[run] = dict(sorted(got.items()))
            return {r: out[r] for r in RUNS if r in out}

        return self._once("pretraining", read)

    def oyama(self) -> np.ndarray:
        """The (models, texts) matrix of ``oyama2025_logp.pkl``; row i is model_list[i]."""

        def read() -> np.ndarray:
            obj = self._pickle(OYAMA)
            if not isinstance(obj, np.ndarray) or obj.dtype.kind != "f":
                what = f"{obj.dtype} array" if isinstance(obj, np.ndarray) else _type_name(obj)
                raise _err(OYAMA, f"holds a {what}, not a float matrix")
            want = (len(self.model_list()), self.n_texts())
            if obj.shape != want:
                raise _err(
                    OYAMA,
                    f"has shape {obj.shape}; {MODEL_LIST} has {want[0]} models and {TEXTS} "
                    f"{want[1]} texts",
                )
            bad = np.flatnonzero(~np.isfinite(obj).all(axis=1))
            if bad.size:
                raise _err(
                    OYAMA,
                    f"row of {self.model_list()[bad[0]]} has non-finite values "
                    f"({bad.size} such rows)",
                )
            return obj

        return self._once("oyama", read)

    def _per_quant_model(self, name: str, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise _err(name, f"holds a {_type_name(obj)}, not a mapping of models")
        allowed = set(self.quant_models())
        for m in obj:
            if m not in allowed:
                raise _err(
                    name, f"has {m!r}, not one of the first {N_QUANT_MODELS} models of {MODEL_LIST}"
                )
        return obj

    def quantization(self, bits: int) -> dict[str, np.ndarray | None]:
        """``{hub id: vector | None}`` of the 8-bit (LLM.int8()) or 4-bit (FP4) copies."""
        if bits not in QUANTIZATION:
            raise KLToolsError(f"the release has 8- and 4-bit copies, not {bits}-bit")
        name = QUANTIZATION[bits]

        def read() -> dict[str, np.ndarray | None]:
            obj = self._per_quant_model(name, self._pickle(name))
            return {
                m: None if obj[m] is None else self._vector(name, m, obj[m])
                for m in self.quant_models()
                if m in obj
            }

        return self._once(("quantization", bits), read)

    def layers(self) -> dict[str, dict[int, np.ndarray] | None]:
        """``{hub id: {hidden-state index 0..L: vector} | None}``."""

        def read() -> dict[str, dict[int, np.ndarray] | None]:
            obj = self._per_quant_model(LAYERS, self._pickle(LAYERS))
            out: dict[str, dict[int, np.ndarray] | None] = {}
            for m in self.quant_models():
                if m not in obj:
                    continue
                per = obj[m]
                if per is None:
                    out[m] = None
                    continue
                if not isinstance(per, dict) or not per:
                    raise _err(LAYERS, f"{m} holds a {_type_name(per)}, not a mapping of layers")
                keys = sorted(per)
                if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in keys):
                    raise _err(LAYERS, f"{m} has a layer key that is not an int: {keys[:3]}")
                if [int(k) for k in keys] != list(range(len(keys))):
                    raise _err(LAYERS, f"{m} has layers {keys[:4]}…, not 0 … L without gaps")
                out[m] = {int(k): self._vector(LAYERS, f"{m} layer {k}", per[k]) for k in keys}
            return out

        return self._once("layers", read)

    def weight_distances(self) -> dict[str, np.ndarray]:
        """``{size: (154, 154) float64}``: ``[i, j]`` (j = i+1 … i+10) squared weight distance."""

        def read() -> dict[str, np.ndarray]:
            obj = self._pickle(WEIGHT_DISTANCE)
            if not isinstance(obj, dict):
                raise _err(WEIGHT_DISTANCE, f"holds a {_type_name(obj)}, not a mapping of sizes")
            n = len(STEPS)
            i, j = np.indices((n, n))
            band = (j > i) & (j <= i + WINDOW)
            out = {}
            for size, d in obj.items():
                if size not in SIZES:
                    raise _err(WEIGHT_DISTANCE, f"has size {size!r}, not one of {SIZES}")
                if not isinstance(d, np.ndarray) or d.dtype.kind != "f" or d.shape != (n, n):
                    what = getattr(d, "shape", _type_name(d))
                    raise _err(WEIGHT_DISTANCE, f"{size} is {what}, not a float ({n}, {n}) matrix")
                d = d.astype(np.float64, copy=False)
                if not np.isfinite(d).all() or (d < 0).any():
                    raise _err(WEIGHT_DISTANCE, f"{size} has negative or non-finite distances")
                if np.count_nonzero(d[~band]):
                    raise _err(
                        WEIGHT_DISTANCE,
                        f"{size} has values outside [i, i+1 … i+{WINDOW}]; not the release's layout",
                    )
                out[size] = d
            return {s: out[s] for s in SIZES if s in out}

        return self._once("weight_distances", read)


def open_release(directory: Any, *, verify: bool = True) -> Release:
    """The release in ``directory``, its manifest checked (or written, if it has none).

    Parameters
    ----------
    directory : path
        A folder in the release layout (what :func:`kltools.released.fetch` writes).
    verify : bool
        Check every file against ``MANIFEST.json`` first (size, sha256, no Git LFS pointer);
        a directory without one gets one written from its files (said on stderr). False: only
        the reading checks of each method.
    """
    from kltools.released.manifest import ensure_manifest

    d = Path(directory)
    if not d.is_dir():
        raise KLToolsError(f"no release directory {d}; run kltools released fetch --to {d}")
    if verify:
        ensure_manifest(d)
    return Release(d)
