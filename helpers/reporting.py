"""Reporting: stack every metrics record into one table, summarise over seeds, compare methods on
paired seeds, plot curves with confidence bands, fit learning curves, and write results/README.md.

    df = results_table(records.load_records())        # one row per record x result row
    summarise(df, by=["method", "view", "noise"])     # mean, t interval and n over seeds
    compare_methods(df, "contrastive", "image", view="image", over=["noise"])
    plot_curve(df, x="noise")                         # matplotlib Figure, one panel per view

`python -m helpers report [--results results]` aggregates whatever records exist into
results/summary.csv, results/figures/*.png, results/notebooks/<stem>.html and results/README.md.
Nothing here imports torch: reporting works wherever pandas and matplotlib do.
"""
from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import evaluation as ev
from . import records as rec
from .config import REPO_ROOT, RESULTS_DIR, StudyError

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
ROW_KEYS = ("method", "protocol", "view", "test_set")
PROTOCOL_ORDER = ("supervised", "linear_probe", "finetune", "knn", "zero_shot", "retrieval")
VIEW_ORDER = ("audio", "image", "fused", "audio->image", "image->audio")
SMALL_MULTIMODAL = ("contrastive", "supcon", "mvae", "autoencoder")
X_LABELS = {"noise": "label-noise rate", "fraction": "training fraction of the data",
            "n_train": "training items"}
FIGURE_PREFIXES = ("accuracy_vs_", "macro_f1_vs_", "counterfactual_drops", "headline")
# Shortcut mitigations (issue 9) and their defaults (helpers.experiments.DEFAULTS; repeated here because
# reporting never imports torch). params/mitigations_02.yaml switches each off in turn.
MITIGATIONS = {"sample_rate": 8000, "normalize_loudness": True, "random_crop": True, "augment": True}
MITIGATION_OFF = {"sample_rate": 16000, "normalize_loudness": False, "random_crop": False, "augment": False}
AUDIO_TEST_SETS = ("bandlimit_4k", "quieter_12db", "cut_1s")   # helpers.shortcuts.AUDIO_COUNTERFACTUALS
TRANSLATION_NOTEBOOK = "06_translation"


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


def param_columns(df: pd.DataFrame) -> list[str]:
    """The columns of df that hold run parameters (not results, not bookkeeping)."""
    not_params = {"notebook", *ROW_KEYS, *METRICS, "n", "n_queries", *BOOKKEEPING}
    return [c for c in df if c not in not_params and not c.startswith(("n_train_", "noise_achieved_"))]


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
    interval. `by` defaults to condition_columns(df).
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
        out.append({**dict(zip(by, key)), "metric": metric, **{k: ci[k] for k in ("mean", "lo", "hi", "sd", "n")}})
    table = pd.DataFrame(out, columns=columns)
    return _sorted(table, by)


