"""The rehearsal hub: the pythia profile's hub code path, offline, on the smoke rehearsal.

Builds ``kltools rehearsal build --smoke`` once per session (or reuses the root named by
``$KLTOOLS_TEST_REHEARSAL``) and checks: the cache layout is the one ``huggingface_hub``
reads; kltools resolves and loads ``EleutherAI/pythia-410m@step1000`` from it and records that
revision's commit in the store; hub tokenizers behave like the real ones (Llama adds a BOS,
Pythia does not); bitsandbytes loads at load time on the CPU; lineages are in the model cards;
a missing repository or revision fails at once with one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kltools.rehearsal import plan as P

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ the plan (no torch)


def test_step_map_is_monotone_and_covers_the_paper_grid() -> None:
    grid = P.pythia_step_grid()
    assert len(grid) == 154 and grid[0] == 0 and grid[-1] == P.PYTHIA_FINAL_STEP
    updates = [P.update_of_step(s) for s in grid]
    assert updates == sorted(set(updates)) and updates[-1] == P.TOTAL_UPDATES
    assert P.update_of_step(1000) < P.WARMUP_UPDATES <= P.update_of_step(2000)
    for smoke in (False, True):
        assert set(P.rehearsal_steps(smoke)) <= set(grid)
    with pytest.raises(Exception, match="step3"):
        P.update_of_step(3)


def test_full_plan_holds_what_the_pythia_profile_asks_for() -> None:
    from kltools.config import Settings
    from kltools.settings.stores import pretraining_units

    runs = {r.repo: r for r in P.pythia_runs()}
    assert len(runs) == 5 + 9  # every size, and PolyPythia seeds 1..9 (3 and 4 included)
    assert "EleutherAI/pythia-410m-seed3" in runs and "EleutherAI/pythia-410m-seed4" in runs
    assert 116000 not in runs["EleutherAI/pythia-1b"].steps
    assert {115000, 116000, 117000} <= set(runs["EleutherAI/pythia-410m"].steps)
    steps = P.rehearsal_steps()
    for unit in pretraining_units(Settings(profile="pythia", steps=steps)):
        repo, rev = unit.spec.split("@")
        assert int(rev.removeprefix("step")) in runs[repo].steps, unit.spec
    hub = {h.repo: h for h in P.hub_models()}
    for repo in P.params_models():
        assert repo in runs or repo in hub, repo
    for e in P.lineage_entries():
        assert hub[e["model"]].parent == e.get("parent")
    assert set(hub) == set(P.params_models()) - set(runs) | {
        x for e in P.lineage_entries() for x in (e["model"], e["parent"]) if x
    }  # what the parameters name, nothing more
    # 4-bit bitsandbytes on the CPU needs widths divisible by 64
    for h, _, _ in P.PYTHIA_SHAPES.values():
        assert h % 64 == 0
    for _, _, fields in P.ARCHITECTURES.values():
        assert fields["hidden_size"] % 64 == 0 and fields["intermediate_size"] % 64 == 0


# ------------------------------------------------------------------------------ the built smoke hub


@pytest.fixture(scope="session")
def rehearsal_root(shared_build) -> Path:
    from kltools.rehearsal import build_rehearsal

    given = os.environ.get("KLTOOLS_TEST_REHEARSAL")
    with shared_build("rehearsal", given) as root:  # once for all workers of the run
        build_rehearsal(root, smoke=True, jobs=1, verbose=False)
    return root


@pytest.fixture
def hub(rehearsal_root: Path, monkeypatch) -> Path:
    """Point this process (and its children) at the rehearsal cache, offline."""
    from huggingface_hub import constants

    cache = rehearsal_root / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _ref(cache: Path, repo: str, rev: str) -> str:
    return (cache / ("models--" + repo.replace("/", "--")) / "refs" / rev).read_text()


def test_layout_is_the_hub_cache_layout(hub: Path, rehearsal_root: Path) -> None:
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub)
    assert info.warnings == []
    manifest = json.loads((rehearsal_root / "rehearsal.json").read_text())
    planned = [r.repo for r in P.pythia_runs(True)] + [h.repo for h in P.hub_models(True)]
    assert sorted(r.repo_id for r in info.repos) == sorted(planned) == sorted(manifest["repos"])
    commits = []
    for repo in info.repos:
        assert {r.commit_hash for r in repo.revisions} == set(
            manifest["repos"][repo.repo_id]["revisions"].values()
        )
        for rev in repo.revisions:
            assert re.fullmatch(r"[0-9a-f]{40}", rev.commit_hash)
            commits.append(rev.commit_hash)
    assert len(commits) == len(set(commits))  # distinct commits across revisions and repos
    r410 = manifest["repos"]["EleutherAI/pythia-410m"]["revisions"]
    assert r410["main"] == r410["step143000"] == _ref(hub, "EleutherAI/pythia-410m", "main")
    assert "step116000" not in manifest["repos"]["EleutherAI/pythia-1b"]["revisions"]
    assert "step116000" in r410
    # a weight blob is named by the sha256 of its content, as git-LFS files are on the hub
    snap = hub / "models--EleutherAI--pythia-410m" / "snapshots" / r410["step1000"]
    blob = (snap / "model.safetensors").resolve()
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()
    assert os.readlink(snap / "model.safetensors") == f"../../blobs/{blob.name}"


def test_pythia_410m_step1000_resolves_loads_and_its_commit_is_recorded(
    hub: Path, rehearsal_root: Path, tmp_path: Path
) -> None:
    import kltools
    from kltools.models import load_model, resolve_model
    from kltools.texts import load_texts

    commit = _ref(hub, "EleutherAI/pythia-410m", "step1000")
    ref = resolve_model("EleutherAI/pythia-410m@step1000")
    assert (ref.kind, ref.path_or_id, ref.revision, ref.commit) == (
        "hub", "EleutherAI/pythia-410m", "step1000", commit
    )  # fmt: skip
    loaded = load_model(ref, device="cpu")
    assert type(loaded.model).__name__ == "GPTNeoXForCausalLM"
    assert loaded.info["commit"] == commit
    texts = load_texts(rehearsal_root / "texts" / "pile.jsonl").subset(n=6)
    specs = {
        "EleutherAI/pythia-410m@step0": 0,
        "EleutherAI/pythia-410m@step1000": 1000,
        "EleutherAI/pythia-410m@step2000": 2000,
        "EleutherAI/pythia-410m@step115000": 115000,
        "EleutherAI/pythia-410m@step116000": 116000,
    }
    units = [kltools.Unit(s, {"model": "pythia-410m", "step": st}) for s, st in specs.items()]
    ds = kltools.extract(units, texts, tmp_path / "s.zarr", device="cpu", progress=False)
    recorded = json.loads(kltools.open_store(tmp_path / "s.zarr").attrs["units"])
    assert len(recorded) == len(units)
    for rec in recorded:
        repo, rev = rec["spec"].split("@")
        assert rec["resolved"]["commit"] == _ref(hub, repo, rev)
    ll = ds.loglik.sel(model="pythia-410m")
    assert np.isfinite(ll.values).all()
    kl = kltools.kl_matrix(ll, dim="step")
    # checkpoints differ the way checkpoints do: early training moves far, late training little
    assert float(kl.sel(step=0, step_=1000)) > float(kl.sel(step=1000, step_=2000))
    assert float(kl.sel(step=1000, step_=2000)) > float(kl.sel(step=115000, step_=116000)) > 0


def test_hub_tokenizers_and_architectures(hub: Path) -> None:
    from kltools.models import load_model

    neox = load_model("EleutherAI/pythia-1b@step1000", device="cpu")
    llama = load_model("meta-llama/Llama-2-7b-hf", device="cpu")
    assert type(llama.model).__name__ == "LlamaForCausalLM"
    ids_neox = neox.tokenizer("hello world")["input_ids"]
    ids_llama = llama.tokenizer("hello world")["input_ids"]
    assert ids_llama[0] == llama.tokenizer.bos_token_id  # Llama adds its BOS, as the real one
    assert ids_neox[0] != neox.tokenizer.bos_token_id  # Pythia adds none
    assert (
        neox.info["commit"]
        != load_model("EleutherAI/pythia-410m-seed3@step1000", device="cpu").info["commit"]
    )


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_bitsandbytes_at_load_time_on_cpu(hub: Path, quantization: str) -> None:
    import bitsandbytes as bnb

    from kltools.extraction import score_texts
    from kltools.models import load_model

    q = load_model("meta-llama/Llama-2-7b-hf", device="cpu", quantization=quantization)
    cls = bnb.nn.Linear8bitLt if quantization == "int8" else bnb.nn.Linear4bit
    assert sum(isinstance(m, cls) for m in q.model.modules()) > 0
    texts = ["The quick brown fox jumps over the lazy dog.", "def f(x):\n    return x + 1\n"]
    quant = np.asarray(score_texts(q, texts).loglik)
    full = np.asarray(
        score_texts(load_model("meta-llama/Llama-2-7b-hf", device="cpu"), texts).loglik
    )
    assert np.isfinite(quant).all() and not np.array_equal(quant, full)
    assert np.abs(quant - full).max() < 0.5 * np.abs(full).max()  # close, not equal


def test_lineages_are_in_the_model_cards(hub: Path) -> None:
    from huggingface_hub import ModelCard

    for h in P.hub_models(smoke=True):
        card = ModelCard.load(h.repo)
        assert card.data.to_dict().get("base_model") == h.parent, h.repo


def test_hub_weight_distances_stream_the_cached_revisions(hub: Path) -> None:
    from safetensors.numpy import load_file

    from kltools.weightspace import hub_weight_distances

    steps = [1000, 2000, 3000, 4000]
    da = hub_weight_distances("EleutherAI/pythia-410m", steps, max_lag=2, device="cpu")
    snaps = hub / "models--EleutherAI--pythia-410m" / "snapshots"
    w = [load_file(str(snaps / _ref(hub, "EleutherAI/pythia-410m", f"step{s}") / "model.safetensors"))
         for s in steps]  # fmt: skip
    d = sum(
        float(
            (
                (w[1][k].astype(np.float32) - w[0][k].astype(np.float32)).astype(np.float64) ** 2
            ).sum()
        )
        for k in w[0]
    )
    assert da.sel(step=1000, lag=1).item() == pytest.approx(d, rel=1e-12)
    assert np.isnan(da.sel(step=4000, lag=1).item())


def test_diffusion_weight_distances_on_the_hub_path_equal_the_definition(
    hub: Path, tmp_path: Path, monkeypatch
) -> None:
    """The diffusion setting's D_W of a hub run, streamed from the cached revisions, equals the
    definition computed here from the snapshot files; the run's missing revision is skipped."""
    from safetensors.numpy import load_file

    from kltools.config import Settings
    from kltools.errors import KLToolsError
    from kltools.settings import diffusion

    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path / "data"))
    s = Settings(profile="pythia", window=2, weight_models=("pythia-1b",))
    grid = [512, 1000, 2000, 3000, 115000, 116000, 117000]
    da = diffusion.run_weight_distances(s, "pythia-1b", grid)
    steps = [t for t in grid if t != 116000]  # pythia-1b has no step116000 (on the hub either)
    assert da["step"].values.tolist() == steps
    snaps = hub / "models--EleutherAI--pythia-1b" / "snapshots"
    w = [load_file(str(snaps / _ref(hub, "EleutherAI/pythia-1b", f"step{t}") / "model.safetensors"))
         for t in steps]  # fmt: skip
    for i in range(len(steps)):
        for lag in (1, 2):
            got = da.sel(step=steps[i], lag=lag)
            if i + lag >= len(steps):
                assert np.isnan(got.item())
                continue
            ref = 0.0
            for k in w[i]:
                diff = w[i + lag][k].astype(np.float32) - w[i][k].astype(np.float32)
                ref += float((diff.astype(np.float64) ** 2).sum())
            assert got.item() == pytest.approx(ref, rel=1e-12), (steps[i], lag)
            assert got["delta_step"].item() == steps[i + lag] - steps[i]
    assert da.sel(step=115000, lag=1).item() > 0  # 115000 -> 117000, bridging the missing one
    cached = list((tmp_path / "data" / "pythia" / "weights").glob("pythia-1b-*.json"))
    assert len(cached) == 1
    # with the cache moved away, a new grid fails at once naming the repository and revision
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "moved-away"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "moved-away"))
    with pytest.raises(KLToolsError, match="'EleutherAI/pythia-1b' at revision 'step1000'"):
        diffusion.run_weight_distances(s, "pythia-1b", [1000, 2000])


