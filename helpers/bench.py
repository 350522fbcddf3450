"""Benchmarks (issue 7): `python -m helpers bench [--json] [--quick] [--spec PATH] [--data-root PATH]`.

What it measures, each against a target (see TARGETS):

1. data       cold preparation of the whole data set (decode, resample, resize, cache) into a fresh
              temporary STUDY_CACHE, the warm load from it, and the peak RSS of the processes doing
              each (each runs in a child process; its ru_maxrss comes from os.wait4).
2. throughput training samples/s of every encoder (image, audio_wave, audio_mel) under every
              objective (supervised cross-entropy, contrastive InfoNCE on pairs, generative VAE),
              and the achieved FLOP rate of the step (forward FLOPs x 3) as a share of the dense
              float32 matmul peak measured in the same run.
3. pipeline   one supervised training run two ways: the project's (prepare_study + train_classifier
              on cached tensors) and a plain tutorial pipeline (a torch Dataset that reads, mixes,
              resamples and pads every WAV on every access; a DataLoader); wall times and their ratio.
4. runs       one pre-training run, every notebook at its default parameters, the quick profile of
              the grids in params/, an estimate of the full study, and the sweep runner's per-point
              overhead (a trivial notebook through sweeps.run_point).
5. cuda       when a CUDA GPU is visible: matmul peaks and the throughput section on it, in float32
              and under torch.autocast (bfloat16, float16). `"cuda": null` otherwise.

`--quick` runs fewer steps and one epoch, and skips the notebooks and grids (not the pre-training run,
a target of its own; `--no-pretraining` skips it).
The temporary cache is deleted at the end (unless --keep-cache); the real data root is only read.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PARAMS_DIR, REPO_ROOT, StudyError

ENCODERS = ("image", "audio_wave", "audio_mel")
OBJECTIVES = ("supervised", "contrastive", "generative")
PARTNER = {"image": "audio_mel", "audio_wave": "image", "audio_mel": "image"}  # the other tower of a pair
LATENT_DIM = 64
PIPELINE_ENCODER = "audio_mel"
PIPELINE_FRACTION = 0.8

# name, what, comparison, threshold, unit, where the value is in the results
TARGETS = (
    ("warm_load", "warm load from the cache", "<", 2.0, "s", ("data", "warm_load_s")),
    ("cold_prepare", "cold preparation of the whole data set", "<", 60.0, "s", ("data", "cold_prepare_s")),
    ("peak_memory", "peak RSS of the data load (cold or warm)", "<", 4.0, "GB", ("data", "peak_rss_gb")),
    ("image_step_peak_fraction", "image-encoder supervised step, share of matmul peak", ">=", 0.5, "",
     ("throughput", "cases", "image", "supervised", "peak_fraction")),
    ("pipeline_speedup", "project pipeline vs plain pipeline (x faster)", ">=", 5.0, "x",
     ("pipeline", "speedup")),
    ("pretraining_run", "one contrastive pre-training run (fraction 0.8)", "<", 30.0, "s",
     ("runs", "pretraining", "seconds")),
    ("quick_profile", "quick profile of every grid", "<", 600.0, "s", ("runs", "quick_profile", "seconds")),
    ("full_study", "full study (estimate)", "<", 3600.0, "s", ("runs", "full_study", "seconds")),
    ("full_study_measured", "full study, measured from results/runs", "<", 3600.0, "s",
     ("runs", "full_study_measured", "wall_s")),
)


# --------------------------------------------------------------------------- small utilities
def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="bench", unit="task", file=sys.stderr, disable=not enabled, leave=False)


@contextlib.contextmanager
def _environ(**values):
    """Set environment variables (None: leave alone) for the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _r(x, digits=3):
    return None if x is None else round(float(x), digits)


def _first_line(text) -> str | None:
    return None if not text else str(text).strip().splitlines()[0][:300]


def _dig(results: dict, path: tuple):
    node = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


