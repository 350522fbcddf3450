"""The study's building blocks, shared by every notebook: one data preparation, one evaluation protocol.

A notebook calls `prepare_study(params)`, trains what it studies, hands its models to
`evaluate_probas` / `evaluate_embeddings` / `evaluate_cross_modal`, and writes `make_record(...)`.
Every result is a row {method, protocol, view, test_set, accuracy, macro_f1, ...}, so records
from all notebooks compare key for key and `python -m helpers report` can stack them.
"""
from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import evaluation as ev
from . import shortcuts
from . import schema
from .config import StudyError, cache_dir
from .data import (EvaluationSet, Modality, PairedDataset, audio_windows, images_float, load_dataset,
                   load_evaluation_set, load_modality)
from .models import IMAGENET_SIZE, Classifier, ImageNetFeatures, make_encoder, standardize
from .splits import (Split, balanced_pairs, fixed_test_pairs, inject_label_noise, make_split, pair_by_class,
                     test_split)
from .training import History, budget, fit, mixed_batch, predict, resolve_device, seed_everything

MODALITIES = ("audio", "image")


def study_params(params: dict | None = None, notebook: str = "02_baselines") -> dict:
    """The notebook's defaults (helpers.schema) updated with `params`; bad names and values fail here."""
    return schema.check(notebook, params)


@functools.lru_cache(maxsize=4)
def _load(dataset: str, sample_rate: int, image_size: int, progress: bool, root: str | None = None) -> PairedDataset:
    return load_dataset(dataset, root, sample_rate=sample_rate, image_size=image_size, progress=progress)


