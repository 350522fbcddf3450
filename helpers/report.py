"""The written report: `python -m helpers report [--results results]` aggregates whatever records exist
into results/summary.csv, results/figures/*.png, results/notebooks/<stem>.html and results/README.md,
and refreshes the generated blocks (results, performance) of the repository's README.md.

    write_report("results")                       # -> {"records", "rows", "figures", ..., "blocks"}
    update_readme_blocks("README.md", blocks)     # the text between each block's markers

The numbers come from helpers.tables, the figures from helpers.plots; every sentence of findings here is
computed from the records. Nothing here imports torch at import time; only the convergence table of records
with training histories reads helpers.training's schedule (torch).
"""
from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from . import records as rec, schema
from .evaluation import holm
from .items import (accuracy_interval, correct_by_seed, interval_text, item_comparison, item_effect, item_summary,
                    paired_items, statement as item_statement)
from .config import REPO_ROOT, RESULTS_DIR, StudyError
from .schema import MIN_STEPS_PER_EPOCH
from .plots import counterfactual_bars, headline_figure, plot_curve
from .readme import performance_lines, update_readme_blocks
from .tables import (AXES, METRICS, SMALL_MULTIMODAL, VIEW_ORDER, X_LABELS, ci_table, clustering_table, compare_methods,
                     condition_columns, convergence_table, effect_table, format_ci, format_diff, headline_condition,
                     param_columns, primary_protocols, results_table, select, summarise, target_rows,
                     temperature_table)
from .tables import md_table as _md_table
from .validity import (MITIGATIONS, RECIPES, at_defaults, audit_tables, counterfactual_drops, external_drops,
                      mitigation_variants, recipe_variants, study_setting, variant_order, variant_tables)

FIGURE_PREFIXES = ("accuracy_vs_", "macro_f1_vs_", "counterfactual_drops", "headline")
# Grids whose runs serve their own section only: the recipes grid draws seeds of its own (its defaults run beside
# its recipes, on one machine), so its runs stay out of the study's headline, curves and comparisons.
OWN_SECTION_GRIDS = ("recipes_02.yaml",)
TRANSLATION_NOTEBOOK = "06_translation"


# ---------------------------------------------------------------------------- the report

def _clear(folder: Path, suffix: str, prefixes=None) -> None:
    for path in folder.glob(f"*{suffix}"):
        if prefixes is None or path.name.startswith(prefixes):
            path.unlink(missing_ok=True)


def one_study(records: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The records of one code version, the one of the newest record with results (by written_at): a study is
    what one code computed, so a re-run in progress is reported alone, never averaged with the study it
    replaces. Analysis records (notebooks 05 and 07, which read the others) choose nothing: re-running one on a
    changed checkout must not hide the study it analyses. Returns (those records, {other code version: how many
    records were left out})."""
    made = [r for r in records if isinstance(r.get("results"), list)] or records
    if not made:
        return records, {}
    newest = max(made, key=lambda r: str(r.get("written_at") or "")).get("code_version")
    left_out = Counter(str(r.get("code_version")) for r in records if r.get("code_version") != newest)
    return [r for r in records if r.get("code_version") == newest], dict(left_out)


def write_report(results_dir=RESULTS_DIR, html: bool = True, all_versions: bool = False) -> dict:
    """Aggregate the records under results_dir into summary.csv, figures/, notebooks/ and README.md: those of
    the newest code version (`one_study`), or every record with all_versions; returns {"records", "rows",
    "figures", "notebooks", "readme", "left_out"}."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    fig_dir, nb_dir = results_dir / "figures", results_dir / "notebooks"
    fig_dir.mkdir(exist_ok=True)
    _clear(fig_dir, ".png", FIGURE_PREFIXES)
    records, left_out = rec.load_records(results_dir), {}
    if not all_versions:
        records, left_out = one_study(records)
    df = results_table(records)
    analysis = sorted({r.get("notebook", "?") for r in records if not isinstance(r.get("results"), list)})
    # the recipes grid's own seeds have a section of their own; the study's tables and summary.csv leave them out
    own = _own_section_runs(records)
    study = [r for r in records if str(r.get("run_dir")) not in own]
    study_df = results_table(study) if len(study) < len(records) else df

    # summary.csv: every condition of the study, every metric, over seeds
    parts = [summarise(study_df, metric=m) for m in METRICS if m in study_df and study_df[m].notna().any()]
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*condition_columns(df), "metric", "mean", "lo", "hi", "sd", "n"])
    rec.atomic_write_text(results_dir / "summary.csv", summary.to_csv(index=False))

    lines = ["# Menagerie results", "",
             "_Generated by `python -m helpers report` from the metrics records under "
             f"`{results_dir.name}/runs/`. Every number below is computed from those records; "
             "re-run the command after new runs._", ""]
    if left_out:
        lines += [f"Left out: {sum(left_out.values())} record(s) made by other code versions ("
                  + ", ".join(f"`{v}` {n}" for v, n in sorted(left_out.items()))
                  + "): an older study, or points not re-run yet. The report shows one code version; "
                  "`python -m helpers sweep` re-runs the missing points, `--all-versions` shows every record.", ""]
    figures, notebooks, problems, blocks = [], {}, [], {}
    if html:
        notebooks, problems = _render_notebooks(results_dir, nb_dir, None if all_versions else
                                                {str(r["run_dir"]) for r in records})
    else:   # not rendered now: the pages an earlier report rendered are still there, so keep listing them
        notebooks = {p.stem: {"html": p.name, "source": "rendered by an earlier report", "ok": True}
                     for p in sorted(nb_dir.glob("*.html"))}
    if df.empty:
        lines += ["## No results yet", "",
                  f"No metrics records with results were found under `{results_dir / 'runs'}`"
                  + (f" (only analysis records of {', '.join(analysis)})" if analysis else "") + ". "
                  "Run a notebook (e.g. `python -m helpers sweep params/noise_02.yaml --profile quick`) "
                  "and then `python -m helpers report` again.", ""]
    else:
        lines += _report_body(study_df, study, fig_dir, figures, blocks)
        lines += _recipes_section(df, records)
    wall = _study_wall_time(results_dir)
    if wall:
        lines += ["## Wall time of the full study", "", wall, ""]
        if "results" in blocks:
            blocks["results"] += ["", wall]
    lines += _reproduction_section(results_dir / "reproduction.json")
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
            "readme": str(readme), "summary": str(results_dir / "summary.csv"), "blocks": blocks,
            "left_out": left_out}


def _differing_models(items_differ: dict | None, most: int = 3) -> str:
    """The method/protocol/view of every prediction row with an item predicted otherwise, or how many."""
    models = sorted({key.rsplit("/", 1)[0] for key, n in (items_differ or {}).items() if n})
    if not models:
        return "none"
    return ", ".join(f"`{m}`" for m in models) if len(models) <= most else f"{len(models)} models"


