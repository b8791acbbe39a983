"""kltools.lens: final norm / unembedding lookups and per-layer logits."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kltools.errors import KLToolsError
from kltools.extraction import score_texts
from kltools.lens import FINAL_NORMS, check_layers, final_norm, lens_logits, n_layers, unembedding
from kltools.models import load_model

TEXT = "We hold these truths to be self-evident, that all men are created equal."


@pytest.fixture(scope="module")
def loaded(make_tiny_neox):
    return load_model(str(make_tiny_neox(5, num_hidden_layers=3)), device="cpu")


def _forward(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True)


def test_lookups_gpt_neox(loaded) -> None:
    m = loaded.model
    assert final_norm(m) is m.gpt_neox.final_layer_norm
    assert unembedding(m) is m.get_output_embeddings()


def test_last_layer_is_model_logits(loaded) -> None:
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    out = _forward(loaded.model, ids)
    assert len(out.hidden_states) == 4  # embeddings + 3 blocks
    torch.testing.assert_close(lens_logits(loaded.model, out.hidden_states, 3), out.logits)
    assert lens_logits(loaded.model, out.hidden_states, 3, out.logits) is out.logits


def test_middle_layer_manual(loaded) -> None:
    m = loaded.model
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    captured = {}
    hook = m.gpt_neox.layers[0].register_forward_hook(
        lambda mod, inp, out: captured.setdefault("h1", out[0] if isinstance(out, tuple) else out)
    )
    out = _forward(m, ids)
    hook.remove()
    ln = m.gpt_neox.final_layer_norm
    h1 = captured["h1"]
    manual = F.layer_norm(h1, ln.normalized_shape, ln.weight, ln.bias, ln.eps) @ m.lm_head.weight.T
    torch.testing.assert_close(lens_logits(m, out.hidden_states, 1), manual, rtol=1e-5, atol=1e-5)
    # and the lens log-likelihood of that layer equals the manual one (first token unscored)
    lp = torch.log_softmax(manual.float(), -1)[0, :-1].gather(-1, ids[0, 1:, None]).sum()
    res = score_texts(loaded, [TEXT], layers=[1])
    assert abs(res.loglik[0, 0] - lp.item()) < 1e-4


def test_layer_rows_consistent(loaded) -> None:
    texts = [TEXT, "Four score and seven years ago our fathers brought forth"]
    full = score_texts(loaded, texts)
    lens = score_texts(loaded, texts, layers="all")
    assert lens.loglik.shape == (4, 2) and lens.layers == (0, 1, 2, 3)
    np.testing.assert_allclose(lens.loglik[3], full.loglik, atol=1e-6)
    assert not np.allclose(lens.loglik[0], full.loglik)


def test_llama_style(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    m = LlamaForCausalLM(cfg).eval()
    assert final_norm(m) is m.model.norm
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    out = _forward(m, ids)
    torch.testing.assert_close(lens_logits(m, out.hidden_states, 2), out.logits)
    mid = m.lm_head(m.model.norm(out.hidden_states[1]))
    torch.testing.assert_close(lens_logits(m, out.hidden_states, 1), mid)


def test_unknown_architecture() -> None:
    fake = SimpleNamespace(config=SimpleNamespace(model_type="mamba-x"))
    with pytest.raises(KLToolsError, match="does not know architecture 'mamba-x'"):
        final_norm(fake)


def test_check_layers() -> None:
    assert check_layers([0, 2], 2) == (0, 2)
    with pytest.raises(KLToolsError, match="which has 2 layers"):
        check_layers([3], 2)
    with pytest.raises(KLToolsError, match="repeat"):
        check_layers([1, 1], 2)


#: a tiny random config of each architecture the lens knows besides GPT-NeoX and Llama
LENS_CONFIGS: dict[str, dict[str, object]] = {
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=64),
    "gpt_neo": dict(
        hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
        vocab_size=64, max_position_embeddings=64,
    ),
    "gptj": dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, vocab_size=64, n_positions=64),
    "bloom": dict(hidden_size=32, n_layer=2, n_head=4, vocab_size=64),
    "falcon": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=64),
    "mpt": dict(d_model=32, n_layers=2, n_heads=4, vocab_size=64, max_seq_len=64),
    "opt": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64, vocab_size=64,
        max_position_embeddings=64, word_embed_proj_dim=32,
    ),
    "phi": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=64, max_position_embeddings=64,
    ),
    "phi3": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=64, max_position_embeddings=64, pad_token_id=0,
    ),
    "gemma": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, intermediate_size=64, vocab_size=64, max_position_embeddings=64,
    ),
    "starcoder2": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=64, max_position_embeddings=64,
    ),
    "mistral": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=64, max_position_embeddings=64,
    ),
    "qwen2": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=64, max_position_embeddings=64,
    ),
}  # fmt: skip


@pytest.mark.parametrize("model_type", sorted(LENS_CONFIGS))
def test_final_norm_is_the_module_before_the_unembedding(model_type: str) -> None:
    """For every architecture the lens knows, the module :func:`final_norm` names is the one
    whose output the model unembeds: capture its output in the model's own forward pass and
    the unembedding of it is the model's logits (a wrong path cannot pass)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    assert model_type in FINAL_NORMS
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(model_type, **LENS_CONFIGS[model_type])
    ).eval()
    captured: dict[str, torch.Tensor] = {}
    hook = final_norm(m).register_forward_hook(lambda mod, i, o: captured.setdefault("o", o))
    try:
        with torch.no_grad():
            out = m(torch.randint(0, 60, (1, 7)), output_hidden_states=True)
    finally:
        hook.remove()
    torch.testing.assert_close(m.get_output_embeddings()(captured["o"]), out.logits)
    assert n_layers(m) == 2
