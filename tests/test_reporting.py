"""Reporting on fake records written to tmp_path (never to results/): tables, intervals over seeds,
paired comparisons, learning-curve fits, figures, and the whole `python -m helpers report`."""
import json
import math

import nbformat
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import records, reporting
from helpers.config import StudyError

# (method, protocol, views) of fake notebook 02 and 03 records
METHODS_02 = [("image", "supervised", ["image"]), ("audio_mel", "supervised", ["audio"]),
              ("late_fusion", "supervised", ["fused"]), ("imagenet", "linear_probe", ["image", "fused"])]
METHODS_03 = [("contrastive", "linear_probe", ["audio", "image", "fused"]),
              ("contrastive", "knn", ["audio", "image", "fused"])]
BASE = {"image": 0.6, "audio_mel": 0.5, "late_fusion": 0.7, "imagenet": 0.8, "contrastive": 0.55}


def accuracy(method, protocol, view, seed, noise, fraction):
    """A known, seed-dependent accuracy so the tests can compute what the report must say."""
    return (BASE[method] + (0.02 if view == "fused" else 0.0) - 0.5 * noise - 0.1 * (0.8 - fraction)
            + 0.01 * seed - (0.03 if protocol == "knn" else 0.0))


def fake_record(notebook, seed, noise=0.0, fraction=0.8, epochs=2, audits=False):
    methods = METHODS_02 if notebook.startswith("02") else METHODS_03
    rows = []
    for method, protocol, views in methods:
        for view in views:
            acc = accuracy(method, protocol, view, seed, noise, fraction)
            rows.append({"method": method, "protocol": protocol, "view": view, "test_set": "test",
                         "accuracy": acc, "macro_f1": acc - 0.05, "n": 175})
            cf = "greyscale" if view == "image" else "bandlimit_4k"
            rows.append({"method": method, "protocol": protocol, "view": view, "test_set": cf,
                         "accuracy": acc - 0.1, "macro_f1": acc - 0.15, "n": 175})
    if notebook.startswith("03"):
        rows.append({"method": "contrastive", "protocol": "retrieval", "view": "audio->image", "test_set": "test",
                     "recall_at_1": 0.3 + 0.01 * seed, "recall_at_5": 0.6, "mAP": 0.25, "n": 175})
    params = {"fraction": fraction, "noise": noise, "noise_kind": "symmetric", "seed": seed, "epochs": epochs,
              "image_size": 64, "device": "cpu", "dataset": "animals"}
    if notebook.startswith("03"):
        params["objective"] = "infonce,supcon"
    record = {"notebook": notebook, "params": params, "results": rows,
              "noise_achieved": {"audio": noise, "image": noise},
              "split_sizes": {"audio": {"train": int(600 * fraction), "val": 50, "test": 175},
                              "image": {"train": int(650 * fraction), "val": 55, "test": 190}},
              "code_version": "fakecode", "environment": {}}
    if audits:
        record["audits"] = {m: {"all_features": {"majority": {"accuracy": 0.12, "macro_f1": 0.02},
                                                 "logistic": {"accuracy": 0.3 + 0.01 * seed, "macro_f1": 0.2},
                                                 "random_forest": {"accuracy": 0.4 + 0.01 * seed, "macro_f1": 0.3}},
                                "single_feature": [{"feature": "duration", "accuracy": 0.25, "macro_f1": 0.1,
                                                    "n_features": 1},
                                                   {"feature": "majority", "accuracy": 0.12, "macro_f1": 0.02,
                                                    "n_features": 0}]}
                            for m in ("audio", "image")}
    return record


def write_fake(results_dir, record):
    run_dir = records.default_run_dir(record["notebook"], record["params"], results_dir)
    records.write_record(run_dir, record)
    return run_dir


@pytest.fixture
def results(tmp_path):
    """02 over seeds 0-2 x noise 0/0.2 x fraction 0.2/0.8; 03 over seeds 0-1 at noise 0 and 0.2."""
    folder = tmp_path / "results"
    for seed in range(3):
        for noise in (0.0, 0.2):
            write_fake(folder, fake_record("02_baselines", seed, noise, audits=True))
        write_fake(folder, fake_record("02_baselines", seed, 0.0, fraction=0.2, audits=True))
    for seed in range(2):
        for noise in (0.0, 0.2):
            write_fake(folder, fake_record("03_contrastive", seed, noise))
    return folder


