"""The results contract between chapters and pages (kltools.results)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kltools.errors import KLToolsError
from kltools.results import (
    SCHEMA,
    ChapterResults,
    collect_results,
    read_results,
    records,
    results_path,
    write_results,
)


def _example(chapter: str = "seeds_sizes", profile: str = "smoke") -> ChapterResults:
    return ChapterResults(
        chapter=chapter,
        profile=profile,
        parameters={"n_texts": 32, "steps": [1, 2]},
        pairs=[
            {
                "chapter": chapter,
                "setting": "Seed",
                "a": "smoke-s@step16",
                "b": "smoke-s-seed1@step16",
                "kl_bpb": np.float64(0.25),
                "n_texts": np.int64(31),
                "mean_bytes": 500.5,
                "lo": float("nan"),
            }
        ],
        claims=[
            {
                "chapter": chapter,
                "claim": "later<seed<size",
                "verdict": "not tested",
                "reason": "no seeds",
            }
        ],
    )


def test_round_trip_plain_json(tmp_path):
    path = write_results(_example(), tmp_path)
    assert path == results_path("seeds_sizes", tmp_path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA
    assert doc["pairs"][0]["lo"] is None  # NaN is not valid JSON
    back = read_results(path)
    assert back.pairs[0]["kl_bpb"] == 0.25 and back.pairs[0]["n_texts"] == 31
    assert back.parameters == {"n_texts": 32, "steps": [1, 2]}


def test_bad_verdict_and_missing_key_refused(tmp_path):
    bad = _example()
    bad.claims[0]["verdict"] = "maybe"
    with pytest.raises(KLToolsError, match="not one of holds"):
        write_results(bad, tmp_path)
    bad = _example()
    del bad.pairs[0]["mean_bytes"]
    with pytest.raises(KLToolsError, match="lacks mean_bytes"):
        write_results(bad, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_collect_filters_profile(tmp_path):
    write_results(_example("a", "smoke"), tmp_path)
    write_results(_example("b", "tiny"), tmp_path)
    got = collect_results(tmp_path, profile="smoke")
    assert [r.chapter for r in got] == ["a"]
    assert len(records(collect_results(tmp_path), "claims")) == 2


def test_unreadable_file_one_line(tmp_path):
    (tmp_path / "x.results.json").write_text("{")
    with pytest.raises(KLToolsError, match="not valid JSON"):
        read_results(tmp_path / "x.results.json")
    with pytest.raises(KLToolsError, match="execute the chapter first"):
        read_results(tmp_path / "missing.results.json")


def test_integrity_findings_are_saved_once_per_chapter_and_listed(tmp_path, monkeypatch):
    """A chapter's integrity findings go into its results file, and ``book results`` lists a
    checkpoint found by two chapters once."""
    import pandas as pd

    from kltools import chapter_results
    from kltools.book.scoreboard import format_results
    from kltools.config import Settings

    monkeypatch.setenv("KLTOOLS_BUILD_ROOT", str(tmp_path))
    found = pd.DataFrame(
        [
            {"run": "r", "step": 1, "finding": "copy", "same_as": "r@0", "evidence": "same vector",
             "check": "vectors"},
            {"run": "r", "step": 8, "finding": "missing vector", "same_as": "", "evidence": "NaN",
             "check": "store"},
        ]
    )  # fmt: skip
    s = Settings(profile="smoke")
    paths = [chapter_results.save(s, ch, findings=found) for ch in ("trajectories", "consecutive")]
    results = [read_results(p) for p in paths]
    assert [len(r.findings) for r in results] == [2, 2]
    assert results[0].findings[0]["chapter"] == "trajectories"
    text = format_results(results, "text", "findings")
    assert text.splitlines()[0] == "checkpoint-integrity findings: 2"
    assert "r@1: copy of r@0" in text
