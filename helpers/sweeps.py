"""Parameter sweeps: expand a grid file (params/<grid>.yaml) and run its notebook once per point.

Grid file:

    notebook: notebooks/02_baselines.ipynb     # relative to the repository (or to the grid file)
    description: what the sweep answers
    profiles:                                  # pick one with --profile
      quick: {seeds: [0, 1], params: {epochs: 2, fraction: [0.2, 0.8]}}
      full:  {seeds: [0, 1, 2, 3, 4], params: {epochs: 20, fraction: [0.2, 0.5, 0.8]}}
    params:                                    # common to all profiles; a profile overrides them
      noise: [0.0, 0.1]                        # a list is a grid axis, a scalar is fixed
      methods: {value: [image, audio_mel]}     # {value: ...} passes a list as one value
    seeds: [0, 1]                              # optional: same as params: {seed: [0, 1]}
    variants:                                  # optional: one-factor-at-a-time changes, each an axis value
      - {}                                     #   the params as they are
      - {sample_rate: 16000}                   #   the same with one parameter changed

The points are the Cartesian product of the axes and the variants (seed outermost, so a
half-finished sweep already covers every condition once); a variant's values override the params. Each point runs in results/runs/<notebook stem>/<params hash>/.

A point is skipped when its folder holds a record of the same parameters made by the same code
(records.code_version), or an error.txt from an earlier failure (unless retry_failed). While a
point runs, its folder holds a `.lock` file naming the sweep's pid, so concurrent sweeps on one
results folder never run a point twice at once; a lock left by a killed sweep is broken.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import fcntl
import itertools
import json
import os
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

from . import records, schema
from .config import PARAMS_DIR, REPO_ROOT, RESULTS_DIR, StudyError

GRID_KEYS = ("notebook", "description", "profiles", "params", "seeds", "variants")
PROFILE_KEYS = ("description", "params", "seeds", "variants")
LOCK_NAME = ".lock"
ERROR_NAME = "error.txt"
POLL_S = 0.5          # how often a sweep looks again at a point another sweep is running
EMPTY_LOCK_GRACE_S = 30  # a lock file is written right after creation; empty for longer = stale


# ---------------------------------------------------------------- grid files

def notebook_parameter_names(notebook) -> set[str]:
    """Names assigned at top level in the notebook's cell tagged `parameters`."""
    notebook = Path(notebook)
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StudyError(f"{notebook}: cannot read the notebook ({e})") from e
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise StudyError(f"{notebook}: no cell is tagged 'parameters'; tag the cell that sets the "
                         "defaults (papermill injects the sweep's values after it)")
    source = tagged[0].get("source", "")
    source = source if isinstance(source, str) else "".join(source)
    # IPython magics and shell lines are not Python; blank them so ast can parse the rest.
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                       for line in source.splitlines())
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise StudyError(f"{notebook}: the parameters cell is not valid Python ({e})") from e
    names = set()

    def collect(target):
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                collect(t)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                collect(t)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            collect(node.target)
    return names


def find_grid(path) -> Path:
    """The grid file: as given, else relative to the repository, else in params/ (.yaml optional)."""
    path = Path(path)
    for candidate in (path, REPO_ROOT / path, PARAMS_DIR / path, PARAMS_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.name for p in PARAMS_DIR.glob("*.yaml")) if PARAMS_DIR.is_dir() else []
    raise StudyError(f"grid file {path} not found; grids in {PARAMS_DIR}: {known}")


