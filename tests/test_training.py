"""The training loop every notebook uses (helpers.training.fit), and the training pairs it re-draws at every
epoch start (helpers.experiments.EpochPairs), tested directly on tiny models."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from helpers.config import StudyError
from helpers.experiments import EpochPairs, pair_sampler, train_classifier
from helpers.training import MIN_STEPS_PER_EPOCH, fit

SMALL = dict(fraction=0.8, external_data="", image_size=32, sample_rate=8000, clip_seconds=0.5, noise=0.3, progress=False)


def _problem(n: int):
    """A linear model and a least-squares step on n random examples."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)

    def step(idx, gen):
        return ((model(X[idx]) - y[idx]) ** 2).mean()
    return model, step


def _fit(model, step, n, **kw):
    kw = {"num_epochs": 3, "batch_size": 4, "generator": torch.Generator().manual_seed(0), "progress": False,
          "min_steps_per_epoch": 1} | kw
    return fit(model, step, n, **kw)


def test_epoch_hook_is_called_once_per_epoch_before_its_batches():
    model, loss = _problem(10)
    events = []

    def step(idx, gen):
        events.append(("batch", len(idx)))
        return loss(idx, gen)

    _fit(model, step, 10, on_epoch_start=lambda epoch: events.append(("epoch", epoch)))
    # 10 examples in batches of 4: two batches an epoch, the ragged last one dropped
    assert events == [e for epoch in range(3) for e in [("epoch", epoch), ("batch", 4), ("batch", 4)]]


def test_the_best_validation_epochs_weights_are_restored():
    model, step = _problem(16)
    scores = [0.1, 0.5, 0.9, 0.3, 0.2]  # peaks after epoch 2
    weights = []

    def val_score():  # called after each epoch's training: the weights it sees are that epoch's
        weights.append(copy.deepcopy(model.state_dict()))
        return scores[len(weights) - 1]

    history = _fit(model, step, 16, num_epochs=5, lr=0.1, val_score=val_score)
    assert history.best_epoch == 2 and history.val_score == scores and len(history.train_loss) == 5
    final = model.state_dict()
    assert all(torch.equal(final[k], weights[2][k]) for k in final)
    assert not torch.equal(final["weight"], weights[-1]["weight"])  # training went on after the best epoch


def test_without_validation_the_last_epoch_is_kept():
    model, step = _problem(16)
    history = _fit(model, step, 16, num_epochs=2)
    assert history.best_epoch == 1 and history.val_score == []
    assert history.still_improving is None   # without validation nothing says whether it converged


@pytest.mark.parametrize("n, batch_size, batches", [(10, 4, 2), (12, 4, 3), (5, 64, 1)])
def test_optimizer_steps_are_epochs_times_batches(n, batch_size, batches):
    model, loss = _problem(n)
    sizes, steps = [], []

    def step(idx, gen):
        sizes.append(len(idx))
        return loss(idx, gen)

    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.append(opt))
    try:
        _fit(model, step, n, num_epochs=3, batch_size=batch_size)
    finally:
        handle.remove()
    assert len(steps) == len(sizes) == 3 * batches
    assert set(sizes) == {min(batch_size, n)}  # full batches only (BatchNorm needs more than one item)


@pytest.mark.parametrize("n", [5, 10, 23, 40])
def test_a_small_set_gets_the_same_steps_per_epoch_as_a_large_one(n):
    """At fraction 0.2 one pass is 2 batches: an epoch is still MIN_STEPS_PER_EPOCH steps, cut from whole passes,
    so every item is seen as often as the others (to within one) and patience counts the same steps."""
    model, loss = _problem(n)
    seen = []

    def step(idx, gen):
        seen.append(idx.clone())
        return loss(idx, gen)

    h = _fit(model, step, n, num_epochs=2, min_steps_per_epoch=MIN_STEPS_PER_EPOCH)
    assert h.steps == h.budget_steps == 2 * MIN_STEPS_PER_EPOCH and {len(i) for i in seen} == {4}
    assert all(len(set(i.tolist())) == len(i) for i in seen)   # a batch across two passes holds no item twice
    counts = np.bincount(torch.cat(seen[:MIN_STEPS_PER_EPOCH]).numpy(), minlength=n)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 4 * MIN_STEPS_PER_EPOCH
    large = _fit(*_problem(8 * MIN_STEPS_PER_EPOCH), 8 * MIN_STEPS_PER_EPOCH, num_epochs=2,
                 min_steps_per_epoch=MIN_STEPS_PER_EPOCH)
    assert large.steps == 2 * 2 * MIN_STEPS_PER_EPOCH   # a pass longer than the floor is one pass


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_raises_and_names_the_fix(bad):
    model, loss = _problem(8)
    with pytest.raises(StudyError, match=r"lower lr \(now 0.5\)"):
        _fit(model, lambda idx, gen: loss(idx, gen) * bad, 8, lr=0.5)


