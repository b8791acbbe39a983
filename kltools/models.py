"""Finding and loading language models: local directories, the offline suite, the hub.

A model *spec* is one string, in one of three forms, tried in this order:

1. a **local directory** (``/path/to/model``), optionally ``/path/to/run@step64`` where the
   revision names a subfolder (a run folder holding ``stepN`` checkpoints). A run folder
   without ``config.json`` and without a revision means its final checkpoint (see below);
2. a **suite name** ``NAME`` or ``NAME@stepS``, looked up in every profile folder under
   :func:`kltools.paths.suite_root` (names are unique across profiles). ``NAME@stepS`` is
   ``<suite>/<profile>/NAME/stepS``; ``NAME`` alone is the run's final checkpoint
   (``run.json`` field ``final_step`` if present, else the largest ``stepN`` folder); a variant
   folder holding ``config.json`` directly (a fine-tuned or quantized copy) is itself;
3. a **hub id** ``org/name`` or ``org/name@rev`` (e.g. ``EleutherAI/pythia-410m@step1000``).
   The revision is resolved to a commit sha, recorded in the store's provenance. With
   ``HF_HUB_OFFLINE=1`` a hub id is accepted only if it is already in the local cache.

:func:`load_model` returns a :class:`LoadedModel` in eval mode, in the requested dtype, on the
requested device, optionally quantized with bitsandbytes (``int8`` = LLM.int8(), ``fp4`` and
``nf4`` = 4-bit). Every problem of the user's making is a one-line
:class:`~kltools.errors.KLToolsError`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kltools.errors import KLToolsError
from kltools.paths import suite_root

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
QUANTIZATIONS = (None, "int8", "fp4", "nf4")

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STEP_DIR = re.compile(r"^step(\d+)$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model spec.

    Attributes
    ----------
    spec : str
        The string the user gave.
    kind : {"local", "suite", "hub"}
        Where the model lives.
    path_or_id : str
        The absolute checkpoint directory (local, suite) or the hub repository id.
    revision : str or None
        The revision the user asked for (``step64``, a branch, a tag or a commit), if any.
    commit : str or None
        The resolved hub commit sha (hub models only).
    """

    spec: str
    kind: Literal["local", "suite", "hub"]
    path_or_id: str
    revision: str | None = None
    commit: str | None = None

    @property
    def label(self) -> str:
        """A short human label: the spec."""
        return self.spec


@dataclass
class LoadedModel:
    """A model ready to score texts.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The causal LM, in eval mode.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    ref : ModelRef
        Where it came from.
    info : dict
        ``dtype``, ``device``, ``quantization``, ``source`` (path or hub id), ``commit`` (hub
        commit sha or None), ``n_layers``, ``max_length``.
    """

    model: Any
    tokenizer: Any
    ref: ModelRef
    info: dict[str, Any] = field(default_factory=dict)


def _split_rev(spec: str) -> tuple[str, str | None]:
    """Split ``base@rev``; a spec without ``@`` has no revision."""
    if "@" in spec:
        base, rev = spec.rsplit("@", 1)
        if not base or not rev:
            raise KLToolsError(f"model spec {spec!r} is malformed: use NAME, NAME@REV or a path")
        return base, rev
    return spec, None


def _step_dirs(run_dir: Path) -> dict[int, Path]:
    """The ``stepN`` checkpoint subfolders of a run folder, by step."""
    out: dict[int, Path] = {}
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            m = _STEP_DIR.match(child.name)
            if m and child.is_dir():
                out[int(m.group(1))] = child
    return out


def _final_checkpoint(run_dir: Path, spec: str) -> Path:
    """The final checkpoint of a run folder (``run.json`` ``final_step``, else largest step)."""
    if (run_dir / "config.json").is_file():
        return run_dir
    steps = _step_dirs(run_dir)
    meta = run_dir / "run.json"
    if meta.is_file():
        try:
            final = json.loads(meta.read_text()).get("final_step")
        except (OSError, json.JSONDecodeError) as exc:
            raise KLToolsError(f"cannot read {meta}: {exc}; fix or remove it") from exc
        if final is not None:
            if int(final) not in steps:
                raise KLToolsError(
                    f"model {spec!r}: run.json says final_step={final} but {run_dir} has no "
                    f"step{final} folder; rebuild the suite"
                )
            return steps[int(final)]
    if not steps:
        raise KLToolsError(
            f"model {spec!r}: {run_dir} holds neither config.json nor stepN checkpoint folders"
        )
    return steps[max(steps)]