def _mapping(value, where: str, grid: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{grid}: {where} must be a mapping (name: value), got {value!r}")
    return value


def _level_params(spec: dict, where: str, grid: Path) -> dict:
    """params of one level (the file or a profile), with its `seeds` folded in as the seed axis."""
    params = dict(_mapping(spec.get("params"), f"{where}params", grid))
    if spec.get("seeds") is not None:
        if "seed" in params:
            raise StudyError(f"{grid}: {where}seeds and {where}params.seed both set; keep one")
        params["seed"] = spec["seeds"]
    return params


def _find_notebook(name, grid: Path) -> Path:
    if not isinstance(name, str) or not name:
        raise StudyError(f"{grid}: 'notebook' must name the notebook to run, "
                         "e.g. notebook: notebooks/02_baselines.ipynb")
    path = Path(name)
    candidates = [path] if path.is_absolute() else [REPO_ROOT / path, grid.parent / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise StudyError(f"{grid}: notebook {name} not found (looked at {[str(c) for c in candidates]})")


def _variants(value, where: str, grid: Path) -> list[dict]:
    if value is None:
        return [{}]
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise StudyError(f"{grid}: {where}variants must be a non-empty list of mappings (name: value), "
                         f"e.g. [{{}}, {{sample_rate: 16000}}]; got {value!r}")
    canon = [json.dumps(v, sort_keys=True) for v in value]
    if len(set(canon)) != len(canon):
        raise StudyError(f"{grid}: {where}variants lists a variant twice: {value}")
    return value


def _expand(params: dict, grid: Path, variants: list[dict] = ({},)) -> list[dict]:
    """Cartesian product of the list-valued params and the variants; seed is the outermost axis."""
    fixed, axes = {}, {}
    for name, value in params.items():
        if isinstance(value, dict) and set(value) == {"value"}:
            fixed[name] = value["value"]  # a list meant as one value, not an axis
        elif isinstance(value, list):
            if not value:
                raise StudyError(f"{grid}: params.{name} is an empty list, so the grid has no points")
            canon = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(canon)) != len(canon):
                raise StudyError(f"{grid}: params.{name} lists a value twice: {value}")
            axes[name] = value
        else:
            fixed[name] = value
    names = sorted(axes, key=lambda n: n != "seed")  # stable: seed first, others as written
    points = []
    for combo in itertools.product(*(axes[n] for n in names)):
        for variant in variants:
            point = {n: fixed.get(n) for n in params}  # keep the file's order of names
            point.update(zip(names, combo))
            point.update(variant)
            points.append(point)
    return points


def load_grid(path, profile: str | None = "quick") -> tuple[Path, list[dict]]:
    """The notebook and the list of parameter points of a grid file's `profile`.

    A grid without `profiles` has one grid and ignores `profile`.
    """
    grid = find_grid(path)
    try:
        spec = yaml.safe_load(grid.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise StudyError(f"{grid}: not valid YAML: {e}") from e
    spec = _mapping(spec, "the file", grid)
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise StudyError(f"{grid}: unknown key(s) {unknown}; a grid file has {list(GRID_KEYS)}")
    notebook = _find_notebook(spec.get("notebook"), grid)

    params = _level_params(spec, "", grid)
    variants = _variants(spec.get("variants"), "", grid)
    profiles = _mapping(spec.get("profiles"), "profiles", grid)
    if profiles:
        if profile not in profiles:
            raise StudyError(f"{grid}: no profile {profile!r}; choose one of {list(profiles)}")
        chosen = _mapping(profiles[profile], f"profiles.{profile}", grid)
        unknown = sorted(set(chosen) - set(PROFILE_KEYS))
        if unknown:
            raise StudyError(f"{grid}: profiles.{profile} has unknown key(s) {unknown}; "
                             f"a profile has {list(PROFILE_KEYS)}")
        params.update(_level_params(chosen, f"profiles.{profile}.", grid))
        if chosen.get("variants") is not None:
            variants = _variants(chosen["variants"], f"profiles.{profile}.", grid)

    if "run_dir" in params:
        raise StudyError(f"{grid}: remove run_dir; the sweep gives every point its own folder")
    if any("seed" in v or "run_dir" in v for v in variants):
        raise StudyError(f"{grid}: a variant may not set seed or run_dir")
    stem = notebook.stem
    # The study's notebooks take the schema's parameters; any other notebook, those of its parameters cell.
    known = schema.names(stem) if stem in schema.NOTEBOOKS else sorted(notebook_parameter_names(notebook))
    if "run_dir" not in known:
        raise StudyError(f"{notebook}: the parameters cell must define run_dir = \"\" "
                         "(the sweep passes each point's folder through it)")
    unknown = sorted((set(params) | {n for v in variants for n in v}) - set(known))
    if unknown:
        hints = [f"{u!r} -> {m[0]!r}" for u in unknown if (m := difflib.get_close_matches(u, known, n=1))]
        raise StudyError(f"{grid}: unknown parameter(s) {unknown} for {notebook.name}"
                         + (f" (did you mean {', '.join(hints)}?)" if hints else "")
                         + f"; it takes {sorted(known)}")
    points = _expand(params, grid, variants)
    if stem not in schema.NOTEBOOKS:
        for point in points:   # the seeds are the sweep's own axis, checked for any notebook
            if "seed" in point:
                try:
                    schema.PARAMS["seed"].coerce("seed", point["seed"])
                except StudyError as e:
                    raise StudyError(f"{grid} (profile {profile!r}): {e}") from e
        return notebook, points
    # Each point is every parameter of the notebook (its defaults filled in), so a run's folder and record
    # do not depend on whether a grid file spells out a default.
    full_points = []
    for point in points:
        try:
            full = schema.check(stem, point)
        except StudyError as e:
            raise StudyError(f"{grid} (profile {profile!r}): {e}") from e
        full_points.append({k: v for k, v in full.items() if k not in schema.NOT_PASSED})
    return notebook, full_points


# ---------------------------------------------------------------- one point

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _describe_failure(error: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError
    if isinstance(error, PapermillExecutionError):
        lines = _ANSI.sub("", "\n".join(error.traceback)).splitlines()
        return (f"{error.ename}: {error.evalue}\n\nin cell {error.cell_index} "
                f"(execution count {error.exec_count}); traceback tail:\n" + "\n".join(lines[-40:]))
    return f"{type(error).__name__}: {error}"


def _file_id(path: Path):
    # os.replace gives a new inode, so this tells a freshly written record from an old one.
    try:
        st = path.stat()
        return st.st_ino, st.st_mtime_ns
    except FileNotFoundError:
        return None


def _cell_seconds(executed: Path) -> float | None:
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
        return sum(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0 for c in cells)
    except (OSError, ValueError, KeyError):
        return None


def run_point(notebook, params: dict, run_dir, kernel_name: str = "python3", timeout=None) -> dict:
    """Execute `notebook` with `params` into run_dir; return {status, seconds, overhead_s, run_dir, error}.

    status is "ran" if the notebook finished and wrote run_dir/metrics.json, else "failed" with the
    reason in run_dir/error.txt. `timeout` is a per-cell limit in seconds (None: no limit).
    overhead_s is the time not spent inside cells (kernel start, papermill, saving).
    """
    import papermill

    notebook, run_dir = Path(notebook).resolve(), Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    record_path, error_path = run_dir / records.RECORD_NAME, run_dir / ERROR_NAME
    before = _file_id(record_path)
    error_path.unlink(missing_ok=True)
    executed = run_dir / f"{notebook.stem}.ipynb"
    partial = run_dir / f".{notebook.stem}.{os.getpid()}-{threading.get_ident()}.partial.ipynb"
    error = None
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook), str(partial), parameters=dict(params, run_dir=str(run_dir)),
            kernel_name=kernel_name, progress_bar=False, execution_timeout=timeout,
            # The kernel's working directory is the repository. Passed to nbclient instead of
            # papermill's cwd=, which os.chdir()s the whole process and races between threads.
            resources={"metadata": {"path": str(REPO_ROOT)}},
            # ipykernel's start-up warnings (e.g. "running over TCP") would garble the progress bar.
            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except Exception as e:  # the notebook's own error, a dead kernel, a timeout: all end the point
        error = _describe_failure(e)
    seconds = time.perf_counter() - start
    if partial.exists():
        os.replace(partial, executed)  # keep the executed notebook, failed or not: it shows where
    fresh = _file_id(record_path) not in (None, before)
    if error is None and not fresh:
        error = (f"{notebook.name} finished but wrote no {records.RECORD_NAME} into run_dir; "
                 "end it with helpers.records.write_record(run_dir, {'params': ..., 'metrics': ...})")
    if error is not None:
        if fresh:  # a record written before a later cell failed must not make the point look done
            os.replace(record_path, run_dir / "metrics.incomplete.json")
        records.atomic_write_text(error_path, error + "\n")
    cell_seconds = _cell_seconds(executed)
    return {"status": "failed" if error else "ran", "seconds": seconds,
            "overhead_s": None if cell_seconds is None else max(seconds - cell_seconds, 0.0),
            "run_dir": str(run_dir), "error": error}


# ---------------------------------------------------------------- point locks

def _proc_start(pid: int) -> str:
    """Start time of a process (Linux), to tell a live owner from a reused pid; "" if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _lock_owner() -> str:
    pid = os.getpid()
    return f"{pid} {socket.gethostname()} {_proc_start(pid)}".strip()


def _lock_is_stale(text: str, age_s: float) -> bool:
    parts = text.split()
    try:
        pid = int(parts[0])
    except (IndexError, ValueError):
        return age_s > EMPTY_LOCK_GRACE_S  # its creator has not written the pid yet, or died first
    host = parts[1] if len(parts) > 1 else socket.gethostname()
    if host != socket.gethostname():
        return False  # another machine's process: cannot check; delete the lock by hand if stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    start = parts[2] if len(parts) > 2 else ""
    now = _proc_start(pid)
    return bool(start and now and start != now)  # the pid now belongs to another process


def _break_if_stale(run_dir: Path) -> bool:
    """Remove run_dir's lock if its owner is dead; True if the lock is gone."""
    # Breakers serialise on a flock of the folder itself, so two of them cannot both judge the
    # same dead lock stale and then delete the fresh lock the other one just took.
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lock = run_dir / LOCK_NAME
        try:
            text, age = lock.read_text(), time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        if _lock_is_stale(text, age):
            lock.unlink()
            return True
        return False
    finally:
        os.close(fd)  # also releases the flock


def try_lock(run_dir) -> bool:
    """Take run_dir's point lock (a file holding our pid); False if a live process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(run_dir / LOCK_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _break_if_stale(run_dir):
                return False
            continue
        with os.fdopen(fd, "w") as f:
            f.write(_lock_owner() + "\n")
        return True
    return False


def release_lock(run_dir) -> None:
    """Drop run_dir's lock if it is ours."""
    lock = Path(run_dir) / LOCK_NAME
    try:
        if lock.read_text().strip() == _lock_owner():
            lock.unlink()
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- sweeps

def _first_line(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


def _point_record(run_dir: Path, point: dict) -> dict | None:
    """run_dir's record if it is of `point`'s parameters, whatever code version made it; else None."""
    record = records.read_record(run_dir / records.RECORD_NAME)
    if record is None or not isinstance(record.get("params"), dict) or not records.params_match(record["params"], point):
        return None
    return record


def _settled(run_dir: Path, point: dict, version: str | None, retry_failed: bool) -> dict | None:
    """The row of a point that needs no run now, else None. version None: a record of any code version
    counts (an analysis notebook fills gaps; a sweep refreshes what older code recorded)."""
    if (records.record_is_complete(run_dir, point, version) if version is not None
            else _point_record(run_dir, point) is not None):
        return {"status": "done", "seconds": None, "overhead_s": None, "run_dir": str(run_dir),
                "error": None}
    if not retry_failed and (run_dir / ERROR_NAME).exists():
        return {"status": "skipped_failed", "seconds": None, "overhead_s": None,
                "run_dir": str(run_dir), "error": _first_line(run_dir / ERROR_NAME)}
    return None


def _clean_leftovers(run_dir: Path) -> None:
    # Temporary files of a run that was killed; we hold the lock, so nobody is writing them.
    for path in run_dir.glob(".*"):
        if path.name.endswith((".partial.ipynb", ".tmp")):
            path.unlink(missing_ok=True)


def _process(point, run_dir, version, retry_failed, execute, wait) -> dict:
    settled = _settled(run_dir, point, version, retry_failed)
    if settled:
        # A sweep killed after its kernel wrote the record leaves a dead lock and a partial notebook.
        if (run_dir / LOCK_NAME).exists() and try_lock(run_dir):
            _clean_leftovers(run_dir)
            release_lock(run_dir)
        return settled
    while not try_lock(run_dir):
        if not wait:
            return {"status": "busy"}  # another sweep runs it; come back after the other points
        time.sleep(POLL_S)
    try:
        settled = _settled(run_dir, point, version, retry_failed)  # finished while we waited?
        if settled:
            return settled
        _clean_leftovers(run_dir)
        try:
            return execute(point, run_dir)
        except Exception as e:  # the machinery failed (e.g. a dask worker died), not the notebook:
            # report it but write no error.txt, so the next sweep simply runs the point again.
            return {"status": "failed", "seconds": None, "overhead_s": None,
                    "run_dir": str(run_dir), "error": f"{type(e).__name__}: {e}"}
    finally:
        release_lock(run_dir)


def sweep(grid_path, profile: str | None = "quick", jobs: int = 1, dask_address: str | None = None,
          retry_failed: bool = False, results_dir=RESULTS_DIR, progress: bool = True,
          kernel_name: str = "python3", timeout=None):
    """Run every point of a grid that is not done yet; a DataFrame with one row per point.

    Columns: the parameters, status ("done": already recorded by this code, "ran", "failed",
    "skipped_failed": failed earlier, see its error.txt), seconds and overhead_s (this run's wall
    time and the part outside notebook cells), run_dir, error. df.attrs["seconds"] is the total.
    jobs > 1 runs points in threads (each point has its own kernel process); dask_address sends
    points to a dask cluster, at least as many at once as it has worker threads.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not isinstance(jobs, int) or jobs < 1:
        raise StudyError(f"jobs={jobs!r}: give a positive number of points to run at once")
    notebook, points = load_grid(grid_path, profile)
    version = records.code_version()
    run_dirs = [records.default_run_dir(notebook.stem, p, results_dir).resolve() for p in points]
    client = None
    if dask_address:
        import distributed
        client = distributed.Client(dask_address)
        jobs = max(jobs, sum(client.nthreads().values()))

        def execute(point, run_dir):
            return client.submit(run_point, notebook, point, run_dir, kernel_name, timeout,
                                 pure=False).result()
    else:
        def execute(point, run_dir):
            return run_point(notebook, point, run_dir, kernel_name, timeout)

    rows, counts = [None] * len(points), {}
    start = time.perf_counter()
    # Local kernels share this machine's cores: give each 1/jobs of them (torch reads OMP_NUM_THREADS
    # at import), else `jobs` kernels with a thread per core each oversubscribe the CPU.
    threads_set = client is None and jobs > 1 and "OMP_NUM_THREADS" not in os.environ
    if threads_set:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    try:
        with tqdm(total=len(points), desc=notebook.stem, unit="point", disable=not progress) as bar, \
                ThreadPoolExecutor(max_workers=jobs) as pool:
            todo, wait = list(range(len(points))), False
            try:
                while todo:  # a second pass waits for the points other sweeps were running
                    futures = {pool.submit(_process, points[i], run_dirs[i], version, retry_failed,
                                           execute, wait): i for i in todo}
                    todo, wait = [], True
                    for future in as_completed(futures):
                        i, row = futures[future], future.result()
                        if row["status"] == "busy":
                            todo.append(i)
                            continue
                        rows[i] = row
                        counts[row["status"]] = counts.get(row["status"], 0) + 1
                        bar.set_postfix(counts, refresh=False)
                        bar.update(1)
            except BaseException:
                # Ctrl-C: start no new point; those already running finish and keep their records.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        if threads_set:
            os.environ.pop("OMP_NUM_THREADS", None)
        if client is not None:
            client.close()
    df = pd.DataFrame([{**p, **r} for p, r in zip(points, rows)])
    df.attrs.update(seconds=time.perf_counter() - start, notebook=str(notebook), profile=profile)
    return df


def summary(df) -> str:
    """One line: how many points were done, ran, failed, and the total time."""
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    line = (f"{len(df)} points: {counts.get('done', 0)} done, {counts.get('ran', 0)} ran, "
            f"{counts.get('failed', 0)} failed")
    if counts.get("skipped_failed"):
        line += f", {counts['skipped_failed']} skipped (failed before; --retry-failed to rerun)"
    return line + f" in {df.attrs.get('seconds', 0.0):.1f}s"


def main(argv=None) -> int:
    """`python -m helpers sweep GRID ...`: argv is what follows `sweep`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m helpers sweep",
                                     description="Run a notebook over a parameter grid.")
    parser.add_argument("grid", help="grid file, e.g. params/baselines.yaml")
    parser.add_argument("--profile", default="quick", help="profile in the grid file (default: quick)")
    parser.add_argument("--jobs", type=int, default=1, help="points to run at once (default: 1)")
    parser.add_argument("--dask", metavar="ADDRESS", help="dask scheduler, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("--retry-failed", action="store_true", help="run points that failed before")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="default: results/")
    parser.add_argument("--timeout", type=float, help="per-cell time limit in seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        df = sweep(args.grid, profile=args.profile, jobs=args.jobs, dask_address=args.dask,
                   retry_failed=args.retry_failed, results_dir=args.results_dir,
                   progress=not args.no_progress, timeout=args.timeout)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in df[df["status"].isin(["failed", "skipped_failed"])].itertuples():
        print(f"{row.status}: {row.run_dir}: {''.join((row.error or '').splitlines()[:1])}")
    print(summary(df))
    return 1 if df["status"].isin(["failed", "skipped_failed"]).any() else 0


if __name__ == "__main__":
    sys.exit(main())
