"""Evaluation helpers on hand-made data with known answers."""
import math

import numpy as np
import pytest
from scipy import stats

from helpers.config import StudyError
from helpers.evaluation import (bootstrap_ci, classification_metrics, fuse_proba, knn_probe, linear_probe,
                                mean_ci, paired_comparison, retrieval_metrics, zero_shot_centroid)


def blobs(n_per_class=30, num_classes=4, dim=8, spread=0.3, seed=0):
    """Gaussian blobs around random unit centres: separable when spread is small."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(num_classes), n_per_class)
    return centres[y] + spread * rng.normal(size=(len(y), dim)) / math.sqrt(dim), y


# ---- classification_metrics ----

def test_perfect_predictions():
    y = np.array([0, 1, 2, 2, 1, 0])
    m = classification_metrics(y, y, num_classes=3)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["per_class_recall"] == [1.0, 1.0, 1.0]
    assert m["n"] == 6


def test_known_confusion_matrix():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, num_classes=3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    # per-class F1: 0.8, 0.5, 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_absent_class_has_nan_recall():
    m = classification_metrics([0, 1], [0, 1], num_classes=3)
    assert math.isnan(m["per_class_recall"][2]) and m["macro_f1"] == 1.0
    assert m["confusion"][2] == [0, 0, 0]


@pytest.mark.parametrize("y_pred, num_classes, match", [([0, 3], 3, "outside"), ([0], 3, "labels"),
                                                        ([0, 1], 1, "num_classes")])
def test_classification_bad_arguments(y_pred, num_classes, match):
    with pytest.raises(StudyError, match=match):
        classification_metrics([0, 1], y_pred, num_classes)


# ---- probes ----

def split(X, y, parts=2):
    """Interleaved split of one blob sample into `parts` disjoint sets (train, val, test, ...)."""
    return [(X[i::parts], y[i::parts]) for i in range(parts)]


def test_linear_probe_separates_blobs():
    (X, y), (X_test, y_test) = split(*blobs(n_per_class=40, seed=0))
    metrics, y_pred, proba = linear_probe(X, y, X_test, y_test, num_classes=4)
    assert metrics["accuracy"] > 0.95 and metrics["macro_f1"] > 0.95 and metrics["C"] == 1.0
    assert y_pred.shape == (80,) and proba.shape == (80, 4)
    assert np.allclose(proba.sum(1), 1.0) and np.array_equal(proba.argmax(1), y_pred)


def test_linear_probe_chooses_C_on_validation_only():
    (X, y), (X_val, y_val), (X_test, y_test) = split(*blobs(n_per_class=45, spread=1.5, seed=1), parts=3)
    m1, pred1, _ = linear_probe(X, y, X_test, y_test, 4, Z_val=X_val, y_val=y_val)
    m2, pred2, _ = linear_probe(X, y, X_test, np.random.default_rng(0).permutation(y_test), 4,
                                Z_val=X_val, y_val=y_val)
    assert m1["C"] == m2["C"] and m1["C"] in (0.01, 0.1, 1.0, 10.0)
    assert m1["val_macro_f1"] == m2["val_macro_f1"] and np.array_equal(pred1, pred2)
    # and the choice does follow the validation labels
    picks = {linear_probe(X, y, X_test, y_test, 4, Z_val=X_val,
                          y_val=np.random.default_rng(s).permutation(y_val))[0]["C"] for s in range(6)}
    picks.add(m1["C"])
    assert len(picks) > 1


def test_linear_probe_missing_class_in_train_still_gives_full_proba():
    X, y = blobs(seed=4)
    keep = y != 3
    _, _, proba = linear_probe(X[keep], y[keep], X, y, num_classes=4)
    assert proba.shape == (len(y), 4) and np.all(proba[:, 3] == 0)


def test_linear_probe_bad_arguments():
    X, y = blobs()
    with pytest.raises(StudyError, match="both"):
        linear_probe(X, y, X, y, 4, Z_val=X)
    with pytest.raises(StudyError, match="single class"):
        linear_probe(X, np.zeros_like(y), X, y, 4)


def test_knn_probe_on_blobs():
    (X, y), (X_test, y_test) = split(*blobs(n_per_class=40, seed=5))
    metrics, y_pred, proba = knn_probe(X, y, X_test, y_test, num_classes=4, k=5)
    assert metrics["accuracy"] > 0.95 and metrics["k"] == 5
    assert np.allclose(proba.sum(1), 1.0) and proba.shape == (80, 4)


def test_knn_uses_cosine_and_breaks_ties_by_similarity():
    Z_train = np.array([[1.0, 0.0], [100.0, 1.0], [0.0, 1.0], [0.2, 1.0]])
    y_train = np.array([0, 0, 1, 1])
    # cosine: the query points along class 0 even though class-0 item 1 is far away in Euclidean terms
    metrics, y_pred, _ = knn_probe(Z_train, y_train, [[10.0, 0.5]], [0], num_classes=2, k=1)
    assert y_pred.tolist() == [0]
    # k=2 tie (one vote each): goes to the more similar neighbour's class
    _, y_pred, proba = knn_probe(Z_train[[0, 2]], [0, 1], [[0.3, 1.0]], [1], num_classes=2, k=2)
    assert y_pred.tolist() == [1] and proba.tolist() == [[0.5, 0.5]]
    with pytest.raises(StudyError, match="k="):
        knn_probe(Z_train, y_train, Z_train, y_train, 2, k=5)


# ---- retrieval and zero-shot ----

def clustered(num_classes=5, n_per_class=20, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), n_per_class)
    return np.eye(num_classes)[y] + noise * rng.normal(size=(len(y), num_classes)), y


def test_retrieval_identical_clustered_embeddings_is_perfect():
    Z, y = clustered()
    r = retrieval_metrics(Z, y, Z, y)
    assert r["recall_at_1"] == 1.0 and r["recall_at_5"] == 1.0 and r["mAP"] == pytest.approx(1.0)
    assert r["n_queries"] == len(y)


def test_retrieval_shuffled_labels_is_near_chance():
    Z, y = clustered(num_classes=10, n_per_class=50)
    y_shuffled = np.random.default_rng(1).permutation(y)
    r = retrieval_metrics(Z, y, Z, y_shuffled)
    assert 0.03 < r["recall_at_1"] < 0.2
    assert 0.05 < r["mAP"] < 0.15  # chance mAP is about the class share, 0.1


def test_retrieval_known_ranking():
    Z_query = np.array([[1.0, 0.0]])
    Z_gallery = np.array([[1.0, 0.1], [1.0, 0.5], [0.0, 1.0]])  # ranked 0, 1, 2
    r = retrieval_metrics(Z_query, [1], Z_gallery, [0, 1, 1])
    assert r["recall_at_1"] == 0.0 and r["recall_at_5"] == 1.0
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(StudyError, match="shared embedding space"):
        retrieval_metrics(Z_query, [1], np.ones((3, 3)), [0, 1, 1])


def test_zero_shot_centroid():
    Z_sound, y = clustered(seed=2)
    Z_image, _ = clustered(seed=3)
    assert zero_shot_centroid(Z_sound, y, Z_image, y, num_classes=5)["accuracy"] == 1.0
    # rotate the gallery's classes: every query now lands on a wrong centroid
    assert zero_shot_centroid(Z_sound, y, Z_image, (y + 1) % 5, num_classes=5)["accuracy"] == 0.0


def test_zero_shot_never_predicts_class_absent_from_gallery():
    Z, y = clustered(seed=4)
    keep = y != 0
    m = zero_shot_centroid(Z, y, Z[keep], y[keep], num_classes=5)
    assert sum(row[0] for row in m["confusion"]) == 0


def test_fuse_proba_averages():
    p1 = np.array([[0.9, 0.1], [0.5, 0.5]])
    p2 = np.array([[0.1, 0.9], [0.3, 0.7]])
    assert np.allclose(fuse_proba(p1, p2), [[0.5, 0.5], [0.4, 0.6]])
    with pytest.raises(StudyError, match="shape"):
        fuse_proba(p1, p2[:1])


# ---- statistics ----

def test_mean_ci_matches_t_by_hand():
    v = [0.70, 0.74, 0.69, 0.75, 0.72]
    ci = mean_ci(v)
    mean, sd = np.mean(v), np.std(v, ddof=1)
    half = stats.t.ppf(0.975, df=4) * sd / math.sqrt(5)
    assert ci["mean"] == pytest.approx(mean) and ci["n"] == 5
    assert ci["lo"] == pytest.approx(mean - half) and ci["hi"] == pytest.approx(mean + half)
    lo, hi = stats.t.interval(0.95, df=4, loc=mean, scale=stats.sem(v))
    assert (ci["lo"], ci["hi"]) == pytest.approx((lo, hi))


def test_mean_ci_single_value_and_errors():
    assert mean_ci([0.8]) == {"mean": 0.8, "lo": 0.8, "hi": 0.8, "sd": 0.0, "n": 1}
    with pytest.raises(StudyError):
        mean_ci([])
    with pytest.raises(StudyError, match="NaN"):
        mean_ci([0.1, float("nan")])


def test_paired_comparison_detects_consistent_difference():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.6, 0.8, size=8)
    a = b + 0.05 + rng.normal(0, 0.005, size=8)
    r = paired_comparison(a, b)
    assert r["test"] == "paired t-test" and r["n"] == 8
    assert r["p_value"] < 0.05 and r["wilcoxon_p"] < 0.05
    assert r["ci_lo"] < r["mean_diff"] < r["ci_hi"] and r["ci_lo"] > 0 and r["cohens_dz"] > 2
    assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_paired_comparison_no_difference():
    b = np.array([0.70, 0.72, 0.68, 0.75, 0.71, 0.69])
    a = b + np.array([0.01, -0.01, 0.02, -0.02, 0.005, -0.005])  # noise with mean exactly 0
    r = paired_comparison(a, b)
    assert r["p_value"] > 0.5 and r["wilcoxon_p"] > 0.5 and r["ci_lo"] < 0 < r["ci_hi"]


def test_paired_comparison_degenerate_cases():
    same = paired_comparison([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert same["p_value"] == 1.0 and same["wilcoxon_p"] == 1.0 and same["cohens_dz"] is None
    shifted = paired_comparison([0.8, 0.9, 1.0], [0.7, 0.8, 0.9])  # constant difference, no spread
    assert shifted["p_value"] == 0.0 and shifted["ci_lo"] == shifted["ci_hi"] == pytest.approx(0.1)
    one = paired_comparison([0.8], [0.7])
    assert one["p_value"] is None and one["mean_diff"] == pytest.approx(0.1) and one["n"] == 1
    with pytest.raises(StudyError, match="same runs"):
        paired_comparison([0.1, 0.2], [0.1])


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, (y_true + 1) % 3)
    acc = bootstrap_ci(y_true, y_pred, n_boot=500, seed=0)
    assert acc["lo"] < acc["estimate"] < acc["hi"] and acc["hi"] - acc["lo"] < 0.15
    assert acc == bootstrap_ci(y_true, y_pred, n_boot=500, seed=0)  # seeded
    f1 = bootstrap_ci(y_true, y_pred, metric="macro_f1", n_boot=100, seed=0)
    assert f1["lo"] <= f1["estimate"] <= f1["hi"]
    perfect = bootstrap_ci(y_true, y_true, n_boot=100)
    assert perfect["lo"] == perfect["hi"] == 1.0
    with pytest.raises(StudyError, match="metric"):
        bootstrap_ci(y_true, y_pred, metric="auc")


# ---- calibration and fusion ---------------------------------------------------------------------

def _overconfident(n=400, K=4, accuracy=0.6, confidence=0.99, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    pred = np.where(rng.random(n) < accuracy, y, (y + rng.integers(1, K, n)) % K)
    P = np.full((n, K), (1 - confidence) / (K - 1))
    P[np.arange(n), pred] = confidence
    return P, y


def test_temperature_scaling_softens_an_overconfident_model_and_keeps_its_predictions():
    from helpers.evaluation import calibrate, fit_temperature
    P, y = _overconfident()
    T = fit_temperature(P, y)
    assert T > 2                                                        # 99% sure, 60% right: soften
    C = calibrate(P, T)
    np.testing.assert_array_equal(C.argmax(1), P.argmax(1))
    assert abs(C.max(1).mean() - 0.6) < 0.05                            # confidence now matches accuracy
    P2, y2 = _overconfident(accuracy=0.99, confidence=0.99, seed=1)
    assert 0.5 < fit_temperature(P2, y2) < 2                            # already calibrated: T near 1
    assert fit_temperature(np.full((10, 4), 0.25), np.zeros(10, dtype=int)) == 1.0   # nothing to fit


def test_product_rule_against_a_hand_computation():
    from helpers.evaluation import product_rule
    pa = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    pi = np.array([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1]])
    prior = np.array([0.5, 0.25, 0.25])
    # row 0: 0.6*0.2/0.5 = 0.24, 0.3*0.5/0.25 = 0.6, 0.1*0.3/0.25 = 0.12 -> / 0.96
    # row 1: 0.2*0.1/0.5 = 0.04, 0.2*0.8/0.25 = 0.64, 0.6*0.1/0.25 = 0.24 -> / 0.92
    expected = np.array([[0.24, 0.6, 0.12], [0.04, 0.64, 0.24]])
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(product_rule([pa, pi], prior), expected, rtol=1e-6)
    np.testing.assert_allclose(product_rule([pa, pi], prior * 7), expected, rtol=1e-6)   # prior normalised
    with pytest.raises(StudyError, match="differ in shape"):
        product_rule([pa, pi[:1]], prior)


def test_stacked_fusion_learns_to_ignore_a_view_that_carries_nothing():
    from helpers.evaluation import stacked_fusion
    P, y = _overconfident(n=600, accuracy=0.8, confidence=0.7, seed=2)
    noise = np.random.default_rng(3).dirichlet(np.ones(4), size=600)
    fused = stacked_fusion([P[:300], noise[:300]], y[:300], 4)([P[300:], noise[300:]])
    assert (fused.argmax(1) == y[300:]).mean() >= (P[300:].argmax(1) == y[300:]).mean() - 0.02
    mean = (P[300:] + noise[300:]) / 2
    assert (fused.argmax(1) == y[300:]).mean() > (mean.argmax(1) == y[300:]).mean()   # the average is hurt
    assert stacked_fusion([P[:5], P[:5]], np.zeros(5, dtype=int), 4) is None


# ---- item-level statistics --------------------------------------------------------------------

def test_holm_against_a_hand_computation():
    from helpers.evaluation import holm
    # sorted 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (monotone); None stays None
    assert holm([0.04, 0.01, None, 0.02]) == [pytest.approx(0.04), pytest.approx(0.03), None, pytest.approx(0.04)]
    assert holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_mcnemar_counts_discordant_items():
    from helpers.evaluation import mcnemar
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 1], bool)
    r = mcnemar(a, b)
    assert (r["a_only"], r["b_only"]) == (7, 1)
    assert r["p_value"] == pytest.approx(2 * (1 + 8) / 2 ** 8)      # two-sided binomial, 1 of 8
    assert mcnemar(a, a)["p_value"] == 1.0


def test_paired_bootstrap_covers_items_and_seeds():
    from helpers.evaluation import paired_bootstrap
    rng = np.random.default_rng(0)
    A = [rng.random(200) < 0.8 for _ in range(5)]
    B = [rng.random(200) < 0.7 for _ in range(5)]
    r = paired_bootstrap(A, B, n_boot=500, seed=1)
    assert r["mean_diff"] == pytest.approx(np.mean([a.mean() - b.mean() for a, b in zip(A, B)]))
    assert r["ci_lo"] < r["mean_diff"] < r["ci_hi"] and r["ci_lo"] > 0          # 10 points apart: clearly
    one = paired_bootstrap(A[:1], B[:1], n_boot=500, seed=1)
    assert one["ci_hi"] - one["ci_lo"] > 0.05                                   # one seed: items still vary
    same = paired_bootstrap(A, A, n_boot=200)
    assert same["mean_diff"] == same["ci_lo"] == same["ci_hi"] == 0
    with pytest.raises(StudyError, match="same non-empty test items"):
        paired_bootstrap([A[0]], [B[0][:10]])
