"""The one training loop every notebook uses: seeded, with progress bars, validation-chosen epochs, timing."""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .config import StudyError
from .schema import MIN_STEPS_PER_EPOCH, MIXES


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple's MPS, then the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise StudyError("device='cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for batch order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


WARMUP_SHARE = 0.05   # of the step budget: the learning rate rises linearly, then follows a cosine to 0


@dataclass
class History:
    """What a training run did: per-epoch loss and validation score, the epoch kept, the optimizer steps,
    whether validation stopped improving before the budget ended, and wall time."""
    train_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    best_epoch: int = -1
    steps: int = 0                 # optimizer steps taken
    best_step: int = 0             # optimizer steps up to the end of the kept epoch
    budget_steps: int = 0          # the steps num_epochs allowed
    stopped_early: bool = False    # validation had not improved for `patience` epochs: converged by the rule
    still_improving: bool | None = False  # the budget ended within `patience` epochs of the best: not converged
    #                                        (None without validation: nothing says whether it converged)
    seconds: float = 0.0
    samples_per_second: float = 0.0

    def as_dict(self) -> dict:
        return {"train_loss": self.train_loss, "val_score": self.val_score, "best_epoch": self.best_epoch,
                "steps": self.steps, "best_step": self.best_step, "budget_steps": self.budget_steps,
                "stopped_early": self.stopped_early, "still_improving": self.still_improving,
                "seconds": round(self.seconds, 3), "samples_per_second": round(self.samples_per_second, 1)}


class Schedule:
    """Learning-rate factor per optimizer step: a linear warm-up over WARMUP_SHARE of the budget, then either a
    cosine to 0 over the rest of the budget (decay_epochs=0), or a constant rate until `decay()` is called and a
    cosine to 0 over the next `decay_steps` steps (warm-up, stable, decay: the decay starts when validation stops
    improving, so a run that stops early still ends at a small learning rate instead of at its peak)."""

    def __init__(self, total_steps: int, decay_steps: int = 0):
        self.total, self.decay_steps = total_steps, decay_steps
        self.warmup = max(1, int(WARMUP_SHARE * total_steps))
        self.decay_start: int | None = None   # the step the decay began at (decay_steps > 0)

    def decay(self, step: int) -> None:
        if self.decay_start is None:
            self.decay_start = step

    def decayed(self, step: int) -> bool:
        """The decay has run its course: nothing is left to learn at this rate."""
        return self.decay_start is not None and step - self.decay_start >= self.decay_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if not self.decay_steps:
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))))
        if self.decay_start is None:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.decay_start) / self.decay_steps)))


# the notebook parameters of the training budget and stopping rule, each with the fit keyword it sets
BUDGET_PARAMS = {"epochs": "num_epochs", "patience": "patience", "decay_epochs": "decay_epochs",
                 "val_window": "val_window", "lr": "lr", "batch_size": "batch_size", "progress": "progress"}


def budget(p: dict, **override) -> dict:
    """fit's keywords for the training budget and stopping rule, from a notebook's parameters (BUDGET_PARAMS),
    with `override`s (e.g. num_epochs=finetune_epochs): every model of the study trains by one rule."""
    keywords = {keyword: p[name] for name, keyword in BUDGET_PARAMS.items()}
    unknown = set(override) - set(keywords)
    if unknown:
        raise StudyError(f"budget: no budget keyword(s) {sorted(unknown)}; they are {sorted(keywords)}")
    return keywords | {k: v for k, v in override.items() if v is not None}


