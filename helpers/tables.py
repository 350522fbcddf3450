"""Tables from metrics records: stack every record into one DataFrame, summarise over seeds, compare
methods on paired seeds, measure the effect of an axis, and the shortcut, mitigation and clustering
tables (learning curves: helpers.curves; figures: helpers.plots; the written report: helpers.report).

    df = results_table(records.load_records())        # one row per record x result row
    summarise(df, by=["method", "view", "noise"])     # mean, t interval and n over seeds
    compare_methods(df, "contrastive", "image", view="image", over=["noise"])
    counterfactual_drops(df)                          # changed minus plain test accuracy, per run

Nothing here imports torch at import time (the report, the analysis notebooks); convergence_table reads
helpers.training's schedule (torch) for records with training histories.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from . import evaluation as ev
from .config import StudyError

# The axes the study varies; every other parameter is a setting of one notebook.
AXES = ("fraction", "noise", "noise_kind")
# Two runs are paired (compare_methods) when they share the seed and what the seed draws: the data
# set, the training subset (fraction) and the flipped labels (noise, noise_kind); the test split is
# fixed. Input and training settings (image_size, epochs, ...) are each method's own choice and may
# differ between the two sides; compare_methods lists those that do.
MATCH_PARAMS = ("dataset", "fraction", "noise", "noise_kind")
# Where and how a run was computed, not what: never a condition, never a reason to separate runs.
BOOKKEEPING = ("run_dir", "device", "progress", "code_version", "written_at", "record")
METRICS = ("accuracy", "macro_f1", "recall_at_1", "recall_at_5", "mAP")
# the values a metric can take: summarise clips its t interval to them (3 seeds near 1 give a t interval past 1)
METRIC_RANGE = {**{m: (0.0, 1.0) for m in (*METRICS, "val_accuracy", "nmi", "purity")},
                **{m: (-1.0, 1.0) for m in ("drop", "ari", "silhouette")}}
ROW_KEYS = ("method", "protocol", "view", "test_set")
PROTOCOL_ORDER = ("supervised", "linear_probe", "finetune", "knn", "linear_probe_clean", "knn_clean", "zero_shot",
                  "retrieval")
VIEW_ORDER = ("audio", "image", "fused", "fused_stacked", "image_on_pairs", "audio->image", "image->audio")
SMALL_MULTIMODAL = ("contrastive", "supcon", "mvae", "autoencoder")
X_LABELS = {"noise": "label-noise rate", "fraction": "training fraction of the data",
            "n_train": "training items"}
CLASSIFYING = ("supervised", "linear_probe", "knn", "finetune", "linear_probe_clean", "knn_clean")
# The columns of a compare_methods row after the `over` columns.
COMPARE_COLUMNS = ("a", "b", "metric", "n", "seeds", "mean_a", "mean_b", "unpaired_a", "unpaired_b", "mean_diff",
                   "ci_lo", "ci_hi", "test", "p_value", "wilcoxon_p", "cohens_dz", "differences", "statement")


# ---------------------------------------------------------------------------- the table

def _scalar(value):
    """A value pandas can group by: lists and dicts become their JSON text."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def results_table(records) -> pd.DataFrame:
    """One row per (record, result row): notebook, the record's parameters flattened (seed,
    fraction, noise, noise_kind, epochs, ...), method, protocol, view, test_set, the metrics,
    n, n_train_audio / n_train_image (training items), noise_achieved_*, code_version, run_dir.

    Records without a "results" list (the aggregate records of notebooks 05 and 07) are skipped.
    A parameter whose name clashes with a result column is kept as `param_<name>`.
    """
    rows = []
    for record in records:
        results = record.get("results")
        if not isinstance(results, list) or not isinstance(record.get("params"), dict):
            continue
        notebook = record.get("notebook") or Path(record.get("run_dir", "unknown/x")).parent.name
        base = {"notebook": notebook}
        for key, value in record["params"].items():
            if key == "run_dir":
                continue
            base[key if key not in ROW_KEYS + METRICS + ("n", "notebook") else f"param_{key}"] = _scalar(value)
        for modality, sizes in (record.get("split_sizes") or {}).items():
            if isinstance(sizes, dict) and "train" in sizes:
                base[f"n_train_{modality}"] = sizes["train"]
        for modality, achieved in (record.get("noise_achieved") or {}).items():
            base[f"noise_achieved_{modality}"] = achieved
        base["code_version"] = record.get("code_version")
        base["run_dir"] = record.get("run_dir")
        for row in results:
            if isinstance(row, dict):
                rows.append({**base, **{k: _scalar(v) for k, v in row.items()}})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["notebook", "seed", *AXES, *ROW_KEYS, "accuracy", "macro_f1", "n"])
    first = ["notebook", "seed", *AXES, *ROW_KEYS, *METRICS, "n"]
    ordered = [c for c in first if c in df] + [c for c in df if c not in first and c not in BOOKKEEPING]
    return df[ordered + [c for c in BOOKKEEPING if c in df]]


