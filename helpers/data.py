"""Raw files -> clean, cached tensors: decoding, the dataset description, and the preprocessing cache.

Raw data is immutable: this module only reads the data root. Decoded tensors go to the cache
($STUDY_CACHE), keyed by the content of every source file and the preprocessing parameters.
Splits, pairing and label noise live in `helpers.splits`.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from .config import PARAMS_DIR, StudyError, cache_dir, chmod_by_umask, data_root, external_root

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_FORMAT = 3  # bump when the decoding code changes what it produces (3: photos turned upright by EXIF)


class DataWarning(UserWarning):
    """A file was skipped; the message names it and says why."""


# --------------------------------------------------------------------------- dataset description
@dataclass
class DatasetSpec:
    """What a paired data set is: where its two modalities live and how folders map to classes."""
    name: str
    root: Path
    audio_dir: str
    image_dir: str
    classes: list[str]
    audio_folders: dict[str, str]
    image_folders: dict[str, str]
    confusable: dict[str, str] = field(default_factory=dict)
    test_fraction: float = 0.2
    split_seed: int = 0
    # An evaluation-only collection (other sources, never trained on): one modality may be missing
    # (its *_dir null), and a class may have files in one modality only; no split is made of it.
    evaluation_only: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_spec(spec: str | Path = "animals", root: str | Path | None = None) -> DatasetSpec:
    """Read a dataset YAML: a name in params/datasets/ or a path to a file."""
    path = Path(spec)
    if not path.suffix:
        path = PARAMS_DIR / "datasets" / f"{spec}.yaml"
    if not path.is_file():
        raise StudyError(f"dataset description {path} not found; name one in {PARAMS_DIR / 'datasets'} "
                         "or give the path of a YAML file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise StudyError(f"dataset description {path} is not valid YAML: {err}") from None
    known = {"name", "audio_dir", "image_dir", "classes", "audio_folders", "image_folders",
             "confusable", "test_fraction", "split_seed", "root", "location", "evaluation_only"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    evaluation_only = bool(raw.get("evaluation_only", False))
    missing = [k for k in ("classes",) + (() if evaluation_only else ("audio_dir", "image_dir")) if k not in raw]
    if missing:
        raise StudyError(f"{path}: missing key(s) {missing}")
    if evaluation_only and not (raw.get("audio_dir") or raw.get("image_dir")):
        raise StudyError(f"{path}: an evaluation collection needs audio_dir, image_dir or both")
    locations = {"data": data_root, "external": external_root}   # which location variable holds the files
    if raw.get("location", "data") not in locations:
        raise StudyError(f"{path}: location={raw['location']!r} must be one of {list(locations)} "
                         "($STUDY_DATA or $STUDY_EXTERNAL), or give root: <folder>")
    classes = [str(c) for c in raw["classes"]]
    base = Path(root) if root is not None else Path(raw.get("root") or locations[raw.get("location", "data")]())
    if not base.is_absolute() and raw.get("root") and root is None:
        base = path.parent / base
    spec_ = DatasetSpec(
        name=raw.get("name", path.stem), root=base.expanduser(),
        audio_dir=raw.get("audio_dir"), image_dir=raw.get("image_dir"), classes=classes,
        audio_folders={str(k): str(v) for k, v in (raw.get("audio_folders") or {}).items()},
        image_folders={str(k): str(v) for k, v in (raw.get("image_folders") or {}).items()},
        confusable={str(k): str(v) for k, v in (raw.get("confusable") or {}).items()},
        test_fraction=float(raw.get("test_fraction", 0.2)), split_seed=int(raw.get("split_seed", 0)),
        evaluation_only=evaluation_only)
    for kind, mapping in (("audio_folders", spec_.audio_folders), ("image_folders", spec_.image_folders),
                          ("confusable", spec_.confusable)):
        bad = sorted({v for v in mapping.values() if v not in classes} |
                     ({k for k in mapping if k not in classes} if kind == "confusable" else set()))
        if bad:
            raise StudyError(f"{path}: {kind} names class(es) {bad} that are not in classes {classes}")
    return spec_


def list_files(spec: DatasetSpec, modality: str) -> tuple[list[tuple[str, str]], list[dict]]:
    """(relative path, class) of every file of a modality, and the files skipped before decoding.

    Checks the folder layout first so that a wrong mapping fails at load time, before any training.
    """
    subdir, mapping, extensions = ((spec.audio_dir, spec.audio_folders, AUDIO_EXTENSIONS) if modality == "audio"
                                   else (spec.image_dir, spec.image_folders, IMAGE_EXTENSIONS))
    base = spec.root / subdir
    if not base.is_dir():
        if spec.evaluation_only:
            raise StudyError(
                f"no {modality} folder at {base} for the evaluation data {spec.name}. Set STUDY_EXTERNAL to its root, "
                f"run `python -m helpers data fetch --external` to download it into {external_root()}, or pass "
                "external_data=\"\" to evaluate without it")
        raise StudyError(
            f"no {modality} folder at {base}. Set STUDY_DATA to the data root (it holds {spec.audio_dir}/ and "
            f"{spec.image_dir}/), or run `python -m helpers data fetch` to download the data into {data_root()}")
    folders = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    mapping = mapping or {c: c for c in spec.classes}
    unknown = [f for f in folders if f not in mapping]
    if unknown:
        raise StudyError(f"{base}: folder(s) {unknown} map to no class. Add them to `{modality}_folders` in the "
                         f"dataset YAML ({spec.name}), mapping each to one of {spec.classes}")
    files, skipped = [], []
    for folder in folders:
        entries = sorted(p for p in (base / folder).rglob("*") if p.is_file())
        for p in entries:
            rel = p.relative_to(base).as_posix()
            if p.name.startswith("."):
                skipped.append({"path": f"{subdir}/{rel}", "reason": "hidden file"})
            elif p.suffix.lower() not in extensions:
                skipped.append({"path": f"{subdir}/{rel}", "reason": f"not a {modality} file extension ({p.suffix})"})
            else:
                files.append((rel, mapping[folder]))
    counts = {c: 0 for c in spec.classes}
    for _, c in files:
        counts[c] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if empty and not spec.evaluation_only:
        raise StudyError(f"{base}: class(es) {empty} have no {modality} file. Every class needs files in both "
                         f"modalities: add files, or remove the class from the dataset YAML ({spec.name})")
    return files, skipped


# --------------------------------------------------------------------------- decoding
@contextlib.contextmanager
def _quiet_c_stderr():
    """libmpg123 prints resync notes on MP3-in-WAV trailers straight to fd 2; they are harmless."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def _loudest_window(x: np.ndarray, n: int) -> np.ndarray:
    """The length-n window with the most energy: long field recordings are mostly silence."""
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    start = int(np.argmax(energy[n:] - energy[:-n]))
    return x[start:start + n]


