"""The data layer: the real data decodes completely; the cache is keyed, checked and rebuilt;
folders map to classes through the dataset YAML, and layout mistakes fail at load time with a StudyError."""
import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from helpers import data as data_mod
from helpers.config import REPO_ROOT, StudyError
from helpers.data import DataWarning, decode_audio, load_dataset, loop_pad

from conftest import README_AUDIO, README_IMAGE

CLASSES = ["bird", "cat", "chicken", "cow", "dog", "donkey", "frog", "lion", "monkey", "sheep"]
SMALL = dict(sample_rate=8000, buffer_seconds=1.0, image_size=32, progress=False)


# --------------------------------------------------------------------------- the real data
def test_real_counts_match_the_readme(real_dataset):
    d = real_dataset
    assert d.classes == CLASSES
    assert len(d.audio) == 875 and len(d.image) == 954
    assert d.failures == [] and d.audio.failures == [] and d.image.failures == []
    assert not [w for w in d.load_warnings if "skipped" in w]
    assert d.audio.counts() == README_AUDIO
    assert d.image.counts() == README_IMAGE
    assert len(set(d.audio.paths)) == 875 and len(set(d.image.paths)) == 954


def test_real_odd_audio_formats_all_decode(real_dataset):
    a = real_dataset.audio
    meta = a.meta
    assert sum(p.endswith(".WAV") for p in a.paths) == 10          # a case-sensitive glob would miss these
    assert set(meta["format"]) == {"WAV"}
    subtypes = meta["subtype"].value_counts().to_dict()
    assert subtypes.get("MPEG_LAYER_III") == 56                    # MP3 inside a WAV container
    assert subtypes.get("ALAW") == 3
    assert subtypes.get("PCM_U8", 0) > 0 and subtypes.get("PCM_16", 0) > 0
    assert (meta["channels"] == 2).sum() >= 24                     # stereo, mixed down
    rates = set(meta["orig_sr"])
    assert min(rates) == 8000 and max(rates) == 48000 and len(rates) == 18
    # every odd kind produced sound, not silence or garbage
    X = a.X.float().numpy()
    peak = np.abs(X).max(axis=1)
    for mask in (meta["subtype"] == "MPEG_LAYER_III", meta["subtype"] == "ALAW", meta["subtype"] == "PCM_U8",
                 meta["channels"] == 2, np.array([p.endswith(".WAV") for p in a.paths]),
                 meta["orig_sr"] == 8000, meta["orig_sr"] == 48000):
        mask = np.asarray(mask)
        assert mask.any()
        assert (peak[mask] > 1e-3).all() and (peak[mask] < 2.0).all()  # resampling may overshoot 1 a little
        assert (meta["rms_db"][mask] > -80).all()


def test_real_audio_buffers(real_dataset):
    a = real_dataset.audio
    assert a.X.dtype == torch.float16 and tuple(a.X.shape) == (875, 64000)
    assert a.sample_rate == 16000
    assert torch.isfinite(a.X).all()
    assert (a.X.abs().amax(dim=1) > 0).all()
    # loop padding: a clip shorter than the buffer is repeated (period = its resampled length), not zero-padded
    X = a.X.numpy()
    short = np.flatnonzero(a.meta["duration"] * 16000 < 32000)
    assert len(short) > 100
    for k in short:
        n = int(round(a.meta["duration"][k] * 16000))
        assert any(np.array_equal(X[k, p:2 * p], X[k, :p]) for p in range(n - 2, n + 3)), a.paths[k]
    assert len(a.meta) == 875 and a.meta["duration"].min() > 0.2 and a.meta["duration"].max() < 41