def _is_outcome(column: str) -> bool:
    """A column that holds a result (metrics, item counts, chance levels, achieved noise) or bookkeeping, not a
    condition."""
    return column in (*METRICS, "n", "n_queries", "val_accuracy", *BOOKKEEPING) or column.startswith(
        ("n_train_", "noise_achieved_", "chance_"))


def param_columns(df: pd.DataFrame) -> list[str]:
    """The columns of df that hold run parameters (not results, not bookkeeping)."""
    return [c for c in df if c not in ("notebook", *ROW_KEYS) and not _is_outcome(c)]


def condition_columns(df: pd.DataFrame) -> list[str]:
    """What tells conditions apart: notebook, method, protocol, view, test_set, and every parameter
    that takes more than one value in df (seed excluded: runs over seeds are what gets summarised)."""
    varying = [c for c in param_columns(df) if c != "seed" and df[c].nunique(dropna=False) > 1]
    return [c for c in ("notebook", *ROW_KEYS) if c in df] + varying


# ---------------------------------------------------------------------------- summaries

def summarise(df: pd.DataFrame, by=None, metric: str = "accuracy", confidence: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t interval over seeds of `metric` for each group of `by`.

    Columns: by..., metric, mean, lo, hi, sd, n (n = number of seeds). Rows of one seed within a
    group (reruns) are averaged first, so every seed counts once. With n = 1, lo = hi = mean: no
    interval. A metric of METRIC_RANGE has its interval clipped to the values it can take.
    `by` defaults to condition_columns(df).
    """
    by = condition_columns(df) if by is None else list(by)
    missing = [c for c in by if c not in df]
    if missing:
        raise StudyError(f"summarise: no column(s) {missing}; the table has {list(df.columns)}")
    columns = [*by, "metric", "mean", "lo", "hi", "sd", "n"]
    if metric not in df:
        return pd.DataFrame(columns=columns)
    d = df[df[metric].notna()]
    if d.empty:
        return pd.DataFrame(columns=columns)
    seed = ["seed"] if "seed" in d and "seed" not in by else []
    keys = by + seed
    if keys:
        per_seed = d.groupby(keys, dropna=False, sort=False)[metric].mean().reset_index()
    else:
        per_seed = pd.DataFrame({metric: [d[metric].mean()]})
    out = []
    groups = per_seed.groupby(by, dropna=False, sort=False) if by else [((), per_seed)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ci = ev.mean_ci(group[metric].to_numpy(dtype=float), confidence=confidence)
        low, high = METRIC_RANGE.get(metric, (-math.inf, math.inf))
        ci["lo"], ci["hi"] = max(ci["lo"], low), min(ci["hi"], high)
        out.append({**dict(zip(by, key)), "metric": metric, **{k: ci[k] for k in ("mean", "lo", "hi", "sd", "n")}})
    table = pd.DataFrame(out, columns=columns)
    return sort_table(table, by)


def _rank(name: str, value) -> tuple:
    """Where a value of column `name` sorts: views and protocols in the study's order, then numbers, then text."""
    order = {"view": VIEW_ORDER, "protocol": PROTOCOL_ORDER}.get(name)
    if order and value in order:
        return (0, order.index(value), "")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not pd.isna(value):
        return (1, value, "")
    return (2, 0, str(value))


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name not in ("view", "protocol") and pd.api.types.is_numeric_dtype(column):
        return column
    return column.map(lambda v: _rank(column.name, v))


def sort_table(table: pd.DataFrame, by) -> pd.DataFrame:
    """table sorted by the columns `by` (views and protocols in the study's order), index reset."""
    if table.empty or not by:
        return table.reset_index(drop=True)
    return table.sort_values(list(by), key=_sort_key, kind="stable").reset_index(drop=True)


def format_ci(mean, lo=None, hi=None, n=None, digits: int = 3, interval: str | None = None) -> str:
    """"0.812 [0.790, 0.834] (n=5)". `interval` says what the interval covers: "t" (over seeds: a single seed has
    none) or "items" (over seeds and test items: a single seed has one, over its items). Without it, a single
    seed's interval is shown when it has a width (summarise gives lo = hi = mean)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    missing = lo is None or hi is None or pd.isna(lo) or pd.isna(hi)
    if n is not None and int(n) < 2:
        if missing or interval == "t" or (interval is None and not lo < hi):
            return text + " (n=1, no interval)"
        return text + f" [{lo:.{digits}f}, {hi:.{digits}f}] (n=1: test items only)"
    if not missing:
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text + (f" (n={int(n)})" if n is not None else "")


def ci_table(summary: pd.DataFrame, index, columns, digits: int = 3) -> pd.DataFrame:
    """A summarise() or items.item_summary() table pivoted for reading: cells "mean [lo, hi] (n=...)"."""
    if summary.empty:
        return pd.DataFrame()
    kinds = summary["interval"] if "interval" in summary else [None] * len(summary)
    s = summary.assign(cell=[format_ci(m, lo, hi, n, digits, kind) for m, lo, hi, n, kind in
                             zip(summary["mean"], summary["lo"], summary["hi"], summary["n"], kinds)])
    index, columns = list(index), list(columns)
    wide = s.pivot_table(index=index, columns=columns, values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=sorted(wide.columns, key=lambda c: _col_key(c, columns)))
    return wide


def _col_key(value, names) -> list[tuple]:
    values = value if isinstance(value, tuple) else (value,)
    return [_rank(name, v) for name, v in zip(names, values)]


# ---------------------------------------------------------------------------- selections and paired comparisons

def select(df: pd.DataFrame, spec) -> pd.DataFrame:
    """The rows of df matching spec: a method name, or a dict of column -> value (a list, tuple or set: any of
    those values), e.g. {"method": "imagenet", "noise": 0.0}."""
    spec = {"method": spec} if isinstance(spec, str) else dict(spec)
    mask = pd.Series(True, index=df.index)
    for column, value in spec.items():
        if column not in df:
            raise StudyError(f"no column {column!r} to select on; the table has {list(df.columns)}")
        mask &= df[column].isin(value) if isinstance(value, (list, tuple, set)) else df[column] == value
    return df[mask]


def matched_seeds(d: pd.DataFrame, x: str) -> tuple[pd.DataFrame, list[str]]:
    """A curve's rows on the seeds that every level of x has, per notebook, so a level's mean is never over
    other seeds than its neighbours' (notebook 03's noise 0 has the 3 seeds of the scaling grid, its noise > 0
    points seed 0 only). The paired effects (effect_table) pair by seed already. Returns (rows, notes naming
    the runs left out, one per notebook that has any)."""
    if d.empty or "seed" not in d:
        return d, []
    keep, notes = [], []
    for notebook, g in d.groupby("notebook", sort=True):
        common = set.intersection(*(set(s) for _, s in g.groupby(x)["seed"]))
        if not common:   # no seed at every level: the curve as it is, said so
            keep.append(g)
            notes.append(f"{notebook}: no seed has every {x} level, so its levels average different seeds.")
            continue
        left = g[~g["seed"].isin(common)]
        keep.append(g[g["seed"].isin(common)])
        if not left.empty:
            runs = left["run_dir"].nunique() if "run_dir" in left else len(left)
            notes.append(f"{notebook}: this curve uses the seed(s) that every {x} level has "
                         f"({', '.join(map(str, sorted(common)))}); {runs} run(s) of other seeds (at {x} "
                         f"{', '.join(map(str, sorted(left[x].unique())))}) are left out of it.")
    return pd.concat(keep), notes


def _label(spec) -> str:
    """"imagenet (linear_probe, image)" for {"method": ..., "protocol": ..., "view": ...}."""
    if isinstance(spec, str):
        return spec
    spec = dict(spec)
    if "method" in spec:
        rest = [str(v) for k, v in spec.items() if k != "method"]
        return f"{spec['method']} ({', '.join(rest)})" if rest else str(spec["method"])
    return ", ".join(f"{k}={v}" for k, v in spec.items())


def _one_per_key(side: pd.DataFrame, keys: list[str], metric: str, label: str) -> pd.Series:
    """metric per pairing key; reruns are averaged, rows that differ in substance are an error."""
    informative = [c for c in side if c != metric and not _is_outcome(c) and c not in keys]
    for key, group in side.groupby(keys, dropna=False, sort=False):
        if len(group) > 1:
            differ = [c for c in informative if group[c].nunique(dropna=False) > 1]
            if differ:
                values = {c: sorted(map(str, group[c].unique())) for c in differ}
                raise StudyError(
                    f"compare_methods: {label!r} has {len(group)} rows for one seed/condition that differ in "
                    f"{values}; narrow it, e.g. a={{'method': ..., '{differ[0]}': ...}} or {differ[0]}=...")
    return side.groupby(keys, dropna=False, sort=False)[metric].mean()


def compare_methods(df: pd.DataFrame, a, b, metric: str = "accuracy", over=(), match=None,
                    test_set: str | None = "test", confidence: float = 0.95, **where) -> pd.DataFrame:
    """Paired comparison of a and b (method names, or dicts of column -> value such as
    {"method": "imagenet", "protocol": "linear_probe"}) on the runs they share.

    Runs are paired when they share the seed and every column of `match` (default: MATCH_PARAMS
    present in df, i.e. the same split, noisy labels and inputs); training settings such as epochs
    may differ. `where` filters both sides (e.g. view="image"); `over` gives one comparison per
    value (e.g. over=["noise"]). One row per group: a, b, metric, n (pairs), seeds, mean_a, mean_b,
    mean_diff (a - b), ci_lo, ci_hi, test ("paired t-test"), p_value, wilcoxon_p, cohens_dz,
    unpaired_a / unpaired_b (runs without a partner) and a one-line statement.
    """
    if metric not in df:
        raise StudyError(f"compare_methods: no metric column {metric!r}")
    d = df[df[metric].notna()]
    if test_set is not None and "test_set" in d:
        d = d[d["test_set"] == test_set]
    if where:
        d = select(d, where)
    over = [over] if isinstance(over, str) else list(over)
    if match is None:
        match = ["seed"] + [c for c in MATCH_PARAMS if c in d]
    keys = list(dict.fromkeys([c for c in match if c in d] + [c for c in over if c in d]))
    if "seed" not in keys:
        raise StudyError("compare_methods pairs runs by seed; the table has no seed column")
    side_a, side_b = select(d, a), select(d, b)
    la, lb = _label(a), _label(b)
    differences = _setting_differences(side_a, side_b, keys)
    sa, sb = _one_per_key(side_a, keys, metric, la), _one_per_key(side_b, keys, metric, lb)
    joined = pd.concat([sa.rename("a"), sb.rename("b")], axis=1, join="outer").reset_index()
    rows = []
    groups = joined.groupby(over, dropna=False, sort=False) if over else [((), joined)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        paired = group.dropna(subset=["a", "b"])
        row = {**dict(zip(over, key)), "a": la, "b": lb, "metric": metric, "n": len(paired),
               "seeds": ",".join(str(int(s)) if float(s).is_integer() else str(s)
                                 for s in sorted(paired["seed"].unique())),
               "mean_a": float(paired["a"].mean()) if len(paired) else math.nan,
               "mean_b": float(paired["b"].mean()) if len(paired) else math.nan,
               "unpaired_a": int(group["a"].notna().sum() - len(paired)),
               "unpaired_b": int(group["b"].notna().sum() - len(paired))}
        if len(paired):
            result = ev.paired_comparison(paired["a"].to_numpy(float), paired["b"].to_numpy(float), confidence)
            row.update({k: result[k] for k in ("mean_diff", "ci_lo", "ci_hi", "test", "p_value", "wilcoxon_p",
                                               "cohens_dz")})
        else:
            row.update(mean_diff=math.nan, ci_lo=None, ci_hi=None, test="paired t-test", p_value=None,
                       wilcoxon_p=None, cohens_dz=None)
        row["differences"] = differences
        row["statement"] = _statement(row, confidence)
        rows.append(row)
    return sort_table(pd.DataFrame(rows), over)


def _setting_differences(side_a: pd.DataFrame, side_b: pd.DataFrame, keys) -> str:
    """Parameters with different values on the two sides, e.g. "epochs: 2 vs 4; image_size: 64 vs 32"."""
    out = []
    for c in param_columns(side_a):
        if c in keys or c == "seed" or c not in side_b:
            continue
        va = sorted({str(v) for v in side_a[c].dropna().unique()})
        vb = sorted({str(v) for v in side_b[c].dropna().unique()})
        if va and vb and va != vb:
            out.append(f"{c}: {'/'.join(va)} vs {'/'.join(vb)}")
    return "; ".join(out)


def _statement(row: dict, confidence: float = 0.95) -> str:
    where = ", ".join(f"{k}={row[k]}" for k in row if k not in COMPARE_COLUMNS)
    prefix = f"[{where}] " if where else ""
    if row["n"] == 0:
        return f"{prefix}{row['a']} vs {row['b']}: no runs share a seed and condition; nothing to compare"
    text = f"{prefix}{row['a']} - {row['b']} = {row['mean_diff']:+.3f} {row['metric']}"
    if row["n"] < 2:
        return text + " on 1 paired seed: no test possible (run more seeds)"
    if pd.isna(row["cohens_dz"]):   # the same difference in every seed: a t-test's p would be 0 or 1 by fiat
        text += f", the same in all {row['n']} paired seeds: no spread in the differences, no t-test"
    else:
        text += (f", {confidence:.0%} CI [{row['ci_lo']:+.3f}, {row['ci_hi']:+.3f}], {row['test']} over "
                 f"{row['n']} paired seeds p = {row['p_value']:.3g}, effect size d_z = {row['cohens_dz']:.2f}")
    if row.get("differences"):
        text += f" (settings differ: {row['differences']})"
    return text



def primary_protocols(df: pd.DataFrame) -> pd.DataFrame:
    """Keep, per method, the first protocol of PROTOCOL_ORDER it has: supervised for the trained
    classifiers, the linear probe for learned representations."""
    if df.empty or "protocol" not in df:
        return df
    present = df.groupby("method")["protocol"].agg(set)
    keep = {m: next((p for p in PROTOCOL_ORDER if p in ps), sorted(ps)[0]) for m, ps in present.items()}
    return df[[keep.get(m) == p for m, p in zip(df["method"], df["protocol"])]]


def headline_condition(d: pd.DataFrame) -> dict:
    """The headline condition of a table: the lowest noise, the most common noise kind (when there are
    several) and the largest training fraction present."""
    cond = {}
    if "noise" in d and d["noise"].notna().any():
        cond["noise"] = d["noise"].min()
    if "noise_kind" in d and d["noise_kind"].notna().any() and d["noise_kind"].nunique() > 1:
        cond["noise_kind"] = d["noise_kind"].mode().iloc[0]
    if "fraction" in d and d["fraction"].notna().any():
        cond["fraction"] = d["fraction"].max()
    return cond


def method_pairs(df: pd.DataFrame, candidates) -> list[tuple[dict, dict]]:
    """compare_methods sides for candidate ((method, view), (method, view)) pairs: each method with its
    primary protocol (primary_protocols), keeping only the pairs whose two sides both have rows in df."""
    primary = primary_protocols(df)
    protocol_of = primary.groupby("method")["protocol"].first().to_dict()
    views_of = primary.groupby("method")["view"].agg(set).to_dict()

    def side(method, view):
        return {"method": method, "protocol": protocol_of[method], "view": view}
    return [(side(*a), side(*b)) for a, b in candidates
            if a[1] in views_of.get(a[0], ()) and b[1] in views_of.get(b[0], ())]


def compare_pairs(df: pd.DataFrame, pairs, over=(), metric: str = "accuracy", **kwargs) -> pd.DataFrame:
    """compare_methods(df, a, b, ...) for every (a, b) of pairs (e.g. method_pairs), stacked into one table;
    an empty table with the same columns when there are no pairs or no rows."""
    over = [over] if isinstance(over, str) else list(over)
    if not pairs or df.empty:
        return pd.DataFrame(columns=[*over, *COMPARE_COLUMNS])
    return pd.concat([compare_methods(df, a, b, metric=metric, over=over, **kwargs) for a, b in pairs],
                     ignore_index=True)


# ---------------------------------------------------------------------------- effects of an axis

def _run_keys(df: pd.DataFrame, axis: str, metric: str) -> list[str]:
    return [c for c in df if c not in (axis, metric) and not _is_outcome(c)]


def paired_differences(df: pd.DataFrame, axis: str, level, baseline, metric: str = "accuracy") -> pd.DataFrame:
    """metric at axis=level minus metric at axis=baseline, per pair of rows that agree on everything
    else (seed, method, protocol, view, test set, other parameters). Columns: those keys, axis
    (= level), baseline, at_level, at_baseline, diff. compare_methods(..., metric="diff") on two
    methods' differences tells whether one degrades more than the other, paired by seed."""
    if axis not in df or metric not in df:
        raise StudyError(f"paired_differences: need columns {axis!r} and {metric!r}")
    d = df[df[metric].notna()]
    keys = _run_keys(d, axis, metric)
    at_level = d[d[axis] == level].groupby(keys, dropna=False)[metric].mean().rename("at_level")
    at_base = d[d[axis] == baseline].groupby(keys, dropna=False)[metric].mean().rename("at_baseline")
    out = pd.concat([at_level, at_base], axis=1, join="inner").reset_index()
    out.insert(len(keys), axis, level)
    out.insert(len(keys) + 1, "baseline", baseline)
    return out.assign(diff=out["at_level"] - out["at_baseline"])


