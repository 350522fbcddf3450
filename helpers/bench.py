"""Speed of the study on this machine: `python -m helpers bench [--json] [--quick] [--spec PATH]`.

Sections, each target of TARGETS reading one value of them: data (cold preparation, warm load and their
peak RSS, in child processes, into a temporary STUDY_CACHE); throughput (the project's training steps,
models, losses and loop, on random inputs of the study's shapes, as samples/s and as a share of the matmul
peak measured in the same run); batched_seeds (3 seeds of a model apart, against stacked in one
vmapped step); pipeline (one supervised run through the project's pipeline and a plain tutorial one); runs (sweep-runner overhead, one pre-training run, the quick profile of every grid, the
full study's wall time measured from results/runs); cuda (the steps on a CUDA GPU, float32 and autocast).
`--quick`: fewer steps, one epoch, no grids. The report module renders the JSON into Markdown.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import records
from .config import PARAMS_DIR, REPO_ROOT, StudyError

# The project modules are imported inside the functions that use them: the data-loading child process
# imports this module, and its peak RSS should be the data layer's, not that of sklearn or papermill.

ENCODERS = ("image", "audio_wave", "audio_mel")
PAIR_OBJECTIVES = ("contrastive", "generative")
# The pair models of notebooks 03 and 04 always hold the image encoder, so an audio encoder names one.
CASES = (tuple((kind, "supervised") for kind in ENCODERS)
         + tuple((kind, objective) for kind in ("audio_wave", "audio_mel") for objective in PAIR_OBJECTIVES))
PIPELINE_ENCODER = "audio_mel"
PIPELINE_FRACTION = 0.8
# the parameters of training.BUDGET_PARAMS that the pipelines bench sets itself; it takes the others (the budget
# and the plateau rule) from the full study
PIPELINE_SETS = ("lr", "batch_size", "progress")
# points of a grid run at once in the quick-profile section, as `make study PROFILE=quick` runs them (the
# Makefile's JOBS for that profile): one, with both cores in its kernel. Two at once (one core each) were slower
# there: the quick profile starts from a cold cache, which both kernels would fill with the same ImageNet features
GRID_JOBS = 1

# name, what, comparison, threshold, unit, where the value is in the results
TARGETS = (
    # the first cell of every notebook loads the data: it should cost nothing next to the training
    ("warm_load", "warm load from the cache", "<", 2.0, "s", ("data", "warm_load_s")),
    # decoding ~1,800 files is paid once per checkout; a minute keeps a fresh start interactive
    ("cold_prepare", "cold preparation of the whole data set", "<", 60.0, "s", ("data", "cold_prepare_s")),
    # two sweep kernels (--jobs 2) each holding the data must fit in a small machine's 8 GB
    ("peak_memory", "peak RSS of the data load (cold or warm)", "<", 4.0, "GB", ("data", "peak_rss_gb")),
    # convolutions are matmuls: at half the dense-matmul rate the step is bound by arithmetic, not overhead
    ("image_step_peak_fraction", "image-encoder supervised step, share of matmul peak", ">=", 0.5, "",
     ("throughput", "cases", "image", "supervised", "peak_fraction")),
    # the reason for the decoded-tensor cache: decoding every file every epoch should cost several times more,
    # measured on the training the full study does (its budget and plateau rule), not on a few epochs
    ("pipeline_speedup", "project pipeline vs plain pipeline (x faster)", ">=", 3.0, "x", ("pipeline", "speedup")),
    # a notebook-03 run at its defaults (pre-training and evaluation) should stay interactive: half a minute
    ("pretraining_run", "one contrastive pre-training run (fraction 0.8)", "<", 30.0, "s",
     ("runs", "pretraining", "seconds")),
    # the quick profile is the smoke test of every grid before a full sweep: ten minutes at most
    ("quick_profile", "quick profile of every grid", "<", 600.0, "s", ("runs", "quick_profile", "seconds")),
    # the converged study re-runs in an afternoon on a 2-core CPU: two hours
    ("full_study_measured", "full study, measured from results/runs", "<", 7200.0, "s",
     ("runs", "full_study_measured", "wall_s")),
)


# --------------------------------------------------------------------------- small utilities
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _r(x, digits=3):
    return None if x is None else round(float(x), digits)


def _first_line(text) -> str | None:
    return None if not text else str(text).strip().splitlines()[0][:300]


def _section(results: dict, path: tuple):
    """The value at path in the nested results, or None."""
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def _dig(results: dict, path: tuple):
    """The number at path in the nested results, or None."""
    value = _section(results, path)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def machine_info() -> dict:
    """CPU model, cores, torch threads, memory, versions, the device the study would use."""
    cpu_model, mem = records.cpu_model(), {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = {l.split(":")[0]: int(l.split()[1]) / 1e6 for l in Path("/proc/meminfo").read_text().splitlines()
               if l.startswith(("MemTotal", "MemAvailable"))}
    cuda = torch.cuda.is_available()
    return {
        "cpu_model": cpu_model, "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "memory_gb": _r(mem.get("MemTotal"), 2),
        "memory_available_gb": _r(mem.get("MemAvailable"), 2), "load_avg_1m": _r(os.getloadavg()[0], 2),
        "python": platform.python_version(), "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048,
                repeats: int = 5) -> dict:
    """Dense matmul rate, best of `repeats` (GFLOP/s = 2 n^3 / seconds): the machine's practical peak."""
    device = torch.device(device)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.matmul(a, b)  # warm-up: thread pool, library init
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return {"gflops": _r(2 * n ** 3 / best / 1e9, 1), "n": n, "dtype": str(dtype).replace("torch.", ""),
            "repeats": repeats, "best_s": _r(best, 5)}