def _with_revision(run_dir: Path, rev: str, spec: str) -> Path:
    """The subfolder ``rev`` of a run folder, or an 'unknown revision' error."""
    target = run_dir / rev
    if target.is_dir():
        return target
    available = sorted(_step_dirs(run_dir))
    shown = ", ".join(f"step{s}" for s in available[:8]) + (" ..." if len(available) > 8 else "")
    raise KLToolsError(
        f"unknown revision {rev!r} for model {spec!r}: {run_dir} has no folder {rev!r}"
        + (f" (available: {shown})" if available else "")
    )


def _find_in_suite(name: str) -> Path | None:
    """The folder ``<suite>/<profile>/name`` in any profile, or None."""
    root = suite_root()
    if not root.is_dir() or "/" in name or name in (".", ".."):
        return None
    hits = [p / name for p in sorted(root.iterdir()) if p.is_dir() and (p / name).is_dir()]
    if len(hits) > 1:
        raise KLToolsError(
            f"suite model {name!r} exists in several profiles ({', '.join(str(h) for h in hits)}); "
            "give the directory path instead"
        )
    return hits[0] if hits else None


def _looks_like_path(base: str) -> bool:
    """Whether a spec is meant as a filesystem path rather than a name or a hub id."""
    return base.startswith(("/", ".", "~")) or ("/" in base and not _HUB_ID.match(base))


def _hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off for this process."""
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _resolve_hub(spec: str, repo: str, rev: str | None) -> ModelRef:
    """Resolve a hub id and revision to a commit sha (from the cache when offline)."""
    if _hub_offline():
        from huggingface_hub import constants, try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "config.json", revision=rev or "main")
        if not isinstance(cached, str):
            cache = Path(constants.HF_HUB_CACHE)
            refs = cache / ("models--" + repo.replace("/", "--")) / "refs"
            held = sorted(p.name for p in refs.iterdir()) if refs.is_dir() else []
            if held:
                shown = ", ".join(held[:6]) + (f" … ({len(held)} in all)" if len(held) > 6 else "")
                what = f"revision {rev or 'main'!r} of hub repository {repo!r} is not in"
                what_else = f" (it holds {shown})"
            else:
                what, what_else = (
                    f"hub repository {repo!r} (revision {rev or 'main'!r}) is not in",
                    "",
                )
            raise KLToolsError(
                f"{what} the Hugging Face cache {cache}{what_else} and the hub is offline "
                "(HF_HUB_OFFLINE=1); download it on a connected machine, point HF_HUB_CACHE at "
                "a cache that holds it (kltools rehearsal build writes a stand-in), or give a "
                "local directory or a suite name instead"
            )
        commit = Path(cached).parent.name
        return ModelRef(spec, "hub", repo, rev, commit)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo, revision=rev)
    except RevisionNotFoundError as exc:
        raise KLToolsError(f"unknown revision {rev!r} for hub model {repo!r}") from exc
    except RepositoryNotFoundError as exc:
        raise KLToolsError(
            f"model {spec!r} is neither a local directory, a suite name nor a hub repository"
        ) from exc
    except Exception as exc:  # network errors of every flavour
        raise KLToolsError(
            f"model {spec!r}: the hub is unreachable ({type(exc).__name__}); "
            "give a local directory or set HF_HUB_OFFLINE=1 to use the cache"
        ) from exc
    return ModelRef(spec, "hub", repo, rev, info.sha)


def resolve_model(spec: str) -> ModelRef:
    """Resolve a model spec to a :class:`ModelRef` without loading anything.

    Parameters
    ----------
    spec : str
        A local directory (``/dir`` or ``/run@step64``), a suite name (``tiny-s``,
        ``tiny-s@step64``) or a hub id (``EleutherAI/pythia-410m@step1000``).

    Returns
    -------
    ModelRef

    Raises
    ------
    KLToolsError
        If the path does not exist, the revision is unknown, or the hub is needed but offline.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise KLToolsError(f"model spec {spec!r} is empty: give a directory, suite name or hub id")
    spec = spec.strip()
    whole = Path(spec).expanduser()
    if whole.is_dir():
        return ModelRef(spec, "local", str(_final_checkpoint(whole.resolve(), spec)))
    base, rev = _split_rev(spec)
    local = Path(base).expanduser()
    if local.is_dir():
        local = local.resolve()
        path = _with_revision(local, rev, spec) if rev else _final_checkpoint(local, spec)
        if not (path / "config.json").is_file():
            path = _final_checkpoint(path, spec)
        return ModelRef(spec, "local", str(path), rev)
    if _looks_like_path(base):
        raise KLToolsError(f"model path {base!r} does not exist; check the path")
    run_dir = _find_in_suite(base)
    if run_dir is not None:
        path = _with_revision(run_dir, rev, spec) if rev else _final_checkpoint(run_dir, spec)
        return ModelRef(spec, "suite", str(path), rev)
    if _HUB_ID.match(base):
        return _resolve_hub(spec, base, rev)
    raise KLToolsError(
        f"model {spec!r} is not a local directory, not a suite model under {suite_root()} "
        "and not a hub id (org/name); check the name or build the suite (make suite)"
    )


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda`` without CUDA is an error."""
    if device not in DEVICES:
        raise KLToolsError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise KLToolsError(
            "device 'cuda' was requested but CUDA is not available; use --device cpu"
        )
    return device


def check_dtype(dtype: str) -> str:
    """Validate a dtype name."""
    if dtype not in DTYPES:
        raise KLToolsError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return dtype


def check_quantization(quantization: str | None) -> str | None:
    """Validate a quantization name (None, int8, fp4, nf4)."""
    if quantization in ("", "none"):
        return None
    if quantization not in QUANTIZATIONS:
        raise KLToolsError(
            f"unknown quantization {quantization!r}: use int8, fp4, nf4 or leave it unset"
        )
    return quantization


def _bnb_config(quantization: str, device: str) -> Any:
    """The transformers BitsAndBytesConfig for a quantization name."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.float16 if device == "cuda" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=quantization, bnb_4bit_compute_dtype=compute
    )


