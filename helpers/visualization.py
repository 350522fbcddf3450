"""Notebook 08's core: what the feature spaces of every method look like.

For each method (supervised CNNs, the ImageNet model, contrastive and generative pre-training) it takes
the trained encoders saved by earlier runs (records under results/runs, matched on the data and input
settings) or trains what is missing at the quick profile, embeds the fixed test split, and measures:

* t-SNE maps of the test embeddings (colour = class, marker = modality; clips and images in one map
  for the cross-modal methods, whose spaces are shared);
* K-means with k = number of classes on each method's test embeddings (rows scaled to unit length,
  as every similarity in the study is a cosine), scored against the true classes by NMI, ARI and
  purity, and by the silhouette of the K-means partition (and of the true classes); for the joint
  maps, the NMI of the clusters with the *modality* says whether clusters follow the animal or the medium;
* linear probes on the same embeddings (the shared protocol), whose confusion matrices are plotted side by side;
* feature maps of early and late conv layers (`encoder.feature_maps`) for example images and clips.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import schema
from .config import RESULTS_DIR, StudyError
from .experiments import Study, evaluate_embeddings, make_record, prepare_study, train_classifier
from .models import make_encoder
from .records import load_records, params_match
from .training import predict

SUPERVISED = ("image", "audio_mel", "audio_wave")
CROSS_MODAL = {"contrastive": ("03_contrastive", "contrastive"), "supcon": ("03_contrastive", "supcon"),
               "mvae": ("04_generative", "mvae"), "autoencoder": ("04_generative", "autoencoder")}
VIS_METHODS = SUPERVISED + ("imagenet",) + tuple(CROSS_MODAL)
# An encoder trained by another run is usable here when it saw the same kind of inputs and has the same
# sizes; any fraction or seed is safe, since the test split is fixed by the dataset's split_seed.
# An image encoder does not care about the audio settings, nor an audio encoder about the image size.
IMAGE_MATCH = ("dataset", "image_size", "embed_dim")
AUDIO_MATCH = ("dataset", "sample_rate", "embed_dim", "clip_seconds", "lowpass_hz", "normalize_loudness")
ENCODER_MATCH = tuple(dict.fromkeys(IMAGE_MATCH + AUDIO_MATCH))
# Among usable runs: first the one trained as this run would train it (the same recipe and budget: a mitigation or
# recipe variant saved beside the defaults is taken for them only where no such run saved its encoder), then the
# closest in data, then the newest.
TRAINING = ("augment", "audio_augment", "random_crop", "mix", "spec_augment", "epochs", "patience", "val_window",
            "decay_epochs", "lr", "batch_size")
PREFER = ("fraction", "seed", "noise", "noise_kind")
MARKERS = {"audio": "o", "image": "^"}


# --------------------------------------------------------------------------- clustering scores
def purity(y_true, clusters) -> float:
    """Share of items whose cluster's majority class is their class (1 = every cluster is one class)."""
    y_true, clusters = np.asarray(y_true), np.asarray(clusters)
    if len(y_true) != len(clusters) or len(y_true) == 0:
        raise StudyError(f"purity needs as many cluster ids as labels; got {len(clusters)} and {len(y_true)}")
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(y_true[clusters == c]).max()
    return float(total / len(y_true))


