"""Did a model learn the animal or the recording source? The tables of the checks that travel with every
result: counterfactual drops, accuracy on the independent external data, the metadata-only audits, and the
shortcut mitigations switched off one at a time."""
from __future__ import annotations

import pandas as pd

from . import schema
from .config import StudyError
from .items import correct_by_seed, drop_by_seed, item_summary, paired_items
from .tables import (AXES, CLASSIFYING, METRICS, ci_table, compare_methods, headline_condition, param_columns,
                     primary_protocols, select, summarise)

# Shortcut mitigations and their defaults (helpers.schema); params/mitigations_02.yaml switches each off in turn.
MITIGATIONS = {name: schema.PARAMS[name].default for name in ("sample_rate", "normalize_loudness", "random_crop",
                                                              "augment", "audio_augment")}
MITIGATION_OFF = {"sample_rate": 16000, "normalize_loudness": False, "random_crop": False, "augment": False,
                  "audio_augment": False}
# Training recipes and the study's choice of each (notebook 02's stored values, helpers.schema); params/recipes_02.yaml
# departs from one at a time.
RECIPES = {name: schema.param("02_baselines", name).default for name in ("mix", "spec_augment", "image_size",
                                                                     "decay_epochs", "patience", "val_window")}
# The audio counterfactual test sets: the names of helpers.shortcuts.AUDIO_COUNTERFACTUALS, repeated here
# because shortcuts imports torch (a test checks they agree).
AUDIO_TEST_SETS = ("bandlimit_4k", "bandlimit_2k", "telephone_band", "mu_law_8bit", "noise_10db", "reverb_0.5s",
                   "quieter_12db", "cut_1s")
IMAGE_VIEWS = ("image", "image_on_pairs")    # views that only the image half of a model scores
FUSED_VIEWS = ("fused", "fused_stacked")     # views that read both modalities


def _against_plain(results, external: bool) -> pd.DataFrame:
    """Rows of the other test sets (the counterfactuals, or the external data) beside the same run's
    plain-test accuracy: the identifying columns, test_set, plain, accuracy, drop (and n, chance levels)."""
    df = pd.DataFrame(results.get("results") or []) if isinstance(results, dict) else results
    columns = ["method", "protocol", "view", "test_set", "plain", "accuracy", "drop"]
    if df.empty or "test_set" not in df or "accuracy" not in df:
        return pd.DataFrame(columns=columns)
    d = df[df["protocol"].isin(CLASSIFYING) & df["accuracy"].notna()]
    ident = [c for c in d if c not in ("test_set", *METRICS, "n", "n_queries", "val_accuracy")
             and not c.startswith(("noise_achieved_", "chance_"))]
    plain = d[d["test_set"] == "test"][ident + ["accuracy"]].rename(columns={"accuracy": "plain"})
    other = d[d["test_set"] == "external"] if external else d[~d["test_set"].isin(["test", "external"])]
    extra = [c for c in ("n", "chance_uniform", "chance_majority") if c in d] if external else []
    out = other[ident + ["test_set", "accuracy"] + extra].merge(plain, on=ident, how="inner")
    out = out.assign(drop=out["accuracy"] - out["plain"])
    return out[ident + ["test_set", "plain", "accuracy", "drop"] + extra].reset_index(drop=True)


def counterfactual_drops(results) -> pd.DataFrame:
    """Per run: accuracy on each counterfactual test set minus accuracy on the plain test split (same
    method, protocol, view and run), for the protocols that classify (CLASSIFYING).

    results: a results_table, or one metrics record (its "results" rows). Columns: the columns that
    identify the run and the row (method, protocol, view, the parameters, ...), test_set, plain,
    accuracy, drop. The external test set is not a counterfactual and is left out."""
    return _against_plain(results, external=False)


def external_drops(results) -> pd.DataFrame:
    """Per run: accuracy on the independent external data (other recording and photo sources, only the
    classes they share with the study) minus accuracy on the plain test split, with the external set's
    size and chance levels (uniform over its classes; its majority class)."""
    return _against_plain(results, external=True)


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


def _is_default(value, default) -> bool:
    """A parameter value equal to its default; absent (None, NaN: a notebook without the parameter) counts as
    the default, and a column with gaps holds integers as floats."""
    return value is None or (isinstance(value, float) and value != value) or value == default


def study_setting(runs) -> dict:
    """Each mitigation's and recipe's value in the study `runs` (a results table, or a list of run parameters):
    the schema's default where some run holds it or no run has the parameter, else (a study run by older code,
    before that default changed) the value most runs hold: params/mitigations_02.yaml and params/recipes_02.yaml
    depart from it one factor at a time, so they are the few. A study is read by its own setting."""
    if isinstance(runs, pd.DataFrame):
        runs = runs.drop_duplicates("run_dir") if "run_dir" in runs else runs
        runs = runs.to_dict("records")
    setting = {}
    for name, default in {**MITIGATIONS, **RECIPES}.items():
        values = pd.Series([p.get(name) for p in runs], dtype=object)
        values = values[[not _is_default(v, None) for v in values]]
        setting[name] = values.mode().iloc[0] if len(values) and not (values == default).any() else default
    return setting


