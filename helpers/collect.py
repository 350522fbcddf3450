"""The records of parameter grids, for the analysis notebooks (05 label noise, 07 scaling): collect a grid's
points from the run folders, and run the missing ones with the sweep's own point code (helpers.sweeps)."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from . import records
from .config import PARAMS_DIR, REPO_ROOT, RESULTS_DIR, StudyError
from .sweeps import ERROR_NAME, _first_line, _point_record, _process, load_grid, run_point


def resolve_results_dir(results_dir) -> Path:
    """The results folder a notebook parameter names: "" or "results" is helpers.config.RESULTS_DIR
    (results/, or $STUDY_RESULTS when set, as in the tests); another relative path is taken from
    the repository root (a notebook's working directory may be notebooks/)."""
    if not results_dir or str(results_dir).rstrip("/") == "results":
        return RESULTS_DIR
    path = Path(results_dir).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def run_missing_points(notebook, points, results_dir, timeout=None):
    """Run each point that has no record with the sweep's own point code (_process: the same run folders
    and point locks, so a concurrent sweep never runs a point twice at once; a point whose folder holds
    an error.txt is left alone). Unlike `python -m helpers sweep`, points recorded by an older code
    version are not re-run: an analysis notebook fills gaps, a sweep refreshes.
    A DataFrame with one row per point: the parameters, status, seconds, run_dir, error."""
    import pandas as pd

    def execute(point, run_dir):
        return run_point(notebook, point, run_dir, timeout=timeout)
    rows = []
    for point in points:
        run_dir = records.default_run_dir(Path(notebook).stem, point, results_dir).resolve()
        row = _process(point, run_dir, None, False, execute, wait=True)
        rows.append({**point, **{k: row.get(k) for k in ("status", "seconds", "run_dir", "error")}})
    return pd.DataFrame(rows)


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


def collect_grid(grid, profile: str = "quick", results_dir=RESULTS_DIR, run_missing: bool = False) -> dict:
    """The records of a grid's points (read from their run folders); with run_missing, first run
    the points that have no record (run_missing_points).

    A record counts when its parameters match the point, whatever code version made it: re-run
    stale points with `python -m helpers sweep GRID --profile ...`. Returns {"grid", "notebook",
    "points", "records", "missing" (points without a record), "failed" (run folders with
    error.txt and their first line), "ran" (True if points were run), "sweep" (their table or
    None)}. Raises StudyError when the grid or its notebook does not exist.
    """
    results_dir = resolve_results_dir(results_dir)
    notebook, points = load_grid(grid, profile)

    def read():
        found, missing, failed = [], [], []
        for point in points:
            run_dir = records.default_run_dir(notebook.stem, point, results_dir)
            record = _point_record(run_dir, point)
            if record is not None:
                found.append({**record, "run_dir": str(run_dir)})
            else:
                missing.append(point)
                if (run_dir / ERROR_NAME).exists():
                    failed.append({"run_dir": str(run_dir), "error": _first_line(run_dir / ERROR_NAME)})
        return found, missing, failed

    found, missing, failed = read()
    table = None
    if missing and run_missing:
        start = time.perf_counter()
        table = run_missing_points(notebook, missing, results_dir)
        table.attrs["seconds"] = time.perf_counter() - start
        found, missing, failed = read()
    return {"grid": str(grid), "notebook": notebook.stem, "points": points, "records": found, "missing": missing,
            "failed": failed, "ran": table is not None, "sweep": table}


def collect_grids(grids, profile: str = "quick", results_dir=RESULTS_DIR, run_missing: bool = False):
    """collect_grid for several grids; a grid whose notebook or file does not exist yet is reported,
    not raised. Returns (all records, a DataFrame with one status row per grid)."""
    import pandas as pd

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


def collect_analysis(grids, profile: str = "quick", results_dir="results", run_missing: bool = False) -> dict:
    """What an analysis notebook (05, 07) starts from: the records of several grids (a list of names, or
    one comma-separated string) under resolve_results_dir(results_dir), the points without a record run
    first if run_missing, stacked into one results table (helpers.tables.results_table).

    Returns {"grids": the names, "results_dir", "records", "status" (collect_grids' table, one row per
    grid), "df" (the results table), "notes" (sentences on grids without records and on failed points,
    for a conclusion)}. Raises StudyError, naming the sweep to run, when no grid has a result record."""
    import pandas as pd

    from .tables import results_table

    names = [g.strip() for g in grids.split(",") if g.strip()] if isinstance(grids, str) else [str(g) for g in grids]
    if not names:
        raise StudyError("collect_analysis: name at least one grid, e.g. grids = \"noise_02\"")
    path = resolve_results_dir(results_dir)
    recs, status = collect_grids(names, profile, path, run_missing=run_missing)
    # one code's records, as the report: points of an older code are not averaged with their re-run
    recs, left_out = one_study(recs)
    df = results_table(recs)
    if df.empty:
        first = names[0] if names[0].endswith(".yaml") or "/" in names[0] else f"params/{names[0]}.yaml"
        raise StudyError(f"no records for grids {names} (profile {profile!r}) under {path}/runs; set run_missing = "
                         f"True, or run e.g. `python -m helpers sweep {first} --profile {profile}` first"
                         + "".join(f"; {g}: {n}" for g, n in zip(status["grid"], status["note"]) if n))
    notes = []
    skipped = status.loc[status["records"] == 0, "grid"].tolist()
    if skipped:
        notes.append(f"No records for {', '.join(map(str, skipped))} (see the status table): those methods are "
                     "missing here.")
    if left_out:
        notes.append(f"Only the records of code `{recs[0].get('code_version')}` (the newest) are analysed; "
                     + ", ".join(f"{n} of code `{v}`" for v, n in sorted(left_out.items()))
                     + " left out: re-run their points with `python -m helpers sweep GRID` to include them.")
    failed = int(pd.to_numeric(status["failed"], errors="coerce").fillna(0).sum())
    if failed:
        notes.append(f"**{failed} point(s) failed** (their error.txt is named in the status table); rerun with "
                     "`python -m helpers sweep ... --retry-failed`.")
    return {"grids": names, "results_dir": path, "records": recs, "status": status, "df": df, "notes": notes}


def grid_files() -> list[Path]:
    """Every grid file of the study: params/*.yaml."""
    return sorted(PARAMS_DIR.glob("*.yaml")) if PARAMS_DIR.is_dir() else []


def loaded_grids(profile: str = "full"):
    """(grid file name, its notebook, its `profile` points) for every grid that loads."""
    for grid in grid_files():
        try:
            notebook, points = load_grid(grid, profile)
        except StudyError:
            continue
        yield grid.name, notebook, points


def grid_points(results_dir, profile: str = "full"):
    """(grid file name, its notebook, [(point, its run folder under results_dir)]) for every grid that loads."""
    for name, notebook, points in loaded_grids(profile):
        yield name, notebook, [(p, records.default_run_dir(notebook.stem, p, results_dir)) for p in points]


def grid_seeds(profile: str = "full") -> dict[str, set[tuple[str, int]]]:
    """Grid file name -> the (notebook stem, seed) pairs of its `profile` points. Unlike the run folders, which
    hash every parameter, these survive a change of the grid's other settings (its epochs, a new default), so a
    study made by an earlier version of a grid file is still found by the seeds it drew."""
    return {name: {(notebook.stem, int(p["seed"])) for p in points}
            for name, notebook, points in loaded_grids(profile)}


def points_at_once(measured: dict) -> float | None:
    """How many points of a measured_study ran at once on average (point time over wall time): the cores' use."""
    return measured["compute_s"] / measured["wall_s"] if measured.get("wall_s") else None


def measured_study(results_dir=None, profile: str = "full") -> dict:
    """The wall time the committed study actually took, from the start and end of every `profile` point of every
    grid whose record is complete and made by the current code, read from results_dir/runs (points shared
    between grids once): the record's own started_at and written_at where it has them (committed, so any clone
    can measure; the kernel's start-up, a few seconds, is left out), else papermill's start and end times in the
    executed notebook. wall_s is the union of the points' intervals (parallel points overlap; idle gaps between
    grids do not count), compute_s the sum of their durations."""
    results_dir, version = Path(results_dir or RESULTS_DIR), records.code_version()
    points, per_grid, sources = {}, {}, Counter()
    for name, notebook, grid in grid_points(results_dir, profile):
        per_grid[name] = {"points": len(grid), "found": 0}
        for point, run_dir in grid:
            if str(run_dir) not in points:
                if not records.record_is_complete(run_dir, point, version):  # missing, failed, or by other code
                    continue
                interval = _run_interval(run_dir, notebook.name)
                if interval is None:
                    continue
                points[str(run_dir)], source = interval[:2], interval[2]
                sources[source] += 1
            per_grid[name]["found"] += 1
    if not points:
        return {"available": False, "code_version": version,
                "reason": f"no executed {profile}-profile points of code {version} under {results_dir / 'runs'}"}
    wall, end = 0.0, None
    for start, stop in sorted(points.values()):
        if end is None or start > end:
            wall, end = wall + (stop - start).total_seconds(), stop
        elif stop > end:
            wall, end = wall + (stop - end).total_seconds(), stop
    total = sum(g["points"] for g in per_grid.values())
    return {"available": True, "profile": profile, "code_version": version, "wall_s": round(wall, 3),
            "unique_points": len(points),
            "compute_s": round(sum((b - a).total_seconds() for a, b in points.values()), 3),
            "complete": all(g["found"] == g["points"] for g in per_grid.values()), "grids": per_grid,
            "first_start": min(a for a, _ in points.values()).isoformat(),
            "last_end": max(b for _, b in points.values()).isoformat(),
            "timed_by": dict(sources),
            "note": f"{len(points)} executed points (of {total} listed, shared ones once) read from {results_dir}; "
                    "measured on whatever machine ran them, not in this bench run"}


def _run_interval(run_dir: Path, notebook_name: str):
    """(start, end, source) of one executed point: the record's started_at and written_at ("record"), else the
    executed notebook's papermill times ("notebook"); None when neither is there."""
    import json
    from datetime import datetime

    record = records.read_record(run_dir / records.RECORD_NAME) or {}
    try:
        return (datetime.fromisoformat(record["started_at"]), datetime.fromisoformat(record["written_at"]), "record")
    except (KeyError, TypeError, ValueError):
        pass
    try:
        meta = json.loads((run_dir / notebook_name).read_text(encoding="utf-8"))["metadata"]["papermill"]
        return datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"]), "notebook"
    except (OSError, ValueError, KeyError, TypeError):  # no executed notebook: no interval
        return None


# ---------------------------------------------------------------------------- reproducing committed points

def compare_records(committed: dict, fresh: dict) -> dict:
    """How far a re-run record is from the committed one: code versions, and per result row (method, protocol,
    view, test set) the accuracy difference and, where both keep per-item predictions, how many items differ;
    rows and prediction rows that only one of the two has are counted (a re-run that lost rows is not identical)."""
    def rows(record):
        return {(r.get("method"), r.get("protocol"), r.get("view"), r.get("test_set")): r
                for r in record.get("results") or [] if r.get("accuracy") is not None}
    a, b = rows(committed), rows(fresh)
    shared = sorted(set(a) & set(b), key=str)
    diffs = [abs(float(a[k]["accuracy"]) - float(b[k]["accuracy"])) for k in shared]
    pa, pb = committed.get("predictions") or {}, fresh.get("predictions") or {}
    items = {k: sum(x != y for x, y in zip(pa[k], pb[k])) + abs(len(pa[k]) - len(pb[k]))
             for k in sorted(set(pa) & set(pb))}
    env_a, env_b = committed.get("environment") or {}, fresh.get("environment") or {}
    return {"code_versions": [committed.get("code_version"), fresh.get("code_version")],
            "cpu_models": [env_a.get("cpu_model"), env_b.get("cpu_model")],
            "torch_threads": [env_a.get("torch_threads"), env_b.get("torch_threads")],
            "rows": len(shared), "rows_only_one_side": len(set(a) ^ set(b)),
            "rows_equal": sum(d == 0 for d in diffs), "max_accuracy_diff": max(diffs, default=None),
            "mean_accuracy_diff": sum(diffs) / len(diffs) if diffs else None,
            "prediction_rows": len(items), "prediction_rows_identical": sum(n == 0 for n in items.values()),
            "prediction_rows_only_one_side": len(set(pa) ^ set(pb)),
            "items_differ": {k: n for k, n in items.items() if n}}


def reproduce(grid, profile: str = "full", points=None, workdir=None, results_dir=None, threads: int = 1) -> dict:
    """Run committed points of `grid` again from this checkout into `workdir` (a scratch results folder, never the
    committed one) and compare each new record with the committed one (compare_records). `points`: indices into
    the grid's points (default: the first). The study ran one torch thread per kernel (make study, 2 points at
    once), so the re-runs get `threads` (OMP_NUM_THREADS). Only points whose committed record was made by this
    code version are run: another version's numbers are not this code's to reproduce."""
    import os
    import tempfile

    results_dir = Path(results_dir or RESULTS_DIR)
    notebook, grid_points = load_grid(grid, profile)
    chosen = [0] if points is None else list(points)
    bad = [i for i in chosen if not 0 <= i < len(grid_points)]
    if bad:
        raise StudyError(f"{Path(grid).name} ({profile}) has points 0-{len(grid_points) - 1}; no point {bad}")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="menagerie-reproduce-"))
    if workdir.resolve() == results_dir.resolve():
        raise StudyError(f"reproduce writes into a scratch folder, never into the committed {results_dir}")
    version, out = records.code_version(), []
    old_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)   # the kernels papermill starts inherit it
    try:
        for i in chosen:
            point = grid_points[i]
            committed_dir = records.default_run_dir(notebook.stem, point, results_dir)
            entry = {"point": i, "committed": str(committed_dir), "seed": point.get("seed")}
            if not records.record_is_complete(committed_dir, point, version):
                out.append({**entry, "status": "not reproducible here",
                            "reason": f"no record of this code version ({version}) in {committed_dir}"})
                continue
            run = run_point(notebook, point, records.default_run_dir(notebook.stem, point, workdir))
            entry.update(status=run["status"], seconds=round(run["seconds"], 1), error=run.get("error"))
            if run["status"] == "ran":
                entry.update(compare_records(records.read_record(committed_dir / records.RECORD_NAME),
                                             records.read_record(Path(run["run_dir"]) / records.RECORD_NAME)))
            out.append(entry)
    finally:
        if old_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old_threads
    ran = [e for e in out if e["status"] == "ran"]
    return {"grid": Path(grid).name, "profile": profile, "code_version": version, "threads": threads,
            "cpu_model": records.cpu_model(),
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workdir": str(workdir), "points": out,
            "identical": bool(ran) and all(e["rows_equal"] == e["rows"] and not e["items_differ"]
                                            and not e["rows_only_one_side"] and not e["prediction_rows_only_one_side"]
                                            for e in ran)}


