"""Shortcuts in the data: counterfactual tests, training mitigations, and nuisance-only audits.

The sound clips carry their recording chain (original sample rate -> bandwidth, duration,
codec) and each image class carries its scrape (size, format, border). A model can score
well by learning those instead of the animal. This module gives three tools:

1. counterfactual transforms: change one nuisance and see whether predictions move;
2. mitigations for training: remove or randomise the nuisance so it cannot be learned;
3. audits: how well does a classifier do that sees *only* nuisance metadata?

Conventions: audio is float [N, L] at `sample_rate`; images are uint8 [N, 3, H, W]
(augmentation works on float in [0, 1]). Transforms are pure: batch in, new batch out.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from helpers.config import StudyError

# ---------------------------------------------------------------------------------------------
# Argument checks (a wrong shape deep inside an FFT gives a cryptic error; say it here instead)


def _check_audio(X, sample_rate=None):
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
        got = f"{type(X).__name__} {tuple(X.shape) if hasattr(X, 'shape') else ''}"
        raise StudyError(f"audio must be a float tensor [N, L]; got {got}")
    if sample_rate is not None and (not isinstance(sample_rate, int) or sample_rate <= 0):
        raise StudyError(f"sample_rate={sample_rate!r} must be a positive integer (Hz), e.g. 16000")


def _check_images(X, dtype=torch.uint8):
    if (not isinstance(X, torch.Tensor) or X.dim() != 4 or X.shape[1] != 3
            or (dtype is torch.uint8 and X.dtype != torch.uint8)
            or (dtype is float and not X.is_floating_point())):
        want = "uint8" if dtype is torch.uint8 else "float in [0, 1]"
        got = f"{type(X).__name__} {getattr(X, 'dtype', '')} {tuple(getattr(X, 'shape', ()))}"
        raise StudyError(f"images must be a {want} tensor [N, 3, H, W]; got {got}")


# ---------------------------------------------------------------------------------------------
# 1. Counterfactual transforms, audio


def band_limit(X, sample_rate, cutoff_hz=4000):
    """Remove all energy above `cutoff_hz` (FFT brick wall); everything below is kept exactly.

    A brick wall, not a biquad: a gentle filter leaves energy above the cutoff, and the
    bandwidth shortcut lives precisely in that faint high band. Deterministic, works on any
    device; computed in float32 at least (half-precision FFTs are restricted) and cast back.
    """
    _check_audio(X, sample_rate)
    if not isinstance(cutoff_hz, (int, float)) or cutoff_hz <= 0:
        raise StudyError(f"cutoff_hz={cutoff_hz!r} must be a positive frequency in Hz, e.g. 4000")
    if cutoff_hz >= sample_rate / 2:  # nothing above Nyquist to remove
        return X.clone()
    L = X.shape[1]
    spec = torch.fft.rfft(X.to(torch.promote_types(X.dtype, torch.float32)), dim=1)
    freqs = torch.fft.rfftfreq(L, d=1.0 / sample_rate, device=X.device)
    spec[:, freqs > cutoff_hz] = 0
    return torch.fft.irfft(spec, n=L, dim=1).to(X.dtype)


def lowpass(X, sample_rate, cutoff_hz):
    """Training mitigation: band-limit every clip to the band all recording chains share.

    With cutoff_hz <= 4000 (the Nyquist of the 8 kHz recordings) bandwidth no longer tells the
    source. Same brick wall as `band_limit`, so train-time and test-time filtering agree.
    """
    return band_limit(X, sample_rate, cutoff_hz)


def change_loudness(X, gain_db=-12):
    """Scale every clip by `gain_db` decibels (RMS scales by 10**(gain_db/20)); no clipping,
    so the counterfactual changes level only, never the waveform's shape."""
    _check_audio(X)
    if not isinstance(gain_db, (int, float)) or not math.isfinite(gain_db):
        raise StudyError(f"gain_db={gain_db!r} must be a finite number of decibels, e.g. -12")
    return X * (10.0 ** (gain_db / 20.0))