def _sort_key(column: pd.Series) -> pd.Series:
    order = {"view": VIEW_ORDER, "protocol": PROTOCOL_ORDER}.get(column.name)
    if order:
        return column.map(lambda v: (order.index(v), "") if v in order else (len(order), str(v)))
    if pd.api.types.is_numeric_dtype(column):
        return column
    return column.map(lambda v: (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and not pd.isna(v) else (1, 0, str(v)))


def _sorted(table: pd.DataFrame, by) -> pd.DataFrame:
    if table.empty or not by:
        return table.reset_index(drop=True)
    return table.sort_values(list(by), key=_sort_key, kind="stable").reset_index(drop=True)


def format_ci(mean, lo=None, hi=None, n=None, digits: int = 3) -> str:
    """"0.812 [0.790, 0.834] (n=5)"; a single seed says it has no interval."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    if n is not None and int(n) < 2:
        return text + " (n=1, no interval)"
    if lo is not None and hi is not None:
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text + (f" (n={int(n)})" if n is not None else "")


def ci_table(summary: pd.DataFrame, index, columns, digits: int = 3) -> pd.DataFrame:
    """A summarise() table pivoted for reading: cells "mean [lo, hi] (n=...)"."""
    if summary.empty:
        return pd.DataFrame()
    s = summary.assign(cell=[format_ci(m, lo, hi, n, digits) for m, lo, hi, n in
                             zip(summary["mean"], summary["lo"], summary["hi"], summary["n"])])
    index, columns = list(index), list(columns)
    wide = s.pivot_table(index=index, columns=columns, values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=sorted(wide.columns, key=lambda c: _col_key(c, columns)))
    return wide


def _col_key(value, names):
    values = value if isinstance(value, tuple) else (value,)
    out = []
    for name, v in zip(names, values):
        order = {"view": VIEW_ORDER, "protocol": PROTOCOL_ORDER}.get(name)
        if order and v in order:
            out.append((0, order.index(v), ""))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((1, v, ""))
        else:
            out.append((2, 0, str(v)))
    return out


# ---------------------------------------------------------------------------- paired comparisons

def _select(df: pd.DataFrame, spec) -> pd.DataFrame:
    spec = {"method": spec} if isinstance(spec, str) else dict(spec)
    mask = pd.Series(True, index=df.index)
    for column, value in spec.items():
        if column not in df:
            raise StudyError(f"no column {column!r} to select on; the table has {list(df.columns)}")
        mask &= df[column].isin(value) if isinstance(value, (list, tuple, set)) else df[column] == value
    return df[mask]


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
    ignore = {metric, *METRICS, "n", "n_queries", *BOOKKEEPING}
    ignore |= {c for c in side if c.startswith(("n_train_", "noise_achieved_"))}
    informative = [c for c in side if c not in ignore and c not in keys]
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
        d = _select(d, where)
    over = [over] if isinstance(over, str) else list(over)
    if match is None:
        match = ["seed"] + [c for c in MATCH_PARAMS if c in d]
    keys = list(dict.fromkeys([c for c in match if c in d] + [c for c in over if c in d]))
    if "seed" not in keys:
        raise StudyError("compare_methods pairs runs by seed; the table has no seed column")
    side_a, side_b = _select(d, a), _select(d, b)
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
    return _sorted(pd.DataFrame(rows), over)


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
    where = ", ".join(f"{k}={row[k]}" for k in row if k not in _COMPARE_FIELDS)
    prefix = f"[{where}] " if where else ""
    if row["n"] == 0:
        return f"{prefix}{row['a']} vs {row['b']}: no runs share a seed and condition; nothing to compare"
    text = f"{prefix}{row['a']} - {row['b']} = {row['mean_diff']:+.3f} {row['metric']}"
    if row["n"] < 2:
        return text + " on 1 paired seed: no test possible (run more seeds)"
    text += (f", {confidence:.0%} CI [{row['ci_lo']:+.3f}, {row['ci_hi']:+.3f}], {row['test']} over "
             f"{row['n']} paired seeds p = {row['p_value']:.3g}")
    text += f", effect size d_z = {row['cohens_dz']:.2f}" if row["cohens_dz"] is not None else ", no spread in the differences"
    if row.get("differences"):
        text += f" (settings differ: {row['differences']})"
    return text


_COMPARE_FIELDS = {"a", "b", "metric", "n", "seeds", "mean_a", "mean_b", "unpaired_a", "unpaired_b", "mean_diff",
                   "ci_lo", "ci_hi", "test", "p_value", "wilcoxon_p", "cohens_dz", "statement", "differences"}


def primary_protocols(df: pd.DataFrame) -> pd.DataFrame:
    """Keep, per method, the first protocol of PROTOCOL_ORDER it has: supervised for the trained
    classifiers, the linear probe for learned representations."""
    if df.empty or "protocol" not in df:
        return df
    present = df.groupby("method")["protocol"].agg(set)
    keep = {m: next((p for p in PROTOCOL_ORDER if p in ps), sorted(ps)[0]) for m, ps in present.items()}
    return df[[keep.get(m) == p for m, p in zip(df["method"], df["protocol"])]]


# ---------------------------------------------------------------------------- figures

def _new_figure(npanels: int, width: float = 4.2, height: float = 3.4, sharey: bool = True, max_cols: int = 4):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in threads and scripts
    ncols = min(npanels, max_cols)
    nrows = -(-npanels // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel())
    for ax in axes[npanels:]:
        ax.set_axis_off()
    return fig, axes[:npanels]


def plot_curve(df: pd.DataFrame, x: str = "noise", metric: str = "accuracy", views=None, methods=None,
               protocol="primary", test_set: str = "test", confidence: float = 0.95, title: str | None = None,
               **where):
    """A matplotlib Figure: mean `metric` over seeds against `x`, with its t interval as a band,
    one line per method (and protocol), one panel per view (audio, image, fused, ...).

    protocol: "primary" (one per method, see primary_protocols), None (all, each its own line),
    or a name / list of names. `where` filters rows first (e.g. fraction=0.8).
    """
    if x not in df:
        raise StudyError(f"plot_curve: no column {x!r}; the table has {list(df.columns)}")
    d = df[df[metric].notna()] if metric in df else df.iloc[0:0]
    if test_set is not None and "test_set" in d:
        d = d[d["test_set"] == test_set]
    if where:
        d = _select(d, where)
    if methods is not None:
        d = d[d["method"].isin([methods] if isinstance(methods, str) else list(methods))]
    if protocol == "primary":
        d = primary_protocols(d)
    elif protocol is not None:
        d = d[d["protocol"].isin([protocol] if isinstance(protocol, str) else list(protocol))]
    present = list(d["view"].unique()) if "view" in d else []
    views = [v for v in VIEW_ORDER if v in present] + [v for v in present if v not in VIEW_ORDER] \
        if views is None else [views] if isinstance(views, str) else list(views)
    fig, axes = _new_figure(max(len(views), 1))
    if d.empty or not views:
        axes[0].text(0.5, 0.5, f"no {metric} results to plot", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return fig
    s = summarise(d, by=["method", "protocol", "view", x], metric=metric, confidence=confidence)
    several = s.groupby("method")["protocol"].nunique().gt(1).to_dict()
    lines = sorted({(m, p) for m, p in zip(s["method"], s["protocol"])},
                   key=lambda mp: (mp[0], PROTOCOL_ORDER.index(mp[1]) if mp[1] in PROTOCOL_ORDER else 99))
    import matplotlib
    colours = matplotlib.colormaps["tab10"]
    for ax, view in zip(axes, views):
        for k, (method, prot) in enumerate(lines):
            pts = s[(s["method"] == method) & (s["protocol"] == prot) & (s["view"] == view)]
            if pts.empty:
                continue
            pts = pts.sort_values(x)
            label = f"{method} ({prot})" if several.get(method) or protocol is None else method
            seeds = f"n={int(pts['n'].min())}" if pts["n"].min() == pts["n"].max() else \
                f"n={int(pts['n'].min())}-{int(pts['n'].max())}"
            colour = colours(k % 10)
            ax.plot(pts[x], pts["mean"], marker="o", color=colour, label=f"{label}, {seeds}")
            lo, hi = pts["lo"].to_numpy(float), pts["hi"].to_numpy(float)
            if metric in METRICS:  # a t interval over 2-3 seeds can leave [0, 1]; the metric cannot
                lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
            ax.fill_between(pts[x].to_numpy(float), lo, hi, color=colour, alpha=0.18, linewidth=0)
        ax.set_title(f"view: {view}")
        ax.set_xlabel(X_LABELS.get(x, x))
        ax.set_xticks(sorted(s[x].unique()))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel(f"{metric} ({test_set or 'all'} set)")
    clipped = " (clipped to [0, 1])" if metric in METRICS else ""
    fig.suptitle(title or f"{metric} vs {X_LABELS.get(x, x)}: mean over seeds, {confidence:.0%} t-interval band{clipped}")
    return fig


# ---------------------------------------------------------------------------- learning curves

@dataclass
class LearningCurve:
    """acc(x) = a - b * x**(-c): a is the accuracy the method tends to with unlimited data."""
    a: float
    b: float
    c: float
    rmse: float
    n_points: int
    n_x: int            # distinct x values
    x_min: float
    x_max: float
    c_fixed: bool       # True when too few distinct x values to estimate c (it is then C_DEFAULT)
    ok: bool            # False when the curve could not be fitted (a single x value)

    def predict(self, x):
        x = np.asarray(x, dtype=float)
        return self.a - self.b * x ** (-self.c)

    def as_dict(self) -> dict:
        return asdict(self)


C_DEFAULT = 0.5   # a typical learning-curve exponent, used when only two x values exist
_C_GRID = np.geomspace(0.02, 4.0, 400)


def _fit_ab(x: np.ndarray, y: np.ndarray, c: float, a_max: float) -> tuple[float, float, float]:
    """Least-squares a, b for a fixed c with b >= 0 and a <= a_max; returns (a, b, sse)."""
    z = x ** (-c)
    if np.ptp(z) > 0:
        b, a = np.polyfit(-z, y, 1)
    else:
        a, b = float(np.mean(y)), 0.0
    if b < 0:
        a, b = float(np.mean(y)), 0.0
    if a > a_max:
        a = a_max
        b = max(float(np.dot(z, a - y) / np.dot(z, z)), 0.0)
    sse = float(np.sum((y - (a - b * z)) ** 2))
    return float(a), float(b), sse


def fit_learning_curve(x, accuracies, a_max: float = 1.0) -> LearningCurve:
    """Fit acc = a - b * x**(-c) (b >= 0, 0 < c, a <= a_max) to points (x, accuracy).

    x is the amount of training data (items, or the training fraction); give one point per seed,
    repeated x values are fine. Robust with few points: for each c on a grid the best a, b are
    solved exactly (linear least squares), the best c is refined with scipy's curve_fit. With two
    distinct x values c is fixed at C_DEFAULT (c_fixed=True); with one, ok=False.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(accuracies, dtype=float).ravel()
    if len(x) != len(y):
        raise StudyError(f"fit_learning_curve: {len(x)} x values but {len(y)} accuracies")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.any(x <= 0):
        raise StudyError("fit_learning_curve: x (amount of data) must be positive")
    n_x = len(np.unique(x))
    common = dict(n_points=int(len(x)), n_x=int(n_x), x_min=float(x.min()) if len(x) else math.nan,
                  x_max=float(x.max()) if len(x) else math.nan)
    if n_x < 2:
        mean = float(np.mean(y)) if len(y) else math.nan
        return LearningCurve(mean, 0.0, C_DEFAULT, math.nan, c_fixed=True, ok=False, **common)
    if n_x == 2:
        a, b, sse = _fit_ab(x, y, C_DEFAULT, a_max)
        return LearningCurve(a, b, C_DEFAULT, math.sqrt(sse / len(x)), c_fixed=True, ok=True, **common)
    # scale x so the grid of exponents behaves the same for fractions and item counts
    scale = float(np.exp(np.mean(np.log(x))))
    xs = x / scale
    fits = [(_fit_ab(xs, y, c, a_max), c) for c in _C_GRID]
    (a, b, sse), c = min(fits, key=lambda f: f[0][2])
    try:
        from scipy.optimize import curve_fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _ = curve_fit(lambda t, a_, b_, c_: a_ - b_ * t ** (-c_), xs, y, p0=[a, max(b, 1e-6), c],
                                bounds=([-np.inf, 0.0, 1e-3], [a_max, np.inf, 10.0]), maxfev=20000)
        sse_refined = float(np.sum((y - (popt[0] - popt[1] * xs ** (-popt[2]))) ** 2))
        if sse_refined < sse:
            (a, b, c), sse = popt, sse_refined
    except (RuntimeError, ValueError):
        pass
    # back to the caller's units: b * (x/scale)^-c = (b * scale^c) * x^-c
    return LearningCurve(float(a), float(b * scale ** c), float(c), math.sqrt(sse / len(x)),
                         c_fixed=False, ok=True, **common)


def data_needed(fit: LearningCurve, target_accuracy: float) -> float:
    """The x (same units as the fit) at which the fitted curve reaches target_accuracy.

    inf if the curve never gets there (target >= asymptote a, or a flat curve below it);
    nan if the fit failed. Values beyond fit.x_max are extrapolations: say so when reporting.
    """
    if not fit.ok:
        return math.nan
    if fit.b <= 0:
        return fit.x_min if target_accuracy <= fit.a else math.inf
    if target_accuracy >= fit.a:
        return math.inf
    return float((fit.b / (fit.a - target_accuracy)) ** (1.0 / fit.c))


def learning_curves(df: pd.DataFrame, x: str = "n_train", metric: str = "accuracy", by=("method", "protocol", "view"),
                    test_set: str = "test", **where) -> pd.DataFrame:
    """fit_learning_curve per group of `by` on one point per run; one row per group with the fit.

    x="n_train" uses the training items of the view's modality (n_train_audio / n_train_image; fused
    and cross-modal views use the audio count, as the pairs are built from the audio clips).
    """
    d = df[df[metric].notna()] if metric in df else df.iloc[0:0]
    if test_set is not None and "test_set" in d:
        d = d[d["test_set"] == test_set]
    if where:
        d = _select(d, where)
    if x == "n_train" and not d.empty:
        if "n_train_audio" not in d and "n_train_image" not in d:
            raise StudyError("learning_curves: the records hold no split_sizes; use x='fraction'")
        image = d.get("n_train_image", pd.Series(np.nan, index=d.index))
        audio = d.get("n_train_audio", pd.Series(np.nan, index=d.index))
        d = d.assign(n_train=np.where(d["view"] == "image", image, audio))
    rows = []
    for key, group in d.groupby(list(by), dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        fit = fit_learning_curve(group[x], group[metric])
        rows.append({**dict(zip(by, key)), "x": x, **fit.as_dict(), "fit": fit})
    return _sorted(pd.DataFrame(rows), list(by)) if rows else pd.DataFrame(columns=[*by, "x", "fit"])


# ---------------------------------------------------------------------------- shortcuts

def counterfactual_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: accuracy on each counterfactual test set minus accuracy on the plain test split
    (same method, protocol, view and run). Columns: identifying columns, plain, accuracy, drop."""
    if df.empty or "test_set" not in df:
        return pd.DataFrame(columns=["method", "protocol", "view", "test_set", "plain", "accuracy", "drop"])
    d = df[df["protocol"].isin(["supervised", "linear_probe", "knn", "finetune"]) & df["accuracy"].notna()]
    ident = [c for c in d if c not in ("test_set", *METRICS, "n", "n_queries")
             and not c.startswith("noise_achieved_")]
    plain = d[d["test_set"] == "test"][ident + ["accuracy"]].rename(columns={"accuracy": "plain"})
    cf = d[~d["test_set"].isin(["test", "external"])]
    out = cf.merge(plain, on=ident, how="inner")
    return out.assign(drop=out["accuracy"] - out["plain"])


def audit_tables(records) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From records with "audits" (notebook 02): (classifiers on all nuisance features, single
    feature groups), each summarised over seeds: modality, classifier/feature, mean, lo, hi, n."""
    full, single = [], []
    for record in records:
        audits = record.get("audits")
        if not isinstance(audits, dict):
            continue
        params = record.get("params") or {}
        base = {"seed": params.get("seed"), "fraction": params.get("fraction")}
        for modality, audit in audits.items():
            for clf, scores in (audit.get("all_features") or {}).items():
                full.append({**base, "modality": modality, "classifier": clf, **scores})
            for row in audit.get("single_feature") or []:
                single.append({**base, "modality": modality, **row})
    out = []
    for rows, by in ((full, ["modality", "classifier"]), (single, ["modality", "feature"])):
        d = pd.DataFrame(rows)
        if d.empty:
            out.append(pd.DataFrame(columns=[*by, "metric", "mean", "lo", "hi", "sd", "n"]))
            continue
        # the audits use the true labels; only the split (seed, fraction) matters: one per seed
        d = d[d["fraction"] == d["fraction"].max()].drop_duplicates(subset=["seed", *by])
        out.append(summarise(d, by=by, metric="accuracy"))
    return out[0], out[1]


# ---------------------------------------------------------------------------- the report

def _md_table(df: pd.DataFrame, index: bool = True) -> str:
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


def main_settings(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per notebook, the rows of its most-run training setting (parameters other than seed and
    the study axes), so figures never mix e.g. quick 2-epoch runs with full ones. Returns (rows,
    notes on the settings left out)."""
    if df.empty:
        return df, []
    keep, notes = [], []
    for notebook, d in df.groupby("notebook", sort=True):
        setting = [c for c in param_columns(d) if c not in ("seed", *AXES) and d[c].nunique(dropna=False) > 1]
        if not setting:
            keep.append(d)
            continue
        runs = d.drop_duplicates("run_dir") if "run_dir" in d else d
        counts = runs.groupby(setting, dropna=False).size().sort_values(ascending=False, kind="stable")
        best = counts.index[0] if isinstance(counts.index[0], tuple) else (counts.index[0],)
        mask = pd.Series(True, index=d.index)
        for c, v in zip(setting, best):
            mask &= d[c].isna() if pd.isna(v) else d[c] == v
        keep.append(d[mask])
        chosen = ", ".join(f"{c}={v}" for c, v in zip(setting, best))
        notes.append(f"{notebook}: figures and findings use its most-run setting ({chosen}, {counts.iloc[0]} runs); "
                     f"{int(counts.iloc[1:].sum())} run(s) with other settings are only in summary.csv")
    return pd.concat(keep), notes


def _headline_condition(d: pd.DataFrame) -> dict:
    cond = {}
    if "noise" in d and d["noise"].notna().any():
        cond["noise"] = d["noise"].min()
    if "noise_kind" in d and d["noise_kind"].notna().any() and d["noise_kind"].nunique() > 1:
        cond["noise_kind"] = d["noise_kind"].mode().iloc[0]
    if "fraction" in d and d["fraction"].notna().any():
        cond["fraction"] = d["fraction"].max()
    return cond


def _where(d: pd.DataFrame, cond: dict) -> pd.DataFrame:
    for c, v in cond.items():
        d = d[d[c] == v]
    return d


def _curve_slice(d: pd.DataFrame, x: str, other: str) -> tuple[pd.DataFrame, dict]:
    """Rows for a curve against x: `other` axis fixed at the value with the most x levels."""
    if x not in d or d[x].nunique() < 2:
        return d.iloc[0:0], {}
    cond = {}
    if other in d and d[other].notna().any():
        levels = d.groupby(other)[x].nunique()
        best = levels[levels == levels.max()].index
        cond[other] = (min if other == "noise" else max)(best)
    if "noise_kind" in d and x != "noise_kind" and d["noise_kind"].nunique() > 1:
        cond["noise_kind"] = d["noise_kind"].mode().iloc[0]
    return _where(d, cond), cond


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


def _reference_rank(run_dir: Path) -> tuple:
    """How well a run represents its notebook in the rendered copy: finished, then seed 0, no label noise,
    the largest training fraction and the default mitigations (the headline condition), then the newest."""
    record = rec.read_record(run_dir) if (run_dir / rec.RECORD_NAME).exists() else None
    ok = record is not None and not (run_dir / "error.txt").exists()
    p = (record or {}).get("params") or {}
    return (ok, p.get("seed", 0) == 0, not p.get("noise"), float(p.get("fraction") or 0),
            all(p.get(k, v) == v for k, v in MITIGATIONS.items()))


def _render_notebooks(results_dir: Path, out_dir: Path) -> tuple[dict, list[str]]:
    """One HTML per notebook stem from results/runs/**/<stem>.ipynb: the run that best represents the
    notebook (_reference_rank), the newest among equals."""
    executed = [p for p in (results_dir / "runs").rglob("*.ipynb")
                if not p.name.startswith(".") and ".ipynb_checkpoints" not in p.parts]
    if not executed:
        return {}, []
    from nbconvert import HTMLExporter
    best = {}
    for path in executed:
        key = (*_reference_rank(path.parent), path.stat().st_mtime)
        if path.stem not in best or key > best[path.stem][0]:
            best[path.stem] = (key, path)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, problems = {}, []
    exporter = HTMLExporter()
    for stem, ((ok, *_), path) in sorted(best.items()):
        try:
            html, _ = exporter.from_filename(str(path))
        except Exception as e:  # a broken notebook file must not stop the report
            problems.append(f"{path}: {type(e).__name__}: {e}")
            continue
        target = out_dir / f"{stem}.html"
        rec.atomic_write_text(target, html)
        written[stem] = {"html": target.name, "source": str(path.relative_to(results_dir)), "ok": ok}
    return written, problems


def _findings(d: pd.DataFrame, cond: dict) -> list[str]:
    """Headline findings, every number computed from the records."""
    out = []
    head = primary_protocols(_where(d[d["test_set"] == "test"], cond))
    head = head[head["accuracy"].notna()]
    where = ", ".join(f"{k}={v}" for k, v in cond.items())
    if head.empty:
        return [f"No classification results on the plain test split at {where}."]
    s = summarise(head, by=["method", "protocol", "view"], metric="accuracy")
    for view in [v for v in VIEW_ORDER if v in set(s["view"])]:
        sv = s[s["view"] == view].sort_values("mean", ascending=False)
        top = sv.iloc[0]
        text = (f"**{view}** ({where}): best is {top['method']} ({top['protocol']}) with accuracy "
                f"{format_ci(top['mean'], top['lo'], top['hi'], top['n'])}")
        if len(sv) > 1:
            second = sv.iloc[1]
            overlap = top["n"] > 1 and second["n"] > 1 and second["hi"] >= top["lo"]
            text += (f"; next {second['method']} ({second['protocol']}) "
                     f"{format_ci(second['mean'], second['lo'], second['hi'], second['n'])}"
                     + (" — the intervals overlap, so the ranking of these two is not established."
                        if overlap else "."))
        out.append(text)

    def best_of(view, methods=None):
        sv = s[(s["view"] == view) & (s["method"].isin(methods) if methods is not None else True)]
        if sv.empty:
            return None
        top = sv.sort_values("mean", ascending=False).iloc[0]
        return {"method": top["method"], "protocol": top["protocol"], "view": view}

    pairs = []
    fused, image = best_of("fused"), best_of("image")
    if fused and image:
        pairs.append(("fusion vs the best image-only model", fused, image))
    mm = best_of("image", SMALL_MULTIMODAL)
    if mm and (head["method"] == "imagenet").any():
        pairs.append(("best small multimodal model vs ImageNet EfficientNet-Lite0 (image view)", mm,
                      {"method": "imagenet", "protocol": "linear_probe", "view": "image"}))
    if mm and (head["method"] == "image").any():
        pairs.append(("best small multimodal model vs the image-only CNN (image view)", mm,
                      {"method": "image", "protocol": "supervised", "view": "image"}))
    for title, a, b in pairs:
        if a == b:
            continue
        try:
            c = compare_methods(_where(d, cond), a, b).iloc[0]
            out.append(f"{title}: {c['statement']}.")
        except (StudyError, IndexError) as e:
            out.append(f"{title}: not comparable ({e}).")

    for x, other in (("noise", "fraction"), ("fraction", "noise")):
        dd, fixed = _curve_slice(d[d["test_set"] == "test"], x, other)
        effects = effect_table(dd, axis=x) if not dd.empty else pd.DataFrame()
        if effects.empty:
            continue
        extreme = effects[x].min() if x == "fraction" else effects[x].max()
        e = effects[effects[x] == extreme].sort_values("mean_diff")
        at = ", ".join(f"{k}={v}" for k, v in fixed.items())
        worst, best = e.iloc[0], e.iloc[-1]

        def say(r):
            return f"{r['method']} ({r['protocol']}, {r['view']} view) {format_diff(r)}"
        out.append(f"Accuracy change from {x} {worst['baseline']} to {extreme}{' at ' + at if at else ''}, "
                   f"paired by seed: most negative {say(worst)}; least negative {say(best)} "
                   f"({len(e)} method/view combinations).")
    return out


def _shortcut_statements(d: pd.DataFrame, audit_full: pd.DataFrame, drops: pd.DataFrame, cond: dict) -> list[str]:
    out = []
    for modality in sorted(set(audit_full["modality"])) if not audit_full.empty else []:
        a = audit_full[audit_full["modality"] == modality].set_index("classifier")
        if "majority" not in a.index:
            continue
        others = a.drop(index="majority")
        if others.empty:
            continue
        top = others.sort_values("mean", ascending=False).iloc[0]
        gap = top["mean"] - a.loc["majority", "mean"]
        verdict = ("well above chance: the label is partly predictable from recording/file metadata, so some "
                   "of the headline accuracy may come from these cues rather than the animal"
                   if gap > 0.1 else "close to the majority-class rate: no strong metadata shortcut was found")
        out.append(f"{modality}: a {top.name} that sees only nuisance features reaches "
                   f"{format_ci(top['mean'], top['lo'], top['hi'], top['n'])} against "
                   f"{a.loc['majority', 'mean']:.3f} for always guessing the majority class — {verdict}.")
    if not drops.empty:
        worst = drops.sort_values("mean").iloc[0]
        out.append(f"Largest counterfactual drop: {worst['method']} ({worst['protocol']}, {worst['view']} view) loses "
                   f"{-worst['mean']:.3f} accuracy on `{worst['test_set']}` "
                   f"({format_ci(worst['mean'], worst['lo'], worst['hi'], worst['n'])}). A large drop under a change "
                   "that keeps the animal (band limit, level, length, border, colour, compression) means the model "
                   "leans on that property.")
    head = d[(d["test_set"] == "test")]
    head = _where(head, cond)
    if not head.empty and "n" in head:
        n_test = sorted({int(v) for v in head.loc[head["view"].isin(["audio", "image"]), "n"].dropna()})
        seeds = head["seed"].nunique() if "seed" in head else 1
        out.append(
            f"What the headline numbers show: accuracy on a fixed held-out split of this one collection "
            f"({', '.join(map(str, n_test)) or '?'} test items per modality), averaged over {seeds} seed(s) "
            f"(training subset, noisy labels and initialisation change with the seed; the test split does not). "
            f"The intervals are over seeds only: they do not include test-set sampling error, which at this test "
            f"size is itself several accuracy points (binomial standard error ≈ "
            f"{math.sqrt(0.25 / max(min(n_test or [1]), 1)):.3f} at 50% accuracy).")
        external = d[d["test_set"] == "external"]
        out.append(
            "What they do not show: that a model recognises the animal rather than the recording conditions "
            "(see the audits and drops above), or that it would do as well on recordings and photos from "
            "elsewhere" + (f" — the external test set gives a first check ({external['n'].max():.0f} items)."
                           if not external.empty else " — no external test set was run (parameter external_data)."))
    return out


def mitigation_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs that differ from the defaults in mitigation parameters only, each labelled in a
    column "variant": "defaults", "sample_rate=16000", ..., or "none" (every mitigation off). Only
    notebooks with at least one such variant, at the headline condition (lowest noise, largest
    fraction); rows whose mitigation columns are absent count as defaults."""
    if df.empty:
        return df.assign(variant=pd.Series(dtype=object))
    d = df.copy()
    for name, default in MITIGATIONS.items():
        d[name] = d[name].where(d[name].notna(), default) if name in d else default

    def label(row):
        # a column with gaps turns 16000 into 16000.0: name the value as the grid file writes it
        row = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in row.items()}
        off = [f"{k}={row[k]}" for k, v in MITIGATIONS.items() if row[k] != v]
        if len(off) == len(MITIGATIONS) and all(row[k] == MITIGATION_OFF[k] for k in MITIGATIONS):
            return "none"
        return ", ".join(off) or "defaults"
    d["variant"] = [label(r) for r in d[list(MITIGATIONS)].to_dict("records")]
    keep = [nb for nb, g in d.groupby("notebook") if g["variant"].nunique() > 1 and (g["variant"] == "defaults").any()]
    d = d[d["notebook"].isin(keep)]
    return _where(d, _headline_condition(d)) if not d.empty else d


def _variant_order(variants) -> list[str]:
    singles = [f"{k}={v}" for k, v in MITIGATION_OFF.items()]
    return sorted(set(variants), key=lambda v: (v != "defaults", v == "none", singles.index(v) if v in singles else 99, v))


def mitigation_tables(d: pd.DataFrame) -> dict:
    """From mitigation_variants rows: "accuracy" (plain test split) and "drops" (counterfactual minus plain,
    same run), each method/protocol/view x variant with "mean [lo, hi] (n)"; "paired": every variant
    against the defaults per method/view, paired by seed (compare_methods rows, accuracy and drops)."""
    d = primary_protocols(d[d["accuracy"].notna()])
    test = d[d["test_set"] == "test"]
    order = _variant_order(d["variant"])
    acc = summarise(test, by=["method", "protocol", "view", "variant"], metric="accuracy")
    drops_runs = counterfactual_table(d)
    # a counterfactual of one modality says nothing about a model of the other
    audio_set = drops_runs["test_set"].isin(AUDIO_TEST_SETS)
    relevant = ((drops_runs["view"] == "fused") | ((drops_runs["view"] == "audio") & audio_set)
                | ((drops_runs["view"] == "image") & ~audio_set))
    drops_runs = drops_runs[relevant]
    drops = summarise(drops_runs, by=["method", "protocol", "view", "test_set", "variant"], metric="drop")
    paired = []
    for variant in order[1:]:
        for metric, table in (("accuracy", test), ("drop", drops_runs.assign(accuracy=drops_runs["drop"]))):
            groups = ["method", "protocol", "view"] + (["test_set"] if metric == "drop" else [])
            c = compare_methods(table, {"variant": variant}, {"variant": "defaults"}, over=groups,
                                test_set=None if metric == "drop" else "test")
            paired.append(c.assign(variant=variant, measure=metric))
    paired = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()

    def wide(s, index):
        table = ci_table(s, index, ["variant"])
        return table[[v for v in order if v in table.columns]]
    return {"accuracy": wide(acc, ["method", "protocol", "view"]),
            "drops": wide(drops, ["method", "protocol", "view", "test_set"]), "paired": paired,
            "variants": order, "seeds": int(test["seed"].nunique()) if "seed" in test else 1}


def _mitigation_section(d: pd.DataFrame, audit_full: pd.DataFrame) -> list[str]:
    tables = mitigation_tables(d)
    where = ", ".join(f"{k}={v}" for k, v in _headline_condition(d).items())
    lines = [f"### Mitigations on and off (notebook {', '.join(sorted(set(d['notebook'])))}; {where})", "",
             "Each variant switches one default mitigation off (`none`: all of them). Mean over seeds, 95% t interval, "
             "number of seeds. Accuracy on the plain test split:", "", _md_table(tables["accuracy"]), "",
             "Counterfactual drops (changed minus plain test accuracy, same run; audio models on the audio changes, "
             "image models on the image changes, fused models on both):", "", _md_table(tables["drops"]), ""]
    p = tables["paired"]
    if p.empty:
        return lines
    out = []
    for measure, what in (("accuracy", "plain test accuracy"), ("drop", "drop on `bandlimit_4k`")):
        rows = p[(p["measure"] == measure) & (p["view"] == "audio")]
        if measure == "drop":
            rows = rows[rows["test_set"] == "bandlimit_4k"]
        for r in rows.itertuples():
            if r.n >= 2:
                out.append(f"{r.variant} vs defaults, {r.method} ({r.view}), {what}: {format_diff(r._asdict())}")
    lines += ["Paired by seed (each variant minus the defaults, paired t-test):", ""] + [f"- {o}" for o in out] + [""]
    # the targets of issue 9, checked against the numbers above
    lines += [f"- {s}" for s in _bandlimit_target(d) + _audio_vs_audit(d, audit_full)] + [""]
    return lines


def _bandlimit_target(d: pd.DataFrame) -> list[str]:
    """Target: with the default mitigations the band-limit counterfactual costs every audio model < 2 points."""
    runs = counterfactual_table(primary_protocols(d[d["accuracy"].notna()]))
    runs = runs[(runs["view"] == "audio") & (runs["test_set"] == "bandlimit_4k")]
    out = []
    for variant in ("defaults", "sample_rate=16000"):
        r = runs[runs["variant"] == variant]
        if r.empty:
            continue
        s = summarise(r, by=["method"], metric="drop")
        worst = s.sort_values("mean").iloc[0]
        met = bool((s["mean"] > -0.02).all())
        out.append(f"Band-limit drop of the audio models with {variant}: worst {worst['method']} "
                   f"{format_ci(worst['mean'], worst['lo'], worst['hi'], worst['n'])}; target (< 2 points for every audio "
                   f"model) {'met' if met else 'missed'}"
                   + (" (at 8 kHz a 4 kHz band limit is the Nyquist frequency and removes almost nothing, so this "
                      "check is weak by construction; the 16 kHz variant shows what the common bandwidth protects "
                      "against)" if variant == "defaults" and MITIGATIONS["sample_rate"] <= 8000 else "") + ".")
    return out


def _audio_vs_audit(d: pd.DataFrame, audit_full: pd.DataFrame) -> list[str]:
    """Target: the audio models stay above the metadata-only classifier by a clear margin."""
    if audit_full.empty:
        return []
    a = audit_full[(audit_full["modality"] == "audio") & (audit_full["classifier"] != "majority")]
    test = primary_protocols(d[(d["test_set"] == "test") & (d["view"] == "audio") & (d["variant"] == "defaults")])
    if a.empty or test.empty:
        return []
    top = a.sort_values("mean", ascending=False).iloc[0]
    s = summarise(test, by=["method", "protocol"], metric="accuracy").sort_values("mean", ascending=False)
    above = s[s["lo"] > top["hi"]]
    return [f"Audio models (defaults) against the metadata-only {top['classifier']} on the same test clips "
            f"({format_ci(top['mean'], top['lo'], top['hi'], top['n'])}): "
            + "; ".join(f"{r['method']} {format_ci(r['mean'], r['lo'], r['hi'], r['n'])}" for _, r in s.iterrows())
            + f". Clearly above it (intervals apart): {', '.join(above['method']) or 'none'}."]


def _clear(folder: Path, suffix: str, prefixes=None) -> None:
    for path in folder.glob(f"*{suffix}"):
        if prefixes is None or path.name.startswith(prefixes):
            path.unlink(missing_ok=True)


def write_report(results_dir=RESULTS_DIR, html: bool = True) -> dict:
    """Aggregate every record under results_dir into summary.csv, figures/, notebooks/ and
    README.md; returns {"records", "rows", "figures", "notebooks", "readme"}."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    fig_dir, nb_dir = results_dir / "figures", results_dir / "notebooks"
    fig_dir.mkdir(exist_ok=True)
    _clear(fig_dir, ".png", FIGURE_PREFIXES)
    records = rec.load_records(results_dir)
    df = results_table(records)
    analysis = sorted({r.get("notebook", "?") for r in records if not isinstance(r.get("results"), list)})

    # summary.csv: every condition, every metric, over seeds
    parts = [summarise(df, metric=m) for m in METRICS if m in df and df[m].notna().any()]
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*condition_columns(df), "metric", "mean", "lo", "hi", "sd", "n"])
    rec.atomic_write_text(results_dir / "summary.csv", summary.to_csv(index=False))

    lines = ["# Menagerie results", "",
             "_Generated by `python -m helpers report` from the metrics records under "
             f"`{results_dir.name}/runs/`. Every number below is computed from those records; "
             "re-run the command after new runs._", ""]
    figures, notebooks, problems, blocks = [], {}, [], {}
    if html:
        notebooks, problems = _render_notebooks(results_dir, nb_dir)
    if df.empty:
        lines += ["## No results yet", "",
                  f"No metrics records with results were found under `{results_dir / 'runs'}`"
                  + (f" (only analysis records of {', '.join(analysis)})" if analysis else "") + ". "
                  "Run a notebook (e.g. `python -m helpers sweep params/noise_02.yaml --profile quick`) "
                  "and then `python -m helpers report` again.", ""]
    else:
        lines += _report_body(df, records, fig_dir, figures, blocks)
    perf = performance_lines(results_dir / "bench.json")
    if perf:
        blocks["performance"] = perf
        lines += ["## Performance (`results/bench.json`)", ""] + perf + [""]
    if analysis:
        lines += ["## Analysis notebooks", "", "Aggregate records (no result rows of their own): "
                  + ", ".join(f"`{a}`" for a in analysis) + ".", ""]
    if notebooks or problems:
        lines += ["## Executed notebooks", ""]
        lines += [f"- [{stem}](notebooks/{v['html']}) (from `{v['source']}`"
                  + ("" if v["ok"] else ", a failed or unfinished run") + ")" for stem, v in notebooks.items()]
        lines += [f"- could not render {p}" for p in problems] + [""]
    readme = rec.atomic_write_text(results_dir / "README.md", "\n".join(lines).rstrip() + "\n")
    return {"records": len(records), "rows": len(df), "figures": figures, "notebooks": sorted(notebooks),
            "readme": str(readme), "summary": str(results_dir / "summary.csv"), "blocks": blocks}


def performance_lines(bench_json: Path) -> list[str]:
    """The targets of a saved `python -m helpers bench --json` as a Markdown table, with the machine and
    its load (a loaded machine gives upper bounds); [] when there is no such file."""
    try:
        bench = json.loads(Path(bench_json).read_text(encoding="utf-8"))
        targets, machine, run = bench["targets"], bench["machine"], bench["bench"]
    except (OSError, ValueError, KeyError, TypeError):
        return []

    def value(t):
        v = t.get("measured")
        if v is None:
            return "not measured"
        return f"{v:.1%}" if t.get("unit") == "" and v <= 1 else f"{v:,.2f} {t.get('unit') or ''}".strip()
    rows = pd.DataFrame([{"what": t["what"], "target": t["target"], "measured": value(t),
                          "met": {True: "yes", False: "**no**", None: "–"}[t.get("met")]} for t in targets])
    return [f"Measured by `python -m helpers bench{' --quick' if run.get('quick') else ''} --json` on "
            f"{run.get('started_at', '?')[:10]}: {machine.get('cpu_model')}, {machine.get('cores')} cores, "
            f"{machine.get('device')}; load average {machine.get('load_avg_1m')} at the start and "
            f"{machine.get('load_avg_1m_end')} at the end (other work on the machine makes every time an upper "
            f"bound); the bench took {run.get('seconds')} s.", "", _md_table(rows, index=False)] + _bench_details(bench)


def _bench_details(bench: dict) -> list[str]:
    """Where the time goes, from the same bench JSON: the figures the README's explanations point at."""
    out = []
    runs, pipe = bench.get("runs") or {}, bench.get("pipeline") or {}
    pt = runs.get("pretraining") or {}
    if pt.get("breakdown_s"):
        out.append(f"- one pre-training run ({pt.get('epochs')} epochs): {pt.get('seconds')} s = "
                   + ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in pt["breakdown_s"].items()))
    if pipe.get("project") and pipe.get("plain"):
        out.append(f"- pipelines ({pipe.get('encoder')}, {pipe.get('epochs')} epoch(s)): project "
                   f"{pipe['project']['seconds']} s (prepare {pipe['project']['prepare_s']} s, train "
                   f"{pipe['project']['train_s']} s); plain {pipe['plain']['seconds']} s (data "
                   f"{pipe['plain']['data_s']} s, compute {pipe['plain']['compute_s']} s)")
    cases = (bench.get("throughput") or {}).get("cases") or {}
    if cases:
        out.append("- training steps, share of the matmul peak: " + "; ".join(
            f"{kind} " + ", ".join(f"{obj} {c['peak_fraction']:.0%}" for obj, c in objs.items()
                                  if c.get("peak_fraction") is not None) for kind, objs in cases.items()))
    nbs = [r for r in runs.get("notebooks") or [] if r.get("seconds")]
    if nbs:
        out.append("- notebooks at their defaults: " + ", ".join(f"{Path(r['notebook']).stem} {r['seconds']:.0f} s"
                                                                  for r in nbs))
    m = runs.get("full_study_measured") or {}
    if m.get("available"):
        out.append(f"- the committed full study: {m['wall_s'] / 60:.1f} min wall ({m['compute_s'] / 60:.1f} min of "
                   f"point time, {m['unique_points']} points{'' if m['complete'] else ', incomplete'}), "
                   f"{m['first_start'][:16]} to {m['last_end'][:16]}")
    so = runs.get("sweep_overhead") or {}
    if so.get("per_point_overhead_s") is not None:
        out.append(f"- sweep runner overhead per point (kernel start, papermill): {so['per_point_overhead_s']} s")
    return [""] + out if out else []


BLOCK = "<!-- {name}: generated by `python -m helpers report`; edits inside are overwritten -->"
BLOCK_END = "<!-- /{name} -->"


def update_readme_blocks(readme: Path, blocks: dict) -> list[str]:
    """Replace the text between each block's markers in `readme` (markers kept); returns the names replaced.
    A README without a block's markers is left as it is for that block."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    done = []
    for name, body in blocks.items():
        begin, end = BLOCK.format(name=name), BLOCK_END.format(name=name)
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            continue
        text = text[:i + len(begin)] + "\n" + "\n".join(body).strip() + "\n" + text[j:]
        done.append(name)
    if done:
        rec.atomic_write_text(readme, text)
    return done


def _report_body(df: pd.DataFrame, records, fig_dir: Path, figures: list, blocks: dict) -> list[str]:
    lines = []
    counts = df.drop_duplicates("run_dir").groupby("notebook").size() if "run_dir" in df else df.groupby("notebook").size()
    versions = sorted({v for v in df.get("code_version", pd.Series(dtype=object)).dropna()})
    lines += ["## What was run", "",
              _md_table(pd.DataFrame({"notebook": counts.index, "runs": counts.values,
                                      "seeds": [df[df["notebook"] == n]["seed"].nunique() if "seed" in df else 1
                                                for n in counts.index]}), index=False),
              f"Code versions among the records: {', '.join(f'`{v}`' for v in versions) or 'unknown'}"
              + (" — results from different code versions are mixed; re-run stale points with "
                 "`python -m helpers sweep`." if len(versions) > 1 else "."), ""]
    d, notes = main_settings(df)
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    # translation rows (judges, fill-missing, retrieval of translations) are not classifiers of the modality
    # they name: they get their own section, never the headline's rankings
    translation = d[d["notebook"] == TRANSLATION_NOTEBOOK]
    d = d[d["notebook"] != TRANSLATION_NOTEBOOK]
    cond = _headline_condition(d)
    where = ", ".join(f"{k}={v}" for k, v in cond.items()) or "all runs"

    findings = [f"- {f}" for f in _findings(d, cond)]
    lines += ["## Headline findings", ""] + findings + [""]

    test = d[d["test_set"] == "test"]
    lines += [f"## Accuracy and macro-F1 on the test split ({where})", "",
              "Mean over seeds with a 95% Student-t interval over seeds, and the number of seeds"
              + (" (with 2-3 seeds the t interval is wide and can reach past 0 or 1: more seeds narrow it)"
                 if test["seed"].nunique() < 4 else "") + ".", ""]
    head = _where(test, cond)
    for metric in ("accuracy", "macro_f1"):
        s = summarise(head[head[metric].notna()], by=["method", "protocol", "view"], metric=metric)
        lines += [f"**{metric}**", "", _md_table(ci_table(s, ["method", "protocol"], ["view"])), ""]
        if metric == "accuracy":
            blocks["results"] = [f"Test-split accuracy ({where}), every method and protocol: mean over seeds, "
                                 f"[95% t interval], (number of seeds); code version(s) {', '.join(versions)}.", "",
                                 _md_table(ci_table(s, ["method", "protocol"], ["view"])), "Headline findings:", "",
                                 *findings]
    fig = _headline_figure(head)
    if fig is not None:
        figures.append(_save(fig, fig_dir / "headline.png"))
        lines += [f"![headline accuracy](figures/{figures[-1]})", ""]

    for x, other in (("noise", "fraction"), ("fraction", "noise")):
        sl, fixed = _curve_slice(primary_protocols(test), x, other)
        if sl.empty:
            continue
        at = ", ".join(f"{k}={v}" for k, v in fixed.items())
        lines += [f"## Accuracy against {X_LABELS[x]}{' (' + at + ')' if at else ''}", ""]
        s = summarise(sl, by=["method", "protocol", "view", x], metric="accuracy")
        lines += [_md_table(ci_table(s, ["method", "protocol", "view"], [x])), ""]
        for metric in ("accuracy", "macro_f1"):
            fig = plot_curve(sl, x=x, metric=metric)
            figures.append(_save(fig, fig_dir / f"{metric}_vs_{x}.png"))
            lines += [f"![{metric} vs {x}](figures/{figures[-1]})", ""]

    retrieval = _where(d[d["protocol"] == "retrieval"], cond)
    if not retrieval.empty:
        parts = [summarise(retrieval, by=["method", "view"], metric=m) for m in ("recall_at_1", "recall_at_5", "mAP")]
        s = pd.concat(parts, ignore_index=True)
        lines += [f"## Cross-modal retrieval ({where})", "", _md_table(ci_table(s, ["method", "view"], ["metric"])), ""]
    if not translation.empty:
        lines += _translation_section(translation)
    lines += _clustering_section(records)

    # ---- shortcuts
    audit_full, audit_single = audit_tables([r for r in records if isinstance(r.get("audits"), dict)])
    drops_runs = counterfactual_table(_where(d, cond))
    drops = summarise(drops_runs, by=["method", "protocol", "view", "test_set"], metric="drop") \
        if not drops_runs.empty else pd.DataFrame()
    lines += ["## Shortcuts", ""]
    if not audit_full.empty:
        lines += ["Nuisance-only classifiers (notebook 02's audits: they see file/recording metadata such as "
                  "sample rate, duration, border colour, never the animal), test accuracy over seeds:", "",
                  _md_table(ci_table(audit_full, ["classifier"], ["modality"])), ""]
        top = audit_single[audit_single["feature"] != "majority"]
        top = top.sort_values("mean", ascending=False).groupby("modality").head(3)
        lines += ["Single nuisance feature groups (shallow tree), the three most predictive per modality:", "",
                  _md_table(ci_table(top, ["modality", "feature"], ["metric"])), ""]
    else:
        lines += ["_No audits in the records (notebook 02 writes them)._", ""]
    if not drops.empty:
        lines += [f"Counterfactual drops (accuracy on the changed test set minus on the plain one, same run; {where}):",
                  "", _md_table(ci_table(drops, ["method", "protocol", "view"], ["test_set"])), ""]
        fig = _drops_figure(drops)
        figures.append(_save(fig, fig_dir / "counterfactual_drops.png"))
        lines += [f"![counterfactual drops](figures/{figures[-1]})", ""]
    lines += [f"- {s}" for s in _shortcut_statements(d, audit_full, drops, cond)] + [""]
    variants = mitigation_variants(df)
    if not variants.empty:
        lines += _mitigation_section(variants, audit_full)
    return lines


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


def _clustering_section(records) -> list[str]:
    s = clustering_table(records)
    if s.empty:
        return []
    return ["## Feature spaces (notebook 08)", "",
            "K-means on each method's test embeddings with k = the number of classes: agreement of the clusters "
            "with the classes (NMI, ARI, purity) and cluster separation (silhouette); mean over seeds "
            "[95% t interval] (n). t-SNE maps, feature maps and confusion matrices are in the rendered notebook.", "",
            _md_table(ci_table(s, ["method", "view"], ["metric"])), ""]


def _translation_section(t: pd.DataFrame) -> list[str]:
    """Notebook 06: judges on real and translated test items, retrieval from translations, and filling a
    missing modality with its translation, at every training fraction; mean [95% t interval] (seeds)."""
    lines = ["## Translation (notebook 06)", "",
             "`judge`: classifiers trained on real data of the target modality (`real`: on real test items; "
             "`translator` and `mvae_cross`: on translated ones; `griffin_lim`: the translated mel turned into a "
             "waveform and back). Chance is 0.1.", ""]
    judge = t[t["protocol"] == "judge"]
    if not judge.empty:
        s = summarise(judge, by=["method", "view", "test_set", "fraction"], metric="accuracy")
        lines += [_md_table(ci_table(s, ["method", "view", "test_set"], ["fraction"])), ""]
    retrieval = t[t["protocol"] == "retrieval"]
    if not retrieval.empty:
        s = pd.concat([summarise(retrieval, by=["method", "view", "test_set"], metric=m)
                       for m in ("recall_at_1", "mAP")], ignore_index=True)
        lines += ["Retrieval of real same-class items from translated ones:", "",
                  _md_table(ci_table(s, ["method", "view", "test_set"], ["metric"])), ""]
    fill = t[t["protocol"] == "fill_missing"]
    if not fill.empty:
        s = summarise(fill, by=["method", "view", "fraction"], metric="accuracy")
        lines += ["One modality missing at test time (`view` a->b: b is missing and filled from a): `single` uses "
                  "the available modality alone, `translator` / `mvae_cross` fuse it with the translation, "
                  "`both_real` has both real (the ceiling). Accuracy by training fraction:", "",
                  _md_table(ci_table(s, ["method", "view"], ["fraction"])), ""]
        c = compare_methods(fill, {"method": "translator"}, {"method": "single"}, over=["view", "fraction"],
                            match=["seed", "fraction"])
        lines += [f"- {r}" for r in c["statement"]] + [""]
    return lines


def _headline_figure(head: pd.DataFrame):
    d = primary_protocols(head[head["accuracy"].notna()])
    if d.empty:
        return None
    s = summarise(d, by=["method", "protocol", "view"], metric="accuracy")
    views = [v for v in VIEW_ORDER if v in set(s["view"])]
    fig, axes = _new_figure(len(views), width=3.6, height=max(2.2, 0.3 * s.groupby("view").size().max() + 1.2),
                            sharey=False)
    for ax, view in zip(axes, views):
        sv = s[s["view"] == view].sort_values("mean")
        lo, hi = sv["lo"].clip(0, 1), sv["hi"].clip(0, 1)  # the metric lives in [0, 1]; a 2-seed t interval may not
        err = np.vstack([sv["mean"] - lo, hi - sv["mean"]])
        ax.barh(sv["method"], sv["mean"], xerr=err, color="tab:blue", alpha=0.75, capsize=3)
        ax.set_title(f"view: {view}")
        ax.set_xlabel("accuracy (test)")
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Test accuracy: mean over seeds and 95% t-interval (clipped to [0, 1])")
    return fig


def _drops_figure(drops: pd.DataFrame):
    drops = primary_protocols(drops)
    sets = sorted(set(drops["test_set"]))
    fig, axes = _new_figure(len(sets), width=3.6, height=max(2.2, 0.26 * drops.groupby("test_set").size().max() + 1),
                            sharey=False, max_cols=3)
    for ax, ts in zip(axes, sets):
        sv = drops[drops["test_set"] == ts].sort_values("mean")
        labels = [f"{m} ({v})" for m, v in zip(sv["method"], sv["view"])]
        err = np.vstack([sv["mean"] - sv["lo"], sv["hi"] - sv["mean"]])
        ax.barh(labels, sv["mean"], xerr=err, color="tab:red", alpha=0.7, capsize=2)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(ts, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("accuracy change")
    fig.suptitle("Counterfactual drops: mean over seeds and 95% t-interval")
    return fig


# ---------------------------------------------------------------------------- analysis notebooks

def resolve_results_dir(results_dir) -> Path:
    """The results folder a notebook parameter names: "" or "results" is helpers.config.RESULTS_DIR
    (results/, or $STUDY_RESULTS when set, as in the tests); another relative path is taken from
    the repository root (a notebook's working directory may be notebooks/)."""
    from .config import REPO_ROOT
    if not results_dir or str(results_dir).rstrip("/") == "results":
        return RESULTS_DIR
    path = Path(results_dir).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def run_missing_points(notebook, points, results_dir, timeout=None) -> pd.DataFrame:
    """Run each point that has no record, the way helpers.sweeps does (same run folders, the same
    point locks, so a concurrent sweep never runs a point twice at once; a point whose folder holds
    an error.txt is left alone). Unlike `python -m helpers sweep`, points recorded by an older
    code version are not re-run: an analysis notebook fills gaps, a sweep refreshes.
    One row per point run: the parameters, status, seconds, run_dir, error."""
    import time

    from . import sweeps
    rows = []
    for point in points:
        run_dir = rec.default_run_dir(Path(notebook).stem, point, results_dir).resolve()
        while not sweeps.try_lock(run_dir):  # another sweep runs this point: wait for it
            time.sleep(sweeps.POLL_S)
        try:
            record = rec.read_record(run_dir)
            if record is not None and rec.params_match(record.get("params") or {}, point):
                row = {"status": "done", "seconds": None, "run_dir": str(run_dir), "error": None}
            elif (run_dir / sweeps.ERROR_NAME).exists():
                row = {"status": "skipped_failed", "seconds": None, "run_dir": str(run_dir),
                       "error": sweeps._first_line(run_dir / sweeps.ERROR_NAME)}
            else:
                row = sweeps.run_point(notebook, point, run_dir, timeout=timeout)
        finally:
            sweeps.release_lock(run_dir)
        rows.append({**point, **{k: row.get(k) for k in ("status", "seconds", "run_dir", "error")}})
    return pd.DataFrame(rows)


def collect_grid(grid, profile: str = "quick", results_dir=RESULTS_DIR, run_missing: bool = False) -> dict:
    """The records of a grid's points (read from their run folders); with run_missing, first run
    the points that have no record (run_missing_points).

    A record counts when its parameters match the point, whatever code version made it: re-run
    stale points with `python -m helpers sweep GRID --profile ...`. Returns {"grid", "notebook",
    "points", "records", "missing" (points without a record), "failed" (run folders with
    error.txt and their first line), "ran" (True if points were run), "sweep" (their table or
    None)}. Raises StudyError when the grid or its notebook does not exist.
    """
    from . import sweeps
    results_dir = resolve_results_dir(results_dir)
    notebook, points = sweeps.load_grid(grid, profile)

    def read():
        found, missing, failed = [], [], []
        for point in points:
            run_dir = rec.default_run_dir(notebook.stem, point, results_dir)
            record = rec.read_record(run_dir)
            if record is not None and isinstance(record.get("params"), dict) and rec.params_match(record["params"], point):
                found.append({**record, "run_dir": str(run_dir)})
            else:
                missing.append(point)
                error = run_dir / sweeps.ERROR_NAME
                if error.exists():
                    failed.append({"run_dir": str(run_dir), "error": sweeps._first_line(error)})
        return found, missing, failed

    found, missing, failed = read()
    table = None
    if missing and run_missing:
        import time
        start = time.perf_counter()
        table = run_missing_points(notebook, missing, results_dir)
        table.attrs["seconds"] = time.perf_counter() - start
        found, missing, failed = read()
    return {"grid": str(grid), "notebook": notebook.stem, "points": points, "records": found, "missing": missing,
            "failed": failed, "ran": table is not None, "sweep": table}


def collect_grids(grids, profile: str = "quick", results_dir=RESULTS_DIR, run_missing: bool = False
                  ) -> tuple[list[dict], pd.DataFrame]:
    """collect_grid for several grids; a grid whose notebook or file does not exist yet is reported,
    not raised. Returns (all records, one status row per grid)."""
    all_records, status = [], []
    for grid in grids:
        try:
            got = collect_grid(grid, profile, results_dir, run_missing)
        except StudyError as e:
            status.append({"grid": grid, "notebook": None, "points": 0, "records": 0, "missing": None,
                           "failed": None, "ran_points": 0, "note": f"skipped: {e}"})
            continue
        all_records += got["records"]
        seconds = got["sweep"].attrs.get("seconds") if got["sweep"] is not None else None
        note = "; ".join(f"{Path(f['run_dir']).name}: {f['error']}" for f in got["failed"][:3])
        status.append({"grid": grid, "notebook": got["notebook"], "points": len(got["points"]),
                       "records": len(got["records"]), "missing": len(got["missing"]), "failed": len(got["failed"]),
                       "ran_points": 0 if got["sweep"] is None else int((got["sweep"]["status"] == "ran").sum()),
                       "run_seconds": None if seconds is None else round(seconds, 1),
                       "code_versions": ",".join(sorted({str(r.get("code_version")) for r in got["records"]})),
                       "note": note})
    return all_records, pd.DataFrame(status)


# ---------------------------------------------------------------------------- effects of an axis

def _run_keys(df: pd.DataFrame, axis: str, metric: str) -> list[str]:
    skip = {axis, *METRICS, metric, "n", "n_queries", *BOOKKEEPING}
    return [c for c in df if c not in skip and not c.startswith(("n_train_", "noise_achieved_"))]


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
    return _sorted(pd.DataFrame(rows), ["method", "protocol", "view", axis]) if rows else pd.DataFrame()


def format_diff(row, digits: int = 3) -> str:
    """"+0.012 [-0.004, +0.028], n=5, p=0.12" from a compare_methods / effect_table row."""
    text = f"{row['mean_diff']:+.{digits}f}"
    if row["n"] >= 2 and row["ci_lo"] is not None and not pd.isna(row["ci_lo"]):
        text += f" [{row['ci_lo']:+.{digits}f}, {row['ci_hi']:+.{digits}f}], n={int(row['n'])}"
        if row.get("p_value") is not None and not pd.isna(row.get("p_value")):
            text += f", p={row['p_value']:.2g}"
    else:
        text += f" (n={int(row['n'])}, no interval)"
    return text


def plot_learning_curves(df: pd.DataFrame, fits: pd.DataFrame, metric: str = "accuracy", test_set: str = "test",
                         target=None, title: str | None = None):
    """Points (mean over seeds per training-set size, with t intervals) and the fitted curves of
    learning_curves(df) against training items, one panel per view; dashed beyond the data."""
    views = [v for v in VIEW_ORDER if "view" in fits and v in set(fits["view"])]
    fig, axes = _new_figure(max(len(views), 1))
    if fits.empty or not views:
        axes[0].text(0.5, 0.5, "no learning curves to plot", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return fig
    d = df[(df["test_set"] == test_set) & df[metric].notna()] if "test_set" in df else df[df[metric].notna()]
    d = d.assign(n_train=np.where(d["view"] == "image", d.get("n_train_image", np.nan), d.get("n_train_audio", np.nan)))
    import matplotlib
    colours = matplotlib.colormaps["tab10"]
    methods = sorted(set(fits["method"]))
    for ax, view in zip(axes, views):
        for _, row in fits[fits["view"] == view].iterrows():
            colour = colours(methods.index(row["method"]) % 10)
            pts = d[(d["method"] == row["method"]) & (d["protocol"] == row["protocol"]) & (d["view"] == view)]
            s = summarise(pts, by=["n_train"], metric=metric)
            ax.errorbar(s["n_train"], s["mean"], yerr=[s["mean"] - s["lo"], s["hi"] - s["mean"]], fmt="o",
                        color=colour, capsize=3, label=f"{row['method']} ({row['protocol']})")
            fit = row["fit"]
            if fit.ok:
                inside = np.linspace(fit.x_min, fit.x_max, 50)
                beyond = np.linspace(fit.x_max, fit.x_max * 3, 50)
                ax.plot(inside, fit.predict(inside), color=colour)
                ax.plot(beyond, fit.predict(beyond), color=colour, linestyle="--", alpha=0.6)
        if target is not None:
            ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter
        ticks = sorted(set(d.loc[d["view"] == view, "n_train"].dropna().astype(int)))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"view: {view}")
        ax.set_xlabel("training items (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"{metric} ({test_set} set)")
    fig.suptitle(title or f"{metric} = a - b·n^-c fitted per method; dashed: extrapolation")
    return fig


def main(argv=None) -> int:
    """`python -m helpers report [--results results] [--no-html]`."""
    parser = argparse.ArgumentParser(prog="python -m helpers report",
                                     description="Aggregate metrics records into summary.csv, figures and README.md.")
    parser.add_argument("--results", default=str(RESULTS_DIR), help="results folder (default: results/)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML renderings of executed notebooks")
    parser.add_argument("--readme", default=None,
                        help="README whose generated blocks (results, performance) to refresh; default: the "
                             "repository's README.md when --results is the default folder")
    args = parser.parse_args(argv)
    out = write_report(args.results, html=not args.no_html)
    readme = args.readme or (REPO_ROOT / "README.md" if Path(args.results).resolve() == RESULTS_DIR.resolve() else None)
    if readme and Path(readme).is_file():
        done = update_readme_blocks(readme, out["blocks"])
        if done:
            print(f"refreshed {', '.join(done)} in {readme}")
    if out["rows"] == 0:
        print(f"no result records under {Path(args.results) / 'runs'}; wrote an empty report to {out['readme']}")
    else:
        print(f"{out['records']} records, {out['rows']} result rows -> {out['summary']}, "
              f"{len(out['figures'])} figures, {len(out['notebooks'])} notebook pages, {out['readme']}")
    return 0