def effect_table(df: pd.DataFrame, axis: str = "noise", baseline=None, metric: str = "accuracy",
                 test_set: str = "test", protocol="primary", confidence: float = 0.95) -> pd.DataFrame:
    """How much each method/protocol/view changes from axis=baseline to every other level, paired by
    seed: one row per (method, protocol, view, level) with n, mean at baseline and at the level,
    mean_diff with its t interval, the paired t-test's p_value, cohens_dz and relative change.
    baseline defaults to the smallest noise, or the largest fraction."""
    d = df[df["test_set"] == test_set] if test_set is not None and "test_set" in df else df
    d = primary_protocols(d) if protocol == "primary" else d
    if d.empty or axis not in d or d[axis].nunique() < 2:
        return pd.DataFrame()
    if baseline is None:
        baseline = d[axis].max() if axis == "fraction" else d[axis].min()
    rows = []
    for level in sorted(v for v in d[axis].unique() if v != baseline):
        diffs = paired_differences(d, axis, level, baseline, metric)
        for (method, prot, view), g in diffs.groupby(["method", "protocol", "view"], sort=False):
            pc = ev.paired_comparison(g["at_level"].to_numpy(float), g["at_baseline"].to_numpy(float), confidence)
            base_mean = float(g["at_baseline"].mean())
            rows.append({"method": method, "protocol": prot, "view": view, axis: level, "baseline": baseline,
                         "metric": metric, "n": pc["n"], "mean_baseline": base_mean,
                         "mean_level": float(g["at_level"].mean()), "mean_diff": pc["mean_diff"],
                         "ci_lo": pc["ci_lo"], "ci_hi": pc["ci_hi"], "p_value": pc["p_value"],
                         "cohens_dz": pc["cohens_dz"],
                         "relative": pc["mean_diff"] / base_mean if base_mean else math.nan})
    return sort_table(pd.DataFrame(rows), ["method", "protocol", "view", axis]) if rows else pd.DataFrame()


