"""Shared fixtures: the real data root, a throw-away cache for synthetic data, a synthetic data set."""
from pathlib import Path

import pytest

from helpers.config import cache_dir, data_root
from helpers.synthetic import make_synthetic

# The environment as the test run started it, before any test sets STUDY_CACHE for itself:
# the real data always goes through this cache ($STUDY_CACHE when set, e.g. in CI; else the user cache),
# so decoding the ~1800 real files happens at most once, not once per session.
REAL_CACHE = cache_dir()
README_AUDIO = {"lion": 45, "donkey": 25, "cow": 75, "cat": 200, "dog": 200, "sheep": 40, "frog": 35,
                "bird": 200, "monkey": 25, "chicken": 30}
README_IMAGE = {"bird": 156, "cat": 87, "dog": 93, "cow": 109, "chicken": 80, "lion": 83, "monkey": 74,
                "sheep": 76, "frog": 97, "donkey": 99}


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real data root ($STUDY_DATA, else data/ in the repository); the test is skipped when it is absent."""
    root = data_root()
    if not ((root / "animal-sounds").is_dir() and (root / "animal-images").is_dir()):
        pytest.skip(f"real data not found at {root} (set STUDY_DATA or run `python -m helpers data fetch`)")
    return root


@pytest.fixture(scope="session")
def real_cache() -> Path:
    return REAL_CACHE


@pytest.fixture(scope="session")
def real_dataset(real_root, real_cache):
    """Every real file decoded once per session (seconds from a warm cache, about a minute from a cold one)."""
    import warnings

    from helpers.data import load_dataset
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE", str(real_cache))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = load_dataset("animals", real_root, progress=False)
    dataset.load_warnings = [str(w.message) for w in caught]
    return dataset


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic-cache")


@pytest.fixture
def cache_env(synthetic_cache, monkeypatch) -> Path:
    """STUDY_CACHE pointed at a session-wide temporary folder (never the real cache) for this test."""
    monkeypatch.setenv("STUDY_CACHE", str(synthetic_cache))
    return synthetic_cache


@pytest.fixture
def fresh_cache(tmp_path, cache_env, monkeypatch) -> Path:
    """STUDY_CACHE pointed at an empty folder of this test only (for tests that inspect or damage it).

    Depends on cache_env so that it is set up after it and wins, whatever the order a test names them in."""
    path = tmp_path / "cache"
    monkeypatch.setenv("STUDY_CACHE", str(path))
    return path


@pytest.fixture
def synthetic_yaml(tmp_path, cache_env) -> Path:
    """A small paired data set (4 classes x 10 clips and 10 images) written as real files; its YAML."""
    return make_synthetic(tmp_path / "synthetic")


@pytest.fixture(scope="module")
def synthetic_study(tmp_path_factory, request):
    """A synthetic data set and its Study, shared by the tests of one module: parameters from the module's
    SMALL, for its NOTEBOOK (default 02_baselines). Cache and results in the module's temp folder."""
    from helpers.experiments import prepare_study
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE", str(root / "cache"))
        mp.setenv("STUDY_RESULTS", str(root / "results"))
        yaml_path = make_synthetic(root / "synthetic")
        study = prepare_study(dict(dataset=str(yaml_path), **request.module.SMALL),
                              getattr(request.module, "NOTEBOOK", "02_baselines"))
        yield {"root": root, "yaml": yaml_path, "study": study}


@pytest.fixture
def synthetic_study_env(synthetic_study, monkeypatch):
    """STUDY_CACHE and STUDY_RESULTS pointed at synthetic_study's folders for one test."""
    monkeypatch.setenv("STUDY_CACHE", str(synthetic_study["root"] / "cache"))
    monkeypatch.setenv("STUDY_RESULTS", str(synthetic_study["root"] / "results"))
    return synthetic_study


@pytest.fixture(scope="module")
def one_thread():
    """Tiny batches: one torch thread is faster, and much faster when other processes share the cores
    (two OpenMP threads then wait on each other at every op). Results do not depend on it."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
