"""Splits, nested training fractions, class-conditional pairing and label noise, all from seeds.

Rules (each tested in tests/test_splits.py):
- the test split is 20% of each class of each modality, fixed by the dataset's split_seed: the run
  seed never moves it, and no choice is ever made on it;
- training fractions are fractions of the *total* data, nested (0.2 inside 0.5 inside 0.8) for a seed;
- a validation part is carved from the training items for every choice (epochs, C, early stopping);
- pairs are formed inside a split, by class: no clip or image is in two splits;
- label noise flips exactly floor(rate * n_c + 1/2) training labels of each class c.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import StudyError
from .schema import NOISE_KINDS


@dataclass
class Split:
    """Indices into one modality: train (the fraction minus validation), val, test."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _per_class(y: np.ndarray, num_classes: int):
    return [np.flatnonzero(y == c) for c in range(num_classes)]


def test_split(y: np.ndarray, num_classes: int, test_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test): a fixed stratified split; the pool is everything training may ever see."""
    rng = np.random.default_rng(split_seed)
    pool, test = [], []
    for c, idx in enumerate(_per_class(y, num_classes)):
        idx = rng.permutation(idx)
        n_test = int(round(test_fraction * len(idx)))
        if n_test < 1 or n_test >= len(idx):
            raise StudyError(f"class {c} has {len(idx)} item(s): a {test_fraction:.0%} test split would leave it "
                             "with no test or no training item; it needs at least 3 items per modality")
        test.append(idx[:n_test])
        pool.append(idx[n_test:])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(test))


def make_split(y: np.ndarray, num_classes: int, fraction: float, seed: int, *, test_fraction: float = 0.2,
               split_seed: int = 0, val_fraction: float = 0.15) -> Split:
    """Training items = round(fraction * n_c) per class, nested across fractions for one seed.

    The pool's order per class is a permutation drawn from `seed`, and a fraction takes a prefix of it, so
    the 0.2 set is inside the 0.5 set, inside the 0.8 set. Validation is the first part of the prefix.
    """
    if not 0 < fraction <= 1 - test_fraction + 1e-9:
        raise StudyError(f"fraction={fraction} must be in (0, {1 - test_fraction:g}]: it is a share of all the data, "
                         f"and {test_fraction:.0%} is held out for test")
    pool, test = test_split(y, num_classes, test_fraction, split_seed)
    rng = np.random.default_rng(10_000 + seed)
    train, val = [], []
    for c in range(num_classes):
        n_total = int((y == c).sum())
        members = rng.permutation(pool[y[pool] == c])
        n = min(len(members), max(2, int(round(fraction * n_total))))
        chosen = members[:n]
        n_val = max(1, int(round(val_fraction * n)))
        val.append(chosen[:n_val])
        train.append(chosen[n_val:])
    return Split(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)), test)


def _half_up(x: float) -> int:
    """Round half up; Python's round() rounds halves to even (12.5 -> 12), which under-flips."""
    return int(np.floor(x + 0.5 + 1e-9))


def inject_label_noise(y: np.ndarray, rate: float, kind: str, num_classes: int, seed: int,
                       confusable: dict[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Flip exactly floor(rate * n_c + 1/2) labels of each class c (halves round up, so 12.5 -> 13). Returns (noisy labels, achieved rate).

    symmetric: to a uniformly chosen other class; pair: to the class's fixed confusable partner
    (`confusable`, from the dataset YAML; (c + 1) mod K when not given).
    """
    if not 0 <= rate < 1:
        raise StudyError(f"noise={rate} must be in [0, 1)")
    if kind not in NOISE_KINDS:
        raise StudyError(f"noise_kind={kind!r} must be one of {NOISE_KINDS}")
    rng = np.random.default_rng(20_000 + seed)
    noisy = y.copy()
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        flip = rng.permutation(idx)[: _half_up(rate * len(idx))]
        if kind == "symmetric":
            offsets = rng.integers(1, num_classes, size=len(flip))
            noisy[flip] = (c + offsets) % num_classes
        else:
            noisy[flip] = (confusable or {}).get(c, (c + 1) % num_classes)
    achieved = float((noisy != y).mean()) if len(y) else 0.0
    return noisy, achieved


def pair_by_class(y_audio: np.ndarray, y_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each clip, the index (into y_image) of an image of the clip's class, drawn at random.

    Images are dealt out in shuffled rounds per class, so every image is used before any repeats.
    """
    partner = np.empty(len(y_audio), dtype=np.int64)
    for c in np.unique(y_audio):
        clips = np.flatnonzero(y_audio == c)
        images = np.flatnonzero(y_image == c)
        if len(images) == 0:
            raise StudyError(f"class {c} has clips but no image in this split: it cannot be paired")
        rounds = -(-len(clips) // len(images))
        deck = np.concatenate([rng.permutation(images) for _ in range(rounds)])
        partner[rng.permutation(clips)] = deck[: len(clips)]
    return partner


def _deck(items: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n items dealt from shuffled rounds of `items`: each is used once before any is used again."""
    rounds = -(-n // len(items))
    return np.concatenate([rng.permutation(items) for _ in range(rounds)])[:n]


def balanced_pairs(y_audio: np.ndarray, y_image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of training pairs in which every clip and every image is used at least once.

    For each class c, max(#clips, #images) pairs, both sides dealt from shuffled rounds (a class with more
    images than clips repeats its clips, and the other way round), so the image branch sees the images'
    own class mix instead of the clips'. Returns (clip positions, image positions), shuffled. Images of a
    class that no clip is labelled with cannot be paired and are left out.
    """
    a_out, i_out = [], []
    for c in np.unique(y_audio):
        clips, images = np.flatnonzero(y_audio == c), np.flatnonzero(y_image == c)
        if len(images) == 0:
            raise StudyError(f"class {c} has clips but no image in this split: it cannot be paired")
        n = max(len(clips), len(images))
        a_out.append(_deck(clips, n, rng))
        i_out.append(_deck(images, n, rng))
    a, i = np.concatenate(a_out), np.concatenate(i_out)
    order = rng.permutation(len(a))
    return a[order], i[order]


def fixed_test_pairs(y_audio: np.ndarray, y_image: np.ndarray, split_seed: int = 0) -> np.ndarray:
    """The test pairs: drawn once from the split seed, the same for every run and method."""
    return pair_by_class(y_audio, y_image, np.random.default_rng(30_000 + split_seed))