def at_defaults(params: dict, setting: dict | None = None) -> bool:
    """Whether a run's parameters hold every mitigation and every recipe at the study's setting (study_setting;
    default: the schema's defaults), against which params/mitigations_02.yaml and params/recipes_02.yaml vary one
    factor at a time. An absent parameter counts as at the setting."""
    return all(_is_default(params.get(k), v) for k, v in (setting or {**MITIGATIONS, **RECIPES}).items())


def factor_variants(df: pd.DataFrame, factors: dict, all_off: dict | None = None) -> pd.DataFrame:
    """Rows of runs that differ from the study's setting in `factors` only, each labelled in a column
    "variant": "defaults", "name=value, ..." or, given `all_off`, "none" (every factor at its all_off value).
    Every other parameter is as in the most-run setting of the runs with every mitigation and recipe at its
    default, so a run of one family (a recipe) never counts as the defaults of another (the mitigations).
    Only notebooks with at least one such variant, at the headline condition (lowest noise, largest
    fraction); rows whose factor columns are absent count as defaults."""
    empty = df.iloc[0:0].assign(variant=pd.Series(dtype=object))
    if df.empty:
        return empty
    study = study_setting(df)
    factors = {name: study[name] for name in factors}
    d = df.copy()
    for name, default in factors.items():
        d[name] = d[name].where(d[name].notna(), default) if name in d else default

    def label(row):
        # a column with gaps turns 16000 into 16000.0: name the value as the grid file writes it
        row = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in row.items()}
        if all_off and all(row[k] == all_off[k] for k in factors):
            return "none"
        return ", ".join(f"{k}={row[k]}" for k, v in factors.items() if row[k] != v) or "defaults"
    d["variant"] = [label(r) for r in d[list(factors)].to_dict("records")]
    d = select(d, headline_condition(d))
    others = [c for c in param_columns(d) if c not in (*factors, "seed", "variant", *AXES)]
    keep = []
    for _, g in d.groupby("notebook", sort=True):
        setting = pd.Series([tuple(map(str, r)) for r in g[others].itertuples(index=False)], index=g.index)
        base = [at_defaults(r, study) for r in g[[c for c in study if c in g]].to_dict("records")]
        runs = g[base].drop_duplicates("run_dir") if "run_dir" in g else g[base]
        if runs.empty:
            continue
        g = g[setting == setting[runs.index].mode().iloc[0]]
        if g["variant"].nunique() > 1:
            keep.append(g)
    return pd.concat(keep) if keep else empty


def mitigation_variants(df: pd.DataFrame) -> pd.DataFrame:
    """factor_variants of the shortcut mitigations: "defaults", "sample_rate=16000", ..., or "none" (every
    mitigation off)."""
    return factor_variants(df, MITIGATIONS, MITIGATION_OFF)


def recipe_variants(df: pd.DataFrame) -> pd.DataFrame:
    """factor_variants of the training recipes (params/recipes_02.yaml): "defaults", "mix=mixup", ..."""
    return factor_variants(df, RECIPES)


def variant_order(variants, factors=tuple(MITIGATIONS)) -> list[str]:
    """Variant labels in reading order: "defaults" first, then one factor at a time in the order of `factors`
    (parameter names), then the rest ("none": every mitigation off) by name."""
    def rank(v):
        return next((i for i, k in enumerate(factors) if v.startswith(f"{k}=")), len(factors))
    return sorted(set(variants), key=lambda v: (v != "defaults", rank(v), v))


def variant_tables(d: pd.DataFrame, records=None, order=None) -> dict:
    """From mitigation_variants (or recipe_variants) rows, the variants in `order` (default: the mitigations'
    order, defaults first): "accuracy" (plain test split) and "drops" (counterfactual minus plain,
    same run), each method/protocol/view x variant with "mean [lo, hi] (n)"; "paired": every variant against
    the defaults per method/view. With `records` (their per-item predictions) the intervals cover the
    seeds and test items (items.seeds_and_items_interval) and "paired" compares item by item on the seeds both have (items.paired_items, McNemar
    for accuracy), so a variant run with one seed still has an interval and a test; without them, t intervals
    over seeds and paired t-tests (compare_methods rows)."""
    d = primary_protocols(d[d["accuracy"].notna()])
    test = d[d["test_set"] == "test"]
    order = list(order or variant_order(d["variant"]))
    drops_runs = counterfactual_drops(d)
    # a counterfactual of one modality says nothing about a model of the other
    audio_set = drops_runs["test_set"].isin(AUDIO_TEST_SETS)
    # (the image half of a fused model scored on the test pairs is an image model; the stacked fusion is fused)
    relevant = (drops_runs["view"].isin(FUSED_VIEWS) | ((drops_runs["view"] == "audio") & audio_set)
                | (drops_runs["view"].isin(IMAGE_VIEWS) & ~audio_set))
    drops_runs = drops_runs[relevant]
    if records:
        acc = item_summary(test, records, by=["variant"])
        drops = item_summary(drops_runs, records, by=["variant"], metric="drop")
    else:
        acc = summarise(test, by=["method", "protocol", "view", "variant"], metric="accuracy")
        drops = summarise(drops_runs, by=["method", "protocol", "view", "test_set", "variant"], metric="drop")
    paired = _paired_items(test, drops_runs, records, order) if records else pd.DataFrame()
    if paired.empty:   # no per-item predictions on both sides: paired by seed
        paired = _paired_by_seed(test, drops_runs, order)

    def wide(s, index):
        table = ci_table(s, index, ["variant"])
        return table[[v for v in order if v in table.columns]]
    return {"accuracy": wide(acc, ["method", "protocol", "view"]),
            "drops": wide(drops, ["method", "protocol", "view", "test_set"]), "paired": paired,
            "variants": order, "seeds": int(test["seed"].nunique()) if "seed" in test else 1}


