"""Training objectives: CLIP-style InfoNCE, a label-aware cross-modal SupCon, small-loss selection
for noisy pairs, and the pieces of a multimodal VAE (ELBO, product of experts, reparameterisation).

Embedding losses take two batches Z_a, Z_b of shape (batch, dim) whose row i is a pair
(the sound and the image of one clip), and a *log* logit scale (a float or a 0-d tensor,
e.g. the output of `LogitScale`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from helpers.config import StudyError

REDUCTIONS = ("mean", "none")


def _check_pairs(z_a: torch.Tensor, z_b: torch.Tensor, reduction: str) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise StudyError(f"z_a and z_b must both be (batch, dim) with the same shape; "
                         f"got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if z_a.shape[0] < 2:
        raise StudyError("a contrastive batch needs at least 2 pairs (the other items are the negatives)")
    if reduction not in REDUCTIONS:
        raise StudyError(f"reduction={reduction!r} must be one of {REDUCTIONS}")


def _logits(z_a: torch.Tensor, z_b: torch.Tensor, logit_scale) -> torch.Tensor:
    """exp(logit_scale) * cosine similarities; row i = anchor a_i against every b."""
    scale = torch.as_tensor(logit_scale, dtype=z_a.dtype, device=z_a.device).exp()
    return scale * F.normalize(z_a, dim=1) @ F.normalize(z_b, dim=1).T


def info_nce(z_a: torch.Tensor, z_b: torch.Tensor, logit_scale, reduction: str = "mean") -> torch.Tensor:
    """Symmetric CLIP InfoNCE: cross-entropy a->b and b->a with the paired item as the target.

    reduction="none" returns one loss per pair (the mean of its two directions), shape (batch,),
    which is what small-loss selection ranks.
    """
    _check_pairs(z_a, z_b, reduction)
    logits = _logits(z_a, z_b, logit_scale)
    target = torch.arange(len(z_a), device=z_a.device)
    per_pair = 0.5 * (F.cross_entropy(logits, target, reduction="none")
                      + F.cross_entropy(logits.T, target, reduction="none"))
    return per_pair if reduction == "none" else per_pair.mean()


def supcon_cross_modal(z_a: torch.Tensor, z_b: torch.Tensor, labels: torch.Tensor, logit_scale,
                       reduction: str = "mean") -> torch.Tensor:
    """Supervised-contrastive cross-modal loss: every b with the anchor's label is a positive.

    Per anchor, the loss is minus the *mean* log-probability over its positives (SupCon "L_out",
    Khosla et al. 2020), in both directions. With all labels distinct it equals `info_nce`; it is
    unchanged when items are swapped within a class, so a sound paired with the wrong image of the
    right animal is not punished. Its floor is log(#positives), not 0: it stops pushing apart
    same-class items rather than rewarding their collapse.
    """
    _check_pairs(z_a, z_b, reduction)
    labels = torch.as_tensor(labels, device=z_a.device)
    if labels.shape != (len(z_a),):
        raise StudyError(f"labels must have shape ({len(z_a)},), one per pair; got {tuple(labels.shape)}")
    logits = _logits(z_a, z_b, logit_scale)
    positives = (labels[:, None] == labels[None, :]).to(logits.dtype)  # symmetric, diagonal included

    def directed(lg: torch.Tensor) -> torch.Tensor:
        return -(positives * F.log_softmax(lg, dim=1)).sum(1) / positives.sum(1)

    per_pair = 0.5 * (directed(logits) + directed(logits.T))
    return per_pair if reduction == "none" else per_pair.mean()


class LogitScale(nn.Module):
    """Learnable log inverse temperature (CLIP): starts at log(1/0.07), capped at log(100).

    The cap keeps the softmax from becoming a hard argmax on a small batch; above it the value is
    held at the cap (no gradient), as in CLIP where it stays at 100 once reached.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if not (init_temperature > 0 and max_scale > 0):
            raise StudyError("init_temperature and max_scale must be positive")
        if 1 / init_temperature > max_scale:
            raise StudyError(f"1/init_temperature={1 / init_temperature:g} is above max_scale={max_scale:g}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))
        self.max_log = math.log(max_scale)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log)


def small_loss_mask(per_pair_loss: torch.Tensor, drop_rate: float) -> torch.Tensor:
    """Boolean mask over the pairs: drops the floor(drop_rate * n) largest-loss pairs, keeps the rest
    (never more dropped than asked, at least one pair kept; drop_rate=0 keeps all).

    Mismatched pairs are hard to fit early in training, so they tend to have large loss
    (co-teaching, Han et al. 2018); training only on the small-loss part filters most of them.
    Ties are broken by position, so the count kept is always exact.
    """
    if not (isinstance(drop_rate, (int, float)) and 0 <= drop_rate < 1):
        raise StudyError(f"drop_rate={drop_rate!r} must be a fraction in [0, 1)")
    loss = per_pair_loss.detach()
    if loss.ndim != 1 or len(loss) == 0:
        raise StudyError(f"per_pair_loss must be a non-empty 1-d tensor; got shape {tuple(loss.shape)}")
    # the 1e-9 absorbs float error such as 0.29 * 100 = 28.999999999999996
    num_drop = math.floor(drop_rate * len(loss) + 1e-9)
    num_keep = max(1, len(loss) - num_drop)
    keep = torch.argsort(loss, stable=True)[:num_keep]
    mask = torch.zeros(len(loss), dtype=torch.bool, device=loss.device)
    mask[keep] = True
    return mask


# ---- multimodal VAE -------------------------------------------------------------------------

def recon_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over features, averaged over the batch (a Gaussian log-likelihood up to constants)."""
    if x_hat.shape != x.shape:
        raise StudyError(f"reconstruction shape {tuple(x_hat.shape)} differs from target {tuple(x.shape)}")
    return ((x_hat - x) ** 2).reshape(len(x), -1).sum(1).mean()


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims, averaged over the batch."""
    if mu.shape != logvar.shape:
        raise StudyError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).reshape(len(mu), -1).sum(1).mean()


