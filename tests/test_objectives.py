"""Objectives on hand-made embeddings whose correct loss values are known."""
import math

import pytest
import torch

from helpers.config import StudyError
from helpers.objectives import (LogitScale, info_nce, kl_standard_normal, product_of_experts,
                                recon_mse, reparameterize, small_loss_mask, supcon_cross_modal,
                                vae_loss)


def random_pairs(batch=64, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)


# ---- InfoNCE ----

def test_info_nce_aligned_orthogonal_is_near_zero():
    Z = torch.eye(8)
    assert info_nce(Z, 3 * Z, logit_scale=math.log(100)).item() < 1e-6  # scale-invariant: normalised inside


def test_info_nce_random_is_about_log_batch():
    z_a, z_b = random_pairs(batch=64)
    loss = info_nce(z_a, z_b, logit_scale=0.0).item()  # scale 1: logits in [-1, 1]
    assert abs(loss - math.log(64)) < 0.05


def test_info_nce_mismatched_pairs_cost_more_and_per_pair_shape():
    Z = torch.eye(6)
    aligned = info_nce(Z, Z, math.log(10))
    shuffled = info_nce(Z, Z[[1, 0, 2, 3, 4, 5]], math.log(10), reduction="none")
    assert shuffled.shape == (6,)
    assert shuffled[:2].min() > shuffled[2:].max()  # only the swapped pairs are penalised
    assert torch.allclose(shuffled[2:], torch.full((4,), aligned.item()), atol=1e-6)


def test_info_nce_per_pair_mean_equals_mean_reduction():
    z_a, z_b = random_pairs(batch=16, seed=1)
    assert torch.allclose(info_nce(z_a, z_b, 1.0, reduction="none").mean(), info_nce(z_a, z_b, 1.0))


def test_info_nce_bad_arguments():
    z_a, z_b = random_pairs(batch=4)
    with pytest.raises(StudyError, match="same shape"):
        info_nce(z_a, z_b[:3], 0.0)
    with pytest.raises(StudyError, match="reduction"):
        info_nce(z_a, z_b, 0.0, reduction="sum")


def test_gradients_flow_to_embeddings_and_logit_scale():
    z_a, z_b = (z.requires_grad_() for z in random_pairs(batch=8))
    scale = LogitScale()
    loss = info_nce(z_a, z_b, scale()) + supcon_cross_modal(z_a, z_b, torch.tensor([0, 0, 1, 1] * 2), scale())
    loss.backward()
    for t in (z_a.grad, z_b.grad, scale.log_scale.grad):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0


def test_logit_scale_init_and_cap():
    scale = LogitScale()
    assert scale().item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert scale().item() == pytest.approx(math.log(100))
    with pytest.raises(StudyError):
        LogitScale(init_temperature=0.001)  # 1/T = 1000 above the cap


# ---- SupCon ----

def test_supcon_equals_info_nce_when_labels_distinct():
    z_a, z_b = random_pairs(batch=10, seed=2)
    labels = torch.arange(10)
    assert torch.allclose(supcon_cross_modal(z_a, z_b, labels, 1.0), info_nce(z_a, z_b, 1.0), atol=1e-6)
    assert torch.allclose(supcon_cross_modal(z_a, z_b, labels, 1.0, reduction="none"),
                          info_nce(z_a, z_b, 1.0, reduction="none"), atol=1e-6)


def test_supcon_treats_same_label_items_as_positives():
    # Each sound sits on the image of the *other* clip of its class: wrong pair, right animal.
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    z_a = torch.eye(6)
    z_b = z_a[[1, 0, 3, 2, 5, 4]]
    supcon = supcon_cross_modal(z_a, z_b, labels, math.log(10))
    plain = info_nce(z_a, z_b, math.log(10))
    assert supcon < plain - 1.0
    # ... and it is unchanged by any within-class reshuffle of the pairing, unlike InfoNCE
    assert torch.allclose(supcon, supcon_cross_modal(z_a, z_a, labels, math.log(10)), atol=1e-6)
    assert info_nce(z_a, z_a, math.log(10)) < plain - 1.0


def test_supcon_is_not_invariant_across_classes():
    labels = torch.tensor([0, 0, 1, 1])
    Z = torch.eye(4)
    right = supcon_cross_modal(Z, Z, labels, math.log(10))
    wrong_class = supcon_cross_modal(Z, Z[[2, 3, 0, 1]], labels, math.log(10))
    assert wrong_class > right + 1.0


