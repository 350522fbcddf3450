"""Item-level comparisons from the per-item predictions every record keeps: two methods scored on the same
test items and seeds, with an interval over both (seeds_and_items_interval) and McNemar's test per seed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import evaluation as ev
from .config import StudyError
from .tables import summarise

# how the item-level intervals are made, in the words the report and notebooks print
INTERVAL = "t over seeds and bootstrap over test items"


def labels_for(record: dict, view: str, test_set: str = "test") -> np.ndarray:
    """The true labels of the items a row of `view` on `test_set` was scored on, in prediction order."""
    labels = record.get("test_labels") or {}
    key = _items_of(view, test_set)
    if key not in labels:
        raise StudyError(f"record {record.get('run_dir', '?')} has no test labels for {view}/{test_set} "
                         "(records written before per-item predictions cannot be compared item by item)")
    return np.asarray(labels[key])


def _correct(record: dict, spec: dict, test_set: str) -> np.ndarray | None:
    key = f"{spec['method']}/{spec['protocol']}/{spec['view']}/{test_set}"
    pred = (record.get("predictions") or {}).get(key)
    if pred is None:
        return None
    return np.asarray(pred) == labels_for(record, spec["view"], test_set)


def _items_of(view: str, test_set: str) -> str:
    return f"external_{view}" if test_set == "external" else \
        "pairs" if view in ("fused", "fused_stacked", "image_on_pairs") else view


def item_ids(record: dict, view: str, test_set: str = "test") -> tuple | None:
    """The ids of the items a row of `view` on `test_set` was scored on, in prediction order, from the record's
    test_items (a pair: its clip and its image); None where the record names no ids (the external sets)."""
    ids = record.get("test_items") or {}
    key = _items_of(view, test_set)
    if key == "pairs" and "audio" in ids and "image_on_pairs" in ids:
        return tuple(zip(ids["audio"], ids["image_on_pairs"]))
    return tuple(ids[key]) if key in ("audio", "image") and key in ids else None


class BySeed(dict):
    """seed -> per-item values (whether each item was right, or a per-item change), with `ids`: seed -> the ids
    of the items in that order (None: the record names none), so that two maps pair only on the same items, and
    `machines`: seed -> the CPU model that ran it (None: not recorded), so that a pairing says when it crosses
    machines (their kernels round differently, so training goes elsewhere as with another seed)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.ids, self.machines = {}, {}


def correct_by_seed(records, spec: dict, test_set: str = "test", where: dict | None = None,
                    notebook: str | None = None) -> dict:
    """seed -> whether each test item was classified right by the row `spec` (method, protocol, view), from the
    record of that seed that matches `where` (parameter -> value) and `notebook` and kept its predictions.
    Two such records of one seed that disagree are an error, never a silent pick: `where` must tell them apart."""
    by_seed, runs = BySeed(), {}
    for r in records:
        params = r.get("params") or {}
        if (notebook is not None and r.get("notebook") != notebook) or any(params.get(k) != v
                                                                            for k, v in (where or {}).items()):
            continue
        correct, seed = _correct(r, spec, test_set), params.get("seed")
        if correct is None:
            continue
        ids = item_ids(r, spec["view"], test_set)
        if seed in by_seed:
            if ids != by_seed.ids[seed] or not np.array_equal(correct, by_seed[seed]):
                raise StudyError(f"seed {seed}: runs {runs[seed]} and {r.get('run_dir', '?')} both match "
                                 f"{spec} on {test_set} with {where or {}} but predict differently; pass `where` "
                                 "the parameter(s) that tell them apart")
            continue
        by_seed[seed], by_seed.ids[seed], runs[seed] = correct, ids, r.get("run_dir", "?")
        by_seed.machines[seed] = (r.get("environment") or {}).get("cpu_model")
    return by_seed


def _paired_seeds(a: dict, b: dict) -> list:
    """The seeds both by-seed maps have, scored on as many items and, where both name their items (BySeed.ids),
    on the same items in the same order."""
    def same_items(s):
        ids_a, ids_b = getattr(a, "ids", {}).get(s), getattr(b, "ids", {}).get(s)
        return ids_a is None or ids_b is None or ids_a == ids_b
    return sorted(s for s in set(a) & set(b) if len(a[s]) == len(b[s]) and same_items(s))