def _unit(Z) -> np.ndarray:
    Z = np.asarray(Z.detach().cpu().numpy() if hasattr(Z, "detach") else Z, dtype=np.float64)
    if Z.ndim != 2 or len(Z) < 2:
        raise StudyError(f"embeddings must be a 2-d array of at least 2 rows; got shape {Z.shape}")
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def clustering_scores(Z, y, k: int | None = None, seed: int = 0, modality=None) -> dict:
    """K-means (k = number of classes unless given, 10 restarts) on unit-length rows of Z, scored against y.

    nmi, ari, purity: agreement of the clusters with the classes (1 = perfect); silhouette: of the K-means
    partition (cluster separation, -1..1); silhouette_classes: of the true classes in the same space.
    With `modality` (one label per row), modality_nmi: how much the clusters follow the modality instead.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    X = _unit(Z)
    y = np.asarray(y).astype(int)
    if len(y) != len(X):
        raise StudyError(f"{len(X)} embeddings but {len(y)} labels")
    k = int(k or len(np.unique(y)))
    if not 2 <= k < len(X):
        raise StudyError(f"k={k} clusters need between 2 and {len(X) - 1} (the number of items - 1)")
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)
    out = {"k": k, "n": int(len(X)),
           "nmi": float(normalized_mutual_info_score(y, clusters)),
           "ari": float(adjusted_rand_score(y, clusters)),
           "purity": purity(y, clusters),
           "silhouette": float(silhouette_score(X, clusters)) if len(np.unique(clusters)) > 1 else float("nan"),
           "silhouette_classes": float(silhouette_score(X, y)) if len(np.unique(y)) > 1 else float("nan")}
    if modality is not None:
        out["modality_nmi"] = float(normalized_mutual_info_score(np.asarray(modality), clusters))
    return out


def clustering_table(Z_test: dict, seed: int = 0, num_classes: int | None = None) -> list[dict]:
    """One row per method and view (each modality; "joint" for methods with both, in their shared space).
    Z_test: method -> modality -> (Z, y)."""
    rows = []
    for method, mods in Z_test.items():
        views = {m: (Z, y, None) for m, (Z, y) in mods.items()}
        if len(mods) == 2:
            (Za, ya), (Zi, yi) = mods["audio"], mods["image"]
            views["joint"] = (np.concatenate([Za, Zi]), np.concatenate([ya, yi]),
                              np.array(["audio"] * len(ya) + ["image"] * len(yi)))
        for view, (Z, y, modality) in views.items():
            rows.append({"method": method, "view": view,
                         **clustering_scores(Z, y, k=num_classes, seed=seed, modality=modality)})
    return rows


# --------------------------------------------------------------------------- finding saved encoders
def find_run(notebook: str, params: dict, keys=ENCODER_MATCH, results_dir=None, require=None,
             prefer=PREFER) -> dict | None:
    """The record of `notebook` under results_dir/runs whose params equal `params` on `keys` and whose
    run folder holds the file `require` (if given): the one matching most of TRAINING, then most of
    `prefer`, then the newest."""
    wanted = {k: params[k] for k in keys if k in params}
    found = [r for r in load_records(results_dir or RESULTS_DIR)
             if r.get("notebook") == notebook and isinstance(r.get("params"), dict)
             and params_match(r["params"], wanted)
             and (require is None or (Path(r["run_dir"]) / require).is_file())]
    if not found:
        return None

    def closeness(r):
        return (sum(params_match(r["params"], {k: params[k]}) for k in TRAINING if k in params),
                sum(params_match(r["params"], {k: params[k]}) for k in prefer if k in params),
                str(r.get("written_at", "")))
    return max(found, key=closeness)


def _load_state(module: nn.Module, path: Path) -> nn.Module:
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return module


def load_supervised(study: Study, kind: str, results_dir=None):
    """(encoder, info) from the newest matching notebook 02 run that saved `<kind>_encoder.pt`, or None."""
    p = study.params
    keys = IMAGE_MATCH if kind == "image" else AUDIO_MATCH
    record = find_run("02_baselines", p, keys=keys, results_dir=results_dir, require=f"{kind}_encoder.pt")
    if record is None:
        return None
    try:
        enc = _load_state(make_encoder(kind, p["embed_dim"], p["sample_rate"]),
                          Path(record["run_dir"]) / f"{kind}_encoder.pt")
    except Exception as e:  # other code version or sizes
        warnings.warn(f"{record['run_dir']}: {kind}_encoder.pt does not load ({e}); training it here")
        return None
    return enc, {"source": "loaded", "run_dir": record["run_dir"], "epochs": record["params"].get("epochs"),
                 "fraction": record["params"].get("fraction"), "seed": record["params"].get("seed")}


def _cross_modal_run(study: Study, method: str, results_dir=None):
    """(record params, folder holding the weights) of a matching notebook 03/04 run of `method`, or None."""
    notebook, objective = CROSS_MODAL[method]
    for sub in (method, "."):  # run_notebook writes <run_dir>/<method>/, a direct core call <run_dir>/
        record = find_run(notebook, study.params, results_dir=results_dir, require=f"{sub}/image_encoder.pt")
        if record is None:
            continue
        objectives = [s.strip() for s in str(record["params"].get("objective", "")).split(",")]
        extras = {k: v for k, v in record["params"].items() if k not in ("simclr", "remedy")}
        if sub == "." and objectives != [objective]:
            continue
        if sub != "." and objective not in objectives:
            continue
        if record["params"].get("simclr") or record["params"].get("remedy", "none") != "none":
            continue  # a variant, not the plain method
        return {**extras, "objective": objective}, Path(record["run_dir"]) / sub, record
    return None


def load_cross_modal(study: Study, method: str, results_dir=None):
    """(model, info) for contrastive / supcon (ContrastiveModel) or mvae / autoencoder (PairedVAE) from a
    matching notebook 03 / 04 run, or None."""
    from . import pretraining as pt

    found = _cross_modal_run(study, method, results_dir)
    if found is None:
        return None
    rp, folder, record = found
    p = study.params
    try:
        if CROSS_MODAL[method][0] == "03_contrastive":
            rp = {**schema.defaults("03_contrastive"), **rp}
            model = pt.ContrastiveModel(rp["audio_encoder"], p["embed_dim"], p["sample_rate"], rp["proj_dim"], False)
            _load_state(model.encoders["image"], folder / "image_encoder.pt")
            _load_state(model.encoders["audio"], folder / "audio_encoder.pt")
            heads = nn.ModuleDict({"heads": model.heads, "logit_scale": model.logit_scale})
            state = torch.load(folder / "heads.pt", map_location="cpu", weights_only=True)
            heads.load_state_dict({k: v for k, v in state.items() if not k.startswith("ssl_heads.")})
        else:
            rp = {**schema.defaults("04_generative"), **rp}
            width = rp["decoder_width"]
            model = _load_state(pt.PairedVAE(rp["audio_encoder"], p["embed_dim"], p["sample_rate"], rp["latent_dim"],
                                             p["image_size"], study.clip_samples, method == "mvae", width),
                                folder / "vae.pt")
    except Exception as e:
        warnings.warn(f"{folder}: the saved {method} model does not load ({e}); training it here")
        return None
    return model.to(study.device).eval(), {"source": "loaded", "run_dir": str(folder),
                                           "epochs": rp.get("epochs"), "fraction": rp.get("fraction"),
                                           "seed": rp.get("seed")}


def train_cross_modal(study: Study, method: str, epochs: int):
    """Train contrastive / supcon / mvae / autoencoder with the shared cores at this study's parameters
    (no fine-tuning). Returns (model, info)."""
    from . import pretraining as pt
    notebook, objective = CROSS_MODAL[method]
    params = {k: v for k, v in study.params.items() if k in schema.STUDY_PARAMS}
    params |= {"objective": objective, "finetune_epochs": 0, "epochs": epochs}
    t0 = time.perf_counter()
    if notebook == "03_contrastive":
        _, models = pt.run_contrastive(params)
        model = models["model"]
    else:
        _, models = pt.run_generative(params)
        model = models["vae"]
    return model.eval(), {"source": "trained", "epochs": epochs, "seconds": round(time.perf_counter() - t0, 2)}


def cross_modal_embedders(model: nn.Module) -> dict:
    """modality -> function into the method's shared space: the projection head of a ContrastiveModel,
    the posterior mean of a PairedVAE."""
    if hasattr(model, "project"):
        return {m: (lambda x, m=m: model.project(m, x)) for m in ("audio", "image")}
    return {m: model.embedder(m) for m in ("audio", "image")}


# --------------------------------------------------------------------------- the notebook core
def _embed_parts(study: Study, modality: str, fn) -> dict:
    """Frozen embeddings of train, val, the plain test split and the external data if any (what the probes,
    maps and clusters need)."""
    s = study.split[modality]
    sets = {"test": (study.inputs(modality, s.test), getattr(study.data, modality).y[s.test])}
    if "external" in study.test_sets(modality):
        sets["external"] = study.test_sets(modality)["external"]
    return {"train": predict(fn, study.inputs(modality, s.train), study.device).numpy(),
            "val": predict(fn, study.inputs(modality, s.val), study.device).numpy(),
            "test_sets": {n: (predict(fn, X, study.device).numpy(), y) for n, (X, y) in sets.items()}}


def run_visualization(params: dict | None = None, results_dir=None) -> tuple[dict, dict]:
    """Gather (load or train) every method's encoders, embed the data, probe, cluster. Returns (record, out):
    out["Z"] method -> modality -> {train, val, test_sets}; out["encoders"] name -> encoder (for feature
    maps); out["study"]. The record holds the clustering table, linear-probe rows ("probe_results", in the
    common row format) with their confusion matrices ("details"), and where each model came from.
    Saved models are looked for under results_dir (default: $STUDY_RESULTS or results/)."""
    study = prepare_study(params, "08_visualization")
    methods = schema.parse_list(study.params["methods"])
    p = study.params
    Z, sources, encoders = {}, {}, {}
    t_all = time.perf_counter()
    for method in methods:
        t0 = time.perf_counter()
        if method in SUPERVISED:
            modality = "image" if method == "image" else "audio"
            found = load_supervised(study, method, results_dir) if p["reuse"] else None
            if found is None:
                clf, h = train_classifier(study, method, desc=f"{method} (missing: trained here)")
                found = (clf.encoder, {"source": "trained", "epochs": p["epochs"], "seconds": round(h.seconds, 2)})
            enc, sources[method] = found
            enc = enc.to(study.device).eval()
            encoders[method] = enc
            Z[method] = {modality: _embed_parts(study, modality, enc)}
        elif method == "imagenet":
            from .experiments import imagenet_features
            feats = imagenet_features(study)
            Z[method] = {"image": {"train": feats["train"], "val": feats["val"],
                                   "test_sets": {k: v for k, v in feats["test_sets"].items()
                                                 if k in ("test", "external")}}}
            sources[method] = {"source": "frozen ImageNet weights (efficientnet_lite0)"}
        else:
            found = load_cross_modal(study, method, results_dir) if p["reuse"] else None
            model, sources[method] = found if found is not None else train_cross_modal(study, method, p["epochs"])
            fns = cross_modal_embedders(model)
            Z[method] = {m: _embed_parts(study, m, fns[m]) for m in ("audio", "image")}
            encoders[f"{method}:image"], encoders[f"{method}:audio"] = model.encoders["image"], model.encoders["audio"]
        sources[method]["get_s"] = round(time.perf_counter() - t0, 2)
    study.timings["models_s"] = round(time.perf_counter() - t_all, 2)

    t0 = time.perf_counter()
    rows, details = [], {}
    for method, z in Z.items():
        r, d = evaluate_embeddings(study, method, Z=z, protocols=("linear_probe",))
        rows += r
        details |= d
    study.timings["probes_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    Z_test = {method: {m: z[m]["test_sets"]["test"] for m in z} for method, z in Z.items()}
    clustering = clustering_table(Z_test, seed=p["seed"], num_classes=study.num_classes)
    study.timings["clustering_s"] = round(time.perf_counter() - t0, 2)
    record = make_record(study, "08_visualization", rows, details, clustering=clustering, sources=sources,
                         methods=methods)
    # The probes re-measure models of notebooks 02-04: kept apart from "results", so that the report counts
    # this record as an analysis (like 05 and 07) and does not list those models twice.
    record["probe_results"] = record.pop("results")
    return record, {"Z": Z, "Z_test": Z_test, "encoders": encoders, "study": study}


# --------------------------------------------------------------------------- tables and figures
def clustering_frame(record: dict):
    """The clustering table: one row per method and view, NMI / ARI / purity / silhouettes (/ modality NMI)."""
    import pandas as pd
    df = pd.DataFrame(record["clustering"])
    cols = [c for c in ("nmi", "ari", "purity", "silhouette", "silhouette_classes", "modality_nmi", "n")
            if c in df]
    return df.set_index(["method", "view"])[cols].round(3)


def tsne_2d(Z, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000) -> np.ndarray:
    """2-d t-SNE (PCA initialisation) of unit-length rows; the perplexity is capped for small sets."""
    from sklearn.manifold import TSNE

    X = _unit(Z)
    perp = float(min(perplexity, max(1.0, (len(X) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", max_iter=max_iter,
                random_state=seed).fit_transform(X)


def tsne_figure(Z_test: dict, classes: list[str], seed: int = 0, perplexity: float = 30.0, ncols: int = 3,
                max_iter: int = 1000):
    """One t-SNE map per method of its test embeddings: colour = class, marker = modality (o clip, ^ image);
    the cross-modal methods show clips and images in one map."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    methods = list(Z_test)
    if not methods:
        raise StudyError("tsne_figure needs at least one method's embeddings")
    nrows = -(-len(methods) // ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(methods)), figsize=(4.2 * min(ncols, len(methods)), 4 * nrows),
                             squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, method in zip(axes.flat, methods):
        mods = Z_test[method]
        Z = np.concatenate([mods[m][0] for m in mods])
        Y = tsne_2d(Z, seed, perplexity, max_iter)
        start = 0
        for m in mods:
            y = np.asarray(mods[m][1])
            pts = Y[start:start + len(y)]
            start += len(y)
            ax.scatter(pts[:, 0], pts[:, 1], c=[cmap(int(c) % cmap.N) for c in y], marker=MARKERS[m], s=14,
                       alpha=0.75, linewidths=0)
        ax.set_title(f"{method} ({' + '.join(mods)})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    handles = [Line2D([], [], marker="s", ls="", color=cmap(c % cmap.N), label=name) for c, name in enumerate(classes)]
    handles += [Line2D([], [], marker=mk, ls="", color="grey", label=m) for m, mk in MARKERS.items()]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def _as_image(a: torch.Tensor) -> np.ndarray:
    """A feature map as a 2-d picture: the mean activation over channels for a [C, H, W] map; the map
    itself (channels x time, the most active channels on top) for a [C, T] one."""
    a = a.detach().float().cpu()
    if a.dim() == 3:
        return a.mean(0).numpy()
    return a[a.mean(1).argsort(descending=True)].numpy()


@torch.no_grad()
def feature_map_figure(encoder: nn.Module, X: torch.Tensor, titles: list[str], name: str = "",
                       sample_rate: int | None = None):
    """Per example (rows): the input (image, or the clip's log-mel), then the output of every conv block
    (`encoder.feature_maps`), early layers to late ones."""
    import matplotlib.pyplot as plt
    from .models import LogMel

    encoder.eval()
    device = next(encoder.parameters()).device
    maps = encoder.feature_maps(X.to(device))
    fig, axes = plt.subplots(len(X), 1 + len(maps), figsize=(2.3 * (1 + len(maps)), 1.8 * len(X)), squeeze=False)
    if X.dim() == 2:
        shown = (encoder.log_mel(X.to(device)) if hasattr(encoder, "log_mel")
                 else LogMel(sample_rate or 8000).to(device)(X.to(device))).cpu()
    for r in range(len(X)):
        if X.dim() == 4:
            axes[r, 0].imshow(X[r].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        else:
            axes[r, 0].imshow(shown[r].numpy(), origin="lower", aspect="auto", cmap="magma")
        axes[r, 0].set_ylabel(titles[r], fontsize=8)
        for c, a in enumerate(maps, start=1):
            axes[r, c].imshow(_as_image(a[r]), cmap="viridis", aspect="equal" if a.dim() == 4 else "auto")
            if r == 0:
                axes[r, c].set_title(f"block {c} {tuple(a.shape[1:])}", fontsize=7)
        if r == 0:
            axes[r, 0].set_title(f"{name} input", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def example_inputs(study: Study, modality: str, n: int = 4) -> tuple[torch.Tensor, list[str]]:
    """The first test item of each of the first n classes, and its class name."""
    idx = study.split[modality].test
    y = getattr(study.data, modality).y[idx]
    order = [int(idx[np.flatnonzero(y == c)[0]]) for c in range(study.num_classes) if (y == c).any()][:n]
    return study.inputs(modality, order), [study.classes[getattr(study.data, modality).y[i]] for i in order]
