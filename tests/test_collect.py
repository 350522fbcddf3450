"""Collecting a grid's records for the analysis notebooks (helpers.sweeps: collect_grid, collect_grids,
collect_analysis, run_missing_points) on a fake notebook and fake records in tmp_path; no kernel is started."""
import os

import nbformat
import pytest
from fake_records import write_fake_at_point

from helpers import collect, records, sweeps
from helpers.config import StudyError

STEM = "99_fake_grid"   # not one of the study's notebooks: its parameters cell names what it takes


@pytest.fixture
def grid(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('fraction = 0.8\nnoise = 0.0\nseed = 0\nepochs = 1\nrun_dir = ""')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / f"{STEM}.ipynb")
    path = tmp_path / "grid.yaml"
    path.write_text(f"notebook: {STEM}.ipynb\nprofiles:\n  quick: {{seeds: [0, 1], params: {{noise: [0.0, 0.2]}}}}\n")
    return path


@pytest.fixture
def folder(tmp_path):
    """Records for three of the grid's four points; the fourth failed before (its error.txt)."""
    folder = tmp_path / "results"
    for seed in (0, 1):
        write_fake_at_point(folder, STEM, {"noise": 0.0, "seed": seed})
    write_fake_at_point(folder, STEM, {"noise": 0.2, "seed": 0})
    failed_dir = records.default_run_dir(STEM, {"noise": 0.2, "seed": 1}, folder)
    failed_dir.mkdir(parents=True)
    (failed_dir / "error.txt").write_text("ValueError: boom\n")
    return folder


def test_resolve_results_dir_follows_study_results(monkeypatch, tmp_path):
    monkeypatch.setattr(collect, "RESULTS_DIR", tmp_path / "elsewhere")
    assert collect.resolve_results_dir("results") == tmp_path / "elsewhere"
    assert collect.resolve_results_dir("") == tmp_path / "elsewhere"
    assert collect.resolve_results_dir(tmp_path / "x") == tmp_path / "x"
    assert collect.resolve_results_dir("other") == collect.REPO_ROOT / "other"


def test_collect_grid_reads_point_records_and_reports_gaps(grid, folder):
    got = collect.collect_grid(grid, "quick", folder)
    assert len(got["points"]) == 4 and len(got["records"]) == 3 and got["missing"] == [{"noise": 0.2, "seed": 1}]
    assert got["failed"][0]["error"] == "ValueError: boom" and not got["ran"] and got["notebook"] == STEM
    # run_missing leaves a point that failed before alone (no kernel is started here)
    again = collect.collect_grid(grid, "quick", folder, run_missing=True)
    assert list(again["sweep"]["status"]) == ["skipped_failed"] and len(again["records"]) == 3
    recs, status = collect.collect_grids([grid, "no_such_grid"], "quick", folder)
    assert len(recs) == 3 and status["records"].tolist() == [3, 0] and "skipped" in status["note"].iloc[1]


def test_run_missing_points_uses_the_sweeps_point_code(monkeypatch, tmp_path, grid, folder):
    calls, ran = [], []
    process = sweeps._process

    def spy(point, run_dir, version, retry_failed, execute, wait):
        calls.append((point, version, retry_failed, wait))
        return process(point, run_dir, version, retry_failed, execute, wait)

    def fake_run_point(notebook, point, run_dir, timeout=None):
        assert (run_dir / sweeps.LOCK_NAME).exists()           # the point lock is held while it runs
        ran.append(point)
        records.write_record(run_dir, {"params": dict(point), "results": [], "code_version": "older"})
        return {"status": "ran", "seconds": 0.1, "overhead_s": 0.0, "run_dir": str(run_dir), "error": None}

    monkeypatch.setattr(collect, "_process", spy)
    monkeypatch.setattr(collect, "run_point", fake_run_point)
    notebook = grid.parent / f"{STEM}.ipynb"
    points = [{"noise": 0.0, "seed": 0}, {"noise": 0.5, "seed": 3}, {"noise": 0.2, "seed": 1}]
    table = collect.run_missing_points(notebook, points, folder)
    assert list(table["status"]) == ["done", "ran", "skipped_failed"] and ran == [{"noise": 0.5, "seed": 3}]
    assert [c[1:] for c in calls] == [(None, False, True)] * 3   # any code version counts; failures stay
    new_dir = records.default_run_dir(STEM, points[1], folder)
    assert not (new_dir / sweeps.LOCK_NAME).exists() and table["run_dir"].iloc[1] == str(new_dir.resolve())
    # the record by "older" code is enough for an analysis, not for a sweep
    assert sweeps._settled(new_dir, points[1], None, False)["status"] == "done"
    assert sweeps._settled(new_dir, points[1], "newer", False) is None