def test_results_table_flattens_params_and_skips_aggregate_records(results):
    recs = records.load_records(results)
    recs.append({"notebook": "05_label_noise", "params": {"profile": "quick"}, "aggregates": {}})
    df = reporting.results_table(recs)
    assert len(df) == 9 * 10 + 4 * 13  # (5 views x 2 test sets) per 02 record, 6 x 2 + 1 per 03
    for column in ("notebook", "seed", "fraction", "noise", "noise_kind", "method", "protocol", "view",
                   "test_set", "accuracy", "macro_f1", "epochs", "objective", "n_train_audio", "run_dir"):
        assert column in df
    assert set(df["notebook"]) == {"02_baselines", "03_contrastive"}
    row = df[(df["method"] == "image") & (df["seed"] == 1) & (df["noise"] == 0.2) & (df["test_set"] == "test")]
    assert len(row) == 1 and row["accuracy"].iloc[0] == pytest.approx(accuracy("image", "supervised", "image", 1, 0.2, 0.8))
    assert reporting.results_table([]).empty
    assert "noise" in reporting.condition_columns(df) and "seed" not in reporting.condition_columns(df)


def test_summarise_gives_mean_and_t_interval_over_seeds(results):
    df = reporting.results_table(records.load_records(results))
    s = reporting.summarise(df[df["test_set"] == "test"], by=["method", "protocol", "view", "noise", "fraction"])
    row = s[(s["method"] == "image") & (s["noise"] == 0.2) & (s["fraction"] == 0.8)].iloc[0]
    values = [accuracy("image", "supervised", "image", seed, 0.2, 0.8) for seed in range(3)]
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert row["n"] == 3 and row["mean"] == pytest.approx(np.mean(values))
    assert (row["lo"], row["hi"]) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert row["metric"] == "accuracy"
    # reruns of one seed count once
    twice = pd.concat([df, df[df["seed"] == 0]])
    s2 = reporting.summarise(twice[twice["test_set"] == "test"], by=["method", "protocol", "view", "noise", "fraction"])
    assert s2["n"].max() == 3
    # retrieval metrics summarise where they exist, and a missing metric gives an empty table
    r = reporting.summarise(df, by=["method", "view"], metric="recall_at_1")
    assert r["mean"].iloc[0] == pytest.approx(0.305) and r["n"].iloc[0] == 2
    assert reporting.summarise(df, by=["method"], metric="no_such_metric").empty
    with pytest.raises(StudyError, match="no column"):
        reporting.summarise(df, by=["nope"])


def test_format_ci_and_ci_table():
    assert reporting.format_ci(0.81234, 0.79, 0.83, 5) == "0.812 [0.790, 0.830] (n=5)"
    assert "no interval" in reporting.format_ci(0.5, 0.5, 0.5, 1)
    s = pd.DataFrame({"method": ["a", "b"], "view": ["image", "audio"], "mean": [0.5, 0.6], "lo": [0.4, 0.5],
                      "hi": [0.6, 0.7], "n": [3, 3]})
    wide = reporting.ci_table(s, ["method"], ["view"])
    assert list(wide.columns) == ["audio", "image"] and wide.loc["a", "image"].startswith("0.500 [0.400")