# --------------------------------------------------------------------------- data
def _child_load(argv: list[str]) -> int:
    """Entry point of the child process that loads the data set (cold or warm): prints timings and peak RSS."""
    from .data import load_modality, load_spec
    args = json.loads(argv[0])
    warnings.simplefilter("ignore")
    spec, out, t_all = load_spec(args["spec"], args["root"]), {}, time.perf_counter()
    for modality in ("audio", "image"):
        t0 = time.perf_counter()
        mod = load_modality(spec, modality, sample_rate=args["sample_rate"], image_size=args["image_size"],
                            progress=False)
        out |= {f"{modality}_s": time.perf_counter() - t0, f"num_{modality}": len(mod),
                f"failures_{modality}": len(mod.failures)}
    out |= {"load_s": time.perf_counter() - t_all,  # ru_maxrss: the process's peak so far, in KB on Linux
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out))
    return 0


def _run_load_child(spec: str, root: str | None, cache: Path, params: dict) -> dict:
    """One load in a fresh interpreter, so that the peak RSS is the load's alone, not the bench's."""
    code = "import sys; from helpers.bench import _child_load; sys.exit(_child_load(sys.argv[1:]))"
    env = dict(os.environ, STUDY_CACHE=str(cache),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps({"spec": spec, "root": root, **params})],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise StudyError(f"bench: the data-loading child process failed (exit {proc.returncode}):\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_wall_s": time.perf_counter() - t0}


def bench_data(spec: str, root: str | None, cache: Path, *, warm_repeats: int = 2, on_step=lambda: None) -> dict:
    """Cold preparation into the empty `cache`, then warm loads from it, each in a child process. Times
    exclude interpreter start and imports (see *_process_wall_s); source files may sit in the OS page cache."""
    from .schema import defaults
    params = {k: defaults("02_baselines")[k] for k in ("sample_rate", "image_size")}
    runs = []
    for _ in range(1 + warm_repeats):
        runs.append(_run_load_child(spec, root, cache, params))
        on_step()
    cold, warm = runs[0], runs[1:]
    best = min(warm, key=lambda w: w["load_s"])
    return {"cold_prepare_s": _r(cold["load_s"]), "cold_process_wall_s": _r(cold["process_wall_s"]),
            "cold_breakdown_s": {"audio": _r(cold["audio_s"]), "image": _r(cold["image_s"])},
            "warm_load_s": _r(best["load_s"]), "warm_runs_s": [_r(w["load_s"]) for w in warm],
            "warm_breakdown_s": {"audio": _r(best["audio_s"]), "image": _r(best["image_s"])},
            "warm_process_wall_s": _r(best["process_wall_s"]),
            "peak_rss_mb": {"cold": _r(cold["peak_rss_mb"], 1), "warm": _r(max(w["peak_rss_mb"] for w in warm), 1)},
            "peak_rss_gb": _r(max(r["peak_rss_mb"] for r in runs) * 1024 * 1024 / 1e9, 3),
            "num_audio": cold["num_audio"], "num_image": cold["num_image"],
            "failures": cold["failures_audio"] + cold["failures_image"],
            "cache_mb": _r(sum(p.stat().st_size for p in Path(cache).rglob("*.npz")) / 1e6, 1)}


