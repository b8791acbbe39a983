"""The "paper vs this book" box at the top of every chapter.

:func:`paper_box` writes, for one chapter, what the paper says (its claim, in words, with the
section or figure it comes from), the numbers it prints for it with their kind (one pair, a
median, a mean: :mod:`kltools.paper`), and how the run of this page maps onto them (the
profile, the text set, and every deviation of :mod:`kltools.deviations` that concerns the
chapter). The chapter notebook calls it once, right after its ``setup`` cell; the build moves
its output under the chapter's question (:func:`kltools.book.compose.question_first`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kltools import paper
from kltools.config import Settings
from kltools.errors import KLToolsError

__all__ = ["CHAPTER_CLAIMS", "ChapterClaim", "paper_box"]


@dataclass(frozen=True)
class ChapterClaim:
    """What the paper says about one chapter's question, and the numbers it prints for it."""

    claim: str
    where: str
    numbers: dict[str, paper.Number] = field(default_factory=dict)
    no_numbers: str = "The paper prints no number for this; its figure shows the distributions."


def _table1(*keys: str) -> dict[str, paper.Number]:
    return {k: paper.TABLE1[k] for k in keys}


#: chapter -> the paper's claim and its printed numbers
CHAPTER_CLAIMS: dict[str, ChapterClaim] = {
    "method": ChapterClaim(
        "Double-centre the log-likelihoods of K models on N texts; ‖qᵢ − qⱼ‖²/(2N) estimates "
        "KL(pᵢ, pⱼ), in bits per byte after dividing by B̄ ln 2.",
        "§2",
        no_numbers=(
            f"The paper's text set: {paper.TEXT_SET['n_texts']:,} Pile chunks, "
            f"B̄ = {paper.TEXT_SET['mean_bytes']} bytes."
        ),
    ),
    "trajectories": ChapterClaim(
        "On a t-SNE map of every checkpoint, pretraining trajectories spiral.",
        "Fig. 1",
        no_numbers="The paper prints no number for this; the claim is read off its map.",
    ),
    "consecutive": ChapterClaim(
        "The KL between consecutive checkpoints falls during training and is small "
        f"(about {paper.BETWEEN['late consecutive'][0]}–{paper.BETWEEN['late consecutive'][1]} "
        "bits/byte) after about 10k steps.",
        "§3.1, Fig. 4, Table 1",
        _table1("consecutive 10k→11k", "consecutive 50k→51k", "consecutive 100k→101k"),
    ),
    "seeds_sizes": ChapterClaim(
        "Runs with different seeds are farther apart than late consecutive checkpoints, and "
        "different sizes farther apart than seeds.",
        "§3.1, Table 1",
        dict(paper.TABLE1),
    ),
    "diffusion": ChapterClaim(
        "Training is subdiffusive in log-likelihood space, and far less diffusive there than "
        "in weight space: " + "; ".join(paper.DIFFUSION.values()) + ".",
        "§4, Fig. 5",
        no_numbers="The paper prints no exponent; its Fig. 5 shows them against the start step.",
    ),
    "quantization": ChapterClaim(
        "8-bit quantization (bitsandbytes LLM.int8()) moves a model less than 4-bit "
        "(bitsandbytes FP4).",
        "§3.2, Fig. 2a, Fig. 3",
    ),
    "floor": ChapterClaim(
        "Not in the paper: this chapter measures the numerical floor of the pipeline (the same "
        "model computed twice), which the paper does not report.",
        "—",
        no_numbers="The paper prints no number for this.",
    ),
    "finetuning": ChapterClaim(
        "Fine-tuned children are closer to their parents than random pairs of models are.",
        "§3.3, Table 2, Fig. 3",
        dict(
            (f"{typ}, {pair}, {stat}", n)
            for (typ, pair, stat), n in paper.TABLE2.items()
            if stat == "median"
        ),
    ),
    "layers": ChapterClaim(
        "Read through the logit lens, adjacent layers are far apart on the scale; layer "
        "trajectories look thread-like.",
        "§3.4, Table 3, Fig. 2c",
        dict(paper.TABLE3),
    ),
    "scale": ChapterClaim(
        "Every setting on one axis: Later < Seed < Size for pretraining, 8-bit < 4-bit, "
        "FT < Random, and adjacent layers far apart.",
        "Fig. 3",
        {k: v for k, v in paper.FOR_SETTING.items() if v is not None},
    ),
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def paper_box(s: Settings, chapter: str) -> str:
    """The Markdown of the "paper vs this book" box of ``chapter`` for the run ``s``."""
    from kltools.deviations import deviations

    if chapter not in CHAPTER_CLAIMS:
        raise KLToolsError(
            f"no paper box for chapter {chapter!r}; chapters: {', '.join(CHAPTER_CLAIMS)}"
        )
    c = CHAPTER_CLAIMS[chapter]
    lines = [
        ":::{admonition} The paper and this page",
        ":class: note",
        "",
        f"**The paper** ({c.where}): {c.claim}",
        "",
    ]
    if c.numbers:
        lines += [
            "**Its printed numbers** (bits/byte):",
            "",
            "| the paper's row | value | kind | source |",
            "|---|---|---|---|",
            *(
                f"| {_cell(key)} | {n.value:g} | {_cell(n.kind)} | {_cell(n.source)} |"
                for key, n in c.numbers.items()
            ),
            "",
        ]
    else:
        lines += [c.no_numbers, ""]
    rows = [d for d in deviations(s) if chapter in d.chapters]
    lines += [f"**This page** ran the `{s.profile}` profile on {_texts_scored(s)}.", ""]
    if rows:
        lines += [
            "How it maps onto the paper:",
            "",
            *(
                f"- *{_cell(d.topic)}*: the paper, {_cell(d.paper)}; this page, {_cell(d.ours)}."
                for d in rows
            ),
        ]
    else:
        lines.append("It follows the paper's settings for this chapter.")
    lines += ["", ":::"]
    return "\n".join(lines)


def _texts_scored(s: Settings) -> str:
    """``"32 texts (text set `suite`)"``: how many texts the run scores and which set; the
    count is the set's when it holds fewer than ``n_texts`` (and ``n_texts`` when the set
    cannot be read here)."""
    from kltools.sources import analysis_texts

    try:
        texts = analysis_texts(s)
    except KLToolsError:
        n, name = s.n_texts, s.textset
    else:
        n, name = len(texts.texts), texts.name
    where = "the paper’s Pile recipe" if s.textset == "pile" else f"text set `{name}`"
    return f"{n} texts ({where})"