def loop_pad(x: np.ndarray, n: int) -> np.ndarray:
    """Repeat a short clip to length n. Zero-padding would hand the model the clip's duration."""
    return np.tile(x, -(-n // len(x)))[:n]


def rolloff_hz(x: np.ndarray, sample_rate: int, share: float = 0.95) -> float:
    """Frequency below which `share` of the clip's spectral energy lies (its effective bandwidth)."""
    spectrum = np.abs(np.fft.rfft(x[: 1 << 18])) ** 2
    total = spectrum.sum()
    if total <= 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(spectrum), share * total))
    return float(k * sample_rate / (2 * (len(spectrum) - 1 or 1)))


@functools.lru_cache(maxsize=32)
def _resampler(orig_sr: int, new_sr: int):
    """One polyphase filter per rate pair: torchaudio's functional form rebuilds it on every call."""
    import torchaudio

    return torchaudio.transforms.Resample(orig_sr, new_sr)


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling. Polyphase (torchaudio) when the rate ratio reduces to small integers;
    FFT resampling for odd rates such as 11127 Hz, whose polyphase kernel would need gigabytes."""
    from math import gcd

    g = gcd(orig_sr, new_sr)
    if max(orig_sr, new_sr) // g <= 2000:
        with torch.no_grad():
            return _resampler(orig_sr, new_sr)(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    from scipy.signal import resample as fft_resample
    return fft_resample(x, int(round(len(x) * new_sr / orig_sr))).astype(np.float32)


def decode_audio(path: Path, sample_rate: int, num_samples: int) -> tuple[np.ndarray, dict]:
    """Decode one clip: mono, resampled, loop-padded or cut (loudest part) to num_samples.

    Raises ValueError with a short reason when the file cannot be used.
    """
    import soundfile as sf
    try:
        with _quiet_c_stderr():
            info = sf.info(str(path))
            x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's errors are opaque: keep its message, name the file outside
        raise ValueError(f"cannot decode audio ({type(err).__name__}: {str(err).strip()[:160]})") from None
    if x.size == 0:
        raise ValueError("no audio samples")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    meta = {"orig_sr": int(sr), "duration": len(x) / sr, "channels": int(x.shape[1]),
            "subtype": info.subtype, "format": info.format}
    x = x.mean(axis=1)
    meta["rolloff_hz"] = rolloff_hz(x, sr)
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
        if x.size == 0:
            raise ValueError(f"clip too short to resample ({meta['duration']:.4f} s)")
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    meta["rms_db"] = 20 * np.log10(rms) if rms > 0 else -120.0
    x = _loudest_window(x, num_samples) if len(x) > num_samples else loop_pad(x, num_samples)
    return x.astype(np.float32), meta


def decode_image(path: Path, image_size: int) -> tuple[np.ndarray, dict]:
    """Decode one image: RGB (transparency composited on white), shorter side resized, centre-cropped."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                meta = {"orig_width": im.width, "orig_height": im.height, "format": im.format or "unknown",
                        "mode": im.mode}
                im.draft("RGB", (image_size * 2, image_size * 2))  # JPEG: decode at reduced scale, much faster
                im.load()
                im = ImageOps.exif_transpose(im)  # a phone photo stored sideways, with an EXIF rotation tag
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale, PIL would clip to 255
                    a = np.asarray(im, dtype=np.float64)  # full scale 65535 (not the image's max: no stretching)
                    full = 65535.0 if a.max() <= 65535 else float(a.max())
                    im = Image.fromarray(np.clip(np.round(255 * a / full), 0, 255).astype(np.uint8))
                if im.mode in ("P", "PA", "LA", "RGBA") or "transparency" in im.info:
                    rgba = im.convert("RGBA")
                    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(background, rgba)
                im = im.convert("RGB")
                im = ImageOps.fit(im, (image_size, image_size), Image.Resampling.BICUBIC)
                x = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("image too large (Pillow's decompression-bomb guard)") from None
    except Exception as err:
        raise ValueError(f"cannot decode image ({type(err).__name__}: {str(err).strip()[:160]})") from None
    meta["file_bytes"] = path.stat().st_size
    return x, meta


