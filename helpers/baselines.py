"""Notebook 02's core: supervised unimodal baselines, late fusion, and the ImageNet image model."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .experiments import (embed_all, evaluate_embeddings, evaluate_probas, imagenet_features, make_record,
                          nuisance_audits, prepare_study, train_classifier)

# from scratch on the waveform and on log-mels; and the ImageNet EfficientNet-Lite0 fine-tuned on log-mels
AUDIO_KINDS = ("audio_wave", "audio_mel", "audio_imagenet")


def run_baselines(params: dict | None = None, run_dir: Path | None = None) -> tuple[dict, dict]:
    """Train and evaluate every baseline; return (record, models). Saves encoder weights in run_dir."""
    study = prepare_study(params)
    rows, details, history, models = [], {}, {}, {}
    for kind in ("image",) + AUDIO_KINDS:
        models[kind], h = train_classifier(study, kind)
        history[kind] = h.as_dict()
        modality = "image" if kind == "image" else "audio"
        r, d = evaluate_probas(study, kind, "supervised", {modality: models[kind]})
        rows += r
        details |= d
    # Late fusion: the image CNN with the audio front-end that scored better on validation (never on test).
    best_audio = max(AUDIO_KINDS, key=lambda k: max(history[k]["val_score"]))
    r, d = evaluate_probas(study, "late_fusion", "supervised", {"audio": models[best_audio], "image": models["image"]})
    fusion_views = ("fused", "fused_stacked", "image_on_pairs")   # its single views are the image and audio rows
    rows += [row for row in r if row["view"] in fusion_views]
    details |= {k: v for k, v in d.items() if k.split("/")[2] in fusion_views + ("calibration",)}

    # ImageNet EfficientNet-Lite0: linear probe on frozen features, alone and fused with the audio encoder.
    # The probe is this baseline's only supervised training, so it learns from the (noisy) training labels.
    t0 = time.perf_counter()
    Z_image = imagenet_features(study)
    audio_encoder = models[best_audio].encoder
    Z_audio = embed_all(study, {"audio": audio_encoder})["audio"]
    r, d = evaluate_embeddings(study, "imagenet", Z={"audio": Z_audio, "image": Z_image}, protocols=("linear_probe",),
                               noisy_labels=True)
    rows += [row for row in r if row["view"] in ("image",) + fusion_views]   # its audio half is best_audio's
    details |= d
    study.timings["imagenet_s"] = round(time.perf_counter() - t0, 2)

    record = make_record(study, "02_baselines", rows, details, history=history, best_audio=best_audio,
                         audits=nuisance_audits(study))
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for kind, model in models.items():
            torch.save(model.encoder.state_dict(), run_dir / f"{kind}_encoder.pt")
    return record, models