@pytest.mark.parametrize("epochs", [0, -1])
def test_no_epochs_is_an_error(epochs):
    model, step = _problem(8)
    with pytest.raises(StudyError, match="num_epochs"):
        _fit(model, step, 8, num_epochs=epochs)


def test_zero_epochs_asked_of_a_core_is_not_the_default(synthetic_study):
    """train_classifier(num_epochs=0) used to train p["epochs"] epochs: 0 was read as "not given"."""
    with pytest.raises(StudyError, match="num_epochs"):
        train_classifier(synthetic_study["study"], "image", num_epochs=0)


def test_epoch_pairs_are_redrawn_every_epoch_within_the_noisy_class(synthetic_study):
    study = synthetic_study["study"]
    pairs = EpochPairs(study, np.random.default_rng(7))
    n = pairs.num_pairs
    with pytest.raises(StudyError, match="on_epoch_start"):
        pairs.batch(torch.arange(2))
    model = nn.Linear(1, 1)
    drawn = []  # per epoch: the image of each pair (by position)

    def step(idx, gen):
        a, i, labels = pairs.batch(idx)
        if len(drawn) <= pairs.epoch:
            drawn.append(np.full(n, -1))
        drawn[pairs.epoch][idx.numpy()] = i
        np.testing.assert_array_equal(a, pairs.a_pairs[idx.numpy()])
        np.testing.assert_array_equal(labels.numpy(), study.y_train["audio"][a])  # the noisy labels
        np.testing.assert_array_equal(study.data.image.y[i], study.y_train["audio"][a])  # an image of that class
        assert np.isin(i, study.split["image"].train).all()
        return (model.weight ** 2).sum()

    batch_size = 8  # not the study's batch_size: the pairs follow fit's epochs, whatever its batches
    fit(model, step, n, num_epochs=3, batch_size=batch_size, generator=torch.Generator().manual_seed(0),
        on_epoch_start=pairs.start_epoch, progress=False, min_steps_per_epoch=1)
    assert len(drawn) == 3 and pairs.epoch == 2
    n_seen = (n // batch_size) * batch_size  # the ragged last batch is dropped
    assert [(d >= 0).sum() for d in drawn] == [n_seen] * 3
    # one pair_sampler draw per epoch, in order: the pairs a run with this seed trained on before fit had a hook
    draw = pair_sampler(study, np.random.default_rng(7))
    expected = [draw()[1] for _ in range(3)]
    for epoch in range(3):
        hit = drawn[epoch] >= 0
        np.testing.assert_array_equal(drawn[epoch][hit], expected[epoch][hit])
    assert not np.array_equal(expected[0], expected[1]) and not np.array_equal(expected[1], expected[2])
    # the record of the pairs: under label noise, exactly the flipped clips are mismatched
    summary = pairs.summary()
    flipped = study.y_train["audio"][pairs.a_idx] != study.data.audio.y[pairs.a_idx]
    assert flipped.any()
    assert all(0 < rate < 1 for rate in summary["mismatch_rate"])   # pairs of flipped clips, by the balanced deal
    assert summary["train_clip_flip_rate"] == pytest.approx(flipped.mean())
    assert [s["pairs_seen"] for s in pairs.stats] == [n_seen] * 3


def _scripted(scores, model):
    calls = []

    def val_score():
        calls.append(copy.deepcopy(model.state_dict()))
        return scores[len(calls) - 1]
    return val_score, calls


def test_patience_stops_once_validation_stops_improving_and_keeps_the_best():
    model, step = _problem(16)   # 4 batches an epoch
    scores = [0.1, 0.5, 0.4, 0.3, 0.2, 0.9, 0.9, 0.9]   # best at epoch 1, then 3 epochs without a gain
    val, calls = _scripted(scores, model)
    h = _fit(model, step, 16, num_epochs=8, patience=3, val_score=val)
    assert len(h.train_loss) == 5 and h.stopped_early and not h.still_improving   # epoch 5's 0.9 never reached
    assert (h.best_epoch, h.best_step, h.steps, h.budget_steps) == (1, 8, 20, 32)
    assert all(torch.equal(model.state_dict()[k], calls[1][k]) for k in calls[1])


def test_a_budget_that_ends_while_validation_improves_is_flagged():
    model, step = _problem(16)
    val, _ = _scripted([0.1, 0.2, 0.3, 0.4], model)
    h = _fit(model, step, 16, num_epochs=4, patience=3, val_score=val)
    assert not h.stopped_early and h.still_improving and h.steps == h.budget_steps == 16
    model, step = _problem(16)
    val, _ = _scripted([0.1, 0.9, 0.2, 0.2, 0.2], model)   # the best 3 epochs before the end: converged by the rule
    h = _fit(model, step, 16, num_epochs=5, patience=3, val_score=val)
    assert not h.stopped_early and not h.still_improving and len(h.train_loss) == 5
    assert {"steps", "best_step", "budget_steps", "stopped_early", "still_improving"} <= set(h.as_dict())


def test_the_learning_rate_warms_up_then_decays_to_zero():
    model, loss = _problem(16)
    rates = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: rates.append(opt.param_groups[0]["lr"]))
    try:
        _fit(model, loss, 16, num_epochs=40, lr=0.1)   # 160 steps: 8 of warm-up
    finally:
        handle.remove()
    assert rates[0] < rates[7] == pytest.approx(0.1) and rates[7] >= max(rates)
    assert all(a >= b for a, b in zip(rates[7:], rates[8:])) and rates[-1] < 1e-3