# --------------------------------------------------------------------------- cached modality tensors
@dataclass
class Modality:
    """One modality of the data set, decoded: X[i] is item i, y[i] its class index, meta its file facts."""
    name: str
    X: torch.Tensor          # audio: float16 [N, buffer_samples]; image: uint8 [N, 3, H, W]
    y: np.ndarray            # int64 class indices
    paths: list[str]         # relative to the modality folder
    meta: pd.DataFrame       # per-item nuisance facts (sample rate, duration, size, format, ...)
    classes: list[str]
    failures: list[dict]     # {path, reason} of every file that was skipped
    sample_rate: int | None = None

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        return {c: int((self.y == k).sum()) for k, c in enumerate(self.classes)}


@dataclass
class PairedDataset:
    spec: DatasetSpec
    audio: Modality
    image: Modality
    params: dict

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    @property
    def failures(self) -> list[dict]:
        return self.audio.failures + self.image.failures


def _content_key(base: Path, files: list[tuple[str, str]], params: dict) -> str:
    h = hashlib.sha1(json.dumps({"format": CACHE_FORMAT, **params}, sort_keys=True).encode())
    for rel, _ in files:
        h.update(rel.encode() + b"\0")
        with open(base / rel, "rb") as f:
            h.update(hashlib.sha1(f.read()).digest())
    return h.hexdigest()[:16]


def _save_cache(path: Path, X: np.ndarray, paths: list[str], meta: list[dict], failures: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = json.dumps({"paths": paths, "meta": meta, "failures": failures})
    payload_hash = hashlib.sha256(X.tobytes() + info.encode()).hexdigest()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, X=X, info=np.array(info), sha256=np.array(payload_hash))
        f.flush()
        os.fsync(f.fileno())
    chmod_by_umask(tmp)
    os.replace(tmp, path)  # never leave a half-written file under the final name


