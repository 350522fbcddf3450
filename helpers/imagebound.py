"""Image-bound audio (after ImageBind and LiT): the frozen ImageNet image model teaches an audio encoder.

Every epoch the training clips are paired with training images as in every paired method (balanced,
within the clip's noisy class: the pairing is the one use of an audio label). An audio encoder and a
linear map into the ImageNet feature space are trained so that each clip lands on its paired image's
frozen EfficientNet-Lite0 features (cosine regression: the loss itself reads no label); the image side
never trains. Then the audio is classified three ways:
- `image_probe`: through a linear probe fitted on the *image* features with image labels only, applied
  to the clips mapped into the image space: no audio label is used to classify;
- `linear_probe` / `knn` on the audio encoder's own embeddings (the training clips' labels);
- `finetune`: the encoder fine-tuned on the training clips' labels, when finetune_epochs > 0.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import evaluation as ev
from .experiments import (EpochPairs, Study, _rows_from_probas, evaluate_embeddings, evaluate_probas,
                          imagenet_features, make_record, prepare_study, train_classifier, val_pairs)
from .models import ImageNetFeatures, make_encoder
from .training import budget, fit, predict, seed_everything

METHOD = "image_bound"


class ImageBoundAudio(nn.Module):
    """An audio encoder and a linear map from its embedding into the (centred, unit-length) ImageNet space."""

    def __init__(self, audio_kind: str, embed_dim: int, sample_rate: int, image_dim: int = ImageNetFeatures.embed_dim):
        super().__init__()
        self.encoder = make_encoder(audio_kind, embed_dim, sample_rate)
        self.to_image = nn.Linear(embed_dim, image_dim)

    def image_space(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.to_image(self.encoder(x)), dim=1)


def _image_space(Z: np.ndarray, center: np.ndarray) -> np.ndarray:
    """ImageNet features as the target space: centred on the training images' mean, unit length."""
    Z = Z - center
    return Z / np.linalg.norm(Z, axis=1, keepdims=True).clip(min=1e-8)


def run_image_bound(params: dict | None = None, run_dir: Path | None = None) -> tuple[dict, dict]:
    """Train the image-bound audio encoder and evaluate it; return (record, models). Parameters: notebook 03's."""
    study = prepare_study(params, "03_contrastive")
    p = study.params
    seed_everything(p["seed"])
    study.reset_streams()
    dev = study.device
    t0 = time.perf_counter()
    feats = imagenet_features(study)
    study.timings["imagenet_s"] = round(time.perf_counter() - t0, 2)
    s = study.split["image"]
    center = feats["train"].mean(axis=0)
    target = np.zeros((len(study.data.image), feats["train"].shape[1]), dtype=np.float32)
    target[s.train] = _image_space(feats["train"], center)
    target[s.val] = _image_space(feats["val"], center)
    target = torch.as_tensor(target)

    model = ImageBoundAudio(p["audio_encoder"], p["embed_dim"], p["sample_rate"]).to(dev)
    pairs = EpochPairs(study, np.random.default_rng(p["seed"]))

    def step(b, gen):
        a, i, _ = pairs.batch(b)   # the pairing labels are not used by the loss
        za = model.image_space(study.audio(a, train=True).to(dev))
        return (1 - (za * target[i].to(dev)).sum(1)).mean()

    # validation, with no audio label: how close the validation clips land to their paired validation images
    va, vi = val_pairs(study, np.random.default_rng(50_000 + p["seed"]))
    X_val = study.inputs("audio", study.split["audio"].val[va])
    T_val = target[s.val[vi]]

    def val_score():
        z = predict(model.image_space, X_val, dev)
        return float((z * T_val).sum(1).mean())

    t0 = time.perf_counter()
    history = fit(model, step, pairs.num_pairs, **budget(p), generator=study.generator,
                  val_score=val_score if len(va) else None, on_epoch_start=pairs.start_epoch,
                  desc=f"{METHOD} training")
    study.timings["pretrain_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    rows, details = image_probe_rows(study, model, feats, center)
    r, d = evaluate_embeddings(study, METHOD, embed_fns={"audio": model.encoder})
    rows, details = rows + r, details | d
    study.timings["evaluate_frozen_s"] = round(time.perf_counter() - t0, 2)
    finetuned, ft_history = {}, {}
    if p["finetune_epochs"]:
        t0 = time.perf_counter()
        finetuned["audio"], h = train_classifier(study, p["audio_encoder"], encoder=copy.deepcopy(model.encoder),
                                                 num_epochs=p["finetune_epochs"], desc=f"{METHOD} fine-tune audio")
        ft_history["audio"] = h.as_dict()
        r, d = evaluate_probas(study, METHOD, "finetune", finetuned)
        rows, details = rows + r, details | d
        study.timings["finetune_s"] = round(time.perf_counter() - t0, 2)
    record = make_record(study, "03_contrastive", rows, details, method=METHOD,
                         history={METHOD: history.as_dict()}, finetune_history={METHOD: ft_history},
                         pairing=pairs.summary())
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), Path(run_dir) / "image_bound.pt")
    return record, {"model": model, "audio": model.encoder, "finetuned": finetuned, "study": study}


def image_probe_rows(study: Study, model: ImageBoundAudio, feats: dict, center: np.ndarray) -> tuple[list, dict]:
    """The audio test sets classified by a linear probe that only ever saw images and their labels."""
    sets = study.test_sets("audio")
    names = list(sets)
    Z_audio = [predict(model.image_space, X, study.device).numpy() for X, _ in sets.values()]
    y_audio = [y for _, y in sets.values()]
    y_img_train, y_img_val = study.labels("image", "train"), study.labels("image", "val")
    _, _, proba = ev.linear_probe(_image_space(feats["train"], center), y_img_train, np.concatenate(Z_audio),
                                  np.concatenate(y_audio), study.num_classes, Z_val=_image_space(feats["val"], center),
                                  y_val=y_img_val, seed=study.params["seed"])
    bounds = np.cumsum([0] + [len(y) for y in y_audio])
    probas = {"audio": {n: proba[bounds[k]:bounds[k + 1]] for k, n in enumerate(names)}}
    labels = {"audio": dict(zip(names, y_audio))}
    return _rows_from_probas(study, METHOD, "image_probe", probas, labels)
