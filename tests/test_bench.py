"""`python -m helpers bench` on the synthetic data set, quick mode, tiny shapes: sections, keys and the
wiring to the project's code. Nothing here asserts a speed: the machine running the tests is shared, and
the speed targets live in helpers.bench.TARGETS."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import bench, models, objectives, pretraining, schema, training
from helpers.config import StudyError
from helpers.synthetic import make_synthetic

TINY = dict(num_classes=3, image_size=16, clip_samples=2000, sample_rate=8000, batch_size=4)
PROJECT = {"supervised": (F, "cross_entropy", models.Classifier),
           "contrastive": (objectives, "info_nce", pretraining.ContrastiveModel),
           "generative": (pretraining, "generative_loss", pretraining.PairedVAE)}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick bench on the synthetic data at tiny shapes, as the JSON `--json` prints."""
    spec = make_synthetic(tmp_path_factory.mktemp("bench-data"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE", str(tmp_path_factory.mktemp("bench-cache")))  # never the user's cache
        results = bench.run_bench(str(spec), quick=True, batch_size=8, steps=1, warmup=0, image_size=16,
                                  clip_seconds=0.25, matmul_size=256, pretraining=False, progress=False)
    return json.loads(json.dumps(results))  # fails unless it is JSON-ready


def test_json_has_every_section(report):
    assert {"bench", "machine", "data", "matmul_peak", "throughput", "pipeline", "runs", "cuda",
            "targets"} <= set(report)
    m = report["machine"]
    assert m["cores"] > 0 and m["torch_threads"] > 0 and m["memory_gb"] > 0 and m["torch"] == torch.__version__
    assert m["cpu_model"] and m["device"] and m["load_avg_1m_end"] is not None
    assert report["bench"]["quick"] is True and report["bench"]["seconds"] > 0


def test_batched_seeds_time_the_same_models_apart_and_together(report):
    from helpers.bench import ENCODERS
    assert set(report["batched_seeds"]) == set(ENCODERS)
    for kind, b in report["batched_seeds"].items():
        assert "error" not in b, b
        assert b["seeds"] == 3 and b["apart_step_ms"] > 0 and b["together_step_ms"] > 0
        assert b["gain"] == pytest.approx(b["apart_step_ms"] / b["together_step_ms"], rel=0.05)
        assert b["used_by_the_study"] is False


def test_data_figures(report):
    d = report["data"]
    assert d["cold_prepare_s"] > 0 and d["warm_load_s"] > 0 and len(d["warm_runs_s"]) == 1
    assert d["peak_rss_mb"]["cold"] > 0 and d["peak_rss_mb"]["warm"] > 0 and d["peak_rss_gb"] > 0
    assert d["num_audio"] == 40 and d["num_image"] == 40 and d["failures"] == 0
    assert d["cache_mb"] > 0


def test_throughput_measures_every_project_step(report):
    t = report["throughput"]
    assert report["matmul_peak"]["cpu"]["gflops"] > 0 and t["peak_gflops"] == report["matmul_peak"]["cpu"]["gflops"]
    measured = {(kind, obj) for kind, objs in t["cases"].items() for obj in objs}
    assert measured == set(bench.CASES)
    assert {obj for _, obj in bench.CASES} == set(PROJECT)
    for kind, obj in bench.CASES:
        c = t["cases"][kind][obj]
        assert c["samples_per_s"] > 0 and c["fwd_mflops_per_sample"] > 0 and c["timed_steps"] == 1, (kind, obj)
        assert c["achieved_gflops"] > 0 and 0 < c["peak_fraction"] and c["parameters"] > 0
        module, name, model = PROJECT[obj]
        assert c["source"] == f"{model.__module__}.{model.__name__} + {getattr(module, name).__module__}.{name}"
        assert c["towers"] == ([kind] if obj == "supervised" else [kind, "image"])


def test_pipeline_and_runs(report):
    p = report["pipeline"]
    assert p["project"]["seconds"] > 0 and p["plain"]["seconds"] > 0 and p["speedup"] > 0
    assert p["project"]["samples"] == p["plain"]["samples"] > 0  # the same run both ways
    assert p["plain"]["odd_rate_files"] == 0  # the synthetic clips are at ordinary rates
    r = report["runs"]
    assert set(r) == {"sweep_overhead", "pretraining", "quick_profile", "full_study_measured"}
    assert r["sweep_overhead"]["status"] == "ran" and r["sweep_overhead"]["per_point_overhead_s"] > 0
    assert r["quick_profile"]["available"] is False and "quick" in r["quick_profile"]["reason"]
    assert r["pretraining"]["available"] is False
    assert "available" in r["full_study_measured"]


def test_cuda_section_matches_the_machine(report):
    if torch.cuda.is_available():
        assert report["cuda"]["devices"] and set(report["cuda"]["throughput"]) >= {"float32", "float16"}
    else:
        assert report["cuda"] is None


def test_targets_listed_with_values(report):
    rows = {t["name"]: t for t in report["targets"]}
    assert list(rows) == [t[0] for t in bench.TARGETS]
    for name in ("warm_load", "cold_prepare", "peak_memory", "image_step_peak_fraction", "pipeline_speedup"):
        assert rows[name]["measured"] > 0 and rows[name]["met"] in (True, False), name
    for name in ("pretraining_run", "quick_profile"):  # skipped here: not measured, not failed
        assert rows[name]["measured"] is None and rows[name]["met"] is None, name


def test_readable_table(report):
    text = bench.format_table(report)
    assert report["machine"]["cpu_model"] in text
    for t in report["targets"]:
        assert t["what"] in text and t["target"] in text


def test_command_line_prints_what_run_bench_returns(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: calls.append(kw) or {"seen": kw["spec"]})
    assert bench.main(["--json", "--quick", "--spec", "other", "--no-pretraining", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out) == {"seen": "other"}
    assert calls[0]["quick"] is True and calls[0]["pretraining"] is False and calls[0]["progress"] is False
    assert calls[0]["grids"] is True
    assert bench.main(["--json", "--no-grids"]) == 0 and calls[1]["grids"] is False
    with pytest.raises(StudyError):
        bench.main(["--notebook-timeout", "0"])


def test_targets_logic():
    results = {"data": {"warm_load_s": 1.0, "cold_prepare_s": 61.0}, "pipeline": {"speedup": 3.0},
               "runs": {"full_study_measured": {"wall_s": True}}}
    rows = {t["name"]: t for t in bench.evaluate_targets(results)}
    assert rows["warm_load"]["met"] is True
    assert rows["cold_prepare"]["met"] is False
    assert rows["pipeline_speedup"]["met"] is True  # >= is inclusive
    assert rows["peak_memory"]["met"] is None and rows["peak_memory"]["measured"] is None
    assert rows["full_study_measured"]["measured"] is None  # a bool is not a measurement
    # a time of work that failed or is partial meets nothing, however short it was
    partial = {"runs": {"full_study_measured": {"wall_s": 60.0, "complete": False},
                        "quick_profile": {"seconds": 5.0, "grids": [{"grid": "noise_02.yaml", "failed": 2}]},
                        "pretraining": {"error": "Traceback\nboom"}}}
    rows = {t["name"]: t for t in bench.evaluate_targets(partial)}
    assert rows["full_study_measured"]["met"] is False and "not every point" in rows["full_study_measured"]["why"]
    assert rows["quick_profile"]["met"] is False and "noise_02.yaml" in rows["quick_profile"]["why"]
    assert rows["pretraining_run"]["met"] is False and rows["pretraining_run"]["why"] == "failed: Traceback"
    complete = {"runs": {"full_study_measured": {"wall_s": 60.0, "complete": True}}}
    assert bench.evaluate_targets(complete)[-1]["met"] is True and "why" not in bench.evaluate_targets(complete)[-1]


@pytest.mark.parametrize("objective", sorted(PROJECT))
def test_the_bench_step_is_the_projects(objective, monkeypatch):
    """The bench builds the project's model and calls the project's loss object through the project's loop
    (training.fit): swapping any of them in the project changes what the bench runs."""
    module, name, model_class = PROJECT[objective]
    original, losses, fits = getattr(module, name), [], []
    monkeypatch.setattr(module, name, lambda *a, **kw: losses.append(1) or original(*a, **kw))
    real_fit = training.fit
    monkeypatch.setattr(training, "fit", lambda *a, **kw: fits.append(kw["batch_size"]) or real_fit(*a, **kw))
    kind = "image" if objective == "supervised" else "audio_mel"
    step, batch = bench.training_step(kind, objective, **TINY)
    assert isinstance(step.model, model_class) and step.loss is getattr(module, name)
    out = bench.time_training_steps(step, batch, torch.device("cpu"), warmup=1, steps=2)
    assert out["steps"] == 2 and out["seconds"] > 0
    assert len(losses) == 3 and fits == [4, 4]  # one warm-up step and two timed ones, each a fit() of batch 4


def test_pair_models_are_built_as_the_notebooks_build_them():
    """At the notebooks' default sizes (helpers.schema): the contrastive objective, the MVAE."""
    con, (clips, images) = bench.training_step("audio_wave", "contrastive", **TINY)
    assert type(con.model.encoders["audio"]) is type(models.make_encoder("audio_wave"))
    proj_dim = schema.defaults("03_contrastive")["proj_dim"]
    assert con.model.ssl_heads is None and con.model.project("image", images).shape == (4, proj_dim)
    gen, _ = bench.training_step("audio_mel", "generative", **TINY)
    assert gen.model.shared is True and gen.loss_kw["beta"] == schema.defaults("04_generative")["beta"]
    assert gen.model.heads["image"](torch.zeros(2, 128))[0].shape == (2, schema.defaults("04_generative")["latent_dim"])
    assert clips.shape == (4, TINY["clip_samples"]) and images.shape == (4, 3, 16, 16)


@pytest.mark.parametrize("objective", sorted(PROJECT))
def test_mixed_precision_step_path(objective):
    """The autocast branch the CUDA section uses, run on the CPU in bfloat16 so that it is tested here."""
    step, batch = bench.training_step("image" if objective == "supervised" else "audio_mel", objective, **TINY)
    out = bench.time_training_steps(step, batch, torch.device("cpu"), warmup=0, steps=1, amp_dtype=torch.bfloat16)
    assert out["seconds"] > 0 and out["steps"] == 1


def test_unknown_steps_are_refused():
    with pytest.raises(StudyError):
        bench.training_step("image", "diffusion", **TINY)
    with pytest.raises(StudyError):  # a pair model is named by its audio encoder
        bench.training_step("image", "contrastive", **TINY)


def test_step_budget_caps_the_timed_steps():
    step, batch = bench.training_step("image", "supervised", **TINY)
    out = bench.time_training_steps(step, batch, torch.device("cpu"), warmup=1, steps=50, budget_s=0.0)
    assert out["steps"] == 2  # at least two timed steps, then the budget ends it
    out = bench.time_training_steps(step, batch, torch.device("cpu"), warmup=1, steps=3, budget_s=None)
    assert out["steps"] == 3


def test_pretraining_wrapper_reads_the_record(monkeypatch):
    """bench_pretraining times helpers.pretraining.run_contrastive(params) and keeps its timings."""
    calls = []

    def fake(params=None, run_dir=None):
        calls.append(params)
        return {"params": {"epochs": 6}, "timings": {"pretrain_s": 1.5, "load_data_s": 0.1}}, {}

    monkeypatch.setattr(pretraining, "run_contrastive", fake)
    out = bench.bench_pretraining("animals")
    assert calls == [{"dataset": "animals", "fraction": 0.8, "objective": "contrastive", "progress": False,
                     "external_data": ""}]
    assert out["available"] is True and out["seconds"] >= 0 and out["epochs"] == 6
    assert out["breakdown_s"] == {"pretrain_s": 1.5, "load_data_s": 0.1}
    monkeypatch.setattr(pretraining, "run_contrastive", lambda params: 1 / 0)
    assert bench.bench_pretraining("animals")["error"].startswith("ZeroDivisionError")


def test_quick_profile_of_the_grids(tmp_path, monkeypatch):
    """The full-mode grid section on a trivial notebook: a grid that runs, one that cannot be read, none."""
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
    grid.write_text("notebook: tiny.ipynb\nprofiles:\n  quick: {params: {fraction: [0.2, 0.5], epochs: 1}}\n")
    (tmp_path / "broken.yaml").write_text("notebook: missing.ipynb\n")
    monkeypatch.setattr(bench, "_grids", lambda: [tmp_path / "broken.yaml", grid])
    quick = bench.bench_grids(tmp_path / "sweeps")
    broken, tiny = quick["grids"]
    assert broken["status"] == "skipped" and broken["reason"]
    assert tiny["ran"] == 2 and tiny["failed"] == 0 and tiny["seconds"] > 0
    assert quick["available"] and quick["seconds"] == pytest.approx(tiny["seconds"])
    assert quick["jobs"] == bench.GRID_JOBS
    monkeypatch.setattr(bench, "_grids", lambda: [])
    assert bench.bench_grids(tmp_path / "none")["available"] is False


def test_the_quick_profile_runs_as_make_study_does():
    """The bench times the quick profile with as many points at once as `make study PROFILE=quick` runs."""
    import shutil
    import subprocess
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    root = Path(bench.__file__).resolve().parents[1]
    out = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-jobs: ; @echo $(JOBS)", "print-jobs",
                          "PROFILE=quick"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert int(out.strip()) == bench.GRID_JOBS


def test_the_pipelines_compare_the_full_studys_budget():
    """The plain pipeline is measured on the converged training the study does: the supervised full profile's
    budget and plateau rule (params/scaling_02.yaml over the schema's defaults), not a few epochs."""
    import yaml

    from helpers import schema
    from helpers.config import PARAMS_DIR
    full = yaml.safe_load((PARAMS_DIR / "scaling_02.yaml").read_text())["profiles"]["full"]["params"]
    from helpers.training import BUDGET_PARAMS
    rule = [k for k in BUDGET_PARAMS if k not in bench.PIPELINE_SETS]
    assert {"epochs", "patience", "val_window", "decay_epochs"} <= set(rule)
    expected = {k: full.get(k, schema.PARAMS[k].default) for k in rule}
    assert bench.full_budget() == expected and expected["epochs"] == full["epochs"]
    assert bench.full_budget()["patience"] > 0   # stopped by validation, as the study's models are