def _check_quantized(model: Any, quantization: str, spec: str, device: str = "cpu") -> None:
    """Refuse a model that asked for bitsandbytes but holds no bnb linear layers."""
    import bitsandbytes as bnb

    wanted = bnb.nn.Linear8bitLt if quantization == "int8" else bnb.nn.Linear4bit
    layers = [m for m in model.modules() if isinstance(m, wanted)]
    if not layers:
        raise KLToolsError(
            f"model {spec!r} was loaded with quantization={quantization} but has no "
            f"{wanted.__name__} layers; bitsandbytes did not quantize it"
        )
    if quantization != "int8" and device == "cpu":
        for layer in layers:
            state = getattr(layer.weight, "quant_state", None)
            block = int(getattr(state, "blocksize", 64) or 64)
            if layer.in_features % block:
                raise KLToolsError(
                    f"model {spec!r}: bitsandbytes 4-bit on CPU needs every linear layer's "
                    f"input size to be a multiple of {block} (got {layer.in_features}); "
                    "use int8 or a GPU"
                )


def _tokenizer_dir(path: Path) -> Path:
    """The checkpoint folder if it holds a tokenizer, else its parent run folder."""
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if any((path / n).is_file() for n in names):
        return path
    if any((path.parent / n).is_file() for n in names):
        return path.parent
    return path


def max_length(model: Any, tokenizer: Any = None) -> int:
    """The model's context length in tokens (lm-evaluation-harness's rule).

    ``n_positions``, ``max_position_embeddings`` or ``n_ctx`` from the config (or its
    ``text_config``), else the tokenizer's ``model_max_length``, else 2048.
    """
    cfg = getattr(model.config, "text_config", None) or model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    tml = getattr(tokenizer, "model_max_length", None)
    if tml is not None and tml < int(1e29):
        return int(tml)
    return 2048


