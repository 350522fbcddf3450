"""helpers.tables on fake records written to tmp_path (never to results/): the results table, intervals over
seeds, paired comparisons, effects of an axis, counterfactual drops, mitigation and clustering tables."""
import math

import numpy as np
import pandas as pd
import pytest
from fake_records import accuracy, fake_record, write_fake, write_mitigations, write_recipes, write_study
from scipy import stats

from helpers import records, tables
from helpers import validity
from helpers.config import StudyError


@pytest.fixture
def results(tmp_path):
    return write_study(tmp_path / "results")


@pytest.fixture
def df(results):
    return tables.results_table(records.load_records(results))


def test_results_table_flattens_params_and_skips_aggregate_records(results):
    recs = records.load_records(results)
    recs.append({"notebook": "05_label_noise", "params": {"profile": "quick"}, "aggregates": {}})
    df = tables.results_table(recs)
    assert len(df) == 9 * 10 + 4 * 13  # (5 views x 2 test sets) per 02 record, 6 x 2 + 1 per 03
    for column in ("notebook", "seed", "fraction", "noise", "noise_kind", "method", "protocol", "view",
                   "test_set", "accuracy", "macro_f1", "epochs", "objective", "n_train_audio", "run_dir"):
        assert column in df
    assert set(df["notebook"]) == {"02_baselines", "03_contrastive"}
    row = df[(df["method"] == "image") & (df["seed"] == 1) & (df["noise"] == 0.2) & (df["test_set"] == "test")]
    assert len(row) == 1 and row["accuracy"].iloc[0] == pytest.approx(accuracy("image", "supervised", "image", 1, 0.2, 0.8))
    assert tables.results_table([]).empty
    assert "noise" in tables.condition_columns(df) and "seed" not in tables.condition_columns(df)
    assert "epochs" in tables.param_columns(df) and not {"accuracy", "n_train_audio", "run_dir"} & set(tables.param_columns(df))


def test_summarise_gives_mean_and_t_interval_over_seeds(df):
    s = tables.summarise(df[df["test_set"] == "test"], by=["method", "protocol", "view", "noise", "fraction"])
    row = s[(s["method"] == "image") & (s["noise"] == 0.2) & (s["fraction"] == 0.8)].iloc[0]
    values = [accuracy("image", "supervised", "image", seed, 0.2, 0.8) for seed in range(3)]
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert row["n"] == 3 and row["mean"] == pytest.approx(np.mean(values))
    assert (row["lo"], row["hi"]) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert row["metric"] == "accuracy"
    # reruns of one seed count once
    twice = pd.concat([df, df[df["seed"] == 0]])
    s2 = tables.summarise(twice[twice["test_set"] == "test"], by=["method", "protocol", "view", "noise", "fraction"])
    assert s2["n"].max() == 3
    # retrieval metrics summarise where they exist, and a missing metric gives an empty table
    r = tables.summarise(df, by=["method", "view"], metric="recall_at_1")
    assert r["mean"].iloc[0] == pytest.approx(0.305) and r["n"].iloc[0] == 2
    assert tables.summarise(df, by=["method"], metric="no_such_metric").empty
    with pytest.raises(StudyError, match="no column"):
        tables.summarise(df, by=["nope"])


def test_summarise_keeps_the_interval_inside_the_metric_range():
    near_one = pd.DataFrame({"method": "m", "seed": [0, 1, 2], "accuracy": [0.93, 0.99, 1.0],
                             "drop": [-0.99, -0.9, -0.5]})
    acc = tables.summarise(near_one, by=["method"]).iloc[0]
    half = stats.t.ppf(0.975, 2) * np.std([0.93, 0.99, 1.0], ddof=1) / math.sqrt(3)
    assert acc["hi"] == 1.0 and acc["lo"] == pytest.approx(np.mean([0.93, 0.99, 1.0]) - half)
    assert tables.summarise(near_one, by=["method"], metric="drop").iloc[0]["lo"] == -1.0


