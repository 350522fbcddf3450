"""Learning curves: acc = a - b * n**(-c) fitted to (training data, accuracy) points, inverted to
say how much data a method needs for an accuracy, and fitted per method and view of a results table.

    fit = fit_learning_curve(n_items, accuracies)    # LearningCurve(a, b, c, ...)
    data_needed(fit, 0.8)                            # items at which the curve reaches 0.8
    items_needed_text(fit, 0.8)                      # the same, said with what the fit can support
    learning_curves(df)                              # one fit per method / protocol / view
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .config import StudyError
from .tables import select, sort_table


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
    a_at_bound: bool = False  # True when a sits at its upper bound (a_max): the points do not show where it levels off

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
        return LearningCurve(a, b, C_DEFAULT, math.sqrt(sse / len(x)), c_fixed=True, ok=True,
                             a_at_bound=bool(a >= a_max - 1e-9), **common)
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
                         c_fixed=False, ok=True, a_at_bound=bool(a >= a_max - 1e-9), **common)


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


FAR_BEYOND = 10   # an inversion beyond this many times the largest training set run is no usable estimate


def asymptote_text(fit: LearningCurve) -> str:
    """Where the fitted curve levels off, or why the fit cannot say."""
    if not fit.ok:
        return "no curve could be fitted (one training-set size)"
    if fit.a_at_bound:
        return (f"its fitted asymptote sits at the bound {fit.a:.3f}: the points do not show where it levels off "
                "(still rising, or too few sizes)")
    return f"its curve levels off near {fit.a:.3f}"


def items_needed_text(fit: LearningCurve, target_accuracy: float, short: bool = False) -> str:
    """data_needed as text, with what the fit can support: reached already, an extrapolation, too far beyond the
    data, or never on the fitted curve. short=True for a table cell, else a phrase for a sentence."""
    value = data_needed(fit, target_accuracy)
    if math.isnan(value):
        return "no fit" if short else "no curve could be fitted (one training-set size)"
    if math.isinf(value):
        return f"never (a={fit.a:.2f})" if short else \
            f"not reached on the fitted curve, which levels off at {fit.a:.3f}"
    if value <= fit.x_min:
        return f"<= {fit.x_min:,.0f}" if short else \
            f"already reached with the smallest training set run ({fit.x_min:,.0f} items)"
    if value > FAR_BEYOND * fit.x_max:
        return f"> {FAR_BEYOND * fit.x_max:,.0f} (too far beyond the data)" if short else \
            (f"more than {FAR_BEYOND} times the largest training set run ({fit.x_max:,.0f} items) — too far beyond "
             "the data to be a usable estimate")
    beyond = value > fit.x_max * 1.001
    bound = fit.a_at_bound and beyond   # the extrapolation rests on an asymptote the points do not fix
    if short:
        return f"{value:,.0f}" + (" (extrapolated)" if beyond else "") + (" (asymptote at its bound)" if bound else "")
    return (f"about {value:,.0f} training items" + (" (an extrapolation beyond the largest training set)" if beyond
                                                    else "")
            + (", on a curve whose asymptote sits at its bound, so an optimistic guess" if bound else ""))


def training_items(df: pd.DataFrame) -> np.ndarray:
    """Per row, the training items of the view's modality: n_train_image for the image view, n_train_audio
    for the others (fused and cross-modal views: the pairs are built from the audio clips)."""
    image = df.get("n_train_image", pd.Series(np.nan, index=df.index))
    audio = df.get("n_train_audio", pd.Series(np.nan, index=df.index))
    return np.where(df["view"] == "image", image, audio)


def learning_curves(df: pd.DataFrame, x: str = "n_train", metric: str = "accuracy", by=("method", "protocol", "view"),
                    test_set: str = "test", **where) -> pd.DataFrame:
    """fit_learning_curve per group of `by` on one point per run; one row per group with the fit.

    x="n_train" uses the training items of the view's modality (training_items).
    """
    d = df[df[metric].notna()] if metric in df else df.iloc[0:0]
    if test_set is not None and "test_set" in d:
        d = d[d["test_set"] == test_set]
    if where:
        d = select(d, where)
    if x == "n_train" and not d.empty:
        if "n_train_audio" not in d and "n_train_image" not in d:
            raise StudyError("learning_curves: the records hold no split_sizes; use x='fraction'")
        d = d.assign(n_train=training_items(d))
    rows = []
    for key, group in d.groupby(list(by), dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        fit = fit_learning_curve(group[x], group[metric])
        rows.append({**dict(zip(by, key)), "x": x, **fit.as_dict(), "fit": fit})
    return sort_table(pd.DataFrame(rows), list(by)) if rows else pd.DataFrame(columns=[*by, "x", "fit"])
