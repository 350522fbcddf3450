"""Visualisation (notebook 08's core): clustering scores on hand-made embeddings, t-SNE and feature-map
figures, and finding encoders saved by earlier runs (synthetic data)."""
import json

import matplotlib
import numpy as np
import pytest
import torch

from helpers import visualization as vis
from helpers.config import StudyError
from helpers.models import make_encoder

matplotlib.use("Agg")
SMALL = dict(external_data="", image_size=32, sample_rate=8000, clip_seconds=0.5, epochs=1, progress=False)


def blobs(num_classes=4, per_class=12, dim=6, spread=0.01, seed=0):
    """Tight, far-apart clusters: one per class."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:num_classes] * 5
    y = np.repeat(np.arange(num_classes), per_class)
    return centres[y] + spread * rng.standard_normal((len(y), dim)), y


@pytest.fixture
def env(synthetic_study_env):
    """The synthetic data and Study of this module (tests/conftest.py), its folders set for each test."""
    return synthetic_study_env


def test_perfect_clusters_score_one():
    Z, y = blobs()
    s = vis.clustering_scores(Z, y, seed=0)
    assert s["nmi"] == pytest.approx(1.0) and s["ari"] == pytest.approx(1.0) and s["purity"] == pytest.approx(1.0)
    assert s["silhouette"] > 0.9 and s["silhouette_classes"] > 0.9 and s["k"] == 4 and s["n"] == len(y)
    # labels renamed: the same partition, the same scores
    assert vis.clustering_scores(Z, (y + 1) % 4)["nmi"] == pytest.approx(1.0)


def test_uninformative_embeddings_score_low():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 25)
    s = vis.clustering_scores(rng.standard_normal((100, 6)), y)
    assert s["nmi"] < 0.3 and s["ari"] < 0.2 and s["purity"] < 0.6


def test_purity_by_hand():
    assert vis.purity([0, 0, 1, 1], [5, 5, 5, 5]) == 0.5
    assert vis.purity([0, 0, 1, 2], [0, 0, 1, 1]) == 0.75
    with pytest.raises(StudyError):
        vis.purity([0, 1], [0])
    with pytest.raises(StudyError, match="clusters"):
        vis.clustering_scores(np.ones((3, 2)), [0, 1, 2], k=5)


def test_clustering_table_joint_view_measures_the_modality():
    Z, y = blobs()
    # a cross-modal method whose clips and images share one space, class by class: modality does not cluster
    Z_test = {"shared": {"audio": (Z, y), "image": (Z + 0.01, y)}, "image_only": {"image": (Z, y)}}
    rows = {(r["method"], r["view"]): r for r in vis.clustering_table(Z_test)}
    assert set(rows) == {("shared", "audio"), ("shared", "image"), ("shared", "joint"), ("image_only", "image")}
    assert rows[("shared", "joint")]["nmi"] == pytest.approx(1.0)
    assert rows[("shared", "joint")]["modality_nmi"] < 0.05
    assert "modality_nmi" not in rows[("image_only", "image")]


def test_tsne_figure_builds():
    Z, y = blobs(per_class=8)
    fig = vis.tsne_figure({"a": {"audio": (Z, y), "image": (Z + 0.1, y)}, "b": {"image": (Z, y)}},
                          [f"c{k}" for k in range(4)], perplexity=5, max_iter=250)
    assert len([ax for ax in fig.axes if ax.collections]) == 2
    assert vis.tsne_2d(Z[:6], perplexity=30, max_iter=250).shape == (6, 2)  # perplexity capped for a tiny set
    with pytest.raises(StudyError):
        vis.tsne_figure({}, ["c0"])


def test_feature_map_figures_build(env):
    study = env["study"]
    for kind, modality in (("image", "image"), ("audio_mel", "audio"), ("audio_wave", "audio")):
        X, titles = vis.example_inputs(study, modality, n=2)
        enc = make_encoder(kind, 16, 8000)
        fig = vis.feature_map_figure(enc, X, titles, kind, sample_rate=8000)
        assert len(fig.axes) == 2 * (1 + len(enc.blocks))  # the input, then every conv block


def _fake_run(results, notebook, name, params, files):
    run = results / "runs" / notebook / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"notebook": notebook, "params": params,
                                                  "written_at": name}))
    for fname, module in files.items():
        (run / fname).parent.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), run / fname)
    return run


def test_saved_encoders_are_found_and_loaded(env, tmp_path):
    study = env["study"]
    p = study.params
    enc = make_encoder("image", p["embed_dim"], p["sample_rate"])
    _fake_run(tmp_path, "02_baselines", "old", {**p, "image_size": 64}, {"image_encoder.pt": enc})  # other inputs
    assert vis.load_supervised(study, "image", results_dir=tmp_path) is None
    _fake_run(tmp_path, "02_baselines", "new", {**p, "fraction": 0.5, "seed": 3}, {"image_encoder.pt": enc})
    loaded, info = vis.load_supervised(study, "image", results_dir=tmp_path)
    assert info["source"] == "loaded" and info["fraction"] == 0.5
    assert torch.equal(loaded.proj.weight, enc.proj.weight)
    # a newer run of this seed and fraction trained another way (a recipe variant) is not taken for the defaults
    _fake_run(tmp_path, "02_baselines", "variant", {**p, "mix": "mixup", "augment": not p["augment"]},
              {"image_encoder.pt": make_encoder("image", p["embed_dim"], p["sample_rate"])})
    assert vis.load_supervised(study, "image", results_dir=tmp_path)[1]["run_dir"].endswith("new")
    # a cross-modal model saved by run_notebook in <run_dir>/<method>/
    from helpers import schema
    from helpers.pretraining import ContrastiveModel
    contrastive = schema.defaults("03_contrastive")
    model = ContrastiveModel("audio_mel", p["embed_dim"], p["sample_rate"], contrastive["proj_dim"], False)
    heads = torch.nn.ModuleDict({"heads": model.heads, "logit_scale": model.logit_scale})
    _fake_run(tmp_path, "03_contrastive", "c", {**contrastive, **{k: v for k, v in p.items() if k in schema.STUDY_PARAMS},
                                          "objective": "contrastive,supcon"},
              {"contrastive/image_encoder.pt": model.encoders["image"],
               "contrastive/audio_encoder.pt": model.encoders["audio"], "contrastive/heads.pt": heads})
    loaded, info = vis.load_cross_modal(study, "contrastive", results_dir=tmp_path)
    assert info["source"] == "loaded"
    assert torch.equal(loaded.heads["image"][0].weight, model.heads["image"][0].weight)
    assert vis.load_cross_modal(study, "mvae", results_dir=tmp_path) is None


def test_run_visualization_on_saved_encoders(env, tmp_path):
    study = env["study"]
    p = study.params
    files = {f"{k}_encoder.pt": make_encoder(k, p["embed_dim"], p["sample_rate"]) for k in ("image", "audio_mel")}
    _fake_run(tmp_path, "02_baselines", "run", p, files)
    record, out = vis.run_visualization(dict(dataset=str(env["yaml"]), **SMALL, methods="image,audio_mel"),
                                        results_dir=tmp_path)
    assert record["notebook"] == "08_visualization" and "results" not in record  # an analysis record
    assert {(r["method"], r["protocol"], r["view"]) for r in record["probe_results"] if r["test_set"] == "test"} == {
        ("image", "linear_probe", "image"), ("audio_mel", "linear_probe", "audio")}
    assert {s["source"] for s in record["sources"].values()} == {"loaded"}
    assert {(r["method"], r["view"]) for r in record["clustering"]} == {("image", "image"), ("audio_mel", "audio")}
    assert {"image/linear_probe/image", "audio_mel/linear_probe/audio"} <= set(record["details"])
    assert out["Z_test"]["image"]["image"][0].shape == (len(study.split["image"].test), p["embed_dim"])
    table = vis.clustering_frame(record)
    assert list(table.columns[:3]) == ["nmi", "ari", "purity"]
    with pytest.raises(StudyError, match="methods"):
        vis.run_visualization(dict(dataset=str(env["yaml"]), **SMALL, methods="image,tsne"))
