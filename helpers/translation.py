"""Notebook 06's core: translation between the modalities (image -> sound, sound -> image), judged in numbers.

Translators (both directions, trained on the paired training data; pairs from `pair_sampler`, re-drawn
every epoch, so a clip is paired with any image of its (noisy) label's class):

* "translator": a dedicated conditional translator. A source encoder (the study's image CNN or log-mel
  CNN) and class head give an embedding and class probabilities; the output is the class prototype
  (training class means of the target, weighted by those probabilities) plus what a decoder of the
  target modality (`ImageDecoder`, or `MelDecoder` for the standardised log-mel of `models.LogMel`)
  draws from a latent of the embedding and the probabilities. Loss: per-element squared error /
  variance of the target. translator_encoder="own" (default): its own encoder, trained end to end,
  with class_weight * cross-entropy on the source's noisy labels added as the class term, so the
  judges that score it are independent of it; "judge" (faster): encoder and head are the source
  modality's judge (below), frozen, so only the decoder learns (and in fill_missing the translation
  then carries no information the source judge did not already have).
* "mvae_cross": the cross decoders of notebook 04's multimodal VAE (helpers.pretraining): the
  posterior mean of one modality alone, decoded into the other.

Images come out as [B, 3, S, S] in (0, 1); sounds as standardised log-mels [B, n_mels, n_frames],
turned into waveforms by `MelInverter` (training mean / spread of the log-mel undone, exp,
InverseMelScale, Griffin-Lim) so they can be played.

Evaluation (`evaluate_translations`), all on the fixed test split:
* judge: classifiers trained on *real* data of the target modality (`train_classifier`) classify the
  translations of the test items (label = the source item's class); their accuracy on real test data
  is reported beside ("real"). The audio judge (log-mel CNN) reads the translated log-mel directly
  (test_set "test") and the Griffin-Lim waveform through its whole front end (test_set "griffin_lim");
* retrieval: the translation queries the real test items of the target modality in the judge's
  embedding space (correct = same class);
* reconstruction: per-element MSE to the paired real target over the fixed test pairs, beside the
  training mean and the training class mean (the floor for a class-level translation);
* fill_missing: one modality is missing at test time; it is filled with its translation and the
  target judge's probabilities are averaged with the real modality's (`fuse_proba`), against the
  real modality's classifier alone ("single") and both real modalities ("both_real").
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from . import evaluation as ev
from . import schema
from .config import StudyError
from .experiments import (EpochPairs, Study, evaluate_probas, make_record, prepare_study, reference_errors, train_classifier,
                          val_pairs)
from .models import AudioMelCNN, Classifier, ImageDecoder, LogMel, MelDecoder, make_encoder, standardize
from .pretraining import PairedVAE, run_generative
from .training import History, budget, fit, predict, seed_everything
from .visualization import find_run

DIRECTIONS = ("audio->image", "image->audio")
# What a notebook 04 run must share with this one for its MVAE to be reused (data, split, inputs, sizes).
MVAE_MATCH = ("dataset", "fraction", "noise", "noise_kind", "seed", "image_size", "sample_rate", "clip_seconds",
              "lowpass_hz", "normalize_loudness", "embed_dim")


def _direction(direction: str) -> tuple[str, str]:
    if direction not in DIRECTIONS:
        raise StudyError(f"direction {direction!r} unknown; known: {list(DIRECTIONS)}")
    src, tgt = direction.split("->")
    return src, tgt


# --------------------------------------------------------------------------- log-mel <-> waveform
class MelInverter(nn.Module):
    """Standardised log-mel [B, n_mels, n_frames] (the space of `models.LogMel`) -> waveform [B, L].

    LogMel standardises each clip, which throws away its level and spread; they are put back from
    the training clips (`log_mean`, `log_std`: means over clips of each clip's log-mel mean and
    standard deviation), then exp, a least-squares inverse of the mel filter bank (InverseMelScale)
    and Griffin-Lim phase recovery with LogMel's STFT settings. Output peak-normalised to 0.9.
    """

    def __init__(self, sample_rate: int, num_samples: int, log_mean: float, log_std: float, n_mels: int = 64,
                 n_iter: int = 16):
        super().__init__()
        ref = LogMel(sample_rate, n_mels)
        self.sample_rate, self.num_samples, self.n_mels = sample_rate, num_samples, n_mels
        self.log_mean, self.log_std = float(log_mean), float(log_std)
        self.n_fft, self.hop_length = ref.n_fft, ref.hop_length
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=ref.n_fft // 2 + 1, n_mels=n_mels, sample_rate=sample_rate, f_min=0.0, f_max=sample_rate / 2,
            driver="gelsd")  # SVD least squares: at 8 kHz some of the 64 mel filters are empty (rank-deficient)
        # InverseMelScale solves min ||fb^T S - M|| with a batched SVD on every call; its minimum-norm solution
        # is pinv(fb^T) M, so the pseudo-inverse is computed once here and applied as a product (seconds faster
        # per test set; test_translation checks that both agree).
        self.register_buffer("fb_pinv", torch.linalg.pinv(self.inverse_mel.fb.T), persistent=False)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=ref.n_fft, n_iter=n_iter, hop_length=ref.hop_length, power=2.0, length=num_samples,
            rand_init=False)  # deterministic: the same mel always gives the same sound

    @classmethod
    def from_study(cls, study: Study, n_iter: int = 16, max_clips: int = 256) -> "MelInverter":
        """Level and spread of the unstandardised log-mel, measured on (up to max_clips) training clips."""
        ref = LogMel(study.params["sample_rate"])
        X = study.audio(study.split["audio"].train[:max_clips])
        with torch.no_grad():
            L = torch.log(1e-6 + ref.mel(X))
        return cls(study.params["sample_rate"], study.clip_samples, float(L.mean(dim=(1, 2)).mean()),
                   float(L.std(dim=(1, 2)).mean()), ref.n_mels, n_iter)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise StudyError(f"expected standardised log-mels [B, {self.n_mels}, n_frames], got {tuple(mel.shape)}")
        power = torch.exp(mel.float() * self.log_std + self.log_mean).clamp(max=1e8)
        spec = torch.relu(self.fb_pinv @ power)  # = self.inverse_mel(power), as InverseMelScale clamps with relu
        wave = self.griffin_lim(spec)
        wave = torch.nan_to_num(wave)
        return 0.9 * wave / wave.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)


# --------------------------------------------------------------------------- the dedicated translator
class Translator(nn.Module):
    """Source encoder -> class probabilities and a latent -> the target modality.

    direction "image->audio": image CNN -> standardised log-mel of a clip (MelDecoder);
    direction "audio->image": log-mel CNN -> image with pixels in (0, 1) (ImageDecoder).
    The output is a class-conditional prototype plus what the decoder adds: the prototype is the mean of
    the training targets of each class (by their noisy labels, `set_prototypes`) weighted by the source's
    class probabilities, so the translator draws the animal the source sounds or looks like from the
    first step, and the decoder (fed the latent and the probabilities) learns the rest; images are
    combined in logit space so they stay in (0, 1). Before `set_prototypes` the prototype is neutral
    (grey image, zero log-mel) and the output is the decoder's alone.
    `classifier`: a trained classifier of the source modality whose encoder and head are used, frozen
    (a copy); without it the translator has its own encoder and class head, trained end to end.
    """

    def __init__(self, direction: str, num_classes: int, embed_dim: int = 128, sample_rate: int = 8000,
                 image_size: int = 64, clip_samples: int = 16000, latent_dim: int = 64,
                 classifier: Classifier | None = None, width: int = 16):
        super().__init__()
        self.source, self.target_modality = _direction(direction)
        self.direction = direction
        if classifier is not None:
            self.encoder, self.class_head = copy.deepcopy(classifier.encoder), copy.deepcopy(classifier.head)
            self.encoder.requires_grad_(False)
            self.class_head.requires_grad_(False)
            embed_dim = self.encoder.embed_dim
        else:
            self.encoder = make_encoder("image" if self.source == "image" else "audio_mel", embed_dim, sample_rate)
            self.class_head = nn.Linear(embed_dim, num_classes)
        self.frozen = classifier is not None
        if self.frozen:
            self.encoder.eval()  # and kept so by train(): its batch-norm statistics are the classifier's
        self.to_latent = nn.Sequential(nn.Linear(embed_dim, latent_dim), nn.ReLU(inplace=True))
        self.mel = LogMel(sample_rate)  # the target space of image->audio (the space the log-mel CNN sees)
        code = latent_dim + num_classes
        if self.target_modality == "image":
            self.decoder = ImageDecoder(code, image_size, width)
            shape, neutral = (3, image_size, image_size), 0.5
        else:
            shape = self.mel.shape(clip_samples)
            self.decoder, neutral = MelDecoder(code, *shape, width), 0.0
        self.register_buffer("prototypes", torch.full((num_classes, *shape), neutral))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # a frozen encoder keeps its batch-norm statistics
            self.encoder.eval()
        return self

    @torch.no_grad()
    def set_prototypes(self, targets: torch.Tensor, labels) -> None:
        """Per class, the mean of the training targets labelled with it (the overall mean for a class with none)."""
        labels = torch.as_tensor(np.asarray(labels))
        targets = targets.to(self.prototypes.device, self.prototypes.dtype)
        for c in range(len(self.prototypes)):
            chosen = targets[labels == c]
            self.prototypes[c] = (chosen if len(chosen) else targets).mean(0)

    def target(self, x_target: torch.Tensor) -> torch.Tensor:
        """What the translator reconstructs from a target-modality input: the image, or the clip's log-mel."""
        return x_target if self.target_modality == "image" else self.mel(x_target)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, class logits) of source inputs."""
        h = self.encoder(x)
        return h, self.class_head(h)

    def decode(self, h: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, dim=1)
        prototype = torch.einsum("bk,k...->b...", probs, self.prototypes)
        out = self.decoder(torch.cat([self.to_latent(h), probs], dim=1))
        if self.target_modality == "image":
            return torch.sigmoid(torch.logit(prototype, eps=1e-3) + torch.logit(out, eps=1e-6))
        return prototype + out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.features(x))


class _Lookup:
    """Rows of tensors computed once for some items of a modality, fetched by item index."""

    def __init__(self, idx: np.ndarray, size: int, *tensors: torch.Tensor):
        self.pos = np.full(size, -1)
        self.pos[idx] = np.arange(len(idx))
        self.tensors = tensors

    def __call__(self, idx: np.ndarray) -> list[torch.Tensor]:
        rows = torch.as_tensor(self.pos[idx])
        if (rows < 0).any():
            raise StudyError("a training pair names an item outside the training split")
        return [t[rows] for t in self.tensors]


def train_translator(study: Study, direction: str, num_epochs: int | None = None,
                     source_classifier: Classifier | None = None) -> tuple[Translator, History]:
    """Train a conditional translator on the study's training pairs (re-drawn every epoch); the epoch kept
    has the smallest validation reconstruction error (a fixed pairing of validation clips and images).

    With `source_classifier` (a classifier trained on the source modality, e.g. its judge) its encoder
    and class head are frozen, their outputs and the targets are computed once, and only the latent
    layer and the decoder learn (fast). Without it, the translator's own encoder learns too, with
    class_weight * cross-entropy on the source's noisy labels as the class term.
    Loss: per-element squared error divided by the variance of the training targets.
    """
    p = study.params
    src, tgt = _direction(direction)
    seed_everything(p["seed"])
    study.reset_streams()
    model = Translator(direction, study.num_classes, p["embed_dim"], p["sample_rate"], p["image_size"],
                       study.clip_samples, p["latent_dim"],
                       classifier=source_classifier,
                       width=p["decoder_width"]).to(study.device)
    class_weight = p["class_weight"]
    dev = study.device
    tgt_idx = study.split[tgt].train
    targets = _Lookup(tgt_idx, len(getattr(study.data, tgt).y),
                      predict(model.target, study.inputs(tgt, tgt_idx), dev))  # targets un-augmented
    target_var = max(float(targets.tensors[0].var()), 1e-6)  # the loss is about 1 for the mean, in both modalities
    model.set_prototypes(targets.tensors[0], study.y_train[tgt][tgt_idx])  # noisy labels, as a practitioner has
    if model.frozen:
        src_idx = study.split[src].train
        features = _Lookup(src_idx, len(getattr(study.data, src).y),
                           *[predict(lambda x, k=k: model.features(x)[k], study.inputs(src, src_idx), dev)
                             for k in (0, 1)])
    pairs = EpochPairs(study, np.random.default_rng(60_000 + p["seed"]))

    def step(b, gen):
        a, i, _ = pairs.batch(b)
        idx = {"audio": a, "image": i}
        target = targets(idx[tgt])[0].to(dev)
        if model.frozen:
            h, logits = (t.to(dev) for t in features(idx[src]))
            return F.mse_loss(model.decode(h, logits), target) / target_var
        h, logits = model.features(study.inputs(src, idx[src], train=True).to(dev))
        loss = F.mse_loss(model.decode(h, logits), target) / target_var
        if class_weight > 0:
            y = torch.as_tensor(study.y_train[src][idx[src]], device=dev)  # noisy labels, as a practitioner has
            loss = loss + class_weight * F.cross_entropy(logits, y)
        return loss

    a_pos, i_pos = val_pairs(study, np.random.default_rng(70_000 + p["seed"]))
    a_val, i_val = study.split["audio"].val[a_pos], study.split["image"].val[i_pos]
    val_idx = {"audio": a_val, "image": i_val}
    X_val = study.inputs(src, val_idx[src])
    T_val = predict(model.target, study.inputs(tgt, val_idx[tgt]), dev)

    def val_score():
        return -F.mse_loss(predict(model, X_val, dev), T_val).item() / target_var

    history = fit(model, step, pairs.num_pairs, **budget(p, num_epochs=num_epochs), generator=study.generator,
                  params=[q for q in model.parameters() if q.requires_grad],
                  val_score=val_score if len(a_val) else None, on_epoch_start=pairs.start_epoch,
                  desc=f"translator {direction}")
    return model, history


# --------------------------------------------------------------------------- the MVAE's cross decoders
def mvae_translators(vae: nn.Module) -> dict:
    """direction -> function: the posterior mean of the source alone, decoded by the target's decoder."""
    def make(src, tgt):
        def fn(x):
            return vae.decode(tgt, vae.posterior([vae.expert(src, x)])[0])
        return fn
    return {d: make(*_direction(d)) for d in DIRECTIONS}