def paired_items(by_a: dict, by_b: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """a - b from two seed -> per-item maps (whether each item was right, or a per-item change such as
    drop_by_seed's) over the seeds both have on as many items: seeds_and_items_interval of the paired
    differences, and, when both sides are right/wrong, McNemar per seed (mcnemar_p, and the pooled discordant counts)."""
    seeds = _paired_seeds(by_a, by_b)
    if not seeds:
        raise StudyError("no seed has item predictions on both sides, on the same items")
    A, B = [by_a[s] for s in seeds], [by_b[s] for s in seeds]
    out = seeds_and_items_interval(np.stack([np.asarray(x, float) - np.asarray(y, float) for x, y in zip(A, B)]),
                                   n_boot=n_boot, seed=seed) | {"seed_list": seeds}
    machines = [(getattr(by_a, "machines", {}).get(s), getattr(by_b, "machines", {}).get(s)) for s in seeds]
    out["machines_differ"] = sum(1 for m_a, m_b in machines if m_a and m_b and m_a != m_b)
    if all(np.asarray(x).dtype == bool for x in A + B):
        tests = [ev.mcnemar(x, y) for x, y in zip(A, B)]
        out.update(mcnemar_p=same_direction_p(tests),
                   a_only=sum(t["a_only"] for t in tests), b_only=sum(t["b_only"] for t in tests))
    return out


def seeds_and_items_interval(D: np.ndarray, minus: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0,
                             confidence: float = 0.95) -> dict:
    """Mean of D (seeds x items: per-item values, or paired differences), less the mean of `minus` (seeds x other
    items, e.g. a run's plain test split against its external set: two item sets, resampled independently),
    with an interval that covers both how training varies with the seed and the test sample. Two parts, added
    in quadrature on each side: the seeds', the Student-t half-width of the seed means (S - 1 degrees of
    freedom); the items', the percentile bootstrap of the seed-averaged per-item values. A bootstrap over 2-3
    seeds alone (ev.paired_bootstrap) gives the seeds far too little weight: its interval can be narrower than
    the t interval over the same seeds. With one seed, or seeds that agree, the seed part is 0 (the interval
    then covers the test items only)."""
    from scipy import stats
    D = np.asarray(D, float)
    M = np.zeros((len(D), 1)) if minus is None else np.asarray(minus, float)
    if D.ndim != 2 or M.ndim != 2 or 0 in D.shape or 0 in M.shape or len(D) != len(M):
        raise StudyError("seeds_and_items_interval needs seeds x items values, at least one of each, and the same "
                         "seeds on both sides")
    S, N = D.shape
    mean, alpha = float(D.mean() - M.mean()), (1 - confidence) / 2
    rng = np.random.default_rng(seed)

    def resampled(per_item):
        return per_item[rng.integers(0, len(per_item), (n_boot, len(per_item)))].mean(axis=1)
    reps = resampled(D.mean(axis=0)) - (resampled(M.mean(axis=0)) if minus is not None else 0.0)
    lo_items, hi_items = mean - float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha)) - mean
    seed_means = D.mean(axis=1) - M.mean(axis=1)
    half_seeds = (float(stats.t.ppf(1 - alpha, S - 1) * seed_means.std(ddof=1) / np.sqrt(S)) if S > 1 else 0.0)
    # clipped to the values the mean can take (an accuracy stays in [0, 1]): the t part is symmetric
    floor, ceiling = float(D.min() - M.max()), float(D.max() - M.min())
    return {"mean_diff": mean, "ci_lo": max(floor, mean - float(np.hypot(max(lo_items, 0.0), half_seeds))),
            "ci_hi": min(ceiling, mean + float(np.hypot(max(hi_items, 0.0), half_seeds))), "seeds": S, "items": N,
            "n_boot": n_boot}


def same_direction_p(tests) -> float:
    """Two-sided p of "a differs from b the same way in every seed", from per-seed McNemar counts (ev.mcnemar):
    the intersection-union test, twice the largest one-sided exact p of the better direction. Seeds that differ
    strongly in opposite directions give a large p (the largest of each seed's two-sided p would be small). A seed
    with no discordant item shows no difference, so it gives p = 1: the claim is about every seed, and that seed
    does not support it (conservative by design; the interval beside it pools the seeds)."""
    from scipy import stats

    def one_sided(t, a_better):
        n = t["a_only"] + t["b_only"]
        k = t["a_only"] if a_better else t["b_only"]
        return 1.0 if n == 0 else float(stats.binom.sf(k - 1, n, 0.5))   # P(X >= k), X ~ Bin(n, 1/2)
    return min(1.0, 2 * min(max(one_sided(t, d) for t in tests) for d in (True, False)))