def _reproduction_section(path: Path) -> list[str]:
    """The checks `python -m helpers reproduce --out` kept: committed points run again, compared row by row."""
    import json
    try:
        checks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    rows = []
    for check in checks if isinstance(checks, list) else []:
        for e in check.get("points") or []:
            ran = e.get("status") == "ran"
            models = e.get("cpu_models") or [None, None]
            rows.append({"checked": str(check.get("checked_at", ""))[:16], "grid": check.get("grid"),
                         "point": f"{e.get('point')} (seed {e.get('seed')})", "code": check.get("code_version"),
                         "CPU (committed / re-run)": f"{models[0] or 'not recorded'} / {models[1] or 'not recorded'}",
                         "threads": check.get("threads"), "status": e.get("status"),
                         "rows equal": f"{e['rows_equal']} of {e['rows']}" if ran else "–",
                         "rows on one side only (results / predictions)":
                             f"{e.get('rows_only_one_side', 0)} / {e.get('prediction_rows_only_one_side', 'not counted')}"
                             if ran else "–",
                         "predictions identical": f"{e['prediction_rows_identical']} of {e['prediction_rows']}"
                         if ran else "–",
                         "largest accuracy difference": f"{e['max_accuracy_diff']:.3f}"
                         if ran and e.get("max_accuracy_diff") is not None else "–",
                         "predictions differ in": _differing_models(e.get("items_differ")) if ran else "–"})
    if not rows:
        return []
    return ["## Reproduction (`python -m helpers reproduce`)", "",
            "Committed points run again from a checkout into a scratch folder, one torch thread per kernel as the "
            "study, each new record compared with the committed one: result rows with the same accuracy, and "
            "prediction rows (one per model and test set) with every item's predicted class the same. Records "
            "made before the CPU model was recorded do not say it (\"not recorded\"). Where the CPU model or the "
            "thread count differ, the kernels round differently and training goes elsewhere, as with another "
            "seed; where both are the same, every row that differs is a run that does not repeat on one machine "
            "(the rows the check names).", "",
            _md_table(pd.DataFrame(rows), index=False), ""]


def _code_now_sentence(versions) -> str:
    """" The code is now `X`: ..." when no record was made by the code of this checkout, else ""."""
    now = rec.code_version()
    if not versions or now in versions:
        return ""
    return (f" The code is now `{now}`: every number here was computed by the code version(s) above, not by "
            "this checkout's; `make study` re-runs the points.")


def _machines_sentence(records) -> str:
    """Which CPU models and torch thread counts made the records (older records do not say)."""
    made = Counter((str((r.get("environment") or {}).get("cpu_model") or "not recorded"),
                    str((r.get("environment") or {}).get("torch_threads") or "not recorded")) for r in records)
    return ("Machines that made the records (CPU model, torch threads: records): "
            + "; ".join(f"{cpu}, {threads}: {n}" for (cpu, threads), n in sorted(made.items()))
            + ". Runs paired by seed across CPU models differ by the machine too: its kernels round differently, "
              "and training goes elsewhere as with another seed.")


def _own_section_runs(records) -> set[str]:
    """The run folders of the records drawn at a seed that only OWN_SECTION_GRIDS' full profiles draw for their
    notebook (recipes_02 has seeds of its own). By seed, not by run folder: a run folder hashes every parameter,
    so after a grid file changes (its epochs, a default) the older study's runs would no longer be found."""
    from .collect import grid_seeds
    by_grid = grid_seeds()
    others = set().union(*(s for g, s in by_grid.items() if g not in OWN_SECTION_GRIDS))
    own = set().union(*(by_grid.get(g, set()) for g in OWN_SECTION_GRIDS)) - others
    return {str(r.get("run_dir")) for r in records
            if (r.get("notebook"), (r.get("params") or {}).get("seed")) in own}