def test_real_images(real_dataset):
    i = real_dataset.image
    assert i.X.dtype == torch.uint8 and tuple(i.X.shape) == (954, 3, 64, 64)
    meta = i.meta
    assert set(meta["format"]) == {"PNG", "JPEG"}
    assert set(meta.loc[meta["format"] == "PNG", "mode"]) == {"RGBA"}
    jpeg_classes = {CLASSES[k] for k in i.y[np.asarray(meta["format"] == "JPEG")]}
    assert jpeg_classes == {"chicken", "donkey", "sheep"}
    exts = {p.rsplit(".", 1)[1] for p in i.paths}
    assert {"png", "jpg", "jpeg", "JPG"} <= exts
    flat = i.X.reshape(len(i), -1).float()
    assert (flat.std(dim=1) > 1).all()                             # no blank or constant image
    for fmt in ("PNG", "JPEG"):                                    # neither decoded to all-black or all-white
        m = torch.from_numpy(np.asarray(meta["format"] == fmt).copy())
        assert 30 < flat[m].mean() < 225


def test_real_data_check_cli(real_root, real_cache, real_dataset):
    """`python -m helpers data check --json` on the real root, reusing the cache the fixture filled."""
    before = {p: p.stat().st_mtime_ns for p in (real_cache / "animals").glob("*.npz")}
    assert before, "the real_dataset fixture should have filled the cache"
    env = {**__import__("os").environ, "STUDY_CACHE": str(real_cache), "STUDY_DATA": str(real_root)}
    proc = subprocess.run([sys.executable, "-m", "helpers", "data", "check", "--json", "--root", str(real_root)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["num_audio"] == 875 and summary["num_image"] == 954
    assert sum(summary["audio"].values()) == 875 and sum(summary["image"].values()) == 954
    assert summary["audio"] == README_AUDIO and summary["image"] == README_IMAGE
    assert summary["failures"] == []
    # the cache was read, not rebuilt (a rebuild rewrites the file under the same name)
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was rewritten: the CLI did not reuse the cache"


def test_missing_data_root_says_what_to_do(tmp_path, cache_env):
    with pytest.raises(StudyError, match=r"STUDY_DATA.*data fetch"):
        load_dataset("animals", tmp_path / "nowhere", progress=False)


# --------------------------------------------------------------------------- the cache (synthetic data)
def _npz(cache, kind):
    return sorted(cache.rglob(f"{kind}-*.npz"))


def test_cache_key_follows_preprocessing_params(synthetic_yaml, fresh_cache):
    load_dataset(synthetic_yaml, **SMALL)
    audio, image = _npz(fresh_cache, "audio"), _npz(fresh_cache, "image")
    assert len(audio) == 1 and len(image) == 1
    load_dataset(synthetic_yaml, **{**SMALL, "sample_rate": 16000})
    assert len(_npz(fresh_cache, "audio")) == 2 and _npz(fresh_cache, "image") == image
    load_dataset(synthetic_yaml, **{**SMALL, "buffer_seconds": 0.5})
    assert len(_npz(fresh_cache, "audio")) == 3
    d = load_dataset(synthetic_yaml, **{**SMALL, "image_size": 16})
    assert len(_npz(fresh_cache, "image")) == 2 and len(_npz(fresh_cache, "audio")) == 3
    assert tuple(d.image.X.shape[1:]) == (3, 16, 16)


def test_cache_hit_does_not_decode(synthetic_yaml, fresh_cache, monkeypatch):
    first = load_dataset(synthetic_yaml, **SMALL)

    def boom(*a, **k):
        raise AssertionError("decoded although the cache holds this data")
    monkeypatch.setattr(data_mod, "decode_audio", boom)
    monkeypatch.setattr(data_mod, "decode_image", boom)
    second = load_dataset(synthetic_yaml, **SMALL)
    assert torch.equal(first.audio.X, second.audio.X) and torch.equal(first.image.X, second.image.X)
    assert first.audio.paths == second.audio.paths and (first.audio.y == second.audio.y).all()


def test_changed_source_file_invalidates(synthetic_yaml, fresh_cache):
    first = load_dataset(synthetic_yaml, **SMALL)
    old_audio, old_image = _npz(fresh_cache, "audio"), _npz(fresh_cache, "image")
    clip = synthetic_yaml.parent / "sounds" / "class1" / "clip_3.wav"
    x, sr = sf.read(clip, dtype="float32")
    sf.write(clip, np.random.default_rng(5).uniform(-0.5, 0.5, len(x)).astype(np.float32), sr, subtype="PCM_16")
    second = load_dataset(synthetic_yaml, **SMALL)
    new_audio = set(_npz(fresh_cache, "audio")) - set(old_audio)
    assert len(new_audio) == 1                                     # a new key
    assert _npz(fresh_cache, "image") == old_image                 # images untouched
    k = second.audio.paths.index("class1/clip_3.wav")
    assert first.audio.paths == second.audio.paths
    assert not torch.equal(first.audio.X[k], second.audio.X[k])    # new content
    others = [j for j in range(len(second.audio)) if j != k]
    assert torch.equal(first.audio.X[others], second.audio.X[others])


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "payload"])
def test_damaged_cache_is_detected_and_rebuilt(synthetic_yaml, fresh_cache, damage):
    first = load_dataset(synthetic_yaml, **SMALL)
    (path,) = _npz(fresh_cache, "audio")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_byte":
        pos = len(raw) // 2
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1:])
    else:  # a valid archive whose tensor no longer matches its recorded checksum
        with np.load(path) as z:
            X, info, digest = z["X"].copy(), z["info"], z["sha256"]
        X[0, :10] = 0.25
        with open(path, "wb") as f:
            np.savez(f, X=X, info=info, sha256=digest)
    with pytest.warns(DataWarning, match=r"cache file .*audio-.*corrupt.*rebuilding"):
        second = load_dataset(synthetic_yaml, **SMALL)
    assert torch.equal(first.audio.X, second.audio.X)
    assert first.audio.paths == second.audio.paths
    assert first.audio.meta.equals(second.audio.meta)
    assert _npz(fresh_cache, "audio") == [path]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)                # rebuilt: reads clean now
        third = load_dataset(synthetic_yaml, **SMALL)
    assert torch.equal(first.audio.X, third.audio.X)