def load_mvae(study: Study, results_dir=None) -> tuple[nn.Module, dict] | None:
    """The MVAE of a notebook 04 run on this study's data, split and input settings, or None.

    Looks for records of 04_generative whose run folder (or its mvae/ sub-folder, as run_notebook
    writes it) holds vae.pt, builds the PairedVAE from that record's parameters and loads the weights.
    """
    for sub in ("mvae/vae.pt", "vae.pt"):
        record = find_run("04_generative", study.params, keys=MVAE_MATCH, results_dir=results_dir, require=sub)
        if record is None:
            continue
        rp = {**schema.defaults("04_generative"), **record["params"]}
        if rp.get("objective") not in ("mvae",) and sub == "vae.pt":
            continue
        if sub == "mvae/vae.pt":  # the sub-folder holds the single-objective record, if any
            rp = {**rp, "objective": "mvae"}
        try:
            vae = PairedVAE(rp["audio_encoder"], rp["embed_dim"], rp["sample_rate"], rp["latent_dim"],
                            rp["image_size"], study.clip_samples, True, rp["decoder_width"])
            vae.load_state_dict(torch.load(Path(record["run_dir"]) / sub, map_location="cpu", weights_only=True))
        except Exception:  # other code version, other sizes: not usable, train instead
            continue
        return vae.to(study.device).eval(), {"source": "loaded", "run_dir": str(Path(record["run_dir"]) / sub),
                                             "epochs": rp.get("epochs")}
    return None