def load_model(
    ref_or_spec: ModelRef | str,
    *,
    dtype: str = "float32",
    device: str = "auto",
    quantization: str | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer.

    Parameters
    ----------
    ref_or_spec : ModelRef or str
        What :func:`resolve_model` returns, or a spec it takes.
    dtype : {"float32", "bfloat16", "float16"}
        Weight dtype (for quantized models: the dtype of the non-quantized parts).
    device : {"auto", "cpu", "cuda"}
        ``auto`` picks CUDA when available.
    quantization : {None, "int8", "fp4", "nf4"}
        bitsandbytes quantization through transformers; the loaded model is checked to really
        hold bitsandbytes layers.

    Returns
    -------
    LoadedModel
    """
    check_dtype(dtype)
    quantization = check_quantization(quantization)
    dev = resolve_device(device)
    ref = ref_or_spec if isinstance(ref_or_spec, ModelRef) else resolve_model(ref_or_spec)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if ref.kind == "hub":
        kwargs["revision"] = ref.commit or ref.revision
        source, tok_source = ref.path_or_id, ref.path_or_id
    else:
        source = ref.path_or_id
        tok_source = str(_tokenizer_dir(Path(source)))
    if quantization:
        kwargs["quantization_config"] = _bnb_config(quantization, dev)
        kwargs["device_map"] = dev
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(
            tok_source, **({"revision": kwargs["revision"]} if ref.kind == "hub" else {})
        )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KLToolsError(f"cannot load model {ref.spec!r} from {source}: {first}") from exc
    if quantization:
        _check_quantized(model, quantization, ref.spec, dev)
    else:
        model.to(dev)
    model.eval()
    info = {
        "dtype": dtype,
        "device": dev,
        "quantization": quantization,
        "source": source,
        "commit": ref.commit,
        "n_layers": int(getattr(model.config, "num_hidden_layers", 0) or 0),
        "max_length": max_length(model, tokenizer),
    }
    return LoadedModel(model=model, tokenizer=tokenizer, ref=ref, info=info)


def read_config(ref: ModelRef) -> dict[str, Any]:
    """The model's ``config.json`` as a dict, without loading weights (for validation)."""
    if ref.kind == "hub":
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(ref.path_or_id, revision=ref.commit or ref.revision)
        return cfg.to_dict()
    path = Path(ref.path_or_id) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KLToolsError(f"model {ref.spec!r}: cannot read {path}: {exc}") from exc


def n_layers_of(ref: ModelRef) -> int:
    """Number of transformer layers from the config (``num_hidden_layers`` or ``n_layer``)."""
    cfg = read_config(ref)
    cfg = cfg.get("text_config") or cfg
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if cfg.get(key) is not None:
            return int(cfg[key])
    raise KLToolsError(f"model {ref.spec!r}: config.json names no number of layers")


# --------------------------------------------------------------------------- low precision on CPU

#: ``/proc/cpuinfo`` flags that mean native matrix arithmetic in a dtype (x86 and Arm names)
NATIVE_FLAGS: dict[str, tuple[str, ...]] = {
    "bfloat16": ("avx512_bf16", "amx_bf16", "bf16"),
    "float16": ("avx512_fp16", "amx_fp16", "fphp"),
}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on Arm).

    ``cpuinfo``: the text to read instead of ``/proc/cpuinfo``. Empty where unreadable.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_dtypes_of(flags: set[str]) -> frozenset[str]:
    """The low-precision dtypes that CPU ``flags`` multiply natively (:data:`NATIVE_FLAGS`)."""
    return frozenset(d for d, wanted in NATIVE_FLAGS.items() if flags & set(wanted))


def cpu_native_dtypes() -> frozenset[str]:
    """The low-precision dtypes this CPU multiplies natively (``bfloat16``, ``float16``).

    Read from the CPU flags (:data:`NATIVE_FLAGS`: AVX-512 BF16 or AMX for bfloat16,
    AVX-512 FP16 or AMX-FP16 for float16, and the Arm equivalents). Elsewhere PyTorch emulates
    the dtype (converting to float32 around every multiply), which is slower than float32.
    ``$KLTOOLS_CPU_NATIVE`` (a comma-separated list, ``none`` for neither) overrides the
    detection, e.g. to see the message of a machine without them.
    """
    forced = os.environ.get("KLTOOLS_CPU_NATIVE")
    if forced is not None:
        names = {n.strip() for n in forced.split(",") if n.strip() and n.strip() != "none"}
        return frozenset(n for n in names if n in NATIVE_FLAGS)
    return native_dtypes_of(cpu_flags())


def low_precision_note(dtype: str, device: str) -> str | None:
    """One line for a user who asks for ``dtype`` on a CPU that only emulates it, else None."""
    if dtype == "float32" or device != "cpu" or dtype in cpu_native_dtypes():
        return None
    return (
        f"kltools: note: this CPU has no native {dtype} matrix instructions, so {dtype} is "
        "emulated and runs slower than float32 here (use --dtype float32 for speed)"
    )


# --------------------------------------------------------------------------- many units

#: model skeletons kept for reuse, keyed by (config text, tokenizer files' hash, dtype, device)
_SKELETONS: dict[tuple[str, ...], tuple[Any, Any, dict[str, str]]] = {}