def cut_audio(X, sample_rate, seconds=1.0):
    """Keep the first `seconds` of each clip, then loop-pad back to the original length.

    The data layer loop-pads short clips, so a counterfactual short clip is built the same
    way: the model sees exactly what a genuinely short recording would look like.
    """
    _check_audio(X, sample_rate)
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise StudyError(f"seconds={seconds!r} must be a positive duration, e.g. 1.0")
    L = X.shape[1]
    n = max(1, int(round(seconds * sample_rate)))
    if n >= L:
        return X.clone()
    idx = torch.arange(L, device=X.device) % n
    return X[:, idx]


# ---------------------------------------------------------------------------------------------
# 1. Counterfactual transforms, images


def _border_mask(H, W, width_frac, device=None):
    """True on the outer band of width round(width_frac * min(H, W)) (at least 1 pixel)."""
    if not isinstance(width_frac, (int, float)) or not 0 < width_frac < 0.5:
        raise StudyError(f"width_frac={width_frac!r} must be in (0, 0.5), e.g. 0.125")
    w = max(1, int(round(width_frac * min(H, W))))
    mask = torch.ones(H, W, dtype=torch.bool, device=device)
    mask[w:H - w, w:W - w] = False
    return mask


def replace_border(X, width_frac=0.125, value=128, noise_seed=None):
    """Replace the outer band of each image with constant grey `value` (None means 128) or,
    if `noise_seed` is given, with seeded uniform noise; the centre is left untouched.

    Tests whether the model reads the background/frame of a scrape (e.g. white studio frogs)
    instead of the animal, which usually sits in the centre.
    """
    _check_images(X)
    value = 128 if value is None else value
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise StudyError(f"value={value!r} must be an integer grey level in [0, 255] or None")
    mask = _border_mask(X.shape[2], X.shape[3], width_frac, X.device)
    if noise_seed is None:
        fill = torch.full_like(X, value)
    else:
        g = torch.Generator().manual_seed(int(noise_seed))
        fill = torch.randint(0, 256, X.shape, generator=g, dtype=torch.uint8).to(X.device)
    return torch.where(mask, fill, X)


def to_greyscale(X):
    """Luminance (ITU-R 601 weights) replicated to 3 channels: removes colour cues only."""
    _check_images(X)
    w = torch.tensor([0.299, 0.587, 0.114], device=X.device).view(1, 3, 1, 1)
    luma = (X.float() * w).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return luma.expand_as(X).contiguous()


def jpeg_reencode(X, quality=10):
    """Round-trip each image through PIL JPEG at `quality`: destroys format/compression
    fingerprints (PNG classes vs JPEG classes) while keeping the picture recognisable."""
    _check_images(X)
    if not isinstance(quality, int) or not 1 <= quality <= 95:
        raise StudyError(f"quality={quality!r} must be an integer JPEG quality in [1, 95]")
    out = []
    for img in X.permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    if not out:
        return X.clone()
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(X.device)


def band_pass(X, sample_rate, low_hz, high_hz):
    """Keep only the band [low_hz, high_hz] (FFT brick wall): a telephone line keeps 300-3400 Hz."""
    _check_audio(X, sample_rate)
    if not 0 <= low_hz < high_hz:
        raise StudyError(f"band [{low_hz}, {high_hz}] Hz must have 0 <= low < high")
    L = X.shape[1]
    spec = torch.fft.rfft(X.to(torch.promote_types(X.dtype, torch.float32)), dim=1)
    freqs = torch.fft.rfftfreq(L, d=1.0 / sample_rate, device=X.device)
    spec[:, (freqs < low_hz) | (freqs > high_hz)] = 0
    return torch.fft.irfft(spec, n=L, dim=1).to(X.dtype)


def mu_law_8bit(X, mu=255):
    """Round-trip through 8-bit mu-law (G.711's companding): coarse quantisation of quiet samples.

    Each clip is scaled to peak 1 first and back after, so the codec's noise floor is relative to
    the clip, as on a real telephone chain whose gain is set to the signal.
    """
    _check_audio(X)
    peak = X.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    x = (X / peak).clamp(-1, 1)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    q = torch.round((y + 1) / 2 * mu) / mu * 2 - 1                  # 256 levels
    return (torch.sign(q) * ((1 + mu) ** q.abs() - 1) / mu * peak).to(X.dtype)


