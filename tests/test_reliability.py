"""Reliability: bad inputs, made here in tmp_path (nothing downloaded) and laid out as the class
folders of a dataset YAML, go through `load_dataset`, the same path as the real data. Each is decoded
correctly or skipped with a DataWarning naming the file and the reason; no good file is lost; only
StudyError or DataWarning ever reach the user. Also: parameter validation and run determinism."""
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from helpers import data as data_mod
from helpers import schema
from helpers.config import REPO_ROOT, StudyError
from helpers.data import DataWarning, load_dataset

SR = 8000            # sample rate of the good clips and of decoding
BUFFER = 1.0         # seconds
SIZE = 32            # decoded image side
LOAD = dict(sample_rate=SR, buffer_seconds=BUFFER, image_size=SIZE, progress=False)
CLASSES = ("alpha", "beta")
RED = (200, 40, 90)
ODD_NAME = "chien qui aboie – Ünïcödé 犬.wav"


# --------------------------------------------------------------------------- writers
def tone(freq, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def good_wav(path, freq, seconds=1.0):
    sf.write(path, tone(freq, seconds), SR, subtype="PCM_16")


def good_png(path, colour):
    Image.new("RGB", (48, 40), colour).save(path)


def png16_rgb(path, arr):
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_yaml(root, name, classes=CLASSES):
    spec = {"name": name, "root": str(root), "audio_dir": "sounds", "image_dir": "images",
            "classes": list(classes), "audio_folders": {}, "image_folders": {}, "test_fraction": 0.2, "split_seed": 0}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


def make_bad_corpus(root: Path):
    """Two classes, 5 good clips and 5 good images each, and every bad input beside them.

    Returns (yaml path, expected skipped files as 'sounds/..' / 'images/..' paths, odd files that must decode).
    """
    s, i = root / "sounds", root / "images"
    for c, name in enumerate(CLASSES):
        (s / name).mkdir(parents=True)
        (i / name).mkdir(parents=True)
        for k in range(5):
            good_wav(s / name / f"good_{k}.wav", 300 * (c + 1) + 20 * k)
            good_png(i / name / f"good_{k}.png", (40 * k, 100 + 100 * c, 30))
    a, b = s / "alpha", s / "beta"
    skip, ok = [], {}
    # ---- audio that cannot be used
    (a / "zero_bytes.wav").write_bytes(b"")
    good_wav(a / "_src.wav", 440)
    raw = (a / "_src.wav").read_bytes()
    (a / "_src.wav").unlink()
    (a / "truncated_header.wav").write_bytes(raw[:30])
    (b / "not_audio.wav").write_text("this is a text file, not a WAV\n" * 20)
    x = tone(440)
    x[100] = np.nan
    sf.write(a / "float_nan.wav", x, SR, subtype="FLOAT")
    x = tone(440)
    x[200] = np.inf
    sf.write(b / "float_inf.wav", x, SR, subtype="DOUBLE")
    skip += ["sounds/alpha/zero_bytes.wav", "sounds/alpha/truncated_header.wav", "sounds/beta/not_audio.wav",
             "sounds/alpha/float_nan.wav", "sounds/beta/float_inf.wav"]
    # ---- odd audio that must decode
    (b / "claims_more_data.wav").write_bytes(raw[: 44 + len(raw[44:]) // 2])   # header says 1 s, 0.5 s present
    sf.write(a / "silent.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
    sf.write(b / "very_short.wav", tone(500, 0.05), SR, subtype="PCM_16")
    sf.write(a / "rate_96k.wav", tone(1000, 1.0, sr=96000), 96000, subtype="PCM_24")
    sf.write(b / "six_channels.wav", np.stack([tone(700)] * 6, axis=1), SR, subtype="PCM_16")
    sf.write(a / ODD_NAME, tone(600), SR, subtype="PCM_16")
    ok |= {"beta/claims_more_data.wav": "audio", "alpha/silent.wav": "audio", "beta/very_short.wav": "audio",
           "alpha/rate_96k.wav": "audio", "beta/six_channels.wav": "audio", f"alpha/{ODD_NAME}": "audio"}
    # ---- images that cannot be used
    a, b = i / "alpha", i / "beta"
    (a / "zero_bytes.png").write_bytes(b"")
    Image.new("RGB", (48, 40), RED).save(b / "_src.jpg", quality=95)
    jpeg = (b / "_src.jpg").read_bytes()
    (b / "_src.jpg").unlink()
    (b / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (a / "not_image.jpg").write_text("this is a text file, not a JPEG\n" * 20)
    Image.new("RGB", (300, 300), (1, 2, 3)).save(b / "bomb.png")   # over the lowered pixel limit, see the fixture
    skip += ["images/alpha/zero_bytes.png", "images/beta/truncated.jpg", "images/alpha/not_image.jpg",
             "images/beta/bomb.png"]
    # ---- odd images that must decode
    Image.new("RGB", (48, 40), RED).convert("CMYK").save(a / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((40, 48), 128 * 257, np.uint16)).save(b / "grey16_mid.png")       # mode I;16
    Image.fromarray(np.tile(np.linspace(0, 65535, 48).astype(np.uint16), (40, 1))).save(a / "grey16_ramp.png")
    png16_rgb(b / "rgb16.png", np.broadcast_to(np.array(RED, np.uint16) * 257, (40, 48, 3)))
    pal = Image.new("P", (48, 40))
    pal.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)          # index 0 blue, index 1 red
    idx = np.zeros((40, 48), np.uint8)
    idx[:, 24:] = 1                                              # right half red, left half index 0 (transparent)
    pal.putdata(idx.ravel().tolist())
    pal.save(a / "palette_transparent.png", transparency=0)
    Image.new("L", (48, 40), 77).save(b / "greyscale.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(a / "one_pixel.png")
    ok |= {"alpha/cmyk.jpg": "image", "beta/grey16_mid.png": "image", "alpha/grey16_ramp.png": "image",
           "beta/rgb16.png": "image", "alpha/palette_transparent.png": "image", "beta/greyscale.png": "image",
           "alpha/one_pixel.png": "image"}
    return write_yaml(root, "bad-corpus"), sorted(skip), ok


@pytest.fixture
def small_pixel_limit(monkeypatch):
    """Pillow's decompression-bomb guard at 100x100 pixels (warning) / 2x that (error), not 89 megapixels."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)


@pytest.fixture
def bad_corpus(tmp_path, fresh_cache, small_pixel_limit):
    return make_bad_corpus(tmp_path / "corpus")


def load_recording(*args, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_dataset(*args, **kw)
    return result, caught


# --------------------------------------------------------------------------- the bad corpus
def test_bad_inputs_are_decoded_or_skipped_with_a_warning(bad_corpus):
    yaml_path, expected_skips, must_decode = bad_corpus
    d, caught = load_recording(yaml_path, **LOAD)
    failed = sorted(f["path"] for f in d.failures)
    assert failed == expected_skips
    assert all(f["reason"] for f in d.failures)
    # one DataWarning per skipped file, naming it and the reason; no library warning reaches the user
    # (deprecation notes from imports are the environment's business, not a data problem)
    caught = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert [w.category for w in caught] == [DataWarning] * len(expected_skips), [str(w.message) for w in caught]
    messages = [str(w.message) for w in caught]
    for f in d.failures:
        assert any(f["path"] in m and f["reason"] in m for m in messages), f
    # no good file lost, every odd-but-valid file decoded
    for name, mod in (("audio", d.audio), ("image", d.image)):
        for c in CLASSES:
            assert all(f"{c}/good_{k}.{'wav' if name == 'audio' else 'png'}" in mod.paths for k in range(5))
    for rel, modality in must_decode.items():
        assert rel in getattr(d, modality).paths, rel
    assert len(d.audio) == 10 + 6 and len(d.image) == 10 + 7
    assert d.audio.X.shape == (16, SR) and d.image.X.shape == (17, 3, SIZE, SIZE)
    assert bool(np.isfinite(d.audio.X.float().numpy()).all())


def test_odd_files_decode_to_sensible_values(bad_corpus):
    yaml_path, _, _ = bad_corpus
    d, _ = load_recording(yaml_path, **LOAD)
    a = {p: (d.audio.X[k].float().numpy(), d.audio.meta.iloc[k]) for k, p in enumerate(d.audio.paths)}
    im = {p: d.image.X[k].numpy().astype(int) for k, p in enumerate(d.image.paths)}
    img_meta = {p: d.image.meta.iloc[k] for k, p in enumerate(d.image.paths)}

    def peak_hz(x):
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return np.argmax(spectrum) * SR / len(x)

    x, m = a["beta/claims_more_data.wav"]                  # the half that is there, loop-padded
    assert m["duration"] == pytest.approx(0.5, abs=0.01) and abs(peak_hz(x) - 440) < 10
    x, m = a["alpha/silent.wav"]
    assert (x == 0).all() and m["rms_db"] == -120.0
    x, m = a["beta/very_short.wav"]                        # 0.05 s, repeated to fill the buffer
    assert m["duration"] == pytest.approx(0.05) and abs(peak_hz(x) - 500) < 10
    n = int(0.05 * SR)
    assert np.array_equal(x[n:2 * n], x[:n]) and np.abs(x[-n:]).max() > 0.3
    x, m = a["alpha/rate_96k.wav"]
    assert m["orig_sr"] == 96000 and abs(peak_hz(x) - 1000) < 10 and 0.4 < np.abs(x).max() < 0.6
    x, m = a["beta/six_channels.wav"]
    assert m["channels"] == 6 and abs(peak_hz(x) - 700) < 10 and 0.4 < np.abs(x).max() < 0.6
    x, m = a[f"alpha/{ODD_NAME}"]
    assert abs(peak_hz(x) - 600) < 10

    def colour(p):
        return im[p].reshape(3, -1).mean(axis=1)

    assert np.allclose(colour("alpha/cmyk.jpg"), RED, atol=6)
    assert img_meta["alpha/cmyk.jpg"]["mode"] == "CMYK"
    g = im["beta/grey16_mid.png"]                          # 16-bit mid-grey stays mid-grey (not clipped, not stretched)
    assert img_meta["beta/grey16_mid.png"]["mode"].startswith("I")
    assert (np.abs(g - 128) <= 1).all()
    ramp = im["alpha/grey16_ramp.png"]
    assert (ramp[0] == ramp[1]).all() and (ramp[1] == ramp[2]).all()
    assert 100 < ramp.mean() < 155 and ramp.max() - ramp.min() > 150
    assert np.allclose(colour("beta/rgb16.png"), RED, atol=1)
    pal = im["alpha/palette_transparent.png"]              # transparent left half composited on white
    assert (pal[:, :, : SIZE // 2 - 2] == 255).all()
    assert (pal[0, :, SIZE // 2 + 2:] == 255).all() and (pal[1:, :, SIZE // 2 + 2:] == 0).all()
    grey = im["beta/greyscale.png"]                        # replicated into three equal channels
    assert (grey == 77).all()
    assert (im["alpha/one_pixel.png"].reshape(3, -1).T == (10, 200, 30)).all()


def test_strict_raises_study_error(bad_corpus):
    yaml_path, expected_skips, _ = bad_corpus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(StudyError, match=r"strict=True.*sounds/alpha/"):
            load_dataset(yaml_path, strict=True, **LOAD)


def test_every_bad_file_raises_only_value_error(bad_corpus):
    """The decoders turn every library error into ValueError (the loader's signal to skip a file)."""
    yaml_path, expected_skips, _ = bad_corpus
    root = yaml_path.parent
    for rel in expected_skips:
        decode = (data_mod.decode_audio if rel.startswith("sounds/") else data_mod.decode_image)
        args = (SR, SR) if rel.startswith("sounds/") else (SIZE,)
        with pytest.raises(ValueError) as info:
            decode(root / rel, *args)
        assert type(info.value) is ValueError and str(info.value)


def test_skipped_files_are_reported_again_from_the_cache(bad_corpus):
    yaml_path, expected_skips, _ = bad_corpus
    first, _ = load_recording(yaml_path, **LOAD)
    second, caught = load_recording(yaml_path, **LOAD)
    assert sorted(f["path"] for f in second.failures) == expected_skips
    assert len([w for w in caught if w.category is DataWarning]) == len(expected_skips)


def test_cli_reports_bad_files_without_traceback(bad_corpus, fresh_cache):
    yaml_path, expected_skips, _ = bad_corpus
    cmd = [sys.executable, "-m", "helpers", "data", "check", "--spec", str(yaml_path)]
    env = {**os.environ, "STUDY_CACHE": str(fresh_cache / "json")}
    as_json = subprocess.Popen(cmd + ["--json"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        env = {**os.environ, "STUDY_CACHE": str(fresh_cache / "strict")}
        proc = subprocess.run(cmd + ["--strict"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        stdout, stderr = as_json.communicate(timeout=120)
    finally:
        if as_json.poll() is None:
            as_json.kill()
            as_json.communicate()
    assert as_json.returncode == 0, stderr[-2000:]
    failed = {f["path"] for f in json.loads(stdout)["failures"]}
    # the bomb image is small in absolute terms: only this process lowered Pillow's limit
    assert failed == set(expected_skips) - {"images/beta/bomb.png"}
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert "strict=True" in proc.stderr


def test_class_with_only_bad_files_fails(tmp_path, fresh_cache):
    root = tmp_path / "c"
    for c in CLASSES:
        (root / "sounds" / c).mkdir(parents=True)
        (root / "images" / c).mkdir(parents=True)
        for k in range(5):
            good_png(root / "images" / c / f"{k}.png", (k, 2, 3))
    for k in range(5):
        good_wav(root / "sounds" / "alpha" / f"{k}.wav", 300)
        (root / "sounds" / "beta" / f"{k}.wav").write_text("junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(StudyError, match=r"beta.*no decodable audio"):
            load_dataset(write_yaml(root, "all-bad"), **LOAD)


@pytest.mark.parametrize("n_bad", [0, 1])
@pytest.mark.parametrize("n_items", [1, 2])
def test_class_too_small_for_a_test_split_fails_at_load(tmp_path, fresh_cache, n_items, n_bad):
    """A class whose 20% test share rounds to 0 items fails when the data is loaded, not at training time,
    also when decoding failures are what leave it that small."""
    root = tmp_path / "small"
    for c in ("alpha", "beta", "gamma"):
        (root / "sounds" / c).mkdir(parents=True)
        (root / "images" / c).mkdir(parents=True)
        for k in range(6):
            good_png(root / "images" / c / f"{k}.png", (k, 9, 9))
    for c in ("alpha", "gamma"):
        for k in range(6):
            good_wav(root / "sounds" / c / f"{k}.wav", 400 + k)
    for k in range(n_items):
        good_wav(root / "sounds" / "beta" / f"{k}.wav", 500)
    for k in range(n_bad):
        (root / "sounds" / "beta" / f"bad_{k}.wav").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(StudyError, match=r"'beta' has %d usable audio.*test split" % n_items):
            load_dataset(write_yaml(root, "small", ("alpha", "beta", "gamma")), **LOAD)
    # three items are enough for one test item and two for training
    for k in range(n_items, 3):
        good_wav(root / "sounds" / "beta" / f"{k}.wav", 500 + k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        d = load_dataset(root / "small.yaml", **LOAD)
    assert d.audio.counts()["beta"] == 3


# --------------------------------------------------------------------------- parameter validation
@pytest.mark.parametrize("params, name", [
    ({"noise": 1.5}, "noise"), ({"noise": -0.1}, "noise"),
    ({"fraction": 0}, "fraction"), ({"fraction": 0.9}, "fraction"), ({"fraction": "half"}, "fraction"),
    ({"noise_kind": "asymmetric"}, "noise_kind"), ({"fration": 0.5}, "fration"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"epochs": 0}, "epochs"), ({"image_size": 4}, "image_size"),
    ({"device": "tpu"}, "device"), ({"sample_rate": 44100}, "sample_rate"), ({"clip_seconds": 10}, "clip_seconds"),
    ({"lowpass_hz": 100}, "lowpass_hz"), ({"batch_size": 1}, "batch_size"), ({"lr": 5}, "lr"),
])
def test_study_params_rejects_bad_values(params, name):
    from helpers.experiments import study_params
    with pytest.raises(StudyError, match=name):
        study_params(params)


def test_study_params_accepts_good_values():
    from helpers.experiments import study_params
    p = study_params({"fraction": 0.2, "noise": 0.1, "noise_kind": "pair", "seed": 3})
    assert p["fraction"] == 0.2 and p["noise_kind"] == "pair" and p["epochs"] == schema.defaults("02_baselines")["epochs"]
    assert study_params({"fraction": 0.8, "noise": 0.0})["fraction"] == 0.8


# --------------------------------------------------------------------------- determinism
RUN = r"""
import json, sys
from helpers.baselines import run_baselines
record, _ = run_baselines({"dataset": sys.argv[1], "external_data": "", "fraction": 0.8, "image_size": 32, "sample_rate": 8000, "clip_seconds": 0.5,
                           "epochs": 1, "batch_size": 8, "device": "cpu", "progress": False})
print("RESULTS=" + json.dumps(record["results"], sort_keys=True))
print("SPLITS=" + json.dumps(record["split_sizes"], sort_keys=True))
"""


def test_baselines_are_deterministic_across_processes(tmp_path):
    """Two fresh processes, each with its own empty cache (so nothing computed is shared), same rows.

    3 classes x 6 clips and 6 images: the ImageNet EfficientNet features are most of the cost."""
    from helpers.synthetic import make_synthetic
    synthetic_yaml = make_synthetic(tmp_path / "syn", num_classes=3, clips_per_class=6, images_per_class=6)
    procs = []
    for run in range(2):  # side by side, one thread each (the runs are compared with each other only)
        env = {**os.environ, "STUDY_CACHE": str(tmp_path / f"cache{run}"), "STUDY_RESULTS": str(tmp_path / "res"),
               "PYTHONHASHSEED": str(run), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", RUN, str(synthetic_yaml)], cwd=REPO_ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        finished = [proc.communicate(timeout=400) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    outputs = []
    for proc, (stdout, stderr) in zip(procs, finished):
        assert proc.returncode == 0, stderr[-3000:]
        outputs.append(dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line[:8]))
    assert outputs[0]["RESULTS"] == outputs[1]["RESULTS"]
    rows = json.loads(outputs[0]["RESULTS"])
    assert len(rows) > 10 and {r["method"] for r in rows} >= {"image", "audio_wave", "audio_mel", "late_fusion",
                                                              "imagenet"}
    assert all(0 <= r["accuracy"] <= 1 for r in rows if "accuracy" in r)
