"""The checkpoint-integrity audit flags copies, revisions without weights and missing vectors,
on fixtures of every kind of source: a store (extracted or imported vectors), a Hugging Face
cache in its documented layout (hub specs), run folders of step checkpoints (the suite), and
the real smoke suite with one checkpoint made a byte copy of another; ``exclude_copies`` drops
the copies' pairs from the pretraining settings."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kltools import integrity as I
from kltools.exchange import import_vectors
from kltools.rehearsal.hubcache import write_snapshot
from kltools.sources import Run
from kltools.store import open_store
from kltools.texts import TextSet

TEXTS = TextSet(
    name="integrity",
    ids=tuple(f"t{i}" for i in range(6)),
    texts=("one text", "a second text", "Größe 東京", "four", "the fifth text", "six six"),
)


def _run(name: str, steps: tuple[int, ...], spec_base: str | None = None) -> Run:
    return Run(name, spec_base or name, "s", 0, steps, 1, False, True)


def _findings(frame: pd.DataFrame) -> set[tuple[str, int, str, str | None]]:
    return {
        (r, int(t), f, None if pd.isna(s) else s)
        for r, t, f, s in zip(frame.run, frame.step, frame.finding, frame.same_as)
    }


# ------------------------------------------------------------------------------ (a) a store


@pytest.fixture(scope="module")
def imported_store(tmp_path_factory) -> tuple[Path, dict[tuple[str, int], np.ndarray]]:
    """A store written by ``import_vectors`` from a netCDF file of (model, step) units."""
    rng = np.random.default_rng(0)
    v = {k: rng.normal(-50.0, 10.0, len(TEXTS.ids)).astype(np.float32) for k in range(6)}
    ulp = v[2].copy()
    ulp[-1] = np.nextafter(ulp[-1], np.float32(0))  # one float32 step away: not a copy
    nan_some = v[4].copy()
    nan_some[1] = np.nan
    vectors = {
        ("a", 0): v[0],
        ("a", 1): v[0].copy(),  # a copy of a@0
        ("a", 2): v[1],
        ("a", 4): v[1].copy(),  # a copy of a@2 …
        ("a", 8): v[1].copy(),  # … and a@8 is the final step: a@2 and a@4 copy a@8
        ("b", 0): v[0].copy(),  # equal to a@0, but another run: not a copy
        ("b", 1): v[2],
        ("b", 2): ulp,
        ("b", 4): nan_some,  # NaN for one text (the release's missing entries are all-NaN)
        ("b", 8): np.full(len(TEXTS.ids), np.nan, np.float32),  # the release's None
        # c has no vector at step 2 (absent from the store: NaN in its grid)
        ("c", 0): v[3],
        ("c", 1): v[5],
        ("c", 4): v[4],
        ("c", 8): v[2],
    }
    keys = list(vectors)
    flat = xr.Dataset(
        {"loglik": (("unit", "text"), np.stack([vectors[k] for k in keys]))},
        coords={
            "model": ("unit", [m for m, _ in keys]),
            "step": ("unit", np.asarray([t for _, t in keys], dtype=np.int64)),
            "spec": ("unit", [f"{m}@step{t}" for m, t in keys]),
            "text": ("text", list(TEXTS.ids)),
        },
    )
    folder = tmp_path_factory.mktemp("integrity_store")
    flat.to_netcdf(folder / "vectors.nc")
    import_vectors(folder / "vectors.nc", folder / "s.zarr", texts=TEXTS)
    return folder / "s.zarr", vectors


def _reference_vector_findings(vectors, runs):
    """From the definition: equal float32 bytes within a run; a group holding the run's final
    step copies it, any other group its earliest step; NaN or absent = missing."""
    copies, missing = set(), set()
    for run in runs:
        have = {t: vectors.get((run.model, t)) for t in run.steps}
        finite = {t: x for t, x in have.items() if x is not None and np.isfinite(x).all()}
        for t in run.steps:
            if t not in finite:
                missing.add((run.model, t, "missing vector", None))
        for t, x in finite.items():
            same = sorted(u for u, y in finite.items() if y.tobytes() == x.tobytes())
            keep = max(run.steps) if max(run.steps) in same else same[0]
            if t != keep:
                copies.add((run.model, t, "copy", f"{run.model}@step{keep}"))
    return copies, missing


def test_store_copies_and_missing_vectors_match_the_definition(imported_store) -> None:
    path, vectors = imported_store
    ds = open_store(path, dims=("model", "step"))
    runs = [_run(m, (0, 1, 2, 4, 8)) for m in ("a", "b", "c")]
    found = I.audit(ds.loglik, runs, weights=False)
    copies, missing = _reference_vector_findings(vectors, runs)
    assert copies == {
        ("a", 1, "copy", "a@step0"),
        ("a", 2, "copy", "a@step8"),
        ("a", 4, "copy", "a@step8"),
    }
    assert missing == {
        ("b", 4, "missing vector", None),
        ("b", 8, "missing vector", None),
        ("c", 2, "missing vector", None),
    }
    assert _findings(found) == copies | missing
    assert set(found.check) == {"vectors", "store"}
    assert list(found.columns) == list(I.COLUMNS)
    assert found.attrs["vectors"] == sum(
        np.isfinite(vectors.get((r.model, t), [np.nan])).all() for r in runs for t in r.steps
    )
    partial = found[(found.run == "b") & (found.step == 4)].evidence.item()
    assert "1 of 6 texts" in partial
    # a step a run does not list (an excluded checkpoint) is not missing
    narrowed = [_run("c", (0, 1, 4, 8))]
    assert I.missing_vectors(ds.loglik, narrowed).empty


def test_drop_copies_sets_only_the_copies_to_nan(imported_store) -> None:
    path, _ = imported_store
    ll = open_store(path, dims=("model", "step")).loglik
    runs = [_run(m, (0, 1, 2, 4, 8)) for m in ("a", "b", "c")]
    dropped = I.drop_copies(ll, I.audit(ll, runs, weights=False))
    gone = ~np.isfinite(dropped).all("text") & np.isfinite(ll).all("text")
    pairs = {
        (str(gone.model.values[i]), int(gone.step.values[j]))
        for i, j in zip(*np.nonzero(gone.values))
    }
    assert pairs == {("a", 1), ("a", 2), ("a", 4)}
    assert np.isfinite(ll).all("text").sel(model="a", step=1)  # the input is left alone


# ------------------------------------------------------------------------------ (b) a hub cache

REPO = "EleutherAI/pythia-integrity"


def _folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    out = root / name
    out.mkdir(parents=True)
    (out / "config.json").write_text('{"model_type": "gpt_neox"}')
    (out / "README.md").write_text(f"revision {name}\n")  # every revision is its own commit
    for rel, data in files.items():
        (out / rel).write_bytes(data)
    return out


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch) -> dict[str, bytes]:
    """A cache in the documented layout: step0/step1 share a blob (other commits), step2
    shares the final step's blobs, step3 has no weights, step4 is absent; the final step6
    (also main) and step5 are sharded, step5 sharing only its first shard (not a copy)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    w = {k: os.urandom(4096) for k in ("early", "mid", "s1", "s2", "s2b")}
    revisions = {
        "step0": {"model.safetensors": w["early"], "pytorch_model.bin": w["mid"]},
        "step1": {"model.safetensors": w["early"]},
        "step2": {"model-00001-of-00002.safetensors": w["s1"],
                  "model-00002-of-00002.safetensors": w["s2"]},
        "step3": {},
        "step5": {"model-00001-of-00002.safetensors": w["s1"],
                  "model-00002-of-00002.safetensors": w["s2b"]},
        "step6": {"model-00001-of-00002.safetensors": w["s1"],
                  "model-00002-of-00002.safetensors": w["s2"]},
    }  # fmt: skip
    for rev, files in revisions.items():
        refs = [rev, "main"] if rev == "step6" else [rev]
        write_snapshot(cache, REPO, _folder(tmp_path / "src", rev, files), refs)
    return w


