"""Figures: the data set, training curves and confusion matrices the notebooks show, and the figures of
results tables that the analysis notebooks and the report share (curves over an axis with their
intervals, learning curves, the headline accuracies, counterfactual drops).

The results figures are matplotlib Figures made without pyplot (no global state; show one in a notebook
with display(fig)). Nothing here imports torch at import time: the report works without it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import StudyError
from .curves import training_items
from .items import item_summary
from .tables import METRICS, PROTOCOL_ORDER, VIEW_ORDER, X_LABELS, primary_protocols, select, summarise

if TYPE_CHECKING:
    import torch


def class_counts(dataset) -> plt.Figure:
    """Items per class and modality (the imbalance between the classes is the first thing to see)."""
    df = pd.DataFrame({"clips": dataset.audio.counts(), "images": dataset.image.counts()})
    ax = df.plot.bar(figsize=(8, 3), rot=0, title="items per class")
    ax.set_ylabel("count")
    return ax.figure


def sample_rate_bins(rates) -> pd.Series:
    """Each original sample rate's bin, named by the bin's edges (an 11127 Hz clip is not "16k"); the top bin is
    open, so no rate drops out of the shares."""
    return pd.cut(pd.Series(rates, dtype=float), [0, 11025, 16000, 24000, np.inf],
                  labels=["<=11.0k", "(11.0k, 16k]", "(16k, 24k]", ">24k"])


def durations_and_rates(dataset) -> plt.Figure:
    """Clip duration and original sample rate per class: each is a shortcut to the class."""
    meta = dataset.audio.meta.assign(cls=[dataset.classes[k] for k in dataset.audio.y])
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.5))
    groups = [meta.loc[meta.cls == c, "duration"].to_numpy() for c in dataset.classes]
    a.boxplot(groups, tick_labels=dataset.classes)
    a.set_yscale("log")
    a.set_ylabel("duration (s, log)")
    a.set_title("clip duration by class")
    a.tick_params(axis="x", rotation=45)
    rates = pd.crosstab(meta.cls, sample_rate_bins(meta.orig_sr), normalize="index")
    rates.plot.barh(stacked=True, ax=b, title="original sample rate by class (share of clips)")
    b.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def spectrograms(X: torch.Tensor, titles: list[str], sample_rate: int, ncols: int = 5) -> plt.Figure:
    """Log-mel spectrograms of a few clips."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=512, hop_length=160, n_mels=64)
    S = torch.log(mel(X.float()) + 1e-6)
    nrows = -(-len(X) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.2 * nrows), squeeze=False)
    for ax, s, t in zip(axes.flat, S, titles):
        ax.imshow(s.numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(t, fontsize=8)
        ax.axis("off")
    for ax in axes.flat[len(X):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def image_grid(X: torch.Tensor, titles: list[str] | None = None, ncols: int = 8) -> plt.Figure:
    """uint8 or float [N, 3, H, W] images in a grid."""
    import torch

    X = X.float() / 255 if X.dtype == torch.uint8 else X
    nrows = -(-len(X) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.6 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(X):
            ax.imshow(X[k].permute(1, 2, 0).clamp(0, 1).numpy())
            if titles:
                ax.set_title(titles[k], fontsize=7)
    fig.tight_layout()
    return fig


def training_curves(history: dict) -> plt.Figure:
    """Training loss and validation score per epoch for each model (the kept epoch marked)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3))
    for name, h in history.items():
        a.plot(h["train_loss"], label=name)
        if h["val_score"]:
            line, = b.plot(h["val_score"], label=name)
            b.plot(h["best_epoch"], h["val_score"][h["best_epoch"]], "o", color=line.get_color())
    a.set(title="training loss", xlabel="epoch")
    b.set(title="validation score (kept epoch marked)", xlabel="epoch")
    a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrices(details: dict, keys: list[str], classes: list[str]) -> plt.Figure:
    """Row-normalised confusion matrices side by side."""
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        C = np.asarray(details[key]["confusion"], dtype=float)
        C = C / np.maximum(C.sum(1, keepdims=True), 1)
        ax.imshow(C, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(key, fontsize=8)
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
        ax.set_yticks(range(len(classes)), classes, fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- figures of results tables

def _new_figure(npanels: int, width: float = 4.2, height: float = 3.4, sharey: bool = True, max_cols: int = 4):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in threads and scripts
    ncols = min(npanels, max_cols)
    nrows = -(-npanels // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel())
    for ax in axes[npanels:]:
        ax.set_axis_off()
    return fig, axes[:npanels]


def _summary(d: pd.DataFrame, records, by=(), metric: str = "accuracy", confidence: float = 0.95) -> pd.DataFrame:
    """Per method, protocol, view (and `by`): items.item_summary's interval over seeds and test items when every
    group has per-item predictions (accuracy, 95%: its only level), with its column interval; else summarise's
    t interval over seeds, without that column, so that one figure never mixes the two."""
    if records is not None and metric == "accuracy" and "run_dir" in d and confidence == 0.95:
        s = item_summary(d, records, by=list(by))
        if not s.empty and (s["interval"] == "items").all():
            return s
    return summarise(d, by=["method", "protocol", "view", *by], metric=metric, confidence=confidence)


def plot_curve(df: pd.DataFrame, x: str = "noise", metric: str = "accuracy", views=None, methods=None,
               protocol="primary", test_set: str = "test", confidence: float = 0.95, title: str | None = None,
               records=None, **where):
    """A matplotlib Figure: mean `metric` over seeds against `x`, with its interval as a band,
    one line per method (and protocol), one panel per view (audio, image, fused, ...).

    protocol: "primary" (one per method, see primary_protocols), None (all, each its own line),
    or a name / list of names. `where` filters rows first (e.g. fraction=0.8). With `records` (the runs' metrics
    records) accuracy bands cover the seeds and test items (items.item_summary), so a point of one
    seed has one too; without them, the t interval over seeds.
    """
    if x not in df:
        raise StudyError(f"plot_curve: no column {x!r}; the table has {list(df.columns)}")
    d = df[df[metric].notna()] if metric in df else df.iloc[0:0]
    if test_set is not None and "test_set" in d:
        d = d[d["test_set"] == test_set]
    if where:
        d = select(d, where)
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
    s = _summary(d, records, [x], metric, confidence)
    items = "interval" in s
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
    band = (_interval_caption(s["n"], confidence, s["interval"]) if items else
            _interval_caption(s["n"], confidence) + (clipped if s["n"].max() > 1 else ""))
    fig.suptitle(title or f"{metric} vs {X_LABELS.get(x, x)}: {band}")
    return fig


def _interval_caption(n, confidence: float = 0.95, interval=None) -> str:
    """What a plot's bands or error bars show, from the seeds per point (`n`) and, where given, each point's
    interval kind (items.item_summary's "items" or "t"): a t interval needs two seeds, an interval over test
    items does not."""
    kinds = pd.Series(interval if interval is not None else [], dtype=object)
    if len(kinds) and (kinds == "items").all():
        return f"mean over seeds, {confidence:.0%} interval over seeds and test items"
    if len(kinds) and (kinds == "items").any():
        return (f"mean over seeds, {confidence:.0%} interval over seeds and test items; methods marked "
                "(t): t interval over seeds")
    n = pd.Series(n).dropna()
    if n.empty or n.max() < 2:
        return "one seed per point: no interval over seeds is drawn"
    some = " (points with one seed have none)" if n.min() < 2 else ""
    return f"mean over seeds, {confidence:.0%} t-interval{some}"


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
    d = d.assign(n_train=training_items(d))
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
    seeds = summarise(d, by=["method", "protocol", "view", "n_train"], metric=metric)["n"] if not d.empty else []
    fig.suptitle(title or f"{metric} = a - b·n^-c fitted per method; dashed: extrapolation; points: "
                 f"{_interval_caption(seeds)}")
    return fig


def headline_figure(head: pd.DataFrame, records=None):
    """Test accuracy per method (primary protocol), one panel per view: mean over seeds and 95% interval (with
    `records`, the interval over seeds and test items; else the t interval over seeds); None when there is no
    accuracy to show."""
    d = primary_protocols(head[head["accuracy"].notna()])
    if d.empty:
        return None
    s = _summary(d, records)
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
    kind = s.get("interval")
    fig.suptitle(f"Test accuracy: {_interval_caption(s['n'], interval=kind)}"
                 + (" (clipped to [0, 1])" if kind is None and s["n"].max() > 1 else ""))
    return fig


def counterfactual_bars(drops: pd.DataFrame):
    """Accuracy change on each counterfactual test set (one panel per test set), per method and view, each
    method with its primary protocol; bars are means over seeds with their 95% t interval.

    drops: counterfactual_drops rows (one per run: summarised here) or their summarise(..., metric="drop")."""
    if "mean" not in drops:
        drops = summarise(drops, by=["method", "protocol", "view", "test_set"], metric="drop")
    drops = primary_protocols(drops)
    if drops.empty:
        fig, axes = _new_figure(1)
        axes[0].text(0.5, 0.5, "no counterfactual results to plot", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return fig
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
    fig.suptitle("Counterfactual drops: accuracy on the changed test set minus on the plain one; "
                 + _interval_caption(drops["n"], interval=drops.get("interval")))
    return fig