# --------------------------------------------------------------------------- machine
def machine_info() -> dict:
    """CPU model, cores, torch threads, memory, versions, the device the study would use."""
    cpu_model, mem_total, mem_avail = platform.processor() or None, None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = {l.split(":")[0]: int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
               if l.startswith(("MemTotal", "MemAvailable"))}
        mem_total, mem_avail = mem.get("MemTotal", 0) / 1e6, mem.get("MemAvailable", 0) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    cuda = torch.cuda.is_available()
    return {
        "cpu_model": cpu_model, "cores": os.cpu_count(), "cores_usable": usable,
        "torch_threads": torch.get_num_threads(), "memory_gb": _r(mem_total, 2),
        "memory_available_gb": _r(mem_avail, 2), "load_avg_1m": _r(os.getloadavg()[0], 2),
        "python": platform.python_version(), "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048,
                repeats: int = 5) -> dict:
    """Dense matmul rate, best of `repeats` (GFLOP/s = 2 n^3 / seconds): the machine's practical peak."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
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


# --------------------------------------------------------------------------- 1. data
def _child_load(argv: list[str]) -> int:
    """Entry point of the child process that loads the data set (cold or warm) and reports timings."""
    args = json.loads(argv[0])
    warnings.simplefilter("ignore")
    from .data import load_modality, load_spec
    spec = load_spec(args["spec"], args["root"])
    kw = dict(sample_rate=args["sample_rate"], image_size=args["image_size"], progress=False)
    out = {}
    t_all = time.perf_counter()
    for modality in ("audio", "image"):
        t0 = time.perf_counter()
        mod = load_modality(spec, modality, **kw)
        out[f"{modality}_s"] = time.perf_counter() - t0
        out[f"num_{modality}"] = len(mod)
        out[f"failures_{modality}"] = len(mod.failures)
    out["load_s"] = time.perf_counter() - t_all
    out["self_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.get("hash_breakdown"):
        # what a warm load spends on the cache key: reading and hashing every source file
        try:
            from .data import _content_key, list_files
            t0 = time.perf_counter()
            for modality in ("audio", "image"):
                files, _ = list_files(spec, modality)
                base = spec.root / (spec.audio_dir if modality == "audio" else spec.image_dir)
                _content_key(base, files, {})
            out["hash_sources_s"] = time.perf_counter() - t0
        except (ImportError, TypeError):  # a private helper of data.py: optional detail
            out["hash_sources_s"] = None
    print(json.dumps(out))
    return 0


def _run_load_child(spec: str, root: str | None, cache: Path, params: dict, hash_breakdown=False) -> dict:
    """Run one load in a fresh interpreter; its peak RSS comes from the kernel (wait4 rusage)."""
    payload = json.dumps({"spec": spec, "root": root, "hash_breakdown": hash_breakdown, **params})
    code = "import sys; from helpers.bench import _child_load; sys.exit(_child_load(sys.argv[1:]))"
    env = dict(os.environ, STUDY_CACHE=str(cache),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, payload], stdout=out, stderr=err, cwd=REPO_ROOT,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise StudyError(f"bench: the data-loading child process failed (exit {proc.returncode}):\n"
                         f"{stderr.strip()[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def bench_data(spec: str, root: str | None, cache: Path, *, warm_repeats: int = 2, params: dict | None = None,
               on_step=lambda: None) -> dict:
    """Cold preparation into the empty `cache`, then warm loads from it, each in a child process."""
    from .experiments import DEFAULTS
    params = params or {"sample_rate": DEFAULTS["sample_rate"], "image_size": DEFAULTS["image_size"]}
    cold = _run_load_child(spec, root, cache, params)
    on_step()
    warm = []
    for i in range(warm_repeats):
        warm.append(_run_load_child(spec, root, cache, params, hash_breakdown=(i == warm_repeats - 1)))
        on_step()
    best = min(warm, key=lambda w: w["load_s"])
    peak_mb = max([cold["peak_rss_mb"]] + [w["peak_rss_mb"] for w in warm])
    cache_bytes = sum(p.stat().st_size for p in Path(cache).rglob("*.npz"))
    return {
        "cold_prepare_s": _r(cold["load_s"]),
        "cold_breakdown_s": {"audio": _r(cold["audio_s"]), "image": _r(cold["image_s"])},
        "cold_process_wall_s": _r(cold["process_wall_s"]),
        "warm_load_s": _r(best["load_s"]),
        "warm_runs_s": [_r(w["load_s"]) for w in warm],
        "warm_breakdown_s": {"audio": _r(best["audio_s"]), "image": _r(best["image_s"]),
                             "hash_sources_s": _r(warm[-1].get("hash_sources_s"))},
        "warm_process_wall_s": _r(best["process_wall_s"]),
        "peak_rss_mb": {"cold": _r(cold["peak_rss_mb"], 1), "warm": _r(max(w["peak_rss_mb"] for w in warm), 1)},
        "peak_rss_gb": _r(peak_mb * 1024 * 1024 / 1e9, 3),
        "num_audio": cold["num_audio"], "num_image": cold["num_image"],
        "failures": cold["failures_audio"] + cold["failures_image"],
        "cache_mb": _r(cache_bytes / 1e6, 1),
        "note": "each load in a fresh interpreter; times exclude interpreter start and imports "
                "(see *_process_wall_s); source files may sit in the OS page cache",
    }


# --------------------------------------------------------------------------- 2. throughput
class SupervisedTask(nn.Module):
    """Classifier + cross-entropy: the supervised baselines' step."""

    def __init__(self, kind, num_classes, embed_dim=128, sample_rate=16000):
        super().__init__()
        from .models import Classifier, make_encoder
        self.model = Classifier(make_encoder(kind, embed_dim, sample_rate), num_classes)

    def forward(self, x, y):
        return F.cross_entropy(self.model(x), y)


class ContrastiveTask(nn.Module):
    """Two towers (the encoder and one of the other modality) + learnable temperature + symmetric InfoNCE."""

    def __init__(self, kind, partner, embed_dim=128, sample_rate=16000):
        super().__init__()
        from .models import make_encoder
        from .objectives import LogitScale
        self.a = make_encoder(kind, embed_dim, sample_rate)
        self.b = make_encoder(partner, embed_dim, sample_rate)
        self.scale = LogitScale()

    def forward(self, xa, xb):
        from .objectives import info_nce
        return info_nce(self.a(xa), self.b(xb), self.scale())


class VAETask(nn.Module):
    """Encoder -> Gaussian latent -> decoder, negative ELBO. Images are reconstructed as pixels, both audio
    encoders reconstruct the standardised log-mel (the waveform encoder gets a fixed LogMel for its target)."""

    def __init__(self, kind, embed_dim=128, sample_rate=16000, image_size=64, clip_samples=32000,
                 latent_dim=LATENT_DIM):
        super().__init__()
        from .models import GaussianHead, ImageDecoder, LogMel, MelDecoder, make_encoder
        self.kind = kind
        self.encoder = make_encoder(kind, embed_dim, sample_rate)
        self.head = GaussianHead(embed_dim, latent_dim)
        if kind == "image":
            self.decoder = ImageDecoder(latent_dim, image_size)
        else:
            self.target = self.encoder.frontend if kind == "audio_mel" else LogMel(sample_rate)
            n_mels, n_frames = self.target.shape(clip_samples)
            self.decoder = MelDecoder(latent_dim, n_mels, n_frames)

    def forward(self, x):
        from .objectives import reparameterize, vae_loss
        mu, logvar = self.head(self.encoder(x))
        x_hat = self.decoder(reparameterize(mu, logvar))
        if self.kind == "image":
            target = x
        else:
            with torch.no_grad():
                target = self.target(x)
        return vae_loss([(x_hat.float(), target.float())], mu.float(), logvar.float())


class PretrainContrastiveTask(nn.Module):
    """Notebook 03's pair step with helpers.pretraining's ContrastiveModel (encoders, projection heads,
    learnable temperature), objective infonce, no remedy: the image encoder is paired with audio_mel."""

    def __init__(self, kind, embed_dim=128, sample_rate=16000):
        super().__init__()
        from .pretraining import CONTRASTIVE_EXTRA, ContrastiveModel
        self.kind = kind
        self.model = ContrastiveModel(PARTNER[kind] if kind == "image" else kind, embed_dim, sample_rate,
                                      CONTRASTIVE_EXTRA["proj_dim"], False)

    def forward(self, x, x_partner):
        from .objectives import info_nce
        xa, xi = (x_partner, x) if self.kind == "image" else (x, x_partner)
        return info_nce(self.model.project("audio", xa), self.model.project("image", xi), self.model.logit_scale())


