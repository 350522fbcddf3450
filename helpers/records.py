"""Metrics records: one `metrics.json` per executed notebook run, written atomically.

A run folder holds `metrics.json` (the record), the executed notebook and maybe trained weights.
Sweeps decide whether a point is already done by reading the record, so the record must never be
half-written: it is written to a temporary file in the same folder and moved into place.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from .config import REPO_ROOT, RESULTS_DIR, StudyError, chmod_by_umask

RECORD_NAME = "metrics.json"
PACKAGES = ("torch", "torchaudio", "torchvision", "timm", "numpy", "scikit-learn", "papermill")


def _hashed_params(params: dict) -> dict:
    # run_dir says where a run goes, not what it computes; `_`-keys are private bookkeeping.
    return {k: v for k, v in params.items() if k != "run_dir" and not str(k).startswith("_")}


def _canonical(value) -> str:
    return json.dumps(to_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def params_hash(params: dict) -> str:
    """10 hex characters identifying the parameters (key order, run_dir and `_`-keys ignored)."""
    return hashlib.sha1(_canonical(_hashed_params(params)).encode()).hexdigest()[:10]


def default_run_dir(notebook_stem: str, params: dict, results_dir=RESULTS_DIR) -> Path:
    """results/runs/<notebook stem>/<params hash>/ — the same parameters always land in the same place."""
    return Path(results_dir) / "runs" / notebook_stem / params_hash(params)


def resolve_run_dir(run_dir, notebook_stem: str, params: dict, results_dir=RESULTS_DIR) -> Path:
    """The `run_dir` parameter if set, else the default folder (for a notebook run by hand)."""
    return Path(run_dir) if run_dir else default_run_dir(notebook_stem, params, results_dir)


def to_plain(obj):
    """Plain JSON data from numpy/torch scalars and arrays, paths, tuples and sets.

    Non-finite floats become null so the file stays strict JSON that any tool can read.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(to_plain(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_plain(v) for v in obj), key=repr)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars/arrays and torch tensors (no import needed)
        return to_plain(obj.tolist())
    raise StudyError(f"metrics record value {obj!r} of type {type(obj).__name__} is not JSON data; "
                     "convert it to a number, string, list or dict before write_record")


@lru_cache(maxsize=1)
def _package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_info() -> dict | None:
    commit = _git("rev-parse", "--short", "HEAD")
    if commit is None:
        return None
    # results/ changes with every run; only code and configuration count as "dirty".
    status = _git("status", "--porcelain", "--", ".", ":(exclude)results")
    return {"commit": commit, "dirty": bool(status)}


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo, else platform.processor()), or None."""
    name = platform.processor() or None
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return name
    return next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("model name")), name)


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")   # as _device: a run that never imported torch used no torch threads
    return torch.get_num_threads() if torch is not None else None


def _device() -> str:
    # Only ask torch if the run imported it: importing it here would cost seconds per record,
    # and a run that never imported torch computed everything on the CPU anyway.
    torch = sys.modules.get("torch")
    if torch is None:
        return "cpu"
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def environment_info() -> dict:
    """Where a result was computed: interpreter, machine, package versions, git commit, device."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # the same run on another CPU model takes other kernels (AVX2, AVX-512), whose rounding sends training
        # elsewhere: two records agree to the last digit only from one CPU model and thread count
        "cpu_model": cpu_model(),
        # results on the CPU depend on the thread count (reductions split otherwise): the study runs 1 per kernel
        "torch_threads": _torch_threads(),
        "packages": dict(_package_versions()),
        "git": _git_info(),
        "device": _device(),
    }


def _notebook_code(path: Path) -> bytes:
    # Only code cells count: re-saving a notebook with fresh outputs does not change the code.
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = [c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "code"]
        return json.dumps([s if isinstance(s, str) else "".join(s) for s in cells]).encode()
    except (OSError, ValueError, AttributeError):
        return path.read_bytes()  # unreadable as a notebook: hash it as it is