def test_compare_methods_pairs_by_seed(results):
    df = reporting.results_table(records.load_records(results))
    df = df[df["fraction"] == 0.8]
    # drop seed 0 of image and seed 2 of imagenet: only seed 1 is shared... plus add noise as `over`
    d = df[~((df["method"] == "image") & (df["seed"] == 0)) & ~((df["method"] == "imagenet") & (df["seed"] == 2))]
    c = reporting.compare_methods(d, {"method": "imagenet", "view": "image"}, "image", over=["noise"])
    assert list(c["noise"]) == [0.0, 0.2]
    row = c.iloc[0]
    assert row["n"] == 1 and row["seeds"] == "1" and row["unpaired_a"] == 1 and row["unpaired_b"] == 1
    assert row["mean_diff"] == pytest.approx(0.2) and row["p_value"] is None
    assert "no test possible" in row["statement"]
    # all seeds: differences vary by seed only through noise -> use a seed-dependent pair instead
    noisy = df.copy()
    bump = (noisy["method"] == "image") & (noisy["seed"] == 2)
    noisy.loc[bump, "accuracy"] += 0.05
    c = reporting.compare_methods(noisy, {"method": "imagenet", "view": "image"}, "image", noise=0.0)
    row = c.iloc[0]
    a = [accuracy("imagenet", "linear_probe", "image", s, 0, 0.8) for s in range(3)]
    b = [accuracy("image", "supervised", "image", s, 0, 0.8) + (0.05 if s == 2 else 0) for s in range(3)]
    assert row["n"] == 3 and row["test"] == "paired t-test"
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["cohens_dz"] == pytest.approx(np.mean(np.subtract(a, b)) / np.std(np.subtract(a, b), ddof=1))
    assert "p = " in row["statement"] and "d_z" in row["statement"]
    # a method with two protocols per seed is ambiguous until the protocol is named
    with pytest.raises(StudyError, match="protocol"):
        reporting.compare_methods(df, "contrastive", "image", view="image")
    ok = reporting.compare_methods(df, {"method": "contrastive", "protocol": "knn"}, "image", view="image",
                                   over="noise")
    assert list(ok["n"]) == [2, 2]  # 03 has seeds 0-1 only


def test_learning_curve_recovers_known_parameters():
    n = np.array([40, 80, 160, 320, 640, 1280], dtype=float)
    fit = reporting.fit_learning_curve(n, 0.9 - 2.0 * n ** -0.5)
    assert fit.ok and not fit.c_fixed
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.9, 2.0, 0.5), rel=1e-3)
    # three x values, seeds scattered symmetrically around the curve
    x = np.repeat([0.2, 0.5, 0.8], 3)
    y = 0.85 - 0.1 * x ** -1.0 + np.tile([-0.01, 0.0, 0.01], 3)
    fit = reporting.fit_learning_curve(x, y)
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.85, 0.1, 1.0), rel=1e-3)
    need = reporting.data_needed(fit, 0.6)
    assert fit.predict(need) == pytest.approx(0.6) and need == pytest.approx(0.4)
    assert reporting.data_needed(fit, 0.9) == math.inf
    # two x values: c fixed, still exact through the means; one x value: no fit
    two = reporting.fit_learning_curve([100, 100, 400], [0.6, 0.6, 0.7])
    assert two.c_fixed and two.ok and two.predict(100) == pytest.approx(0.6) and two.predict(400) == pytest.approx(0.7)
    one = reporting.fit_learning_curve([100, 100], [0.5, 0.6])
    assert not one.ok and math.isnan(reporting.data_needed(one, 0.5))
    # the asymptote is capped at a_max
    assert reporting.fit_learning_curve([10, 20, 40], [0.5, 0.9, 0.99]).a <= 1.0


def test_learning_curves_per_method(results):
    df = reporting.results_table(records.load_records(results))
    fits = reporting.learning_curves(df[df["noise"] == 0.0], x="fraction")
    row = fits[(fits["method"] == "image") & (fits["view"] == "image")].iloc[0]
    assert row["n_x"] == 2 and row["c_fixed"] and row["fit"].predict(0.8) == pytest.approx(0.61)
    by_items = reporting.learning_curves(df[df["noise"] == 0.0])
    assert by_items.loc[by_items["view"] == "image", "x_max"].max() == 520  # n_train_image at 0.8


def test_plot_curve_returns_a_figure_per_view(results):
    from matplotlib.figure import Figure
    df = reporting.results_table(records.load_records(results))
    fig = reporting.plot_curve(df, x="noise", fraction=0.8)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["view: audio", "view: image", "view: fused"]
    image_ax = fig.axes[1]
    labels = [line.get_label() for line in image_ax.get_lines()]
    assert any(lab.startswith("imagenet") for lab in labels) and any("contrastive" in lab for lab in labels)
    assert len(image_ax.collections) == len(labels)  # one CI band per line
    empty = reporting.plot_curve(df.iloc[0:0], x="noise")
    assert isinstance(empty, Figure)
    with pytest.raises(StudyError):
        reporting.plot_curve(df, x="no_such_axis")


