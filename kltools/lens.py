"""The logit lens: next-token logits read off every layer of a causal LM.

Layer indexing follows ``output_hidden_states=True`` of transformers:

- layer ``0`` is the embedding output (before the first block),
- layer ``k`` (1 <= k < L) is the output of block ``k``,
- layer ``L`` (= ``config.num_hidden_layers``) is the final layer.

For ``k < L`` the lens logits are ``unembedding(final_norm(h_k))``. For ``k = L`` they are the
model's own logits (in transformers 5 the last hidden state is already final-normed, so
re-normalising it would be wrong). Known architectures are listed in :data:`FINAL_NORMS`;
others raise :class:`~kltools.errors.KLToolsError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kltools.errors import KLToolsError

#: model_type -> attribute path of the final normalisation before the unembedding
FINAL_NORMS: dict[str, str] = {
    "gpt_neox": "gpt_neox.final_layer_norm",
    "llama": "model.norm",
    "mistral": "model.norm",
    "mixtral": "model.norm",
    "qwen2": "model.norm",
    "qwen3": "model.norm",
    "olmo2": "model.norm",
    "gpt2": "transformer.ln_f",
    "gpt_neo": "transformer.ln_f",
    "gptj": "transformer.ln_f",
    "bloom": "transformer.ln_f",
    "falcon": "transformer.ln_f",
    "mpt": "transformer.norm_f",
    "opt": "model.decoder.final_layer_norm",
    "phi": "model.final_layernorm",
    "phi3": "model.norm",
    "gemma": "model.norm",
    "gemma2": "model.norm",
    "starcoder2": "model.norm",
}


def _model_type(model: Any) -> str:
    return str(getattr(model.config, "model_type", "?"))


def final_norm(model: Any) -> Any:
    """The final normalisation module applied before the unembedding.

    Parameters
    ----------
    model : transformers.PreTrainedModel

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    KLToolsError
        For an architecture not in :data:`FINAL_NORMS`.
    """
    mtype = _model_type(model)
    path = FINAL_NORMS.get(mtype)
    if path is None:
        raise KLToolsError(
            f"the logit lens does not know architecture {mtype!r} (known: "
            f"{', '.join(sorted(FINAL_NORMS))}); extract without --layers"
        )
    module = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            raise KLToolsError(f"model of type {mtype!r} has no {path}; cannot apply the lens")
    if getattr(getattr(getattr(model, "model", None), "decoder", None), "project_out", None):
        raise KLToolsError(  # OPT-350m projects after the final norm: the lens would skip it
            f"model of type {mtype!r} projects its hidden states after the final norm; the "
            "lens (final norm, then unembedding) does not apply to it"
        )
    return module


def unembedding(model: Any) -> Any:
    """The output embedding (unembedding) module, ``model.get_output_embeddings()``."""
    out = model.get_output_embeddings()
    if out is None:
        raise KLToolsError(
            f"model of type {_model_type(model)!r} has no output embeddings; cannot apply the lens"
        )
    return out


def n_layers(model: Any) -> int:
    """Number of blocks L; valid lens layers are 0..L."""
    cfg = getattr(model.config, "text_config", None) or model.config
    return int(cfg.num_hidden_layers)


def check_layers(layers: Sequence[int], n: int, label: str = "model") -> tuple[int, ...]:
    """Validate lens layer indices against a model with ``n`` blocks (valid: 0..n)."""
    out = tuple(int(k) for k in layers)
    bad = [k for k in out if not 0 <= k <= n]
    if bad:
        raise KLToolsError(
            f"layer index {bad[0]} is out of range for {label}, which has {n} layers "
            f"(valid lens layers: 0..{n}, 0 = embeddings, {n} = final)"
        )
    if len(set(out)) != len(out):
        raise KLToolsError(f"layer indices {list(out)} repeat a layer; give each once")
    return out


def lens_logits(model: Any, hidden_states: Sequence[Any], layer: int, logits: Any = None) -> Any:
    """Logits of one layer through the lens.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    hidden_states : sequence of torch.Tensor
        The ``hidden_states`` of a forward pass with ``output_hidden_states=True``
        (L + 1 tensors of shape (batch, seq, d)); may be sliced along seq.
    layer : int
        0..L, see the module docstring.
    logits : torch.Tensor, optional
        The model's own logits for the same positions; returned for ``layer == L``.

    Returns
    -------
    torch.Tensor
        (batch, seq, vocab) in the model's dtype.
    """
    last = len(hidden_states) - 1
    if layer == last:
        if logits is not None:
            return logits
        return unembedding(model)(hidden_states[last])
    return unembedding(model)(final_norm(model)(hidden_states[layer]))
