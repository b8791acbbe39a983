"""What a chapter writes as data, and how the book reads it back.

Every executed chapter writes one JSON file next to its executed notebook,
``build/executed/<chapter>.results.json`` (``<chapter>`` is the chapter's name, e.g.
``seeds_sizes``). The pages (the reproduction report, the claims scoreboard, each chapter's
own rows) and ``kltools book results`` are built from these files only, so they can never
disagree with the chapters.

The file holds five lists of flat records (``schema`` ``kltools.results/1``):

``pairs``
    One record per model pair of a setting: ``chapter``, ``setting`` (a paper label such as
    ``"Later"`` or ``"8-bit"``, or the book's own label for a scheme the paper does not use),
    ``a``, ``b`` (unit specs that :func:`kltools.models.resolve_model` accepts, e.g.
    ``"tiny-s@step320"``), ``kl_bpb`` (the pair's KL in bits per byte), ``n_texts``,
    ``mean_bytes`` (B̄ of the texts used); optional ``lo``/``hi`` (bootstrap interval),
    ``layer_a``/``layer_b`` (hidden-state indices, 0 = embedding output) and any other labels.
``summaries``
    One record per statistic of a setting: ``chapter``, ``setting``, ``statistic``
    (``"median"``, ``"mean"``, ...), ``value`` (bits per byte), ``n_pairs``; optional
    ``lo``/``hi``.
``claims``
    One record per claim tested: ``chapter``, ``claim`` (a stable identifier, e.g.
    ``"later<seed<size"``), ``verdict`` (one of :data:`VERDICTS`), ``reason`` (one sentence
    with the numbers); optional ``title`` (what the paper claims, in words), ``population``
    (the pairs it is decided on), ``statistic`` (how they are summarised and compared),
    ``origin`` (one of :data:`ORIGINS`: a claim of the paper, or the book's own check),
    ``ours``, ``ours_lo``, ``ours_hi``, ``other`` and ``other_label`` (a second number of
    ours shown beside it, e.g. c_W beside c_ℓ), ``paper``, ``paper_kind`` (``"single
    pair"``, ``"median"``, ``"mean"``, ``"range stated in the text"``, ...; or, with no
    ``paper``, why there is no like-for-like number), ``paper_lo``/``paper_hi`` (a range the
    paper states), ``paper_source`` (e.g. ``"v1 Table 1"``) and ``units``.
``deviations``
    One record per way this chapter's run differs from the paper: ``chapter``, ``topic``,
    ``paper``, ``ours``, ``why``.
``parameters``
    Every parameter in effect (a mapping, not a list).

Values are plain JSON (no NaN: a missing number is ``null``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kltools.errors import KLToolsError
from kltools.paths import build_root

SCHEMA = "kltools.results/1"

#: the three outcomes of a tested claim
VERDICTS: tuple[str, ...] = ("holds", "not reproduced", "not tested")

#: where a claim comes from: the paper, or the book's own check
ORIGINS: tuple[str, ...] = ("paper", "book")

#: required keys of each record kind
REQUIRED: dict[str, tuple[str, ...]] = {
    "pairs": ("chapter", "setting", "a", "b", "kl_bpb", "n_texts", "mean_bytes"),
    "summaries": ("chapter", "setting", "statistic", "value", "n_pairs"),
    "claims": ("chapter", "claim", "verdict", "reason"),
    "deviations": ("chapter", "topic", "paper", "ours", "why"),
    "findings": ("chapter", "run", "step", "finding", "same_as", "evidence"),
}

_SUFFIX = ".results.json"


@dataclass
class ChapterResults:
    """The results of one executed chapter (see the module docstring for the record kinds)."""

    chapter: str
    profile: str
    parameters: dict[str, Any] = field(default_factory=dict)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    deviations: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (NaN and infinities become ``None``)."""
        return _plain(
            {
                "schema": SCHEMA,
                "chapter": self.chapter,
                "profile": self.profile,
                "created": self.created or _now(),
                "parameters": self.parameters,
                **{kind: getattr(self, kind) for kind in REQUIRED},
            }
        )

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "results") -> ChapterResults:
        """Validate a mapping read from a results file and build the object."""
        if doc.get("schema") != SCHEMA:
            raise KLToolsError(
                f"{source}: schema {doc.get('schema')!r} is not {SCHEMA!r}; re-execute the chapter"
            )
        for key in ("chapter", "profile"):
            if not isinstance(doc.get(key), str):
                raise KLToolsError(f"{source}: missing {key!r}")
        out = cls(
            chapter=doc["chapter"],
            profile=doc["profile"],
            parameters=dict(doc.get("parameters") or {}),
            created=str(doc.get("created") or ""),
        )
        for kind in REQUIRED:
            records = list(doc.get(kind) or [])
            validate_records(kind, records, source)
            setattr(out, kind, records)
        return out