def test_format_ci_and_ci_table():
    assert tables.format_ci(0.81234, 0.79, 0.83, 5) == "0.812 [0.790, 0.830] (n=5)"
    assert "no interval" in tables.format_ci(0.5, 0.5, 0.5, 1)      # one seed, an interval over seeds
    # one seed, an interval from a bootstrap over the test items: shown, and named for what it covers
    assert tables.format_ci(0.5, 0.43, 0.57, 1) == "0.500 [0.430, 0.570] (n=1: test items only)"
    # told what the interval covers, it need not guess from the width: a perfect run's items have no spread
    assert tables.format_ci(1.0, 1.0, 1.0, 1, interval="items") == "1.000 [1.000, 1.000] (n=1: test items only)"
    assert tables.format_ci(0.5, 0.43, 0.57, 1, interval="t") == "0.500 (n=1, no interval)"
    s = pd.DataFrame({"method": ["a", "b"], "view": ["image", "audio"], "mean": [0.5, 0.6], "lo": [0.4, 0.5],
                      "hi": [0.6, 0.7], "n": [3, 3]})
    wide = tables.ci_table(s, ["method"], ["view"])
    assert list(wide.columns) == ["audio", "image"] and wide.loc["a", "image"].startswith("0.500 [0.400")


def test_sort_table_uses_the_study_order_then_numbers_then_text():
    t = pd.DataFrame({"view": ["fused", "zzz", "audio", "image"], "protocol": ["knn", "supervised", "other", "knn"],
                      "level": [2, "b", 10, "a"]})
    assert list(tables.sort_table(t, ["view"])["view"]) == ["audio", "image", "fused", "zzz"]
    assert list(tables.sort_table(t, ["protocol"])["protocol"]) == ["supervised", "knn", "knn", "other"]
    assert list(tables.sort_table(t, ["level"])["level"]) == [2, 10, "a", "b"]


def test_compare_methods_pairs_by_seed(df):
    df = df[df["fraction"] == 0.8]
    # drop seed 0 of image and seed 2 of imagenet: only seed 1 is shared... plus add noise as `over`
    d = df[~((df["method"] == "image") & (df["seed"] == 0)) & ~((df["method"] == "imagenet") & (df["seed"] == 2))]
    c = tables.compare_methods(d, {"method": "imagenet", "view": "image"}, "image", over=["noise"])
    assert list(c["noise"]) == [0.0, 0.2]
    row = c.iloc[0]
    assert row["n"] == 1 and row["seeds"] == "1" and row["unpaired_a"] == 1 and row["unpaired_b"] == 1
    assert row["mean_diff"] == pytest.approx(0.2) and row["p_value"] is None
    assert "no test possible" in row["statement"]
    # all seeds: differences vary by seed only through noise -> use a seed-dependent pair instead
    noisy = df.copy()
    bump = (noisy["method"] == "image") & (noisy["seed"] == 2)
    noisy.loc[bump, "accuracy"] += 0.05
    c = tables.compare_methods(noisy, {"method": "imagenet", "view": "image"}, "image", noise=0.0)
    row = c.iloc[0]
    a = [accuracy("imagenet", "linear_probe", "image", s, 0, 0.8) for s in range(3)]
    b = [accuracy("image", "supervised", "image", s, 0, 0.8) + (0.05 if s == 2 else 0) for s in range(3)]
    assert row["n"] == 3 and row["test"] == "paired t-test"
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["cohens_dz"] == pytest.approx(np.mean(np.subtract(a, b)) / np.std(np.subtract(a, b), ddof=1))
    assert "p = " in row["statement"] and "d_z" in row["statement"]
    assert list(c.columns) == list(tables.COMPARE_COLUMNS)  # no `over`: exactly the documented columns
    # a method with two protocols per seed is ambiguous until the protocol is named
    with pytest.raises(StudyError, match="protocol"):
        tables.compare_methods(df, "contrastive", "image", view="image")
    ok = tables.compare_methods(df, {"method": "contrastive", "protocol": "knn"}, "image", view="image",
                                over="noise")
    assert list(ok["n"]) == [2, 2]  # 03 has seeds 0-1 only


