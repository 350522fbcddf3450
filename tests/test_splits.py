"""Splits, nested fractions, class-conditional pairing and label noise (labels only: no data decoded)."""
import numpy as np
import pytest

from helpers.config import StudyError
from helpers.splits import fixed_test_pairs, inject_label_noise, make_split, pair_by_class
from helpers.splits import test_split as fixed_test_split  # renamed: pytest would collect test_*

from conftest import README_AUDIO, README_IMAGE

CLASSES = ["bird", "cat", "chicken", "cow", "dog", "donkey", "frog", "lion", "monkey", "sheep"]
K = len(CLASSES)
FRACTIONS = (0.2, 0.5, 0.8)
SEEDS = (0, 1, 7)
# the animals YAML's confusable partners, as class indices
CONFUSABLE = {CLASSES.index(a): CLASSES.index(b) for a, b in
              {"cat": "dog", "dog": "cat", "cow": "sheep", "sheep": "cow", "donkey": "cow", "lion": "cat",
               "monkey": "chicken", "chicken": "bird", "bird": "chicken", "frog": "bird"}.items()}


def labels(counts, seed=3):
    """Real class sizes, in a shuffled order (as files come from folders, not sorted by class)."""
    y = np.repeat(np.arange(K), [counts[c] for c in CLASSES])
    return np.random.default_rng(seed).permutation(y)


Y_AUDIO, Y_IMAGE = labels(README_AUDIO), labels(README_IMAGE, seed=4)


def per_class(idx, y):
    return np.bincount(y[idx], minlength=K)


@pytest.mark.parametrize("y", [Y_AUDIO, Y_IMAGE], ids=["audio", "image"])
def test_fractions_are_nested_and_sized(y):
    n_c = np.bincount(y, minlength=K)
    for seed in SEEDS:
        parts = {f: make_split(y, K, f, seed) for f in FRACTIONS}
        trainval = {f: set(np.concatenate([s.train, s.val]).tolist()) for f, s in parts.items()}
        assert trainval[0.2] < trainval[0.5] < trainval[0.8]
        for f, s in parts.items():
            sizes = per_class(np.concatenate([s.train, s.val]), y)
            assert sizes.tolist() == [round(f * n) for n in n_c]
            assert len(s.val) > 0 and (per_class(s.val, y) >= 1).all()
            assert len(set(s.train) | set(s.val)) == len(s.train) + len(s.val)


@pytest.mark.parametrize("y", [Y_AUDIO, Y_IMAGE], ids=["audio", "image"])
def test_test_split_fixed_disjoint_and_20_percent(y):
    n_c = np.bincount(y, minlength=K)
    reference = make_split(y, K, 0.8, 0).test
    assert per_class(reference, y).tolist() == [round(0.2 * n) for n in n_c]
    for seed in SEEDS:
        for f in FRACTIONS:
            s = make_split(y, K, f, seed)
            assert np.array_equal(s.test, reference)
            train, val, test = set(s.train.tolist()), set(s.val.tolist()), set(s.test.tolist())
            assert not (train & val) and not (train & test) and not (val & test)
            assert train | val | test <= set(range(len(y)))
    # the full 0.8 fraction uses every non-test item
    s = make_split(y, K, 0.8, 0)
    assert len(s.train) + len(s.val) + len(s.test) == len(y)
    # another split_seed moves the test split (it is drawn, not the first items)
    assert not np.array_equal(make_split(y, K, 0.8, 0, split_seed=1).test, reference)


def test_different_seeds_draw_different_training_sets():
    a, b = make_split(Y_AUDIO, K, 0.2, 0), make_split(Y_AUDIO, K, 0.2, 1)
    assert not np.array_equal(np.sort(np.concatenate([a.train, a.val])), np.sort(np.concatenate([b.train, b.val])))
    c = make_split(Y_AUDIO, K, 0.2, 0)
    assert np.array_equal(a.train, c.train) and np.array_equal(a.val, c.val)


