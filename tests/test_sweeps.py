"""Sweeps over a tiny notebook run by real papermill kernels (a few seconds per test)."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import nbformat
import pytest

from helpers import records, sweeps
from helpers.config import REPO_ROOT, StudyError

KERNEL = "python3"  # the venv's kernelspec runs `python`, which jupyter_client maps to sys.executable
# Other files in helpers/ may be edited while the tests run, which changes the real code version
# between a sweep and its rerun; most tests pin it (in the notebook's record and in the sweep).
PINNED = "pinned-code"


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setattr(records, "code_version", lambda root=None: PINNED)
    return PINNED


def make_notebook(folder, version):
    """A notebook that logs each start to runs.log, naps, fails when x == 13, else writes a record."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        f'x = 1\nseed = 0\nnap = 0.0\nrun_dir = ""\nlog = {str(folder / "runs.log")!r}\nversion = {version!r}')
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(
        "import os, time\n"
        "from helpers.records import write_record\n"
        "with open(log, 'a') as f:\n"
        "    f.write(f'{x} {seed}\\n')\n"
        "time.sleep(nap)\n"
        "if x == 13:\n"
        "    raise ValueError('unlucky x')\n"
        "record = {'params': {'x': x, 'seed': seed, 'nap': nap}, 'metrics': {'y': 2 * x},\n"
        "          'cwd': os.getcwd(), 'omp': os.environ.get('OMP_NUM_THREADS')}\n"
        "if version:\n"
        "    record['code_version'] = version\n"
        "write_record(run_dir, record)\n")
    nb.cells = [params, work]
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def make_grid(folder, text, version=PINNED):
    make_notebook(folder, version)
    path = folder / "grid.yaml"
    path.write_text("notebook: tiny.ipynb\ndescription: test grid\n" + text)
    return path


def runs_log(folder):
    log = folder / "runs.log"
    return Counter(log.read_text().splitlines()) if log.exists() else Counter()


def run_sweep(grid, tmp_path, **kw):
    return sweeps.sweep(grid, results_dir=tmp_path / "results", progress=False, **kw)


def test_load_grid_expands_profile_params_times_seeds(tmp_path):
    grid = make_grid(tmp_path, """
profiles:
  quick: {seeds: [0, 1], params: {x: [1, 2, 3]}}
  full: {seeds: [0, 1, 2], params: {x: [1, 2, 3, 4]}}
params:
  x: 7
  nap: {value: [0.1, 0.2]}
""")
    notebook, points = sweeps.load_grid(grid, "quick")
    assert notebook == (tmp_path / "tiny.ipynb").resolve()
    assert points == [{"x": x, "nap": [0.1, 0.2], "seed": s} for s in (0, 1) for x in (1, 2, 3)]
    assert len(sweeps.load_grid(grid, "full")[1]) == 12


def test_variants_change_one_factor_at_a_time(tmp_path):
    grid = make_grid(tmp_path, """
params: {x: 1, nap: 0.0}
seeds: [0, 1]
variants: [{}, {x: 2}, {x: 3, nap: 0.5}]
profiles:
  quick: {}
  one: {variants: [{x: 5}]}
""")
    _, points = sweeps.load_grid(grid, "quick")
    assert points == [{"x": x, "nap": nap, "seed": s} for s in (0, 1) for x, nap in ((1, 0.0), (2, 0.0), (3, 0.5))]
    assert sweeps.load_grid(grid, "one")[1] == [{"x": 5, "nap": 0.0, "seed": s} for s in (0, 1)]


@pytest.mark.parametrize("text, message", [
    ("variants: [{}, {fration: 1}]", r"unknown parameter\(s\) \['fration'\]"),
    ("variants: [{x: 2}, {x: 2}]", "lists a variant twice"),
    ("variants: {x: 2}", "must be a non-empty list of mappings"),
    ("variants: [{seed: 3}]", "may not set seed"),
    ("params: {fration: [0.2], x: 1}", r"grid.yaml: unknown parameter\(s\) \['fration'\].*takes"),
    ("params: {x: [1]}\nprofiles: {quick: {seeds: [0]}}\nprofile: x", r"unknown key\(s\) \['profile'\]"),
    ("profiles: {full: {seeds: [0]}}", r"no profile 'quick'; choose one of \['full'\]"),
    ("params: {x: [1, 1]}", "lists a value twice"),
    ("params: {x: []}", "empty list"),
    ("seeds: [0, -1]", r"grid.yaml \(profile 'quick'\): parameter seed=-1"),
    ("params: {run_dir: /tmp}", "remove run_dir"),
    ("params: [x", "not valid YAML"),
])
def test_load_grid_names_the_problem(tmp_path, text, message):
    grid = make_grid(tmp_path, text)
    with pytest.raises(StudyError, match=message):
        sweeps.load_grid(grid, "quick")


def test_typo_is_named_with_a_suggestion(tmp_path):
    grid = make_grid(tmp_path, "params: {sed: [0, 1]}")
    with pytest.raises(StudyError) as err:
        sweeps.load_grid(grid)
    assert "'sed' -> 'seed'" in str(err.value) and str(grid) in str(err.value)
    with pytest.raises(StudyError, match="not found"):
        sweeps.load_grid(tmp_path / "nope.yaml")