def test_hub_cache_copies_and_revisions_without_weights(hub_cache) -> None:
    run = _run("pythia-integrity", (0, 1, 2, 3, 4, 5, 6), spec_base=REPO)
    found = I.audit(None, [run])
    assert _findings(found) == {
        ("pythia-integrity", 1, "copy", "pythia-integrity@step0"),
        ("pythia-integrity", 2, "copy", "pythia-integrity@step6"),
        ("pythia-integrity", 3, "no weights", None),
    }
    assert found.attrs["weights"] == 6  # step4 is not in the cache: not checked
    # the evidence names the blob, whose name is the sha256 of the weights' bytes
    step1 = found[found.step == 1].evidence.item()
    assert "hub cache" in step1 and hashlib.sha256(hub_cache["early"]).hexdigest()[:12] in step1
    # read by blob name, not hashed: a blob rewritten in place keeps its name and its verdict
    Path(os.path.realpath(_snapshot_file(REPO, "step1"))).write_bytes(b"changed")
    assert _findings(I.audit(None, [run])) == _findings(found)
    # offline, a revision the cache lacks is not asked of the hub
    assert I.checkpoint_weights(f"{REPO}@step4") is None


def _snapshot_file(repo: str, rev: str) -> Path:
    from huggingface_hub import constants

    base = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    commit = (base / "refs" / rev).read_text()
    return base / "snapshots" / commit / "model.safetensors"