def _load_cache(path: Path):
    """Return (X, paths, meta, failures), or None if the file is missing, truncated or altered."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            X, info, digest = z["X"], str(z["info"]), str(z["sha256"])
        if hashlib.sha256(X.tobytes() + info.encode()).hexdigest() != digest:
            raise ValueError("checksum mismatch")
        info = json.loads(info)
        return X, info["paths"], info["meta"], info["failures"]
    except Exception as err:
        warnings.warn(f"cache file {path} is corrupt ({type(err).__name__}: {err}); rebuilding it", DataWarning)
        return None


def load_modality(spec: DatasetSpec, modality: str, *, sample_rate: int = 16000, buffer_seconds: float = 4.0,
                  image_size: int = 64, strict: bool = False, use_cache: bool = True,
                  progress: bool = True) -> Modality:
    """Decode every file of one modality (or read it from the cache) into a Modality."""
    from tqdm.auto import tqdm

    files, skipped = list_files(spec, modality)
    base = spec.root / (spec.audio_dir if modality == "audio" else spec.image_dir)
    if modality == "audio":
        params = {"modality": "audio", "sample_rate": sample_rate, "buffer_seconds": buffer_seconds}
        num_samples = int(round(buffer_seconds * sample_rate))
        decode = lambda p: decode_audio(p, sample_rate, num_samples)  # noqa: E731
    else:
        params = {"modality": "image", "image_size": image_size}
        decode = lambda p: decode_image(p, image_size)  # noqa: E731
    cache_path = cache_dir() / spec.name / f"{modality}-{_content_key(base, files, params)}.npz"
    cached = _load_cache(cache_path) if use_cache else None
    if cached is None:
        arrays, paths, metas, failures = [], [], [], []
        for rel, _ in tqdm(files, desc=f"decoding {modality}", disable=not progress, leave=False):
            try:
                x, meta = decode(base / rel)
            except ValueError as err:
                failures.append({"path": f"{base.name}/{rel}", "reason": str(err)})
                continue
            arrays.append(x)
            paths.append(rel)
            metas.append(meta)
        if not arrays:
            raise StudyError(f"no {modality} file under {base} could be decoded; first failure: {failures[:1]}")
        X = np.stack(arrays).astype(np.float16 if modality == "audio" else np.uint8)
        if use_cache:
            _save_cache(cache_path, X, paths, metas, failures)
    else:
        X, paths, metas, failures = cached
    failures = skipped + failures
    for f in failures:
        warnings.warn(f"skipped {f['path']}: {f['reason']}", DataWarning, stacklevel=2)
    if strict and failures:
        raise StudyError(f"{len(failures)} {modality} file(s) could not be used (strict=True); first: "
                         f"{failures[0]['path']}: {failures[0]['reason']}")
    label_of = dict(files)
    y = np.array([spec.classes.index(label_of[p]) for p in paths], dtype=np.int64)
    result = Modality(modality, torch.from_numpy(X), y, paths, pd.DataFrame(metas), spec.classes, failures,
                      sample_rate if modality == "audio" else None)
    lost = [c for c, n in result.counts().items() if n == 0]
    if lost and not spec.evaluation_only:
        raise StudyError(f"class(es) {lost} have no decodable {modality} file under {base}: see the failures above")
    return result


def load_dataset(spec: str | Path | DatasetSpec = "animals", root: str | Path | None = None, *,
                 sample_rate: int = 16000, buffer_seconds: float = 4.0, image_size: int = 64,
                 strict: bool = False, use_cache: bool = True, progress: bool = True) -> PairedDataset:
    """Both modalities of a paired data set, decoded and cached. The study's single entry to raw data."""
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec, root)
    if root is not None:
        spec = replace(spec, root=Path(root))
    if spec.evaluation_only:
        raise StudyError(f"{spec.name} is an evaluation-only collection: it is never trained on; pass it as "
                         "external_data (or load it with helpers.data.load_evaluation_set)")
    kw = dict(sample_rate=sample_rate, buffer_seconds=buffer_seconds, image_size=image_size, strict=strict,
              use_cache=use_cache, progress=progress)
    audio = load_modality(spec, "audio", **kw)
    image = load_modality(spec, "image", **kw)
    for mod, subdir in ((audio, spec.audio_dir), (image, spec.image_dir)):  # the fixed test split must be possible
        for c, n in mod.counts().items():
            n_test = int(round(spec.test_fraction * n))
            if n_test < 1 or n_test >= n:
                raise StudyError(
                    f"class {c!r} has {n} usable {mod.name} file(s) under {spec.root / subdir}: a "
                    f"{spec.test_fraction:.0%} test split would leave it no test or no training item. Add files, "
                    f"or remove the class from the dataset YAML ({spec.name})")
    return PairedDataset(spec, audio, image, {k: v for k, v in kw.items() if k in
                                              ("sample_rate", "buffer_seconds", "image_size")})


@dataclass
class EvaluationSet:
    """An independent collection, evaluated apart: per modality it has, the items of the study's classes.

    `modalities[m].y` indexes the *study's* classes; items of other classes are left out and named in
    `unknown` (modality -> {class: count}), so nothing is dropped silently.
    """
    name: str
    modalities: dict[str, Modality]
    unknown: dict[str, dict[str, int]]

    def summary(self) -> dict:
        return {"name": self.name, "unknown_classes": self.unknown,
                **{m: {c: n for c, n in mod.counts().items() if n} for m, mod in self.modalities.items()},
                "failures": [f for mod in self.modalities.values() for f in mod.failures]}