def format_diff(row, digits: int = 3) -> str:
    """"+0.012 [-0.004, +0.028], n=5, p=0.12" from a compare_methods / effect_table row."""
    text = f"{row['mean_diff']:+.{digits}f}"
    if row["n"] >= 2 and row["ci_lo"] is not None and not pd.isna(row["ci_lo"]):
        text += f" [{row['ci_lo']:+.{digits}f}, {row['ci_hi']:+.{digits}f}], n={int(row['n'])}"
        if "cohens_dz" in row and pd.isna(row["cohens_dz"]):   # no spread across seeds: nothing for a t-test
            text += ", no spread across seeds: no t-test"
        elif row.get("p_value") is not None and not pd.isna(row.get("p_value")):
            text += f", p={row['p_value']:.2g}"
    else:
        text += f" (n={int(row['n'])}, no interval)"
    return text


# ---------------------------------------------------------------------------- single records

def headline_table(record: dict, test_set: str = "test") -> pd.DataFrame:
    """Accuracy and macro-F1 of every method and view of one record on one test set: rows method and
    protocol, columns (metric, view)."""
    df = pd.DataFrame(record["results"])
    df = df[df["test_set"] == test_set]
    return df.pivot_table(index=["method", "protocol"], columns="view", values=["accuracy", "macro_f1"]).round(3)