def _reuse_key(ref: ModelRef, dtype: str, device: str) -> tuple[str, ...] | None:
    """The skeleton key of a local checkpoint with one safetensors file, else None.

    Checkpoints of one run share the key: the same ``config.json`` text and the same
    tokenizer files (by content; each checkpoint folder may hold its own copy).
    """
    if ref.kind == "hub":
        return None
    folder = Path(ref.path_or_id)
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        return None
    import hashlib

    tok_dir = _tokenizer_dir(folder)
    h = hashlib.sha256()
    for f in sorted(tok_dir.iterdir()):
        if f.is_file() and (
            f.name.startswith(("tokenizer", "special_tokens"))
            or f.suffix in (".model", ".txt")
            or f.name == "vocab.json"
        ):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    config = (folder / "config.json").read_text()
    return (config, h.hexdigest(), dtype, device)


def _checkpoint_renames(model: Any, state: dict[str, Any]) -> dict[str, str] | None:
    """How the keys of a checkpoint file map onto ``model.state_dict()`` keys, or None.

    transformers renames some keys while loading (GPT-NeoX's ``embed_out`` becomes
    ``lm_head``). Keys present in both keep their name; every other model key is matched to
    the one file key holding an identical tensor. None when a key has no unique match.
    """
    import torch

    own = model.state_dict()
    renames = {k: k for k in own if k in state}
    left_file = [k for k in state if k not in own]
    for key in (k for k in own if k not in state):
        hits = [
            f
            for f in left_file
            if state[f].shape == own[key].shape
            and torch.equal(state[f].to(own[key].dtype), own[key].detach().cpu())
        ]
        if len(hits) != 1:
            return None
        renames[hits[0]] = key
        left_file.remove(hits[0])
    return renames


def load_model_reusing(
    ref: ModelRef, *, dtype: str = "float32", device: str = "cpu"
) -> LoadedModel:
    """:func:`load_model`, reusing a released model of the same architecture when there is one.

    Many units of a store are checkpoints of one run: the same ``config.json`` and tokenizer,
    other weights. A model handed back by :func:`release_model` is taken out of the cache
    (so two threads never share one) and only its weights are read from
    ``model.safetensors`` (renamed as transformers renames them, then
    ``load_state_dict(strict=True)``, cast to ``dtype``); the tokenizer object is reused. The
    result equals a fresh :func:`load_model` (same modules, buffers and weights; tested).
    Anything unusual (hub models, quantization, sharded weights, keys that do not map) is
    loaded fresh by :func:`load_model`.
    """
    from safetensors.torch import load_file

    key = _reuse_key(ref, dtype, device)
    held = _SKELETONS.pop(key, None) if key is not None else None
    if held is not None:
        model, tokenizer, renames = held
        try:
            state = load_file(str(Path(ref.path_or_id) / "model.safetensors"), device=device)
            if set(state) != set(renames):
                raise ValueError("other keys")
            import torch

            with torch.no_grad():
                model.load_state_dict({renames[k]: v for k, v in state.items()}, strict=True)
        except (RuntimeError, OSError, ValueError):
            held = None
    if held is None:
        loaded = load_model(ref, dtype=dtype, device=device)
        if key is not None:
            try:
                state = load_file(str(Path(ref.path_or_id) / "model.safetensors"), device="cpu")
                renames = _checkpoint_renames(loaded.model, state)
            except (RuntimeError, OSError, ValueError):
                renames = None
            if renames is not None:
                loaded.info["reuse"] = (key, renames)
        return loaded
    model.eval()
    info = {
        "dtype": dtype,
        "device": device,
        "quantization": None,
        "source": ref.path_or_id,
        "commit": ref.commit,
        "n_layers": int(getattr(model.config, "num_hidden_layers", 0) or 0),
        "max_length": max_length(model, tokenizer),
        "reuse": (key, renames),
    }
    return LoadedModel(model=model, tokenizer=tokenizer, ref=ref, info=info)


def release_model(loaded: LoadedModel) -> None:
    """Hand a model loaded by :func:`load_model_reusing` back for the next checkpoint.

    The caller must not use ``loaded`` afterwards (its weights will be overwritten). One
    skeleton is kept per architecture.
    """
    reuse = loaded.info.get("reuse")
    if reuse is not None:
        key, renames = reuse
        _SKELETONS[key] = (loaded.model, loaded.tokenizer, renames)


def clear_reuse_cache() -> None:
    """Forget every kept model skeleton (frees their memory)."""
    _SKELETONS.clear()
