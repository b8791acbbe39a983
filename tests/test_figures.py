"""The book's figures as the paper draws them: axes, scales, starts and parameters per profile,
checked on constructed data (no models), and :func:`save_figure`'s caption, alt text, data
and sidecar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from PIL import Image  # noqa: E402

from kltools import maps  # noqa: E402
from kltools.book import runtime  # noqa: E402
from kltools.config import Settings  # noqa: E402
from kltools.errors import KLToolsError  # noqa: E402
from kltools.pairs import PairSet  # noqa: E402
from kltools.plots import MIN_FONT_PT, color_of, colors_for  # noqa: E402
from kltools.plots import pretraining as P  # noqa: E402
from kltools.plots import scale as S  # noqa: E402
from kltools.settings import diffusion as D  # noqa: E402
from kltools.settings.quantization import map_points  # noqa: E402

#: the content column of a page at a 1280 px window
COLUMN_PX = 690


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _scale_pairs(seed: int = 0) -> tuple[PairSet, dict[str, np.ndarray]]:
    """Pairs of every Fig. 3 setting and the floor; the Layer pairs of two populations."""
    rng = np.random.default_rng(seed)
    values = {
        "Later": rng.lognormal(np.log(0.02), 0.3, 40),
        "Early": rng.lognormal(np.log(0.06), 0.3, 40),
        "Seed": rng.lognormal(np.log(0.1), 0.2, 21),
        "Size": np.r_[rng.lognormal(np.log(0.8), 0.6, 9), 200.0],  # one above the clip
        "8-bit": rng.lognormal(np.log(0.01), 0.5, 20),
        "4-bit": rng.lognormal(np.log(0.1), 0.5, 20),
        "FT": rng.lognormal(np.log(0.4), 1.0, 30),
        "Intra-type": rng.lognormal(np.log(1.0), 1.0, 30),
        "Random": rng.lognormal(np.log(2.0), 1.0, 30),
        "Floor": np.r_[0.0, 0.0, rng.lognormal(np.log(1e-7), 1.0, 8)],
    }
    rows = [dict(setting=k, kl=v) for k, vs in values.items() for v in vs]
    emb = rng.lognormal(np.log(20.0), 0.3, 6)
    blocks = rng.lognormal(np.log(1.5), 0.5, 30)
    rows += [dict(setting="Layer", kl=v, layer_a=0, layer_b=1) for v in emb]
    rows += [
        dict(setting="Layer", kl=v, layer_a=1 + i % 5, layer_b=2 + i % 5)
        for i, v in enumerate(blocks)
    ]
    frame = pd.DataFrame(rows)
    return PairSet(frame, np.zeros((2, len(frame)))), {**values, "emb": emb, "blocks": blocks}


def _medians_at(ax: plt.Axes, x: float) -> list[float]:
    """The y of every black median bar whose middle is at ``x`` (within a violin)."""
    out = []
    for coll in ax.collections:
        if type(coll).__name__ != "LineCollection":
            continue
        for seg in coll.get_segments():
            if len(seg) == 2 and seg[0][1] == seg[1][1] and abs(seg[:, 0].mean() - x) < 0.45:
                out.append(float(seg[0][1]))
    return sorted(out)


def _rendered_min_px(fig: plt.Figure) -> float:
    """The smallest text of a figure in CSS px on the page: saved at 200 dpi, shown at
    :data:`runtime.SHOWN_SCALE` of its pixels, capped at the column's width."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=runtime.FIGURE_DPI, bbox_inches="tight")
    width = Image.open(io.BytesIO(buf.getvalue())).size[0]
    shown = min(width * runtime.SHOWN_SCALE, COLUMN_PX)
    return runtime.smallest_font_pt(fig) * runtime.FIGURE_DPI / 72 * shown / width


# ----------------------------------------------------------------------------- Fig. 3