def test_collect_analysis_stacks_grids_and_says_what_is_missing(grid, folder, tmp_path):
    got = collect.collect_analysis(f"{grid}, no_such_grid", "quick", folder)
    assert got["grids"] == [str(grid), "no_such_grid"] and got["results_dir"] == folder
    assert len(got["records"]) == 3 and set(got["df"]["seed"]) == {0, 1} and set(got["df"]["noise"]) == {0.0, 0.2}
    assert got["status"]["records"].tolist() == [3, 0]
    assert got["notes"] == ["No records for no_such_grid (see the status table): those methods are missing here.",
                            "**1 point(s) failed** (their error.txt is named in the status table); rerun with "
                            "`python -m helpers sweep ... --retry-failed`."]
    with pytest.raises(StudyError, match=r"no records for grids .*python -m helpers sweep params/no_such_grid.yaml"):
        collect.collect_analysis("no_such_grid", "quick", tmp_path / "empty")
    with pytest.raises(StudyError, match="at least one grid"):
        collect.collect_analysis(" , ", "quick", folder)


def test_measured_study_is_the_union_of_the_points_intervals(tmp_path, monkeypatch):
    """Overlapping points (a parallel sweep), one inside another, one later (another grid): the wall time is
    the union of the intervals, the compute time their sum; a point recorded by other code does not count."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 0\nseed = 0\nrun_dir = ""\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    (tmp_path / "tiny.yaml").write_text("notebook: tiny.ipynb\nprofiles:\n  full: {params: {x: [1, 2, 3, 4, 5]}}\n")
    monkeypatch.setattr(collect, "grid_files", lambda: [tmp_path / "tiny.yaml"])
    monkeypatch.setattr(records, "code_version", lambda root=None: "pinned")
    times = {1: ("10:00:00", "10:01:40"), 2: ("10:00:30", "10:02:00"), 3: ("10:05:00", "10:05:10"),
             4: ("11:00:00", "11:30:00"), 5: ("10:00:10", "10:00:20")}
    for x, (start, end) in times.items():
        run_dir = records.default_run_dir("tiny", {"x": x}, tmp_path / "results")
        records.write_record(run_dir, {"params": {"x": x, "seed": 0},
                                       **({"code_version": "older"} if x == 4 else {})})
        executed = nbformat.v4.new_notebook()
        executed.metadata["papermill"] = {"start_time": f"2026-11-25T{start}+00:00",
                                          "end_time": f"2026-11-25T{end}+00:00", "exception": None}
        nbformat.write(executed, run_dir / "tiny.ipynb")
    out = collect.measured_study(tmp_path / "results")
    assert out["available"] and out["unique_points"] == 4 and not out["complete"]
    assert out["wall_s"] == pytest.approx(120 + 10) and out["compute_s"] == pytest.approx(100 + 90 + 10 + 10)
    assert out["grids"]["tiny.yaml"] == {"points": 5, "found": 4}
    assert out["first_start"].startswith("2026-11-25T10:00:00") and out["last_end"].startswith("2026-11-25T10:05:10")
    assert out["timed_by"] == {"notebook": 4}
    assert not collect.measured_study(tmp_path / "elsewhere")["available"]
    # a record that says when it started and was written is timed by itself: no executed notebook needed
    run_dir = records.default_run_dir("tiny", {"x": 3}, tmp_path / "results")
    (run_dir / "tiny.ipynb").unlink()
    records.write_record(run_dir, {"params": {"x": 3, "seed": 0}, "started_at": "2026-11-25T10:05:00+0000",
                                   "written_at": "2026-11-25T10:06:00+0000"})
    out = collect.measured_study(tmp_path / "results")
    assert out["timed_by"] == {"notebook": 3, "record": 1} and out["wall_s"] == pytest.approx(120 + 60)


def test_compare_records_counts_the_items_that_differ():
    a = {"code_version": "v", "results": [{"method": "m", "protocol": "p", "view": "audio", "test_set": "test",
                                           "accuracy": 0.5}, {"method": "m", "protocol": "p", "view": "image",
                                                              "test_set": "test", "accuracy": 0.25}],
         "predictions": {"m/p/audio/test": [0, 1, 2, 3], "m/p/image/test": [1, 1, 1, 1]}}
    same = collect.compare_records(a, a)
    assert same["rows"] == same["rows_equal"] == 2 and same["max_accuracy_diff"] == 0 and not same["items_differ"]
    b = {**a, "results": [dict(a["results"][0]), dict(a["results"][1], accuracy=0.5)],
         "predictions": {"m/p/audio/test": [0, 1, 2, 3], "m/p/image/test": [1, 2, 1, 2]}}
    c = collect.compare_records(a, b)
    assert c["rows_equal"] == 1 and c["max_accuracy_diff"] == pytest.approx(0.25)
    assert c["items_differ"] == {"m/p/image/test": 2} and c["prediction_rows_identical"] == 1
    # a re-run that lost a row is counted, not passed over
    lost = {**a, "results": a["results"][:1], "predictions": {"m/p/audio/test": [0, 1, 2, 3]}}
    c = collect.compare_records(a, lost)
    assert c["rows"] == c["rows_equal"] == 1 and c["rows_only_one_side"] == 1
    assert c["prediction_rows_only_one_side"] == 1 and not c["items_differ"]


def test_reproduce_reruns_committed_points_into_a_scratch_folder(monkeypatch, tmp_path, grid, folder):
    """Each chosen point runs again (one torch thread per kernel, as the study) into the scratch folder and is
    compared with its committed record; a point whose record another code version made is not run."""
    monkeypatch.setattr(records, "code_version", lambda root=None: "fakecode")
    seen = []

    def fake_run_point(notebook, params, run_dir, **kw):
        seen.append((params["seed"], os.environ.get("OMP_NUM_THREADS"), str(run_dir)))
        committed = records.read_record(records.default_run_dir(STEM, params, folder) / records.RECORD_NAME)
        if params["seed"] == 1:        # this point does not reproduce: one prediction changes
            key = next(iter(committed["predictions"]))
            committed["predictions"][key] = [p + 1 for p in committed["predictions"][key][:1]] + \
                committed["predictions"][key][1:]
        records.write_record(run_dir, committed)
        return {"status": "ran", "seconds": 1.0, "run_dir": str(run_dir)}
    monkeypatch.setattr(collect, "run_point", fake_run_point)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _, points = sweeps.load_grid(grid, "quick")
    at = {(p["noise"], p["seed"]): i for i, p in enumerate(points)}
    out = collect.reproduce(grid, "quick", [at[(0.0, 0)]], tmp_path / "scratch", folder)
    assert out["identical"] and seen == [(0, "1", seen[0][2])] and seen[0][2].startswith(str(tmp_path / "scratch"))
    assert "OMP_NUM_THREADS" not in os.environ      # restored
    out = collect.reproduce(grid, "quick", [at[(0.0, 0)], at[(0.0, 1)], at[(0.2, 1)]], tmp_path / "s2", folder)
    assert not out["identical"] and [e["status"] for e in out["points"]] == ["ran", "ran", "not reproducible here"]
    assert sum(out["points"][1]["items_differ"].values()) == 1
    with pytest.raises(StudyError, match="scratch folder"):
        collect.reproduce(grid, "quick", [0], folder, folder)
    with pytest.raises(StudyError, match="no point"):
        collect.reproduce(grid, "quick", [9], tmp_path / "s3", folder)


def test_collect_analysis_keeps_one_codes_records_and_says_what_it_left_out(grid, tmp_path):
    folder = tmp_path / "mixed"
    for seed, version, when in ((0, "oldcode", "2026-01-01T00:00:00"), (1, "newcode", "2026-02-01T00:00:00")):
        path = write_fake_at_point(folder, STEM, {"noise": 0.0, "seed": seed})
        record = records.read_record(path)
        record.update(code_version=version, written_at=when)
        path.write_text(__import__("json").dumps(record))
    got = collect.collect_analysis(str(grid), "quick", folder)
    assert {r["code_version"] for r in got["records"]} == {"newcode"} and set(got["df"]["seed"]) == {1}
    assert any("1 of code `oldcode` left out" in n for n in got["notes"])