# Code that only reads records, draws, explores the data or times things: no grid point's numbers depend
# on it (the grid notebooks use tables and plots only to show a record already written), so editing it
# (say, the report while a sweep runs) must not mark finished points as stale.
NOT_RESULT_CODE = ("helpers/bench.py", "helpers/report.py", "helpers/readme.py", "helpers/tables.py",
                   "helpers/validity.py", "helpers/items.py", "helpers/curves.py", "helpers/plots.py",
                   "helpers/collect.py", "helpers/__main__.py",
                   "notebooks/01_data_exploration.ipynb", "notebooks/05_label_noise.ipynb",
                   "notebooks/07_scaling.ipynb")


def code_version(root=REPO_ROOT) -> str:
    """12 hex characters identifying the code: every file under helpers/ but NOT_RESULT_CODE, and
    the code cells of notebooks/*.ipynb. Results, caches and notebook outputs do not count."""
    root = Path(root)
    digest = hashlib.sha1()
    files = [p for p in (root / "helpers").rglob("*")
             if p.is_file() and p.suffix != ".pyc" and p.relative_to(root).as_posix() not in NOT_RESULT_CODE
             and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts)]
    files += [p for p in (root / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
              and p.relative_to(root).as_posix() not in NOT_RESULT_CODE]
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_notebook_code(path) if path.suffix == ".ipynb" else path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def atomic_write_text(path, text: str) -> Path:
    """Write `text` to `path` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        chmod_by_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(run_dir, record: dict) -> Path:
    """Write `record` as run_dir/metrics.json (atomically) and return its path.

    The record must hold the run's parameters under "params" (sweeps compare them to decide
    whether a point is done); "environment", "code_version" and "written_at" are added if absent.
    """
    if not run_dir:
        raise StudyError("write_record got an empty run_dir; pass the notebook's run_dir, or "
                         "records.resolve_run_dir(run_dir, '<notebook stem>', params) when it is empty")
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        raise StudyError("write_record needs a dict record with the run's parameters under 'params' "
                         "(e.g. {'params': {...}, 'metrics': {...}}) so sweeps can recognise the run")
    record = dict(record)
    record.setdefault("environment", environment_info())
    record.setdefault("code_version", code_version())
    record.setdefault("written_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_plain(record), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_text(run_dir / RECORD_NAME, text + "\n")


def read_record(path) -> dict | None:
    """The record at `path` (a metrics.json or its run folder); None if missing or corrupt."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        warnings.warn(f"{path}: unreadable metrics record ({e}); delete it and re-run that point",
                      stacklevel=2)
        return None
    if not isinstance(record, dict):
        warnings.warn(f"{path}: metrics record is not a JSON object; delete it and re-run that point",
                      stacklevel=2)
        return None
    return record


def load_records(results_dir=RESULTS_DIR) -> list[dict]:
    """Every readable record under results_dir/runs/, each with its folder added as "run_dir"."""
    records = []
    for path in sorted((Path(results_dir) / "runs").rglob(RECORD_NAME)):
        record = read_record(path)
        if record is not None:
            record["run_dir"] = str(path.parent)
            records.append(record)
    return records


def params_match(recorded: dict, params: dict) -> bool:
    """True if `recorded` has every one of `params` (run_dir and `_`-keys ignored) with the same value.

    The record may hold more: a notebook records its defaults too, a grid names only what it varies.
    """
    return all(k in recorded and _canonical(recorded[k]) == _canonical(v)
               for k, v in _hashed_params(params).items())


def record_is_complete(run_dir, params: dict, code_version: str) -> bool:
    """True if run_dir holds a record of these parameters computed by this code version."""
    record = read_record(Path(run_dir) / RECORD_NAME)
    return (record is not None and record.get("code_version") == code_version
            and isinstance(record.get("params"), dict) and params_match(record["params"], params))