def test_sweep_runs_every_point_in_parallel_then_skips_them(tmp_path, monkeypatch):
    # The real code version: the kernel's record and the sweep must agree on it.
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    grid = make_grid(tmp_path, "profiles: {quick: {seeds: [0], params: {x: [1, 2]}}}", version="")
    df = run_sweep(grid, tmp_path, jobs=2)
    assert list(df["status"]) == ["ran", "ran"] and list(df["x"]) == [1, 2]
    assert (df["seconds"] > 0).all() and (df["overhead_s"] >= 0).all()
    for row in df.itertuples():
        record = records.read_record(row.run_dir)
        assert record["metrics"]["y"] == 2 * row.x and record["cwd"] == str(REPO_ROOT)
        assert record["omp"] == str(max(1, os.cpu_count() // 2))   # 2 kernels share the cores
        assert row.run_dir == str(records.default_run_dir("tiny", {"x": row.x, "seed": 0},
                                                          tmp_path / "results").resolve())
        assert sorted(os.listdir(row.run_dir)) == ["metrics.json", "tiny.ipynb"]
    again = run_sweep(grid, tmp_path)
    assert list(again["status"]) == ["done", "done"]
    assert runs_log(tmp_path) == {"1 0": 1, "2 0": 1}


def test_failed_point_is_reported_and_skipped_until_retried(tmp_path, capsys, pinned):
    grid = make_grid(tmp_path, "profiles: {quick: {seeds: [0], params: {x: [1, 13]}}}")
    df = run_sweep(grid, tmp_path)
    assert list(df["status"]) == ["ran", "failed"]
    failed = df.iloc[1]
    assert "ValueError: unlucky x" in failed["error"]
    assert "unlucky x" in open(os.path.join(failed["run_dir"], "error.txt")).read()
    assert not os.path.exists(os.path.join(failed["run_dir"], "metrics.json"))

    # The CLI skips it, says so, and exits non-zero; nothing runs again.
    code = sweeps.main([str(grid), "--results-dir", str(tmp_path / "results"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1 and "1 done" in out and "1 skipped" in out and "unlucky x" in out
    assert runs_log(tmp_path) == {"1 0": 1, "13 0": 1}

    df = run_sweep(grid, tmp_path, retry_failed=True)
    assert list(df["status"]) == ["done", "failed"]
    assert runs_log(tmp_path) == {"1 0": 1, "13 0": 2}


def cli(grid, tmp_path, *extra):
    pin = (f"import sys; from helpers import records, sweeps; records.code_version = lambda root=None: "
           f"{PINNED!r}; sys.exit(sweeps.main(sys.argv[1:]))")
    return subprocess.Popen(
        [sys.executable, "-c", pin, str(grid), "--results-dir", str(tmp_path / "results"),
         "--no-progress", *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own process group, so the test can clean up its kernels


def test_two_concurrent_sweeps_run_each_point_once(tmp_path, pinned):
    grid = make_grid(tmp_path, "profiles: {quick: {seeds: [0, 1], params: {x: [1, 2], nap: 0.3}}}")
    first, second = cli(grid, tmp_path), cli(grid, tmp_path)
    outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert all("4 points" in out for out in outputs)
    assert runs_log(tmp_path) == {"1 0": 1, "2 0": 1, "1 1": 1, "2 1": 1}
    paths = sorted((tmp_path / "results" / "runs").rglob("metrics.json"))
    assert len(paths) == 4 and all(json.loads(p.read_text())["metrics"] for p in paths)
    assert not list((tmp_path / "results").rglob(".lock"))


def test_sweep_killed_midway_resumes_and_keeps_finished_points(tmp_path, pinned):
    grid = make_grid(tmp_path, "profiles: {quick: {seeds: [0], params: {x: [1, 2, 3, 4], nap: 0.8}}}")
    proc = cli(grid, tmp_path)
    try:
        deadline = time.time() + 60
        while not list((tmp_path / "results").rglob("metrics.json")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # now in the middle of the next point
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = {p.parent: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("metrics.json")}
        assert 1 <= len(finished) < 4

        df = run_sweep(grid, tmp_path)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the killed sweep's orphan kernel, if still alive
        except ProcessLookupError:
            pass
    assert set(df["status"]) <= {"done", "ran"} and (df["status"] == "done").sum() >= len(finished)
    for run_dir, mtime in finished.items():  # completed points kept, not recomputed
        assert (run_dir / "metrics.json").stat().st_mtime_ns == mtime
    assert all(records.record_is_complete(d, {"x": x, "seed": 0}, PINNED)
               for d, x in zip(df["run_dir"], df["x"]))
    leftovers = [p.name for p in (tmp_path / "results").rglob(".*") if p.is_file()]
    assert leftovers == []  # no stale lock, no partial notebook


def test_lock_file_is_exclusive_and_stale_locks_are_broken(tmp_path):
    assert sweeps.try_lock(tmp_path)
    assert not sweeps.try_lock(tmp_path)  # held by a live process (us)
    sweeps.release_lock(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid} {os.uname().nodename}\n")
    assert sweeps.try_lock(tmp_path)  # its owner is gone: broken and taken
    sweeps.release_lock(tmp_path)
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text("")  # just created by someone who has not written the pid yet
    assert not sweeps.try_lock(tmp_path)


def test_sweep_on_a_local_dask_cluster(tmp_path, pinned):
    distributed = pytest.importorskip("distributed")
    grid = make_grid(tmp_path, "profiles: {quick: {seeds: [0, 1], params: {x: 5}}}")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        df = run_sweep(grid, tmp_path, dask_address=cluster.scheduler_address)
    assert list(df["status"]) == ["ran", "ran"]
    assert runs_log(tmp_path) == {"5 0": 1, "5 1": 1}
