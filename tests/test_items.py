"""Item-level comparisons from the records' per-item predictions (helpers.items)."""
import numpy as np
import pytest
from scipy import stats

from helpers import evaluation as ev
from helpers import items
from helpers.config import StudyError


def _record(seed, pred_a, pred_b, y):
    return {"params": {"seed": seed, "noise": 0.0}, "test_labels": {"image": y, "pairs": y},
            "predictions": {"a/p/image/test": pred_a, "b/p/image/test": pred_b, "a/p/fused/test": pred_a}}


def test_item_comparison_pairs_runs_by_seed_and_items_by_position():
    y = np.arange(20) % 4
    records = []
    for seed in range(3):
        pa = y.copy()
        pa[:2 + seed] = (pa[:2 + seed] + 1) % 4          # a wrong on 2, 3, 4 items
        pb = y.copy()
        pb[:10] = (pb[:10] + 1) % 4                       # b wrong on 10 items
        records.append(_record(seed, pa.tolist(), pb.tolist(), y.tolist()))
    A, B = {"method": "a", "protocol": "p", "view": "image"}, {"method": "b", "protocol": "p", "view": "image"}
    r = items.item_comparison(records, A, B, n_boot=300)
    assert r["seed_list"] == [0, 1, 2] and r["items"] == 20
    assert r["mean_diff"] == pytest.approx(np.mean([(10 - w) / 20 for w in (2, 3, 4)]))
    assert (r["a_only"], r["b_only"]) == (8 + 7 + 6, 0) and r["ci_lo"] > 0
    assert "over 3 seed(s) x 20 items" in items.statement(r)
    # a seed that only one side has is not paired
    lonely = _record(9, y.tolist(), y.tolist(), y.tolist())
    del lonely["predictions"]["b/p/image/test"]
    assert items.item_comparison(records + [lonely], A, B, n_boot=50)["seeds"] == 3
    with pytest.raises(StudyError, match="no seed has item predictions"):
        items.item_comparison(records, A, {**B, "method": "c"})
    with pytest.raises(StudyError, match="not scored on the same items"):
        items.item_comparison(records, {**A, "view": "fused"}, B)


def test_runs_pair_only_on_the_same_test_items():
    """Two records of one seed pair item by item only where they name the same items in the same order (their
    test_items); a record that names none pairs by position."""
    y = [0, 1, 2, 3]
    a, b = _record(0, y, y, y), _record(0, y, [1, 1, 2, 3], y)
    spec_a = {"method": "a", "protocol": "p", "view": "image"}
    spec_b = {**spec_a, "method": "b"}
    a["test_items"], b["test_items"] = {"image": [5, 6, 7, 8]}, {"image": [5, 6, 7, 8]}
    by_a, by_b = items.correct_by_seed([a], spec_a), items.correct_by_seed([b], spec_b)
    assert by_a.ids == {0: (5, 6, 7, 8)} and items.paired_items(by_a, by_b, n_boot=50)["seeds"] == 1
    b["test_items"] = {"image": [8, 7, 6, 5]}          # the same items in another order: not comparable
    with pytest.raises(StudyError, match="on the same items"):
        items.paired_items(by_a, items.correct_by_seed([b], spec_b), n_boot=50)
    del b["test_items"]
    assert items.paired_items(by_a, items.correct_by_seed([b], spec_b), n_boot=50)["seeds"] == 1
    # fused rows are scored on pairs: a clip and its image
    a["test_items"] = {"audio": [1, 2], "image_on_pairs": [9, 8]}
    assert items.item_ids(a, "fused") == ((1, 9), (2, 8)) and items.item_ids(a, "audio", "external") is None


def test_labels_follow_the_view():
    r = _record(0, [0], [0], [3])
    assert items.labels_for(r, "fused").tolist() == [3]            # fused items are the pairs
    with pytest.raises(StudyError, match="no test labels"):
        items.labels_for(r, "audio")