def load_evaluation_set(spec: str | Path | DatasetSpec, study_classes: list[str], *, sample_rate: int,
                        image_size: int, buffer_seconds: float = 4.0, progress: bool = True,
                        modalities=("audio", "image")) -> EvaluationSet:
    """Every modality of `spec` (among `modalities`) that has files, relabelled to the study's classes (no split
    is made)."""
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    shared = [c for c in spec.classes if c in study_classes]
    if not shared:
        raise StudyError(f"external data {spec.name}: none of its classes {spec.classes} is a study class "
                         f"{study_classes}; map its folders to the study's class names in its YAML")
    wanted, modalities, unknown = modalities, {}, {}
    for modality, folder in (("audio", spec.audio_dir), ("image", spec.image_dir)):
        if not folder or modality not in wanted:
            continue
        mod = load_modality(spec, modality, sample_rate=sample_rate, buffer_seconds=buffer_seconds,
                            image_size=image_size, progress=progress)
        to_study = np.array([study_classes.index(c) if c in study_classes else -1 for c in spec.classes])
        y = to_study[mod.y]
        keep = np.flatnonzero(y >= 0)
        unknown[modality] = {c: n for c, n in mod.counts().items() if n and c not in study_classes}
        if len(keep):
            modalities[modality] = Modality(modality, mod.X[torch.as_tensor(keep)], y[keep],
                                            [mod.paths[k] for k in keep], mod.meta.iloc[keep].reset_index(drop=True),
                                            list(study_classes), mod.failures, mod.sample_rate)
    if not modalities:
        raise StudyError(f"external data {spec.name}: no file of a study class could be used")
    return EvaluationSet(spec.name, modalities, unknown)


# --------------------------------------------------------------------------- tensors for the models
def audio_windows(buffers: torch.Tensor, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """float32 windows [N, num_samples] from the cached buffers: centred, or random when a generator is given
    (random crops of the loop-padded buffer are an augmentation and hide where a clip ends)."""
    n, length = buffers.shape
    if num_samples >= length:
        return buffers.float()
    if generator is None:
        start = (length - num_samples) // 2
        return buffers[:, start:start + num_samples].float()
    starts = torch.randint(0, length - num_samples + 1, (n,), generator=generator)
    offsets = starts[:, None] + torch.arange(num_samples)[None, :]
    return torch.gather(buffers, 1, offsets).float()


def images_float(X: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] -> float32 in [0, 1]."""
    return X.float().div_(255.0)


def describe(dataset: PairedDataset) -> dict:
    """The summary `python -m helpers data check --json` prints."""
    a, i = dataset.audio, dataset.image
    sr = a.meta["orig_sr"].value_counts().sort_index()
    return {
        "root": str(dataset.spec.root), "classes": dataset.classes,
        "audio": a.counts(), "image": i.counts(),
        "num_audio": len(a), "num_image": len(i),
        "failures": dataset.failures,
        "audio_sample_rates": {str(k): int(v) for k, v in sr.items()},
        "audio_duration_s": {c: {"median": round(float(a.meta["duration"][a.y == k].median()), 2),
                                 "min": round(float(a.meta["duration"][a.y == k].min()), 2),
                                 "max": round(float(a.meta["duration"][a.y == k].max()), 2)}
                             for k, c in enumerate(a.classes)},
        "image_formats": {str(k): int(v) for k, v in i.meta["format"].value_counts().items()},
        "preprocessing": dataset.params,
    }


def format_report(summary: dict) -> str:
    lines = [f"data root: {summary['root']}", f"{'class':<10} {'clips':>6} {'images':>7}  clip duration s (median, min-max)"]
    for c in summary["classes"]:
        d = summary["audio_duration_s"][c]
        lines.append(f"{c:<10} {summary['audio'][c]:>6} {summary['image'][c]:>7}  {d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})")
    lines.append(f"{'total':<10} {summary['num_audio']:>6} {summary['num_image']:>7}")
    lines.append("original sample rates: " + ", ".join(f"{k} Hz x{v}" for k, v in summary["audio_sample_rates"].items()))
    lines.append("image formats: " + ", ".join(f"{k} x{v}" for k, v in summary["image_formats"].items()))
    lines.append(f"failures: {len(summary['failures'])}")
    lines += [f"  {f['path']}: {f['reason']}" for f in summary["failures"]]
    return "\n".join(lines)