def test_fig3_uses_the_papers_symlog_axis_for_the_papers_models() -> None:
    pairs, _ = _scale_pairs()
    fig = S.scale_figure(Settings(profile="pythia"), pairs)
    main, own = fig.axes[0], fig.axes[1]
    assert main.get_yscale() == "symlog"
    tr = main.yaxis.get_transform()
    assert tr.linthresh == pytest.approx(0.1) and tr.linscale == pytest.approx(0.9)
    assert list(main.get_yticks()) == list(S.SCALE_TICKS)
    assert [t.get_text() for t in main.get_yticklabels()] == [f"{t:g}" for t in S.SCALE_TICKS]
    assert main.get_ylim()[0] == 0 and main.get_ylim()[1] >= 50
    # the paper's ten settings in the main panel, the book's own below it on a log axis
    names = [t.get_text().split("\n")[0] for t in main.get_xticklabels()]
    assert names == list(S.paper_settings())
    assert [t.get_text().split("\n")[0] for t in own.get_xticklabels()] == ["Floor"]
    assert own.get_yscale() == "log"
    # a value above 50 is drawn at 50 and counted under its setting
    assert "Size\n(1 > 50)" in [t.get_text() for t in main.get_xticklabels()]
    ys = np.concatenate(
        [
            c.get_offsets()[:, 1]
            for c in main.collections
            if hasattr(c, "get_sizes") and len(c.get_offsets())
        ]
    )
    assert ys.max() <= 50.0 + 1e-9
    # the first arXiv version's single pairs are labelled as single pairs
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("one pair, not a distribution (first arXiv version" in t for t in legend)
    assert "symlog" in main.get_ylabel()


def test_fig3_is_log_for_small_suites_without_published_marks() -> None:
    pairs, _ = _scale_pairs()
    fig = S.scale_figure(Settings(profile="tiny"), pairs)
    assert fig.axes[0].get_yscale() == "log"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any(t.startswith("paper") for t in legend)
    assert "not the paper's symlog" in S.scale_caption(Settings(profile="tiny"))
    pythia = S.scale_caption(Settings(profile="pythia"))
    assert "linear below 0.1" in pythia and "open circle a single pair" in pythia


@pytest.mark.parametrize("profile", ["pythia", "tiny"])
def test_fig3_every_median_is_the_median_of_one_population(profile: str) -> None:
    pairs, v = _scale_pairs(seed=3)
    fig = S.scale_figure(Settings(profile=profile), pairs)
    main = fig.axes[0]
    names = [t.get_text().split("\n")[0] for t in main.get_xticklabels()]
    layer = names.index("Layer")
    # Layer: two bars, the medians of the pairs from the embedding and between blocks
    assert _medians_at(main, layer) == pytest.approx(
        sorted([np.median(v["blocks"]), np.median(v["emb"])])
    )
    seed = names.index("Seed")
    assert _medians_at(main, seed) == pytest.approx([np.median(v["Seed"])])
    size = names.index("Size")  # symlog: the clipped value still counts in the median
    assert _medians_at(main, size) == pytest.approx([np.median(np.clip(v["Size"], 0, 50))])


def test_fig3_without_layer_indices_draws_one_population() -> None:
    pairs, v = _scale_pairs()
    frame = pairs.frame.drop(columns=["layer_a", "layer_b"])
    fig = S.plot_scale(frame, S.paper_settings(), axis="log")
    names = [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()]
    pooled = np.r_[v["emb"], v["blocks"]]
    assert _medians_at(fig.axes[0], names.index("Layer")) == pytest.approx([np.median(pooled)])
    assert len(fig.axes) == 1  # no own settings asked for: no lower panel


# ----------------------------------------------------------------------------- Fig. 4


def test_fig4_warmup_is_linear_in_kl_against_log10_one_plus_step() -> None:
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 300]
    df = pd.DataFrame(
        {
            "size": ["s"] * len(steps),
            "step": steps,
            "kl": np.linspace(0.0, 1.0, len(steps)),
            "lo": 0.0,
            "hi": 1.0,
        }
    )
    fig = P.plot_consecutive(df, after_step=64)
    warm, after = fig.axes[:2]
    assert warm.get_xscale() == "linear" and warm.get_yscale() == "linear"
    x, y = warm.get_lines()[0].get_data()
    assert np.allclose(x, np.log10(1.0 + np.array(steps[:7])))
    assert y[0] == 0.0 and warm.get_ylim()[0] <= 0.0  # the 0 -> 1 pair's KL of 0 is on the page
    assert after.get_xscale() == "linear" and after.get_yscale() == "log"
    assert list(after.get_lines()[0].get_xdata()) == steps[7:]
    assert "log_{10}(1 + t)" in warm.get_xlabel()


# ----------------------------------------------------------------------------- Fig. 5


def _exponents(steps: list[int], nan_at: tuple[int, ...] = ()) -> xr.Dataset:
    c = np.full((2, len(steps)), 0.5)
    for t in nan_at:
        c[:, steps.index(t)] = np.nan
    return xr.Dataset(
        {"c": (("model", "step"), c), "interpolated": (("model", "step"), np.zeros_like(c, bool))},
        coords={"model": ["a", "b"], "step": steps},
    )


