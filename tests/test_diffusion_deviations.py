"""Diffusion fits on one checkpoint grid (both spaces alike; a missing checkpoint fitted around
and its start interpolated), and the deviations table computed from the profiles."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import yaml

from kltools.config import Settings
from kltools.grid import first_even_step
from kltools.settings import diffusion as D
from kltools.sources.pythia import pythia_steps
from kltools.suite import get_profile

GRID = [0, 1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72]


def test_first_evenly_spaced_step() -> None:
    assert first_even_step(pythia_steps()) == 1000
    assert first_even_step(get_profile("tiny").checkpoint_steps()) == 70
    assert first_even_step(GRID) == 8


def _power_law(c: float, missing: int | None) -> dict[tuple[int, int], float]:
    """D(t, t') = (t' - t)^c for every pair, except those touching a missing checkpoint."""
    steps = [t for t in GRID if t != missing]
    return {(a, b): float((b - a) ** c) for i, a in enumerate(steps) for b in steps[i + 1 :]}


def _stacked(tables: dict[str, dict[tuple[int, int], float]]) -> xr.DataArray:
    return D._stack(tables, GRID, 3, "D")


def test_missing_checkpoint_is_fitted_around_and_its_start_interpolated() -> None:
    s = Settings(profile="smoke", window=3, min_start=0)
    Dm = _stacked({"full": _power_law(0.5, None), "gap": _power_law(0.5, 32)})
    fit = D.exponents(s, Dm)
    inside = [8, 16, 24, 32, 40, 48]  # starts whose window lies inside the grid
    assert fit.step.values[np.isfinite(fit.c.sel(model="full").values)].tolist() == inside
    fit = fit.sel(step=inside)
    np.testing.assert_allclose(fit.c.sel(model="full"), 0.5, atol=1e-9)
    # windows that lose the missing point are fitted on the others; the start at 32 is
    # interpolated from its neighbours and marked
    np.testing.assert_allclose(fit.c.sel(model="gap"), 0.5, atol=1e-9)
    assert fit.interpolated.sel(model="gap").values.tolist() == [
        False,
        False,
        False,
        True,
        False,
        False,
    ]
    assert not fit.interpolated.sel(model="full").values.any()


def test_both_spaces_go_through_the_same_grid() -> None:
    """A weight table over the available steps only (lag = k-th *available* checkpoint) lands
    on the same grid cells as a log-likelihood table with the missing checkpoint NaN."""
    w, delta = D.on_grid(_power_law(1.0, 32), GRID, 3)
    ll, delta_l = D.on_grid(
        {k: v for k, v in _power_law(1.0, None).items() if 32 not in k}, GRID, 3
    )
    np.testing.assert_array_equal(np.isnan(w), np.isnan(ll))
    np.testing.assert_array_equal(delta, delta_l)
    i24 = GRID.index(24)
    assert np.isnan(w[i24, 0]) and w[i24, 1] == pytest.approx(16.0)  # 24 → 40 is two grid steps


def test_deviations_are_computed_from_the_profile() -> None:
    from kltools.deviations import chapter_table, deviations, page
    from kltools.paths import project_root

    tiny = Settings()
    text = " ".join(f"{d.topic}: {d.ours}" for d in deviations(tiny))
    steps = get_profile("tiny").checkpoint_steps()
    assert f"{steps[-1]} steps, {len(steps)} checkpoints (every 10 after 64)" in text
    assert "first/last 10 of 25 one-interval pairs per size" in text
    assert "the first 300 texts" in text
    assert set(chapter_table(tiny, "layers").topic) >= {"layer models", "texts"}
    doc = yaml.safe_load((project_root() / "params" / "pythia.yaml").read_text())
    merged = dict(doc["common"])
    for section in doc["chapters"].values():
        merged.update(section or {})
    pythia = Settings.from_parameters(merged)
    # the paper's own setting: only what the paper leaves open or the book adds
    assert [d.topic for d in deviations(pythia, rehearsal=False)] == [
        "weight dtype and log-softmax",
        "batch size and padding",
        "quantization baseline",
        "fine-tuning edge source",
        "numerical floor",
    ]  # the paper's model sets (the authors' metadata) are no deviation
    off = [d.topic for d in deviations(pythia.replace(weight_space=False), rehearsal=False)]
    assert "weight-space exponents" in off  # c_l < c_W is then not tested
    thinned = pythia.replace(steps=[1000, 2000, 3000], window=3, dtype="float32")
    topics = [d.topic for d in deviations(thinned, rehearsal=True)]
    assert {"checkpoints", "diffusion window", "weight dtype and log-softmax"} <= set(topics)
    assert {"models (rehearsal)", "model sets (rehearsal)"} <= set(topics)
    assert "3 of them" in " ".join(d.ours for d in deviations(thinned, rehearsal=False))
    assert "## Profile `pythia`" in page() and "## Rehearsal of `pythia`" in page()


def test_the_deviations_page_is_generated_from_the_code() -> None:
    """book/deviations.md is kltools.deviations.page() (regenerate it when a profile changes)."""
    from kltools.deviations import page
    from kltools.paths import project_root

    assert (project_root() / "book" / "deviations.md").read_text() == page()