def test_compare_methods_pairs_across_settings_and_lists_them(df):
    # 03's runs use other epochs and an objective parameter: still paired by seed, and said so
    df.loc[df["notebook"] == "03_contrastive", "epochs"] = 4
    c = tables.compare_methods(df, {"method": "contrastive", "protocol": "linear_probe"}, "image",
                               view="image", fraction=0.8, over="noise")
    assert list(c["n"]) == [2, 2]
    assert "epochs: 4 vs 2" in c.iloc[0]["differences"] and "settings differ" in c.iloc[0]["statement"]


def test_method_pairs_keep_available_sides_with_their_primary_protocol(df):
    test = df[(df["test_set"] == "test") & (df["fraction"] == 0.8)]
    pairs = tables.method_pairs(test, [(("imagenet", "image"), ("image", "image")),
                                       (("contrastive", "fused"), ("late_fusion", "fused")),
                                       (("mvae", "image"), ("image", "image")),        # no mvae runs
                                       (("image", "fused"), ("imagenet", "fused"))])   # image has no fused view
    assert pairs == [({"method": "imagenet", "protocol": "linear_probe", "view": "image"},
                      {"method": "image", "protocol": "supervised", "view": "image"}),
                     ({"method": "contrastive", "protocol": "linear_probe", "view": "fused"},
                      {"method": "late_fusion", "protocol": "supervised", "view": "fused"})]
    c = tables.compare_pairs(test, pairs, over=["noise"])
    assert len(c) == 4 and list(c["n"]) == [3, 3, 2, 2]
    assert c["mean_diff"].iloc[0] == pytest.approx(0.2)                      # imagenet - image
    assert c["mean_diff"].iloc[2] == pytest.approx(0.55 - 0.7)               # contrastive - late fusion
    empty = tables.compare_pairs(test, [], over=["noise"])
    assert empty.empty and list(empty.columns) == ["noise", *tables.COMPARE_COLUMNS]
    assert tables.compare_pairs(test.iloc[0:0], pairs, metric="diff").empty


def test_effect_table_and_paired_differences(df):
    d = df[df["fraction"] == 0.8]
    diffs = tables.paired_differences(d[d["test_set"] == "test"], "noise", 0.2, 0.0)
    assert np.allclose(diffs["diff"], -0.1) and set(diffs["seed"]) == {0, 1, 2}
    e = tables.effect_table(d, axis="noise")
    row = e[(e["method"] == "image") & (e["view"] == "image")].iloc[0]
    assert row["baseline"] == 0.0 and row["noise"] == 0.2 and row["n"] == 3
    assert row["mean_diff"] == pytest.approx(-0.1) and row["relative"] == pytest.approx(-0.1 / 0.61)
    assert set(e["protocol"]) == {"supervised", "linear_probe"}  # primary protocols only: no knn
    # fraction: the baseline is the largest
    f = tables.effect_table(df[df["noise"] == 0.0], axis="fraction")
    assert set(f["baseline"]) == {0.8} and set(f["fraction"]) == {0.2}
    assert "n=3" in tables.format_diff(row)
    # the same difference in every seed: no spread, so no t-test and no p (it would be 0 by fiat)
    same = {"mean_diff": -0.021, "ci_lo": -0.021, "ci_hi": -0.021, "n": 3, "p_value": 0.0, "cohens_dz": None}
    assert tables.format_diff(same).endswith("n=3, no spread across seeds: no t-test")