def _kltools(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kltools", *args],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def test_missing_cache_fails_at_once_naming_repository_and_revision(
    rehearsal_root: Path, tmp_path: Path
) -> None:
    texts = str(rehearsal_root / "texts" / "pile.jsonl")
    base = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cases = [
        # the rehearsal cache moved away: nothing holds the repository
        (tmp_path / "moved-away", "EleutherAI/pythia-410m@step1000",
         ["'EleutherAI/pythia-410m'", "'step1000'"]),
        # a revision the hub lacks (pythia-1b step116000)
        (rehearsal_root / "hub", "EleutherAI/pythia-1b@step116000",
         ["'EleutherAI/pythia-1b'", "'step116000'"]),
    ]  # fmt: skip
    for cache, spec, names in cases:
        store = tmp_path / f"{spec.replace('/', '_')}.zarr"
        proc = _kltools(
            "extract", "--model", spec, "--texts", texts, "--store", str(store),
            env={**base, "HF_HUB_CACHE": str(cache)},
        )  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("kltools: error:")
        assert all(n in lines[0] for n in names), lines[0]
        assert "HF_HUB_OFFLINE=1" in lines[0]
        assert not store.exists()


def test_book_build_without_the_cache_fails_at_once_in_one_line(
    rehearsal_root: Path, tmp_path: Path
) -> None:
    """``make rehearsal-book`` with the rehearsal cache moved away: one line naming the first
    missing repository and revision, exit 2, before any chapter starts."""
    import yaml

    params = tmp_path / "rehearsal-smoke.yaml"
    params.write_text(yaml.safe_dump(_smoke_book_parameters(rehearsal_root, tmp_path / "l.json")))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "moved-away"),
        "KLTOOLS_DATA_ROOT": str(tmp_path / "data"),
        "KLTOOLS_BUILD_ROOT": str(tmp_path / "build"),
    }
    proc = _kltools(
        "book", "build", "--profile", "pythia", "--params", str(params), "--no-render", env=env
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("kltools: error:") and "HF_HUB_OFFLINE=1" in lines[0]
    assert "'EleutherAI/pythia-410m'" in lines[0] and "(revision 'step" in lines[0]
    assert "chapters (pythia)" not in proc.stdout
    assert not (tmp_path / "build" / "executed").exists()


def test_rebuild_is_a_no_op(rehearsal_root: Path) -> None:
    from kltools.rehearsal import build_rehearsal

    again = build_rehearsal(rehearsal_root, smoke=True, jobs=1, verbose=False)
    assert again["built"] is False and again["smoke"] is True


def test_rehearsal_parameters_fit_every_chapter_and_the_plan() -> None:
    import yaml

    from kltools.book import declared_parameters, load_profile, notebook_path, resolve_parameters

    path = ROOT / "params" / "rehearsal.yaml"
    doc = load_profile("pythia", path)
    for chapter in doc["chapters"]:
        resolve_parameters(chapter, doc, declared_parameters(notebook_path(chapter)))
    assert doc["common"]["steps"] == list(P.book_steps())
    assert set(P.book_steps()) <= set(P.rehearsal_steps())
    repos = {r.repo for r in P.pythia_runs()} | {h.repo for h in P.hub_models()}
    for section in [doc["common"], *doc["chapters"].values()]:
        for key in P.MODEL_KEYS:
            for repo in (section or {}).get(key, []):
                assert repo in repos, repo
    # the same chapters, floor models and schemes as the real profile
    real = yaml.safe_load((ROOT / "params" / "pythia.yaml").read_text())
    assert set(doc["chapters"]) == set(real["chapters"])
    for key in ("floor_models", "quant_schemes", "floor_settings", "pair_seed"):
        assert doc["common"].get(key) == real["common"].get(key), key


def test_the_rehearsal_holds_a_subset_of_the_papers_sets() -> None:
    """Quantization and layer models: some of the first 50 of the authors' model list, at
    least one of each architecture class the rehearsal builds; fine-tuning: some of the
    paper's typed single-parent edges, two or more of every type with two or more edges
    whose architecture the rehearsal builds, with the paper's types."""
    from collections import Counter

    from kltools import book, metadata

    common = book.load_profile("pythia", ROOT / "params" / "rehearsal.yaml")["common"]
    first50 = metadata.model_list()[:50]
    hub = {h.repo: h for h in P.hub_models()}
    for key in ("hub_models", "layer_models"):
        chosen = common[key]
        assert chosen and set(chosen) <= set(first50), key
        assert chosen == [m for m in first50 if m in chosen], key  # in the paper's order
        assert {hub[m].family for m in chosen} == set(P.ARCHITECTURES), key
    paper = {(c, p): t for c, p, t in metadata.ft_edges().itertuples(index=False)}
    types = metadata.model_types()
    ours = P.lineage_entries()
    edges = [(e["model"], e["parent"]) for e in ours if e["parent"]]
    assert edges and all(paper.get(edge) == e["type"] for edge, e in
                         zip(edges, [e for e in ours if e["parent"]]))  # fmt: skip
    assert all(types[e["model"]] == e["type"] for e in ours if not e["parent"])
    counts = Counter(paper[edge] for edge in edges)
    built = {t for edge, t in paper.items() if edge[1] in hub or edge[1] in P.ROOT_FAMILIES}
    for typ, n in Counter(paper.values()).items():
        if n >= 2 and typ in built:
            assert counts[typ] >= 2, typ
    assert {"mistral", "llama-3", "others", "deepseek"} <= set(counts)


def test_cli_lists_the_rehearsal_and_refuses_bad_arguments(rehearsal_root: Path, capsys) -> None:
    from kltools.__main__ import main

    assert main(["rehearsal", "list", "--root", str(rehearsal_root)]) == 0
    out = capsys.readouterr().out
    assert "EleutherAI/pythia-1b" in out and "LlamaForCausalLM" in out
    assert "rinna/youri-7b" in out and "meta-llama/Llama-2-7b-hf" in out
    assert main(["rehearsal", "build", "--root", str(rehearsal_root), "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jobs" in err[0]
    assert main(["rehearsal", "list", "--root", str(rehearsal_root / "nowhere")]) == 2
    assert "kltools rehearsal build" in capsys.readouterr().err


def test_the_profiles_pretraining_units_resolve_on_the_hub(hub: Path) -> None:
    from kltools.config import Settings
    from kltools.models import resolve_model
    from kltools.settings.stores import pretraining_units

    units = pretraining_units(Settings(profile="pythia", steps=P.rehearsal_steps(smoke=True)))
    held = {r.repo for r in P.pythia_runs(smoke=True)}
    specs = [u.spec for u in units if u.spec.split("@")[0] in held]
    assert len(specs) == len(units)  # the smoke hub holds every run the profile reads
    assert "EleutherAI/pythia-1b@step116000" not in specs  # the profile's exclusion
    assert "EleutherAI/pythia-410m@step116000" in specs
    for spec in specs:
        repo, rev = spec.split("@")
        assert resolve_model(spec).commit == _ref(hub, repo, rev)


# ------------------------------------------------------------------------------ the smoke book


def _execute_every_chapter(doc: dict, chapters, declared, profile: str) -> None:
    """Execute every chapter with the profile document ``doc``, as ``kltools book build``."""
    from kltools.book import resolve_parameters
    from kltools.book.execute import execute_chapter

    failed = []
    for name in chapters:
        run = execute_chapter(name, resolve_parameters(name, doc, declared[name]), profile)
        if run.status != "executed":
            failed.append(f"{name}: {run.status} {run.error}")
    assert not failed, failed


def _smoke_book_parameters(root: Path, lineages: Path) -> dict:
    """params/rehearsal.yaml scaled to the smoke hub: every chapter, a few texts and models."""
    return {
        "profile": "pythia",
        "description": "smoke rehearsal of the pythia profile",
        "common": {
            "profile": "pythia",
            "textset": str(root / "texts" / "pile.jsonl"),
            "n_texts": 8,
            "device": "cpu",
            "dtype": "float32",
            "batch_size": 8,
            "n_boot": 10,
            "steps": list(P.rehearsal_steps(smoke=True)),
            "after_step": 2000,
            "early_later_k": 1,
            "quant_schemes": ["bnb-int8", "bnb-fp4"],
            "hub_models": ["EleutherAI/pythia-410m", "meta-llama/Llama-2-7b-hf"],
            "floor_models": ["EleutherAI/pythia-410m"],
            "floor_settings": ["fp32", "batch1"],
            "lineages_file": str(lineages),
            "layer_models": ["meta-llama/Llama-2-7b-hf"],
        },
        "chapters": {
            "method": {
                "mc_pairs": ["near_late", "seed", "size"],
                "mc_samples": 4,
                "mc_length": 16,
                "mc_batch_size": 8,
                "n_grid": [4, 8],
            },  # fmt: skip
            "trajectories": {"tsne_perplexity": 3.0},
            "seeds_sizes": {"consecutive_fractions": [0.02, 0.03, 0.98]},
            "diffusion": {
                "window": 2,
                "min_start": 1000,
                "weight_space": True,
                "weight_models": ["pythia-410m"],
            },  # fmt: skip
            "floor": {"compare_bos": False},
        },
    }


@pytest.mark.slow
def test_smoke_rehearsal_book_runs_every_chapter_through_the_hub_path(
    hub: Path, rehearsal_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """Every chapter, executed by papermill as ``make rehearsal-book`` does, on the smoke hub:
    results written, verdicts three-valued, every store's units resolved to the hub commits."""
    import yaml

    from kltools import open_store
    from kltools.book import declared_parameters, load_profile, notebook_path
    from kltools.book.layout import available_chapters
    from kltools.results import VERDICTS, collect_results

    manifest = json.loads((rehearsal_root / "rehearsal.json").read_text())
    lineages = tmp_path / "lineages.json"
    held = {r: m for r, m in manifest["repos"].items() if m["kind"] == "hub-model"}
    lineages.write_text(json.dumps({"lineages": [
        {"model": r, "parent": m["parent"], "type": m["family"]} for r, m in held.items()
    ]}))  # fmt: skip
    params = tmp_path / "rehearsal-smoke.yaml"
    params.write_text(yaml.safe_dump(_smoke_book_parameters(rehearsal_root, lineages)))
    for var, sub in (("KLTOOLS_DATA_ROOT", "data"), ("KLTOOLS_BUILD_ROOT", "build")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    doc = load_profile("pythia", params)
    chapters = available_chapters()
    declared = {c: declared_parameters(notebook_path(c)) for c in chapters}
    _execute_every_chapter(doc, chapters, declared, "pythia")
    results = collect_results(tmp_path / "build" / "executed", profile="pythia")
    assert len(results) == len(chapters)
    claims = [c for r in results for c in r.claims]
    assert claims and all(c["verdict"] in VERDICTS for c in claims)
    assert any(d["topic"] == "models (rehearsal)" for r in results for d in r.deviations)
    stores = sorted((tmp_path / "data" / "pythia").glob("*.zarr"))
    assert {"pretraining.zarr", "quantization.zarr", "finetuning.zarr"} <= {p.name for p in stores}
    for store in stores:
        for rec in json.loads(open_store(store).attrs["units"]):
            repo, _, rev = rec["spec"].partition("@")
            assert rec["resolved"]["commit"] == _ref(hub, repo, rev or "main"), rec["spec"]
    _released_book_matches(tmp_path, doc, chapters, declared, lineages, monkeypatch)


#: the settings the released profile computes from the vectors alone (no model is run). Not
#: Intra-type and Random: their draws number models by their row in the release's model list
#: (as the authors' code does), and a release written from the rehearsal's stores lists its
#: models in another order than the authors' list the pythia profile numbers them by
#: (tests/test_released_settings.py checks those draws against the definition)
VECTOR_SETTINGS = ("Later", "Early", "Seed", "Size", "8-bit", "4-bit", "FT", "Layer")


def _released_book_matches(tmp_path, doc, chapters, declared, lineages, monkeypatch) -> None:
    """The rehearsal's stores written in the authors' release layout (``kltools released
    write``), then every chapter of the ``released`` profile on that release, offline: every
    setting computed from vectors has the same values as the rehearsal's ``pythia`` book."""
    import numpy as np

    from kltools.__main__ import main
    from kltools.config import Settings
    from kltools.results import collect_results
    from kltools.sources import analysis_texts

    common = doc["common"]
    texts = tmp_path / "scored.jsonl"  # the texts the rehearsal's stores were built on
    analysis_texts(Settings.from_parameters(common)).to_jsonl(texts)
    release = tmp_path / "release"
    assert main(["released", "write", "--from-stores", str(tmp_path / "data" / "pythia"),
                 "--to", str(release), "--texts", str(texts),
                 "--lineages", str(lineages)]) == 0  # fmt: skip
    for var, value in (
        ("KLTOOLS_RELEASED_DIR", release),
        ("KLTOOLS_DATA_ROOT", tmp_path / "data-released"),
        ("KLTOOLS_BUILD_ROOT", tmp_path / "build-released"),
    ):
        monkeypatch.setenv(var, str(value))
    keep = ("n_boot", "steps", "after_step", "early_later_k", "quant_schemes",
            "hub_models", "lineages_file", "layer_models")  # fmt: skip
    released = {
        "profile": "released",
        "common": {
            "profile": "released",
            "n_texts": 10000,
            "dtype": "float16",  # the authors' extraction, recorded on the imported stores
            "floor_settings": [],
            **{k: common[k] for k in keep},
        },
        "chapters": {
            **{k: v for k, v in doc["chapters"].items() if k != "method"},
            "diffusion": {**doc["chapters"]["diffusion"], "weight_space": False},
        },
    }
    _execute_every_chapter(released, chapters, declared, "released")

    def values(folder: Path, profile: str) -> dict[str, np.ndarray]:
        pairs = [p for r in collect_results(folder, profile=profile) if r.chapter != "scale"
                 for p in r.pairs]  # fmt: skip
        return {
            s: np.sort([p["kl_bpb"] for p in pairs if p["setting"] == s]) for s in VECTOR_SETTINGS
        }

    # with the release present, the pythia profile's quantization KLs beside the paper's
    # baseline (the release's rows): here the rows are the same vectors, so the ratio is 1
    from kltools.settings import clear_caches
    from kltools.settings.quantization import paper_baselines

    clear_caches()
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path / "data"))
    both = paper_baselines(Settings.from_parameters(common))
    assert len(both) and np.allclose(both.ratio, 1.0, rtol=1e-6), both
    clear_caches()

    ours = values(tmp_path / "build" / "executed", "pythia")
    theirs = values(tmp_path / "build-released" / "executed", "released")
    for setting in VECTOR_SETTINGS:
        assert len(ours[setting]) and len(ours[setting]) == len(theirs[setting]), setting
        np.testing.assert_allclose(theirs[setting], ours[setting], rtol=1e-9, err_msg=setting)