def test_accuracy_interval_covers_seeds_and_items():
    y = np.arange(40) % 4
    records = []
    for seed, wrong in enumerate((4, 8, 12)):
        pa = y.copy()
        pa[:wrong] = (pa[:wrong] + 1) % 4
        records.append({**_record(seed, pa.tolist(), y.tolist(), y.tolist()), "notebook": "02_baselines"})
    A = {"method": "a", "protocol": "p", "view": "image"}
    r = items.accuracy_interval(records, A, n_boot=500)
    assert r["mean"] == pytest.approx(np.mean([(40 - w) / 40 for w in (4, 8, 12)]))
    assert (r["n"], r["items"]) == (3, 40) and r["lo"] < r["mean"] < r["hi"]
    one = items.accuracy_interval(records[:1], A, n_boot=500)
    assert one["n"] == 1 and one["lo"] < 0.9 < one["hi"]       # one seed: still an interval, over the items
    # a perfect classifier has no spread to resample, whatever the seeds
    perfect = items.accuracy_interval(records, {**A, "method": "b"}, n_boot=100)
    assert perfect["lo"] == perfect["hi"] == 1.0
    assert items.accuracy_interval(records, A, where={"noise": 0.2}) is None
    assert items.accuracy_interval(records, A, notebook="03_contrastive") is None


def test_item_effect_pairs_two_levels_of_an_axis_by_seed():
    y = np.arange(40) % 4
    records = []
    for noise, wrong in ((0.0, 4), (0.2, 14)):
        pa = y.copy()
        pa[:wrong] = (pa[:wrong] + 1) % 4
        r = _record(0, pa.tolist(), y.tolist(), y.tolist())
        r["params"]["noise"] = noise
        records.append(r)
    A = {"method": "a", "protocol": "p", "view": "image"}
    e = items.item_effect(records, A, "noise", 0.2, 0.0, n_boot=500)
    assert e["mean_diff"] == pytest.approx(-10 / 40) and e["seeds"] == 1 and e["ci_hi"] < 0   # one seed: items
    with pytest.raises(StudyError, match="at both noise=0.1"):
        items.item_effect(records, A, "noise", 0.1, 0.0)


def test_paired_items_tests_right_wrong_maps_and_bootstraps_changes():
    right = {0: np.array([True] * 8 + [False] * 2), 1: np.array([True] * 6 + [False] * 4)}
    wrong = {0: np.array([True] * 5 + [False] * 5), 1: np.array([True] * 5 + [False] * 5), 7: np.ones(3, bool)}
    r = items.paired_items(right, wrong, n_boot=200)
    assert r["seed_list"] == [0, 1] and r["mean_diff"] == pytest.approx(0.2) and (r["a_only"], r["b_only"]) == (4, 0)
    change = {s: v.astype(float) - 1 for s, v in right.items()}            # not right/wrong: no McNemar
    r = items.paired_items(change, {s: np.zeros(10) for s in (0, 1)}, n_boot=200)
    assert "mcnemar_p" not in r and r["mean_diff"] == pytest.approx(-0.3)
    with pytest.raises(StudyError, match="no seed"):
        items.paired_items(right, {5: np.ones(10, bool)})


def test_mcnemar_over_seeds_asks_for_one_direction_in_every_seed():
    """8 items one way in each of two seeds: twice the one-sided p, 2 * 0.5**8, as one seed's two-sided test. Two
    seeds that differ as strongly in opposite directions: no evidence of a difference in one direction."""
    def counts(a_only, b_only):
        return {"a_only": a_only, "b_only": b_only, "p_value": None}
    assert items.same_direction_p([counts(8, 0), counts(8, 0)]) == pytest.approx(2 * 0.5 ** 8)
    assert items.same_direction_p([counts(0, 8), counts(1, 9)]) == pytest.approx(2 * 10 * 0.5 ** 10 + 2 * 0.5 ** 10)
    assert items.same_direction_p([counts(8, 0), counts(0, 8)]) == 1.0
    assert items.same_direction_p([counts(0, 0)]) == 1.0
    some, none = np.array([True] * 8 + [False] * 2), np.zeros(10, bool)
    a, b = {0: some, 1: none}, {0: none, 1: some}
    r = items.paired_items(a, b, n_boot=100)
    assert r["mcnemar_p"] == 1.0 and max(ev.mcnemar(a[s], b[s])["p_value"] for s in (0, 1)) < 0.01