# ---------------------------------------------------------------------------- feature spaces

def clustering_table(records) -> pd.DataFrame:
    """K-means scores of notebook 08's records (k = number of classes), over seeds: method, view, metric
    (nmi, ari, purity, silhouette), mean, lo, hi, sd, n."""
    rows = [{**row, "seed": (r.get("params") or {}).get("seed")} for r in records
            if isinstance(r.get("clustering"), list) for row in r["clustering"] if isinstance(row, dict)]
    d = pd.DataFrame(rows)
    if d.empty:
        return d
    parts = [summarise(d, by=["method", "view"], metric=m) for m in ("nmi", "ari", "purity", "silhouette") if m in d]
    return pd.concat(parts, ignore_index=True)


def _training_histories(node, path=()):
    """Every training history (a dict with "still_improving") inside a record, with its path of keys."""
    if isinstance(node, dict):
        if "still_improving" in node and "best_epoch" in node:
            yield path, node
        else:
            for k, v in node.items():
                yield from _training_histories(v, path + (str(k),))


def temperature_table(records) -> pd.DataFrame:
    """Contrastive runs: the learnable logit scale (1 / temperature) at the start and at the kept epoch, per method
    (mean over runs), so a temperature that never moves is seen."""
    rows = [{"method": m, "initial": h["logit_scale_initial"], "kept": h["logit_scale"]}
            for r in records for m, h in (r.get("history") or {}).items()
            if isinstance(h, dict) and "logit_scale_initial" in h and "logit_scale" in h]
    if not rows:
        return pd.DataFrame(columns=["method", "runs", "initial", "kept"])
    df = pd.DataFrame(rows)
    return df.groupby("method").agg(runs=("kept", "size"), initial=("initial", "mean"), kept=("kept", "mean")).reset_index()


