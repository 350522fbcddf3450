"""Where things live, and the error type every user-facing check raises (parameters: helpers.schema)."""
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


def external_root() -> Path:
    """The independent evaluation data (params/datasets/external.yaml): $STUDY_EXTERNAL, else data-external/."""
    return Path(os.environ.get("STUDY_EXTERNAL") or REPO_ROOT / "data-external").expanduser()


def cache_dir() -> Path:
    """Decoded-tensor cache: $STUDY_CACHE, else ~/.cache/menagerie (never under a read-only data root)."""
    return Path(os.environ.get("STUDY_CACHE") or Path.home() / ".cache" / "menagerie").expanduser()


def _read_umask() -> int:
    umask = os.umask(0)   # the only way to read it is to set it: done once, at import, before any thread
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def chmod_by_umask(path) -> None:
    """Give a file made by tempfile.mkstemp (mode 0600) the mode an ordinary new file gets: readable by the
    user's group like the rest of the tree (the process's umask, read at import: setting it to read it
    again here would give files that other threads create meanwhile the mode 0666)."""
    os.chmod(path, 0o666 & ~_UMASK)
