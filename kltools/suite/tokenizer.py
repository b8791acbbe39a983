"""A byte-level BPE tokenizer trained offline, saved in Hugging Face format.

Like Pythia's tokenizer: byte-level BPE, no BOS is added, ``<|endoftext|>`` (id 0) is the
EOS, BOS and UNK token. The folder loads with ``AutoTokenizer.from_pretrained(dir)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

EOS = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike[str]) -> Path:
    """Train a byte-level BPE on ``texts`` and save it to ``out_dir``.

    Parameters
    ----------
    texts : iterable of str
        Training texts, in a fixed order (the result depends on it).
    vocab_size : int
        Size of the vocabulary, the 256 byte symbols and ``<|endoftext|>`` included.
    out_dir : path
        Folder to write ``tokenizer.json`` and ``tokenizer_config.json`` to.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, model_max_length=None
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


def load_tokenizer(path: str | os.PathLike[str]):
    """The saved tokenizer as a ``PreTrainedTokenizerFast`` (via ``AutoTokenizer``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