def item_comparison(records, a: dict, b: dict, test_set: str = "test", where: dict | None = None,
                    n_boot: int = 2000, seed: int = 0) -> dict:
    """a - b (each {"method", "protocol", "view"}, scored on the same items: the same view, or fused against
    image_on_pairs) on one test set, item by item over the seeds both have (paired_items). Runs are paired
    by seed among the records that match `where` (parameter -> value)."""
    if _items_of(a["view"], test_set) != _items_of(b["view"], test_set):
        raise StudyError(f"{a['view']} and {b['view']} are not scored on the same items: no item-level comparison")
    by_a, by_b = (correct_by_seed(records, spec, test_set, where) for spec in (a, b))
    if not _paired_seeds(by_a, by_b):
        raise StudyError(f"no seed has item predictions of both {a} and {b} on {test_set}")
    return paired_items(by_a, by_b, n_boot=n_boot, seed=seed)


def drop_by_seed(records, spec: dict, test_set: str) -> dict:
    """seed -> per item, right on the counterfactual `test_set` minus right on the plain test split (-1, 0 or
    1), from the same run: a counterfactual changes the inputs of the test items, never which items."""
    changed, plain = correct_by_seed(records, spec, test_set), correct_by_seed(records, spec, "test")
    out = BySeed({s: changed[s].astype(float) - plain[s] for s in _paired_seeds(changed, plain)})
    out.ids, out.machines = {s: plain.ids.get(s) for s in out}, {s: plain.machines.get(s) for s in out}
    return out


def interval_text(result: dict, over: str = INTERVAL) -> str:
    """'+0.031 [-0.012, +0.070] over 5 seed(s) x 175 items (t over seeds and bootstrap over test items)' from a
    paired_items result; with one seed the interval covers the items of one training run only, and says so."""
    one = (": one training run, so the interval leaves out how training varies with the seed"
           if result["seeds"] < 2 else "")
    crossed = result.get("machines_differ") or 0
    machines = f"; {crossed} of the seed pairs ran on different CPU models" if crossed else ""
    return (f"{result['mean_diff']:+.3f} [{result['ci_lo']:+.3f}, {result['ci_hi']:+.3f}] over {result['seeds']} "
            f"seed(s) x {result['items']} items ({over}{one}{machines})")


def statement(result: dict) -> str:
    """'+0.031 [-0.012, +0.070] over 5 seed(s) x 175 items (...); discordant items 21 vs 3 over the seeds, McNemar
    in one direction in every seed (twice the weakest seed's one-sided p) p = 0.12'; with one seed, McNemar on
    the items of that one run."""
    test = ("McNemar on the items of one run" if result["seeds"] < 2 else
            "McNemar in one direction in every seed (twice the weakest seed's one-sided p)")
    return (interval_text(result) + f"; discordant items {result['a_only']} vs {result['b_only']}"
            f"{' over the seeds' if result['seeds'] > 1 else ''}, {test} p = {result['mcnemar_p']:.2g}")


def _mean_interval(by_seed: dict, n_boot: int, seed: int) -> dict | None:
    """Mean of seed -> per-item values over seeds and items, with seeds_and_items_interval; None without seeds or
    with unequal items."""
    if not by_seed or len({len(c) for c in by_seed.values()}) != 1:
        return None
    out = seeds_and_items_interval(np.stack([np.asarray(by_seed[s], float) for s in sorted(by_seed)]),
                                   n_boot=n_boot, seed=seed)
    return {"mean": out["mean_diff"], "lo": out["ci_lo"], "hi": out["ci_hi"], "n": out["seeds"],
            "items": out["items"]}