def _rate_at_kept_step(h: dict, decay_epochs) -> float:
    """The learning rate of the kept epoch's last step, as a share of the peak, under the schedule the run
    trained with (helpers.training.Schedule): near 1, the run was kept before its rate fell. Every epoch is the
    same number of steps, so the history gives it; a decay always runs its course (the run stops when it is over,
    or it ends with the budget), so it began decay_steps before the end."""
    from .training import Schedule   # torch: imported only where a report has training histories

    budget, steps, kept = h.get("budget_steps"), h.get("steps"), h.get("best_step")
    epochs = len(h.get("train_loss") or [])
    if not (budget and steps and kept and epochs):
        return float("nan")
    per_epoch = steps // epochs
    decay_steps = min(int(decay_epochs or 0) * per_epoch, budget)
    schedule = Schedule(budget, decay_steps)
    if decay_steps:
        schedule.decay(steps - decay_steps)
    return schedule(kept - 1)


def convergence_table(records) -> pd.DataFrame:
    """Per notebook, trained model and training fraction: runs, steps taken and kept (medians), how many stopped
    by the patience rule, how many ended their budget still improving on validation (not converged by the
    rule), the median learning rate at the kept step as a share of its peak, and the median training wall time
    (the history's seconds: where the study's time goes, on the machine that ran it). The fraction is shown because
    patience and budget count epochs: an epoch is at least MIN_STEPS_PER_EPOCH steps, but older records counted
    passes, which a smaller training set makes in fewer steps."""
    rows = []
    for record in records:
        params = record.get("params") or {}
        for key in ("history", "finetune_history"):
            for path, h in _training_histories(record.get(key) or {}):
                rows.append({"notebook": record.get("notebook"), "model": "/".join((key,) + path),
                             "fraction": params.get("fraction"), "steps": h.get("steps"), "best_step": h.get("best_step"),
                             "stopped_early": bool(h.get("stopped_early")),
                             "still_improving": bool(h.get("still_improving")),
                             "lr_at_best": _rate_at_kept_step(h, params.get("decay_epochs")),
                             "train_s": h.get("seconds")})
    if not rows:
        return pd.DataFrame(columns=["notebook", "model", "fraction", "runs", "median_steps", "median_best_step",
                                     "stopped_early", "still_improving", "lr_at_best", "median_train_s"])
    df = pd.DataFrame(rows)
    return (df.groupby(["notebook", "model", "fraction"], sort=True, dropna=False)
              .agg(runs=("steps", "size"), median_steps=("steps", "median"), median_best_step=("best_step", "median"),
                   stopped_early=("stopped_early", "sum"), still_improving=("still_improving", "sum"),
                   lr_at_best=("lr_at_best", "median"), median_train_s=("train_s", "median"))
              .reset_index()
              .round({"median_train_s": 0}).astype({"median_train_s": "Int64"}))