def vae_loss(recon_terms: list, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Negative ELBO: sum of reconstruction errors + beta * KL to the standard-normal prior.

    Each entry of `recon_terms` is either a scalar already computed with `recon_mse`, or an
    (x_hat, x) pair that is turned into one; None entries (a missing modality) are skipped.
    """
    if not isinstance(beta, (int, float)) or beta < 0:
        raise StudyError(f"beta={beta!r} must be a non-negative number")
    terms = []
    for term in recon_terms:
        if term is None:
            continue
        if isinstance(term, (tuple, list)):
            term = recon_mse(*term)
        if not (torch.is_tensor(term) and term.ndim == 0):
            raise StudyError("each reconstruction term must be a scalar tensor (see recon_mse) "
                             "or an (x_hat, x) pair")
        terms.append(term)
    if not terms:
        raise StudyError("vae_loss needs at least one reconstruction term")
    return torch.stack(terms).sum() + beta * kl_standard_normal(mu, logvar)


def product_of_experts(mus: list, logvars: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine Gaussian experts q(z|x_m) with a N(0, I) prior expert (MVAE, Wu & Goodman 2018).

    Precisions add, and the mean is the precision-weighted mean: with only the prior and one expert
    N(m, v), the result is N(m / (1 + v), v / (1 + v)). None entries (a missing modality) are left
    out, so the same encoder outputs serve any subset of modalities. Returns (mu, logvar).
    """
    if len(mus) != len(logvars):
        raise StudyError(f"got {len(mus)} means but {len(logvars)} log-variances")
    if any((m is None) != (lv is None) for m, lv in zip(mus, logvars)):
        raise StudyError("a modality's mean and log-variance must both be given or both be None")
    experts = [(m, lv) for m, lv in zip(mus, logvars) if m is not None]
    if not experts:
        raise StudyError("product_of_experts needs at least one modality (all entries were None)")
    shape = experts[0][0].shape
    if any(m.shape != shape or lv.shape != shape for m, lv in experts):
        raise StudyError("all experts' means and log-variances must have the same shape")
    precision = torch.ones_like(experts[0][0])  # the prior expert: mean 0, precision 1
    weighted_mean = torch.zeros_like(experts[0][0])
    for m, lv in experts:
        p = torch.exp(-lv)
        precision = precision + p
        weighted_mean = weighted_mean + m * p
    return weighted_mean / precision, -torch.log(precision)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, so the sample is differentiable in mu and logvar.

    eps comes from `generator` when given, else from torch's global RNG (seed it with torch.manual_seed).
    """
    if mu.shape != logvar.shape:
        raise StudyError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + eps * torch.exp(0.5 * logvar)