def test_counterfactual_drops_of_a_record_and_of_a_table_agree(df):
    record = fake_record("02_baselines", 1)
    record["results"] += [{"method": "image", "protocol": "supervised", "view": "image", "test_set": "external",
                           "accuracy": 0.1, "macro_f1": 0.1, "n": 40}]
    one = validity.counterfactual_drops(record)
    assert list(one.columns) == ["method", "protocol", "view", "test_set", "plain", "accuracy", "drop"]
    assert len(one) == 5 and np.allclose(one["drop"], -0.1)  # one changed test set per method/view; no external
    row = one[(one["method"] == "imagenet") & (one["view"] == "fused")].iloc[0]
    assert row["test_set"] == "bandlimit_4k" and row["plain"] == pytest.approx(accuracy("imagenet", "linear_probe",
                                                                                        "fused", 1, 0.0, 0.8))
    # the same record in a results table: the same drops, with the run's parameters alongside
    many = validity.counterfactual_drops(df)
    same = many[(many["seed"] == 1) & (many["noise"] == 0.0) & (many["fraction"] == 0.8)
                & (many["notebook"] == "02_baselines")]
    key = ["method", "protocol", "view", "test_set"]
    pd.testing.assert_frame_equal(same[key + ["plain", "accuracy", "drop"]].sort_values(key).reset_index(drop=True),
                                  one.sort_values(key).reset_index(drop=True))
    assert "retrieval" not in set(many["protocol"]) and len(many) == 9 * 5 + 4 * 6
    assert validity.counterfactual_drops({"results": []}).empty


def test_headline_table_pivots_one_record():
    t = tables.headline_table(fake_record("02_baselines", 0))
    assert t.loc[("imagenet", "linear_probe"), ("accuracy", "fused")] == pytest.approx(0.82)
    assert t.loc[("image", "supervised"), ("macro_f1", "image")] == pytest.approx(0.55)
    assert set(t.columns.get_level_values(1)) == {"audio", "image", "fused"}


def test_mitigation_variants_are_labelled_and_paired(tmp_path):
    folder = write_mitigations(tmp_path / "results", validity.MITIGATIONS)
    df = tables.results_table(records.load_records(folder))
    d = validity.mitigation_variants(df)
    assert set(d["variant"]) == {"defaults", "sample_rate=16000", "none"} and (d["noise"] == 0.0).all()
    t = validity.variant_tables(d)
    assert t["variants"] == ["defaults", "sample_rate=16000", "none"] and t["seeds"] == 3
    p = t["paired"]
    acc = p[(p["measure"] == "accuracy") & (p["method"] == "audio_mel") & (p["variant"] == "sample_rate=16000")].iloc[0]
    assert acc["n"] == 3 and acc["mean_diff"] == pytest.approx(0.05)
    drop = p[(p["measure"] == "drop") & (p["method"] == "audio_mel") & (p["variant"] == "sample_rate=16000")].iloc[0]
    # defaults drop -0.1 every seed; 16 kHz: (acc - 0.1 - 0.2 - 0.01 seed) - (acc + 0.05) = -0.35 - 0.01 seed
    assert drop["mean_diff"] == pytest.approx(-0.25 - 0.01) and drop["n"] == 3
    image_rows = t["drops"].reset_index()
    assert not ((image_rows["view"] == "image") & (image_rows["test_set"] == "bandlimit_4k")).any()
    assert set(p["interval"]) == {"t"}