def _rates(**kw):
    """The learning rate of every optimizer step of one _fit, and its history."""
    rates = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: rates.append(opt.param_groups[0]["lr"]))
    try:
        h = _fit(**kw)
    finally:
        handle.remove()
    return rates, h


def test_a_plateau_starts_the_decay_and_training_stops_when_it_is_over():
    """decay_epochs > 0: the rate holds its peak until validation stalls for `patience` epochs, then falls to 0
    over decay_epochs epochs; the best epoch is still the one kept, and the run counts as converged."""
    model, step = _problem(16)   # 4 batches an epoch
    val, calls = _scripted([0.1, 0.5, 0.4, 0.3, 0.2, 0.9, 0.3, 0.3, 0.3, 0.3], model)   # plateau after epoch 1
    rates, h = _rates(model=model, step=step, n=16, num_epochs=10, lr=0.1, patience=3, decay_epochs=2,
                      val_score=val)
    # warm-up 2 steps (5% of 40), the peak to the end of epoch 4 (3 epochs without a gain), 2 epochs of decay
    assert len(h.train_loss) == 7 and h.steps == 28 and h.budget_steps == 40
    assert rates[1] == pytest.approx(0.1) and all(r == pytest.approx(0.1) for r in rates[1:20])
    assert all(a > b for a, b in zip(rates[20:], rates[21:])) and rates[-1] < 0.01
    assert h.best_epoch == 5 and h.stopped_early and not h.still_improving   # the decay's gain is kept
    assert all(torch.equal(model.state_dict()[k], calls[5][k]) for k in calls[5])


def test_the_plateau_rule_reads_the_mean_of_the_last_val_window_epochs():
    """One epoch's lucky score does not end training: with val_window=3 the rule waits for the running mean."""
    scores = [0.2, 0.6, 0.3, 0.4, 0.5, 0.5, 0.55, 0.55, 0.4, 0.4, 0.4, 0.4, 0.4]
    model, step = _problem(16)
    val, _ = _scripted(scores, model)
    h = _fit(model, step, 16, num_epochs=13, patience=3, val_score=val)   # the lone 0.6 of epoch 1 stops it
    assert len(h.train_loss) == 5 and h.best_epoch == 1
    model, step = _problem(16)
    val, calls = _scripted(scores, model)
    h = _fit(model, step, 16, num_epochs=13, patience=3, val_window=3, val_score=val)
    # running means peak at epoch 7 (0.533), then 3 epochs without a gain: stop at the end of epoch 10
    assert len(h.train_loss) == 11 and h.stopped_early and not h.still_improving
    assert h.best_epoch == 1   # the kept weights are still the best single epoch's
    assert all(torch.equal(model.state_dict()[k], calls[1][k]) for k in calls[1])
    with pytest.raises(StudyError, match="val_window=0"):
        _fit(model, step, 16, val_window=0, val_score=val)