@dataclass
class Study:
    """The data of one run: splits, (noisy) training labels, fixed test pairs, and batch makers."""
    params: dict
    data: PairedDataset
    device: torch.device
    split: dict[str, Split]                 # per modality, indices into data.audio / data.image
    y_train: dict[str, np.ndarray]          # per modality, labels for all items, noisy on train+val
    noise_achieved: dict[str, float]
    test_pairs: np.ndarray                  # image index paired with each audio test index
    generator: torch.Generator              # batch order
    external: EvaluationSet | None = None       # independent data, evaluated apart (never trained on)
    timings: dict = field(default_factory=dict)
    _test_sets: dict = field(default_factory=dict, repr=False)   # memo of test_sets(), per modality
    not_testable: dict = field(default_factory=dict)  # modality -> counterfactuals the preprocessing undoes
    predictions: dict = field(default_factory=dict)   # "method/protocol/view/test_set" -> predicted class per item
    # One stream per modality for training-time crops and augmentation, so that changing one modality's
    # preprocessing (an image-only mitigation) leaves the other modality's random draws as they were.
    augment_generators: dict[str, torch.Generator] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))   # the run's start

    @property
    def num_classes(self) -> int:
        return self.data.spec.num_classes

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def clip_samples(self) -> int:
        return int(round(self.params["clip_seconds"] * self.params["sample_rate"]))

    @property
    def test_pair_positions(self) -> np.ndarray:
        """Position of each test pair's image inside the image test split (pair k's clip is at position k
        of the audio test split): what indexes per-item test outputs, e.g. probabilities, by pair."""
        return np.searchsorted(self.split["image"].test, self.test_pairs)

    def reset_streams(self) -> None:
        """Restart the batch-order and augmentation streams from the seed: each model trained on this study
        then sees the same batches and crops whatever was trained before it (or whether it was at all)."""
        seed = self.params["seed"]
        self.generator.manual_seed(seed)
        for k, m in enumerate(MODALITIES):
            self.augment_generators[m].manual_seed(seed * 2 + k)

    def labels(self, modality: str, part: str, noisy: bool = True) -> np.ndarray:
        """Labels of a split part; noisy ones for training parts unless noisy=False."""
        idx = getattr(self.split[modality], part)
        source = self.y_train[modality] if noisy and part != "test" else getattr(self.data, modality).y
        return source[idx]

    # ---- model inputs ----------------------------------------------------------------------
    def audio_ready(self, X: torch.Tensor) -> torch.Tensor:
        """The audio pipeline after windowing: optional common bandwidth, loudness normalisation."""
        if self.params["lowpass_hz"]:
            X = shortcuts.lowpass(X, self.params["sample_rate"], self.params["lowpass_hz"])
        if self.params["normalize_loudness"]:
            X = shortcuts.normalize_loudness(X)
        return X

    def audio(self, idx, train: bool = False, source: Modality | None = None) -> torch.Tensor:
        buffers = (source or self.data.audio).X[torch.as_tensor(idx)]
        gen = self.augment_generators["audio"] if train and self.params["random_crop"] else None
        X = audio_windows(buffers, self.clip_samples, gen)
        if train and self.params["audio_augment"]:
            X = shortcuts.augment_audio(X, self.params["sample_rate"], self.augment_generators["audio"])
        return self.audio_ready(X)

    def image(self, idx, train: bool = False, source: Modality | None = None) -> torch.Tensor:
        X = images_float((source or self.data.image).X[torch.as_tensor(idx)])
        if train and self.params["augment"]:
            X = shortcuts.augment_images(X, self.augment_generators["image"])
        return X

    def inputs(self, modality: str, idx, train: bool = False) -> torch.Tensor:
        return (self.audio if modality == "audio" else self.image)(idx, train)

    def test_sets(self, modality: str) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
        """Plain test split, its counterfactual versions, and the external data if any: name -> (X, y).
        Built once per modality (the FFT band-limit and JPEG re-encode are not free); do not modify."""
        if modality not in self._test_sets:
            self._test_sets[modality] = self._build_test_sets(modality)
        return self._test_sets[modality]

    def _build_test_sets(self, modality: str) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
        idx = self.split[modality].test
        y = getattr(self.data, modality).y[idx]
        if modality == "audio":
            raw = audio_windows(self.data.audio.X[torch.as_tensor(idx)], self.clip_samples)
            sr = self.params["sample_rate"]
            sets = {"test": (self.audio_ready(raw), y)}
            for name, fn in shortcuts.AUDIO_COUNTERFACTUALS.items():
                X = self.audio_ready(fn(raw, sr))
                if changes_model_input(sets["test"][0], X, modality):
                    sets[name] = (X, y)
                else:
                    self.not_testable.setdefault(modality, []).append(name)
        else:
            raw = self.data.image.X[torch.as_tensor(idx)]
            sets = {"test": (images_float(raw), y)}
            for name, fn in shortcuts.IMAGE_COUNTERFACTUALS.items():
                sets[name] = (images_float(fn(raw)), y)
        if self.external is not None and modality in self.external.modalities:
            ext = self.external.modalities[modality]
            every = np.arange(len(ext))
            X = self.audio(every, source=ext) if modality == "audio" else self.image(every, source=ext)
            sets["external"] = (X, ext.y)
        return sets


def changes_model_input(plain: torch.Tensor, changed: torch.Tensor, modality: str, tol: float = 1e-3) -> bool:
    """Can this counterfactual move a prediction at all? Not when the preprocessing undoes it: at 8 kHz a
    4 kHz band limit is the Nyquist frequency, and every audio encoder standardises each clip, which
    undoes a gain. Compared after that standardisation, relative to the input's scale."""
    if modality == "audio":
        plain, changed = (standardize(x.float(), dims=1) for x in (plain, changed))
    scale = float(plain.abs().max()) or 1.0
    return plain.shape != changed.shape or float((plain - changed).abs().max()) > tol * scale


