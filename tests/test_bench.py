"""`python -m helpers bench` on the synthetic data set, quick mode, tiny batches: keys and sane numbers only
(the machine running the tests is shared, so nothing here asserts a speed)."""
import contextlib
import io
import json

import pytest
import torch

from helpers import bench
from helpers.config import StudyError
from helpers.synthetic import make_synthetic

OBJECTIVES = {"supervised", "contrastive", "generative"}
ENCODERS = {"image", "audio_wave", "audio_mel"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick bench on the synthetic data, through the command line entry point, as JSON."""
    spec = make_synthetic(tmp_path_factory.mktemp("bench-data"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE", str(tmp_path_factory.mktemp("bench-cache")))  # never the user's cache
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            # small shapes and one step: the sections and keys are what is tested here, not the speed
            code = bench.main(["--json", "--quick", "--spec", str(spec), "--batch-size", "16", "--steps", "1",
                               "--warmup", "0", "--image-size", "16", "--clip-seconds", "0.25",
                               "--matmul-size", "256", "--no-pretraining", "--no-progress"])
    assert code == 0
    return json.loads(out.getvalue())  # fails unless stdout is exactly one JSON object


def test_json_has_every_section(report):
    assert {"bench", "machine", "data", "matmul_peak", "throughput", "pipeline", "runs", "cuda",
            "targets"} <= set(report)
    m = report["machine"]
    assert m["cores"] > 0 and m["torch_threads"] > 0 and m["memory_gb"] > 0 and m["torch"] == torch.__version__
    assert m["cpu_model"] and m["device"]
    assert report["bench"]["quick"] is True


def test_data_figures(report):
    d = report["data"]
    assert d["cold_prepare_s"] > 0 and d["warm_load_s"] > 0
    assert d["peak_rss_mb"]["cold"] > 0 and d["peak_rss_mb"]["warm"] > 0 and d["peak_rss_gb"] > 0
    assert d["num_audio"] == 40 and d["num_image"] == 40 and d["failures"] == 0
    assert d["cache_mb"] > 0


def test_throughput_every_encoder_and_objective(report):
    t = report["throughput"]
    assert report["matmul_peak"]["cpu"]["gflops"] > 0 and t["peak_gflops"] > 0
    assert set(t["cases"]) == ENCODERS
    for kind, objs in t["cases"].items():
        assert set(objs) == OBJECTIVES, kind
        for obj, c in objs.items():
            assert c["samples_per_s"] > 0 and c["fwd_mflops_per_sample"] > 0, (kind, obj)
            assert c["achieved_gflops"] > 0 and c["peak_fraction"] > 0 and c["parameters"] > 0
            assert c["source"]


def test_pipeline_and_runs(report):
    p = report["pipeline"]
    assert p["project"]["seconds"] > 0 and p["plain"]["seconds"] > 0 and p["speedup"] > 0
    assert p["project"]["samples"] == p["plain"]["samples"] > 0  # the same run both ways
    r = report["runs"]
    assert r["sweep_overhead"]["status"] == "ran" and r["sweep_overhead"]["per_point_overhead_s"] > 0
    for key in ("quick_profile", "full_study"):
        assert r[key]["available"] is False and "quick" in r[key]["reason"]
    assert r["pretraining"]["available"] is False and r["notebooks"] == []


def test_cuda_null_without_gpu(report):
    if torch.cuda.is_available():
        assert report["cuda"]["devices"] and report["cuda"]["throughput"]
    else:
        assert report["cuda"] is None


def test_targets_listed_with_values(report):
    rows = {t["name"]: t for t in report["targets"]}
    assert set(rows) == {t[0] for t in bench.TARGETS}
    for name in ("warm_load", "cold_prepare", "peak_memory", "image_step_peak_fraction", "pipeline_speedup"):
        assert rows[name]["measured"] > 0 and rows[name]["met"] in (True, False), name
    assert rows["pretraining_run"]["met"] is None  # skipped in quick mode: not measured, not failed


def test_readable_table(report):
    text = bench.format_table(report)
    for heading in ("DATA", "THROUGHPUT cpu", "PIPELINE", "RUNS", "TARGETS", "CUDA"):
        assert heading in text


def test_targets_logic():
    results = {"data": {"warm_load_s": 1.0, "cold_prepare_s": 61.0},
               "pipeline": {"speedup": 5.0}}
    rows = {t["name"]: t for t in bench.evaluate_targets(results)}
    assert rows["warm_load"]["met"] is True
    assert rows["cold_prepare"]["met"] is False
    assert rows["pipeline_speedup"]["met"] is True  # >= is inclusive
    assert rows["peak_memory"]["met"] is None and rows["peak_memory"]["measured"] is None


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_mixed_precision_step_path(objective):
    """The autocast branch the CUDA section uses, run on the CPU in bfloat16 so that it is tested here."""
    task, batch, facts = bench.make_task("image", objective, num_classes=3, image_size=16, clip_samples=4000,
                                         sample_rate=8000, batch_size=4)
    out = bench.time_training_steps(task, batch, torch.device("cpu"), warmup=0, steps=1, amp_dtype=torch.bfloat16)
    assert out["seconds"] > 0 and out["steps"] == 1


def test_minimal_steps_without_pretraining():
    for objective in ("contrastive", "generative"):
        task, batch, facts = bench.make_task("audio_wave", objective, num_classes=3, image_size=16,
                                             clip_samples=4000, sample_rate=8000, batch_size=4,
                                             use_pretraining=False)
        assert facts["source"].startswith("models+objectives")
        assert torch.isfinite(task(*batch))


def test_bad_arguments():
    with pytest.raises(StudyError):
        bench.main(["--steps", "0"])
    with pytest.raises(StudyError):
        bench.make_task("image", "diffusion", num_classes=3, image_size=16, clip_samples=4000, sample_rate=8000,
                        batch_size=4)


def test_pretraining_wrapper_reads_the_record(monkeypatch):
    """bench_pretraining times helpers.pretraining.run_contrastive(params) and keeps its timings."""
    pretraining = pytest.importorskip("helpers.pretraining")
    calls = []

    def fake(params=None, run_dir=None):
        calls.append(params)
        return {"params": {"epochs": 6}, "timings": {"pretrain_s": 1.5, "load_data_s": 0.1}}, {}

    monkeypatch.setattr(pretraining, "run_contrastive", fake)
    out = bench.bench_pretraining("animals")
    assert calls == [{"dataset": "animals", "fraction": 0.8, "progress": False}]
    assert out["available"] is True and out["seconds"] >= 0 and out["epochs"] == 6
    assert out["breakdown_s"] == {"pretrain_s": 1.5, "load_data_s": 0.1}


def test_step_budget_stops_early():
    task, batch, _ = bench.make_task("image", "supervised", num_classes=3, image_size=16, clip_samples=4000,
                                     sample_rate=8000, batch_size=4)
    out = bench.time_training_steps(task, batch, torch.device("cpu"), warmup=0, steps=50, budget_s=0.0)
    assert out["steps"] == 2  # at least two timed steps, then the budget ends it


def test_notebooks_grids_and_full_estimate(tmp_path, monkeypatch):
    """The full-mode run sections on a trivial notebook: default run, a quick grid, the full estimate."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('fraction = 0.2\nepochs = 1\nseed = 0\nrun_dir = ""\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json, os\n"
        "with open(os.path.join(run_dir, 'metrics.json'), 'w') as f:\n"
        "    json.dump({'params': {'fraction': fraction, 'epochs': epochs, 'seed': seed}}, f)\n")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = tmp_path / "tiny.ipynb"
    nbformat.write(nb, notebook)
    grid = tmp_path / "tiny.yaml"
    grid.write_text("notebook: tiny.ipynb\nprofiles:\n  quick: {params: {fraction: [0.2, 0.5], epochs: 1}}\n"
                    "  full: {seeds: [0, 1], params: {fraction: [0.2, 0.5, 0.8], epochs: 4}}\n")
    monkeypatch.setattr(bench, "_notebooks", lambda: [notebook])
    monkeypatch.setattr(bench, "_grids", lambda: [grid])
    rows = bench.bench_notebooks("animals", tmp_path / "nb")
    assert rows[0]["notebook"] == "tiny.ipynb" and rows[0]["status"] == "ran" and rows[0]["seconds"] > 0
    quick, full = bench.bench_grids(tmp_path / "sweeps", rows)
    assert quick["available"] and quick["seconds"] > 0
    assert quick["grids"][0]["ran"] == 2 and quick["grids"][0]["failed"] == 0
    # tiny.ipynb has a grid, so it is not counted again as a notebook run once at its defaults
    assert full["available"] and full["unique_points"] == 6 and full["notebooks_once_s"] == {}
    assert full["grids"]["tiny"]["points"] == 6 and full["seconds"] > 0 and full["full_profile_errors"] == {}