# ------------------------------------------------------------------------------ (c) a suite-like run


def test_run_folder_copies_by_file_hash(tmp_path: Path, make_tiny_neox) -> None:
    """Step folders of real tiny models; step1 is a byte copy of step0, step3 lost its weights."""
    run_dir = tmp_path / "run"
    for step, seed in ((0, 0), (1, 0), (2, 1), (3, 2), (4, 3)):
        shutil.copytree(make_tiny_neox(seed), run_dir / f"step{step}")
    (run_dir / "step3" / "model.safetensors").unlink()
    run = _run("tiny-run", (0, 1, 2, 3, 4), spec_base=str(run_dir))
    found = I.audit(None, [run])
    assert _findings(found) == {
        ("tiny-run", 1, "copy", "tiny-run@step0"),
        ("tiny-run", 3, "no weights", None),
    }
    sha = hashlib.sha256((run_dir / "step0" / "model.safetensors").read_bytes()).hexdigest()
    assert sha[:12] in found[found.step == 1].evidence.item()
    assert found.attrs["weights"] == 5


# ------------------------------------------------------------------------------ the smoke suite

#: the checkpoint made a byte copy of the one before it (a main size, in the Early window)
COPY_RUN, COPY_STEP, COPY_OF = "smoke-m", 24, 16


