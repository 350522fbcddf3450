"""helpers.plots' figures of results tables, on fake records: one panel per view or test set, one line or bar
per method, and an explicit empty figure when there is nothing to draw."""
import numpy as np
import pytest
from fake_records import fake_record, write_study
from matplotlib.figure import Figure

from helpers import curves, plots, records, tables
from helpers import validity
from helpers.config import StudyError


@pytest.fixture
def df(tmp_path):
    return tables.results_table(records.load_records(write_study(tmp_path / "results")))


def test_plot_curve_returns_a_figure_per_view(df):
    fig = plots.plot_curve(df, x="noise", fraction=0.8)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["view: audio", "view: image", "view: fused"]
    image_ax = fig.axes[1]
    labels = [line.get_label() for line in image_ax.get_lines()]
    assert any(lab.startswith("imagenet") for lab in labels) and any("contrastive" in lab for lab in labels)
    assert len(image_ax.collections) == len(labels)  # one CI band per line
    empty = plots.plot_curve(df.iloc[0:0], x="noise")
    assert isinstance(empty, Figure) and "no accuracy results" in empty.axes[0].texts[0].get_text()
    with pytest.raises(StudyError):
        plots.plot_curve(df, x="no_such_axis")


def test_plot_curve_with_records_draws_item_level_bands(tmp_path):
    recs = records.load_records(write_study(tmp_path / "results"))
    df = tables.results_table(recs)
    fig = plots.plot_curve(df, x="noise", fraction=0.8, records=recs)
    assert "interval over seeds and test items" in fig.get_suptitle()
    # one seed per noise level: the t band would have no height, the bootstrap over the test items has one
    def heights(fig):   # the band's height at each x: its upper minus its lower edge there
        out = []
        for band in fig.axes[1].collections:
            v = band.get_paths()[0].vertices
            out += [np.ptp(v[np.isclose(v[:, 0], x), 1]) for x in np.unique(v[:, 0])]
        return out
    one_seed = df[df["seed"] == 0]
    assert all(h > 0 for h in heights(plots.plot_curve(one_seed, x="noise", fraction=0.8, records=recs)))
    assert all(h == pytest.approx(0) for h in heights(plots.plot_curve(one_seed, x="noise", fraction=0.8)))
    # macro-F1 has no per-item values: the t interval over seeds
    assert "t-interval" in plots.plot_curve(df, x="noise", metric="macro_f1", fraction=0.8, records=recs).get_suptitle()


def test_plot_learning_curves_draws_points_and_fits(df):
    d = df[df["noise"] == 0.0]
    fits = curves.learning_curves(tables.primary_protocols(d[d["test_set"] == "test"]))
    fig = plots.plot_learning_curves(d, fits, target=0.6)
    assert [ax.get_title() for ax in fig.axes] == ["view: audio", "view: image", "view: fused"]
    image_ax = fig.axes[1]
    assert {t.get_text() for t in image_ax.get_legend().get_texts()} == {
        "image (supervised)", "imagenet (linear_probe)", "contrastive (linear_probe)"}
    assert [int(t) for t in image_ax.get_xticks()] == [130, 520]   # n_train_image at fractions 0.2 and 0.8


def test_headline_figure_one_bar_per_method_and_view(df):
    head = df[(df["test_set"] == "test") & (df["noise"] == 0.0) & (df["fraction"] == 0.8)]
    fig = plots.headline_figure(head)
    assert [ax.get_title() for ax in fig.axes] == ["view: audio", "view: image", "view: fused"]
    assert len(fig.axes[1].patches) == 3                  # image, imagenet, contrastive (primary protocols)
    assert plots.headline_figure(head.iloc[0:0]) is None
    assert "t-interval" in fig.get_suptitle()
    one_seed = plots.headline_figure(head[head["seed"] == head["seed"].min()])
    assert "t-interval" not in one_seed.get_suptitle() and "no interval" in one_seed.get_suptitle()


def test_headline_figure_with_records_draws_item_level_intervals(tmp_path):
    recs = records.load_records(write_study(tmp_path / "results"))
    df = tables.results_table(recs)
    head = df[(df["test_set"] == "test") & (df["noise"] == 0.0) & (df["fraction"] == 0.8)]
    fig = plots.headline_figure(head, recs)
    assert "interval over seeds and test items" in fig.get_suptitle() and len(fig.axes[1].patches) == 3


def test_counterfactual_bars_from_runs_or_their_summary(df):
    drops = validity.counterfactual_drops(df[(df["noise"] == 0.0) & (df["fraction"] == 0.8)])
    fig = plots.counterfactual_bars(drops)
    assert [ax.get_title() for ax in fig.axes] == ["bandlimit_4k", "greyscale"]
    bars = {ax.get_title(): [p.get_width() for p in ax.patches] for ax in fig.axes}
    assert len(bars["greyscale"]) == 3 and len(bars["bandlimit_4k"]) == 5   # primary protocols: no knn
    assert all(w == pytest.approx(-0.1) for ws in bars.values() for w in ws)
    assert "mean over seeds" in fig.get_suptitle()
    summary = tables.summarise(drops, by=["method", "protocol", "view", "test_set"], metric="drop")
    again = plots.counterfactual_bars(summary)
    assert [len(ax.patches) for ax in again.axes] == [5, 3]
    # one record, as notebooks 02 and 03 show it: one run, so no interval
    one = plots.counterfactual_bars(validity.counterfactual_drops(fake_record("02_baselines", 0)))
    assert "one seed per point: no interval" in one.get_suptitle() and [len(ax.patches) for ax in one.axes] == [3, 2]
    empty = plots.counterfactual_bars(drops.iloc[0:0])
    assert "no counterfactual results" in empty.axes[0].texts[0].get_text()


def test_sample_rate_bins_are_named_by_their_edges():
    bins = plots.sample_rate_bins([8000, 11025, 11127, 16000, 16393, 21276, 44100, 96000])
    assert list(bins.astype(str)) == ["<=11.0k", "<=11.0k", "(11.0k, 16k]", "(11.0k, 16k]", "(16k, 24k]",
                                      "(16k, 24k]", ">24k", ">24k"]