def get_mvae(study: Study, how: str = "auto", epochs: int | None = None) -> tuple[nn.Module | None, dict]:
    """The MVAE for the cross decoders: loaded from a matching notebook 04 run ("auto", when one exists)
    or trained here with run_generative at this study's parameters and `epochs` (no fine-tuning).
    Returns (vae or None, {"source": ..., ...}); None when `how` is "off"."""
    if how == "off":
        return None, {"source": "off"}
    if how == "auto":
        found = load_mvae(study)
        if found is not None:
            return found
    p = study.params
    # the shared parameters only: latent size and beta are notebook 04's own defaults
    gp = {k: v for k, v in p.items() if k in schema.STUDY_PARAMS and k != "external_data"}
    gp |= {"objective": "mvae", "audio_encoder": "audio_mel", "finetune_epochs": 0,
           "epochs": p["epochs"] if epochs is None else epochs}
    t0 = time.perf_counter()
    record, models = run_generative(gp)
    return models["vae"].eval(), {"source": "trained", "epochs": gp["epochs"],
                                  "seconds": round(time.perf_counter() - t0, 2),
                                  "reconstruction": record.get("reconstruction")}


# --------------------------------------------------------------------------- judges
def train_judges(study: Study, num_epochs: int | None = None) -> tuple[dict, dict]:
    """Classifiers trained on real data of each modality: the image CNN and the log-mel CNN."""
    judges, history = {}, {}
    for modality, kind in (("image", "image"), ("audio", "audio_mel")):
        judges[modality], h = train_classifier(study, kind, num_epochs=num_epochs, desc=f"{modality} judge")
        history[modality] = h.as_dict()
    return judges, history


