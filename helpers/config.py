"""Where things live, and the parameters every notebook shares (validated before any work)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"
# $STUDY_RESULTS redirects run records (the tests use it to keep results/ clean).
RESULTS_DIR = Path(os.environ.get("STUDY_RESULTS") or REPO_ROOT / "results")


class StudyError(Exception):
    """A problem the user can fix: the message names the file or parameter and what to do."""


def data_root() -> Path:
    """The real data root: $STUDY_DATA, else data/ in the repository."""
    return Path(os.environ.get("STUDY_DATA") or REPO_ROOT / "data").expanduser()


def cache_dir() -> Path:
    """Decoded-tensor cache: $STUDY_CACHE, else ~/.cache/menagerie (never under a read-only data root)."""
    return Path(os.environ.get("STUDY_CACHE") or Path.home() / ".cache" / "menagerie").expanduser()


# Scientific parameters (what the study varies) and nuisance parameters (fixed or tuned on validation).
METHODS = ("image", "audio_wave", "audio_mel", "late_fusion", "imagenet",
           "contrastive", "supcon", "mvae", "autoencoder")
NOISE_KINDS = ("symmetric", "pair")
DEVICES = ("auto", "cpu", "cuda", "mps")


def validate_params(params: dict, allowed: dict | None = None) -> dict:
    """Check the parameters shared by the notebooks; raise StudyError naming the first bad one.

    `allowed`, when given, is the full set of names the caller accepts: any other name is an error
    (catches typos such as `fration`).
    """
    if allowed is not None:
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise StudyError(f"unknown parameter(s) {unknown}; known: {sorted(allowed)}")
    checks = {
        "fraction": (lambda v: isinstance(v, (int, float)) and 0 < v <= 0.8,
                     "must be a training fraction of the whole data in (0, 0.8], e.g. 0.2, 0.5 or 0.8"),
        "noise": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
                  "must be a label-noise rate in [0, 1), e.g. 0, 0.05, 0.1 or 0.2"),
        "noise_kind": (lambda v: v in NOISE_KINDS, f"must be one of {NOISE_KINDS}"),
        "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                 "must be a non-negative integer"),
        "epochs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "must be a positive integer"),
        "image_size": (lambda v: isinstance(v, int) and 8 <= v <= 512, "must be an integer in [8, 512]"),
        "device": (lambda v: v in DEVICES, f"must be one of {DEVICES}"),
        "lr": (lambda v: isinstance(v, (int, float)) and 0 < v < 1, "must be a learning rate in (0, 1)"),
        "batch_size": (lambda v: isinstance(v, int) and v >= 2, "must be an integer >= 2"),
    }
    for name, (ok, what) in checks.items():
        if name in params and not ok(params[name]):
            raise StudyError(f"parameter {name}={params[name]!r} {what}")
    if "methods" in params:
        bad = [m for m in params["methods"] if m not in METHODS]
        if bad:
            raise StudyError(f"unknown method(s) {bad}; known: {list(METHODS)}")
    return params