def test_supcon_bad_labels():
    z_a, z_b = random_pairs(batch=4)
    with pytest.raises(StudyError, match="labels"):
        supcon_cross_modal(z_a, z_b, torch.tensor([0, 1, 2]), 0.0)


# ---- small-loss selection ----

@pytest.mark.parametrize("drop_rate, expected", [(0.0, 10), (0.2, 8), (0.3, 7), (0.9, 1), (0.99, 1)])
def test_small_loss_mask_keeps_exact_count(drop_rate, expected):
    loss = torch.tensor([5.0, 1.0, 9.0, 3.0, 3.0, 0.5, 7.0, 2.0, 8.0, 3.0])  # ties at 3.0
    mask = small_loss_mask(loss, drop_rate)
    assert mask.dtype == torch.bool and int(mask.sum()) == expected
    assert loss[mask].max() <= loss[~mask].min() if expected < 10 else mask.all()


@pytest.mark.parametrize("n, drop_rate, expected", [(100, 0.29, 71), (20, 0.9, 2), (10, 0.25, 8), (3, 0.5, 2)])
def test_small_loss_mask_drops_floor_of_rate_times_n(n, drop_rate, expected):
    loss = torch.rand(n, generator=torch.Generator().manual_seed(n))
    assert int(small_loss_mask(loss, drop_rate).sum()) == expected


def test_small_loss_mask_keeps_the_smallest():
    mask = small_loss_mask(torch.tensor([4.0, 0.1, 3.0, 0.2]), 0.5)
    assert mask.tolist() == [False, True, False, True]


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1"])
def test_small_loss_mask_bad_rate(bad):
    with pytest.raises(StudyError, match="drop_rate"):
        small_loss_mask(torch.ones(4), bad)


# ---- VAE pieces ----

def test_kl_zero_at_prior_and_positive_elsewhere():
    zeros = torch.zeros(5, 3)
    assert kl_standard_normal(zeros, zeros).item() == 0.0
    # one dim with mu=1, logvar=0: KL = mu^2 / 2 = 0.5 per item
    mu = torch.zeros(5, 3)
    mu[:, 0] = 1.0
    assert kl_standard_normal(mu, zeros).item() == pytest.approx(0.5)


def test_vae_loss_sums_recon_and_weights_kl():
    x = torch.zeros(4, 3)
    x_hat = torch.ones(4, 3)  # squared error 3 per item
    mu = torch.ones(4, 2)  # KL = 2 * 0.5 = 1 per item
    logvar = torch.zeros(4, 2)
    assert recon_mse(x_hat, x).item() == pytest.approx(3.0)
    loss = vae_loss([(x_hat, x), recon_mse(2 * x_hat, x), None], mu, logvar, beta=0.5)
    assert loss.item() == pytest.approx(3.0 + 12.0 + 0.5 * 1.0)
    with pytest.raises(StudyError, match="at least one"):
        vae_loss([None], mu, logvar)
    with pytest.raises(StudyError, match="scalar"):
        vae_loss([x_hat], mu, logvar)


def test_poe_one_expert_plus_prior_closed_form():
    mu = torch.tensor([[2.0, -1.0]])
    logvar = torch.log(torch.tensor([[1.0, 3.0]]))
    v = logvar.exp()
    mu_out, logvar_out = product_of_experts([mu, None], [logvar, None])
    assert torch.allclose(mu_out, mu / (1 + v))
    assert torch.allclose(logvar_out.exp(), v / (1 + v))


def test_poe_two_identical_experts_and_errors():
    mu, logvar = torch.ones(3, 2), torch.zeros(3, 2)  # precisions 1 + 1 + 1 (prior)
    mu_out, logvar_out = product_of_experts([mu, mu], [logvar, logvar])
    assert torch.allclose(mu_out, torch.full((3, 2), 2 / 3))
    assert torch.allclose(logvar_out, torch.full((3, 2), -math.log(3)))
    with pytest.raises(StudyError, match="at least one"):
        product_of_experts([None, None], [None, None])
    with pytest.raises(StudyError, match="both"):
        product_of_experts([mu, None], [None, logvar])


def test_reparameterize_seeded_and_differentiable():
    mu = torch.full((2000, 2), 3.0, requires_grad=True)
    logvar = torch.full((2000, 2), math.log(4.0), requires_grad=True)
    z1 = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    z2 = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z1, z2)
    assert abs(z1.mean().item() - 3.0) < 0.1 and abs(z1.std().item() - 2.0) < 0.1
    z1.sum().backward()
    assert mu.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0