# --------------------------------------------------------------------------- throughput
class TrainingStep(nn.Module):
    """A project model and the loss its notebook trains it with; forward(*batch) returns that loss.

    supervised: models.Classifier, F.cross_entropy (as experiments.train_classifier); contrastive:
    pretraining.ContrastiveModel, objectives.info_nce (notebook 03, objective "contrastive");
    generative: pretraining.PairedVAE, pretraining.generative_loss (notebook 04, objective "mvae")."""

    def __init__(self, objective: str, model: nn.Module, loss, **loss_kw):
        super().__init__()
        self.objective, self.model, self.loss, self.loss_kw = objective, model, loss, loss_kw

    def forward(self, *batch):
        if self.objective == "supervised":
            x, y = batch
            return self.loss(self.model(x), y)
        xa, xi = batch
        if self.objective == "contrastive":
            return self.loss(self.model.project("audio", xa), self.model.project("image", xi),
                             self.model.logit_scale())
        return self.loss(self.model, {"audio": xa, "image": xi}, **self.loss_kw)


def training_step(kind: str, objective: str, *, num_classes: int, image_size: int, clip_samples: int,
                  sample_rate: int, batch_size: int, seed: int = 0) -> tuple[TrainingStep, tuple]:
    """(the step, one batch of random inputs of the study's shapes). A pair objective takes an audio
    encoder kind: its model has that encoder and the image encoder, built as the notebook builds it, at the
    notebook's default sizes (helpers.schema)."""
    from .models import Classifier, make_encoder
    from .objectives import info_nce
    from .pretraining import ContrastiveModel, PairedVAE, generative_loss
    from .schema import AUDIO_ENCODERS, defaults
    embed_dim, gen = defaults("02_baselines")["embed_dim"], torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the models' initial weights
    images = torch.rand(batch_size, 3, image_size, image_size, generator=gen)
    clips = 0.1 * torch.randn(batch_size, clip_samples, generator=gen)
    if objective == "supervised":
        model = Classifier(make_encoder(kind, embed_dim, sample_rate), num_classes)
        labels = torch.randint(num_classes, (batch_size,), generator=gen)
        return TrainingStep(objective, model, F.cross_entropy), (images if kind == "image" else clips, labels)
    if objective not in PAIR_OBJECTIVES or kind not in AUDIO_ENCODERS:
        raise StudyError(f"bench: no training step {kind!r}/{objective!r}; supervised takes one of {ENCODERS}, "
                         f"{PAIR_OBJECTIVES} one of {AUDIO_ENCODERS}")
    if objective == "contrastive":
        c = defaults("03_contrastive")
        return (TrainingStep(objective, ContrastiveModel(kind, embed_dim, sample_rate, c["proj_dim"], c["simclr"]),
                             info_nce), (clips, images))
    g = defaults("04_generative")
    # shared=True: the MVAE ("autoencoder" is the same networks without the joint posterior, less work)
    model = PairedVAE(kind, embed_dim, sample_rate, g["latent_dim"], image_size, clip_samples, True,
                      g["decoder_width"])
    # the notebook balances the modalities by their variance; the weights do not change the work
    return (TrainingStep(objective, model, generative_loss, weights={"image": 1.0, "audio": 1.0},
                         beta=float(g["beta"])), (clips, images))


def time_training_steps(step: nn.Module, batch: tuple, device: torch.device, *, warmup: int, steps: int,
                        amp_dtype: torch.dtype | None = None, budget_s: float | None = None) -> dict:
    """The project's training loop (training.fit: AdamW, cosine schedule, a finite-loss check per step) on
    one fixed batch: `warmup` untimed steps, then `steps` timed ones; when budget_s is given, the warm-up's
    pace caps the timed steps at about budget_s seconds (at least 2), so slow cases do not stall the bench.
    amp_dtype: autocast around the forward pass (no GradScaler: the project's loop has none)."""
    from .training import fit
    step, batch = step.to(device), tuple(t.to(device) for t in batch)

    def loss(idx, generator):
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            return step(*batch)

    def run(n):  # n steps: one epoch of n batches of the fixed batch
        _sync(device)
        t0 = time.perf_counter()
        fit(step, loss, n * len(batch[0]), num_epochs=1, batch_size=len(batch[0]), generator=torch.Generator(),
            min_steps_per_epoch=1, progress=False)   # exactly n steps
        _sync(device)
        return time.perf_counter() - t0

    warm_s = run(warmup) if warmup else None
    if budget_s is not None and warm_s is not None:
        steps = min(steps, max(2, int(budget_s / (warm_s / warmup))))
    return {"seconds": run(steps), "steps": steps}