def test_mitigation_tables_item_by_item(tmp_path):
    """With the records' per-item predictions: bootstrap intervals over seeds and items, and each variant
    against the defaults on the same items (McNemar for accuracy), also where a variant has one seed."""
    folder = write_mitigations(tmp_path / "results", validity.MITIGATIONS)
    recs = records.load_records(folder)
    d = validity.mitigation_variants(tables.results_table(recs))
    t = validity.variant_tables(d, recs)
    p = t["paired"]
    assert set(p["interval"]) == {"items"} and (p["items"] == 175).all()
    acc = p[(p["measure"] == "accuracy") & (p["method"] == "audio_mel") & (p["variant"] == "sample_rate=16000")].iloc[0]
    # +0.05 accuracy on 175 items: 8-9 more items right in every seed (rounding), none fewer
    assert acc["n"] == 3 and acc["mean_diff"] == pytest.approx(0.05, abs=1 / 175) and acc["ci_lo"] > 0
    assert acc["p_value"] < 0.01 and acc["discordant"] >= 3 * 8
    image = p[(p["measure"] == "accuracy") & (p["view"] == "image")]
    assert len(image) and (image["discordant"] == 0).all()        # an audio setting leaves the image model alone
    drop = p[(p["measure"] == "drop") & (p["method"] == "audio_mel") & (p["variant"] == "sample_rate=16000")].iloc[0]
    assert drop["mean_diff"] == pytest.approx(-0.26, abs=0.01) and np.isnan(drop["p_value"])
    assert t["accuracy"].loc[("audio_mel", "supervised", "audio"), "defaults"].endswith("(n=3)")
    # one seed of one variant: still an interval (over its items) and a paired test
    one = [r for r in recs if r["params"]["seed"] == 0 or r["params"]["sample_rate"] != 16000]
    t1 = validity.variant_tables(validity.mitigation_variants(tables.results_table(one)), one)
    cell = t1["accuracy"].loc[("audio_mel", "supervised", "audio"), "sample_rate=16000"]
    assert cell.endswith("(n=1: test items only)")
    p1 = t1["paired"]
    assert (p1[p1["variant"] == "sample_rate=16000"]["seeds"] == "0").all()


def test_recipe_runs_are_no_mitigation_defaults(tmp_path):
    """A recipe run at the default mitigations is a variant of the recipes, never one of the mitigations'
    defaults; a mitigation variant is never one of the recipes' defaults."""
    folder = write_mitigations(tmp_path / "results", {**validity.MITIGATIONS, **validity.RECIPES})
    write_recipes(folder, {**validity.MITIGATIONS, **validity.RECIPES})
    df = tables.results_table(records.load_records(folder))
    m = validity.mitigation_variants(df)
    assert set(m["variant"]) == {"defaults", "sample_rate=16000", "none"}
    assert (m["mix"] == "none").all() and m[m["variant"] == "defaults"]["run_dir"].nunique() == 3
    r = validity.recipe_variants(df)
    assert set(r["variant"]) == {"defaults", "mix=mixup"} and (r["sample_rate"] == 8000).all()
    assert r.groupby("variant")["run_dir"].nunique().to_dict() == {"defaults": 3, "mix=mixup": 3}
    assert validity.at_defaults({"mix": "none", "sample_rate": 8000}) and validity.at_defaults({})
    assert not validity.at_defaults({"mix": "mixup"}) and not validity.at_defaults({"image_size": 96})


def test_a_study_is_read_by_its_own_setting_after_a_default_changes():
    """Runs made while a recipe's default was another value (an older study) keep that value as their setting:
    the runs most of them hold, not the schema's current default, so their defaults are still the defaults."""
    old = {**validity.MITIGATIONS, **validity.RECIPES, "patience": validity.RECIPES["patience"] + 3}
    runs = [dict(old, run_dir=f"r{i}") for i in range(4)] + [dict(old, run_dir="m", mix="mixup")]
    setting = validity.study_setting(runs)
    assert setting["patience"] == old["patience"] and setting["mix"] == validity.RECIPES["mix"]
    assert validity.at_defaults(runs[0], setting) and not validity.at_defaults(runs[0])
    assert not validity.at_defaults(runs[-1], setting)
    assert validity.study_setting([{}])["patience"] == validity.RECIPES["patience"]   # absent: the schema's default


