"""Notebooks 03 and 04's cores: contrastive and generative pre-training on sound + image pairs.

Both cores follow one protocol (that of helpers.experiments), so their rows compare key for key
with the baselines of notebook 02:

1. pairs: every epoch `pair_sampler` deals pairs within each (noisy) class so that every training clip
   and every training image is used, so a flipped clip is paired with an image of the wrong animal
   (noisy correspondence). Pairing by class is label use: these methods have the training labels;
2. pre-training, the epoch kept chosen on the validation part (never on test);
3. frozen embeddings: linear probe and k-NN per modality and fused (`evaluate_embeddings`; probes
   learn from the noisy training labels unless probe_noise=False), retrieval and zero-shot centroid
   (`evaluate_cross_modal`). Contrastive: probes see the encoder output (before the projection
   head, as in SimCLR), retrieval the shared projection space; generative: the posterior means;
4. fine-tuning each pre-trained encoder with a linear head (`train_classifier`, protocol
   "finetune") on the *noisy* training labels, as a practitioner would: the labels are all they have.

Contrastive (03): objective "contrastive" (CLIP: symmetric InfoNCE, learnable temperature) or "supcon"
(label-aware: every image of the clip's label is a positive); `simclr` adds within-modality
InfoNCE between two augmented views; remedy "small_loss" drops the largest-loss pairs of each batch.
Generative (04): objective "mvae" (one latent shared by both modalities, product of experts) or
"autoencoder" (one VAE per modality, the same networks without the shared latent).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import evaluation as ev
from . import schema
from .config import StudyError
from .experiments import (EpochPairs, Study, embed_all, evaluate_cross_modal, evaluate_embeddings, evaluate_probas,
                          make_record, prepare_study, reference_errors, train_classifier, val_pairs)
from .models import GaussianHead, ImageDecoder, LogMel, MelDecoder, make_encoder
from .objectives import (LogitScale, info_nce, kl_standard_normal, product_of_experts, recon_mse,
                         reparameterize, small_loss_mask, supcon_cross_modal)
from .training import budget, fit, predict, seed_everything

REMEDIES = ("none", "small_loss")
SIMCLR_LOG_SCALE = math.log(1 / 0.1)  # SimCLR's temperature 0.1, fixed


def method_name(p: dict) -> str:
    """Row method name: contrastive / supcon / mvae / autoencoder, with +simclr and +small_loss suffixes."""
    name = p["objective"]
    if name == "image_bound":   # one trained tower: the within-modality and small-loss options are the others'
        return name
    if p.get("simclr"):
        name += "+simclr"
    if p.get("remedy", "none") != "none":
        name += f"+{p['remedy']}"
    return name


def drop_rate_used(p: dict) -> float:
    """The share of pairs small-loss selection drops per batch.

    Default (drop_rate=None): the nominal noise rate, co-teaching's forget rate (Han et al. 2018),
    because a flipped clip is exactly a mismatched pair here. This is an oracle (the rate is known
    because the study injects it); at noise 0 it drops nothing, so "+small_loss" then equals the
    plain objective instead of discarding clean pairs at an invented rate. Set drop_rate to measure
    the cost of a wrong guess.
    """
    if p["remedy"] == "none":
        return 0.0
    return float(p["noise"] if p["drop_rate"] is None else p["drop_rate"])


# --------------------------------------------------------------------------- shared pieces
def _slice(Z: dict, cols: slice) -> dict:
    """The same embed_all structure with only some columns of every embedding."""
    return {m: {"train": z["train"][:, cols], "val": z["val"][:, cols],
                "test_sets": {k: (v[0][:, cols], v[1]) for k, v in z["test_sets"].items()}} for m, z in Z.items()}


def _evaluate(study: Study, method: str, embed_fns: dict, probe_cols: slice, cross_cols: slice,
              encoders: dict, audio_kind: str) -> tuple[list, dict, dict, dict]:
    """The protocol of both notebooks: frozen probes, cross-modal retrieval / zero-shot, fine-tuning."""
    p = study.params
    t0 = time.perf_counter()
    Z = embed_all(study, embed_fns)
    rows, details = evaluate_embeddings(study, method, Z=_slice(Z, probe_cols))
    rows += evaluate_cross_modal(study, method, _slice(Z, cross_cols))
    study.timings["evaluate_frozen_s"] = round(time.perf_counter() - t0, 2)
    finetuned, history = {}, {}
    if p["finetune_epochs"]:
        t0 = time.perf_counter()
        for modality, kind in (("image", "image"), ("audio", audio_kind)):
            # a copy: train_classifier trains the encoder it gets, and the pre-trained one is saved and returned
            finetuned[modality], h = train_classifier(study, kind, encoder=copy.deepcopy(encoders[modality]),
                                                      num_epochs=p["finetune_epochs"],
                                                      desc=f"{method} fine-tune {modality}")
            history[modality] = h.as_dict()
        r, d = evaluate_probas(study, method, "finetune", finetuned)
        rows += r
        details |= d
        study.timings["finetune_s"] = round(time.perf_counter() - t0, 2)
    return rows, details, finetuned, history


def _save(run_dir, modules: dict) -> None:
    if run_dir is None:
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        torch.save(module.state_dict(), run_dir / f"{name}.pt")


# --------------------------------------------------------------------------- contrastive (03)
def _projection(embed_dim: int, proj_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(inplace=True), nn.Linear(embed_dim, proj_dim))


class ContrastiveModel(nn.Module):
    """Image and audio encoders, a projection head each into the shared space, a learnable temperature;
    with simclr, a second head per modality for the within-modality loss (as SLIP, Mu et al. 2022)."""

    def __init__(self, audio_kind: str, embed_dim: int, sample_rate: int, proj_dim: int, simclr: bool):
        super().__init__()
        self.encoders = nn.ModuleDict({"image": make_encoder("image", embed_dim, sample_rate),
                                       "audio": make_encoder(audio_kind, embed_dim, sample_rate)})
        self.heads = nn.ModuleDict({m: _projection(embed_dim, proj_dim) for m in ("image", "audio")})
        self.logit_scale = LogitScale()
        self.ssl_heads = (nn.ModuleDict({m: _projection(embed_dim, proj_dim) for m in ("image", "audio")})
                          if simclr else None)

    def project(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.heads[modality](self.encoders[modality](x))

    def embedder(self, modality: str):
        """x -> [encoder output | projection]: probes use the first part, retrieval the shared space."""
        def fn(x):
            h = self.encoders[modality](x)
            return torch.cat([h, self.heads[modality](h)], dim=1)
        return fn


def _contrastive_val_score(model: ContrastiveModel, study: Study, X_val: dict, y_a, y_i) -> float:
    """Mean retrieval mAP on the validation part, both directions (a match = same class; clips carry their
    noisy labels, images their class, as in the pairing). mAP ranks the whole gallery, so it is less
    jumpy than an argmax accuracy on the ~100 validation items. Cheap, and no test."""
    za = predict(lambda x: model.project("audio", x), X_val["audio"], study.device).numpy()
    zi = predict(lambda x: model.project("image", x), X_val["image"], study.device).numpy()
    return 0.5 * (ev.retrieval_metrics(za, y_a, zi, y_i)["mAP"] + ev.retrieval_metrics(zi, y_i, za, y_a)["mAP"])


def run_contrastive(params: dict | None = None, run_dir: Path | None = None) -> tuple[dict, dict]:
    """Cross-modal contrastive pre-training, then the shared evaluation; return (record, models).

    models: "image" and "audio" (the pre-trained encoders), "model" (encoders + heads), "finetuned"
    (modality -> fine-tuned classifier) and "study". Saves image_encoder.pt, audio_encoder.pt and
    heads.pt (projections and temperature) in run_dir when given.
    """
    study = prepare_study(params, "03_contrastive")
    p = study.params
    method, drop = method_name(p), drop_rate_used(p)
    seed_everything(p["seed"])
    study.reset_streams()
    model = ContrastiveModel(p["audio_encoder"], p["embed_dim"], p["sample_rate"], p["proj_dim"], p["simclr"])
    model.to(study.device)
    pairs = EpochPairs(study, np.random.default_rng(40_000 + p["seed"]))
    dev = study.device

    def pair_loss(za, zi, labels, scale, reduction):
        if p["objective"] == "supcon":
            return supcon_cross_modal(za, zi, labels, scale, reduction=reduction)
        return info_nce(za, zi, scale, reduction=reduction)

    def step(b, gen):
        a, i, labels = pairs.batch(b)
        xa, xi = study.audio(a, train=True).to(dev), study.image(i, train=True).to(dev)
        ha, hi = model.encoders["audio"](xa), model.encoders["image"](xi)
        za, zi = model.heads["audio"](ha), model.heads["image"](hi)
        labels, scale = labels.to(dev), model.logit_scale()
        if drop > 0 and pairs.epoch >= 1:  # small-loss selection after one warm-up epoch
            with torch.no_grad():
                keep = small_loss_mask(pair_loss(za, zi, labels, scale, "none"), drop)
            if keep.sum() >= 2:  # the kept pairs only: a dropped pair is neither anchor, positive nor negative
                dropped = ~keep.cpu().numpy()
                pairs.stats[-1]["dropped"] += int(dropped.sum())
                pairs.stats[-1]["dropped_mismatched"] += int(pairs.mismatched(a[dropped], i[dropped]).sum())
                za, zi, labels = za[keep], zi[keep], labels[keep]
        loss = pair_loss(za, zi, labels, scale, "mean")
        if model.ssl_heads is not None:  # a second augmented view of each clip and image
            ha2 = model.encoders["audio"](study.audio(a, train=True).to(dev))
            hi2 = model.encoders["image"](study.image(i, train=True).to(dev))
            ssl = model.ssl_heads
            loss = loss + 0.5 * (info_nce(ssl["audio"](ha), ssl["audio"](ha2), SIMCLR_LOG_SCALE)
                                 + info_nce(ssl["image"](hi), ssl["image"](hi2), SIMCLR_LOG_SCALE))
        return loss

    X_val = {m: study.inputs(m, study.split[m].val) for m in ("audio", "image")}
    y_a, y_i = study.labels("audio", "val"), study.labels("image", "val", noisy=False)  # as the pairs are formed
    initial_scale = float(model.logit_scale().detach().exp())   # is the temperature learned? recorded beside the end
    t0 = time.perf_counter()
    history = fit(model, step, pairs.num_pairs, **budget(p), generator=study.generator,
                  val_score=lambda: _contrastive_val_score(model, study, X_val, y_a, y_i),
                  on_epoch_start=pairs.start_epoch, desc=f"{method} pre-training")
    study.timings["pretrain_s"] = round(time.perf_counter() - t0, 2)
    model.eval()
    d = p["embed_dim"]
    rows, details, finetuned, ft_history = _evaluate(
        study, method, {m: model.embedder(m) for m in ("audio", "image")}, slice(0, d), slice(d, None),
        model.encoders, p["audio_encoder"])
    record = make_record(study, "03_contrastive", rows, details,
                         history={method: history.as_dict() | {"logit_scale": float(model.logit_scale().detach().exp()),
                                                               "logit_scale_initial": initial_scale}},
                         finetune_history={method: ft_history}, method=method, pairing=pairs.summary(),
                         drop_rate_used=drop)
    _save(run_dir, {"image_encoder": model.encoders["image"], "audio_encoder": model.encoders["audio"],
                    "heads": nn.ModuleDict({"heads": model.heads, "logit_scale": model.logit_scale,
                                            **({"ssl_heads": model.ssl_heads} if model.ssl_heads is not None else {})})})
    return record, {"image": model.encoders["image"], "audio": model.encoders["audio"], "model": model,
                    "finetuned": finetuned, "study": study}


# --------------------------------------------------------------------------- generative (04)
class PairedVAE(nn.Module):
    """Encoders -> Gaussian heads -> latent -> ImageDecoder (pixels in [0, 1]) and MelDecoder (standardised
    log-mel). shared=True: one latent, the posterior of any subset of modalities is the product of the
    experts with the N(0, I) prior (MVAE). shared=False: two independent VAEs with the same networks.
    """

    def __init__(self, audio_kind: str, embed_dim: int, sample_rate: int, latent_dim: int, image_size: int,
                 clip_samples: int, shared: bool, decoder_width: int = 32):
        super().__init__()
        self.shared = shared
        self.encoders = nn.ModuleDict({"image": make_encoder("image", embed_dim, sample_rate),
                                       "audio": make_encoder(audio_kind, embed_dim, sample_rate)})
        self.heads = nn.ModuleDict({m: GaussianHead(embed_dim, latent_dim) for m in ("image", "audio")})
        audio = self.encoders["audio"]
        # the decoder's target is what the mel encoder sees; a waveform encoder gets the same front end apart
        self.mel = None if hasattr(audio, "log_mel") else LogMel(sample_rate)
        n_mels, n_frames = (audio.mel_shape if self.mel is None else self.mel.shape)(clip_samples)
        self.decoders = nn.ModuleDict({"image": ImageDecoder(latent_dim, image_size, decoder_width),
                                       "audio": MelDecoder(latent_dim, n_mels, n_frames, decoder_width)})

    def target(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        if modality == "image":
            return x
        return (self.encoders["audio"].log_mel if self.mel is None else self.mel)(x)

    def expert(self, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads[modality](self.encoders[modality](x))

    def posterior(self, experts: list) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | the given modalities): product of experts with the prior (shared), else the one expert."""
        if self.shared:
            return product_of_experts([e[0] for e in experts], [e[1] for e in experts])
        if len(experts) != 1:
            raise StudyError("separate autoencoders have no joint posterior")
        return experts[0]

    def embedder(self, modality: str):
        """x -> posterior mean (the embedding every probe sees)."""
        return lambda x: self.posterior([self.expert(modality, x)])[0]

    def decode(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        return self.decoders[modality](z)


def _recon_weights(model: PairedVAE, study: Study) -> dict:
    """Per-modality weights of the summed squared errors: 1/variance (a Gaussian with the data's variance)
    times D_mean / D_m, so the image (3 x size^2 values) and the mel (n_mels x frames) count alike.
    MVAE weights its modalities for the same reason (Wu & Goodman 2018, lambda per modality)."""
    out, dims = {}, {}
    with torch.no_grad():
        for m in ("image", "audio"):
            idx = study.split[m].train[:256]
            t = model.target(m, study.inputs(m, idx).to(study.device))
            out[m], dims[m] = float(t.var()), t[0].numel()
    mean_dim = float(np.mean(list(dims.values())))
    return {m: mean_dim / (dims[m] * max(out[m], 1e-6)) for m in out}


def _val_recon_error(model: PairedVAE, study: Study, X_val: dict, T_val: dict, val_pos: tuple, weights) -> float:
    """Weighted per-element squared error on validation, from the posterior means: each modality's own
    reconstruction, and (MVAE) each cross reconstruction over a fixed pairing of the validation items
    (val_pos: the positions (a_pos, i_pos) of `experiments.val_pairs`)."""
    dev = study.device
    mu = {m: predict(model.embedder(m), X_val[m], dev) for m in ("image", "audio")}
    errs = [w * F.mse_loss(predict(lambda z: model.decode(m, z), mu[m], dev), T_val[m]).item()
            for m, w in weights.items()]
    a_pos, i_pos = val_pos
    if model.shared and len(a_pos):
        pairs = {"image": ("audio", a_pos, i_pos), "audio": ("image", i_pos, a_pos)}
        for m, (src, src_pos, tgt_pos) in pairs.items():
            x_hat = predict(lambda z: model.decode(m, z), mu[src][src_pos], dev)
            errs.append(weights[m] * F.mse_loss(x_hat, T_val[m][tgt_pos]).item())
    return float(np.mean(errs))


def _reconstruction_errors(model: PairedVAE, study: Study, method: str) -> list[dict]:
    """Per-element mean squared error on test: self (x -> x), cross over the fixed test pairs
    (clip -> its paired image, image -> its paired clip's mel), joint (MVAE), and two references:
    the training mean, and the training mean of the true class (the best a class-level cross
    reconstruction can do, since a clip's image is any image of its class)."""
    dev = study.device
    X = {m: study.inputs(m, study.split[m].test) for m in ("image", "audio")}
    T = {m: predict(lambda x: model.target(m, x), X[m], dev) for m in X}
    y = {m: getattr(study.data, m).y[study.split[m].test] for m in X}
    mu = {m: predict(model.embedder(m), X[m], dev) for m in X}
    a_pos = np.arange(len(study.split["audio"].test))
    i_pos = study.test_pair_positions
    T_pair = {"image": T["image"][i_pos], "audio": T["audio"][a_pos]}
    rows = []

    def add(view, x_hat, target, target_modality):
        rows.append({"method": method, "view": view, "target": "image" if target_modality == "image" else "mel",
                     "mse": float(F.mse_loss(x_hat, target)), "n": int(len(target))})

    decode = {m: (lambda z, m=m: model.decode(m, z)) for m in X}
    name = {"image": "image", "audio": "mel"}
    for m in X:
        add(f"{m}->{name[m]}", predict(decode[m], mu[m], dev), T[m], m)
    add("audio->image", predict(decode["image"], mu["audio"][a_pos], dev), T_pair["image"], "image")
    add("image->mel", predict(decode["audio"], mu["image"][i_pos], dev), T_pair["audio"], "audio")
    if model.shared:
        with torch.no_grad():
            mu_joint = torch.cat([model.posterior([model.expert("audio", X["audio"][a_pos[k:k + 256]].to(dev)),
                                                   model.expert("image", X["image"][i_pos[k:k + 256]].to(dev))])[0].cpu()
                                  for k in range(0, len(a_pos), 256)])
        for m in X:
            add(f"joint->{name[m]}", predict(decode[m], mu_joint, dev), T_pair[m], m)
    # references, from the training part (the image classes are true; the clips' classes too: an oracle)
    for m in X:
        ref = reference_errors(study, m, lambda x, m=m: model.target(m, x), T[m], y[m])
        for ref_name in ("mean", "class_mean"):
            rows.append({"method": method, "view": f"{ref_name}->{name[m]}", "target": name[m],
                         "mse": ref[ref_name], "n": int(len(T[m]))})
    return rows


def generative_loss(model: PairedVAE, x: dict, weights: dict, beta: float) -> torch.Tensor:
    """The pre-training loss of one batch of pairs x = {"audio": clips, "image": images}.

    MVAE (model.shared): the negative ELBOs of the joint and both single-modality posteriors, each
    decoded into both modalities. Autoencoder: each modality's VAE on its own input.
    One decoder call per modality on the stacked latents: recon_mse and the KL average over the
    stacked batch, hence the factor len(posteriors)."""
    def elbo(posteriors: list, targets: dict) -> torch.Tensor:
        mu, logvar = (torch.cat(t) for t in zip(*posteriors))
        z = reparameterize(mu, logvar)
        k = len(posteriors)
        recon = sum(weights[m] * recon_mse(model.decode(m, z), t.repeat(k, *([1] * (t.dim() - 1))))
                    for m, t in targets.items())
        return k * (recon + beta * kl_standard_normal(mu, logvar))

    with torch.no_grad():
        t = {m: model.target(m, x[m]) for m in x}
    e = {m: model.expert(m, x[m]) for m in x}
    if not model.shared:
        return sum(elbo([e[m]], {m: t[m]}) for m in x)
    posteriors = [model.posterior(ex) for ex in ([e["audio"], e["image"]], [e["audio"]], [e["image"]])]
    return elbo(posteriors, t)


def run_generative(params: dict | None = None, run_dir: Path | None = None) -> tuple[dict, dict]:
    """Multimodal VAE (objective "mvae") or one VAE per modality ("autoencoder"), then the shared
    evaluation on the posterior means, plus test reconstruction errors; return (record, models).

    MVAE loss per batch of pairs (Wu & Goodman 2018, sub-sampled ELBO): the joint posterior and each
    single-modality posterior (product of experts with the prior), each decoded into *both*
    modalities, so a clip alone reconstructs an image and an image alone a mel (cross reconstruction;
    in the original paper a single-modality term reconstructs its own modality only). Autoencoder: each
    VAE reconstructs its own modality from its own latent, on the same batches.
    models: "vae" (PairedVAE), "image"/"audio" (its encoders), "finetuned", "study". Saves
    image_encoder.pt, audio_encoder.pt and vae.pt (everything, decoders included) in run_dir.
    """
    study = prepare_study(params, "04_generative")
    p = study.params
    method, shared = method_name(p), p["objective"] == "mvae"
    seed_everything(p["seed"])
    study.reset_streams()
    model = PairedVAE(p["audio_encoder"], p["embed_dim"], p["sample_rate"], p["latent_dim"], p["image_size"],
                      study.clip_samples, shared, p["decoder_width"]).to(study.device)
    weights = _recon_weights(model, study)
    pairs, dev, beta = EpochPairs(study, np.random.default_rng(40_000 + p["seed"])), study.device, float(p["beta"])

    def step(b, gen):
        a, i, _ = pairs.batch(b)
        x = {"audio": study.audio(a, train=True).to(dev), "image": study.image(i, train=True).to(dev)}
        return generative_loss(model, x, weights, beta)

    X_val = {m: study.inputs(m, study.split[m].val) for m in ("image", "audio")}
    with torch.no_grad():
        T_val = {m: predict(lambda x, m=m: model.target(m, x), X_val[m], dev) for m in X_val}
    val_pos = val_pairs(study, np.random.default_rng(50_000 + p["seed"]))
    t0 = time.perf_counter()
    history = fit(model, step, pairs.num_pairs, **budget(p), generator=study.generator,
                  val_score=lambda: -_val_recon_error(model, study, X_val, T_val, val_pos, weights),
                  on_epoch_start=pairs.start_epoch, desc=f"{method} pre-training")
    study.timings["pretrain_s"] = round(time.perf_counter() - t0, 2)
    model.eval()
    rows, details, finetuned, ft_history = _evaluate(
        study, method, {m: model.embedder(m) for m in ("audio", "image")}, slice(None), slice(None),
        model.encoders, p["audio_encoder"])
    record = make_record(study, "04_generative", rows, details, history={method: history.as_dict()},
                         finetune_history={method: ft_history}, method=method, pairing=pairs.summary(),
                         reconstruction=_reconstruction_errors(model, study, method),
                         recon_weights=weights)
    _save(run_dir, {"image_encoder": model.encoders["image"], "audio_encoder": model.encoders["audio"],
                    "vae": model})
    return record, {"vae": model, "image": model.encoders["image"], "audio": model.encoders["audio"],
                    "finetuned": finetuned, "study": study}


@torch.no_grad()
def reconstruction_examples(models: dict, n: int = 6) -> dict:
    """Reconstructions of n fixed test pairs (one per class, first classes first) for the notebook.

    Returns tensors: "image" (the pair's image) and "mel" (the clip's log-mel) inputs, and "image->image",
    "audio->image", "image->mel", "audio->mel" (plus "joint->image", "joint->mel" for the MVAE), and the
    pairs' "classes". For separate autoencoders the cross entries decode one modality's latent with the
    other's decoder: their latents are not aligned, so these show what *no* shared latent gives.
    """
    model, study = models["vae"], models["study"]
    model.eval()
    dev = study.device
    y_a = study.data.audio.y[study.split["audio"].test]
    order = [int(np.flatnonzero(y_a == c)[0]) for c in range(study.num_classes) if (y_a == c).any()][:n]
    xa = study.audio(study.split["audio"].test[order]).to(dev)
    xi = study.image(study.test_pairs[order]).to(dev)
    ea, ei = model.expert("audio", xa), model.expert("image", xi)
    za, zi = model.posterior([ea])[0], model.posterior([ei])[0]
    out = {"classes": [study.classes[y_a[k]] for k in order], "image": xi.cpu(), "mel": model.target("audio", xa).cpu(),
           "image->image": model.decode("image", zi).cpu(), "audio->image": model.decode("image", za).cpu(),
           "image->mel": model.decode("audio", zi).cpu(), "audio->mel": model.decode("audio", za).cpu()}
    if model.shared:
        zj = model.posterior([ea, ei])[0]
        out |= {"joint->image": model.decode("image", zj).cpu(), "joint->mel": model.decode("audio", zj).cpu()}
    return out


# --------------------------------------------------------------------------- notebook drivers
def run_notebook(core: str, params: dict, run_dir: Path | None = None) -> tuple[dict, dict]:
    """Run `core` ("contrastive" or "generative") once per objective of params["objective"] (a comma list),
    and merge the records into one whose params are the notebook's (objective as given). Each
    objective's weights go to run_dir/<method>/. Returns (record, {method: models})."""
    run, notebook = (run_contrastive, "03_contrastive") if core == "contrastive" else (run_generative, "04_generative")
    params = schema.check(notebook, params)
    objectives = list(dict.fromkeys(schema.parse_list(params["objective"])))
    merged, models = None, {}
    for objective in objectives:
        one = {**params, "objective": objective}
        method = method_name(one)
        sub = Path(run_dir) / method if run_dir is not None else None
        if objective == "image_bound":   # one tower only (the image model is frozen): its own core
            from .imagebound import run_image_bound
            record, models[method] = run_image_bound(one, sub)
        else:
            record, models[method] = run(one, sub)
        if merged is None:
            merged = {**record, "params": {**record["params"], "objective": ",".join(objectives)},
                      "results": [], "details": {}, "history": {}, "finetune_history": {}, "timings": {},
                      "methods": [], "pairing": {}, "drop_rate_used": {}, "reconstruction": [],
                      "recon_weights": {}, "predictions": {}}
            merged.pop("method", None)
        merged["methods"].append(method)
        merged["results"] += record["results"]
        merged["reconstruction"] += record.get("reconstruction", [])
        for key in ("details", "history", "finetune_history", "predictions"):   # keyed by method already
            merged[key] |= record.get(key, {})
        for key in ("timings", "pairing", "drop_rate_used", "recon_weights"):
            if key in record:
                merged[key][method] = record[key]
    for key in ("drop_rate_used", "recon_weights", "reconstruction"):
        if not merged[key]:
            merged.pop(key)
    return merged, models


# --------------------------------------------------------------------------- tables and figures
def _frame(record: dict):
    import pandas as pd
    return pd.DataFrame(record["results"])


def probe_table(record: dict, test_set: str = "test"):
    """Accuracy (and macro-F1) of linear probe, k-NN and fine-tuning per method and view."""
    df = _frame(record)
    df = df[(df["test_set"] == test_set) & df["protocol"].isin(["linear_probe", "knn", "finetune"])]
    return df.pivot_table(index=["method", "protocol"], columns="view", values=["accuracy", "macro_f1"],
                          sort=False).round(3)


def cross_modal_table(record: dict):
    """Retrieval (recall@1, recall@5, mAP) and zero-shot centroid accuracy, per method and direction."""
    df = _frame(record)
    ret = df[df["protocol"] == "retrieval"].set_index(["method", "view"])[["recall_at_1", "recall_at_5", "mAP"]]
    zs = df[df["protocol"] == "zero_shot"].set_index(["method", "view"])["accuracy"].rename("zero_shot_acc")
    return ret.join(zs).round(3)


def difference_table(record: dict, a: str, b: str):
    """b minus a, for every frozen/fine-tuned accuracy and retrieval number on the plain test split."""
    df = _frame(record)
    df = df[df["test_set"] == "test"].copy()
    df["metric"] = np.where(df["protocol"] == "retrieval", "mAP", "accuracy")
    df["value"] = np.where(df["protocol"] == "retrieval", df.get("mAP"), df["accuracy"])
    wide = df.pivot_table(index=["protocol", "view", "metric"], columns="method", values="value", sort=False)
    out = wide[[a, b]].copy()
    out[f"{b} - {a}"] = out[b] - out[a]
    return out.round(3)


def reconstruction_table(record: dict):
    """Per-element test MSE of each reconstruction (rows) per method (columns), with the references."""
    import pandas as pd
    df = pd.DataFrame(record.get("reconstruction", []))
    return df.pivot_table(index=["target", "view"], columns="method", values="mse", sort=False).round(4)


def plot_reconstructions(examples: dict, title: str = ""):
    """Image rows (input, image->image, audio->image[, joint]) and mel rows (input, audio->mel, image->mel[, joint])."""
    import matplotlib.pyplot as plt

    image_rows = [k for k in ("image", "image->image", "audio->image", "joint->image") if k in examples]
    mel_rows = [k for k in ("mel", "audio->mel", "image->mel", "joint->mel") if k in examples]
    n = len(examples["classes"])
    fig, axes = plt.subplots(len(image_rows) + len(mel_rows), n, figsize=(1.9 * n, 1.5 * (len(image_rows) + len(mel_rows))),
                             squeeze=False)
    vmin, vmax = float(examples["mel"].min()), float(examples["mel"].max())
    for r, key in enumerate(image_rows + mel_rows):
        for c in range(n):
            ax = axes[r, c]
            x = examples[key][c]
            if key in image_rows:
                ax.imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                ax.imshow(x.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(key, fontsize=8)
            if r == 0:
                ax.set_title(examples["classes"][c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def headline_numbers(record: dict) -> dict:
    """method -> the numbers a conclusion quotes (plain test split): probe/k-NN/fine-tune accuracy per view
    (e.g. "linear_probe/image"), retrieval mAP and zero-shot accuracy per direction (e.g. "mAP/audio->image")."""
    df = _frame(record)
    df = df[df["test_set"] == "test"]
    out = {}
    for method, g in df.groupby("method", sort=False):
        d = {}
        for r in g.itertuples(index=False):
            if r.protocol == "retrieval":
                d[f"mAP/{r.view}"] = r.mAP
                d[f"R@1/{r.view}"] = r.recall_at_1
            else:
                d[f"{r.protocol}/{r.view}"] = r.accuracy
        out[method] = d
    return out
