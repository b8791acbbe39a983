"""Our extraction against the authors': the comparison on a fixture release, written from the
definitions (max |Δ|, correlation, half the variance of the difference over B̄ ln 2)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kltools.errors import KLToolsError
from kltools.released import open_release
from kltools.released.compare import compare_pretraining, local_release
from kltools.released.layout import text_ids
from kltools.released.synthetic import write_synthetic_release


def test_compare_pretraining_is_the_definition(tmp_path: Path) -> None:
    contents = write_synthetic_release(tmp_path / "rel")
    rel = open_release(tmp_path / "rel")
    texts = contents["texts"]
    n = len(texts)
    theirs = contents["pretraining"]["410m"]
    steps = [s for s in (1000, 2000, 3000) if theirs.get(s) is not None]
    rng = np.random.default_rng(0)
    ours = np.stack([np.asarray(theirs[s], np.float64) + rng.normal(0, 0.01, n) for s in steps])
    da = xr.DataArray(
        ours[None],
        dims=("model", "step", "text"),
        coords={"model": ["pythia-410m"], "step": steps, "text": list(text_ids(n))},
    )
    table = compare_pretraining(da, rel)
    assert list(table.step) == steps
    mb = np.mean([len(t.encode("utf-8")) for t in texts])
    for row, s, v in zip(table.itertuples(), steps, ours):
        d = v - np.asarray(theirs[s], np.float64)
        assert row.max_abs_nats == pytest.approx(np.abs(d).max())
        assert row.correlation == pytest.approx(np.corrcoef(v, theirs[s])[0, 1])
        assert row.kl_bpb == pytest.approx(np.mean((d - d.mean()) ** 2) / 2 / (mb * math.log(2)))
    with pytest.raises(KLToolsError, match="texts.json"):
        compare_pretraining(da.isel(text=slice(0, n - 1)), rel)


def test_local_release_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLTOOLS_RELEASED_DIR", raising=False)
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path / "data"))
    assert local_release() is None
    monkeypatch.setenv("KLTOOLS_RELEASED_DIR", str(tmp_path / "rel"))
    assert local_release() is None  # not a folder
    write_synthetic_release(tmp_path / "rel")
    assert local_release() == tmp_path / "rel"
