"""Evaluation: classification metrics, probes on frozen embeddings, cross-modal retrieval,
late fusion, and statistics over seeds (t intervals, paired tests, bootstrap).

Embeddings are arrays Z of shape (n, dim) (numpy, or torch tensors which are converted);
labels y are integers in [0, num_classes). Every function returns plain Python numbers and lists
so results can be written to JSON as they are.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from sklearn.preprocessing import StandardScaler

from helpers.config import StudyError

C_GRID = (0.01, 0.1, 1.0, 10.0)


def _array(X, name: str, ndim: int) -> np.ndarray:
    """numpy copy of an array or (possibly grad-tracking, GPU) torch tensor, with its rank checked."""
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != ndim or len(X) == 0:
        raise StudyError(f"{name} must be a non-empty {ndim}-d array; got shape {X.shape}")
    return X


def _labels(y, name: str, num_classes: int, n: int | None = None) -> np.ndarray:
    y = _array(y, name, 1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise StudyError(f"{name} must hold integer class indices")
        y = y.astype(int)
    if y.min() < 0 or y.max() >= num_classes:
        raise StudyError(f"{name} has labels outside [0, {num_classes}): min {y.min()}, max {y.max()}")
    if n is not None and len(y) != n:
        raise StudyError(f"{name} has {len(y)} labels but there are {n} items")
    return y


def _check_num_classes(num_classes) -> None:
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 2):
        raise StudyError(f"num_classes={num_classes!r} must be an integer >= 2")


def _unit(Z: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so dot products are cosine similarities (zero rows stay zero)."""
    Z = Z.astype(np.float64)
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


# ---- classification ----------------------------------------------------------------------

def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """accuracy, macro_f1, per_class_recall (list), confusion (rows = true class), n.

    macro_f1 averages over the classes present in y_true or y_pred (sklearn's default), so a
    class missing from a small split does not count as F1 = 0. per_class_recall has one entry per
    class, NaN for a class with no true items.
    """
    _check_num_classes(num_classes)
    y_true = _labels(y_true, "y_true", num_classes)
    y_pred = _labels(y_pred, "y_pred", num_classes, n=len(y_true))
    labels = np.arange(num_classes)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class_recall": [float(r) for r in recall_score(y_true, y_pred, labels=labels, average=None,
                                                              zero_division=np.nan)],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n": int(len(y_true)),
    }


def _full_proba(model, proba: np.ndarray, num_classes: int) -> np.ndarray:
    """Place predict_proba columns (classes seen in training) into all num_classes columns."""
    full = np.zeros((len(proba), num_classes))
    full[:, model.classes_.astype(int)] = proba
    return full


def linear_probe(Z_train, y_train, Z_test, y_test, num_classes: int, Z_val=None, y_val=None,
                 seed: int = 0, Cs=C_GRID) -> tuple[dict, np.ndarray, np.ndarray]:
    """Standardise, then balanced logistic regression on frozen embeddings.

    With a validation set, C is chosen from `Cs` by validation macro-F1 (ties go to the smaller,
    more regularised C); the test set is never looked at for this. Without one, C = 1.
    The model used is the one fitted on the training set with that C.
    Returns (metrics on test + "C" [+ "val_macro_f1"], y_pred, proba of shape (n_test, num_classes)).
    """
    _check_num_classes(num_classes)
    Z_train, Z_test = _array(Z_train, "Z_train", 2), _array(Z_test, "Z_test", 2)
    y_train = _labels(y_train, "y_train", num_classes, n=len(Z_train))
    y_test = _labels(y_test, "y_test", num_classes, n=len(Z_test))
    if len(np.unique(y_train)) < 2:
        raise StudyError("y_train has a single class; a classifier needs at least two")
    if (Z_val is None) != (y_val is None):
        raise StudyError("give both Z_val and y_val, or neither")
    scaler = StandardScaler().fit(Z_train)

    def fit(C):
        # class_weight="balanced": the small splits are not perfectly balanced and macro-F1 is reported
        return LogisticRegression(C=C, max_iter=5000, class_weight="balanced",
                                  random_state=seed).fit(scaler.transform(Z_train), y_train)

    extra = {}
    if Z_val is None:
        C, model = 1.0, fit(1.0)
    else:
        Z_val = _array(Z_val, "Z_val", 2)
        y_val = _labels(y_val, "y_val", num_classes, n=len(Z_val))
        best = None
        for C in sorted(Cs):
            candidate = fit(C)
            score = f1_score(y_val, candidate.predict(scaler.transform(Z_val)), average="macro", zero_division=0)
            if best is None or score > best[0]:  # strict: ties keep the smaller C
                best = (score, C, candidate)
        score, C, model = best
        extra["val_macro_f1"] = float(score)
    X_test = scaler.transform(Z_test)
    y_pred = model.predict(X_test).astype(int)
    proba = _full_proba(model, model.predict_proba(X_test), num_classes)
    metrics = classification_metrics(y_test, y_pred, num_classes) | {"C": float(C)} | extra
    return metrics, y_pred, proba