# The methods' accuracy targets of the study's issues 14-16 (test split or external set, the headline condition):
# (issue, what, candidate rows (method, protocol, view), test set, threshold). Of several candidates the one with the
# best mean validation accuracy is scored, never the best on test (a candidate without validation scores is passed
# over); rows without any (translation judges) are targets of their own.
_AUDIO_FROM_SCRATCH = (("audio_wave", "supervised", "audio"), ("audio_mel", "supervised", "audio"))
_AUDIO_ALL = _AUDIO_FROM_SCRATCH + (("audio_imagenet", "supervised", "audio"), ("image_bound", "image_probe", "audio"),
                                    ("image_bound", "linear_probe", "audio"), ("contrastive", "linear_probe", "audio"),
                                    ("supcon", "linear_probe", "audio"), ("mvae", "linear_probe", "audio"))
METHOD_TARGETS = (
    ("14", "audio from scratch", _AUDIO_FROM_SCRATCH, "test", 0.88),
    ("14", "ImageNet-initialised audio", (("audio_imagenet", "supervised", "audio"),), "test", 0.92),
    ("14", "image from scratch", (("image", "supervised", "image"),), "test", 0.70),
    ("14", "ImageNet image probe", (("imagenet", "linear_probe", "image"),), "test", 0.97),
    ("14", "late fusion (image CNN + the audio model best on validation)", (("late_fusion", "supervised", "fused"),),
     "test", 0.94),
    ("14", "ImageNet image + audio, fused", (("imagenet", "linear_probe", "fused"),), "test", 0.985),
    ("15", "image-bound audio through the image probe (no audio label)", (("image_bound", "image_probe", "audio"),),
     "test", 0.80),
    ("15", "image->audio translator, recognised by the audio judge", (("translator", "judge", "image->audio"),),
     "test", 0.60),
    ("15", "audio->image translator, recognised by the image judge", (("translator", "judge", "audio->image"),),
     "test", 0.60),
    ("15", "image->audio by the MVAE, recognised by the audio judge", (("mvae_cross", "judge", "image->audio"),),
     "test", 0.60),
    ("15", "audio->image by the MVAE, recognised by the image judge", (("mvae_cross", "judge", "audio->image"),),
     "test", 0.60),
    ("16", "best audio model on the external clips", _AUDIO_ALL, "external", 0.55),
    ("16", "ImageNet image probe on the external photos", (("imagenet", "linear_probe", "image"),), "external", 0.92),
    ("16", "image from scratch on the external photos", (("image", "supervised", "image"),), "external", 0.50),
)