@pytest.mark.parametrize("fraction", [0, -0.1, 0.81, 0.9, 1.0])
def test_bad_fraction(fraction):
    with pytest.raises(StudyError, match="fraction"):
        make_split(Y_AUDIO, K, fraction, 0)


@pytest.mark.parametrize("n", [1, 2])
def test_class_too_small_for_a_test_split(n):
    y = np.repeat(np.arange(3), [10, n, 10])
    with pytest.raises(StudyError, match=r"class 1 has %d item" % n):
        fixed_test_split(y, 3, 0.2, 0)


# --------------------------------------------------------------------------- pairing
def _check_deal(y_a, y_i, partner):
    """Same class; inside the image set given; every image used before any is repeated."""
    assert (y_i[partner] == y_a).all()
    for c in np.unique(y_a):
        n_clips = int((y_a == c).sum())
        images = np.flatnonzero(y_i == c)
        uses = np.array([(partner == i).sum() for i in images])
        if n_clips >= len(images):
            assert uses.min() >= 1 and uses.max() - uses.min() <= 1
        else:
            assert uses.max() == 1 and uses.sum() == n_clips


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_pairs_same_class_inside_the_split(fraction):
    sa, si = make_split(Y_AUDIO, K, fraction, 2), make_split(Y_IMAGE, K, fraction, 2)
    rng = np.random.default_rng(0)
    for part in ("train", "val", "test"):
        a_idx, i_idx = getattr(sa, part), getattr(si, part)
        local = pair_by_class(Y_AUDIO[a_idx], Y_IMAGE[i_idx], rng)
        _check_deal(Y_AUDIO[a_idx], Y_IMAGE[i_idx], local)
        partners = i_idx[local]
        assert set(partners.tolist()) <= set(i_idx.tolist())
        assert (Y_IMAGE[partners] == Y_AUDIO[a_idx]).all()


def test_pairing_with_fewer_clips_than_images_never_repeats():
    y_a = np.array([0, 0, 1])
    y_i = np.array([0, 0, 0, 0, 1, 1, 1])
    for seed in range(20):
        partner = pair_by_class(y_a, y_i, np.random.default_rng(seed))
        _check_deal(y_a, y_i, partner)


def test_pairing_needs_an_image_of_each_class():
    with pytest.raises(StudyError, match="class 1"):
        pair_by_class(np.array([0, 1]), np.array([0, 0]), np.random.default_rng(0))


def test_fixed_test_pairs_identical_across_calls():
    sa, si = make_split(Y_AUDIO, K, 0.8, 0), make_split(Y_IMAGE, K, 0.2, 5)
    first = fixed_test_pairs(Y_AUDIO[sa.test], Y_IMAGE[si.test])
    for seed in SEEDS:  # the run seed and the fraction never move the test split or its pairs
        sa2, si2 = make_split(Y_AUDIO, K, 0.5, seed), make_split(Y_IMAGE, K, 0.8, seed)
        assert np.array_equal(fixed_test_pairs(Y_AUDIO[sa2.test], Y_IMAGE[si2.test]), first)
    _check_deal(Y_AUDIO[sa.test], Y_IMAGE[si.test], first)
    assert not np.array_equal(fixed_test_pairs(Y_AUDIO[sa.test], Y_IMAGE[si.test], split_seed=1), first)


# --------------------------------------------------------------------------- label noise
def half_up(x):
    return int(np.floor(x + 0.5 + 1e-9))


def test_noise_rounds_halves_up():
    y = np.repeat(np.arange(2), [125, 30])          # 0.1 * 125 = 12.5 flips -> 13, 0.1 * 30 = 3
    noisy, _ = inject_label_noise(y, 0.1, "symmetric", 2, seed=0)
    assert np.bincount(y[noisy != y], minlength=2).tolist() == [13, 3]


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("kind", ["symmetric", "pair"])
@pytest.mark.parametrize("y", [Y_AUDIO, Y_IMAGE], ids=["audio", "image"])
def test_noise_flips_exactly_per_class(y, kind, rate):
    for seed in (0, 1):
        noisy, achieved = inject_label_noise(y, rate, kind, K, seed, CONFUSABLE)
        flipped = noisy != y
        n_c = np.bincount(y, minlength=K)
        assert np.bincount(y[flipped], minlength=K).tolist() == [half_up(rate * n) for n in n_c]
        assert achieved == pytest.approx(flipped.mean())
        assert achieved == pytest.approx(sum(half_up(rate * n) for n in n_c) / len(y))
        assert ((noisy >= 0) & (noisy < K)).all()
        if kind == "pair":
            assert all(noisy[i] == CONFUSABLE[y[i]] for i in np.flatnonzero(flipped))