def test_budget_gives_fit_the_notebook_parameters_and_refuses_an_unknown_override():
    from helpers import schema
    from helpers.training import budget
    p = schema.defaults("02_baselines") | {"epochs": 7, "val_window": 2}
    keywords = budget(p, num_epochs=None, lr=0.5)
    assert keywords == {"num_epochs": 7, "patience": p["patience"], "decay_epochs": p["decay_epochs"], "val_window": 2,
                        "lr": 0.5, "batch_size": p["batch_size"], "progress": p["progress"]}
    with pytest.raises(StudyError, match="no budget keyword"):
        budget(p, epochs=3)


def test_without_a_plateau_the_budget_starts_the_decay_and_the_run_is_flagged():
    model, step = _problem(16)
    val, _ = _scripted([0.1 * i for i in range(1, 7)], model)   # improves every epoch
    rates, h = _rates(model=model, step=step, n=16, num_epochs=6, lr=0.1, patience=3, decay_epochs=2,
                      val_score=val)
    assert h.steps == h.budget_steps == 24 and rates[15] == pytest.approx(0.1) and rates[-1] < 0.01
    assert not h.stopped_early and h.still_improving


def test_balanced_pairs_use_every_training_clip_and_image_each_epoch(synthetic_study):
    """The image branch sees the images' class mix, not the clips': every training image is in every epoch."""
    from helpers.splits import balanced_pairs
    y_a = np.array([0] * 6 + [1] * 2 + [2] * 3)
    y_i = np.array([0] * 2 + [1] * 5 + [2] * 3)
    a, i = balanced_pairs(y_a, y_i, np.random.default_rng(0))
    assert sorted(set(a)) == list(range(len(y_a))) and sorted(set(i)) == list(range(len(y_i)))
    np.testing.assert_array_equal(y_a[a], y_i[i])                       # within class
    assert np.bincount(y_a[a]).tolist() == [6, 5, 3]                    # max(#clips, #images) per class
    assert np.bincount(i, minlength=len(y_i)).max() <= 3                # dealt in rounds: 2 images for 6 clips
    study = synthetic_study["study"]
    clips, images = pair_sampler(study, np.random.default_rng(1))()
    assert set(images) == set(study.split["image"].train) and set(clips) == set(study.split["audio"].train)


@pytest.mark.parametrize("shape", [(6, 3, 8, 8), (6, 40)])
def test_cutmix_pastes_one_box_of_the_partner_and_lam_is_the_share_kept(shape):
    from helpers.training import mixed_batch
    X = torch.arange(shape[0], dtype=torch.float32).view(-1, *[1] * (len(shape) - 1)).expand(shape).clone()
    lams = []
    for seed in range(5):
        out, perm, lam = mixed_batch(X, "cutmix", torch.Generator().manual_seed(seed))
        lams.append(lam)
        for k in range(shape[0]):   # each item is itself except the box, which is its partner's
            own = (out[k] == k).float().mean().item()
            assert ((out[k] == k) | (out[k] == perm[k].item())).all()
            assert own == (1.0 if perm[k] == k else pytest.approx(lam, abs=1e-6))
    assert any(0 < lam < 1 for lam in lams)   # a box of some but not all of an item: something was pasted
    mixed, perm, lam = mixed_batch(X, "mixup", torch.Generator().manual_seed(3))
    torch.testing.assert_close(mixed, lam * X + (1 - lam) * X[perm])
    same, _, lam = mixed_batch(X, "none", torch.Generator().manual_seed(3))
    assert same is X and lam == 1.0
    with pytest.raises(StudyError, match="mix='blend'"):
        mixed_batch(X, "blend", torch.Generator())


@pytest.mark.parametrize("n, batch_size", [(10, 4), (23, 8), (64, 64), (70, 64), (150, 64)])
def test_an_epoch_order_is_whole_passes_and_no_batch_repeats_an_item(n, batch_size):
    from helpers.training import _epoch_order
    length = 10 * batch_size
    order = _epoch_order(n, length, batch_size, torch.Generator().manual_seed(1))
    passes = order[:len(order) // n * n].view(-1, n)
    assert len(order) >= length and all(sorted(p.tolist()) == list(range(n)) for p in passes)
    batches = order[:length].view(-1, batch_size)
    assert all(len(set(b.tolist())) == batch_size for b in batches)