def add_noise(X, snr_db=10.0, seed=0):
    """White noise at a fixed signal-to-noise ratio per clip (seeded: the same noise on every run).
    Loudness normalisation scales signal and noise together, so it cannot undo this."""
    _check_audio(X)
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(X.shape, generator=g).to(X.device, X.dtype)
    p_signal = X.pow(2).mean(dim=1, keepdim=True)
    p_noise = noise.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-12)
    return X + noise * torch.sqrt(p_signal / p_noise * 10.0 ** (-snr_db / 10.0))


def reverberate(X, sample_rate, rt60_s=0.5, seed=0):
    """Convolve with a seeded synthetic room response (exponentially decaying noise, RT60 `rt60_s`):
    another room, not another animal."""
    _check_audio(X, sample_rate)
    n = max(2, int(rt60_s * sample_rate))
    g = torch.Generator().manual_seed(int(seed))
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    ir = torch.randn(n, generator=g) * torch.exp(-6.91 * t / rt60_s)   # -60 dB at rt60
    ir[0] = 1.0
    ir = ir / ir.norm()
    L = X.shape[1]
    size = 1 << (L + n - 1).bit_length()
    spec = torch.fft.rfft(X.float(), size, dim=1) * torch.fft.rfft(ir.to(X.device), size)
    return torch.fft.irfft(spec, size, dim=1)[:, :L].to(X.dtype)


def zoom_crop(X, keep=0.6):
    """Reframe: the central `keep` share of each side, resized back (the animal closer, less background)."""
    _check_images(X)
    if not 0.1 <= keep < 1:
        raise StudyError(f"keep={keep!r} must be in [0.1, 1)")
    H, W = X.shape[2], X.shape[3]
    h, w = max(1, round(H * keep)), max(1, round(W * keep))
    top, left = (H - h) // 2, (W - w) // 2
    crop = X[:, :, top:top + h, left:left + w].float()
    return F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)


# Name -> transform, for looping over counterfactuals. Each changes the recording chain or the framing,
# not the animal. Whether one can change a model's input under the run's preprocessing is checked per
# run (helpers.experiments): at 8 kHz the 4 kHz limit is the Nyquist frequency and changes nothing,
# and loudness normalisation undoes a gain; such a test is reported as not testable, never as a drop of 0.
AUDIO_COUNTERFACTUALS = {
    "bandlimit_4k": lambda X, sample_rate: band_limit(X, sample_rate, 4000),
    "bandlimit_2k": lambda X, sample_rate: band_limit(X, sample_rate, 2000),
    "telephone_band": lambda X, sample_rate: band_pass(X, sample_rate, 300, 3400),
    "mu_law_8bit": lambda X, sample_rate: mu_law_8bit(X),
    "noise_10db": lambda X, sample_rate: add_noise(X, 10.0),
    "reverb_0.5s": lambda X, sample_rate: reverberate(X, sample_rate, 0.5),
    "quieter_12db": lambda X, sample_rate: change_loudness(X, -12),
    "cut_1s": lambda X, sample_rate: cut_audio(X, sample_rate, 1.0),
}
IMAGE_COUNTERFACTUALS = {
    "border_replaced": lambda X: replace_border(X, 0.125),
    "zoom_crop": lambda X: zoom_crop(X, 0.6),
    "greyscale": to_greyscale,
    "jpeg_q10": lambda X: jpeg_reencode(X, 10),
}


# ---------------------------------------------------------------------------------------------
# 2. Mitigations for training (batched torch; seeded by an explicit generator)