def test_symmetric_noise_reaches_every_other_class_never_itself():
    y = np.repeat(np.arange(K), 200)
    noisy, _ = inject_label_noise(y, 0.5, "symmetric", K, 0)
    for c in range(K):
        targets = set(noisy[(y == c) & (noisy != y)].tolist())
        assert c not in targets and targets == set(range(K)) - {c}
        assert ((y == c) & (noisy != y)).sum() == 100  # exact count: no flip landed on its own class


def test_pair_noise_default_partner():
    y = np.repeat(np.arange(4), 20)
    noisy, _ = inject_label_noise(y, 0.25, "pair", 4, 0)
    flipped = noisy != y
    assert (noisy[flipped] == (y[flipped] + 1) % 4).all() and flipped.sum() == 20


def test_noise_deterministic_and_seeded():
    a, _ = inject_label_noise(Y_AUDIO, 0.2, "symmetric", K, 3)
    b, _ = inject_label_noise(Y_AUDIO, 0.2, "symmetric", K, 3)
    c, _ = inject_label_noise(Y_AUDIO, 0.2, "symmetric", K, 4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_zero_noise_flips_nothing(kind):
    noisy, achieved = inject_label_noise(Y_AUDIO, 0.0, kind, K, 0, CONFUSABLE)
    assert np.array_equal(noisy, Y_AUDIO) and achieved == 0.0
    assert noisy is not Y_AUDIO  # a copy: the caller's labels are never modified


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_bad_noise_rate(rate):
    with pytest.raises(StudyError, match="noise"):
        inject_label_noise(Y_AUDIO, rate, "symmetric", K, 0)


def test_bad_noise_kind():
    with pytest.raises(StudyError, match="noise_kind"):
        inject_label_noise(Y_AUDIO, 0.1, "asymmetric", K, 0)


# --------------------------------------------------------------------------- as a run sees them
def test_prepare_study_splits_noise_and_test_pairs(synthetic_yaml):
    """prepare_study on synthetic files: fixed test split and pairs across seeds and fractions, exact noise,
    clean test labels."""
    from helpers.experiments import prepare_study

    base = {"dataset": str(synthetic_yaml), "external_data": "", "image_size": 16, "sample_rate": 8000, "device": "cpu",
            "progress": False}
    ref = prepare_study({**base, "fraction": 0.8, "seed": 0})
    for fraction, seed, noise in ((0.5, 1, 0.2), (0.2, 2, 0.1)):
        s = prepare_study({**base, "fraction": fraction, "seed": seed, "noise": noise, "noise_kind": "pair"})
        assert np.array_equal(s.test_pairs, ref.test_pairs)
        for m in ("audio", "image"):
            assert np.array_equal(s.split[m].test, ref.split[m].test)
            y = getattr(s.data, m).y
            trainval = np.concatenate([s.split[m].train, s.split[m].val])
            flipped = s.y_train[m][trainval] != y[trainval]
            n_c = np.bincount(y[trainval], minlength=4)
            assert np.bincount(y[trainval][flipped], minlength=4).tolist() == [half_up(noise * n) for n in n_c]
            assert s.noise_achieved[m] == pytest.approx(flipped.mean())
            assert np.array_equal(s.labels(m, "test"), y[s.split[m].test])   # test labels never noisy
    y_a, y_i = ref.data.audio.y, ref.data.image.y
    assert set(ref.test_pairs.tolist()) <= set(ref.split["image"].test.tolist())
    assert (y_i[ref.test_pairs] == y_a[ref.split["audio"].test]).all()