def prepare_study(params: dict | None = None, notebook: str = "02_baselines") -> Study:
    """Validate `notebook`'s parameters, load (cached) data, split, inject label noise, fix the test pairs."""
    p = study_params(params, notebook)
    t0 = time.perf_counter()
    data = _load(p["dataset"], p["sample_rate"], p["image_size"], p["progress"])
    load_seconds = time.perf_counter() - t0
    generator = seed_everything(p["seed"])
    spec = data.spec
    confusable = {spec.classes.index(a): spec.classes.index(b) for a, b in spec.confusable.items()}
    split, y_train, achieved = {}, {}, {}
    for m in MODALITIES:
        mod = getattr(data, m)
        split[m] = make_split(mod.y, spec.num_classes, p["fraction"], p["seed"],
                              test_fraction=spec.test_fraction, split_seed=spec.split_seed)
        trainval = np.concatenate([split[m].train, split[m].val])
        noisy, achieved[m] = inject_label_noise(mod.y[trainval], p["noise"], p["noise_kind"], spec.num_classes,
                                                p["seed"] + (0 if m == "audio" else 1), confusable)
        y_train[m] = mod.y.copy()
        y_train[m][trainval] = noisy
    test_pairs = fixed_test_pairs(data.audio.y[split["audio"].test], data.image.y[split["image"].test],
                                  spec.split_seed)
    external = _load_external(p, data) if p["external_data"] else None
    study = Study(p, data, resolve_device(p["device"]), split, y_train, achieved,
                 split["image"].test[test_pairs], generator, external, {"load_data_s": round(load_seconds, 3)},
                 augment_generators={m: torch.Generator() for m in MODALITIES})
    study.reset_streams()
    return study


def _load_external(p: dict, data: PairedDataset) -> EvaluationSet:
    """The independent collection named by external_data, on the classes it shares with the study."""
    return load_evaluation_set(p["external_data"], data.classes, sample_rate=p["sample_rate"],
                               image_size=p["image_size"], progress=p["progress"])


# --------------------------------------------------------------------------- training
def pair_sampler(study: Study, rng: np.random.Generator):
    """A function that draws one epoch of training pairs (clip indices, image indices): balanced over both
    modalities (`balanced_pairs`: every training clip and image used), each clip with an image of its
    (noisy) label's class, so a flipped clip gets an image of the wrong animal (noisy correspondence).
    Pairing by class is label use: every paired method has the training labels."""
    a_idx, i_idx = study.split["audio"].train, study.split["image"].train
    y_a = study.y_train["audio"][a_idx]
    y_i = study.data.image.y[i_idx]  # images are drawn by their true class: a flipped clip gets a wrong image

    def draw():
        a, i = balanced_pairs(y_a, y_i, rng)
        return a_idx[a], i_idx[i]
    return draw