def test_fig5_starts_are_the_papers_on_the_pythia_grid() -> None:
    grid = list(range(1000, 143001, 1000))
    assert D.fig5_starts(Settings(profile="pythia"), grid) == (8000, 135000, 120000)
    # an exponent table: every checkpoint from the first start, windows past 133k incomplete
    c_l = _exponents(grid, nan_at=tuple(range(134000, 143001, 1000)))
    shown, none = D.shown_exponents(Settings(profile="pythia"), c_l)
    assert none is None
    assert int(shown["step"].min()) == 8000 and int(shown["step"].max()) == 135000
    assert D.distance_start(Settings(profile="pythia"), c_l) == 120000


def test_fig5_starts_scale_with_the_run_and_the_chapter_can_override_them() -> None:
    grid = list(range(0, 1431, 10))  # a small run: last step 1430
    assert D.fig5_starts(Settings(profile="tiny"), grid) == (80, 1350, 1200)
    s = Settings(profile="tiny", fig5_fractions=(0.51, 0.9, 0.25))
    assert D.fig5_starts(s, grid) == (730, 1290, 360)
    c_l, c_w = _exponents(grid), _exponents(grid)
    shown_l, shown_w = D.shown_exponents(s, c_l, c_w)
    assert list(shown_l["step"].values) == list(range(730, 1291, 10))
    assert list(shown_w["step"].values) == list(shown_l["step"].values)
    # the distance panel's start: the fitted start nearest to the paper's
    assert D.distance_start(Settings(profile="tiny"), _exponents(grid, nan_at=(1200,))) in (
        1190,
        1210,
    )
    with pytest.raises(KLToolsError, match="three fractions"):
        D.fig5_starts(Settings(profile="tiny", fig5_fractions=(0.1, 0.9)), grid)


def test_fig5_distance_panel_draws_one_start_per_run_on_log_log_axes() -> None:
    steps, lags = [100, 200, 300], [1, 2, 3]
    delta = xr.DataArray(
        [[100.0 * (k + 1) for k in range(3)] for _ in steps],
        dims=("step", "lag"),
        coords={"step": steps, "lag": lags},
    )
    vals = np.tile(np.array([1.0, 1.6, 2.1]), (2, 3, 1))
    D = xr.DataArray(
        vals,
        dims=("model", "step", "lag"),
        coords={"model": ["a", "b"], "step": steps, "lag": lags},
    ).assign_coords(delta=delta)
    fig = P.plot_diffusion(D, D * 1e3, 200)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "from step 200" in ax.get_xlabel()


# ----------------------------------------------------------------------------- Fig. 2


def test_fig2_finetuning_map_uses_the_papers_perplexity() -> None:
    s = Settings()
    assert s.ft_tsne_perplexity == 20.0 and s.tsne_perplexity == 30.0
    rng = np.random.default_rng(0)
    loglik = xr.DataArray(
        rng.normal(-100.0, 5.0, (64, 12)) + rng.normal(0.0, 1.0, (64, 1)),
        dims=("model", "text"),
        coords={"model": [f"m{i}" for i in range(64)], "text_bytes": ("text", [100] * 12)},
    )
    ft = maps.model_map(loglik, s, dim="model", method="tsne", perplexity=s.ft_tsne_perplexity)
    assert ft.attrs["method"] == "tsne" and ft.attrs["perplexity"] == 20.0
    default = maps.model_map(loglik, s, dim="model", method="tsne")
    assert default.attrs["perplexity"] == 21.0  # 30, capped at (64 - 1) / 3


def test_fig2_quantization_map_keeps_originals_and_8_bit_only() -> None:
    variants = ["full", "bnb-int8", "bnb-fp4", "rtn4"]
    loglik = xr.DataArray(
        np.random.default_rng(1).normal(size=(2, 4, 5)),
        dims=("model", "variant", "text"),
        coords={"model": ["x", "y"], "variant": variants},
    )
    pts = map_points(loglik)
    assert sorted(set(pts["variant"].values)) == ["bnb-int8", "full"]
    assert list(pts["point"].values) == list(range(4))
    assert sorted(set(map_points(loglik, None)["variant"].values)) == sorted(variants)
    assert set(map_points(loglik, ("4-bit",))["variant"].values) == {"full", "bnb-fp4"}


# ----------------------------------------------------------------------------- legibility


