"""Shortcut tools: counterfactual transforms, mitigations and nuisance audits (synthetic data)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.config import StudyError, data_root
from helpers import shortcuts as sc

SR = 16000


def tone(freq, seconds=1.0, sr=SR, n=2):
    t = torch.arange(int(seconds * sr)) / sr
    return torch.sin(2 * math.pi * freq * t).repeat(n, 1)


def energy(x):
    return float(x.double().pow(2).sum())


def images(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


# --- audio counterfactuals and mitigations -----------------------------------------------------

def test_band_limit_removes_high_keeps_low():
    high, low = tone(6000.0), tone(1000.0)
    assert energy(sc.band_limit(high, SR, 4000)) < 0.01 * energy(high)
    assert energy(sc.band_limit(low, SR, 4000)) > 0.95 * energy(low)
    # an off-bin frequency (leaks across bins) is still removed, and lowpass is the same filter
    odd = tone(5123.7, seconds=0.77)
    assert energy(sc.lowpass(odd, SR, 4000)) < 0.01 * energy(odd)
    out = sc.band_limit(low, SR)
    assert out.shape == low.shape and out.dtype == low.dtype
    assert torch.equal(sc.band_limit(low, 8000, 4000), low)  # nothing above Nyquist


def test_change_loudness_scales_rms():
    x = tone(440.0) * 0.5
    rms = lambda v: v.pow(2).mean(1).sqrt()
    ratio = rms(sc.change_loudness(x, -12)) / rms(x)
    assert torch.allclose(ratio, torch.full_like(ratio, 10 ** (-12 / 20)), rtol=1e-5)


def test_cut_audio_is_periodic_with_the_cut_length():
    x = torch.randn(3, 3 * SR, generator=torch.Generator().manual_seed(0))
    y = sc.cut_audio(x, SR, seconds=0.5)
    n = SR // 2
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y[:, :n], x[:, :n])
    assert torch.equal(y[:, n:], y[:, :-n])  # period n
    assert torch.equal(sc.cut_audio(x, SR, seconds=5.0), x)  # longer than the clip: unchanged


def test_normalize_loudness_and_bad_arguments():
    x = torch.stack([tone(300.0, n=1)[0] * 0.01, tone(300.0, n=1)[0] * 0.9, torch.zeros(SR)])
    y = sc.normalize_loudness(x, target_rms=0.1)
    rms = y.pow(2).mean(1).sqrt()
    assert torch.allclose(rms[:2], torch.tensor([0.1, 0.1]), rtol=1e-4)
    assert rms[2] == 0  # silence stays silent
    with pytest.raises(StudyError):
        sc.band_limit(torch.zeros(10), SR)  # not [N, L]
    with pytest.raises(StudyError):
        sc.band_limit(tone(100.0), SR, cutoff_hz=-5)
    with pytest.raises(StudyError):
        sc.cut_audio(tone(100.0), 16000.5)


def test_random_crops_of_the_loop_padded_buffers_are_seeded_and_contiguous():
    """The random-crop mitigation is data.audio_windows with a generator (centred without one)."""
    from helpers.data import audio_windows
    N, B, clip = 5, 1000, 300
    buffers = torch.arange(N * B, dtype=torch.float32).view(N, B)
    a = audio_windows(buffers, clip, torch.Generator().manual_seed(1))
    b = audio_windows(buffers, clip, torch.Generator().manual_seed(1))
    c = audio_windows(buffers, clip, torch.Generator().manual_seed(2))
    assert a.shape == (N, clip) and torch.equal(a, b) and not torch.equal(a, c)
    for i in range(N):
        start = int(a[i, 0] - i * B)
        assert 0 <= start <= B - clip
        assert torch.equal(a[i], buffers[i, start:start + clip])
    centred = (B - clip) // 2
    assert torch.equal(audio_windows(buffers, clip), buffers[:, centred:centred + clip])
    assert torch.equal(audio_windows(buffers, B + 1), buffers)  # a clip longer than the buffer: all of it


def test_audio_counterfactual_registry():
    x = torch.randn(2, 2 * SR, generator=torch.Generator().manual_seed(0)) * 0.1   # broadband, 16 kHz, 2 s
    for name, f in sc.AUDIO_COUNTERFACTUALS.items():
        y = f(x, SR)
        assert y.shape == x.shape and y.dtype == x.dtype, name
        assert (y - x).abs().max() > 1e-3, f"{name} left broadband 16 kHz audio unchanged"


def test_new_recording_chain_counterfactuals():
    x = torch.randn(2, SR, generator=torch.Generator().manual_seed(1)) * 0.1
    spec = lambda z: torch.fft.rfft(z, dim=1).abs()   # noqa: E731
    freqs = torch.fft.rfftfreq(SR, 1 / SR)
    tel = spec(sc.band_pass(x, SR, 300, 3400))
    assert tel[:, (freqs < 300) | (freqs > 3400)].max() < 1e-3 and tel[:, (freqs > 400) & (freqs < 3300)].mean() > 0.5
    noisy = sc.add_noise(x, 10.0)
    snr = 10 * torch.log10(x.pow(2).mean(1) / (noisy - x).pow(2).mean(1))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.01)
    assert torch.equal(sc.add_noise(x, 10.0), noisy)                      # seeded: the same every run
    mu = sc.mu_law_8bit(x)
    assert 0 < (mu - x).abs().max() < 0.05 * x.abs().max() and len(torch.unique(mu[0] / x[0].abs().max())) <= 256
    wet = sc.reverberate(x, SR, 0.5)
    assert wet.shape == x.shape and not torch.allclose(wet, x, atol=1e-3)


# --- image counterfactuals and augmentation ----------------------------------------------------

def test_replace_border_keeps_centre():
    X = images()
    w = 8  # 0.125 * 64
    for Y in (sc.replace_border(X), sc.replace_border(X, noise_seed=3)):
        assert Y.shape == X.shape and Y.dtype == torch.uint8
        assert torch.equal(Y[:, :, w:-w, w:-w], X[:, :, w:-w, w:-w])
        assert not torch.equal(Y[:, :, :w], X[:, :, :w])
    assert (sc.replace_border(X)[:, :, :, :w] == 128).all()
    assert torch.equal(sc.replace_border(X, noise_seed=3), sc.replace_border(X, noise_seed=3))
    with pytest.raises(StudyError):
        sc.replace_border(X, width_frac=0.6)
    with pytest.raises(StudyError):
        sc.replace_border(X.float())


def test_greyscale_and_jpeg():
    X = images()
    G = sc.to_greyscale(X)
    assert G.shape == X.shape and G.dtype == torch.uint8
    assert torch.equal(G[:, 0], G[:, 1]) and torch.equal(G[:, 1], G[:, 2])
    # smooth images so JPEG stays close; random pixels would be destroyed at any quality
    ramp = torch.linspace(0, 255, 64)
    smooth = torch.stack([ramp.view(1, 64).expand(64, 64), ramp.view(64, 1).expand(64, 64),
                          torch.full((64, 64), 90.0)]).round().to(torch.uint8)
    S = smooth.unsqueeze(0).repeat(2, 1, 1, 1)
    J = sc.jpeg_reencode(S, quality=10)
    assert J.shape == S.shape and J.dtype == torch.uint8
    assert not torch.equal(J, S)
    assert (J.float() - S.float()).abs().mean() < 10
    for name, f in sc.IMAGE_COUNTERFACTUALS.items():
        assert f(X).shape == X.shape, name


def test_augment_images_shape_range_and_seed():
    X = images(64).float() / 255
    a = sc.augment_images(X, torch.Generator().manual_seed(0))
    b = sc.augment_images(X, torch.Generator().manual_seed(0))
    c = sc.augment_images(X, torch.Generator().manual_seed(1))
    assert a.shape == X.shape and a.dtype == X.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # with no crop, flip or jitter it is (nearly) the identity
    same = sc.augment_images(X, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1),
                             flip_p=0, jitter=0)
    assert torch.allclose(same, X, atol=1e-5)
    with pytest.raises(StudyError):
        sc.augment_images(images())  # uint8, not float


# --- nuisance features and audits --------------------------------------------------------------

def audio_meta(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "orig_sr": rng.choice([8000, 16000, 44100], n), "duration": rng.uniform(0.2, 10, n),
        "channels": rng.choice([1, 2], n), "rolloff_hz": rng.uniform(1000, 8000, n),
        "rms_db": np.r_[-np.inf, rng.uniform(-40, -10, n - 1)],
        "subtype": rng.choice(["PCM_16", "PCM_U8", "ALAW", "MPEG_LAYER_III"], n)})


def test_feature_builders_columns_and_no_nan():
    f = sc.audio_nuisance_features(audio_meta())
    assert list(f.columns[:6]) == ["orig_sr", "duration", "log_duration", "rolloff_hz",
                                   "rms_db", "channels"]
    assert {c for c in f.columns if c.startswith("subtype_")} == {
        "subtype_PCM_16", "subtype_PCM_U8", "subtype_ALAW", "subtype_MPEG_LAYER_III"}
    assert np.isfinite(f.values).all()

    n = 6
    meta = pd.DataFrame({"orig_width": [100, 640, 300] * 2, "orig_height": [100, 480, 200] * 2,
                         "format": ["PNG", "JPEG", "png"] * 2, "mode": ["RGBA", "RGB", "L"] * 2,
                         "file_bytes": [5000, 90000, 1234] * 2})
    X = images(n)
    X[0] = 255  # a white studio frame
    f = sc.image_nuisance_features(meta, X)
    expected = {"orig_width", "orig_height", "aspect", "file_bytes", "bytes_per_pixel",
                "format_PNG", "format_JPEG", "mode_RGBA", "mode_RGB", "mode_L",
                "border_r", "border_g", "border_b", "border_std"}
    assert set(f.columns) == expected and len(f) == n
    assert np.isfinite(f.values).all()
    assert f.loc[0, ["border_r", "border_g", "border_b"]].tolist() == [255, 255, 255]
    assert f.loc[0, "border_std"] == 0
    with pytest.raises(StudyError):
        sc.image_nuisance_features(meta.drop(columns="mode"), X)
    with pytest.raises(StudyError):
        sc.image_nuisance_features(meta.iloc[:3], X)


def split_features(n=400, seed=0, informative=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    f = pd.DataFrame({"noise_a": rng.normal(size=n), "noise_b": rng.normal(size=n),
                      "orig_sr": np.array([8000, 16000, 22050, 44100])[y] if informative
                      else rng.choice([8000, 16000], n)})
    half = n // 2
    return f.iloc[:half], y[:half], f.iloc[half:], y[half:]


def test_nuisance_audit_finds_a_determining_feature():
    res = sc.nuisance_audit(*split_features(), seed=0)
    assert set(res) == {"majority", "logistic", "random_forest"}
    assert res["random_forest"]["accuracy"] == 1.0 and res["random_forest"]["macro_f1"] == 1.0
    assert res["logistic"]["accuracy"] > 0.95
    assert res["majority"]["accuracy"] < 0.4
    table = sc.single_feature_audit(*split_features(), groups={"sample_rate": ["orig_sr"],
                                                              "noise": ["noise_a", "noise_b"]})
    assert table.index[0] == "sample_rate" and table.loc["sample_rate", "accuracy"] == 1.0
    assert table.loc["noise", "accuracy"] < 0.5 and "majority" in table.index


def test_nuisance_audit_on_noise_stays_near_chance():
    res = sc.nuisance_audit(*split_features(informative=False), seed=0)
    for name in ("logistic", "random_forest"):
        assert res[name]["accuracy"] < 0.4, name  # chance is 0.25


def test_audit_aligns_one_hot_columns_and_checks_inputs():
    f = sc.audio_nuisance_features(audio_meta(60))
    y = np.arange(60) % 3
    train = f.iloc[:30].loc[:, lambda d: ~d.columns.isin(["subtype_ALAW"])]  # unseen in train
    res = sc.nuisance_audit(train, y[:30], f.iloc[30:], y[30:], seed=0)
    assert 0 <= res["random_forest"]["accuracy"] <= 1
    assert "sample_rate" in sc.single_feature_audit(train, y[:30], f.iloc[30:], y[30:]).index
    with pytest.raises(StudyError):
        sc.nuisance_audit(f.iloc[:30], y[:29], f.iloc[30:], y[30:])
    with pytest.raises(StudyError):
        sc.nuisance_audit(f.iloc[:30], np.zeros(30), f.iloc[30:], y[30:])


# --- the real shortcut, documented on real file headers ----------------------------------------

def _sounds_root():
    root = data_root()
    return root if (root / "animal-sounds.csv").is_file() else None


@pytest.mark.skipif(_sounds_root() is None, reason="real data not present")
def test_real_headers_predict_class():
    """Sample rate and duration alone, from ~60 WAV headers, predict the class well."""
    sf = pytest.importorskip("soundfile")
    root = _sounds_root()
    manifest = pd.read_csv(root / "animal-sounds.csv")
    rows = []
    for cls in ("bird", "cat", "cow", "chicken"):
        for rel in sorted(manifest.loc[manifest["class"] == cls, "path"])[:16]:
            info = sf.info(str(root / "animal-sounds" / rel))
            rows.append({"class": cls, "orig_sr": info.samplerate, "duration": info.duration,
                         "log_duration": np.log(max(info.duration, 1e-3)),
                         "channels": info.channels})
    meta = pd.DataFrame(rows)
    train = meta.index % 2 == 0  # fixed simple split: alternate files within each class
    feats = meta[["orig_sr", "duration", "log_duration", "channels"]]
    res = sc.nuisance_audit(feats[train], meta["class"][train], feats[~train],
                            meta["class"][~train], seed=0)
    assert res["majority"]["accuracy"] <= 0.3
    assert res["random_forest"]["accuracy"] >= res["majority"]["accuracy"] + 0.3


def test_every_reported_counterfactual_changes_the_preprocessed_input(real_root, real_cache):
    """On the real data at the default settings: each counterfactual evaluated can change what a model sees;
    the ones the preprocessing undoes (4 kHz is Nyquist at 8 kHz; encoders standardise each clip's level)
    are listed as not testable instead of being scored as a drop of 0."""
    from helpers.experiments import changes_model_input, prepare_study
    study = prepare_study({"progress": False})
    for modality in ("audio", "image"):
        sets = study.test_sets(modality)
        plain = sets["test"][0]
        for name, (X, _) in sets.items():
            if name not in ("test", "external"):
                assert changes_model_input(plain, X, modality), f"{modality} {name} changes nothing"
    assert study.not_testable == {"audio": ["bandlimit_4k", "quieter_12db"]}
    wide = prepare_study({"progress": False, "sample_rate": 16000, "normalize_loudness": False})
    wide.test_sets("audio")
    assert "bandlimit_4k" not in wide.not_testable.get("audio", [])   # below Nyquist at 16 kHz: testable


def test_audit_split_changes_with_the_seed_and_stays_stratified():
    from helpers.experiments import audit_split
    y = np.repeat(np.arange(4), [10, 20, 5, 15])
    splits = [audit_split(y, 4, seed) for seed in (0, 1)]
    for train, test in splits:
        assert sorted(np.concatenate([train, test])) == list(range(len(y)))          # disjoint, complete
        assert np.bincount(y[test], minlength=4).tolist() == [2, 4, 1, 3]             # 20% of each class
    assert not np.array_equal(splits[0][1], splits[1][1])


def test_metadata_audits_vary_between_seeds_at_the_full_fraction(real_root, real_cache):
    """At fraction 0.8 every seed's training pool is the whole pool: only a per-seed audit split can vary."""
    from helpers.experiments import nuisance_audits, prepare_study
    scores = [nuisance_audits(prepare_study({"progress": False, "fraction": 0.8, "seed": seed, "external_data": ""}))
              for seed in (0, 1)]
    for modality in ("audio", "image"):
        assert scores[0][modality]["all_features"] != scores[1][modality]["all_features"], modality