def validate_records(kind: str, records: Iterable[Mapping[str, Any]], source: str = "") -> None:
    """Raise :class:`KLToolsError` if a record lacks a required key or has a bad verdict."""
    if kind not in REQUIRED:
        raise KLToolsError(f"unknown record kind {kind!r}; one of {', '.join(REQUIRED)}")
    where = f"{source}: " if source else ""
    for i, rec in enumerate(records):
        missing = [k for k in REQUIRED[kind] if k not in rec]
        if missing:
            raise KLToolsError(f"{where}{kind} record {i} lacks {', '.join(missing)}")
        if kind == "claims" and rec["verdict"] not in VERDICTS:
            raise KLToolsError(
                f"{where}claim {rec['claim']!r} has verdict {rec['verdict']!r}, "
                f"not one of {', '.join(VERDICTS)}"
            )
        if kind == "claims" and rec.get("origin", "paper") not in ORIGINS:
            raise KLToolsError(
                f"{where}claim {rec['claim']!r} has origin {rec['origin']!r}, "
                f"not one of {', '.join(ORIGINS)}"
            )


def results_dir() -> Path:
    """Where executed chapters and their results live (``<build>/executed``)."""
    return build_root() / "executed"


def results_path(chapter: str, directory: str | Path | None = None) -> Path:
    """``<directory>/<chapter>.results.json`` (default directory: :func:`results_dir`)."""
    return Path(directory or results_dir()) / f"{chapter}{_SUFFIX}"


def write_results(results: ChapterResults, directory: str | Path | None = None) -> Path:
    """Validate and write ``results`` atomically; returns the file written."""
    doc = results.to_dict()
    for kind in REQUIRED:
        validate_records(kind, doc[kind], results.chapter)
    path = results_path(results.chapter, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_results(path: str | Path) -> ChapterResults:
    """Read and validate one results file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KLToolsError(f"no results file {path.name}; execute the chapter first") from None
    except json.JSONDecodeError as exc:
        raise KLToolsError(
            f"{path.name} is not valid JSON ({exc.msg}); re-execute the chapter"
        ) from None
    return ChapterResults.from_dict(doc, path.name)


def collect_results(
    directory: str | Path | None = None, profile: str | None = None
) -> list[ChapterResults]:
    """Every chapter's results in ``directory`` (sorted by chapter), optionally of one profile."""
    folder = Path(directory or results_dir())
    found = [read_results(p) for p in sorted(folder.glob(f"*{_SUFFIX}"))]
    return [r for r in found if profile is None or r.profile == profile]


def records(results: Sequence[ChapterResults], kind: str) -> list[dict[str, Any]]:
    """All records of one kind over several chapters, in chapter order."""
    if kind not in REQUIRED:
        raise KLToolsError(f"unknown record kind {kind!r}; one of {', '.join(REQUIRED)}")
    return [rec for r in results for rec in getattr(r, kind)]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays and NaN into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