def test_measured_study_is_the_union_of_the_points_intervals(tmp_path, monkeypatch):
    """Two overlapping points and one later (a parallel sweep, then another grid): wall time is the union
    of the intervals; a point without a record of the current code does not count."""
    import nbformat

    from helpers import records
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 0\nseed = 0\nrun_dir = ""\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    (tmp_path / "tiny.yaml").write_text("notebook: tiny.ipynb\nprofiles:\n  full: {params: {x: [1, 2, 3, 4]}}\n")
    monkeypatch.setattr(bench, "_grids", lambda: [tmp_path / "tiny.yaml"])
    monkeypatch.setattr(records, "code_version", lambda root=None: "pinned")
    times = {1: ("10:00:00", "10:01:40"), 2: ("10:00:30", "10:02:00"), 3: ("10:05:00", "10:05:10"),
             4: ("11:00:00", "11:30:00")}
    for x, (start, end) in times.items():
        run_dir = records.default_run_dir("tiny", {"x": x}, tmp_path / "results")
        records.write_record(run_dir, {"params": {"x": x, "seed": 0},
                                       **({"code_version": "older"} if x == 4 else {})})
        executed = nbformat.v4.new_notebook()
        executed.metadata["papermill"] = {"start_time": f"2026-11-25T{start}+00:00",
                                          "end_time": f"2026-11-25T{end}+00:00", "exception": None}
        nbformat.write(executed, run_dir / "tiny.ipynb")
    out = bench.measured_study(tmp_path / "results")
    assert out["available"] and out["unique_points"] == 3 and not out["complete"]
    assert out["wall_s"] == pytest.approx(120 + 10) and out["compute_s"] == pytest.approx(100 + 90 + 10)
    assert out["grids"]["tiny.yaml"] == {"points": 4, "found": 3}
    assert not bench.measured_study(tmp_path / "elsewhere")["available"]


def test_fit_time():
    fixed, per_unit = bench._fit_time([(0.4, 100.0), (1.0, 160.0)])
    assert fixed == pytest.approx(60.0) and per_unit == pytest.approx(100.0)
    assert bench._fit_time([(0.4, 100.0), (0.4, 120.0)]) == (0.0, pytest.approx(275.0))