def _study_wall_time(results_dir: Path) -> str:
    """One sentence: how many of the full profile's points this code has executed, and their wall time
    (collect.measured_study: from the records' own start and write times, else the executed notebooks). Where
    results/bench.json kept a measurement of more points (made by the code of then, whose records the current
    code and grid files no longer count as theirs), that one, said as such; "" when there is none."""
    import json
    from .collect import measured_study, points_at_once
    m_now = measured_study(results_dir, "full")
    m, kept = m_now, ""
    try:
        bench = json.loads((results_dir / "bench.json").read_text(encoding="utf-8"))
        stored = bench["runs"]["full_study_measured"]
        if stored.get("available") and stored.get("unique_points", 0) > (m.get("unique_points") or 0):
            m, kept = stored, str(bench["bench"]["started_at"])[:10]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if not m.get("available"):
        return ""
    at_once = points_at_once(m)
    grids = ", ".join(f"{g.removesuffix('.yaml')} {v['found']}/{v['points']}"
                      for g, v in (m.get("grids") or {}).items())
    timed = " and ".join({"record": "the records' start and write times",
                          "notebook": "the executed notebooks' papermill times"}[k] for k in m.get("timed_by") or
                         {"notebook": 1})
    what = (f"{m['unique_points']} distinct points ({'all' if m['complete'] else 'not all'} of every grid's: {grids}; "
            f"a point shared by two grids counts in both), {m['wall_s'] / 60:.1f} min wall (the union of their "
            f"intervals, from {timed}, {m['first_start'][:16]} to {m['last_end'][:16]}) and "
            f"{m['compute_s'] / 60:.1f} min of point time"
            + (f" ({at_once:.2f} points running at once on average: the cores' use)" if at_once else "")
            + ", on the machine that ran them.")
    if kept:
        return (f"As results/bench.json measured it on {kept}, the full profile's points executed by the code of then"
                f" (`{m.get('code_version', 'not recorded')}`; the current code, `{rec.code_version()}`, has executed "
                f"{m_now.get('unique_points', 0)} of the current grid files' points under this folder): {what}")
    return f"The full profile's points executed by the current code: {what}"


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
                 "`python -m helpers sweep`." if len(versions) > 1 else ".") + _code_now_sentence(versions),
              _machines_sentence(records), ""]
    d, notes = main_settings(df)
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    # translation rows (judges, fill-missing, retrieval of translations) are not classifiers of the modality
    # they name: they get their own section, never the headline's rankings
    translation = d[d["notebook"] == TRANSLATION_NOTEBOOK]
    d = d[d["notebook"] != TRANSLATION_NOTEBOOK]
    cond = headline_condition(d)
    where = ", ".join(f"{k}={v}" for k, v in cond.items()) or "all runs"

    findings = [f"- {f}" for f in _findings(d, cond, records)]
    lines += ["## Headline findings", ""] + findings + [""]

    test = d[d["test_set"] == "test"]
    lines += [f"## Accuracy and macro-F1 on the test split ({where})", "",
              "Mean over seeds with a 95% Student-t interval over seeds, and the number of seeds"
              + (" (with 2-3 seeds the t interval is wide and can reach past 0 or 1: more seeds narrow it)"
                 if test["seed"].nunique() < 4 else "") + ".", ""]
    head = select(test, cond)
    for metric in ("accuracy", "macro_f1"):
        s = summarise(head[head[metric].notna()], by=["method", "protocol", "view"], metric=metric)
        lines += [f"**{metric}**", "", _md_table(ci_table(s, ["method", "protocol"], ["view"])), ""]
    boot = item_summary(head, records)
    if not boot.empty:
        lines += ["**accuracy, 95% interval over seeds and test items** (two-level bootstrap: seeds, then items; "
                  "the interval to read when there are few seeds, and the only one with one seed; a method marked "
                  "(t): its records keep no per-item predictions, so its interval is the t interval over seeds)", "",
                  _md_table(ci_table(boot, ["method", "protocol"], ["view"])), ""]
    s = boot if not boot.empty else summarise(head[head["accuracy"].notna()], by=["method", "protocol", "view"])
    how = ("[95% bootstrap interval over seeds and test items; (t): t interval over seeds]" if not boot.empty
           else "[95% t interval over seeds]")
    blocks["results"] = [f"Test-split accuracy ({where}), every method and protocol: mean over seeds, {how}, "
                         f"(number of seeds); code version(s) {', '.join(versions)}.{_code_now_sentence(versions)}", "",
                         _md_table(ci_table(s, ["method", "protocol"], ["view"])), "Headline findings:", "", *findings]
    external = _external_section(d, records, cond, where)
    lines += external
    if len(external) > 3:   # the README's results block gets the external table too
        blocks["results"] += ["", *external[2:4]]
    fig = headline_figure(head)
    if fig is not None:
        figures.append(_save(fig, fig_dir / "headline.png"))
        lines += [f"![headline accuracy](figures/{figures[-1]})", ""]

    for x, other in (("noise", "fraction"), ("fraction", "noise")):
        sl, fixed = _curve_slice(primary_protocols(test), x, other)
        if sl.empty:
            continue
        at = ", ".join(f"{k}={v}" for k, v in fixed.items())
        lines += [f"## Accuracy against {X_LABELS[x]}{' (' + at + ')' if at else ''}", ""]
        s = item_summary(sl, records, by=[x])
        lines += ["Mean over seeds, [95% bootstrap interval over seeds and test items; (t): t interval over seeds "
                  "where the records keep no per-item predictions], (seeds):", "",
                  _md_table(ci_table(s, ["method", "protocol", "view"], [x])), ""]
        for metric in ("accuracy", "macro_f1"):
            fig = plot_curve(sl, x=x, metric=metric)
            figures.append(_save(fig, fig_dir / f"{metric}_vs_{x}.png"))
            lines += [f"![{metric} vs {x}](figures/{figures[-1]})", ""]

    retrieval = select(d[d["protocol"] == "retrieval"], cond)
    if not retrieval.empty:
        parts = [summarise(retrieval, by=["method", "view"], metric=m) for m in ("recall_at_1", "recall_at_5", "mAP")]
        s = pd.concat(parts, ignore_index=True)
        lines += [f"## Cross-modal retrieval ({where})", "", _md_table(ci_table(s, ["method", "view"], ["metric"])), ""]
    lines += _targets_section(pd.concat([select(d, cond), select(translation, cond)]), records, where)
    lines += _finetune_section(records)
    lines += _convergence_section(records)
    if not translation.empty:
        lines += _translation_section(translation)
    lines += _clustering_section(records)

    # ---- shortcuts
    audit_full, audit_single = audit_tables([r for r in records if isinstance(r.get("audits"), dict)])
    drops_runs = counterfactual_drops(select(d, cond))
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
        fig = counterfactual_bars(drops)
        figures.append(_save(fig, fig_dir / "counterfactual_drops.png"))
        lines += [f"![counterfactual drops](figures/{figures[-1]})", ""]
    lines += [f"- {s}" for s in _shortcut_statements(d, audit_full, drops, cond)] + [""]
    variants = mitigation_variants(df)
    if not variants.empty:
        lines += _mitigation_section(variants, audit_full, records)
    return lines


# ---------------------------------------------------------------------------- choosing what to show

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
                     f"{int(counts.iloc[1:].sum())} run(s) with other settings are not in its figures and findings "
                     "(summary.csv has them)")
    return pd.concat(keep), notes


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
    return select(d, cond), cond


# ---------------------------------------------------------------------------- findings

def _records_of(records, rows: pd.DataFrame) -> list:
    """The records of the runs that `rows` (results_table rows) come from; all of them when rows name no run."""
    if "run_dir" not in rows:
        return list(records)
    runs = {str(d) for d in rows["run_dir"]}
    return [r for r in records if str(r.get("run_dir")) in runs]


