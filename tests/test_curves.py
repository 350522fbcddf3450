"""helpers.curves: the learning-curve fit on known curves, its inverse, and one fit per method of fake records."""
import math

import numpy as np
import pandas as pd
import pytest
from fake_records import write_study

from helpers import curves, records, tables


def test_learning_curve_recovers_known_parameters():
    n = np.array([40, 80, 160, 320, 640, 1280], dtype=float)
    fit = curves.fit_learning_curve(n, 0.9 - 2.0 * n ** -0.5)
    assert fit.ok and not fit.c_fixed
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.9, 2.0, 0.5), rel=1e-3)
    # three x values, seeds scattered symmetrically around the curve
    x = np.repeat([0.2, 0.5, 0.8], 3)
    y = 0.85 - 0.1 * x ** -1.0 + np.tile([-0.01, 0.0, 0.01], 3)
    fit = curves.fit_learning_curve(x, y)
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.85, 0.1, 1.0), rel=1e-3)
    need = curves.data_needed(fit, 0.6)
    assert fit.predict(need) == pytest.approx(0.6) and need == pytest.approx(0.4)
    assert curves.data_needed(fit, 0.9) == math.inf
    # two x values: c fixed, still exact through the means; one x value: no fit
    two = curves.fit_learning_curve([100, 100, 400], [0.6, 0.6, 0.7])
    assert two.c_fixed and two.ok and two.predict(100) == pytest.approx(0.6) and two.predict(400) == pytest.approx(0.7)
    one = curves.fit_learning_curve([100, 100], [0.5, 0.6])
    assert not one.ok and math.isnan(curves.data_needed(one, 0.5))
    # the asymptote is capped at a_max
    capped = curves.fit_learning_curve([10, 20, 40], [0.5, 0.9, 0.99])
    assert capped.ok and capped.a == pytest.approx(1.0)
    assert curves.fit_learning_curve([10, 20, 40], [0.5, 0.9, 0.99], a_max=0.95).a == pytest.approx(0.95)


def test_learning_curves_per_method(tmp_path):
    df = tables.results_table(records.load_records(write_study(tmp_path / "results")))
    fits = curves.learning_curves(df[df["noise"] == 0.0], x="fraction")
    row = fits[(fits["method"] == "image") & (fits["view"] == "image")].iloc[0]
    assert row["n_x"] == 2 and row["c_fixed"] and row["fit"].predict(0.8) == pytest.approx(0.61)
    by_items = curves.learning_curves(df[df["noise"] == 0.0])
    assert by_items.loc[by_items["view"] == "image", "x_max"].max() == 520  # n_train_image at 0.8
    assert by_items.loc[by_items["view"] == "audio", "x_max"].max() == 480  # n_train_audio at 0.8


def test_training_items_follow_the_view():
    d = pd.DataFrame({"view": ["image", "audio", "fused", "audio->image"], "n_train_image": [520] * 4,
                      "n_train_audio": [480] * 4})
    assert list(curves.training_items(d)) == [520, 480, 480, 480]
    assert np.isnan(curves.training_items(d.drop(columns="n_train_audio"))[1])


def test_an_asymptote_pinned_at_its_bound_is_said_not_to_level_off():
    x = np.array([100, 250, 400] * 2, float)
    rising = curves.fit_learning_curve(x, 1.2 - 3.0 * x ** -0.3)          # would level off above 1: pinned at 1
    assert rising.a_at_bound and rising.a == pytest.approx(1.0)
    assert "sits at the bound 1.000" in curves.asymptote_text(rising)
    flat = curves.fit_learning_curve(x, 0.8 - 2.0 * x ** -0.7)
    assert not flat.a_at_bound and curves.asymptote_text(flat).startswith("its curve levels off near 0.8")


def test_items_needed_text_says_what_the_fit_supports():
    x = np.array([100, 250, 400], float)
    fit = curves.fit_learning_curve(x, 0.8 - 2.0 * x ** -0.7)
    assert curves.items_needed_text(fit, 0.95, short=True).startswith("never")
    assert curves.items_needed_text(fit, 0.1, short=True) == "<= 100"
    inside = curves.items_needed_text(fit, float(fit.predict(300)))
    assert inside.startswith("about 30") and "extrapolation" not in inside
    beyond = curves.data_needed(fit, float(fit.predict(800)))
    assert beyond > 400 and "(extrapolated)" in curves.items_needed_text(fit, float(fit.predict(800)), short=True)
    assert "too far beyond" in curves.items_needed_text(fit, float(fit.predict(40000)))
    one = curves.fit_learning_curve([100, 100], [0.5, 0.6])
    assert curves.items_needed_text(one, 0.5, short=True) == "no fit"