# --------------------------------------------------------------------------- decoding details
def test_loop_pad_repeats_short_clips():
    x = np.arange(1, 6, dtype=np.float32)
    out = loop_pad(x, 12)
    assert out.tolist() == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]
    assert (loop_pad(x, 3) == x[:3]).all()


def test_short_clip_is_loop_padded_not_zero_padded(tmp_path):
    sr = 8000
    t = np.arange(int(0.3 * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "short.wav", x, sr, subtype="FLOAT")
    out, meta = decode_audio(tmp_path / "short.wav", sr, 4 * sr)
    n = len(x)
    assert out.shape == (4 * sr,) and np.isfinite(out).all()
    assert np.allclose(out[:n], x) and np.allclose(out[n:2 * n], x) and np.allclose(out[-(4 * sr - 13 * n):], x[:4 * sr - 13 * n])
    assert meta["duration"] == pytest.approx(0.3) and meta["orig_sr"] == sr


def test_long_clip_keeps_its_loudest_part(tmp_path):
    sr = 8000
    x = np.zeros(5 * sr, dtype=np.float32)
    x[3 * sr: 3 * sr + sr // 2] = 0.8                               # the only loud part, late in the clip
    sf.write(tmp_path / "long.wav", x, sr, subtype="FLOAT")
    out, _ = decode_audio(tmp_path / "long.wav", sr, sr)
    assert out.shape == (sr,) and np.abs(out).max() == pytest.approx(0.8)


# --------------------------------------------------------------------------- folders -> classes
def _rewrite_yaml(path, **changes):
    spec = yaml.safe_load(path.read_text())
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_two_folders_map_to_one_class(synthetic_yaml, cache_env):
    sounds = synthetic_yaml.parent / "sounds"
    (sounds / "class0").rename(sounds / "zero-a")
    (sounds / "zero-b").mkdir()
    for f in sorted((sounds / "zero-a").glob("*.wav"))[:4]:
        f.rename(sounds / "zero-b" / f.name)
    mapping = {"zero-a": "class0", "zero-b": "class0", "class1": "class1", "class2": "class2", "class3": "class3"}
    _rewrite_yaml(synthetic_yaml, audio_folders=mapping, name="synthetic-mapped")
    d = load_dataset(synthetic_yaml, **SMALL)
    assert d.audio.counts() == {"class0": 10, "class1": 10, "class2": 10, "class3": 10}
    zero = [p for p, y in zip(d.audio.paths, d.audio.y) if y == 0]
    assert {p.split("/")[0] for p in zero} == {"zero-a", "zero-b"}
    assert d.failures == []


def test_unknown_folder_is_named(synthetic_yaml, cache_env):
    stray = synthetic_yaml.parent / "sounds" / "Kaplumbaga"
    stray.mkdir()
    shutil.copy(synthetic_yaml.parent / "sounds" / "class0" / "clip_0.wav", stray / "a.wav")
    with pytest.raises(StudyError, match=r"Kaplumbaga.*audio_folders"):
        load_dataset(synthetic_yaml, **SMALL)


def test_mapping_to_unknown_class_is_named(synthetic_yaml, cache_env):
    _rewrite_yaml(synthetic_yaml, image_folders={"class0": "class0", "class1": "class1", "class2": "class2",
                                                 "class3": "clas3"})
    with pytest.raises(StudyError, match=r"image_folders.*clas3"):
        load_dataset(synthetic_yaml, **SMALL)


def test_empty_class_folder_fails(synthetic_yaml, cache_env):
    folder = synthetic_yaml.parent / "images" / "class2"
    for f in folder.iterdir():
        f.unlink()
    (folder / "notes.txt").write_text("no images here")            # not an image: still empty
    with pytest.raises(StudyError, match=r"class2.*no image file"):
        load_dataset(synthetic_yaml, **SMALL)


def test_class_in_one_modality_only_fails(synthetic_yaml, cache_env):
    shutil.rmtree(synthetic_yaml.parent / "images" / "class3")
    with pytest.raises(StudyError, match=r"class3.*no image file"):
        load_dataset(synthetic_yaml, **SMALL)
    shutil.rmtree(synthetic_yaml.parent / "sounds" / "class1")
    with pytest.raises(StudyError, match=r"class1.*no audio file"):
        load_dataset(synthetic_yaml, **SMALL)


def test_synthetic_roundtrip(synthetic_yaml, cache_env):
    d = load_dataset(synthetic_yaml, **SMALL)
    assert len(d.audio) == 40 and len(d.image) == 40 and d.failures == []
    assert tuple(d.audio.X.shape) == (40, 8000) and tuple(d.image.X.shape) == (40, 3, 32, 32)
    assert d.audio.counts() == d.image.counts() == {f"class{c}": 10 for c in range(4)}


def test_exif_rotation_is_applied(tmp_path):
    """A portrait photo stored landscape with an EXIF orientation tag is decoded upright."""
    from PIL import Image
    from helpers.data import decode_image
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))                     # left half blue, right half red
    exif = Image.Exif()
    exif[0x0112] = 6                                           # "rotate 90 CW to display"
    im.save(tmp_path / "sideways.jpg", exif=exif.tobytes(), quality=95)
    x, meta = decode_image(tmp_path / "sideways.jpg", 16)
    top, bottom = x[:, 1, 8].astype(int), x[:, -2, 8].astype(int)
    assert top[2] > 200 and top[0] < 60 and bottom[0] > 200 and bottom[2] < 60   # blue on top, red below


def test_cache_files_follow_the_umask(tmp_path, monkeypatch):
    from helpers import config
    from helpers.data import _save_cache
    monkeypatch.setattr(config, "_UMASK", 0o027)    # the process's umask, as read at import
    _save_cache(tmp_path / "c.npz", np.zeros((2, 3), dtype=np.uint8), ["a", "b"], [{}, {}], [])
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o640