def _findings(d: pd.DataFrame, cond: dict, records=()) -> list[str]:
    """Headline findings, every number computed from the records."""
    out = []
    head = primary_protocols(select(d[d["test_set"] == "test"], cond))
    head = head[head["accuracy"].notna()]
    where = ", ".join(f"{k}={v}" for k, v in cond.items())
    if head.empty:
        return [f"No classification results on the plain test split at {where}."]
    s = summarise(head, by=["method", "protocol", "view"], metric="accuracy")
    # "best" is chosen on the validation part (mean validation accuracy over seeds), never on the test split;
    # rows without a validation score cannot be ranked and are listed after the ranked ones
    val = (head.groupby(["method", "protocol", "view"])["val_accuracy"].mean() if "val_accuracy" in head
           else pd.Series(dtype=float))
    s["val_mean"] = [val.get((r.method, r.protocol, r.view), math.nan) for r in s.itertuples()]
    for view in [v for v in VIEW_ORDER if v in set(s["view"])]:
        sv = s[s["view"] == view].sort_values("val_mean", ascending=False, na_position="last")
        top = sv.iloc[0]
        if pd.isna(top["val_mean"]):   # older records: nothing to choose by, and the test split is not for choosing
            out.append(f"**{view}** ({where}): no validation scores in these records, so no method is named best; "
                       "test accuracy: " + "; ".join(f"{r['method']} ({r['protocol']}) "
                                                     f"{format_ci(r['mean'], r['lo'], r['hi'], r['n'])}"
                                                     for _, r in sv.sort_values(["method", "protocol"]).iterrows())
                       + ".")
            continue
        text = (f"**{view}** ({where}): best on validation (accuracy {top['val_mean']:.3f} there) is {top['method']} "
                f"({top['protocol']}), test accuracy {format_ci(top['mean'], top['lo'], top['hi'], top['n'])}")
        if len(sv) > 1:
            second = sv.iloc[1]
            overlap = (top["n"] > 1 and second["n"] > 1 and second["hi"] >= top["lo"]
                       and top["hi"] >= second["lo"])
            text += (f"; next {second['method']} ({second['protocol']}) "
                     f"{format_ci(second['mean'], second['lo'], second['hi'], second['n'])}"
                     + (" — the intervals overlap, so the ranking of these two is not established."
                        if overlap else "."))
        out.append(text)

    def best_of(view, methods=None):
        sv = s[(s["view"] == view) & (s["method"].isin(methods) if methods is not None else True)]
        if sv.empty:
            return None
        top = sv.sort_values("val_mean", ascending=False, na_position="last").iloc[0]
        if pd.isna(top["val_mean"]):
            return None
        return {"method": top["method"], "protocol": top["protocol"], "view": view}

    pairs = []
    fused, image = best_of("fused"), best_of("image")
    if fused and image:
        # on the same items: fused is scored on the clip-indexed test pairs, image on the image test split
        on_pairs = {**image, "view": "image_on_pairs"}
        if ((d["method"] == image["method"]) & (d["view"] == "image_on_pairs")).any():
            pairs.append(("fusion vs the best image-only model, both on the test pairs", fused, on_pairs))
        else:
            pairs.append(("fusion vs the best image-only model (not the same test items)", fused, image))
    mm = best_of("image", SMALL_MULTIMODAL)
    if mm and (head["method"] == "imagenet").any():
        pairs.append(("best small multimodal model vs ImageNet EfficientNet-Lite0 (image view)", mm,
                      {"method": "imagenet", "protocol": "linear_probe", "view": "image"}))
    if mm and (head["method"] == "image").any():
        pairs.append(("best small multimodal model vs the image-only CNN (image view)", mm,
                      {"method": "image", "protocol": "supervised", "view": "image"}))
    tested = []
    # the item-level look-ups read the runs the seed-level test read, never another grid's variant of a seed
    in_table = _records_of(records, select(d, cond))
    for title, a, b in pairs:
        if a == b:
            continue
        try:
            c = compare_methods(select(d, cond), a, b).iloc[0]
        except (StudyError, IndexError) as e:
            out.append(f"{title}: not comparable ({e}).")
            continue
        text = f"{title}: {c['statement']}"
        try:   # the same comparison item by item, so the interval covers the test sample too
            text += "; item level: " + item_statement(item_comparison(in_table, a, b, where=cond))
        except StudyError as e:
            text += f"; item level: not available ({e})"
        out.append(text + ".")
        tested.append((title, None if pd.isna(c["cohens_dz"]) else c["p_value"]))   # no spread: no test
    if len(tested) > 1:
        adjusted = holm([p for _, p in tested])
        out.append(f"{len(tested)} comparisons above; Holm-adjusted paired t-test p-values: "
                   + "; ".join(f"{t}: {p:.3g}" if p is not None else f"{t}: n/a"
                               for (t, _), p in zip(tested, adjusted)) + ".")

    for x, other in (("noise", "fraction"), ("fraction", "noise")):
        dd, fixed = _curve_slice(d[d["test_set"] == "test"], x, other)
        effects = effect_table(dd, axis=x) if not dd.empty else pd.DataFrame()
        if effects.empty:
            continue
        extreme = effects[x].min() if x == "fraction" else effects[x].max()
        e = effects[effects[x] == extreme].sort_values("mean_diff")
        at = ", ".join(f"{k}={v}" for k, v in fixed.items())
        worst, best = e.iloc[0], e.iloc[-1]

        runs = set(dd["run_dir"]) if "run_dir" in dd else set()

        def say(r):
            text = f"{r['method']} ({r['protocol']}, {r['view']} view) {format_diff(r)}"
            spec = {"method": r["method"], "protocol": r["protocol"], "view": r["view"]}
            try:   # item by item, so the interval covers the test sample too (and exists with one seed)
                i = item_effect([rec_ for rec_ in records if rec_.get("run_dir") in runs], spec, x, extreme,
                                r["baseline"])
                text += ", item level " + interval_text(i)
            except StudyError:
                pass
            return text
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
        # every nuisance classifier is named: picking the strongest by its test mean would choose on test
        lo, hi = (others[c].fillna(others["mean"]) - a.loc["majority", "mean"] for c in ("lo", "hi"))
        verdict = ("well above chance: the label is partly predictable from recording/file metadata, so some "
                   "of the headline accuracy may come from these cues rather than the animal" if lo.max() > 0.1 else
                   "close to the majority-class rate: no strong metadata shortcut was found" if hi.max() <= 0.1 else
                   "an interval reaches more than 0.1 above the majority-class rate without lying wholly above "
                   "it: a metadata shortcut is possible, not established")
        reach = "; ".join(f"a {name} {format_ci(r['mean'], r['lo'], r['hi'], r['n'])}" for name, r in others.iterrows())
        out.append(f"{modality}: classifiers that see only nuisance features reach {reach}, against "
                   f"{a.loc['majority', 'mean']:.3f} for always guessing the majority class — {verdict}.")
    if not drops.empty:
        worst = drops.sort_values("mean").iloc[0]
        out.append(f"Largest counterfactual drop: {worst['method']} ({worst['protocol']}, {worst['view']} view) loses "
                   f"{-worst['mean']:.3f} accuracy on `{worst['test_set']}` "
                   f"({format_ci(worst['mean'], worst['lo'], worst['hi'], worst['n'])}). A large drop under a change "
                   "that keeps the animal (band limit, level, length, border, colour, compression) means the model "
                   "leans on that property.")
    head = d[(d["test_set"] == "test")]
    head = select(head, cond)
    if not head.empty and "n" in head:
        n_test = sorted({int(v) for v in head.loc[head["view"].isin(["audio", "image"]), "n"].dropna()})
        seeds = head["seed"].nunique() if "seed" in head else 1
        out.append(
            f"What the headline numbers show: accuracy on a fixed held-out split of this one collection "
            f"({', '.join(map(str, n_test)) or '?'} test items per modality), averaged over {seeds} seed(s) "
            f"(training subset, noisy labels and initialisation change with the seed; the test split does not). "
            f"A t interval over seeds leaves out test-set sampling error, which at this test size is itself several "
            f"accuracy points (binomial standard error ≈ {math.sqrt(0.25 / max(min(n_test or [1]), 1)):.3f} at 50% "
            f"accuracy); the bootstrap intervals over seeds and test items take it in.")
        external = d[d["test_set"] == "external"]
        out.append(
            "What they do not show: that a model recognises the animal rather than the recording conditions "
            "(see the audits and drops above), or that it would do as well on recordings and photos from "
            "elsewhere" + (f" — the external test set gives a first check ({external['n'].max():.0f} items)."
                           if not external.empty else " — no external test set was run (parameter external_data)."))
    return out


