"""Shared pytest fixtures: tiny, deterministic, offline GPT-NeoX models and tokenizers.

Importing this module sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` so that no test
can reach a hub; every model a test uses is built here from a random initialisation.

Fixtures (names are stable; other test modules rely on them)
-------------------------------------------------------------
``tiny_corpus`` (session) -> str
    A few KB of public-domain English text (with a few multi-byte characters) that the tiny
    tokenizer is trained on. Handy as a source of test texts.
``tiny_tokenizer_dir`` (session) -> pathlib.Path
    A directory holding only the tiny byte-level BPE tokenizer (``tokenizer.json`` etc.), loadable
    with ``AutoTokenizer.from_pretrained``. EOS = BOS = ``"<|endoftext|>"`` (id 0); like Pythia's
    tokenizer it adds no special tokens when encoding. Vocabulary size ``TINY_BPE_VOCAB`` (at
    most; the trainer may stop earlier).
``tiny_neox`` (session) -> pathlib.Path
    A directory with a random ``GPTNeoXForCausalLM`` (hidden 32, 2 layers, 4 heads, intermediate
    64, max_position_embeddings 128, seed 0) and the tiny tokenizer, saved together so that both
    ``AutoTokenizer.from_pretrained(dir)`` and ``AutoModelForCausalLM.from_pretrained(dir)`` work.
``make_tiny_neox`` (session) -> callable ``make_tiny_neox(seed=0, *, tokenizer="bpe",
**config_overrides) -> pathlib.Path``
    Factory for more such directories: ``seed`` seeds ``torch.manual_seed`` before the model is
    built; ``config_overrides`` go into ``GPTNeoXConfig`` (e.g. ``num_hidden_layers=3``,
    ``initializer_range=0.5``); ``tokenizer="chars"`` uses a character-level tokenizer with a
    tiny vocabulary (``TINY_CHARS``: ``"<|endoftext|>"`` id 0 plus ``a b c d`` and a space, 6
    tokens) so that sums over all sequences are feasible. Results are cached per argument set,
    so equal arguments return the same directory. Deterministic: equal arguments give
    bit-identical weights.

``smoke_suite_root`` (session) -> pathlib.Path
    The suite base folder holding the ``smoke`` profile of the offline model suite, built once
    per test session (``kltools.suite.build``; a no-op when ``$KLTOOLS_TEST_SMOKE_SUITE`` names
    an up-to-date one). Requesting it also points ``KLTOOLS_SUITE_ROOT`` at it for the rest of
    the session, so ``smoke-…`` model names resolve everywhere.
``shared_build`` (session) -> callable ``shared_build(name, given=None)``
    A context manager yielding a folder to build into once per run (shared by the pytest-xdist
    workers, under a file lock; ``given`` names an existing folder to reuse instead).
``smoke_data_root`` (session) -> pathlib.Path
    One data root (zarr stores) for the session's smoke chapters, so that chapters sharing a
    store (the pretraining chapters) extract it once.

Parallel runs (``pytest -n 2``, as ``make test`` does): the smoke suite is built once for all
workers (under a file lock, in the run's shared temporary folder); every test that uses
``smoke_data_root`` is put in one ``xdist_group`` so that they share one data root on one
worker; each worker runs torch (and the processes it starts) with one thread, so two workers
use the two cores without oversubscribing them.

Constants ``TINY_BPE_VOCAB``, ``TINY_CHARS`` and ``TINY_NEOX_CONFIG`` are importable from
``tests.conftest`` only by path; prefer the fixtures.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER is not None:  # one thread per worker, inherited by kernels and subprocesses
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import functools  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import AbstractContextManager, contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

EOS = "<|endoftext|>"
TINY_BPE_VOCAB = 384
TINY_CHARS = ("a", "b", "c", "d", " ")
TINY_NEOX_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "use_cache": False,
    "tie_word_embeddings": False,
}

# Public-domain sources: the US Declaration of Independence (1776), the Preamble and Article I
# (opening) of the US Constitution (1787), and Lincoln's Gettysburg Address (1863).
_CORPUS_PARTS = (
    "When in the Course of human events, it becomes necessary for one people to dissolve the "
    "political bands which have connected them with another, and to assume among the powers of "
    "the earth, the separate and equal station to which the Laws of Nature and of Nature's God "
    "entitle them, a decent respect to the opinions of mankind requires that they should declare "
    "the causes which impel them to the separation.",
    "We hold these truths to be self-evident, that all men are created equal, that they are "
    "endowed by their Creator with certain unalienable Rights, that among these are Life, "
    "Liberty and the pursuit of Happiness. That to secure these rights, Governments are "
    "instituted among Men, deriving their just powers from the consent of the governed.",
    "We the People of the United States, in Order to form a more perfect Union, establish "
    "Justice, insure domestic Tranquility, provide for the common defence, promote the general "
    "Welfare, and secure the Blessings of Liberty to ourselves and our Posterity, do ordain and "
    "establish this Constitution for the United States of America.",
    "All legislative Powers herein granted shall be vested in a Congress of the United States, "
    "which shall consist of a Senate and House of Representatives. The House of Representatives "
    "shall be composed of Members chosen every second Year by the People of the several States.",
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, "
    "conceived in Liberty, and dedicated to the proposition that all men are created equal. Now "
    "we are engaged in a great civil war, testing whether that nation, or any nation so "
    "conceived and so dedicated, can long endure. We are met on a great battle-field of that "
    "war. We have come to dedicate a portion of that field, as a final resting place for those "
    "who here gave their lives that that nation might live.",
    "It is rather for us to be here dedicated to the great task remaining before us -- that "
    "from these honored dead we take increased devotion to that cause for which they gave the "
    "last full measure of devotion -- that we here highly resolve that these dead shall not have "
    "died in vain -- that this nation, under God, shall have a new birth of freedom -- and that "
    "government of the people, by the people, for the people, shall not perish from the earth.",
    "Multi-byte samples: café, naïve, Größe, 東京, 日本語の文章, Ωμέγα, emoji 🙂🚀, and digits "
    "0123456789.",
)


def _corpus() -> str:
    return "\n\n".join(_CORPUS_PARTS * 3)


def _bpe_tokenizer() -> Any:
    """Train the tiny byte-level BPE (deterministic) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_VOCAB,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS_PARTS * 3, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS)