@pytest.fixture(scope="module")
def copied_smoke(tmp_path_factory, smoke_suite_root):
    """The smoke suite with ``smoke-m@step24`` replaced by a byte copy of ``step16`` (every
    other run linked to the built suite), its own data root, and the consecutive chapter's
    settings without preprocessing (so the reference KL below is the definition itself)."""
    from kltools import book
    from kltools import settings as S
    from kltools.config import Settings

    root = tmp_path_factory.mktemp("copied_suite")
    (root / "smoke").mkdir()
    for entry in (smoke_suite_root / "smoke").iterdir():
        if entry.name == COPY_RUN:
            shutil.copytree(entry, root / "smoke" / entry.name)
        else:
            (root / "smoke" / entry.name).symlink_to(entry)
    run_dir = root / "smoke" / COPY_RUN
    shutil.copyfile(
        run_dir / f"step{COPY_OF}" / "model.safetensors",
        run_dir / f"step{COPY_STEP}" / "model.safetensors",
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("KLTOOLS_SUITE_ROOT", str(root))
    mp.setenv("KLTOOLS_DATA_ROOT", str(tmp_path_factory.mktemp("copied_data")))
    S.clear_caches()
    doc = book.load_profile("smoke")
    name = "consecutive"
    params = book.resolve_parameters(name, doc, book.declared_parameters(book.notebook_path(name)))
    yield Settings.from_parameters(params).replace(preprocess=False)
    S.clear_caches()
    mp.undo()


def _bpb(a: np.ndarray, b: np.ndarray, text_bytes: np.ndarray) -> float:
    """KL of two log-likelihood vectors from the definition: half the population variance of
    their difference (nats per text), over B̄ ln 2 (bits per byte)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.mean((d - d.mean()) ** 2) / 2 / (np.mean(text_bytes) * math.log(2)))


@pytest.mark.slow
def test_smoke_copy_is_found_and_exclude_copies_drops_its_pairs(copied_smoke) -> None:
    from kltools.settings import pretraining as P

    s = copied_smoke
    found = P.audit(s)
    copies = found[found.finding == "copy"]
    assert set(zip(copies.run, copies.step, copies.same_as, copies.check)) == {
        (COPY_RUN, COPY_STEP, f"{COPY_RUN}@step{COPY_OF}", "vectors"),
        (COPY_RUN, COPY_STEP, f"{COPY_RUN}@step{COPY_OF}", "weights"),
    }
    assert not (found.finding != "copy").any()
    assert found.attrs["vectors"] == found.attrs["weights"] == found.attrs["checkpoints"]

    ll = P.pretraining_store(s).loglik.sel(model=COPY_RUN).astype(np.float64)
    tb = ll["text_bytes"].values
    steps = [int(t) for t in ll.step.values]

    def pairs(frame: pd.DataFrame) -> dict[tuple[int, int], float]:
        own = frame[frame.model == COPY_RUN]
        return dict(zip(zip(own.step, own.step_next), own.kl))

    kept = pairs(P.consecutive(s, "sizes").frame)
    assert list(kept) == list(zip(steps[:-1], steps[1:]))
    assert kept[(COPY_OF, COPY_STEP)] == 0.0  # the authors' code keeps a pair of copies

    left = s.replace(exclude_copies=True)
    dropped = pairs(P.consecutive(left, "sizes").frame)
    rest = [t for t in steps if t != COPY_STEP]
    assert list(dropped) == list(zip(rest[:-1], rest[1:]))
    for (t0, t1), kl in dropped.items():
        ref = _bpb(ll.sel(step=t0).values, ll.sel(step=t1).values, tb)
        assert kl == pytest.approx(ref, rel=1e-9), (t0, t1)
    # Early loses the pair of copies; the other runs' pairs are untouched
    early_kept = P.early(s).frame
    early_left = P.early(left).frame
    assert f"{COPY_RUN}@step{COPY_STEP}" in set(early_kept.b)
    assert f"{COPY_RUN}@step{COPY_STEP}" not in set(early_left.a) | set(early_left.b)
    others = early_kept[early_kept.model != COPY_RUN].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        others, early_left[early_left.model != COPY_RUN].reset_index(drop=True)
    )
    effect = P.copies_effect(s)
    assert "Consecutive" in set(effect.setting)  # one pair fewer
    changed = len(early_kept) != len(early_left) or (
        early_kept.kl.median() != early_left.kl.median()
    )
    assert ("Early" in set(effect.setting)) == changed
    if changed:
        row = effect.set_index("setting").loc["Early"]
        assert row["median (copies kept)"] == early_kept.kl.median()
        assert row["median (copies left out)"] == early_left.kl.median()
    assert "Size" not in set(effect.setting)  # the final checkpoints are not copies
    text = P.integrity_note(s)
    assert "1 checkpoint is a copy" in text and "exactly 0" in text and "Consecutive" in text
    table = P.integrity(s)
    assert table.set_index(["evidence", "finding"]).loc[("weight files", "copy"), "found"] == 1


# ------------------------------------------------------------------------------ the rehearsal hub


@pytest.fixture(scope="module")
def rehearsal_cache(shared_build) -> Path:
    """The smoke rehearsal's hub cache (built once per run, as ``tests/test_rehearsal.py``)."""
    from kltools.rehearsal import build_rehearsal

    given = os.environ.get("KLTOOLS_TEST_REHEARSAL")
    with shared_build("rehearsal", given) as root:
        build_rehearsal(root, smoke=True, jobs=1, verbose=False)
    return root / "hub"


@pytest.mark.slow
def test_rehearsal_hub_audit(rehearsal_cache: Path, tmp_path: Path, monkeypatch) -> None:
    """On the rehearsal hub the audit's copies are the revisions whose weight files hash alike
    (hashed here, from the bytes); today there are none: its step0 and step1 differ, unlike the
    real hub's. A revision made to serve step0's weight blob, as the hub does, is a copy."""
    from huggingface_hub import constants

    from kltools.config import Settings
    from kltools.rehearsal.hubcache import cached_revisions, repo_folder
    from kltools.sources import pretraining_runs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(rehearsal_cache))
    runs = pretraining_runs(Settings(profile="pythia"))
    found = I.audit(None, runs)
    expected, n_held = set(), 0
    for r in runs:
        revs = cached_revisions(rehearsal_cache, r.spec_base)
        content = {}
        for t in r.steps:
            if f"step{t}" not in revs:
                continue
            snap = repo_folder(rehearsal_cache, r.spec_base) / "snapshots" / revs[f"step{t}"]
            files = sorted(snap.glob("*.safetensors")) or sorted(snap.glob("*.bin"))
            content[t] = frozenset(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
            if not files:
                expected.add((r.model, t, "no weights", None))
        n_held += len(content)
        for t, key in content.items():
            same = sorted(u for u, k in content.items() if k == key and k)
            keep = max(r.steps) if max(r.steps) in same else (same[0] if same else t)
            if t != keep:
                expected.add((r.model, t, "copy", f"{r.model}@step{keep}"))
    assert _findings(found) == expected
    assert found.attrs["weights"] == n_held > 0

    # a copy of pythia-410m's cache folder in which step1's snapshot links to step0's blobs
    repo = "EleutherAI/pythia-410m"
    cache = tmp_path / "hub"
    src, dst = repo_folder(rehearsal_cache, repo), repo_folder(cache, repo)
    dst.mkdir(parents=True)
    (dst / "blobs").symlink_to(src / "blobs")
    shutil.copytree(src / "refs", dst / "refs")
    shutil.copytree(src / "snapshots", dst / "snapshots", symlinks=True)
    revs = cached_revisions(cache, repo)
    step1 = dst / "snapshots" / revs["step1"]
    for link in step1.glob("*.safetensors"):
        target = os.readlink(dst / "snapshots" / revs["step0"] / link.name)
        link.unlink()
        link.symlink_to(target)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    run = next(r for r in runs if r.spec_base == repo)
    found = I.audit(None, [run])
    assert _findings(found) == {(run.model, 1, "copy", f"{run.model}@step0")}
    blob = Path(os.readlink(step1 / "model.safetensors")).name
    assert blob[:12] in found.evidence.item()


def test_the_hubs_listing_gives_the_lfs_sha256_of_the_weight_files() -> None:
    """What the online check reads (tests run offline): a listing as the hub's API returns it."""
    from huggingface_hub.hf_api import ModelInfo

    def lfs(name: str, sha: str) -> dict:
        return {"rfilename": name, "size": 9, "lfs": {"size": 9, "sha256": sha, "pointerSize": 134}}

    info = ModelInfo(
        id=REPO,
        sha="0" * 40,
        siblings=[
            {"rfilename": "config.json", "size": 5},
            lfs("pytorch_model.bin", "b" * 64),
            lfs("model.safetensors", "a" * 64),
            lfs("subfolder/model.safetensors", "c" * 64),
        ],
    )
    got = I.listing_weights(info)
    assert got.files == (("model.safetensors", "a" * 64),) and got.where == "hub"
    only_bin = ModelInfo(id=REPO, sha="0" * 40, siblings=[lfs("pytorch_model.bin", "b" * 64)])
    assert I.listing_weights(only_bin).key == frozenset({"b" * 64})
    empty = ModelInfo(id=REPO, sha="0" * 40, siblings=[{"rfilename": "config.json", "size": 5}])
    assert I.listing_weights(empty).files == ()