def knn_probe(Z_train, y_train, Z_test, y_test, num_classes: int, k: int = 5
              ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Cosine k-nearest-neighbour classifier (no training, no hyperparameters besides k).

    proba = fraction of the k neighbours in each class; ties in the vote go to the class whose
    neighbours are most similar in total. Returns (metrics + "k", y_pred, proba).
    """
    _check_num_classes(num_classes)
    Z_train, Z_test = _array(Z_train, "Z_train", 2), _array(Z_test, "Z_test", 2)
    y_train = _labels(y_train, "y_train", num_classes, n=len(Z_train))
    y_test = _labels(y_test, "y_test", num_classes, n=len(Z_test))
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= len(Z_train)):
        raise StudyError(f"k={k!r} must be an integer in [1, {len(Z_train)}] (the training-set size)")
    sim = _unit(Z_test) @ _unit(Z_train).T
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(Z_test), num_classes))
    sim_sum = np.zeros((len(Z_test), num_classes))
    rows = np.arange(len(Z_test))[:, None]
    np.add.at(votes, (rows, y_train[nearest]), 1.0)
    np.add.at(sim_sum, (rows, y_train[nearest]), sim[rows, nearest])
    # votes are whole numbers and |similarity sum| <= k, so this keeps votes first, similarity second
    y_pred = np.argmax(votes * (2 * k + 1) + sim_sum, axis=1)
    metrics = classification_metrics(y_test, y_pred, num_classes) | {"k": int(k)}
    return metrics, y_pred, votes / k


# ---- cross-modal ------------------------------------------------------------------------

def retrieval_metrics(Z_query, y_query, Z_gallery, y_gallery) -> dict:
    """Rank the gallery by cosine similarity to each query; an item is correct when its class matches.

    recall_at_k = fraction of queries with at least one correct item in the top k;
    mAP = mean over queries of average precision over the full ranking.
    Queries whose class is absent from the gallery cannot succeed and are left out
    (n_queries counts those used).
    """
    Z_query, Z_gallery = _array(Z_query, "Z_query", 2), _array(Z_gallery, "Z_gallery", 2)
    if Z_query.shape[1] != Z_gallery.shape[1]:
        raise StudyError(f"query dim {Z_query.shape[1]} differs from gallery dim {Z_gallery.shape[1]}; "
                         "retrieval needs a shared embedding space")
    num_classes = int(max(_array(y_query, "y_query", 1).max(), _array(y_gallery, "y_gallery", 1).max())) + 1
    y_query = _labels(y_query, "y_query", num_classes, n=len(Z_query))
    y_gallery = _labels(y_gallery, "y_gallery", num_classes, n=len(Z_gallery))
    usable = np.isin(y_query, y_gallery)
    if not usable.any():
        raise StudyError("no query's class appears in the gallery")
    Z_query, y_query = Z_query[usable], y_query[usable]
    order = np.argsort(-(_unit(Z_query) @ _unit(Z_gallery).T), axis=1, kind="stable")
    relevant = y_gallery[order] == y_query[:, None]          # (queries, gallery) in ranked order
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    average_precision = (precision * relevant).sum(1) / relevant.sum(1)
    return {
        "recall_at_1": float(np.mean(hits[:, 0] > 0)),
        "recall_at_5": float(np.mean(hits[:, min(5, hits.shape[1]) - 1] > 0)),
        "mAP": float(np.mean(average_precision)),
        "n_queries": int(len(y_query)),
    }


def zero_shot_centroid(Z_query, y_query, Z_gallery, y_gallery, num_classes: int) -> dict:
    """Classify each query by its nearest (cosine) class centroid of the other modality's gallery.

    Centroids are means of unit-length gallery embeddings; a class absent from the gallery is
    never predicted. No classifier is trained on the query modality.
    """
    _check_num_classes(num_classes)
    Z_query, Z_gallery = _array(Z_query, "Z_query", 2), _array(Z_gallery, "Z_gallery", 2)
    if Z_query.shape[1] != Z_gallery.shape[1]:
        raise StudyError(f"query dim {Z_query.shape[1]} differs from gallery dim {Z_gallery.shape[1]}")
    y_query = _labels(y_query, "y_query", num_classes, n=len(Z_query))
    y_gallery = _labels(y_gallery, "y_gallery", num_classes, n=len(Z_gallery))
    G = _unit(Z_gallery)
    centroids = np.zeros((num_classes, G.shape[1]))
    present = np.zeros(num_classes, dtype=bool)
    for c in range(num_classes):
        if (y_gallery == c).any():
            centroids[c], present[c] = G[y_gallery == c].mean(0), True
    sim = _unit(Z_query) @ _unit(centroids).T
    sim[:, ~present] = -np.inf
    return classification_metrics(y_query, np.argmax(sim, axis=1), num_classes)


PROBA_FLOOR = 1e-4   # before taking logs: a k-NN vote of 0 would otherwise veto a class outright
TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))   # the grid temperature scaling searches


def _log_proba(proba, floor: float = PROBA_FLOOR) -> np.ndarray:
    """Log-probabilities, floored for raw model outputs; calibrated ones keep their (tiny) values (floor ~0)."""
    p = np.clip(_array(proba, "proba", 2).astype(np.float64), floor, 1.0)
    return np.log(p / p.sum(axis=1, keepdims=True))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_temperature(proba_val, y_val) -> float:
    """Temperature scaling (Guo et al. 2017) fitted on validation predictions: the T on the grid TEMPERATURES
    that minimises the negative log-likelihood of softmax(log p / T). T > 1 softens an overconfident model."""
    logp = _log_proba(proba_val)
    y = np.asarray(y_val, dtype=int)
    if len(y) != len(logp) or len(y) == 0:
        raise StudyError(f"fit_temperature needs one label per validation prediction; got {len(y)} and {len(logp)}")
    nll = np.array([-np.mean(np.log(_softmax(logp / T)[np.arange(len(y)), y] + 1e-300)) for T in TEMPERATURES])
    if np.ptp(nll) < 1e-9:   # uninformative predictions (all uniform): no temperature is better than another
        return 1.0
    return float(TEMPERATURES[int(np.argmin(nll))])


def calibrate(proba, temperature: float) -> np.ndarray:
    """Probabilities softened (T > 1) or sharpened (T < 1) by a fitted temperature; argmax unchanged."""
    return _softmax(_log_proba(proba) / temperature)


def product_rule(probas: list, prior) -> np.ndarray:
    """Fused posterior of views that are independent given the class (pairs are drawn within a class):
    p(c | a, i) is proportional to p(c | a) p(c | i) / p(c), with p(c) the prior the second view's posterior
    carries (its training class frequencies). Each posterior should be calibrated first (`calibrate`)."""
    if len(probas) != 2:
        raise StudyError(f"product_rule fuses two views; got {len(probas)}")
    logs = [_log_proba(p, floor=1e-300) for p in probas]
    if logs[0].shape != logs[1].shape:
        raise StudyError(f"probability arrays differ in shape: {[p.shape for p in logs]}")
    prior = np.clip(np.asarray(prior, dtype=np.float64), PROBA_FLOOR, None)
    return _softmax(logs[0] + logs[1] - np.log(prior / prior.sum())[None, :])


def stacked_fusion(probas_val: list, y_val, num_classes: int, seed: int = 0):
    """A logistic regression fitted on the validation pairs' log-probabilities of both views: it learns how much
    to trust each view. Returns a function of the test pairs' probabilities (a list, one array per view) giving
    fused probabilities, or None when the validation pairs hold fewer than 2 classes."""
    y = np.asarray(y_val, dtype=int)
    if len(np.unique(y)) < 2:
        return None

    def features(probas):   # log-probabilities floored as raw outputs are: finite and comparable
        return np.hstack([_log_proba(p) for p in probas])
    model = LogisticRegression(C=1.0, max_iter=5000, random_state=seed).fit(features(probas_val), y)
    return lambda probas_test: _full_proba(model, model.predict_proba(features(probas_test)), num_classes)


def fuse_proba(*probas) -> np.ndarray:
    """Late fusion: the average of the modalities' class probabilities.

    Averaging rather than summing log-probabilities: a product (log-sum) lets one overconfident,
    wrong modality veto the true class with a near-zero probability; the mean degrades gracefully
    when one modality is uninformative, which is the common case with small data.
    """
    if not probas:
        raise StudyError("fuse_proba needs at least one probability array")
    arrays = [_array(p, f"probas[{i}]", 2).astype(np.float64) for i, p in enumerate(probas)]
    if any(p.shape != arrays[0].shape for p in arrays):
        raise StudyError(f"probability arrays differ in shape: {[p.shape for p in arrays]}")
    return np.mean(arrays, axis=0)


# ---- statistics over seeds and test items ---------------------------------------------------

def chance_levels(y_true) -> dict:
    """What guessing scores on this evaluated set: uniform over the classes present, and always the majority."""
    y = np.asarray(y_true)
    if len(y) == 0:
        return {"chance_uniform": float("nan"), "chance_majority": float("nan")}
    counts = np.unique(y, return_counts=True)[1]
    return {"chance_uniform": float(1 / len(counts)), "chance_majority": float(counts.max() / len(y))}


def _values(values, name: str) -> np.ndarray:
    v = _array(values, name, 1).astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise StudyError(f"{name} contains NaN or infinite values")
    return v


def _t_half_width(sd: float, n: int, confidence: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sd / np.sqrt(n))


def _check_confidence(confidence) -> None:
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise StudyError(f"confidence={confidence!r} must be a float in (0, 1), e.g. 0.95")


def mean_ci(values, confidence: float = 0.95) -> dict:
    """Mean and Student-t confidence interval over runs (e.g. seeds): dict(mean, lo, hi, sd, n).

    With a single value there is no spread to estimate: lo = hi = mean and sd = 0, which is NOT a
    real interval; report n alongside. sd uses ddof=1.
    """
    _check_confidence(confidence)
    v = _values(values, "values")
    mean = float(v.mean())
    if len(v) == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "sd": 0.0, "n": 1}
    sd = float(v.std(ddof=1))
    half = _t_half_width(sd, len(v), confidence)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": int(len(v))}


def paired_comparison(a, b, confidence: float = 0.95) -> dict:
    """Compare two methods scored on the same seeds and splits (a[i] and b[i] share run i).

    Paired t-test on d = a - b, with a t interval for the mean difference, Cohen's d_z
    (mean(d) / sd(d)) and the Wilcoxon signed-rank p-value as a check that needs no normality.
    Zero spread in d (up to float rounding): p = 1 if mean(d) = 0 else 0, the interval collapses to mean(d), and d_z is None
    (undefined). n < 2: only mean_diff is given, everything else is None.
    """
    _check_confidence(confidence)
    a, b = _values(a, "a"), _values(b, "b")
    if len(a) != len(b):
        raise StudyError(f"a and b must score the same runs; got {len(a)} and {len(b)} values")
    d = a - b
    n, mean_diff = int(len(d)), float(d.mean())
    result = {"test": "paired t-test", "p_value": None, "mean_diff": mean_diff, "ci_lo": None,
              "ci_hi": None, "cohens_dz": None, "wilcoxon_p": None, "n": n}
    if n < 2:
        return result
    sd = float(d.std(ddof=1))
    tiny = 1e-12 * max(1.0, float(np.abs(d).max()))  # rounding noise: 0.8 - 0.7 != 0.9 - 0.8 in floats
    if sd <= tiny:
        result.update(p_value=1.0 if abs(mean_diff) <= tiny else 0.0, ci_lo=mean_diff, ci_hi=mean_diff)
    else:
        t = mean_diff / (sd / np.sqrt(n))
        half = _t_half_width(sd, n, confidence)
        result.update(p_value=float(2 * stats.t.sf(abs(t), df=n - 1)), ci_lo=mean_diff - half,
                      ci_hi=mean_diff + half, cohens_dz=mean_diff / sd)
    if np.all(np.abs(d) <= tiny):
        result["wilcoxon_p"] = 1.0
    else:
        p = stats.wilcoxon(d).pvalue  # zero differences are dropped (zero_method="wilcox")
        result["wilcoxon_p"] = float(p) if np.isfinite(p) else None
    return result


BOOTSTRAP_METRICS = ("accuracy", "macro_f1")


def bootstrap_ci(y_true, y_pred, metric: str = "accuracy", n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict:
    """Percentile bootstrap interval for one run, resampling test items with replacement.

    This reflects test-set sampling only, not training randomness (use mean_ci over seeds for that).
    Returns dict(estimate, lo, hi, n, n_boot) where estimate is the metric on the full test set.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise StudyError(f"metric={metric!r} must be one of {BOOTSTRAP_METRICS}")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 10):
        raise StudyError(f"n_boot={n_boot!r} must be an integer >= 10")
    _check_confidence(confidence)
    y_true = _array(y_true, "y_true", 1)
    y_pred = _array(y_pred, "y_pred", 1)
    if len(y_true) != len(y_pred):
        raise StudyError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    idx = np.random.default_rng(seed).integers(0, len(y_true), size=(n_boot, len(y_true)))
    if metric == "accuracy":
        correct = (y_true == y_pred).astype(np.float64)
        estimate, samples = float(correct.mean()), correct[idx].mean(1)
    else:
        def score(i):
            return f1_score(y_true[i], y_pred[i], average="macro", zero_division=0)
        estimate = float(score(np.arange(len(y_true))))
        samples = np.array([score(i) for i in idx])
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return {"estimate": estimate, "lo": float(lo), "hi": float(hi), "n": int(len(y_true)), "n_boot": int(n_boot)}