def _epoch_order(n: int, length: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """At least `length` item indices: whole random passes over the n items, one after another. Where a batch
    straddles two passes, the next pass's first items are swapped away from the items the batch already holds,
    so no batch holds an item twice (a contrastive loss would take the copy for a negative)."""
    order = torch.randperm(n, generator=generator)
    while len(order) < length:
        nxt = torch.randperm(n, generator=generator)
        r = len(order) % batch_size                  # items of the previous pass in the straddling batch
        if r:
            head = batch_size - r                    # the next pass's items in that batch
            held = torch.isin(nxt, order[-r:])
            clash = held[:head].nonzero().flatten()
            free = (~held[head:]).nonzero().flatten()[:len(clash)] + head   # n >= batch_size: enough of them
            nxt[clash], nxt[free] = nxt[free].clone(), nxt[clash].clone()
        order = torch.cat([order, nxt])
    return order


StepFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def fit(model: torch.nn.Module, step: StepFn, num_examples: int, *, num_epochs: int, lr: float = 1e-3,
        batch_size: int = 64, weight_decay: float = 1e-4, generator: torch.Generator,
        val_score: Callable[[], float] | None = None, params: list | None = None,
        on_epoch_start: Callable[[int], None] | None = None, patience: int = 0, val_window: int = 1,
        min_steps_per_epoch: int = MIN_STEPS_PER_EPOCH, decay_epochs: int = 0, progress: bool = True,
        desc: str = "training") -> History:
    """Train `model` for at most num_epochs with AdamW and a linear warm-up, then (decay_epochs=0) a cosine to 0
    over that budget, or (decay_epochs > 0) a constant rate until validation stops improving and a cosine to 0
    over the next decay_epochs epochs (see Schedule). `budget(params)` gives the study's keywords.

    An epoch is one pass over the num_examples items, or min_steps_per_epoch batches cut from successive
    passes when one pass is fewer steps than min_steps_per_epoch (a batch at a pass boundary may hold an item twice).

    `step(idx, generator)` returns the mean loss of the batch of example indices `idx` (it moves its own
    tensors to the device). `on_epoch_start(epoch)` (epoch counted from 0) is called before the first
    batch of every epoch, e.g. to re-draw the training pairs. `val_score()` (higher is better) is
    evaluated after each epoch on the validation part; the weights of the best epoch are restored, so
    the epoch count is chosen on validation, never on test.

    The plateau rule (patience > 0): validation has stopped improving once the mean of its last `val_window`
    epochs has not beaten its best for `patience` epochs (the same rule at every training fraction; the mean,
    because one epoch's score on a small validation set moves by more than training gains in an epoch).
    With decay_epochs=0 the plateau stops training, and a run whose budget ends within `patience` epochs of its
    plateau's best is flagged `still_improving`. With decay_epochs > 0 the plateau starts the decay instead, and
    training stops once the decay is over; the decay also starts when only decay_epochs of the budget are left,
    and a run whose decay the budget started, not a plateau, is flagged `still_improving`.
    """
    from tqdm.auto import tqdm

    if num_epochs < 1:
        raise StudyError(f"{desc}: num_epochs={num_epochs!r} trains nothing; give at least 1 epoch")
    if num_examples < 2:
        raise StudyError(f"{desc}: {num_examples} training example(s) is too few to train on")
    if val_window < 1:
        raise StudyError(f"{desc}: val_window={val_window!r} averages no epoch; give at least 1")
    # 4-D weights (2-D convolutions) in channels-last order: the fast path of oneDNN's CPU convolutions and of
    # cuDNN's mixed precision; the bench's training steps run through here, so it measures the gain
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(params if params is not None else model.parameters(), lr=lr,
                                  weight_decay=weight_decay)
    batch_size = min(batch_size, num_examples)
    passes_batches = num_examples // batch_size  # drop the ragged last batch: BatchNorm needs > 1 item
    num_batches = max(passes_batches, min_steps_per_epoch, 1)
    decay_epochs = min(decay_epochs, num_epochs)
    schedule = Schedule(num_epochs * num_batches, decay_epochs * num_batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    plateau_rule = bool(patience) and val_score is not None
    plateau_at: int | None = None     # the epoch at whose end validation was found to have plateaued
    best_mean, best_mean_epoch = -float("inf"), -1   # the plateau rule's best windowed mean, and its epoch
    history, best_state, best = History(budget_steps=num_epochs * num_batches), None, -float("inf")
    start = time.perf_counter()
    bar = tqdm(range(num_epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        if decay_epochs:
            if schedule.decayed(history.steps):
                break
            if plateau_at is not None or epoch >= num_epochs - decay_epochs:
                schedule.decay(history.steps)
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        order = _epoch_order(num_examples, num_batches * batch_size, batch_size, generator)
        losses = []
        for b in range(num_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            loss = step(idx, generator)
            if not torch.isfinite(loss):
                raise StudyError(f"{desc}: the loss became {loss.item()}; lower lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.steps += 1
            losses.append(loss.item())
        history.train_loss.append(float(np.mean(losses)))
        if val_score is not None:
            model.eval()
            with torch.no_grad():
                score = float(val_score())
            history.val_score.append(score)
            if score > best:
                best, history.best_epoch, history.best_step = score, epoch, history.steps
                best_state = copy.deepcopy(model.state_dict())
            mean = float(np.mean(history.val_score[-val_window:]))
            if mean > best_mean:
                best_mean, best_mean_epoch = mean, epoch
            if plateau_rule and plateau_at is None and schedule.decay_start is None \
                    and epoch - best_mean_epoch >= patience:
                plateau_at = epoch
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}",
                        **({"val": f"{history.val_score[-1]:.3f}"} if history.val_score else {}))
        if not decay_epochs and plateau_at is not None:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        history.best_epoch, history.best_step = len(history.train_loss) - 1, history.steps
    epochs_run = len(history.train_loss)
    history.stopped_early = plateau_at is not None and (bool(decay_epochs) or plateau_at < num_epochs - 1)
    if not plateau_rule:
        history.still_improving = None if val_score is None else epochs_run - 1 - history.best_epoch < 1
    elif decay_epochs:
        history.still_improving = plateau_at is None
    else:
        history.still_improving = not history.stopped_early and epochs_run - 1 - best_mean_epoch < patience
    model.eval()
    history.seconds = time.perf_counter() - start
    history.samples_per_second = history.steps * batch_size / max(history.seconds, 1e-9)
    return history


def mixed_batch(X: torch.Tensor, mix: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup or CutMix of a training batch with a permutation of itself (Zhang et al. 2018; Yun et al. 2019):
    returns (mixed X, the permutation, lam), and the loss is lam * loss(y) + (1 - lam) * loss(y[perm]).
    lam ~ U(0, 1) (Beta(1, 1), both papers' choice). CutMix pastes one box of the partner image, or one
    stretch of the partner clip's samples (the last axis), and lam is the share of the item left as it was."""
    if mix not in MIXES:
        raise StudyError(f"mix={mix!r} must be one of {list(MIXES)}")
    perm = torch.randperm(len(X), generator=generator).to(X.device)
    lam = float(torch.rand(1, generator=generator))
    if mix == "none":
        return X, perm, 1.0
    if mix == "mixup":
        return lam * X + (1 - lam) * X[perm], perm, lam
    X = X.clone()
    u = torch.rand(X.dim() - 1, generator=generator)   # box centre per spatial axis
    sizes = X.shape[2:] if X.dim() == 4 else X.shape[-1:]
    side = (1 - lam) ** (1 / len(sizes))                 # the box's share of each axis
    box = []
    for n, c in zip(sizes, u[:len(sizes)]):
        w = int(round(n * side))
        lo = min(max(int(c * n) - w // 2, 0), n - w)
        box.append(slice(lo, lo + w))
    X[(..., *box)] = X[perm][(..., *box)]
    kept = 1 - math.prod((b.stop - b.start) for b in box) / math.prod(sizes)
    return X, perm, kept


@torch.no_grad()
def predict(fn: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, device: torch.device,
            batch_size: int = 256) -> torch.Tensor:
    """Apply `fn` to X in batches on `device`; return the outputs concatenated on the CPU."""
    outs = [fn(X[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)