def mel_embed(classifier: Classifier, mel: torch.Tensor) -> torch.Tensor:
    """The log-mel CNN's embedding of a (translated) log-mel, skipping its front end. The mel is standardised
    per clip first, as the front end does to every real clip."""
    enc = classifier.encoder
    if not isinstance(enc, AudioMelCNN):
        raise StudyError("mel_embed needs a classifier whose encoder is the log-mel CNN (kind 'audio_mel')")
    h = standardize(mel, dims=(1, 2))
    for block in enc.blocks:
        h = block(h)
    return enc.proj(h.flatten(2).mean(dim=2))


def mel_logits(classifier: Classifier, mel: torch.Tensor) -> torch.Tensor:
    return classifier.head(mel_embed(classifier, mel))


# --------------------------------------------------------------------------- evaluation
def prepare_test_inputs(study: Study) -> dict:
    """Plain test inputs and labels of both modalities, the fixed test pairs' positions, the log-mels."""
    X = {m: study.inputs(m, study.split[m].test) for m in ("audio", "image")}
    y = {m: getattr(study.data, m).y[study.split[m].test] for m in X}
    a_pos = np.arange(len(study.split["audio"].test))
    i_pos = study.test_pair_positions
    mel = predict(LogMel(study.params["sample_rate"]).to(study.device), X["audio"], study.device)
    return {"X": X, "y": y, "a_pos": a_pos, "i_pos": i_pos, "mel": mel}