def normalize_loudness(X, target_rms=0.1, floor_rms=1e-4):
    """Scale each clip to RMS `target_rms` so recording level cannot be learned.

    Clips quieter than `floor_rms` (-80 dBFS, i.e. silence) are scaled as if they had that
    RMS, so silence stays near-silent instead of becoming amplified noise.
    """
    _check_audio(X)
    if not isinstance(target_rms, (int, float)) or target_rms <= 0:
        raise StudyError(f"target_rms={target_rms!r} must be a positive RMS level, e.g. 0.1")
    rms = X.float().pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(floor_rms)
    return (X * (target_rms / rms)).to(X.dtype)


def augment_audio(X, sample_rate, generator=None, p_band=0.5, min_cutoff_hz=1500.0, p_noise=0.5,
                  snr_db=(10.0, 30.0)):
    """Training mitigation: vary the recording chain so that it cannot name the source.

    Each clip is, with probability p_band, low-passed at a cutoff drawn uniformly between min_cutoff_hz
    and the Nyquist frequency (FFT brick wall, as `band_limit`), and, with probability p_noise, given
    white noise at an SNR drawn uniformly in snr_db. All randomness comes from `generator`.
    """
    _check_audio(X, sample_rate)
    n, L = X.shape
    nyquist = sample_rate / 2
    u = torch.rand(n, 4, generator=generator)
    cutoff = torch.where(u[:, 0] < p_band, min_cutoff_hz + u[:, 1] * (nyquist - min_cutoff_hz),
                         torch.full((n,), nyquist + 1.0))
    spec = torch.fft.rfft(X.float(), dim=1)
    freqs = torch.fft.rfftfreq(L, d=1.0 / sample_rate)
    spec = spec * (freqs[None, :] <= cutoff[:, None]).to(spec.device)
    out = torch.fft.irfft(spec, n=L, dim=1)
    snr = snr_db[0] + u[:, 2] * (snr_db[1] - snr_db[0])
    noise = torch.randn(n, L, generator=generator)
    scale = torch.sqrt(out.pow(2).mean(1) / noise.pow(2).mean(1).clamp_min(1e-12) * 10.0 ** (-snr / 10.0))
    out = out + noise * (scale * (u[:, 3] < p_noise))[:, None]
    return out.to(X.dtype)