def bench_throughput(*, device: str | torch.device = "cpu", peak_gflops: float, num_classes: int,
                     batch_size: int = 64, warmup: int = 3, steps: int = 10, image_size: int = 64,
                     clip_samples: int = 16000, sample_rate: int = 8000, amp_dtype: torch.dtype | None = None,
                     budget_s: float | None = None, cases=CASES, on_step=lambda: None) -> dict:
    """samples/s and achieved FLOP rate of each project training step in `cases` ((kind, objective) pairs).
    FLOPs = forward x 3 (matmuls and convolutions; the log-mel FFTs are not counted); a pair step counts a
    pair as one sample and runs both towers."""
    from .models import flops_per_sample
    device, out = torch.device(device), {}
    for kind, objective in cases:
        step, batch = training_step(kind, objective, num_classes=num_classes, image_size=image_size,
                                    clip_samples=clip_samples, sample_rate=sample_rate, batch_size=batch_size)
        fwd = flops_per_sample(step, tuple(t[: min(4, batch_size)] for t in batch))  # per sample, small batch
        timing = time_training_steps(step, batch, device, warmup=warmup, steps=steps, amp_dtype=amp_dtype,
                                     budget_s=budget_s)
        samples_per_s = timing["steps"] * batch_size / timing["seconds"]
        achieved = 3 * fwd * samples_per_s / 1e9  # forward + backward (~2x forward)
        out.setdefault(kind, {})[objective] = {
            "samples_per_s": _r(samples_per_s, 1), "step_ms": _r(1e3 * timing["seconds"] / timing["steps"], 1),
            "timed_steps": timing["steps"], "fwd_mflops_per_sample": _r(fwd / 1e6, 2),
            "achieved_gflops": _r(achieved, 2), "peak_fraction": _r(achieved / peak_gflops, 4) if peak_gflops else None,
            "parameters": int(sum(p.numel() for p in step.parameters())),
            "source": f"{type(step.model).__module__}.{type(step.model).__name__} + "
                      f"{step.loss.__module__}.{step.loss.__name__}",
            "towers": [kind] if objective == "supervised" else [kind, "image"]}
        del step, batch
        on_step()
    return {"device": str(device), "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
            "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": steps, "budget_s_per_case": budget_s,
            "peak_gflops": peak_gflops, "cases": out}