def translate_test(study: Study, translators: dict, data: dict) -> dict:
    """method -> direction -> outputs for every test item of the source modality."""
    out = {}
    for method, fns in translators.items():
        out[method] = {}
        for direction, fn in fns.items():
            src, _ = _direction(direction)
            if isinstance(fn, nn.Module):
                fn.eval()
            out[method][direction] = predict(fn, data["X"][src], study.device)
    return out


def _row(method, protocol, view, test_set, y_true, proba, num_classes, **extra):
    m = ev.classification_metrics(y_true, proba.argmax(1), num_classes)
    return {"method": method, "protocol": protocol, "view": view, "test_set": test_set, "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"], "n": m["n"], **ev.chance_levels(y_true), **extra}, m


def evaluate_translations(study: Study, judges: dict, translators: dict, inverter: MelInverter | None = None,
                          data: dict | None = None, outputs: dict | None = None) -> dict:
    """Judge, retrieval and reconstruction numbers of every translator; returns dict(rows, details,
    reconstruction, outputs, probas). `translators`: method -> {direction: module or function}."""
    data = data or prepare_test_inputs(study)
    outputs = outputs or translate_test(study, translators, data)
    dev, k, frac = study.device, study.num_classes, study.params["fraction"]
    X, y, a_pos, i_pos = data["X"], data["y"], data["a_pos"], data["i_pos"]
    for j in judges.values():
        j.eval()
    rows, details, recon = [], {}, []
    soft = lambda logits: torch.softmax(logits, 1).numpy()  # noqa: E731

    def add(method, protocol, view, test_set, y_true, proba):
        row, m = _row(method, protocol, view, test_set, y_true, proba, k, fraction=frac)
        rows.append(row)
        details[f"{method}/{protocol}/{view}/{test_set}"] = {"per_class_recall": m["per_class_recall"],
                                                            "confusion": m["confusion"]}

    # the judges on real test data, and their embeddings of it (the retrieval galleries)
    probas = {"real": {"image": soft(predict(judges["image"], X["image"], dev)),
                       "audio": soft(predict(judges["audio"], X["audio"], dev))}}
    add("real", "judge", "image", "test", y["image"], probas["real"]["image"])
    add("real", "judge", "audio", "test", y["audio"], probas["real"]["audio"])
    gallery = {"image": predict(judges["image"].encoder, X["image"], dev).numpy(),
               "audio": predict(judges["audio"].encoder, X["audio"], dev).numpy()}

    def retrieval(method, view, test_set, Z_query, y_query, target):
        r = ev.retrieval_metrics(Z_query, y_query, gallery[target], y[target])
        rows.append({"method": method, "protocol": "retrieval", "view": view, "test_set": test_set,
                     "recall_at_1": r["recall_at_1"], "recall_at_5": r["recall_at_5"], "mAP": r["mAP"],
                     "n": r["n_queries"], "fraction": frac})

    for method, outs in outputs.items():
        probas[method] = {}
        if "audio->image" in outs:
            img = outs["audio->image"]
            p = soft(predict(judges["image"], img, dev))
            probas[method]["audio->image"] = p
            add(method, "judge", "audio->image", "test", y["audio"], p)
            retrieval(method, "audio->image", "test", predict(judges["image"].encoder, img, dev), y["audio"], "image")
            recon.append({"method": method, "view": "audio->image", "target": "image", "fraction": frac,
                          "mse": float(F.mse_loss(img[a_pos], X["image"][i_pos])), "n": int(len(a_pos))})
        if "image->audio" in outs:
            mel = outs["image->audio"]
            p = soft(predict(lambda m: mel_logits(judges["audio"], m), mel, dev))
            probas[method]["image->audio"] = p
            add(method, "judge", "image->audio", "test", y["image"], p)
            retrieval(method, "image->audio", "test", predict(lambda m: mel_embed(judges["audio"], m), mel, dev),
                      y["image"], "audio")
            recon.append({"method": method, "view": "image->audio", "target": "mel", "fraction": frac,
                          "mse": float(F.mse_loss(mel[i_pos], data["mel"][a_pos])), "n": int(len(a_pos))})
            if inverter is not None:  # the playable sound: Griffin-Lim, then the judge's whole pipeline
                wave = inverter(mel)
                p = soft(predict(judges["audio"], wave, dev))
                probas[method]["image->audio/griffin_lim"] = p
                add(method, "judge", "image->audio", "griffin_lim", y["image"], p)
                retrieval(method, "image->audio", "griffin_lim", predict(judges["audio"].encoder, wave, dev),
                          y["image"], "audio")
    # references: translators that ignore the input, against the same paired targets
    mel_fn = LogMel(study.params["sample_rate"]).to(dev)
    for tgt, view, name, target, T_test in (("image", "audio->image", "image", lambda x: x, X["image"][i_pos]),
                                            ("audio", "image->audio", "mel", mel_fn, data["mel"][a_pos])):
        ref = reference_errors(study, tgt, target, T_test, y["audio"][a_pos])  # labelled by the pair's class
        for method in ("mean", "class_mean"):
            recon.append({"method": method, "view": view, "target": name, "fraction": frac, "mse": ref[method],
                          "n": int(len(T_test))})
    return {"rows": rows, "details": details, "reconstruction": recon, "outputs": outputs, "probas": probas,
            "data": data}