def _chars_tokenizer() -> Any:
    """A character-level tokenizer over ``TINY_CHARS`` (6 tokens incl. EOS id 0)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {EOS: 0, **{c: i + 1 for i, c in enumerate(TINY_CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS)


def _build_neox(out: Path, tokenizer: Any, seed: int, overrides: dict[str, Any]) -> Path:
    """Build a random GPT-NeoX with ``seed`` and save it with ``tokenizer`` into ``out``."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    cfg = GPTNeoXConfig(
        **{
            **TINY_NEOX_CONFIG,
            "vocab_size": len(tokenizer),
            "bos_token_id": eos_id,
            "eos_token_id": eos_id,
            **overrides,
        }
    )
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(cfg).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_corpus() -> str:
    """A few KB of public-domain text (see the module docstring)."""
    return _corpus()


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the tiny byte-level BPE tokenizer only."""
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    _bpe_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def make_tiny_neox(
    tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path
) -> Callable[..., Path]:
    """Factory ``make_tiny_neox(seed=0, *, tokenizer="bpe", **config_overrides) -> Path``."""
    from transformers import AutoTokenizer

    cache: dict[tuple, Path] = {}

    def make(seed: int = 0, *, tokenizer: str = "bpe", **config_overrides: Any) -> Path:
        key = (seed, tokenizer, tuple(sorted(config_overrides.items())))
        if key in cache:
            return cache[key]
        if tokenizer == "bpe":
            tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
        elif tokenizer == "chars":
            tok = _chars_tokenizer()
        else:
            raise ValueError(f"tokenizer must be 'bpe' or 'chars', not {tokenizer!r}")
        out = tmp_path_factory.mktemp(f"tiny_neox_s{seed}_{tokenizer}")
        cache[key] = _build_neox(out, tok, seed, dict(config_overrides))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_neox(make_tiny_neox: Callable[..., Path]) -> Path:
    """Directory with the default tiny random GPT-NeoX (seed 0) and its tokenizer."""
    return make_tiny_neox(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (the longest start first, so two workers finish together); under
    pytest-xdist, the tests that share the smoke data root stay on one worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
    for item in items:
        if "smoke_data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("smoke-data"))


@contextmanager
def shared_build_dir(
    tmp_path_factory: pytest.TempPathFactory, name: str, given: str | None = None
) -> Iterator[Path]:
    """A folder that one session builds once, held under a file lock while the caller builds.

    ``given`` (a path from the environment) wins; under pytest-xdist every worker of the run
    gets the same folder, so the first builds and the others find it built (the builders
    reuse what is there); otherwise a fresh temporary folder.
    """
    from filelock import FileLock

    if given:
        root = Path(given)
    elif _XDIST_WORKER is not None:
        root = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    else:
        root = tmp_path_factory.mktemp(name)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        yield root


@pytest.fixture(scope="session")
def shared_build(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., AbstractContextManager[Path]]:
    """``shared_build(name, given=None)``: :func:`shared_build_dir` for this session."""
    return functools.partial(shared_build_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def smoke_suite_root(shared_build: Callable[..., AbstractContextManager[Path]]) -> Path:
    """The smoke model suite, built once per session and shared by every test that needs it."""
    from kltools.suite import build

    given = os.environ.get("KLTOOLS_TEST_SMOKE_SUITE")
    with shared_build("suite", given) as root:
        build("smoke", root, jobs=1 if _XDIST_WORKER else 2, verbose=False)  # reuses what is built
    os.environ["KLTOOLS_SUITE_ROOT"] = str(root)
    return root


@pytest.fixture(scope="session")
def smoke_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root for smoke-profile stores, shared by the whole session."""
    return tmp_path_factory.mktemp("data")
