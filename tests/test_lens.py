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
from kltools.lens import check_layers, final_norm, lens_logits, unembedding
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