def main(argv=None) -> int:
    """python -m helpers reproduce GRID [--points 0,3] [--profile full] [--threads 1] [--out FILE]."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m helpers reproduce",
                                     description="Run committed grid points again into a scratch folder and "
                                                 "compare them with the committed records, item by item.")
    parser.add_argument("grid", help="grid file, e.g. params/scaling_03.yaml")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--points", default="0", help="comma-separated indices of the grid's points (default: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per kernel (the study: 1)")
    parser.add_argument("--results-dir", default=None, help="the committed results (default: results/)")
    parser.add_argument("--workdir", default=None, help="scratch results folder (default: a new temporary one)")
    parser.add_argument("--out", default=None, help="also append the check to this JSON file (a list of checks)")
    args = parser.parse_args(argv)
    try:
        indices = [int(v) for v in args.points.split(",") if v.strip()]
    except ValueError:
        raise StudyError(f"--points {args.points!r}: give comma-separated integers, e.g. 0,3") from None
    check = reproduce(args.grid, args.profile, indices, args.workdir, args.results_dir, args.threads)
    if args.out:
        path = Path(args.out)
        try:
            checks = json.loads(path.read_text()) if path.exists() else []
        except ValueError:
            raise StudyError(f"{path} is not a JSON list of checks: move it away or give another --out") from None
        records.atomic_write_text(path, json.dumps([*checks, check], indent=1) + "\n")
    print(json.dumps(check, indent=1))
    return 0 if check["identical"] else 1