def test_mitigation_constants_follow_the_study_code():
    """The tables name a few of the study's settings without importing torch; they must not drift from the source."""
    from helpers import schema, shortcuts
    assert {k: schema.PARAMS[k].default for k in validity.MITIGATIONS} == validity.MITIGATIONS
    assert validity.MITIGATIONS["sample_rate"] != validity.MITIGATION_OFF["sample_rate"]
    assert set(validity.MITIGATIONS) == set(validity.MITIGATION_OFF)
    assert {k: schema.param("02_baselines", k).default for k in validity.RECIPES} == validity.RECIPES
    assert validity.AUDIO_TEST_SETS == tuple(shortcuts.AUDIO_COUNTERFACTUALS)


def test_clustering_scores_are_summarised_over_seeds(results):
    for seed in range(2):
        write_fake(results, {"notebook": "08_visualization", "params": {"seed": seed, "fraction": 0.8},
                             "clustering": [{"method": "image", "view": "image", "nmi": 0.4 + 0.1 * seed,
                                             "ari": 0.2, "purity": 0.5, "silhouette": 0.1}]})
    s = tables.clustering_table(records.load_records(results))
    row = s[(s["metric"] == "nmi")].iloc[0]
    assert row["method"] == "image" and row["n"] == 2 and row["mean"] == pytest.approx(0.45)
    assert set(s["metric"]) == {"nmi", "ari", "purity", "silhouette"}
    assert tables.clustering_table([]).empty


def test_audit_tables_summarise_one_audit_per_seed(results):
    full, single = validity.audit_tables(records.load_records(results))
    rf = full[(full["modality"] == "audio") & (full["classifier"] == "random_forest")].iloc[0]
    assert rf["n"] == 3 and rf["mean"] == pytest.approx(0.41)   # seeds 0-2 at the largest fraction only
    assert set(single["feature"]) == {"duration", "majority"}


def test_variants_read_defaults_first_then_one_factor_at_a_time_in_the_factors_order():
    from helpers.validity import RECIPES, variant_order
    assert (variant_order(["none", "augment=False", "defaults", "sample_rate=16000", "augment=False"])
            == ["defaults", "sample_rate=16000", "augment=False", "none"])
    assert (variant_order(["decay_epochs=5", "image_size=96", "defaults", "mix=mixup"], RECIPES)
            == ["defaults", "mix=mixup", "image_size=96", "decay_epochs=5"])


def test_a_target_whose_candidates_have_no_validation_score_is_said_not_scored():
    rows = pd.DataFrame([{"method": m, "protocol": "supervised", "view": "audio", "test_set": "test", "accuracy": a,
                          "seed": 0} for m, a in (("audio_mel", 0.8), ("audio_wave", 0.9))])
    chosen = tables.target_rows(rows)
    assert "audio from scratch" not in set(chosen.get("target", []))
    assert any(t == "audio from scratch" and "no validation score" in why for _, t, why in chosen.attrs["unscored"])
    scored = tables.target_rows(rows.assign(val_accuracy=[0.95, 0.7]))
    assert set(scored.loc[scored["target"] == "audio from scratch", "method"]) == {"audio_mel"}   # by validation


def test_a_curve_averages_the_same_seeds_at_every_level():
    # notebook 03's noise 0 has the scaling grid's 3 seeds, its noise > 0 points seed 0 only
    rows = pd.DataFrame({"notebook": ["03"] * 4 + ["02"] * 4, "run_dir": list("abcdefgh"),
                         "seed": [0, 1, 2, 0, 0, 1, 0, 1], "noise": [0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.2, 0.2]})
    kept, note = tables.matched_seeds(rows, "noise")
    assert sorted(kept["run_dir"]) == ["a", "d", "e", "f", "g", "h"]
    assert len(note) == 1   # notebook 02 has seeds 0 and 1 at both levels
    assert "03: this curve uses the seed(s) that every noise level has (0); 2 run(s) of other seeds (at noise 0.0) " \
        "are left out" in note[0]
    # no seed at every level: nothing is dropped, and the note says the levels average different seeds
    kept, note = tables.matched_seeds(rows[rows["run_dir"].isin(["b", "d"])], "noise")
    assert len(kept) == 2 and "average different seeds" in note[0]