def test_figures_text_is_8_px_or_more_at_page_width() -> None:
    pairs, _ = _scale_pairs()
    steps = [0, 1, 2, 4, 8, 100, 200]
    cons = pd.DataFrame({"size": ["70m"] * 7, "step": steps, "kl": np.linspace(0.01, 1, 7)})
    figs = {
        "scale": S.scale_figure(Settings(profile="pythia"), pairs),
        "consecutive": P.plot_consecutive(cons, after_step=8),
        "exponents": P.plot_exponents(_exponents([100, 200, 300]), _exponents([100, 200, 300]), {}),
    }
    for name, fig in figs.items():
        assert runtime.smallest_font_pt(fig) >= MIN_FONT_PT, name
        assert _rendered_min_px(fig) >= 8.0, name


def test_one_colour_per_name_across_figures() -> None:
    runs = ["70m", "160m", "410m", "1b", "1.4b"]
    alone = {r: color_of(r) for r in runs}
    assert colors_for(runs[::-1]) == colors_for(runs)  # independent of the order given
    shown = colors_for(runs)
    assert len(set(shown.values())) == len(runs)  # one figure never draws two names alike
    # a name keeps its colour in a figure of other names, unless one of them took it first
    for subset in (runs[:2], runs[1:4], runs[2:]):
        got = colors_for(subset)
        clash = {color_of(r) for r in subset if list(alone.values()).count(color_of(r)) > 1}
        for r in subset:
            if alone[r] not in clash:
                assert got[r] == alone[r], r


# ----------------------------------------------------------------------------- save_figure


def test_save_figure_numbers_captions_and_writes_data_and_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLTOOLS_FIGURES_DIR", str(tmp_path))
    monkeypatch.setenv("KLTOOLS_CHAPTER", "scale")
    monkeypatch.setattr(runtime, "_figure_numbers", {})
    data = pd.DataFrame({"setting": ["a", "b"], "kl": [0.1, 0.2]})
    for name in ("first", "second", "first"):  # a rerun keeps its number
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1])
        ax.set_title("t", fontsize=11)
        ax.text(0.5, 0.5, "small", fontsize=9.5)
        ax.text(0.5, 0.2, "", fontsize=3)  # empty: not text a reader sees
        runtime.save_figure(
            fig,
            name,
            caption="What it shows.",
            alt="A rising line.",
            data={"": data, "extra": xr.DataArray([1.0, 2.0], dims="x", name="v"), "none": None},
        )
    side = json.loads((tmp_path / "first.json").read_text())
    assert side["label"] == "Figure 10.1" and side["caption"] == "What it shows."
    assert side["alt"] == "A rising line." and side["dpi"] == 200
    assert side["min_font_pt"] == 9.5
    assert side["data"] == ["first.csv", "first.extra.csv"]
    assert json.loads((tmp_path / "second.json").read_text())["label"] == "Figure 10.2"
    assert pd.read_csv(tmp_path / "first.csv").equals(data)
    assert list(pd.read_csv(tmp_path / "first.extra.csv").v) == [1.0, 2.0]
    with Image.open(tmp_path / "first.png") as img:
        assert img.size[0] == side["width_px"]
    assert (tmp_path / "first.pdf").read_bytes().startswith(b"%PDF")
    assert not plt.get_fignums()  # closed: shown once, as the captioned HTML figure


def test_figure_html_has_alt_text_caption_and_the_check_attributes() -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=200)
    html = runtime.figure_html(buf.getvalue(), "Figure 3.2", "A <b> caption", "Two lines", 9.0)
    assert html.startswith('<figure class="kltools-figure"><img src="data:image/png;base64,')
    assert 'alt="Two lines"' in html and 'data-kltools-min-font-pt="9"' in html
    assert f'width="{round(600 * runtime.SHOWN_SCALE)}"' in html
    assert "<figcaption><strong>Figure 3.2</strong> — A &lt;b&gt; caption</figcaption>" in html


@pytest.mark.parametrize(
    ("caption", "alt", "match"),
    [
        ("", "A line.", "caption"),
        ("Shows a line.", "build/figures/line.png", "alt text"),
        ("Shows a line.", "line", "alt text"),
        ("Shows a line.", "", "alt text"),
    ],
)
def test_save_figure_needs_a_caption_and_descriptive_alt_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caption: str, alt: str, match: str
) -> None:
    monkeypatch.setenv("KLTOOLS_FIGURES_DIR", str(tmp_path))
    fig, ax = plt.subplots()
    with pytest.raises(KLToolsError, match=match):
        runtime.save_figure(fig, "line", caption=caption, alt=alt)
    assert not list(tmp_path.iterdir())
