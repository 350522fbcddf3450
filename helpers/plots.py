"""Figures the notebooks show: the data set, training curves, confusion matrices, counterfactual drops."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


def class_counts(dataset) -> plt.Figure:
    """Items per class and modality (the 8:1 imbalance of the clips is the first thing to see)."""
    df = pd.DataFrame({"clips": dataset.audio.counts(), "images": dataset.image.counts()})
    ax = df.plot.bar(figsize=(8, 3), rot=0, title="items per class")
    ax.set_ylabel("count")
    return ax.figure


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
    rates = pd.crosstab(meta.cls, pd.cut(meta.orig_sr, [0, 11025, 16000, 24000, 48000],
                                         labels=["<=11k", "16k", "22-24k", ">=32k"]), normalize="index")
    rates.plot.barh(stacked=True, ax=b, title="original sample rate by class (share of clips)")
    b.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def spectrograms(X: torch.Tensor, titles: list[str], sample_rate: int, ncols: int = 5) -> plt.Figure:
    """Log-mel spectrograms of a few clips."""
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


def counterfactual_bars(drops: pd.DataFrame) -> plt.Figure:
    """Accuracy change on each counterfactual test set, per model and view."""
    pivot = drops.assign(model=drops["method"] + "/" + drops["view"]).pivot_table(
        index="model", columns="test_set", values="drop")
    ax = pivot.plot.barh(figsize=(8, 0.45 * len(pivot) + 1.5), title="accuracy change vs plain test split")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("accuracy points (fraction)")
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax.figure