def test_report_with_no_records(tmp_path):
    folder = tmp_path / "results"
    assert reporting.main(["--results", str(folder)]) == 0
    assert (folder / "summary.csv").is_file() and (folder / "figures").is_dir()
    text = (folder / "README.md").read_text()
    assert "No results yet" in text


def test_report_with_records(results):
    # an executed notebook in one run folder is rendered to HTML
    run_dir = next((results / "runs" / "02_baselines").iterdir())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# fake 02")])
    nbformat.write(nb, run_dir / "02_baselines.ipynb")
    assert reporting.main(["--results", str(results)]) == 0
    summary = pd.read_csv(results / "summary.csv")
    assert {"mean", "lo", "hi", "n", "metric", "method", "view", "noise"} <= set(summary.columns)
    figures = {p.name for p in (results / "figures").glob("*.png")}
    assert {"headline.png", "accuracy_vs_noise.png", "macro_f1_vs_noise.png", "accuracy_vs_fraction.png",
            "counterfactual_drops.png"} <= figures
    assert (results / "notebooks" / "02_baselines.html").is_file()
    text = (results / "README.md").read_text()
    for heading in ("Headline findings", "Shortcuts", "Executed notebooks", "counterfactual"):
        assert heading.lower() in text.lower()
    # the headline image result is written from the numbers
    values = [accuracy("imagenet", "linear_probe", "image", s, 0.0, 0.8) for s in range(3)]
    assert f"{np.mean(values):.3f} [" in text
    assert "random_forest" in text and "What the headline numbers show" in text
    # a second run rewrites the report without leftovers
    assert reporting.main(["--results", str(results), "--no-html"]) == 0
    json.loads(json.dumps(reporting.write_report(results, html=False)))


def test_compare_methods_pairs_across_settings_and_lists_them(results):
    df = reporting.results_table(records.load_records(results))
    # 03's runs use other epochs and an objective parameter: still paired by seed, and said so
    df.loc[df["notebook"] == "03_contrastive", "epochs"] = 4
    c = reporting.compare_methods(df, {"method": "contrastive", "protocol": "linear_probe"}, "image",
                                  view="image", fraction=0.8, over="noise")
    assert list(c["n"]) == [2, 2]
    assert "epochs: 4 vs 2" in c.iloc[0]["differences"] and "settings differ" in c.iloc[0]["statement"]


def test_effect_table_and_paired_differences(results):
    df = reporting.results_table(records.load_records(results))
    d = df[df["fraction"] == 0.8]
    diffs = reporting.paired_differences(d[d["test_set"] == "test"], "noise", 0.2, 0.0)
    assert np.allclose(diffs["diff"], -0.1) and set(diffs["seed"]) == {0, 1, 2}
    e = reporting.effect_table(d, axis="noise")
    row = e[(e["method"] == "image") & (e["view"] == "image")].iloc[0]
    assert row["baseline"] == 0.0 and row["noise"] == 0.2 and row["n"] == 3
    assert row["mean_diff"] == pytest.approx(-0.1) and row["relative"] == pytest.approx(-0.1 / 0.61)
    assert set(e["protocol"]) == {"supervised", "linear_probe"}  # primary protocols only: no knn
    # fraction: the baseline is the largest
    f = reporting.effect_table(df[df["noise"] == 0.0], axis="fraction")
    assert set(f["baseline"]) == {0.8} and set(f["fraction"]) == {0.2}
    assert "n=3" in reporting.format_diff(row)


def test_resolve_results_dir_follows_study_results(monkeypatch, tmp_path):
    monkeypatch.setattr(reporting, "RESULTS_DIR", tmp_path / "elsewhere")
    assert reporting.resolve_results_dir("results") == tmp_path / "elsewhere"
    assert reporting.resolve_results_dir("") == tmp_path / "elsewhere"
    assert reporting.resolve_results_dir(tmp_path / "x") == tmp_path / "x"
    assert reporting.resolve_results_dir("other").name == "other"