def fill_missing_rows(study: Study, result: dict) -> list[dict]:
    """One modality missing at test time, filled with its translation: the fused classifier (mean of the
    real modality's judge and the target judge on the translation) against the real modality alone
    ("single") and both real modalities over the fixed test pairs ("both_real").
    view "audio->image": the image is missing (filled from the clip); "image->audio": the clip is missing."""
    y, k, frac = result["data"]["y"], study.num_classes, study.params["fraction"]
    a_pos, i_pos = result["data"]["a_pos"], result["data"]["i_pos"]
    real = result["probas"]["real"]
    extra = {"fraction": frac, "n_train_audio": len(study.split["audio"].train),
             "n_train_image": len(study.split["image"].train)}
    rows = []
    both = ev.fuse_proba(real["audio"][a_pos], real["image"][i_pos])
    for view, present in (("audio->image", "audio"), ("image->audio", "image")):
        rows.append(_row("single", "fill_missing", view, "test", y[present], real[present], k, **extra)[0])
        for method, probas in result["probas"].items():
            if method != "real" and view in probas:
                fused = ev.fuse_proba(real[present], probas[view])
                rows.append(_row(method, "fill_missing", view, "test", y[present], fused, k, **extra)[0])
        rows.append(_row("both_real", "fill_missing", view, "test", y["audio"][a_pos], both, k, **extra)[0])
    return rows