def test_drop_by_seed_and_item_summary_of_drops():
    """A counterfactual right on the first 6 of 10 items where the plain split had 9: a drop of 0.3 per run."""
    import pandas as pd
    y = [0] * 10
    recs = []
    for seed in range(2):
        recs.append({"notebook": "02_baselines", "run_dir": f"r{seed}", "params": {"seed": seed},
                     "test_labels": {"audio": y},
                     "predictions": {"a/p/audio/test": [0] * 9 + [1], "a/p/audio/noise": [0] * 6 + [1] * 4}})
    spec = {"method": "a", "protocol": "p", "view": "audio"}
    drops = items.drop_by_seed(recs, spec, "noise")
    assert sorted(drops) == [0, 1] and drops[0].tolist() == [0] * 6 + [-1] * 3 + [0]
    rows = pd.DataFrame([{"notebook": "02_baselines", "run_dir": f"r{s}", "seed": s, **spec, "test_set": "noise",
                          "drop": -0.3} for s in range(2)])
    s = items.item_summary(rows, recs, metric="drop").iloc[0]
    assert s["interval"] == "items" and s["mean"] == pytest.approx(-0.3) and s["lo"] < -0.3 < s["hi"]
    # records without per-item predictions: the t interval over seeds, the method marked
    bare = [{k: v for k, v in r.items() if k != "predictions"} for r in recs]
    t = items.item_summary(rows, bare, metric="drop").iloc[0]
    assert t["interval"] == "t" and t["method"] == "a (t)" and t["n"] == 2
    # one of the two runs without them: the bootstrap would drop it, so the t interval over both
    half = items.item_summary(rows, [recs[0], bare[1]], metric="drop").iloc[0]
    assert half["interval"] == "t" and half["n"] == 2


def test_an_interval_of_one_seed_says_it_leaves_out_the_seeds():
    result = {"mean_diff": -0.2, "ci_lo": -0.28, "ci_hi": -0.14, "seeds": 1, "items": 175}
    assert items.interval_text(result).endswith("over 1 seed(s) x 175 items (t over seeds and bootstrap over test "
                                                "items: one training run, "
                                                "so the interval leaves out how training varies with the seed)")
    assert items.interval_text({**result, "seeds": 3}).endswith(
        "over 3 seed(s) x 175 items (t over seeds and bootstrap over test items)")


def test_two_runs_of_one_seed_that_disagree_are_an_error_not_a_silent_pick():
    y = np.arange(20) % 4
    wrong = ((y + 1) % 4).tolist()
    clean, noisy = _record(0, y.tolist(), y.tolist(), y.tolist()), _record(0, wrong, y.tolist(), y.tolist())
    noisy["params"]["noise"] = 0.2
    A = {"method": "a", "protocol": "p", "view": "image"}
    with pytest.raises(StudyError, match="seed 0: runs .* both match .* tell them apart"):
        items.correct_by_seed([clean, noisy], A)
    assert items.correct_by_seed([clean, noisy], A, where={"noise": 0.2})[0].sum() == 0
    # the same predictions twice (one point, recorded again) are one run's answer
    assert items.correct_by_seed([clean, dict(clean)], A)[0].all()


def test_a_pairing_across_cpu_models_says_so():
    y = np.arange(20) % 4
    a, b = _record(0, y.tolist(), y.tolist(), y.tolist()), _record(0, ((y + 1) % 4).tolist(), y.tolist(), y.tolist())
    a["environment"], b["environment"] = {"cpu_model": "AMD EPYC"}, {"cpu_model": "Intel Xeon"}
    b["params"]["noise"] = 0.2
    spec = {"method": "a", "protocol": "p", "view": "image"}
    e = items.item_effect([a, b], spec, "noise", 0.2, 0.0, n_boot=100)
    assert e["machines_differ"] == 1 and "1 of the seed pairs ran on different CPU models" in items.interval_text(e)
    b["environment"]["cpu_model"] = "AMD EPYC"
    e = items.item_effect([a, b], spec, "noise", 0.2, 0.0, n_boot=100)
    assert e["machines_differ"] == 0 and "CPU models" not in items.interval_text(e)