class EpochPairs:
    """The training pairs of a paired core (notebooks 03, 04, 06), drawn by `pair_sampler` afresh at the start
    of every epoch: give `start_epoch` to fit's on_epoch_start, then `batch(b)` in the step.

    Records per epoch what the pairs were: the share of mismatched pairs (the clip's true animal is not the
    image's), and the pairs seen; a step that drops pairs (small-loss selection) adds to "dropped" and
    "dropped_mismatched" of stats[-1], and `summary()` scores those drops.
    """

    def __init__(self, study: Study, rng: np.random.Generator):
        self.study = study
        self.a_idx = study.split["audio"].train   # the training clips
        self._draw = pair_sampler(study, rng)
        self.a_pairs, self.i_pairs = self._draw()  # the first epoch's pairs, redrawn at every epoch start
        self.num_pairs = len(self.a_pairs)         # the same every epoch: it depends on the class counts only
        self.epoch, self._started = -1, False
        self.stats: list[dict] = []

    def start_epoch(self, epoch: int) -> None:
        """Draw this epoch's pairs (the first epoch uses the pairs drawn at construction)."""
        if self._started:
            self.a_pairs, self.i_pairs = self._draw()
        self.epoch, self._started = epoch, True
        mismatch = self.mismatched(self.a_pairs, self.i_pairs)
        self.stats.append({"mismatch_rate": float(mismatch.mean()), "pairs_seen": 0, "mismatched_seen": 0,
                           "dropped": 0, "dropped_mismatched": 0})

    def batch(self, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(clip indices, image indices, pairing labels) of the batch `b` (positions in this epoch's pairs)."""
        if not self._started:
            raise StudyError("no training pairs drawn yet: pass EpochPairs.start_epoch to fit as on_epoch_start")
        pos = b.numpy()
        a, i = self.a_pairs[pos], self.i_pairs[pos]
        self.stats[-1]["pairs_seen"] += len(pos)
        self.stats[-1]["mismatched_seen"] += int(self.mismatched(a, i).sum())
        return a, i, torch.as_tensor(self.study.y_train["audio"][a])   # the noisy labels that formed the pairs

    def mismatched(self, a: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Whether each pair (clip a[k], image i[k]) shows two different animals."""
        return self.study.data.image.y[i] != self.study.data.audio.y[a]

    def summary(self) -> dict:
        """Per epoch: share of mismatched pairs; with small-loss selection, how well the drops hit them."""
        out = {"mismatch_rate": [s["mismatch_rate"] for s in self.stats],
               "dropped_share": [s["dropped"] / max(s["pairs_seen"], 1) for s in self.stats],
               # precision: share of the dropped pairs that were mismatched; recall: share of mismatched dropped
               "drop_precision": [s["dropped_mismatched"] / s["dropped"] if s["dropped"] else None for s in self.stats],
               "drop_recall": [s["dropped_mismatched"] / s["mismatched_seen"] if s["mismatched_seen"] and s["dropped"]
                               else None for s in self.stats]}
        out["train_clip_flip_rate"] = float((self.study.y_train["audio"][self.a_idx]
                                             != self.study.data.audio.y[self.a_idx]).mean())
        return out


def val_pairs(study: Study, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A fixed pairing of the validation part, formed as the training pairs are: each validation clip with a
    validation image of its (noisy) label's class. Returns positions (a_pos, i_pos) into split["audio"].val
    and split["image"].val; a clip whose class has no validation image cannot be paired and is left out."""
    y_a, y_i = study.labels("audio", "val"), study.labels("image", "val", noisy=False)
    keep = np.isin(y_a, y_i)
    a_pos = np.flatnonzero(keep)
    if not keep.any():
        return a_pos, a_pos.copy()
    return a_pos, pair_by_class(y_a[keep], y_i, rng)


def train_classifier(study: Study, kind: str, encoder: torch.nn.Module | None = None,
                     num_epochs: int | None = None, lr: float | None = None, desc: str | None = None
                     ) -> tuple[Classifier, History]:
    """Supervised training (from scratch, or fine-tuning `encoder`), epochs chosen on validation macro-F1."""
    p = study.params
    modality = "image" if kind == "image" or kind.endswith(":image") else "audio"
    seed_everything(p["seed"])
    study.reset_streams()   # its batches and crops do not depend on what this study trained before
    if encoder is None:
        encoder = make_encoder(kind, p["embed_dim"], p["sample_rate"], spec_augment=p["spec_augment"])
    model = Classifier(encoder, study.num_classes).to(study.device)
    train_idx = study.split[modality].train
    y = torch.as_tensor(study.labels(modality, "train"))
    X_val = study.inputs(modality, study.split[modality].val)
    y_val = study.labels(modality, "val")

    mix = schema.mix_by_modality(p.get("mix", "none"))[modality]   # notebooks without the parameter do not mix

    def step(b, gen):
        X = study.inputs(modality, train_idx[b.numpy()], train=True).to(study.device)
        yb = y[b].to(study.device)
        if mix == "none":
            return F.cross_entropy(model(X), yb)
        X, perm, lam = mixed_batch(X, mix, study.augment_generators[modality])
        logits = model(X)
        return lam * F.cross_entropy(logits, yb) + (1 - lam) * F.cross_entropy(logits, yb[perm])

    def val_score():
        pred = predict(model, X_val, study.device).argmax(1).numpy()
        return ev.classification_metrics(y_val, pred, study.num_classes)["macro_f1"]

    history = fit(model, step, len(train_idx), **budget(p, num_epochs=num_epochs, lr=lr), generator=study.generator,
                  val_score=val_score, desc=desc or f"{kind} supervised")
    return model, history


# --------------------------------------------------------------------------- evaluation
def _rows_from_probas(study: Study, method: str, protocol: str, probas: dict[str, dict[str, np.ndarray]],
                      labels: dict[str, dict[str, np.ndarray]], val: dict | None = None) -> tuple[list[dict], dict]:
    """Metrics for each modality and test set, and fused over the fixed test pairs.

    Fusion: each view's posterior is calibrated by temperature scaling on its validation predictions
    (`val`: modality -> (probabilities, labels) of study.split[modality].val; without it, T = 1), then the
    product rule (`ev.product_rule`, the views being independent given the class) gives view "fused"; a
    logistic regression stacked on the validation pairs' log-probabilities gives "fused_stacked".
    """
    rows, details = [], {}

    # validation accuracy per view: what "best" is chosen by in the report (never the test split)
    val_accuracy = {m: float(np.mean(p.argmax(1) == y)) for m, (p, y) in (val or {}).items() if len(y)}

    def add(view, test_set, y_true, proba):
        pred = proba.argmax(1)
        m = ev.classification_metrics(y_true, pred, study.num_classes)
        rows.append({"method": method, "protocol": protocol, "view": view, "test_set": test_set,
                     "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"], **ev.chance_levels(y_true),
                     "val_accuracy": val_accuracy.get(view)})   # None: nothing to score it on
        study.predictions[f"{method}/{protocol}/{view}/{test_set}"] = pred.tolist()   # for item-level tests
        if test_set in ("test", "external"):
            key = f"{method}/{protocol}/{view}" + ("/external" if test_set == "external" else "")
            details[key] = {"per_class_recall": m["per_class_recall"], "confusion": m["confusion"]}

    for modality, sets in probas.items():
        for test_set, proba in sets.items():
            add(modality, test_set, labels[modality][test_set], proba)
    if set(probas) == set(MODALITIES):
        # A pair is a test clip and the image test_pairs gives it: the fused view is scored on the clips' items
        # (and class mix), so the image model is also scored on the same pairs ("image_on_pairs") to compare
        # fused with image on equal footing. The audio view already is the pairs' clips.
        a_pos = np.arange(len(study.split["audio"].test))
        i_pos = study.test_pair_positions
        y_pair = labels["audio"]["test"][a_pos]
        T = {m: ev.fit_temperature(*val[m]) if val else 1.0 for m in MODALITIES}
        cal = {m: {n: ev.calibrate(p, T[m]) for n, p in probas[m].items()} for m in MODALITIES}
        prior = np.bincount(study.labels("image", "train"), minlength=study.num_classes) + 1.0
        stacker = None
        if val:   # the stacker learns on validation pairs, formed as the training pairs are
            va, vi = val_pairs(study, np.random.default_rng(60_000 + study.params["seed"]))
            if len(va):
                pv = [ev.calibrate(val["audio"][0], T["audio"])[va], ev.calibrate(val["image"][0], T["image"])[vi]]
                y_v = val["audio"][1][va]
                stacker = ev.stacked_fusion(pv, y_v, study.num_classes, seed=study.params["seed"])
                val_accuracy["fused"] = float(np.mean(ev.product_rule(pv, prior).argmax(1) == y_v))
                val_accuracy["image_on_pairs"] = float(np.mean(pv[1].argmax(1) == y_v))
                # fused_stacked is fitted on these validation pairs: its validation score would be in-sample
        names = [n for n in dict.fromkeys([*probas["audio"], *probas["image"]]) if n != "external"]
        for test_set in names:   # a counterfactual of one modality is fused with the other's plain test items
            pa = cal["audio"].get(test_set, cal["audio"]["test"])[a_pos]
            pi = cal["image"].get(test_set, cal["image"]["test"])[i_pos]
            add("fused", test_set, y_pair, ev.product_rule([pa, pi], prior))
            if stacker is not None:
                add("fused_stacked", test_set, y_pair, stacker([pa, pi]))
            if test_set in probas["image"]:
                add("image_on_pairs", test_set, y_pair, probas["image"][test_set][i_pos])
        details[f"{method}/{protocol}/calibration"] = {"temperature": T, "fused_prior": "image training labels"}
    return rows, details


def evaluate_probas(study: Study, method: str, protocol: str, models: dict[str, torch.nn.Module]) -> tuple[list, dict]:
    """Evaluate trained classifiers (modality -> model returning logits) on every test set and fused."""
    probas, labels = {}, {}
    for modality, model in models.items():
        model.eval()
        probas[modality], labels[modality] = {}, {}
        for name, (X, y) in study.test_sets(modality).items():
            probas[modality][name] = torch.softmax(predict(model, X, study.device), 1).numpy()
            labels[modality][name] = y
    val = {m: (torch.softmax(predict(model, study.inputs(m, study.split[m].val), study.device), 1).numpy(),
               study.labels(m, "val")) for m, model in models.items()}
    return _rows_from_probas(study, method, protocol, probas, labels, val)


def embed_all(study: Study, embed_fns: dict) -> dict[str, dict[str, np.ndarray]]:
    """Frozen embeddings of train, val and every test set, per modality."""
    out = {}
    for modality, fn in embed_fns.items():
        out[modality] = {part: predict(fn, study.inputs(modality, getattr(study.split[modality], part)),
                                       study.device).numpy() for part in ("train", "val")}
        out[modality]["test_sets"] = {name: (predict(fn, X, study.device).numpy(), y)
                                      for name, (X, y) in study.test_sets(modality).items()}
    return out


def evaluate_embeddings(study: Study, method: str, embed_fns: dict | None = None, Z: dict | None = None,
                        protocols=("linear_probe", "knn"), noisy_labels: bool | None = None) -> tuple[list, dict]:
    """Linear probe (C chosen on validation) and k-NN on frozen embeddings, per modality and fused.

    Probes learn from the (noisy) training labels, as every other use of labels does: they are all a
    practitioner has. probe_noise=False (or noisy_labels=False) gives them the clean labels instead, and the
    rows are then named "<protocol>_clean", a protocol of their own.
    """
    Z = Z or embed_all(study, embed_fns)
    noisy = study.params["probe_noise"] if noisy_labels is None else noisy_labels
    rows, details = [], {}
    for protocol in protocols:
        probas, labels, val = {}, {}, {}
        for modality, z in Z.items():
            names = list(z["test_sets"])
            y_val = study.labels(modality, "val", noisy)
            # the validation items ride along after the test sets: their probabilities calibrate the fusion
            Z_test = np.concatenate([z["test_sets"][n][0] for n in names] + [z["val"]])
            y_test = np.concatenate([z["test_sets"][n][1] for n in names] + [y_val])
            y_tr = study.labels(modality, "train", noisy)
            if protocol == "linear_probe":
                _, _, proba = ev.linear_probe(z["train"], y_tr, Z_test, y_test, study.num_classes,
                                              Z_val=z["val"], y_val=y_val, seed=study.params["seed"])
            else:
                _, _, proba = ev.knn_probe(z["train"], y_tr, Z_test, y_test, study.num_classes)
            bounds = np.cumsum([0] + [len(z["test_sets"][n][1]) for n in names])
            probas[modality] = {n: proba[bounds[k]:bounds[k + 1]] for k, n in enumerate(names)}
            labels[modality] = {n: z["test_sets"][n][1] for n in names}
            val[modality] = (proba[bounds[-1]:], y_val)
        r, d = _rows_from_probas(study, method, protocol if noisy else f"{protocol}_clean", probas, labels, val)
        rows += r
        details.update(d)
    return rows, details


def evaluate_cross_modal(study: Study, method: str, Z: dict) -> list[dict]:
    """Retrieval (recall@1, recall@5, mAP; correct = same class) and zero-shot by class centroid."""
    za, ya = Z["audio"]["test_sets"]["test"]
    zi, yi = Z["image"]["test_sets"]["test"]
    rows = []
    for view, (zq, yq, zg, yg) in {"audio->image": (za, ya, zi, yi), "image->audio": (zi, yi, za, ya)}.items():
        r = ev.retrieval_metrics(zq, yq, zg, yg)
        zs = ev.zero_shot_centroid(zq, yq, zg, yg, study.num_classes)
        chance = ev.chance_levels(yq)
        rows.append({"method": method, "protocol": "retrieval", "view": view, "test_set": "test", **r, "n": len(yq),
                     **chance})
        rows.append({"method": method, "protocol": "zero_shot", "view": view, "test_set": "test",
                     "accuracy": zs["accuracy"], "macro_f1": zs["macro_f1"], "n": len(yq), **chance,
                     "val_accuracy": None})   # by class centroid: nothing was chosen on validation
    return rows


def reference_errors(study: Study, modality: str, target, T_test: torch.Tensor, y_test: np.ndarray) -> dict:
    """The references of every reconstruction or translation into `modality`: per-element MSE to T_test of two
    predictions that ignore the input, the mean training target ("mean") and the mean training target of the
    row's class ("class_mean"). `target(x)` maps model inputs of the modality to what is reconstructed (the
    image, or a log-mel); y_test is the class of each row of T_test. The training items are grouped by their
    true class: an oracle, the floor of a class-level cross reconstruction (a clip's paired image is any
    image of its class)."""
    tr = study.split[modality].train
    T_tr = predict(target, study.inputs(modality, tr), study.device)
    y_tr = getattr(study.data, modality).y[tr]
    means = torch.stack([T_tr[y_tr == c].mean(0) if (y_tr == c).any() else T_tr.mean(0)
                         for c in range(study.num_classes)])
    return {"mean": float(F.mse_loss(T_tr.mean(0, keepdim=True).expand_as(T_test), T_test)),
            "class_mean": float(F.mse_loss(means[torch.as_tensor(y_test)], T_test))}


# --------------------------------------------------------------------------- the ImageNet model
def _cached_features(extractor: ImageNetFeatures, X: torch.Tensor) -> np.ndarray:
    """Features of uint8 images X, cached on disk by their content (the extractor is frozen)."""
    path = cache_dir() / "imagenet" / f"{hashlib.sha1(X.numpy().tobytes()).hexdigest()[:16]}.npy"
    try:
        return np.load(path)
    except Exception:  # missing or corrupt: compute
        pass
    Z = extractor.extract(images_float(X)).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, Z)
    tmp.replace(path)
    return Z


def imagenet_images(study: Study) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The study's images, and the external ones, decoded at the ImageNet model's own 224 px (cached like
    every decode): fed the study's 64 px images upsampled, it would be judged on blurred pictures."""
    p = study.params
    X = load_modality(study.data.spec, "image", image_size=IMAGENET_SIZE, progress=p["progress"])
    if X.paths != study.data.image.paths:
        raise StudyError(f"the images decoded at {IMAGENET_SIZE} px are not the {p['image_size']} px ones (a file "
                         "decodes at one size only?); run `python -m helpers data check` and look at the failures")
    external = None
    if study.external is not None and "image" in study.external.modalities:
        ext = load_evaluation_set(p["external_data"], study.classes, sample_rate=p["sample_rate"],
                                  image_size=IMAGENET_SIZE, progress=p["progress"], modalities=("image",))
        external = ext.modalities["image"].X
    return X.X, external


def imagenet_features(study: Study) -> dict:
    """EfficientNet-Lite0 (ImageNet) features for the probe protocol: train, val and every test set.

    Every image is embedded once per data set (not once per split or seed), and the counterfactual
    test images once, so sweeps over seeds and fractions pay for the ImageNet model only once.
    """
    extractor = ImageNetFeatures().to(study.device)
    X, X_external = imagenet_images(study)
    Z_all = _cached_features(extractor, X)
    s = study.split["image"]
    test_sets = {"test": (Z_all[s.test], study.data.image.y[s.test])}
    raw = X[torch.as_tensor(s.test)]
    for name, fn in shortcuts.IMAGE_COUNTERFACTUALS.items():
        test_sets[name] = (_cached_features(extractor, fn(raw)), study.data.image.y[s.test])
    if X_external is not None:
        test_sets["external"] = (_cached_features(extractor, X_external), study.external.modalities["image"].y)
    return {"train": Z_all[s.train], "val": Z_all[s.val], "test_sets": test_sets}


# --------------------------------------------------------------------------- audits and the record
def audit_split(y: np.ndarray, num_classes: int, seed: int, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/test split of all items drawn from the run seed, for the metadata audits only.

    The audits ask how much of the data's labelling the file metadata alone predicts. On the study's fixed
    test split, with the whole pool as training data (fraction 0.8), every seed would fit and score the same
    audit, and an interval over seeds would be one measurement counted n times; a split per seed varies it.
    """
    return test_split(y, num_classes, test_fraction, 50_000 + seed)


def nuisance_audits(study: Study) -> dict:
    """Accuracy of classifiers that see only nuisance facts (sample rate, duration, format, size, border
    colour...), on a split of all items that changes with the seed (`audit_split`)."""
    out = {}
    for modality in MODALITIES:
        mod = getattr(study.data, modality)
        feats = (shortcuts.audio_nuisance_features(mod.meta) if modality == "audio"
                 else shortcuts.image_nuisance_features(mod.meta, mod.X))
        train, test = audit_split(mod.y, study.num_classes, study.params["seed"])
        args = (feats.iloc[train].reset_index(drop=True), mod.y[train], feats.iloc[test].reset_index(drop=True),
                mod.y[test])
        out[modality] = {"all_features": shortcuts.nuisance_audit(*args, seed=study.params["seed"]),
                         "single_feature": shortcuts.single_feature_audit(*args, seed=study.params["seed"])
                         .reset_index(names="feature").to_dict("records")}
    return out


def make_record(study: Study, notebook: str, rows: list[dict], details: dict | None = None, **extra) -> dict:
    """The metrics record every notebook writes: params, noise achieved, split sizes, results, timings."""
    return {
        "notebook": notebook, "params": study.params, "noise_achieved": study.noise_achieved,
        "split_sizes": {m: study.split[m].sizes() for m in MODALITIES},
        "num_test_pairs": len(study.test_pairs), "classes": study.classes, "device": str(study.device),
        "results": rows, "details": details or {}, "timings": study.timings, "started_at": study.started_at,
        "counterfactuals_not_testable": study.not_testable,
        "external": study.external.summary() if study.external is not None else None,
        # per-item predictions (study.predictions) in the order of these items, for paired item-level tests
        "test_items": {"audio": study.split["audio"].test, "image": study.split["image"].test,
                       "image_on_pairs": study.test_pairs},
        "test_labels": {"audio": study.data.audio.y[study.split["audio"].test],
                        "image": study.data.image.y[study.split["image"].test],
                        "pairs": study.data.audio.y[study.split["audio"].test],
                        **{f"external_{m}": mod.y for m, mod in
                           (study.external.modalities.items() if study.external is not None else ())}},
        "predictions": {k: v for k, v in study.predictions.items() if k in {
            f"{r['method']}/{r['protocol']}/{r['view']}/{r['test_set']}" for r in rows}}, **extra,
    }