# --------------------------------------------------------------------------- the notebook core
def run_translation(params: dict | None = None, run_dir: Path | None = None) -> tuple[dict, dict]:
    """Notebook 06: translators and judges at `fraction` (with the MVAE's cross decoders), the judge,
    retrieval and reconstruction evaluation, and fill-missing at every fraction of `fractions`
    (the dedicated translator; the MVAE at `fraction` only). Returns (record, models).

    models: "study", "judges", "translators" (method -> direction -> module/function), "inverter",
    "outputs" (translations of the test items), "data" (test inputs). Saves the translators'
    and judges' weights in run_dir when given.
    """
    study = prepare_study(params, "06_translation")
    p = study.params
    fractions = schema.parse_fractions(p["fractions"])
    t0 = time.perf_counter()
    judges, judge_history = train_judges(study)
    study.timings["judges_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    translators, history = {"translator": {}}, {"judges": judge_history, "translator": {}}
    for direction in DIRECTIONS:
        source = judges[_direction(direction)[0]] if p["translator_encoder"] == "judge" else None
        translators["translator"][direction], h = train_translator(study, direction, source_classifier=source)
        history["translator"][direction] = h.as_dict()
    study.timings["translators_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    vae, mvae_info = get_mvae(study, p["mvae"])
    if vae is not None:
        translators["mvae_cross"] = mvae_translators(vae)
    study.timings["mvae_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    inverter = MelInverter.from_study(study, p["griffin_lim_iters"])
    result = evaluate_translations(study, judges, translators, inverter)
    rows, details = result["rows"], result["details"]
    rows += fill_missing_rows(study, result)
    if study.external is not None:   # the judges are classifiers of real data: do they know the animal elsewhere?
        r, d = evaluate_probas(study, "judge", "supervised", judges)
        rows += [row for row in r if row["test_set"] == "external"]
        details |= {k: v for k, v in d.items() if k.endswith("/external")}
    study.timings["evaluate_s"] = round(time.perf_counter() - t0, 2)

    # fill-missing at the other training fractions: judges and the dedicated translator trained again
    t0 = time.perf_counter()
    for fraction in fractions:
        if math.isclose(fraction, p["fraction"]):
            continue
        sub = prepare_study({**p, "fraction": fraction, "external_data": ""}, "06_translation")
        sub_judges, _ = train_judges(sub)
        sub_translators = {"translator": {
            d: train_translator(sub, d, source_classifier=sub_judges[_direction(d)[0]]
                                if p["translator_encoder"] == "judge" else None)[0] for d in DIRECTIONS}}
        sub_result = evaluate_translations(sub, sub_judges, sub_translators, None)
        rows += [r for r in sub_result["rows"] if r["protocol"] == "judge"]
        rows += fill_missing_rows(sub, sub_result)
    study.timings["other_fractions_s"] = round(time.perf_counter() - t0, 2)

    record = make_record(study, "06_translation", rows, details, history=history, mvae=mvae_info,
                         reconstruction=result["reconstruction"], fractions=fractions,
                         inverter={"log_mean": inverter.log_mean, "log_std": inverter.log_std,
                                   "n_iter": p["griffin_lim_iters"]})
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for direction, model in translators["translator"].items():
            torch.save(model.state_dict(), run_dir / f"translator_{direction.replace('->', '2')}.pt")
        for modality, model in judges.items():
            torch.save(model.state_dict(), run_dir / f"judge_{modality}.pt")
    return record, {"study": study, "judges": judges, "translators": translators, "inverter": inverter,
                    "outputs": result["outputs"], "data": result["data"], "vae": vae}


# --------------------------------------------------------------------------- tables and figures
def _frame(record: dict):
    import pandas as pd
    return pd.DataFrame(record["results"])


def judge_table(record: dict):
    """Judge accuracy / macro-F1 on real test data and on each method's translations (main fraction)."""
    df = _frame(record)
    df = df[(df["protocol"] == "judge") & np.isclose(df["fraction"], record["params"]["fraction"])]
    return df.pivot_table(index=["view", "test_set"], columns="method", values="accuracy", sort=False).round(3)


def retrieval_table(record: dict):
    """Recall@1, recall@5 and mAP of real same-class items retrieved by the translations (judge space)."""
    df = _frame(record)
    df = df[df["protocol"] == "retrieval"]
    return df.set_index(["method", "view", "test_set"])[["recall_at_1", "recall_at_5", "mAP", "n"]].round(3)


def reconstruction_table(record: dict):
    """Per-element MSE to the paired real target, per method (columns), with the mean references."""
    import pandas as pd
    df = pd.DataFrame(record["reconstruction"])
    return df.pivot_table(index=["view", "target"], columns="method", values="mse", sort=False).round(4)


def fill_missing_table(record: dict):
    """Accuracy with one modality missing, per fraction: the present modality alone, filled with each
    translator, both real; and the gain of filling over the single modality."""
    df = _frame(record)
    df = df[df["protocol"] == "fill_missing"]
    wide = df.pivot_table(index=["view", "fraction"], columns="method", values="accuracy", sort=False)
    for method in [c for c in wide.columns if c not in ("single", "both_real")]:
        wide[f"{method} - single"] = wide[method] - wide["single"]
    return wide.round(3)


def plot_fill_missing(record: dict):
    """Accuracy against the training fraction, one panel per missing modality."""
    import matplotlib.pyplot as plt
    df = _frame(record)
    df = df[df["protocol"] == "fill_missing"]
    views = list(dict.fromkeys(df["view"]))
    fig, axes = plt.subplots(1, len(views), figsize=(5 * len(views), 3.2), squeeze=False)
    missing = {"audio->image": "image missing (filled from the clip)",
               "image->audio": "clip missing (filled from the image)"}
    for ax, view in zip(axes.flat, views):
        d = df[df["view"] == view]
        for method, g in d.groupby("method", sort=False):
            g = g.sort_values("fraction")
            ax.plot(g["fraction"], g["accuracy"], "o-", label=method)
        ax.set(title=missing.get(view, view), xlabel="training fraction", ylabel="test accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def examples(models: dict, n: int = 5) -> dict:
    """n test pairs (first clip of the first classes) with their translations by every method, for plots
    and listening: keys "classes", "clip", "image" (the pair), "mel" (the clip's log-mel), and per method
    "<method>/audio->image" (images) and "<method>/image->audio" (log-mels of the paired image)."""
    study, data, outputs = models["study"], models["data"], models["outputs"]
    y_a = data["y"]["audio"]
    order = [int(np.flatnonzero(y_a == c)[0]) for c in range(study.num_classes) if (y_a == c).any()][:n]
    i_pos = data["i_pos"][order]
    out = {"classes": [study.classes[y_a[k]] for k in order], "clip": data["X"]["audio"][order],
           "image": data["X"]["image"][i_pos], "mel": data["mel"][order]}
    for method, outs in outputs.items():
        if "audio->image" in outs:
            out[f"{method}/audio->image"] = outs["audio->image"][order]
        if "image->audio" in outs:
            out[f"{method}/image->audio"] = outs["image->audio"][i_pos]
    return out


def plot_examples(ex: dict):
    """Rows: the real image, each method's audio->image; the real clip's log-mel, each method's image->audio."""
    import matplotlib.pyplot as plt
    image_rows = ["image"] + [k for k in ex if k.endswith("/audio->image")]
    mel_rows = ["mel"] + [k for k in ex if k.endswith("/image->audio")]
    n = len(ex["classes"])
    fig, axes = plt.subplots(len(image_rows) + len(mel_rows), n, squeeze=False,
                             figsize=(1.9 * n, 1.45 * (len(image_rows) + len(mel_rows))))
    for r, key in enumerate(image_rows + mel_rows):
        for c in range(n):
            ax = axes[r, c]
            if key in image_rows:
                ax.imshow(ex[key][c].permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                ax.imshow(ex[key][c].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-2.5, vmax=2.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(key.replace("/", "\n"), fontsize=7)
            if r == 0:
                ax.set_title(ex["classes"][c], fontsize=8)
    fig.tight_layout()
    return fig