def augment_images(X, generator=None, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5,
                   jitter=0.2):
    """Random resized crop + horizontal flip + mild colour jitter, one batched op on float [0, 1].

    The crop and flip are one affine resampling (grid_sample) so a batch of 64 images is a
    single kernel; brightness, contrast and saturation factors are drawn in U(1-jitter,
    1+jitter). All randomness comes from `generator`, so two runs with one seed agree.
    """
    _check_images(X, dtype=float)
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise StudyError(f"scale={scale!r} must satisfy 0 < min <= max <= 1, e.g. (0.6, 1.0)")
    if not 0 <= jitter < 1 or not 0 <= flip_p <= 1:
        raise StudyError(f"jitter={jitter!r} must be in [0, 1) and flip_p={flip_p!r} in [0, 1]")
    N, dev = X.shape[0], X.device
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(N, 8, generator=generator, device=gdev).to(dev, torch.float32)

    # Crop: area fraction s and aspect r, as widths/heights relative to the full image.
    s = lo + (hi - lo) * u[:, 0]
    r = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    cw, ch = (s * r).sqrt().clamp(max=1), (s / r).sqrt().clamp(max=1)
    cx, cy = (1 - cw) * (2 * u[:, 2] - 1), (1 - ch) * (2 * u[:, 3] - 1)  # centre, in [-1, 1]
    flip = torch.where(u[:, 4] < flip_p, -1.0, 1.0)
    theta = torch.zeros(N, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = cw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = ch, cy
    grid = F.affine_grid(theta, list(X.shape), align_corners=False)
    out = F.grid_sample(X.float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)

    # Colour jitter: brightness, then contrast around the mean grey, then saturation.
    b, c, sat = (1 + jitter * (2 * u[:, 5:8] - 1)).T.reshape(3, N, 1, 1, 1)
    out = out * b
    grey = (out * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(
        1, keepdim=True)
    out = (out - grey.mean((2, 3), keepdim=True)) * c + grey.mean((2, 3), keepdim=True)
    out = grey + (out - grey) * sat
    return out.clamp(0, 1).to(X.dtype)


# ---------------------------------------------------------------------------------------------
# 3. Nuisance-only features and audits

AUDIO_META_COLUMNS = ("orig_sr", "duration", "rolloff_hz", "rms_db", "channels", "subtype")
IMAGE_META_COLUMNS = ("orig_width", "orig_height", "format", "mode", "file_bytes")

# Feature groups for single_feature_audit: group name -> column prefixes.
FEATURE_GROUPS = {
    "sample_rate": ("orig_sr",), "duration": ("duration", "log_duration"),
    "bandwidth": ("rolloff_hz",), "loudness": ("rms_db",), "channels": ("channels",),
    "subtype": ("subtype_",),
    "size": ("orig_width", "orig_height"), "aspect": ("aspect",),
    "file_bytes": ("file_bytes", "bytes_per_pixel"), "format": ("format_",), "mode": ("mode_",),
    "border_colour": ("border_r", "border_g", "border_b", "border_std"),
}


def _require_columns(meta, columns, what):
    if not isinstance(meta, pd.DataFrame):
        raise StudyError(f"{what} metadata must be a pandas DataFrame; got {type(meta).__name__}")
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise StudyError(f"{what} metadata lacks column(s) {missing}; need {list(columns)}")


def _numeric(meta, col):
    v = pd.to_numeric(meta[col], errors="coerce").astype(float)
    if v.isna().any():
        raise StudyError(f"metadata column {col!r} has {int(v.isna().sum())} missing or "
                         "non-numeric value(s); fix the metadata before auditing")
    return v


def audio_nuisance_features(meta):
    """Per-clip features that describe the recording chain, never the animal.

    Columns: orig_sr, duration, log_duration, rolloff_hz, rms_db, channels, subtype_<S> one-hot.
    """
    _require_columns(meta, AUDIO_META_COLUMNS, "audio")
    f = pd.DataFrame(index=meta.index)
    for col in ("orig_sr", "duration", "rolloff_hz", "rms_db", "channels"):
        f[col] = _numeric(meta, col)
    f.insert(2, "log_duration", np.log(f["duration"].clip(lower=1e-3)))
    f["rms_db"] = f["rms_db"].clip(lower=-120)  # digital silence gives -inf dB
    f = f.join(pd.get_dummies(meta["subtype"].astype(str), prefix="subtype", dtype=float))
    return f


def image_nuisance_features(meta, X_uint8, width_frac=0.125):
    """Per-image features that describe the scrape, not the animal.

    Columns: orig_width, orig_height, aspect, file_bytes, bytes_per_pixel, format_<F>,
    mode_<M> one-hots, and border_r/g/b (mean colour, 0-255) and border_std of the outer band
    of the decoded image (the same band `replace_border` replaces).
    """
    _require_columns(meta, IMAGE_META_COLUMNS, "image")
    _check_images(X_uint8)
    if len(meta) != X_uint8.shape[0]:
        raise StudyError(f"image metadata has {len(meta)} rows but the tensor has "
                         f"{X_uint8.shape[0]} images; they must be the same items in order")
    f = pd.DataFrame(index=meta.index)
    for col in ("orig_width", "orig_height", "file_bytes"):
        f[col] = _numeric(meta, col)
    if (f[["orig_width", "orig_height"]] <= 0).any().any():
        raise StudyError("image metadata has a non-positive orig_width or orig_height")
    f["aspect"] = f["orig_width"] / f["orig_height"]
    f["bytes_per_pixel"] = f["file_bytes"] / (f["orig_width"] * f["orig_height"])
    f = f.join(pd.get_dummies(meta["format"].astype(str).str.upper(), prefix="format",
                              dtype=float))
    f = f.join(pd.get_dummies(meta["mode"].astype(str), prefix="mode", dtype=float))
    mask = _border_mask(X_uint8.shape[2], X_uint8.shape[3], width_frac, X_uint8.device)
    band = X_uint8.float()[:, :, mask]  # [N, 3, pixels in band]
    for i, ch in enumerate("rgb"):
        f[f"border_{ch}"] = band[:, i].mean(1).cpu().numpy()
    f["border_std"] = band.flatten(1).std(1).cpu().numpy()
    return f


def _aligned(features_train, y_train, features_test, y_test):
    """Check inputs; give test the train columns (one-hot columns seen only in one split)."""
    for name, f in (("features_train", features_train), ("features_test", features_test)):
        if not isinstance(f, pd.DataFrame) or f.shape[1] == 0 or len(f) == 0:
            raise StudyError(f"{name} must be a non-empty pandas DataFrame of features")
    Xtr = features_train.astype(float)
    Xte = features_test.reindex(columns=Xtr.columns, fill_value=0.0).astype(float)
    ytr, yte = np.asarray(y_train), np.asarray(y_test)
    if len(ytr) != len(Xtr) or len(yte) != len(Xte):
        raise StudyError(f"labels and features differ in length: train {len(ytr)} vs {len(Xtr)}, "
                         f"test {len(yte)} vs {len(Xte)}")
    if not (np.isfinite(Xtr.values).all() and np.isfinite(Xte.values).all()):
        raise StudyError("features contain NaN or infinite values; build them with the "
                         "*_nuisance_features helpers or fill them first")
    if len(np.unique(ytr)) < 2:
        raise StudyError("y_train has fewer than 2 classes; an audit needs at least 2")
    return Xtr, ytr, Xte, yte


def _score(model, Xtr, ytr, Xte, yte):
    from sklearn.metrics import accuracy_score, f1_score
    pred = model.fit(Xtr, ytr).predict(Xte)
    return {"accuracy": float(accuracy_score(yte, pred)),
            "macro_f1": float(f1_score(yte, pred, average="macro", zero_division=0))}


def nuisance_audit(features_train, y_train, features_test, y_test, seed=0):
    """How well can the class be predicted from nuisance features alone, on the study's split?

    Returns {"majority" | "logistic" | "random_forest": {"accuracy", "macro_f1"}} on test.
    Anything well above "majority" is a shortcut a model could use instead of the animal.
    `pd.DataFrame(result).T` makes it a table.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, ytr, Xte, yte = _aligned(features_train, y_train, features_test, y_test)
    models = {
        "majority": DummyClassifier(strategy="most_frequent"),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "random_forest": RandomForestClassifier(n_estimators=200, random_state=seed),
    }
    return {name: _score(m, Xtr, ytr, Xte, yte) for name, m in models.items()}


def single_feature_audit(features_train, y_train, features_test, y_test, groups=None,
                         max_depth=4, seed=0):
    """Test accuracy of a shallow tree that sees one feature group only (e.g. duration only).

    `groups` maps name -> list of columns; by default the groups of FEATURE_GROUPS whose
    columns are present. Returns a DataFrame indexed by group (plus a "majority" row) with
    columns accuracy, macro_f1, n_features, sorted by accuracy.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.tree import DecisionTreeClassifier

    Xtr, ytr, Xte, yte = _aligned(features_train, y_train, features_test, y_test)
    if groups is None:
        groups = {name: [c for c in Xtr.columns if c.startswith(prefixes)]
                  for name, prefixes in FEATURE_GROUPS.items()}
        groups = {name: cols for name, cols in groups.items() if cols}
    rows = {}
    for name, cols in groups.items():
        missing = [c for c in cols if c not in Xtr.columns]
        if missing or not cols:
            raise StudyError(f"feature group {name!r} names unknown column(s) {missing or cols}")
        tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
        rows[name] = {**_score(tree, Xtr[cols], ytr, Xte[cols], yte), "n_features": len(cols)}
    rows["majority"] = {**_score(DummyClassifier(strategy="most_frequent"), Xtr, ytr, Xte, yte),
                        "n_features": 0}
    table = pd.DataFrame.from_dict(rows, orient="index").astype({"n_features": int})
    return table.sort_values("accuracy", ascending=False, kind="stable")