def test_collect_grid_reads_point_records_and_reports_gaps(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('fraction = 0.8\nnoise = 0.0\nseed = 0\nepochs = 1\nrun_dir = ""')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "02_baselines.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text("notebook: 02_baselines.ipynb\nprofiles:\n  quick: {seeds: [0, 1], params: {noise: [0.0, 0.2]}}\n")
    folder = tmp_path / "results"
    for seed in (0, 1):
        write_fake_at_point(folder, {"noise": 0.0, "seed": seed})
    write_fake_at_point(folder, {"noise": 0.2, "seed": 0})
    failed_dir = records.default_run_dir("02_baselines", {"noise": 0.2, "seed": 1}, folder)
    failed_dir.mkdir(parents=True)
    (failed_dir / "error.txt").write_text("ValueError: boom\n")
    got = reporting.collect_grid(grid, "quick", folder)
    assert len(got["points"]) == 4 and len(got["records"]) == 3 and got["missing"] == [{"noise": 0.2, "seed": 1}]
    assert got["failed"][0]["error"] == "ValueError: boom" and not got["ran"]
    # run_missing leaves a point that failed before alone (no kernel is started here)
    again = reporting.collect_grid(grid, "quick", folder, run_missing=True)
    assert list(again["sweep"]["status"]) == ["skipped_failed"] and len(again["records"]) == 3
    recs, status = reporting.collect_grids([grid, "no_such_grid"], "quick", folder)
    assert len(recs) == 3 and status["records"].tolist() == [3, 0] and "skipped" in status["note"].iloc[1]


def write_fake_at_point(folder, point):
    record = fake_record("02_baselines", point["seed"], point["noise"])
    record["params"].update(point)
    records.write_record(records.default_run_dir("02_baselines", point, folder), record)


def test_mitigation_variants_are_labelled_paired_and_reported(tmp_path):
    folder = tmp_path / "results"
    off = {"sample_rate": 16000, "normalize_loudness": False, "random_crop": False, "augment": False}
    for seed in range(3):
        for variant in ({}, {"sample_rate": 16000}, off):
            record = fake_record("02_baselines", seed, audits=True)
            record["params"].update({**reporting.MITIGATIONS, **variant})
            if variant.get("sample_rate") == 16000:   # the 16 kHz audio model: +0.05 plain, loses 0.3 when band-limited
                for row in record["results"]:
                    if row["view"] == "audio":
                        row["accuracy"] += 0.05 if row["test_set"] == "test" else -0.2 - 0.01 * seed
            write_fake(folder, record)
    write_fake(folder, fake_record("02_baselines", 0, noise=0.2))          # not the headline condition
    df = reporting.results_table(records.load_records(folder))
    d = reporting.mitigation_variants(df)
    assert set(d["variant"]) == {"defaults", "sample_rate=16000", "none"} and (d["noise"] == 0.0).all()
    tables = reporting.mitigation_tables(d)
    assert tables["variants"] == ["defaults", "sample_rate=16000", "none"]
    p = tables["paired"]
    acc = p[(p["measure"] == "accuracy") & (p["method"] == "audio_mel") & (p["variant"] == "sample_rate=16000")].iloc[0]
    assert acc["n"] == 3 and acc["mean_diff"] == pytest.approx(0.05)
    drop = p[(p["measure"] == "drop") & (p["method"] == "audio_mel") & (p["variant"] == "sample_rate=16000")].iloc[0]
    # defaults drop -0.1 every seed; 16 kHz: (acc - 0.1 - 0.2 - 0.01 seed) - (acc + 0.05) = -0.35 - 0.01 seed
    assert drop["mean_diff"] == pytest.approx(-0.25 - 0.01) and drop["n"] == 3
    image_rows = tables["drops"].reset_index()
    assert not ((image_rows["view"] == "image") & (image_rows["test_set"] == "bandlimit_4k")).any()
    text = (folder / "README.md").read_text() if reporting.write_report(folder, html=False) else ""
    assert "Mitigations on and off" in text and "sample_rate=16000 vs defaults, audio_mel (audio)" in text
    assert "target (< 2 points for every audio model) missed" in text      # the fake defaults drop is 0.1


def test_mitigation_constants_follow_the_study_code():
    """reporting repeats a few names so it never imports torch; they must not drift from the source."""
    from helpers import shortcuts
    from helpers.experiments import DEFAULTS
    assert {k: DEFAULTS[k] for k in reporting.MITIGATIONS} == reporting.MITIGATIONS
    assert reporting.AUDIO_TEST_SETS == tuple(shortcuts.AUDIO_COUNTERFACTUALS)


def test_readme_blocks_are_replaced_between_markers_only(tmp_path, results):
    bench = {"bench": {"quick": False, "started_at": "2026-11-25T18:00:00+0000", "seconds": 600.0},
             "machine": {"cpu_model": "AMD EPYC", "cores": 2, "device": "cpu", "load_avg_1m": 0.1, "load_avg_1m_end": 2.0},
             "targets": [{"what": "warm load", "target": "< 2 s", "unit": "s", "measured": 0.5, "met": True},
                         {"what": "share of peak", "target": ">= 0.5", "unit": "", "measured": 0.25, "met": False},
                         {"what": "full study", "target": "< 3600 s", "unit": "s", "measured": None, "met": None}]}
    (results / "bench.json").write_text(json.dumps(bench))
    out = reporting.write_report(results, html=False)
    assert set(out["blocks"]) == {"results", "performance"}
    assert "| share of peak | >= 0.5 | 25.0% | **no** |" in "\n".join(out["blocks"]["performance"])
    readme = tmp_path / "README.md"
    begin, end = reporting.BLOCK.format(name="results"), reporting.BLOCK_END.format(name="results")
    readme.write_text(f"# Title\n\nbefore\n{begin}\nstale numbers\n{end}\nafter\n")
    assert reporting.update_readme_blocks(readme, out["blocks"]) == ["results"]   # no performance markers
    text = readme.read_text()
    assert "stale numbers" not in text and text.startswith("# Title\n\nbefore\n" + begin)
    assert text.endswith(end + "\nafter\n") and "| imagenet | linear_probe |" in text
    assert "Headline findings" in text


def test_translation_rows_get_their_own_section_not_the_headline(results):
    for seed in range(3):
        rows = [{"method": m, "protocol": "fill_missing", "view": "image->audio", "test_set": "test", "fraction": f,
                 "accuracy": acc + 0.01 * seed, "n": 175}
                for f in (0.2, 0.8) for m, acc in (("single", 0.4), ("translator", 0.3), ("both_real", 0.99))]
        rows.append({"method": "real", "protocol": "judge", "view": "audio", "test_set": "test", "fraction": 0.8,
                     "accuracy": 0.99, "n": 175})
        write_fake(results, {"notebook": "06_translation", "results": rows,
                             "params": {"fraction": 0.8, "noise": 0.0, "noise_kind": "symmetric", "seed": seed}})
    reporting.write_report(results, html=False)
    text = (results / "README.md").read_text()
    head = text[text.index("## Headline findings"):text.index("## Translation (notebook 06)")]
    assert "both_real" not in head and "judge" not in head and "0.99" not in head
    section = text[text.index("## Translation (notebook 06)"):]
    assert "| both_real | image->audio |" in section
    assert "[view=image->audio, fraction=0.2] translator - single = -0.100 accuracy" in section


def test_clustering_scores_are_summarised_over_seeds(results):
    for seed in range(2):
        write_fake(results, {"notebook": "08_visualization", "params": {"seed": seed, "fraction": 0.8},
                             "clustering": [{"method": "image", "view": "image", "nmi": 0.4 + 0.1 * seed,
                                             "ari": 0.2, "purity": 0.5, "silhouette": 0.1}]})
    s = reporting.clustering_table(records.load_records(results))
    row = s[(s["metric"] == "nmi")].iloc[0]
    assert row["method"] == "image" and row["n"] == 2 and row["mean"] == pytest.approx(0.45)
    reporting.write_report(results, html=False)
    assert "## Feature spaces (notebook 08)" in (results / "README.md").read_text()