def _paired_by_seed(test: pd.DataFrame, drops_runs: pd.DataFrame, order) -> pd.DataFrame:
    """Every variant minus the defaults, per method/protocol/view (and counterfactual, for drops), paired by
    seed: compare_methods rows with variant, measure and interval = "t"."""
    paired = []
    for variant in order[1:]:
        for metric, table in (("accuracy", test), ("drop", drops_runs.assign(accuracy=drops_runs["drop"]))):
            groups = ["method", "protocol", "view"] + (["test_set"] if metric == "drop" else [])
            c = compare_methods(table, {"variant": variant}, {"variant": "defaults"}, over=groups,
                                test_set=None if metric == "drop" else "test")
            paired.append(c.assign(variant=variant, measure=metric, interval="t"))
    return pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()


def _paired_items(test: pd.DataFrame, drops_runs: pd.DataFrame, records, order) -> pd.DataFrame:
    """Every variant minus the defaults, per method/protocol/view (and counterfactual, for drops), item by item
    on the seeds both have: compare_methods's columns a, b, n, seeds, mean_diff, ci_lo, ci_hi, p_value
    (McNemar per seed, the largest; accuracy only), plus items, discordant (items right on one side only, over
    the seeds; accuracy only), variant, measure and interval = "items"."""
    by_dir = {r.get("run_dir"): r for r in records}
    rows = []
    for measure, table in (("accuracy", test), ("drop", drops_runs)):
        keys = ["method", "protocol", "view"] + (["test_set"] if measure == "drop" else [])
        runs = {k: {v: [by_dir[r] for r in g["run_dir"].unique() if r in by_dir] for v, g in group.groupby("variant")}
                for k, group in table.groupby(keys, sort=False)}
        for key, by_variant in runs.items():
            row = dict(zip(keys, key))
            spec, test_set = {k: row[k] for k in ("method", "protocol", "view")}, row.get("test_set", "test")
            per_item = {v: (correct_by_seed(recs, spec, test_set) if measure == "accuracy" else
                            drop_by_seed(recs, spec, test_set)) for v, recs in by_variant.items()}
            for variant in order[1:]:
                if variant not in per_item or "defaults" not in per_item:
                    continue
                try:
                    c = paired_items(per_item[variant], per_item["defaults"])
                except StudyError:   # no seed with per-item predictions on both sides
                    continue
                rows.append({**row, "a": variant, "b": "defaults", "metric": measure, "n": c["seeds"],
                             "seeds": ",".join(map(str, c["seed_list"])), "items": c["items"],
                             "mean_diff": c["mean_diff"], "ci_lo": c["ci_lo"], "ci_hi": c["ci_hi"],
                             "p_value": c.get("mcnemar_p"), "discordant": c.get("a_only", 0) + c.get("b_only", 0)
                             if measure == "accuracy" else None, "variant": variant, "measure": measure,
                             "interval": "items"})
    return pd.DataFrame(rows)


def external_note(record: dict) -> str:
    """One paragraph on what a record's external data held and which counterfactuals could not be tested."""
    ext = record.get("external")
    if not ext:
        text = "No external data in this run (`external_data` is empty): transfer to other sources is not measured."
    else:
        parts = [f"{m}: {sum(ext[m].values())} items of {len(ext[m])} classes ({', '.join(ext[m])})"
                 for m in ("audio", "image") if ext.get(m)]
        unknown = {m: c for m, c in (ext.get("unknown_classes") or {}).items() if c}
        text = (f"External data `{ext['name']}`: " + "; ".join(parts) + "."
                + (f" Left out, not study classes: {unknown}." if unknown else ""))
    untestable = {m: names for m, names in (record.get("counterfactuals_not_testable") or {}).items() if names}
    if untestable:
        text += (" Counterfactuals not testable under these settings (the preprocessing undoes them, so no"
                 f" model's input changes): {untestable}.")
    return text
