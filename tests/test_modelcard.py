"""The model card of the offline suite, generated from the smoke suite's definition and build."""

from __future__ import annotations

import json

from kltools.book.modelcard import modelcard_markdown, optimizer_settings
from kltools.suite.profiles import get_profile, plan


def test_model_card_of_the_smoke_suite(smoke_suite_root) -> None:
    card = modelcard_markdown("smoke", smoke_suite_root)
    p = get_profile("smoke")
    proot = smoke_suite_root / "smoke"
    for domain in ("prose", "docs", "code"):
        assert f"| {domain} |" in card
    assert f"vocabulary of {p.vocab_size:,} tokens" in card
    assert f"weight decay {optimizer_settings()['weight_decay']:g}" in card
    for unit in plan(p):
        assert f"`{unit.name}`" in card, unit.name
    run = json.loads((proot / "smoke-m" / "run.json").read_text())
    tokens = run["schedule"]["tokens_per_step"] * run["final_step"]
    assert f"| {run['n_params']:,} ({run['n_nonembedding_params']:,}) | {tokens:,} |" in card
    assert "LoRA rank 8" in card and "| `smoke-s-ft-code-full` | prose (generation 2) |" in card
    assert (
        "| `rtn4g32` | 4-bit RTN g32 | round to nearest, 4 bits, symmetric, one scale per group of 32 inputs"
        in card
    )
    assert "| `bnb-int8` | 8-bit |" in card
    assert "not built" not in card


def test_model_card_says_what_is_not_built(tmp_path) -> None:
    card = modelcard_markdown("smoke", tmp_path)
    assert "is not built here" in card
    assert "| `smoke-m` | 64 × 2 × 2 | not built |" in card