def holm(p_values) -> list:
    """Holm's step-down adjustment of m p-values (None stays None): controls the family-wise error rate
    when one table reports many comparisons."""
    idx = [k for k, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    order = sorted(idx, key=lambda k: p_values[k])
    m, out, running = len(order), list(p_values), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[k]))
        out[k] = running
    return out


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test on paired items: does a get right what b gets wrong more often than the reverse?
    Returns the discordant counts (a_only, b_only) and the two-sided binomial p-value."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise StudyError(f"mcnemar needs the same items on both sides; got {a.shape} and {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def paired_bootstrap(correct_a: list, correct_b: list, n_boot: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Accuracy difference a - b with an interval that covers both the seeds and the test sample.

    correct_a[s], correct_b[s]: per seed s, whether each test item was classified correctly (the same items
    on both sides). Each replicate draws seeds with replacement, then items with replacement (the same draw
    for a and b), and averages the difference: a two-level bootstrap over runs and items.
    """
    _check_confidence(confidence)
    if len(correct_a) != len(correct_b) or not correct_a:
        raise StudyError("paired_bootstrap needs the same seeds on both sides, at least one")
    sizes = {len(x) for pair in zip(correct_a, correct_b) for x in pair}
    if len(sizes) != 1 or 0 in sizes:
        raise StudyError("paired_bootstrap needs the same non-empty test items in every seed")
    diffs = [np.asarray(a, float) - np.asarray(b, float) for a, b in zip(correct_a, correct_b)]
    D = np.stack(diffs)                                   # seeds x items
    rng = np.random.default_rng(seed)
    S, N = D.shape
    reps = np.empty(n_boot)
    for r in range(n_boot):
        seeds = rng.integers(0, S, S)
        items = rng.integers(0, N, N)
        reps[r] = D[np.ix_(seeds, items)].mean()
    alpha = (1 - confidence) / 2
    return {"mean_diff": float(D.mean()), "ci_lo": float(np.quantile(reps, alpha)),
            "ci_hi": float(np.quantile(reps, 1 - alpha)), "seeds": S, "items": N, "n_boot": n_boot}