def test_the_interval_gives_the_seeds_their_t_weight_and_the_items_theirs():
    rng = np.random.default_rng(3)
    # 3 seeds that disagree a lot on 200 items: a bootstrap over 3 seeds alone is narrower than their t interval
    D = np.stack([rng.random(200) < p for p in (0.40, 0.55, 0.70)]).astype(float)
    got = items.seeds_and_items_interval(D, n_boot=1000)
    t = stats.t.ppf(0.975, 2) * D.mean(axis=1).std(ddof=1) / np.sqrt(3)
    assert got["mean_diff"] == pytest.approx(D.mean())
    assert got["ci_lo"] < D.mean() - t and got["ci_hi"] > D.mean() + t     # wider than the seeds' part alone
    boot = ev.paired_bootstrap(list(D), list(np.zeros_like(D)), n_boot=1000)
    assert boot["ci_hi"] - boot["ci_lo"] < 2 * t < got["ci_hi"] - got["ci_lo"]
    # near the ceiling the symmetric t part would pass 1: an accuracy's interval stays within [0, 1]
    high = np.stack([rng.random(200) < p for p in (0.97, 0.99, 1.0)]).astype(float)
    assert items.seeds_and_items_interval(high, n_boot=500)["ci_hi"] == 1.0
    # seeds that agree item for item: only the items' part, which is the bootstrap over the items
    same = np.stack([D[0]] * 3)
    one = items.seeds_and_items_interval(same[:1], n_boot=1000)
    assert items.seeds_and_items_interval(same, n_boot=1000)["ci_lo"] == pytest.approx(one["ci_lo"])
    assert one["ci_lo"] < D[0].mean() < one["ci_hi"] and one["seeds"] == 1
    # two item sets (external minus plain test split): the mean difference, each set resampled on its own
    minus = np.ones((3, 50))
    drop = items.seeds_and_items_interval(D, minus, n_boot=1000)
    assert drop["mean_diff"] == pytest.approx(D.mean() - 1) and drop["items"] == 200
    assert drop["ci_hi"] - drop["ci_lo"] == pytest.approx(got["ci_hi"] - got["ci_lo"], abs=0.02)  # no spread there
    noisy = items.seeds_and_items_interval(D, (rng.random((3, 50)) < 0.5).astype(float), n_boot=1000)
    assert noisy["ci_hi"] - noisy["ci_lo"] > drop["ci_hi"] - drop["ci_lo"]   # its own items' sampling adds to it
    with pytest.raises(StudyError, match="same seeds on both sides"):
        items.seeds_and_items_interval(D, minus[:2])


def test_the_external_drop_is_item_level_over_two_item_sets():
    y = (np.arange(40) % 4).tolist()
    records = []
    for seed, wrong in enumerate((4, 6, 8)):
        pa = np.array(y)
        pa[:wrong] = (pa[:wrong] + 1) % 4
        r = _record(seed, pa.tolist(), y, y)
        r["test_labels"]["external_image"] = y[:20]
        r["predictions"]["a/p/image/external"] = [(v + 1) % 4 for v in y[:10]] + y[10:20]   # half right
        records.append(r)
    A = {"method": "a", "protocol": "p", "view": "image"}
    got = items.external_drop_interval(records, A, n_boot=500)
    assert got["mean"] == pytest.approx(0.5 - np.mean([(40 - w) / 40 for w in (4, 6, 8)]))
    assert got["n"] == 3 and got["items"] == 20 and got["lo"] < got["mean"] < got["hi"] < 0
    assert items.external_drop_interval(records, {**A, "method": "b"}) is None   # b never scored externally