# ---------------------------------------------------------------------------- sections

def _mitigation_section(d: pd.DataFrame, audit_full: pd.DataFrame, records) -> list[str]:
    tables = variant_tables(d, records)
    where = ", ".join(f"{k}={v}" for k, v in headline_condition(d).items())
    lines = [f"### Mitigations on and off (notebook {', '.join(sorted(set(d['notebook'])))}; {where})", "",
             "Each variant switches one default mitigation off (`none`: all of them). Mean over seeds [95% bootstrap "
             "interval over seeds and test items] (seeds); a method marked (t): its records keep no per-item "
             "predictions, so its interval is the t interval over seeds. Accuracy on the plain test split:", "",
             _md_table(tables["accuracy"]), "",
             "Counterfactual drops (changed minus plain test accuracy, same run and items; audio models on the audio "
             "changes, image models on the image changes, fused models on both):", "", _md_table(tables["drops"]), ""]
    lines += _variant_paired_lines(tables["paired"])
    # the mitigation targets, checked against the numbers above
    lines += [f"- {s}" for s in _bandlimit_target(d, records) + _audio_vs_audit(d, audit_full)] + [""]
    return lines


def _variant_paired_lines(p: pd.DataFrame) -> list[str]:
    """Each variant minus the defaults on the same items and seeds: plain test accuracy (every view, McNemar
    p-values Holm-corrected over the table) and the drop on `bandlimit_4k` (audio models)."""
    if p.empty:
        return []
    items = p.get("interval", pd.Series(["t"])).eq("bootstrap").all()
    acc = p[p["measure"] == "accuracy"].copy()
    # a variant that leaves a model's right and wrong items as they were (e.g. an audio setting and the image
    # model) gives McNemar nothing to test: shown as such, and not counted in the Holm family
    same = acc["discordant"].eq(0) if "discordant" in acc else pd.Series(False, index=acc.index)
    tested = acc["p_value"].notna() & ~same
    acc["p_holm"] = None
    acc.loc[tested, "p_holm"] = holm(list(acc.loc[tested, "p_value"].astype(float)))
    seeds = ", ".join(sorted(set(p["seeds"].astype(str))))
    pairing = (f"item by item on the seeds both have ({seeds}; paired bootstrap over seeds and test items"
               if items else "paired by seed (paired t-test")
    test_note = "; McNemar per seed, the same direction in every seed)" if items else ")"

    def cell(r):
        if r.get("discordant") == 0:
            return "same items right (nothing to test)"
        if not items:
            text = format_diff(r)
        else:
            text = f"{r['mean_diff']:+.3f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}]"
            text += f", p={r['p_value']:.2g}" if pd.notna(r.get("p_value")) else ""
        return text + (f" (Holm {r['p_holm']:.2g})" if pd.notna(r.get("p_holm")) else "")
    out = []
    for what, rows in ((f"Plain test accuracy, each variant minus the defaults, {pairing}{test_note}; Holm over the "
                        f"{int(tested.sum())} tests of this table with any item that changed:", acc),
                       ("Drop on `bandlimit_4k`, each variant minus the defaults (a difference of differences, "
                        f"same items), {pairing}):",
                        p[(p["measure"] == "drop") & (p["view"] == "audio") & (p.get("test_set") == "bandlimit_4k")])):
        if rows.empty:
            continue
        rows = rows.assign(cell=[cell(r) for r in rows.to_dict("records")])
        wide = rows.pivot_table(index=["method", "protocol", "view"], columns="variant", values="cell",
                                aggfunc="first", sort=False)
        out += [what, "", _md_table(wide[[v for v in p["variant"].drop_duplicates() if v in wide.columns]]), ""]
    return out