class PretrainVAETask(nn.Module):
    """Notebook 04's pair step: helpers.pretraining's PairedVAE at its default objective (mvae) and decoder
    width, and its loss, generative_loss (reconstruction weights 1 here; the notebook balances them)."""

    def __init__(self, kind, embed_dim=128, sample_rate=16000, image_size=64, clip_samples=32000):
        super().__init__()
        from .pretraining import GENERATIVE_EXTRA, PairedVAE
        self.kind = kind
        self.model = PairedVAE(PARTNER[kind] if kind == "image" else kind, embed_dim, sample_rate,
                               GENERATIVE_EXTRA["latent_dim"], image_size, clip_samples,
                               GENERATIVE_EXTRA["objective"] == "mvae", GENERATIVE_EXTRA["decoder_width"])
        self.beta = float(GENERATIVE_EXTRA["beta"])

    def forward(self, x, x_partner):
        from .pretraining import generative_loss
        xs = {"image": x, "audio": x_partner} if self.kind == "image" else {"audio": x, "image": x_partner}
        return generative_loss(self.model, xs, {"image": 1.0, "audio": 1.0}, self.beta)


def make_task(kind: str, objective: str, *, num_classes: int, image_size: int, clip_samples: int,
              sample_rate: int, batch_size: int, embed_dim: int = 128, seed: int = 0, use_pretraining: bool = True):
    """(module whose forward returns the loss, its batch of random inputs of the study's shapes, facts).

    The contrastive and generative steps are those of helpers.pretraining when it is importable (pair steps:
    the encoder plus a tower of the other modality), else minimal ones built from models + objectives."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    def inputs(k):
        if k == "image":
            return torch.rand(batch_size, 3, image_size, image_size, generator=gen)
        return 0.1 * torch.randn(batch_size, clip_samples, generator=gen)

    if objective == "supervised":
        return (SupervisedTask(kind, num_classes, embed_dim, sample_rate),
                (inputs(kind), torch.randint(num_classes, (batch_size,), generator=gen)),
                {"source": "models.Classifier + cross-entropy"})
    if objective not in OBJECTIVES:
        raise StudyError(f"unknown objective {objective!r}; known: {list(OBJECTIVES)}")
    reason = "not requested"
    if use_pretraining:
        try:
            if objective == "contrastive":
                task = PretrainContrastiveTask(kind, embed_dim, sample_rate)
            else:
                task = PretrainVAETask(kind, embed_dim, sample_rate, image_size, clip_samples)
            return (task, (inputs(kind), inputs(PARTNER[kind])),
                    {"source": "helpers.pretraining", "towers": [kind, PARTNER[kind]]})
        except (ImportError, AttributeError, TypeError, KeyError) as err:  # absent, or its API moved
            reason = f"{type(err).__name__}: {err}"
    if objective == "contrastive":
        return (ContrastiveTask(kind, PARTNER[kind], embed_dim, sample_rate), (inputs(kind), inputs(PARTNER[kind])),
                {"source": "models+objectives (InfoNCE)", "towers": [kind, PARTNER[kind]],
                 "pretraining_unused": reason})
    return (VAETask(kind, embed_dim, sample_rate, image_size, clip_samples), (inputs(kind),),
            {"source": "models+objectives (single-modality VAE)", "towers": [kind], "pretraining_unused": reason})


def time_training_steps(task: nn.Module, batch: tuple, device: torch.device, *, warmup: int, steps: int,
                        amp_dtype: torch.dtype | None = None, budget_s: float | None = None) -> dict:
    """AdamW training steps on one fixed batch: `warmup` untimed, then up to `steps` timed as one block
    (fewer, but at least 2, once `budget_s` seconds have passed: slow cases do not stall the bench)."""
    task = task.to(device).train()
    batch = tuple(t.to(device) for t in batch)
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    step_times = []

    def one_step():
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = task(*batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss

    for _ in range(warmup):
        one_step()
    _sync(device)
    start = time.perf_counter()
    done = 0
    while done < steps:
        t0 = time.perf_counter()
        loss = one_step()
        done += 1
        if device.type == "cpu":
            step_times.append(time.perf_counter() - t0)
        if budget_s is not None and done >= min(2, steps) and time.perf_counter() - start > budget_s:
            break
    _sync(device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss.detach().float()):
        raise StudyError(f"bench: the loss of {type(task).__name__} became {loss.item()}")
    out = {"seconds": seconds, "steps": done}
    if step_times:
        out["step_ms_min"] = 1e3 * min(step_times)
        out["step_ms_median"] = 1e3 * float(np.median(step_times))
    return out


def bench_throughput(*, device: str | torch.device = "cpu", peak_gflops: float, num_classes: int,
                     batch_size: int = 64, warmup: int = 3, steps: int = 10, image_size: int = 64,
                     clip_samples: int = 32000, sample_rate: int = 16000, amp_dtype: torch.dtype | None = None,
                     budget_s: float | None = None, encoders=ENCODERS, objectives=OBJECTIVES,
                     on_step=lambda: None) -> dict:
    """samples/s and achieved FLOP rate of a training step for every encoder under every objective."""
    from .models import flops_per_sample
    device = torch.device(device)
    cases = {}
    for kind in encoders:
        cases[kind] = {}
        for objective in objectives:
            task, batch, facts = make_task(kind, objective, num_classes=num_classes, image_size=image_size,
                                           clip_samples=clip_samples, sample_rate=sample_rate,
                                           batch_size=batch_size)
            # forward FLOPs per sample (matmuls and convolutions; FFTs are not counted), on a small batch
            fwd = flops_per_sample(task, tuple(t[: min(4, batch_size)] for t in batch))
            timing = time_training_steps(task, batch, device, warmup=warmup, steps=steps, amp_dtype=amp_dtype,
                                         budget_s=budget_s)
            samples_per_s = timing["steps"] * batch_size / timing["seconds"]
            achieved = 3 * fwd * samples_per_s / 1e9  # forward + backward (~2x forward)
            cases[kind][objective] = {
                "samples_per_s": _r(samples_per_s, 1),
                "step_ms": _r(1e3 * timing["seconds"] / timing["steps"], 1),
                "timed_steps": timing["steps"],
                **({"step_ms_min": _r(timing["step_ms_min"], 1), "step_ms_median": _r(timing["step_ms_median"], 1)}
                   if "step_ms_min" in timing else {}),
                "fwd_mflops_per_sample": _r(fwd / 1e6, 2),
                "achieved_gflops": _r(achieved, 2),
                "peak_fraction": _r(achieved / peak_gflops, 4) if peak_gflops else None,
                "parameters": int(sum(p.numel() for p in task.parameters())),
                **facts,
            }
            del task, batch
            on_step()
    return {"device": str(device), "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
            "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": steps, "budget_s_per_case": budget_s,
            "peak_gflops": peak_gflops, "cases": cases,
            "note": "random inputs of the study's shapes (compute only); FLOPs = forward x 3, FFTs of the "
                    "log-mel front end not counted; pair objectives count a pair as one sample and run "
                    "both towers (see each case's towers)"}


def bench_cuda(*, num_classes: int, batch_size: int, warmup: int, steps: int, image_size: int,
               clip_samples: int, sample_rate: int, quick: bool, budget_s: float | None = None,
               on_step=lambda: None) -> dict | None:
    """The throughput section on the GPU in float32 and under autocast; None when no CUDA GPU is visible."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    n = 4096 if quick else 8192
    peaks = {"float32": matmul_peak(device, torch.float32, n), "float16": matmul_peak(device, torch.float16, n)}
    amps = {"float32": None, "float16": torch.float16}
    if torch.cuda.is_bf16_supported():
        peaks["bfloat16"] = matmul_peak(device, torch.bfloat16, n)
        amps["bfloat16"] = torch.bfloat16
    out = {"devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "matmul_peak": peaks, "throughput": {}}
    for name, dtype in amps.items():
        out["throughput"][name] = bench_throughput(
            device=device, peak_gflops=peaks[name]["gflops"], num_classes=num_classes, batch_size=batch_size,
            warmup=warmup, steps=steps, image_size=image_size, clip_samples=clip_samples,
            sample_rate=sample_rate, amp_dtype=dtype, budget_s=budget_s, on_step=on_step)
    torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- 3. pipelines
def _plain_resample(x: torch.Tensor, sr: int, new_sr: int) -> torch.Tensor:
    """torchaudio.functional.resample, as a tutorial would call it. For rates whose reduced ratio is huge
    (11127 Hz, 22257 Hz...) its polyphase kernel takes gigabytes and ~10 s per call, so those few files
    fall back to scipy's FFT resampling: this makes the plain pipeline faster than a literal tutorial."""
    import torchaudio.functional as AF
    g = math.gcd(sr, new_sr)
    if max(sr, new_sr) // g <= 2000:
        return AF.resample(x, sr, new_sr)
    from scipy.signal import resample as fft_resample
    return torch.from_numpy(fft_resample(x.numpy(), int(round(len(x) * new_sr / sr))).astype(np.float32))


class PlainAudioDataset(torch.utils.data.Dataset):
    """What a tutorial writes: every access reads the WAV, mixes to mono, resamples and loop-pads/crops."""

    def __init__(self, files: list[Path], labels, sample_rate: int = 16000, seconds: float = 2.0):
        self.files, self.labels = list(files), [int(y) for y in labels]
        self.sample_rate, self.num_samples = sample_rate, int(round(seconds * sample_rate))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import soundfile as sf
        x, sr = sf.read(str(self.files[i]), dtype="float32", always_2d=True)
        x = torch.from_numpy(x.mean(axis=1))
        if sr != self.sample_rate:
            x = _plain_resample(x, sr, self.sample_rate)
        n = self.num_samples
        x = x.repeat(-(-n // len(x)))[:n] if len(x) < n else x[:n]
        return x, self.labels[i]


def plain_training(files, labels, *, num_classes: int, epochs: int, batch_size: int, lr: float,
                   embed_dim: int, sample_rate: int, clip_seconds: float, device: torch.device,
                   kind: str = PIPELINE_ENCODER, seed: int = 0) -> dict:
    """The reference pipeline: Dataset + DataLoader(shuffle, num_workers=0) + the same model and optimiser."""
    import scipy.signal  # noqa: F401  imported before the clock starts, as the project's modules are
    import soundfile  # noqa: F401

    from .models import Classifier, make_encoder
    torch.manual_seed(seed)
    start = time.perf_counter()
    dataset = PlainAudioDataset(files, labels, sample_rate, clip_seconds)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         drop_last=len(dataset) >= batch_size)
    model = Classifier(make_encoder(kind, embed_dim, sample_rate), num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    data_s, samples, losses = 0.0, 0, []
    for _ in range(epochs):
        model.train()
        t_data = time.perf_counter()
        for X, y in loader:
            data_s += time.perf_counter() - t_data
            X, y = X.to(device), y.to(device)
            loss = F.cross_entropy(model(X), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            samples += len(y)
            t_data = time.perf_counter()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "data_s": data_s, "compute_s": seconds - data_s, "samples": samples,
            "final_loss": losses[-1] if losses else None}


def bench_pipelines(spec: str, *, epochs: int, batch_size: int = 64, fraction: float = PIPELINE_FRACTION,
                    literal_resample_probe: bool = False, on_step=lambda: None) -> dict:
    """The same supervised run (audio_mel) through the project's pipeline and through the plain one."""
    from .experiments import _load, prepare_study, train_classifier
    _load.cache_clear()  # the project pipeline loads from the (warm) disk cache, not from memory
    params = {"dataset": spec, "fraction": fraction, "epochs": epochs, "batch_size": batch_size,
              "progress": False}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = prepare_study(params)
    prepare_s = time.perf_counter() - t0
    _, history = train_classifier(study, PIPELINE_ENCODER)
    project_s = time.perf_counter() - t0
    on_step()
    p = study.params
    train_idx = study.split["audio"].train
    base = study.data.spec.root / study.data.spec.audio_dir
    files = [base / study.data.audio.paths[i] for i in train_idx]
    labels = study.labels("audio", "train")
    try:  # libmpg123 prints resync notes for the MP3-in-WAV files straight to fd 2: hide them (one dup2)
        from .data import _quiet_c_stderr as quiet
    except ImportError:
        quiet = contextlib.nullcontext
    with quiet():
        plain = plain_training(files, labels, num_classes=study.num_classes, epochs=epochs,
                               batch_size=batch_size, lr=p["lr"], embed_dim=p["embed_dim"],
                               sample_rate=p["sample_rate"], clip_seconds=p["clip_seconds"], device=study.device)
    on_step()
    samples_per_epoch = max(1, len(train_idx) // batch_size) * min(batch_size, len(train_idx))
    odd = [f for f, sr in ((f, _samplerate(f)) for f in files)
           if sr != p["sample_rate"] and max(sr, p["sample_rate"]) // math.gcd(sr, p["sample_rate"]) > 2000]
    out = {
        "encoder": PIPELINE_ENCODER, "fraction": fraction, "epochs": epochs, "batch_size": batch_size,
        "train_items": len(train_idx), "device": str(study.device),
        "project": {"seconds": _r(project_s), "prepare_s": _r(prepare_s), "train_s": _r(history.seconds),
                    "samples_per_s": _r(history.samples_per_second, 1), "samples": epochs * samples_per_epoch,
                    "includes": "warm cache load, split, per-epoch validation, best-epoch restore"},
        "plain": {"seconds": _r(plain["seconds"]), "data_s": _r(plain["data_s"]),
                  "compute_s": _r(plain["compute_s"]), "samples": plain["samples"],
                  "samples_per_s": _r(plain["samples"] / plain["seconds"], 1),
                  "odd_rate_files": len(odd),
                  "includes": "decode + mono + resample + pad/crop of every file on every access; no validation"},
        "speedup": _r(plain["seconds"] / project_s, 2),
    }
    if odd:
        out["plain"]["note"] = (f"{len(odd)} training file(s) have a sample rate whose torchaudio polyphase kernel "
                                "is huge; the plain pipeline resamples them with scipy's FFT instead")
    if literal_resample_probe and odd:
        import soundfile as sf
        import torchaudio.functional as AF
        x, sr = sf.read(str(odd[0]), dtype="float32", always_2d=True)
        t1 = time.perf_counter()
        AF.resample(torch.from_numpy(x.mean(axis=1)), sr, p["sample_rate"])
        per_call = time.perf_counter() - t1
        out["plain"]["literal_torchaudio_odd_rate_s"] = _r(per_call)
        out["plain"]["literal_estimate_s"] = _r(plain["seconds"] + epochs * len(odd) * per_call)
        out["speedup_vs_literal_estimate"] = _r(out["plain"]["literal_estimate_s"] / project_s, 2)
    return out


def _samplerate(path: Path) -> int:
    import soundfile as sf
    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:
        return 0


# --------------------------------------------------------------------------- 4. runs
TRIVIAL_PARAMS = 'x = 1\nrun_dir = ""\n'
TRIVIAL_WORK = ("import json, os\n"
                "with open(os.path.join(run_dir, 'metrics.json'), 'w') as f:\n"
                "    json.dump({'params': {'x': x}}, f)\n")


def _trivial_notebook(folder: Path) -> Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(TRIVIAL_PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(TRIVIAL_WORK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(folder) / "trivial.ipynb"
    nbformat.write(nb, path)
    return path


def bench_sweep_overhead(folder: Path, repeats: int = 2) -> dict:
    """Per-point overhead of sweeps.run_point (kernel start, papermill, saving) on a trivial notebook."""
    from .sweeps import run_point
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notebook = _trivial_notebook(folder)
    rows = [run_point(notebook, {"x": i}, folder / f"point{i}") for i in range(repeats)]
    failed = [r for r in rows if r["status"] != "ran"]
    if failed:
        return {"status": "failed", "error": _first_line(failed[0]["error"])}
    overheads = [r["overhead_s"] for r in rows if r["overhead_s"] is not None]
    return {"status": "ran", "points": repeats,
            "per_point_overhead_s": _r(float(np.mean(overheads))) if overheads else None,
            "overhead_runs_s": [_r(o) for o in overheads],
            "wall_runs_s": [_r(r["seconds"]) for r in rows],
            "cell_s": [_r(r["seconds"] - r["overhead_s"]) for r in rows if r["overhead_s"] is not None]}


def bench_pretraining(spec: str) -> dict:
    """Wall time of notebook 03's core, helpers.pretraining.run_contrastive, at fraction=0.8, default epochs
    (pre-training, then the shared evaluation and fine-tuning, as the notebook runs it)."""
    try:
        from . import pretraining
    except ImportError as err:
        return {"available": False, "reason": f"helpers.pretraining not available ({err})"}
    fn = getattr(pretraining, "run_contrastive", None)
    if fn is None:
        return {"available": False, "reason": "helpers.pretraining has no run_contrastive"}
    from .experiments import _load, prepare_study
    params = {"dataset": spec, "fraction": PIPELINE_FRACTION, "progress": False}
    _load.cache_clear()  # the run loads from the warm disk cache, as a fresh notebook kernel would
    try:
        first = next(iter(inspect.signature(fn).parameters), None)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(prepare_study(params)) if first == "study" else fn(params)
        seconds = time.perf_counter() - t0
    except Exception as err:  # report, do not abort the whole bench
        return {"available": True, "error": f"{type(err).__name__}: {_first_line(str(err))}"}
    record = out[0] if isinstance(out, tuple) and out and isinstance(out[0], dict) else {}
    timings = record.get("timings") if isinstance(record.get("timings"), dict) else {}
    epochs = (record.get("params") or {}).get("epochs")
    return {"available": True, "seconds": _r(seconds), "epochs": epochs,
            "breakdown_s": {k: _r(v) for k, v in timings.items() if isinstance(v, (int, float))},
            "includes": "data load, pre-training, evaluation (probes, retrieval), fine-tuning"}


def _notebooks() -> list[Path]:
    return sorted(p for p in (REPO_ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))


def _grids() -> list[Path]:
    return sorted(p for p in PARAMS_DIR.glob("*.yaml")) if PARAMS_DIR.is_dir() else []


def bench_notebooks(spec: str, folder: Path, on_step=lambda: None, timeout: float | None = None) -> list[dict]:
    """Every notebook at its default parameters (the dataset swapped when the bench targets another one)."""
    from .sweeps import notebook_parameter_names, run_point
    rows = []
    for nb in _notebooks():
        try:
            names = notebook_parameter_names(nb)
        except StudyError as err:
            rows.append({"notebook": nb.name, "status": "failed", "error": _first_line(str(err))})
            on_step()
            continue
        params = {"dataset": spec} if spec != "animals" and "dataset" in names else {}
        r = run_point(nb, params, folder / nb.stem, timeout=timeout)
        rows.append({"notebook": nb.name, "status": r["status"], "seconds": _r(r["seconds"]),
                     "overhead_s": _r(r["overhead_s"]), "error": _first_line(r["error"])})
        on_step()
    return rows


def _work(point: dict) -> float:
    """Training work of a point, in units of the whole data for one epoch (fraction x epochs)."""
    from .experiments import DEFAULTS
    fraction = point.get("fraction", DEFAULTS["fraction"])
    epochs = point.get("epochs", DEFAULTS["epochs"])
    return float(fraction) * float(epochs)


def _fit_time(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed, per unit of work) seconds from (work, seconds) pairs: a least-squares line when the works
    differ, else proportional. Fixed costs (kernel, data load, ImageNet features, evaluation) stay fixed."""
    x = np.array([w for w, _ in samples], dtype=float)
    y = np.array([t for _, t in samples], dtype=float)
    if len(set(x.round(9))) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        if slope > 0 and intercept >= 0:
            return float(intercept), float(slope)
    return 0.0, float(y.mean() / max(x.mean(), 1e-9))


def bench_grids(folder: Path, notebook_rows: list[dict] | None = None, on_step=lambda: None,
                timeout: float | None = None) -> tuple[dict, dict]:
    """Run the quick profile of every grid in params/ into one results folder (points shared between grids
    run once, as in a real sweep); estimate the full study from the points that ran."""
    from .records import default_run_dir
    from .sweeps import load_grid, sweep
    grids = _grids()
    if not grids:
        reason = f"no grid files in {PARAMS_DIR}"
        return {"available": False, "reason": reason}, {"available": False, "reason": reason}
    quick_rows, quick_total = [], 0.0
    timings: dict[str, list] = {}     # notebook stem -> [(work, seconds)] of the quick points that ran
    full_points: dict[tuple, dict] = {}  # unique full-profile points over all grids
    full_errors: dict[str, str] = {}
    for grid in grids:
        try:
            notebook, points = load_grid(grid, "quick")
        except StudyError as err:
            quick_rows.append({"grid": grid.name, "status": "skipped", "reason": _first_line(str(err))})
            on_step()
            continue
        df = sweep(grid, profile="quick", results_dir=folder, progress=False, timeout=timeout)
        seconds = float(df.attrs.get("seconds", 0.0))
        quick_total += seconds
        ran = df[df["status"] == "ran"]
        for point, row in zip(points, df.to_dict("records")):
            if row["status"] == "ran" and row.get("seconds"):
                timings.setdefault(notebook.stem, []).append((_work(point), float(row["seconds"])))
        quick_rows.append({"grid": grid.name, "notebook": notebook.name, "points": len(df), "ran": int(len(ran)),
                           "shared_done": int((df["status"] == "done").sum()),
                           "failed": int(df["status"].isin(["failed", "skipped_failed"]).sum()),
                           "seconds": _r(seconds), "mean_point_s": _r(ran["seconds"].mean()) if len(ran) else None,
                           "first_error": _first_line(next((e for e in df.get("error", []) if e), None))})
        try:
            notebook_full, points_full = load_grid(grid, "full")
        except StudyError as err:
            full_errors[grid.name] = _first_line(str(err))
            points_full = []
        for point in points_full:
            key = (notebook_full.stem, str(default_run_dir(notebook_full.stem, point, folder)))
            full_points[key] = point
        on_step()
    quick = {"available": True, "seconds": _r(quick_total), "grids": quick_rows}
    per_notebook, missing, total = {}, set(), 0.0
    for (stem, _), point in full_points.items():
        if stem not in timings:
            missing.add(stem)
            continue
        fixed, per_unit = _fit_time(timings[stem])
        est = fixed + per_unit * _work(point)
        entry = per_notebook.setdefault(stem, {"points": 0, "estimate_s": 0.0, "fixed_s": _r(fixed),
                                               "per_unit_s": _r(per_unit)})
        entry["points"] += 1
        entry["estimate_s"] += est
        total += est
    in_grids = {stem for stem, _ in full_points}
    singles = [r for r in (notebook_rows or []) if r.get("seconds") and Path(r["notebook"]).stem not in in_grids]
    total += sum(r["seconds"] for r in singles)
    for entry in per_notebook.values():
        entry["estimate_s"] = _r(entry["estimate_s"])
    full = {"available": bool(per_notebook), "seconds": _r(total) if per_notebook else None, "estimate": True,
            "grids": per_notebook, "unique_points": len(full_points),
            "notebooks_once_s": {r["notebook"]: r["seconds"] for r in singles},
            "unestimated_notebooks": sorted(missing),
            "full_profile_errors": full_errors,
            "note": "full-profile points of every grid (shared points once) x a line fitted to the quick points' "
                    "seconds against fraction x epochs, plus each notebook outside the grids once at its defaults"}
    return quick, full


def measured_study(results_dir=None, profile: str = "full") -> dict:
    """The wall time the committed study actually took: papermill's start and end times of the executed
    notebook of every `profile` point of every grid whose record is complete and made by the current code,
    read from results_dir/runs (points shared between grids once). wall_s is the union of the points' intervals (parallel points overlap; idle gaps between grids
    do not count), compute_s the sum of their durations."""
    from datetime import datetime

    from .config import RESULTS_DIR
    from .records import code_version, default_run_dir, record_is_complete
    from .sweeps import load_grid
    results_dir = Path(results_dir or RESULTS_DIR)
    version = code_version()
    points, per_grid = {}, {}
    for grid in _grids():
        try:
            notebook, grid_points = load_grid(grid, profile)
        except StudyError:
            continue
        per_grid[grid.name] = {"points": len(grid_points), "found": 0}
        for point in grid_points:
            run_dir = default_run_dir(notebook.stem, point, results_dir)
            if str(run_dir) in points:
                per_grid[grid.name]["found"] += 1
                continue
            if not record_is_complete(run_dir, point, version):   # missing, failed, or by other code
                continue
            try:
                meta = json.loads((run_dir / notebook.name).read_text(encoding="utf-8"))["metadata"]["papermill"]
                interval = (datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            points[str(run_dir)] = interval
            per_grid[grid.name]["found"] += 1
    if not points:
        return {"available": False, "reason": f"no executed {profile}-profile points under {results_dir / 'runs'}"}
    wall, end = 0.0, None
    for start, stop in sorted(points.values()):
        if end is None or start > end:
            wall += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            wall += (stop - end).total_seconds()
            end = stop
    total = sum(g["points"] for g in per_grid.values())
    return {"available": True, "profile": profile, "wall_s": _r(wall), "unique_points": len(points),
            "compute_s": _r(sum((b - a).total_seconds() for a, b in points.values())),
            "complete": all(g["found"] == g["points"] for g in per_grid.values()), "grids": per_grid,
            "first_start": min(a for a, _ in points.values()).isoformat(),
            "last_end": max(b for _, b in points.values()).isoformat(),
            "note": f"{len(points)} executed points (of {total} listed, shared ones once) read from {results_dir}; "
                    "measured on whatever machine ran them, not in this bench run"}


# --------------------------------------------------------------------------- targets and the whole bench
def evaluate_targets(results: dict) -> list[dict]:
    """Every target with its measured value and whether it is met (None: not measured in this run)."""
    rows = []
    for name, what, op, threshold, unit, path in TARGETS:
        value = _dig(results, path)
        met = None if value is None else (value < threshold if op == "<" else value >= threshold)
        rows.append({"name": name, "what": what, "target": f"{op} {threshold:g}{(' ' + unit) if unit else ''}",
                     "threshold": threshold, "unit": unit, "measured": value, "met": met})
    return rows


def run_bench(spec: str = "animals", data_root: str | None = None, *, quick: bool = False,
              batch_size: int = 64, warmup: int | None = None, steps: int | None = None,
              epochs: int | None = None, keep_cache: bool = False, progress: bool = True,
              notebook_timeout: float | None = None, image_size: int | None = None,
              clip_seconds: float | None = None, matmul_size: int = 2048, pretraining: bool = True,
              budget_s: float | None = None) -> dict:
    """Run every section; return one JSON-ready dict (see the module docstring).

    image_size and clip_seconds set the shapes of the throughput inputs (default: the study's DEFAULTS);
    the tests shrink them, a benchmark worth reporting keeps them."""
    from .data import load_spec
    from .experiments import DEFAULTS
    started = time.perf_counter()
    warmup = warmup if warmup is not None else (1 if quick else 2)
    steps = steps if steps is not None else (3 if quick else 10)
    budget_s = budget_s if budget_s is not None else (8.0 if quick else 20.0)
    epochs = epochs if epochs is not None else (1 if quick else 3)
    spec_obj = load_spec(spec, data_root)  # fails early, with the file to fix, before any work
    num_classes = spec_obj.num_classes
    image_size, sample_rate = image_size or DEFAULTS["image_size"], DEFAULTS["sample_rate"]
    clip_samples = int(round((clip_seconds or DEFAULTS["clip_seconds"]) * sample_rate))
    workdir = Path(tempfile.mkdtemp(prefix="menagerie-bench-"))
    cache = workdir / "cache"
    notebooks, grids = ([], []) if quick else (_notebooks(), _grids())
    cuda = torch.cuda.is_available()
    n_tasks = (1 + (1 if quick else 2) + 1 + 9 + 2 + 1 + int(pretraining) + len(notebooks) + len(grids)
               + (27 if cuda else 0))
    results: dict = {"bench": {"quick": quick, "spec": spec, "data_root": data_root or str(spec_obj.root),
                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workdir": str(workdir)},
                     "machine": machine_info()}
    bar = _progress_bar(n_tasks, progress)

    def step(desc=None):
        bar.update(1)
        if desc:
            bar.set_description(desc)

    try:
        with _environ(STUDY_CACHE=cache, STUDY_DATA=data_root), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bar.set_description("data: cold + warm load")
            results["data"] = bench_data(spec, data_root, cache, warm_repeats=1 if quick else 2, on_step=step)
            bar.set_description("matmul peak")
            peak = matmul_peak("cpu", torch.float32, matmul_size, repeats=3 if quick else 7)
            results["matmul_peak"] = {"cpu": peak}
            step("throughput")
            results["throughput"] = bench_throughput(
                device="cpu", peak_gflops=peak["gflops"], num_classes=num_classes, batch_size=batch_size,
                warmup=warmup, steps=steps, image_size=image_size, clip_samples=clip_samples,
                sample_rate=sample_rate, budget_s=budget_s, on_step=step)
            bar.set_description("pipelines: project vs plain")
            results["pipeline"] = bench_pipelines(spec, epochs=epochs, batch_size=batch_size,
                                                  literal_resample_probe=not quick, on_step=step)
            bar.set_description("sweep runner overhead")
            runs: dict = {"sweep_overhead": bench_sweep_overhead(workdir / "overhead", repeats=1 if quick else 2)}
            step()
            if pretraining:
                bar.set_description("pre-training run")
                runs["pretraining"] = bench_pretraining(spec)
                step()
            else:
                runs["pretraining"] = {"available": False, "reason": "skipped (--no-pretraining)"}
            if quick:
                skipped = {"available": False, "reason": "skipped (--quick)"}
                runs.update(notebooks=[], quick_profile=dict(skipped), full_study=dict(skipped))
            else:
                bar.set_description("notebooks")
                runs["notebooks"] = bench_notebooks(spec, workdir / "notebooks", on_step=step,
                                                    timeout=notebook_timeout)
                bar.set_description("quick profile")
                runs["quick_profile"], runs["full_study"] = bench_grids(workdir / "sweeps", runs["notebooks"],
                                                                        on_step=step, timeout=notebook_timeout)
            runs["full_study_measured"] = measured_study()
            results["runs"] = runs
            bar.set_description("cuda")
            results["cuda"] = bench_cuda(num_classes=num_classes, batch_size=batch_size, warmup=warmup,
                                         steps=steps, image_size=image_size, clip_samples=clip_samples,
                                         sample_rate=sample_rate, quick=quick, budget_s=budget_s, on_step=step)
    finally:
        bar.close()
        if not keep_cache:
            shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = evaluate_targets(results)
    results["bench"]["seconds"] = _r(time.perf_counter() - started, 1)
    results["bench"]["workdir_kept"] = keep_cache
    results["machine"]["load_avg_1m_end"] = _r(os.getloadavg()[0], 2)
    results["machine"]["bench_peak_rss_mb"] = _r(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


# --------------------------------------------------------------------------- output
def _fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def format_table(results: dict) -> str:
    """The readable report `python -m helpers bench` prints without --json."""
    m, lines = results["machine"], []
    lines.append(f"machine: {m['cpu_model']} | {m['cores']} cores ({m['cores_usable']} usable), "
                 f"{m['torch_threads']} torch threads | {m['memory_gb']} GB | torch {m['torch']} | "
                 f"device {m['device']} | load avg {m['load_avg_1m']} -> {m.get('load_avg_1m_end')}")
    b = results["bench"]
    lines.append(f"bench: spec {b['spec']} | quick={b['quick']} | {b.get('seconds')} s")
    d = results.get("data", {})
    lines += ["", "DATA",
              f"  cold preparation   {_fmt(d.get('cold_prepare_s'))} s  (audio {_fmt(d['cold_breakdown_s']['audio'])}, "
              f"image {_fmt(d['cold_breakdown_s']['image'])})",
              f"  warm load          {_fmt(d.get('warm_load_s'))} s  (of which hashing the sources "
              f"{_fmt(d['warm_breakdown_s']['hash_sources_s'])} s)",
              f"  peak RSS           cold {_fmt(d['peak_rss_mb']['cold'], 0)} MB, warm {_fmt(d['peak_rss_mb']['warm'], 0)} MB",
              f"  items              {d.get('num_audio')} clips, {d.get('num_image')} images, "
              f"{d.get('failures')} failures; cache {d.get('cache_mb')} MB"]

    def throughput_block(t, title):
        out = ["", f"{title}  (batch {t['batch_size']}, {t['timed_steps']} timed steps, matmul peak "
                   f"{_fmt(t['peak_gflops'], 1)} GFLOP/s)",
               f"  {'encoder':<11} {'objective':<12} {'samples/s':>10} {'ms/step':>9} {'MFLOP/smp':>10} "
               f"{'GFLOP/s':>9} {'of peak':>8}"]
        for kind, objs in t["cases"].items():
            for obj, c in objs.items():
                frac = c["peak_fraction"]
                out.append(f"  {kind:<11} {obj:<12} {_fmt(c['samples_per_s'], 1):>10} {_fmt(c['step_ms'], 1):>9} "
                           f"{_fmt(c['fwd_mflops_per_sample'], 1):>10} {_fmt(c['achieved_gflops'], 1):>9} "
                           f"{('n/a' if frac is None else f'{100 * frac:.1f}%'):>8}")
        return out

    if "throughput" in results:
        lines += throughput_block(results["throughput"], "THROUGHPUT cpu")
    p = results.get("pipeline")
    if p:
        lines += ["", f"PIPELINE  ({p['encoder']}, fraction {p['fraction']}, {p['epochs']} epoch(s), "
                      f"{p['train_items']} training clips, {p['device']})",
                  f"  project   {_fmt(p['project']['seconds'])} s  (prepare {_fmt(p['project']['prepare_s'])} s, "
                  f"train {_fmt(p['project']['train_s'])} s)",
                  f"  plain     {_fmt(p['plain']['seconds'])} s  (data {_fmt(p['plain']['data_s'])} s, "
                  f"compute {_fmt(p['plain']['compute_s'])} s)",
                  f"  speedup   {_fmt(p['speedup'])}x"]
        if "literal_estimate_s" in p["plain"]:
            lines.append(f"  literal torchaudio on the {p['plain']['odd_rate_files']} odd-rate files: "
                         f"{_fmt(p['plain']['literal_torchaudio_odd_rate_s'])} s per call, plain would take "
                         f"~{_fmt(p['plain']['literal_estimate_s'])} s ({_fmt(p['speedup_vs_literal_estimate'])}x)")
    r = results.get("runs", {})
    if r:
        so = r["sweep_overhead"]
        lines += ["", "RUNS",
                  f"  sweep per-point overhead  {_fmt(so.get('per_point_overhead_s'))} s  ({so.get('status')})"]
        pt = r["pretraining"]
        lines.append(f"  pre-training run          " + (f"{_fmt(pt.get('seconds'))} s" if "seconds" in pt else
                                                        pt.get("reason") or pt.get("error") or "n/a"))
        for nb in r["notebooks"]:
            lines.append(f"  notebook {nb['notebook']:<30} {_fmt(nb.get('seconds'))} s  {nb['status']}"
                         + (f": {nb['error']}" if nb.get("error") else ""))
        for key, label in (("quick_profile", "quick profile"), ("full_study", "full study (estimate)")):
            v = r[key]
            lines.append(f"  {label:<25} " + (f"{_fmt(v.get('seconds'))} s" if v.get("seconds") is not None
                                               else v.get("reason", "n/a")))
        v = r.get("full_study_measured") or {}
        lines.append(f"  {'full study (measured)':<25} " + (
            f"{_fmt(v['wall_s'])} s wall, {_fmt(v['compute_s'])} s of point time, {v['unique_points']} points"
            + ("" if v["complete"] else " (incomplete)") if v.get("available") else v.get("reason", "n/a")))
    c = results.get("cuda")
    lines += ["", "CUDA: " + ("none visible" if c is None else ", ".join(c["devices"]))]
    if c:
        for name, pk in c["matmul_peak"].items():
            lines.append(f"  matmul peak {name}: {_fmt(pk['gflops'], 0)} GFLOP/s")
        for name, t in c["throughput"].items():
            lines += throughput_block(t, f"THROUGHPUT cuda {name}")
    lines += ["", "TARGETS", f"  {'target':<55} {'goal':>12} {'measured':>12}  met"]
    for t in results["targets"]:
        met = {True: "yes", False: "NO", None: "n/a"}[t["met"]]
        lines.append(f"  {t['what']:<55} {t['target']:>12} {_fmt(t['measured'], 3):>12}  {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer steps, 1 epoch, no notebooks or grids")
    parser.add_argument("--no-pretraining", action="store_true", help="skip the pre-training run")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed steps per throughput case before stopping early (default 8 quick, 20)")
    parser.add_argument("--spec", default="animals", help="dataset YAML: a name in params/datasets/ or a path")
    parser.add_argument("--data-root", default=None, help="data root (default: $STUDY_DATA, else data/)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per case")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the pipeline comparison")
    parser.add_argument("--notebook-timeout", type=float, default=None, help="per-cell limit for notebooks, s")
    parser.add_argument("--image-size", type=int, default=None, help="throughput image side (default: study's)")
    parser.add_argument("--clip-seconds", type=float, default=None, help="throughput clip length (default: study's)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n float32 matmul peak")
    parser.add_argument("--keep-cache", action="store_true", help="keep the temporary cache and run folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    for name, low in (("batch_size", 2), ("steps", 1), ("epochs", 1), ("image_size", 8), ("matmul_size", 16)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise StudyError(f"--{name.replace('_', '-')}={value} must be >= {low}")
    if args.clip_seconds is not None and not 0.1 <= args.clip_seconds <= 10:
        raise StudyError(f"--clip-seconds={args.clip_seconds} must be in [0.1, 10]")
    if args.warmup is not None and args.warmup < 0:
        raise StudyError(f"--warmup={args.warmup} must be >= 0")
    results = run_bench(args.spec, args.data_root, quick=args.quick, batch_size=args.batch_size,
                        warmup=args.warmup, steps=args.steps, epochs=args.epochs, keep_cache=args.keep_cache,
                        progress=not args.no_progress, notebook_timeout=args.notebook_timeout,
                        image_size=args.image_size, clip_seconds=args.clip_seconds, matmul_size=args.matmul_size,
                        pretraining=not args.no_pretraining, budget_s=args.budget)
    print(json.dumps(results, indent=1) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