def accuracy_interval(records, spec: dict, test_set: str = "test", where: dict | None = None,
                      notebook: str | None = None, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """Accuracy of one row (spec: method, protocol, view) on `test_set`, mean over the seeds of the records that
    match `where` (and `notebook`), with an interval that covers both the seeds and the test sample
    (seeds_and_items_interval). None when no matching record kept its predictions."""
    return _mean_interval(correct_by_seed(records, spec, test_set, where, notebook), n_boot, seed)


def external_drop_interval(records, spec: dict, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """Accuracy of one row (spec: method, protocol, view) on the external set minus on the plain test split, over
    the seeds that have both, with seeds_and_items_interval: the two item sets are different, so each is
    resampled on its own; items: how many external items. None when no seed kept the predictions of both."""
    external, plain = correct_by_seed(records, spec, "external"), correct_by_seed(records, spec, "test")
    seeds = sorted(set(external) & set(plain))
    if not seeds or len({len(external[s]) for s in seeds}) != 1 or len({len(plain[s]) for s in seeds}) != 1:
        return None
    out = seeds_and_items_interval(np.stack([external[s] for s in seeds]), np.stack([plain[s] for s in seeds]),
                                   n_boot=n_boot, seed=seed)
    return {"mean": out["mean_diff"], "lo": out["ci_lo"], "hi": out["ci_hi"], "n": out["seeds"],
            "items": out["items"]}


def item_summary(rows: pd.DataFrame, records, by=(), metric: str = "accuracy") -> pd.DataFrame:
    """summarise()'s columns for `metric` of every (method, protocol, view, test_set, *by) of `rows`: "accuracy"
    (results_table rows), or "drop" (validity.counterfactual_drops rows: the counterfactual minus the plain
    test split, same run). Each from the per-item predictions of exactly the runs of its rows, with the
    interval over seeds and items (column interval = "items"); a group where a record keeps no per-item
    predictions gets the t interval over its seeds instead (interval = "t"), its method marked " (t)"."""
    if rows.empty:
        return pd.DataFrame()
    by_dir = {r.get("run_dir"): r for r in records}
    keys = ["notebook", "method", "protocol", "view", "test_set", *by]
    out = []
    for key, group in rows[rows[metric].notna()].groupby(keys, sort=False):
        row = dict(zip(keys, key))
        spec = {k: row[k] for k in ("method", "protocol", "view")}
        chosen = [by_dir[d] for d in group["run_dir"].unique() if d in by_dir] if "run_dir" in group else []
        chosen = [r for r in chosen if r.get("notebook") == row["notebook"]]
        per_item = (correct_by_seed(chosen, spec, row["test_set"]) if metric == "accuracy"
                    else drop_by_seed(chosen, spec, row["test_set"]))
        ci = _mean_interval(per_item, n_boot=2000, seed=0)
        keep = {**spec, **{k: row[k] for k in ("test_set", *by)}, "metric": metric}
        # an interval over fewer seeds than the group has would drop runs silently: then the t interval over all
        seeds = group["seed"].nunique() if "seed" in group else len(per_item)
        if ci is not None and len(per_item) >= seeds:
            out.append({**keep, **ci, "interval": "items"})
        else:
            t = summarise(group, by=["method"], metric=metric).iloc[0]
            out.append({**keep, "method": f"{row['method']} (t)", **{k: t[k] for k in ("mean", "lo", "hi", "n")},
                        "interval": "t"})
    return pd.DataFrame(out)


def item_effect(records, spec: dict, axis: str, level, baseline, test_set: str = "test", n_boot: int = 2000,
                seed: int = 0) -> dict:
    """Accuracy of one row (spec: method, protocol, view) at `axis` = level minus at `axis` = baseline, item by
    item over the seeds both levels have (paired_items; the test split is the same at every level). `records`
    should hold one setting only (the runs of a curve)."""
    by_level = {v: correct_by_seed(records, spec, test_set, {axis: v}) for v in (level, baseline)}
    common = set(by_level[level]) & set(by_level[baseline])
    seeds = _paired_seeds(by_level[level], by_level[baseline])
    if not seeds or len(seeds) < len(common) or len({len(by_level[level][s]) for s in seeds}) != 1:
        raise StudyError(f"no seeds with item predictions of {spec} on the same items at both {axis}={level} and "
                         f"{axis}={baseline} (the test split should be the same at every level)")
    return paired_items(by_level[level], by_level[baseline], n_boot=n_boot, seed=seed)