def _bandlimit_target(d: pd.DataFrame, records) -> list[str]:
    """Target: with the default mitigations the band-limit counterfactual costs every audio model < 2 points."""
    runs = counterfactual_drops(primary_protocols(d[d["accuracy"].notna()]))
    runs = runs[(runs["view"] == "audio") & (runs["test_set"] == "bandlimit_4k")]
    out = []
    for variant in ("defaults", "sample_rate=16000"):
        r = runs[runs["variant"] == variant]
        if r.empty:
            if variant == "defaults" and (d["variant"] == variant).any():
                out.append("Band-limit counterfactual (4 kHz) with the defaults: not testable here: at the default "
                           f"{MITIGATIONS['sample_rate']} Hz it is at or above the Nyquist frequency, so no input "
                           "changes.")
            continue
        s = item_summary(r, records, metric="drop")
        worst = s.sort_values("mean").iloc[0]
        # met when every audio model's interval lies above -2 points, missed when one lies below it
        verdicts = {interval_verdict(lo, hi, -0.02) for lo, hi in zip(s["lo"], s["hi"])}
        met = ("missed" if "missed" in verdicts else "met" if verdicts == {"met"}
               else "not established (an interval spans -0.02)")
        out.append(f"Band-limit drop of the audio models with {variant}: worst {worst['method']} "
                   f"{format_ci(worst['mean'], worst['lo'], worst['hi'], worst['n'], interval=worst['interval'])}; "
                   f"target (< 2 points for every audio model) {met}"
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
    s = summarise(test, by=["method", "protocol"], metric="accuracy").sort_values("mean", ascending=False)
    # above every metadata-only classifier, none of them picked by its test mean
    above = s[s["lo"] > a["hi"].max()]
    bounds = "; ".join(f"{r['classifier']} {format_ci(r['mean'], r['lo'], r['hi'], r['n'])}" for _, r in a.iterrows())
    return [f"Audio models (defaults) against the metadata-only classifiers on the same test clips ({bounds}): "
            + "; ".join(f"{r['method']} {format_ci(r['mean'], r['lo'], r['hi'], r['n'])}" for _, r in s.iterrows())
            + f". Clearly above all of them (intervals apart): {', '.join(above['method']) or 'none'}."]


def _external_section(d: pd.DataFrame, records, cond: dict, where: str) -> list[str]:
    """Each method and view on the fixed test split and on the independent external data, the drop with its
    interval over seeds, the external chance levels, and per-class recall where the drop is largest."""
    runs = external_drops(select(d, cond))
    if runs.empty:
        return ["## External validity", "", "_No record evaluated external data (`external_data` empty): transfer "
                "to other recording and photo sources is not measured._", ""]
    by = ["method", "protocol", "view"]
    parts = {name: summarise(runs, by=by, metric=col) for name, col in
             (("test split", "plain"), ("external", "accuracy"), ("drop", "drop"))}
    table = pd.concat([s.assign(metric=name) for name, s in parts.items()], ignore_index=True)
    chance = runs.groupby(by)[["chance_uniform", "chance_majority", "n"]].max()
    shown = ci_table(table, by, ["metric"]).join(chance.rename(columns={"chance_uniform": "chance (uniform)",
                                                                        "chance_majority": "chance (majority)",
                                                                        "n": "external items"}).round(3))
    lines = ["## External validity", f"Accuracy on the fixed test split and on independent recordings and photos "
             f"(only the classes they share with the study; never trained on, nothing chosen by them), paired by run "
             f"({where}); mean [95% t interval over seeds] (n):\n\n" + _md_table(shown), ""]
    worst = parts["drop"].sort_values("mean").iloc[0]
    key = f"{worst['method']}/{worst['protocol']}/{worst['view']}/external"
    # the runs of the table above, never another grid's variant of the same seed
    used = [r for r in _records_of(records, runs) if key in (r.get("details") or {})
            and all(r.get("params", {}).get(k) == v for k, v in cond.items())]
    recalls = [r["details"][key]["per_class_recall"] for r in used]
    if recalls:
        classes = used[0]["classes"]
        mean = pd.DataFrame(recalls, columns=classes).mean().dropna()
        lines += [f"Largest drop: {worst['method']} ({worst['protocol']}, {worst['view']}) "
                  f"{format_ci(worst['mean'], worst['lo'], worst['hi'], worst['n'])}. Its per-class recall on the "
                  "external items, mean over runs: " + ", ".join(f"{c} {v:.2f}" for c, v in mean.items()) + ".", ""]
    return lines


def interval_verdict(lo: float, hi: float, threshold: float) -> str:
    """"met" when the whole interval [lo, hi] is at or above `threshold`, "missed" when it is wholly below, and
    "open" when it spans the threshold (the mean alone would call a coin toss)."""
    return "met" if lo >= threshold else "missed" if hi < threshold else "open"


def target_verdict(mean: float, lo: float, hi: float, threshold: float) -> str:
    """Whether an accuracy with its interval [lo, hi] meets `>= threshold` (interval_verdict), and by how much."""
    gap = mean - threshold
    return {"met": "yes", "missed": f"**no**, by {-gap:.3f}",
            "open": f"not established: the interval spans it (mean {gap:+.3f} from it)"}[interval_verdict(lo, hi, threshold)]


def _targets_section(d: pd.DataFrame, records, where: str) -> list[str]:
    """The methods' targets (tables.METHOD_TARGETS): the candidate chosen on validation, its accuracy with the
    interval over seeds and items, and whether the target is met, by how much."""
    rows = target_rows(d)
    if rows.empty:
        return []
    out = []
    for (issue, what), group in rows.groupby(["issue", "target"], sort=False):
        first = group.iloc[0]
        ci = item_summary(group, records).iloc[0]
        how = " t over seeds" if ci["interval"] == "t" else ""
        out.append({"issue": issue, "target": what, "test set": first["test_set"],
                    "method": f"{first['method']} ({first['protocol']}, {first['view']})",
                    "accuracy": format_ci(ci["mean"], ci["lo"], ci["hi"], ci["n"], interval=ci["interval"]) + how,
                    "wanted": f">= {first['threshold']:g}",
                    "met": target_verdict(ci["mean"], ci["lo"], ci["hi"], first["threshold"])})
    return ["## Targets", "", f"The methods' targets ({where}): where several methods qualify, the one with the best "
            "mean validation accuracy is scored (never the best on test); mean over seeds [95% interval over seeds "
            "and items] (seeds), or the t interval over seeds where the rows keep no per-item predictions. The "
            "targets are for the methods, never for the comparisons. A target is met when its whole interval is at "
            "or above it, missed when its whole interval is below it, and not established otherwise.", "",
            _md_table(pd.DataFrame(out), index=False), "", *_recipe_lines(rows, records)]


def _recipe_lines(rows: pd.DataFrame, records=()) -> list[str]:
    """What the scored runs tried: each notebook's parameters but the settings and the grid axes (the recipe:
    budget, inputs, augmentation, architecture), with every value the scored runs used; a parameter none of their
    records has (the notebook took it only later) is left out."""
    by_dir = {str(r.get("run_dir")): r.get("params") or {} for r in records}
    lines = []
    for notebook, group in rows.groupby("notebook", sort=True):
        try:
            params = {n: schema.param(notebook, n) for n in schema.names(notebook)}
        except StudyError:    # a notebook the schema no longer knows: nothing to say what its parameters mean
            continue
        recorded = [by_dir[d] for d in group.get("run_dir", pd.Series(dtype=object)).unique() if d in by_dir]
        shown = [f"{n}={_param_values(group[n], p.type is int)}" for n, p in params.items()
                 if p.kind != schema.SETTING and n not in AXES and n in group
                 and (not recorded or any(n in r for r in recorded))]
        lines.append(f"- {notebook}: " + ", ".join(shown))
    return ["What the scored runs used (every parameter but the settings and the grid axes):", "", *lines, ""] \
        if lines else []


def _param_values(column: pd.Series, is_int: bool) -> str:
    """Every value a parameter column holds, "/"-joined; a column with gaps holds its integers as floats."""
    values = sorted(column.dropna().unique(), key=str)
    return "/".join(str(int(v)) if is_int else str(v) for v in values) or "None"


def _recipes_section(df: pd.DataFrame, records) -> list[str]:
    """The training recipes (params/recipes_02.yaml), each alone against the defaults: validation accuracy, the
    recipe each model would keep on validation, and beside it (choosing nothing) the test accuracy and the
    paired item-level difference from the defaults."""
    d = recipe_variants(df)
    if d.empty:
        return []
    # every recipe against the defaults on the same seeds: the defaults' other seeds would tilt the choice
    seeds = sorted(set.intersection(*d.groupby("variant")["seed"].agg(set)))
    d = d[d["seed"].isin(seeds)]
    if d.empty or d["variant"].nunique() < 2:
        return []
    setting = study_setting(df)
    recipes = {name: setting[name] for name in RECIPES}
    order = variant_order(d["variant"], recipes)
    tables = variant_tables(d, records, order=order)
    rows = primary_protocols(d[(d["test_set"] == "test") & d["val_accuracy"].notna()])
    val = summarise(rows, by=["method", "protocol", "view", "variant"], metric="val_accuracy")
    means = val.pivot_table(index=["method", "protocol", "view"], columns="variant", values="mean", sort=False)
    means = means[[v for v in order if v in means.columns]]
    wide = ci_table(val, ["method", "protocol", "view"], ["variant"])
    wide = wide[[v for v in order if v in wide.columns]].reindex(tables["accuracy"].index.intersection(wide.index,
                                                                                                     sort=False))
    # kept on validation: the highest mean validation accuracy over the seeds, the defaults where none beats them
    kept = [v if means.loc[k, v] > means.loc[k, "defaults"] else "defaults"
            for k, v in zip(means.index, means.idxmax(axis=1))]
    wide["kept on validation"] = pd.Series(kept, index=means.index).reindex(wide.index)
    paired = _variant_paired_lines(tables["paired"][tables["paired"]["measure"] == "accuracy"])
    where = ", ".join(f"{k}={v}" for k, v in headline_condition(d).items())
    return ["## Training recipes, chosen on validation (notebook 02)", "",
            f"Each recipe of `params/recipes_02.yaml` alone against the defaults ({where}; seeds "
            + ", ".join(map(str, seeds)) + ", the ones every recipe has; the defaults: "
            + ", ".join(f"{k}={v}" for k, v in recipes.items()) + "). A recipe is kept for a model only where its "
            "mean validation accuracy over the seeds beats the defaults'; the test split chooses nothing. Validation "
            "accuracy, mean over seeds [95% t interval over seeds] (seeds):", "", _md_table(wide), "",
            "Test accuracy of the same runs, mean over seeds [95% bootstrap interval over seeds and test items] "
            "(seeds), for reading beside the choice:", "", _md_table(tables["accuracy"]), "", *paired]


def _finetune_section(records) -> list[str]:
    """Pre-trained encoders fine-tuned on the labels (notebooks 03 and 04, finetune_epochs > 0) against the same
    encoders trained from scratch by notebook 02 (default mitigations and recipes), at the largest training fraction
    with clean labels: the same architecture, items, labels and budget rule, so the difference is the initialisation.
    Paired item by item on the seeds both have; the frozen linear probe of the same runs beside them."""
    tuned = [r for r in records if r.get("notebook") in ("03_contrastive", "04_generative")
             and (r.get("params") or {}).get("finetune_epochs") and not (r.get("params") or {}).get("noise")]
    if not tuned:
        return []
    fraction = max(r["params"]["fraction"] for r in tuned)
    tuned = [r for r in tuned if r["params"]["fraction"] == fraction]
    setting = study_setting([r.get("params") or {} for r in records])
    scratch = [r for r in records if r.get("notebook") == "02_baselines" and not r["params"].get("noise")
               and r["params"].get("fraction") == fraction and at_defaults(r["params"], setting)]
    # each result row with the audio encoder its own run fine-tuned, so a method is paired with its own architecture
    rows = pd.DataFrame([{**row, "encoder": r["params"].get("audio_encoder"), "run_dir": str(r.get("run_dir"))}
                         for r in tuned for row in r.get("results") or []])
    # one network per view: the fused views of notebook 02 (late fusion) pick their audio half on validation
    rows = rows[(rows["protocol"] == "finetune") & (rows["test_set"] == "test") & rows["view"].isin(["audio", "image"])]
    out, p_values = [], []
    for (method, view, encoder), group in rows.groupby(["method", "view", "encoder"], sort=False, dropna=False):
        kind = "image" if view == "image" else encoder
        mine = _records_of(tuned, group)
        spec = {"method": method, "protocol": "finetune", "view": view}
        base = {"method": kind, "protocol": "supervised", "view": view}
        ft, probe = (accuracy_interval(mine, {**spec, "protocol": pr}) for pr in ("finetune", "linear_probe"))
        sc = accuracy_interval(scratch, base)
        if ft is None:
            continue
        row = {"method": method, "view": view, "fine-tuned": format_ci(**_ci(ft)),
               "frozen linear probe (same runs)": format_ci(**_ci(probe)) if probe else "–",
               "from scratch (notebook 02)": f"{kind} {format_ci(**_ci(sc))}" if sc else f"{kind}: no record"}
        try:
            c = paired_items(correct_by_seed(mine, spec), correct_by_seed(scratch, base))
        except StudyError:
            c = None
        row["fine-tuned minus from scratch"] = interval_text(c) if c else "not paired"
        p_values.append(c["mcnemar_p"] if c else None)
        out.append(row)
    if not out:
        return []
    for row, p, adj in zip(out, p_values, holm(p_values)):
        row["McNemar p (Holm)"] = f"{p:.2g} ({adj:.2g})" if p is not None else "–"
    epochs = sorted({r["params"]["finetune_epochs"] for r in tuned})
    return ["## Fine-tuned pre-trained encoders against training from scratch", "",
            f"Fraction {fraction}, clean labels. Each pre-trained encoder (notebooks 03 and 04) fine-tuned on the "
            f"training labels with notebook 02's rule (at most {', '.join(map(str, epochs))} epochs, patience, the best "
            "validation epoch kept) against the same architecture trained from scratch by notebook 02 with the "
            "default mitigations and recipes: the same items, labels and budget rule, so the difference is the "
            "initialisation "
            "(and the pre-training's use of the labels to pair clips with images). Mean over seeds [95% bootstrap "
            "over seeds and test items] (seeds); the difference is paired item by item on the seeds both have, "
            "McNemar per seed, the same direction in every seed, Holm over the "
            f"{sum(p is not None for p in p_values)} comparisons.", "",
            _md_table(pd.DataFrame(out), index=False), ""]


def _ci(interval: dict) -> dict:
    """format_ci's arguments from an items.accuracy_interval result."""
    return {"mean": interval["mean"], "lo": interval["lo"], "hi": interval["hi"], "n": interval["n"],
            "interval": "bootstrap"}


def _convergence_section(records) -> list[str]:
    """Which models the patience rule stopped, and which ran out of budget while validation still improved."""
    c = convergence_table(records)
    if c.empty:
        return []
    flagged = c[c["still_improving"] > 0]
    lines = ["## Convergence", "",
             "Every model trains by one plateau rule: validation has plateaued once the mean of its last "
             "`val_window` epochs (1 in records older than that parameter) has not beaten its best for `patience` "
             "epochs; the best validation epoch is kept. With `decay_epochs` = 0 the plateau stops training, or the "
             "budget (`epochs`) ends it, and `still_improving` counts the runs whose budget ended within `patience` "
             "epochs of their best. With `decay_epochs` > 0 the plateau starts a cosine decay of the learning rate "
             "to 0 over that many epochs (the decay also starts when only that many epochs of the budget are left), "
             "training stops when it is over, and `still_improving` counts the runs whose decay the budget "
             "started, not a plateau. Both count epochs, and an epoch is "
             f"one pass or {MIN_STEPS_PER_EPOCH} optimizer steps, whichever is more, so a smaller training fraction "
             "gets as many steps (`median_steps`); records of older code counted passes only. "
             "`lr_at_best`: the learning rate of the kept epoch's last step as a share of its peak (median "
             "over runs): near 1, the model kept was trained at full rate to the end, its rate never annealed. "
             "`median_train_s`: its training wall time in seconds (median over runs), on the machine and beside the "
             "other points (`--jobs`) that ran it: where the study's time goes.", "",
             _md_table(c, index=False), ""]
    total, bad = int(c["runs"].sum()), int(c["still_improving"].sum())
    lines += [f"**{bad} of {total} trained models ran out of budget still improving**"
              + (": their comparisons measure the budget as much as the method." if bad else ".") , ""]
    if not flagged.empty:
        lines += ["Flagged: " + ", ".join(f"{r.notebook} {r.model} at fraction {r.fraction} ({r.still_improving}/{r.runs})"
                                          for r in flagged.itertuples()) + ".", ""]
    t = temperature_table(records)
    if not t.empty:
        lines += ["Contrastive temperature, as the learnable logit scale 1/T at the start and at the kept epoch "
                  "(mean over runs): " + "; ".join(f"{r.method} {r.initial:.2f} -> {r.kept:.2f} ({r.runs} runs)"
                                                   for r in t.itertuples()) + ".", ""]
    return lines


def _chance_sentence(t: pd.DataFrame) -> str:
    """Chance on the evaluated sets, from the records (uniform over the classes present; the majority share)."""
    if "chance_majority" not in t or t["chance_majority"].isna().all():
        return ""
    c = t.dropna(subset=["chance_majority"]).groupby("view")[["chance_uniform", "chance_majority"]].max()
    return " Chance on the evaluated test items, uniform / majority class: " + "; ".join(
        f"{v} {r['chance_uniform']:.3f} / {r['chance_majority']:.3f}" for v, r in c.iterrows()) + "."


def _translation_section(t: pd.DataFrame) -> list[str]:
    """Notebook 06: judges on real and translated test items, retrieval from translations, and filling a
    missing modality with its translation, at every training fraction; mean [95% t interval] (seeds)."""
    lines = ["## Translation (notebook 06)", "",
             "`judge`: classifiers trained on real data of the target modality (`real`: on real test items; "
             "`translator` and `mvae_cross`: on translated ones; `griffin_lim`: the translated mel turned into a "
             "waveform and back)." + _chance_sentence(t), ""]
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


def _clustering_section(records) -> list[str]:
    s = clustering_table(records)
    if s.empty:
        return []
    return ["## Feature spaces (notebook 08)", "",
            "K-means on each method's test embeddings with k = the number of classes: agreement of the clusters "
            "with the classes (NMI, ARI, purity) and cluster separation (silhouette); mean over seeds "
            "[95% t interval] (n). t-SNE maps, feature maps and confusion matrices are in the rendered notebook.", "",
            _md_table(ci_table(s, ["method", "view"], ["metric"])), ""]


# ---------------------------------------------------------------------------- Markdown, figures and rendered notebooks

def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


def _reference_rank(run_dir: Path, setting: dict | None = None) -> tuple:
    """How well a run represents its notebook in the rendered copy: finished, then seed 0, no label noise,
    the largest training fraction, the default mitigations and recipes (the headline condition), then the newest."""
    record = rec.read_record(run_dir) if (run_dir / rec.RECORD_NAME).exists() else None
    ok = record is not None and not (run_dir / "error.txt").exists()
    p = (record or {}).get("params") or {}
    return (ok, p.get("seed", 0) == 0, not p.get("noise"), float(p.get("fraction") or 0),
            at_defaults(p, setting))


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def stable_ids(html: str) -> str:
    """The page with nbconvert's random element ids (uuid4, new at every render) numbered in order of first
    appearance, so that re-rendering an unchanged notebook leaves the committed page as it was."""
    ids: dict[str, str] = {}
    return UUID.sub(lambda m: ids.setdefault(m.group(0), f"output-{len(ids) + 1}"), html)


def _render_notebooks(results_dir: Path, out_dir: Path, run_dirs: set[str] | None = None) -> tuple[dict, list[str]]:
    """One HTML per notebook stem from results/runs/**/<stem>.ipynb (only those in `run_dirs` when given: the
    reported study's runs): the run that best represents the notebook (_reference_rank), the newest among
    equals. A page of a notebook the study has no run of is removed: it would show another study. A page of a
    notebook whose runs are here without their executed copies (git-ignored: a fresh clone) is kept as an
    earlier report rendered it."""
    executed = [p for p in (results_dir / "runs").rglob("*.ipynb")
                if not p.name.startswith(".") and ".ipynb_checkpoints" not in p.parts
                and (run_dirs is None or str(p.parent) in run_dirs)]
    studied = ({Path(d).parent.name for d in run_dirs} if run_dirs is not None
               else {d.name for d in (results_dir / "runs").glob("*") if d.is_dir()})
    kept = {}
    if out_dir.is_dir():
        stems = {p.stem for p in executed}
        for page in out_dir.glob("*.html"):
            if page.stem not in studied:
                page.unlink()
            elif page.stem not in stems:
                kept[page.stem] = {"html": page.name, "source": "rendered by an earlier report", "ok": True}
    if not executed:
        return kept, []
    from nbconvert import HTMLExporter
    best = {}
    setting = study_setting([rec.read_record(p.parent).get("params") or {} for p in executed
                             if (p.parent / rec.RECORD_NAME).exists()])
    for path in executed:
        key = (*_reference_rank(path.parent, setting), path.stat().st_mtime)
        if path.stem not in best or key > best[path.stem][0]:
            best[path.stem] = (key, path)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, problems = kept, []
    exporter = HTMLExporter()
    for stem, ((ok, *_), path) in sorted(best.items()):
        try:
            html, _ = exporter.from_filename(str(path))
        except Exception as e:  # a broken notebook file must not stop the report
            problems.append(f"{path}: {type(e).__name__}: {e}")
            continue
        target = out_dir / f"{stem}.html"
        rec.atomic_write_text(target, stable_ids(html))
        written[stem] = {"html": target.name, "source": str(path.relative_to(results_dir)), "ok": ok}
    return written, problems


# ---------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    """`python -m helpers report [--results results] [--no-html]`."""
    parser = argparse.ArgumentParser(prog="python -m helpers report",
                                     description="Aggregate metrics records into summary.csv, figures and README.md.")
    parser.add_argument("--results", default=str(RESULTS_DIR), help="results folder (default: results/)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML renderings of executed notebooks")
    parser.add_argument("--all-versions", action="store_true",
                        help="report every record, not only those of the newest code version")
    parser.add_argument("--readme", default=None,
                        help="README whose generated blocks (results, performance) to refresh; default: the "
                             "repository's README.md when --results is the committed results/ folder")
    args = parser.parse_args(argv)
    out = write_report(args.results, html=not args.no_html, all_versions=args.all_versions)
    committed = (REPO_ROOT / "results").resolve()   # a quick or test study never rewrites the README's numbers
    readme = args.readme or (REPO_ROOT / "README.md" if Path(args.results).resolve() == committed else None)
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
