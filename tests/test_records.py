"""Metrics records: hashing, atomic writes, reading back, completeness, code version."""
import json
import warnings

import numpy as np
import pytest

from helpers import records
from helpers.config import REPO_ROOT, StudyError


def test_params_hash_ignores_order_run_dir_and_private_keys():
    h = records.params_hash({"x": 1, "fraction": 0.2})
    assert len(h) == 10 and int(h, 16) >= 0
    assert records.params_hash({"fraction": 0.2, "x": 1, "run_dir": "/a", "_note": "n"}) == h
    assert records.params_hash({"x": 2, "fraction": 0.2}) != h
    run_dir = records.default_run_dir("02_baselines", {"x": 1}, results_dir="/r")
    assert run_dir.as_posix() == f"/r/runs/02_baselines/{records.params_hash({'x': 1})}"
    assert records.resolve_run_dir("", "nb", {"x": 1}, "/r") == records.default_run_dir("nb", {"x": 1}, "/r")
    assert records.resolve_run_dir("/else", "nb", {"x": 1}).as_posix() == "/else"


def test_write_record_is_plain_strict_json_with_environment(tmp_path):
    run_dir = tmp_path / "run"
    record = {"params": {"seed": np.int64(3)}, "metrics": {"acc": np.float32(0.5), "nan": float("nan"),
                                                           "curve": np.arange(3), "ok": np.bool_(True)}}
    path = records.write_record(run_dir, record)
    assert path == run_dir / "metrics.json"
    text = path.read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert data["params"] == {"seed": 3}
    assert data["metrics"] == {"acc": 0.5, "nan": None, "curve": [0, 1, 2], "ok": True}
    assert data["code_version"] == records.code_version()
    env = data["environment"]
    assert {"python", "platform", "cpu_count", "packages", "git", "device"} <= set(env)
    assert env["packages"]["papermill"] and env["device"]
    assert [p.name for p in run_dir.iterdir()] == ["metrics.json"]  # no temporary file left behind
    assert "environment" not in record  # the caller's dict is not modified


def test_write_record_refuses_bad_input_and_keeps_old_record(tmp_path):
    records.write_record(tmp_path, {"params": {"x": 1}, "metrics": {"y": 1}})
    with pytest.raises(StudyError, match="JSON"):
        records.write_record(tmp_path, {"params": {"x": 1}, "metrics": {"y": object()}})
    with pytest.raises(StudyError, match="'params'"):
        records.write_record(tmp_path, {"metrics": {}})
    with pytest.raises(StudyError, match="empty run_dir"):
        records.write_record("", {"params": {}})
    assert records.read_record(tmp_path)["metrics"] == {"y": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_read_and_load_records(tmp_path):
    runs = tmp_path / "runs"
    records.write_record(runs / "nb" / "a", {"params": {"x": 1}})
    records.write_record(runs / "nb" / "b", {"params": {"x": 2}})
    (runs / "nb" / "bad").mkdir()
    (runs / "nb" / "bad" / "metrics.json").write_text('{"params": ')  # a torn write from elsewhere
    assert records.read_record(tmp_path / "missing" / "metrics.json") is None
    with pytest.warns(UserWarning, match="unreadable metrics record"):
        assert records.read_record(runs / "nb" / "bad" / "metrics.json") is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = records.load_records(tmp_path)
    assert [(r["params"]["x"], r["run_dir"]) for r in loaded] == [
        (1, str(runs / "nb" / "a")), (2, str(runs / "nb" / "b"))]


def test_record_is_complete(tmp_path):
    version = records.code_version()
    assert not records.record_is_complete(tmp_path, {"x": 1}, version)
    # The notebook records its defaults too; the grid point names only what it sets.
    records.write_record(tmp_path, {"params": {"x": 1, "y": [1, 2], "run_dir": str(tmp_path)}})
    assert records.record_is_complete(tmp_path, {"x": 1, "y": (1, 2), "run_dir": "elsewhere"}, version)
    assert records.record_is_complete(tmp_path, {"x": 1}, version)
    assert not records.record_is_complete(tmp_path, {"x": 2}, version)
    assert not records.record_is_complete(tmp_path, {"x": 1, "z": 0}, version)
    assert not records.record_is_complete(tmp_path, {"x": 1}, "another-version")


def test_code_version_follows_code_not_results_or_outputs(tmp_path):
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "a.py").write_text("A = 1\n")
    (tmp_path / "notebooks").mkdir()
    nb = {"cells": [{"cell_type": "code", "source": "print(1)", "outputs": [], "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "01.ipynb").write_text(json.dumps(nb))
    before = records.code_version(tmp_path)

    (tmp_path / "results" / "runs" / "x").mkdir(parents=True)
    (tmp_path / "results" / "runs" / "x" / "metrics.json").write_text("{}")
    (tmp_path / "helpers" / "__pycache__").mkdir()
    (tmp_path / "helpers" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    nb["cells"][0]["execution_count"] = 7
    (tmp_path / "notebooks" / "01.ipynb").write_text(json.dumps(nb))
    for name in records.NOT_RESULT_CODE:          # report, bench and analysis notebooks change no result
        (tmp_path / name).write_text(json.dumps(nb) if name.endswith(".ipynb") else "# edited\n")
    assert records.code_version(tmp_path) == before

    (tmp_path / "helpers" / "a.py").write_text("A = 2\n")
    assert records.code_version(tmp_path) != before


def test_environment_info_names_the_git_commit():
    import torch
    info = records.environment_info()
    json.dumps(info)
    assert info["torch_threads"] == torch.get_num_threads()   # CPU results depend on it, and on the CPU model
    assert info["cpu_model"] == records.cpu_model() and (info["cpu_model"] is None or info["cpu_model"].strip())
    if (REPO_ROOT / ".git").exists():
        assert isinstance(info["git"]["commit"], str) and isinstance(info["git"]["dirty"], bool)


def test_records_follow_the_umask_like_the_cache(tmp_path, monkeypatch):
    """A record is written through mkstemp (mode 0600): it must end up readable by the group like the tree."""
    from helpers import config
    assert config._UMASK == config._read_umask()   # reading it leaves it as it was
    monkeypatch.setattr(config, "_UMASK", 0o022)
    path = records.write_record(tmp_path, {"params": {"seed": 0}, "results": []})
    text = records.atomic_write_text(tmp_path / "summary.csv", "a,b\n")
    assert path.stat().st_mode & 0o777 == text.stat().st_mode & 0o777 == 0o644