def bench_batched_seeds(kind: str = "image", *, seeds: int = 3, num_classes: int, batch_size: int = 64,
                        image_size: int = 64, clip_samples: int = 16000, sample_rate: int = 8000, steps: int = 5,
                        device: str | torch.device = "cpu") -> dict:
    """A supervised step of `seeds` models of one kind trained apart, against the same models stacked into one
    (torch.func.stack_module_state, functional_call under vmap), each with its own batch: what training a
    grid's seeds together would gain on this machine. Batch norm uses batch statistics only on both sides
    (torch.func.replace_all_batch_norm_modules_), so the two do the same work. A measurement of the technique:
    the study's training loop does not batch seeds."""
    import copy

    from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

    from .models import Classifier, make_encoder
    from .schema import defaults
    device, embed_dim = torch.device(device), defaults("02_baselines")["embed_dim"]
    gen = torch.Generator().manual_seed(0)
    shape = (3, image_size, image_size) if kind == "image" else (clip_samples,)
    X = torch.rand(seeds, batch_size, *shape, generator=gen).to(device)
    Y = torch.randint(num_classes, (seeds, batch_size), generator=gen).to(device)
    models = []
    for s in range(seeds):
        torch.manual_seed(s)
        models.append(replace_all_batch_norm_modules_(Classifier(make_encoder(kind, embed_dim, sample_rate),
                                                                 num_classes)).to(device).train())
    apart = [torch.optim.AdamW(m.parameters()) for m in models]
    params, buffers = stack_module_state(models)
    together = torch.optim.AdamW(params.values())
    base = copy.deepcopy(models[0]).to("meta")

    def loss_one(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    def step_apart():
        for m, opt, x, y in zip(models, apart, X, Y):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()

    def step_together():
        together.zero_grad(set_to_none=True)
        vmap(loss_one)(params, buffers, X, Y).sum().backward()
        together.step()

    def timed(fn):
        fn()  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        return (time.perf_counter() - t0) / steps

    try:
        apart_s, together_s = timed(step_apart), timed(step_together)
    except Exception as err:  # an operator without a vmap rule: reported, the other sections still run
        return {"kind": kind, "seeds": seeds, "error": f"{type(err).__name__}: {_first_line(str(err))}"}
    return {"kind": kind, "seeds": seeds, "batch_size": batch_size, "timed_steps": steps, "device": str(device),
            "apart_step_ms": _r(1e3 * apart_s, 1), "together_step_ms": _r(1e3 * together_s, 1),
            "gain": _r(apart_s / together_s, 2), "used_by_the_study": False}


def _cuda_amps() -> dict:
    """Autocast dtypes the CUDA section measures (None: plain float32)."""
    return {"float32": None, "float16": torch.float16, **({"bfloat16": torch.bfloat16}
                                                           if torch.cuda.is_bf16_supported() else {})}


def bench_cuda(*, quick: bool, on_step=lambda: None, **throughput_kw) -> dict | None:
    """The throughput section on the GPU in float32 and under autocast; None when no CUDA GPU is visible."""
    if not torch.cuda.is_available():
        return None
    device, n, amps = torch.device("cuda"), 4096 if quick else 8192, _cuda_amps()
    peaks = {name: matmul_peak(device, dtype or torch.float32, n) for name, dtype in amps.items()}
    out = {"devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "matmul_peak": peaks,
           "throughput": {name: bench_throughput(device=device, peak_gflops=peaks[name]["gflops"], amp_dtype=dtype,
                                                 on_step=on_step, **throughput_kw) for name, dtype in amps.items()}}
    torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- pipelines
class PlainAudioDataset(torch.utils.data.Dataset):
    """What a tutorial writes: every access reads the WAV, mixes to mono, resamples and loop-pads/crops.

    Resampling is torchaudio's, except for rates whose reduced ratio is huge (11127 Hz, 22257 Hz...):
    there its polyphase kernel takes gigabytes and ~10 s per call, so those few files (`fft_resampled`)
    go through scipy's FFT resampling, which makes this pipeline faster than a literal tutorial."""

    def __init__(self, files: list[Path], labels, sample_rate: int = 16000, seconds: float = 2.0):
        self.files, self.labels = list(files), [int(y) for y in labels]
        self.sample_rate, self.num_samples = sample_rate, int(round(seconds * sample_rate))
        self.fft_resampled: set[int] = set()

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import soundfile as sf
        import torchaudio.functional as AF
        from scipy.signal import resample as fft_resample
        x, sr = sf.read(str(self.files[i]), dtype="float32", always_2d=True)
        x, new_sr = torch.from_numpy(x.mean(axis=1)), self.sample_rate
        if sr != new_sr and max(sr, new_sr) // math.gcd(sr, new_sr) <= 2000:
            x = AF.resample(x, sr, new_sr)
        elif sr != new_sr:
            self.fft_resampled.add(i)
            x = torch.from_numpy(fft_resample(x.numpy(), int(round(len(x) * new_sr / sr))).astype(np.float32))
        n = self.num_samples
        return (x.repeat(-(-n // len(x)))[:n] if len(x) < n else x[:n]), self.labels[i]


def plain_training(files, labels, *, num_classes: int, steps: int, batch_size: int, lr: float, embed_dim: int,
                   sample_rate: int, clip_seconds: float, device: torch.device, seed: int = 0) -> dict:
    """The reference pipeline: Dataset + DataLoader(shuffle, num_workers=0) + the same model and optimiser,
    for `steps` optimizer steps (as many passes over the loader as that takes)."""
    import scipy.signal  # noqa: F401  imported before the clock starts, as the project's modules are
    import soundfile  # noqa: F401

    from .models import Classifier, make_encoder
    torch.manual_seed(seed)
    start, data_s, samples = time.perf_counter(), 0.0, 0
    dataset = PlainAudioDataset(files, labels, sample_rate, clip_seconds)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         drop_last=len(dataset) >= batch_size)
    model = Classifier(make_encoder(PIPELINE_ENCODER, embed_dim, sample_rate), num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    taken = 0
    while taken < steps:
        model.train()
        t_data = time.perf_counter()
        for X, y in loader:
            if taken == steps:
                break
            taken += 1
            data_s += time.perf_counter() - t_data
            loss = F.cross_entropy(model(X.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # the project's loop reads every loss too (a sync on a GPU)
            samples += len(y)
            t_data = time.perf_counter()
    seconds = time.perf_counter() - start
    return {"seconds": _r(seconds), "data_s": _r(data_s), "compute_s": _r(seconds - data_s), "samples": samples,
            "samples_per_s": _r(samples / seconds, 1), "odd_rate_files": len(dataset.fft_resampled),
            "includes": "decode + mono + resample + pad/crop of every file on every access; no validation"}


def full_budget(grid: str = "scaling_02.yaml") -> dict:
    """The training budget and stopping rule of the full study's supervised models, read from `grid`'s full
    profile, so the pipelines compare the converged training the study does."""
    from .sweeps import load_grid
    from .training import BUDGET_PARAMS
    _, points = load_grid(PARAMS_DIR / grid, "full")
    return {k: points[0][k] for k in BUDGET_PARAMS if k not in PIPELINE_SETS}


def bench_pipelines(spec: str, *, batch_size: int = 64, on_step=lambda: None, **rule) -> dict:
    """The same supervised run (audio_mel, trained by the full_budget parameters `rule`) through the project's
    pipeline and through the plain one, which takes as many optimizer steps."""
    from .data import _quiet_c_stderr
    from .experiments import _load, prepare_study, train_classifier
    _load.cache_clear()  # the project pipeline loads from the (warm) disk cache, not from memory
    t0 = time.perf_counter()
    # external_data off: the pipelines compared train the same model; evaluation is not timed here
    study = prepare_study({"dataset": spec, "fraction": PIPELINE_FRACTION, **rule,
                           "batch_size": batch_size, "progress": False, "external_data": ""})
    prepare_s = time.perf_counter() - t0
    _, history = train_classifier(study, PIPELINE_ENCODER)
    project_s = time.perf_counter() - t0
    samples = history.steps * min(batch_size, len(study.split["audio"].train))
    on_step()
    p, train_idx = study.params, study.split["audio"].train
    base = study.data.spec.root / study.data.spec.audio_dir
    with _quiet_c_stderr():  # libmpg123 prints resync notes for the MP3-in-WAV files straight to fd 2
        plain = plain_training([base / study.data.audio.paths[i] for i in train_idx], study.labels("audio", "train"),
                               num_classes=study.num_classes, steps=history.steps, batch_size=batch_size, lr=p["lr"],
                               embed_dim=p["embed_dim"], sample_rate=p["sample_rate"],
                               clip_seconds=p["clip_seconds"], device=study.device)
    on_step()
    return {"encoder": PIPELINE_ENCODER, "fraction": PIPELINE_FRACTION, **rule,
            "steps": history.steps, "batch_size": batch_size,
            "train_items": len(train_idx), "device": str(study.device),
            "project": {"seconds": _r(project_s), "prepare_s": _r(prepare_s), "train_s": _r(history.seconds),
                        "samples_per_s": _r(history.samples_per_second, 1),
                        "samples": samples,
                        "includes": "warm cache load, split, per-epoch validation, best-epoch restore"},
            "plain": plain, "speedup": _r(plain["seconds"] / project_s, 2)}   # the plain loop takes as many steps


# --------------------------------------------------------------------------- runs
def bench_sweep_overhead(folder: Path, repeats: int = 2) -> dict:
    """Per-point overhead of sweeps.run_point (kernel start, papermill, saving) on a trivial notebook."""
    import nbformat

    from .sweeps import run_point
    Path(folder).mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('x = 1\nrun_dir = ""\n', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import json, os\nwith open(os.path.join(run_dir, 'metrics.json'), 'w') as f:"
                                          "\n    json.dump({'params': {'x': x}}, f)\n")]
    nbformat.write(nb, Path(folder) / "trivial.ipynb")
    rows = [run_point(Path(folder) / "trivial.ipynb", {"x": i}, Path(folder) / f"point{i}") for i in range(repeats)]
    failed = [r for r in rows if r["status"] != "ran"]
    if failed:
        return {"status": "failed", "error": _first_line(failed[0]["error"])}
    overheads = [r["overhead_s"] for r in rows if r["overhead_s"] is not None]
    return {"status": "ran", "points": repeats,
            "per_point_overhead_s": _r(float(np.mean(overheads))) if overheads else None,
            "overhead_runs_s": [_r(o) for o in overheads], "wall_runs_s": [_r(r["seconds"]) for r in rows]}


def bench_pretraining(spec: str) -> dict:
    """Wall time of notebook 03's core, helpers.pretraining.run_contrastive, objective "contrastive" at
    fraction 0.8, the other parameters at the notebook's defaults: data load, pre-training, evaluation
    (probes, retrieval) and fine-tuning (if its default epochs are not 0), as the notebook runs it."""
    from . import pretraining
    from .experiments import _load
    _load.cache_clear()  # the run loads from the warm disk cache, as a fresh notebook kernel would
    t0 = time.perf_counter()
    try:
        record, _ = pretraining.run_contrastive({"dataset": spec, "fraction": PIPELINE_FRACTION,
                                                 "objective": "contrastive", "progress": False,
                                                 "external_data": ""})
    except Exception as err:  # one failed run is reported; the other sections still run
        return {"available": True, "error": f"{type(err).__name__}: {_first_line(str(err))}"}
    return {"available": True, "seconds": _r(time.perf_counter() - t0), "epochs": record["params"]["epochs"],
            "breakdown_s": {k: _r(v) for k, v in record.get("timings", {}).items() if isinstance(v, (int, float))}}


def _grids() -> list[Path]:
    from .collect import grid_files
    return grid_files()


def bench_grids(folder: Path, on_step=lambda: None, timeout: float | None = None, jobs: int = GRID_JOBS) -> dict:
    """The quick profile of every grid in params/ into one results folder, `jobs` points at once (a point
    shared between grids runs once, as in a real sweep: `make study PROFILE=quick`)."""
    from .sweeps import load_grid, sweep
    if not _grids():
        return {"available": False, "reason": f"no grid files in {PARAMS_DIR}"}
    rows = []
    for grid in _grids():
        try:
            notebook, _ = load_grid(grid, "quick")
        except StudyError as err:
            rows.append({"grid": grid.name, "status": "skipped", "reason": _first_line(str(err)), "seconds": 0.0})
        else:
            df = sweep(grid, profile="quick", jobs=jobs, results_dir=folder, progress=False, timeout=timeout)
            ran = df[df["status"] == "ran"]
            rows.append({"grid": grid.name, "notebook": notebook.name, "points": len(df), "ran": len(ran),
                         "shared_done": int((df["status"] == "done").sum()),
                         "failed": int(df["status"].isin(["failed", "skipped_failed"]).sum()),
                         "seconds": _r(df.attrs.get("seconds", 0.0)),
                         "mean_point_s": _r(ran["seconds"].mean()) if len(ran) else None,
                         "first_error": _first_line(next((e for e in df.get("error", []) if e), None))})
        on_step()
    return {"available": True, "seconds": _r(sum(r["seconds"] for r in rows)), "jobs": jobs, "grids": rows}


# --------------------------------------------------------------------------- targets and the whole bench
def evaluate_targets(results: dict) -> list[dict]:
    """Every target with its measured value and whether it is met (None: not measured in this run)."""
    rows = []
    for name, what, op, threshold, unit, path in TARGETS:
        value = _dig(results, path)
        met = None if value is None else (value < threshold if op == "<" else value >= threshold)
        row = {"name": name, "what": what, "target": f"{op} {threshold:g}{(' ' + unit) if unit else ''}",
               "threshold": threshold, "unit": unit, "measured": value, "met": met}
        broken = _incomplete(_section(results, path[:-1]))
        if broken:   # a time of work that failed or is partial is no measurement of the target
            row.update(met=False, why=broken)
        rows.append(row)
    return rows


def _incomplete(section) -> str | None:
    """Why a target's section cannot meet it (an error, failed or skipped grid points, a study not every point of
    which was measured), or None."""
    if not isinstance(section, dict):
        return None
    if section.get("error") or section.get("status") == "failed":
        return f"failed: {_first_line(str(section.get('error')))}"
    if section.get("complete") is False:
        return "not every point of every grid was measured"
    grids = section.get("grids")
    bad = [g.get("grid") for g in grids if g.get("failed") or g.get("status") == "skipped"] \
        if isinstance(grids, list) else []
    return f"failed or skipped points in {', '.join(map(str, bad))}" if bad else None


def run_bench(spec: str = "animals", data_root: str | None = None, *, quick: bool = False, batch_size: int = 64,
              warmup: int | None = None, steps: int | None = None, budget_s: float | None = None,
              epochs: int | None = None, image_size: int | None = None, clip_seconds: float | None = None,
              matmul_size: int = 2048, notebook_timeout: float | None = None, pretraining: bool = True,
              grids: bool = True, keep_cache: bool = False, progress: bool = True) -> dict:
    """Run every section; return one JSON-ready dict (see the module docstring). image_size and clip_seconds
    set the shapes of the throughput inputs (default: the study's); the tests shrink them, a report keeps them."""
    from tqdm.auto import tqdm

    from .data import load_spec
    from .schema import defaults
    study = defaults("02_baselines")
    started, sample_rate = time.perf_counter(), study["sample_rate"]
    spec_obj = load_spec(spec, data_root)  # fails early, with the file to fix, before any work
    step_kw = dict(num_classes=spec_obj.num_classes, batch_size=batch_size, sample_rate=sample_rate,
                   warmup=(1 if quick else 2) if warmup is None else warmup,
                   steps=(3 if quick else 10) if steps is None else steps,
                   budget_s=(8.0 if quick else 20.0) if budget_s is None else budget_s,
                   image_size=image_size or study["image_size"],
                   clip_samples=int(round((clip_seconds or study["clip_seconds"]) * sample_rate)))
    workdir = Path(tempfile.mkdtemp(prefix="menagerie-bench-"))
    cache, repeats = workdir / "cache", 1 if quick else 2
    run_grids = grids and not quick
    tasks = (repeats + len(CASES) + len(ENCODERS) + 6 + pretraining + (len(_grids()) if run_grids else 0)
             + (len(_cuda_amps()) * len(CASES) if torch.cuda.is_available() else 0))
    results: dict = {"bench": {"quick": quick, "spec": spec, "data_root": data_root or str(spec_obj.root),
                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workdir": str(workdir)},
                     "machine": machine_info()}
    bar = tqdm(total=tasks, desc="bench", unit="task", file=sys.stderr, disable=not progress, leave=False)

    def stage(desc):  # names the work under way on the bar; returns what counts one piece of it done
        bar.set_description(desc)
        return lambda: bar.update(1)

    def one(desc, fn, *args):  # a section that is one piece of work
        tick = stage(desc)
        out = fn(*args)
        tick()
        return out

    environ = {"STUDY_CACHE": str(cache), **({"STUDY_DATA": data_root} if data_root else {})}
    try:
        with mock.patch.dict(os.environ, environ), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results["data"] = bench_data(spec, data_root, cache, warm_repeats=repeats, on_step=stage("data"))
            peak = one("matmul peak", matmul_peak, "cpu", torch.float32, matmul_size, 3 if quick else 7)
            results["matmul_peak"] = {"cpu": peak}
            results["throughput"] = bench_throughput(peak_gflops=peak["gflops"], on_step=stage("throughput"), **step_kw)
            tick = stage("batched seeds")
            results["batched_seeds"] = {}
            for kind in ENCODERS:
                results["batched_seeds"][kind] = bench_batched_seeds(
                    kind, num_classes=spec_obj.num_classes, batch_size=batch_size, image_size=step_kw["image_size"],
                    clip_samples=step_kw["clip_samples"], sample_rate=sample_rate, steps=2 if quick else 5)
                tick()
            budget = {"epochs": 1, "patience": 0, "decay_epochs": 0} if quick else full_budget()
            results["pipeline"] = bench_pipelines(spec, **(budget | ({} if epochs is None else {"epochs": epochs})),
                                                  batch_size=batch_size, on_step=stage("pipelines"))
            runs = results["runs"] = {
                "sweep_overhead": one("sweep runner overhead", bench_sweep_overhead, workdir / "overhead", repeats),
                "pretraining": (one("pre-training run", bench_pretraining, spec) if pretraining
                                else {"available": False, "reason": "skipped (--no-pretraining)"})}
            runs["quick_profile"] = (bench_grids(workdir / "sweeps", stage("quick profile"), notebook_timeout)
                                     if run_grids else
                                     {"available": False, "reason": "skipped (--quick)" if quick else "skipped (--no-grids)"})
            from .collect import measured_study
            runs["full_study_measured"] = one("full study, measured", measured_study)
            results["cuda"] = bench_cuda(quick=quick, on_step=stage("cuda"), **step_kw)
    finally:
        bar.close()
        if not keep_cache:
            shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = evaluate_targets(results)
    results["bench"] |= {"seconds": _r(time.perf_counter() - started, 1), "workdir_kept": keep_cache}
    results["machine"] |= {"load_avg_1m_end": _r(os.getloadavg()[0], 2),
                           "bench_peak_rss_mb": _r(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    return results


# --------------------------------------------------------------------------- command line
def format_table(results: dict) -> str:
    """What `python -m helpers bench` prints without --json: the machine, then each target (--json has the rest)."""
    m, b, met = results["machine"], results["bench"], {True: "yes", False: "NO", None: "n/a"}
    lines = [f"{m['cpu_model']} | {m['cores_usable']} of {m['cores']} cores, {m['torch_threads']} torch threads | "
             f"{m['memory_gb']} GB | {m['device']} | load {m['load_avg_1m']} -> {m.get('load_avg_1m_end')} | "
             f"spec {b['spec']}, quick={b['quick']}, {b.get('seconds')} s", "",
             f"{'target':<55} {'goal':>12} {'measured':>12}  met"]
    for t in results["targets"]:
        value = "n/a" if t["measured"] is None else f"{t['measured']:,.3f}"
        lines.append(f"{t['what']:<55} {t['target']:>12} {value:>12}  {met[t['met']]}"
                     + (f" ({t['why']})" if t.get("why") else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer steps, 1 epoch, no grids")
    parser.add_argument("--spec", default="animals", help="dataset YAML: a name in params/datasets/ or a path")
    parser.add_argument("--data-root", default=None, help="data root (default: $STUDY_DATA, else data/)")
    parser.add_argument("--no-pretraining", dest="pretraining", action="store_false", help="skip the pre-training run")
    parser.add_argument("--no-grids", dest="grids", action="store_false",
                        help="skip the quick profile of every grid (the longest section)")
    parser.add_argument("--notebook-timeout", type=float, default=None, help="per-cell limit of the grids' notebooks, s")
    parser.add_argument("--keep-cache", action="store_true", help="keep the temporary cache and run folders")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    args = vars(parser.parse_args(argv))
    if args["notebook_timeout"] is not None and args["notebook_timeout"] <= 0:
        raise StudyError(f"--notebook-timeout={args['notebook_timeout']} must be a positive number of seconds")
    as_json = args.pop("json")
    results = run_bench(**args)
    print(json.dumps(results, indent=1) if as_json else format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