def target_rows(df: pd.DataFrame) -> pd.DataFrame:
    """For each METHOD_TARGETS entry with rows in df: the chosen candidate (best mean validation accuracy over
    seeds on the study's validation split) and its rows on the target's test set; columns issue, target,
    threshold, method, protocol, view, test_set, val_mean, plus the rows' own (one per run). attrs["unscored"]:
    (issue, target, why) of the targets whose candidates cannot be chosen between without the test split."""
    out, unscored = [], []
    for issue, what, candidates, test_set, threshold in METHOD_TARGETS:
        scored = []
        for method, protocol, view in candidates:
            rows = df[(df["method"] == method) & (df["protocol"] == protocol) & (df["view"] == view)]
            on_set = rows[(rows["test_set"] == test_set) & rows["accuracy"].notna()]
            if on_set.empty:
                continue
            val = rows[rows["test_set"] == "test"]["val_accuracy"].mean() if "val_accuracy" in rows else math.nan
            scored.append((val, on_set))
        if len(scored) > 1:   # only candidates with a validation score can be chosen: never by the test split
            with_val = [s for s in scored if not pd.isna(s[0])]
            if not with_val:
                unscored.append((issue, what, f"{len(scored)} candidates and no validation score to choose by"))
            scored = with_val
        if not scored:
            continue
        val, rows = max(scored, key=lambda s: s[0])
        out.append(rows.assign(issue=issue, target=what, threshold=threshold, val_mean=val))
    table = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    table.attrs["unscored"] = unscored   # (issue, target, why): said by the report, never dropped silently
    return table


def md_table(df: pd.DataFrame, index: bool = True) -> str:
    if df is None or df.empty:
        return "_(none)_\n"
    d = df.reset_index() if index else df
    names = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in d.columns]

    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines) + "\n"
