"""Contrastive and generative pre-training cores (notebooks 03 and 04) on the tiny synthetic data set."""
import numpy as np
import pytest
import torch

from helpers import pretraining as pt
from helpers import schema
from helpers.config import StudyError
from helpers.experiments import pair_sampler, prepare_study
from helpers.synthetic import make_synthetic

TINY = dict(fraction=0.8, external_data="", image_size=32, sample_rate=8000, clip_seconds=0.5, epochs=2, finetune_epochs=1, progress=False)
ROW_KEYS = {"method", "protocol", "view", "test_set", "accuracy", "macro_f1", "n", "chance_uniform", "chance_majority",
            "val_accuracy"}       # baselines' rows
RETRIEVAL_KEYS = {"method", "protocol", "view", "test_set", "recall_at_1", "recall_at_5", "mAP", "n_queries", "n",
                  "chance_uniform", "chance_majority"}


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Synthetic data set + a throw-away tensor cache for the whole module; yields the base parameters."""
    root = tmp_path_factory.mktemp("pretraining")
    yaml_path = make_synthetic(root / "synthetic")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE", str(root / "cache"))
        yield {**TINY, "dataset": str(yaml_path)}


@pytest.fixture(scope="module")
def contrastive(tiny, tmp_path_factory):
    """One run exercising every switch: label-aware loss, SimCLR views, small-loss selection under noise."""
    run_dir = tmp_path_factory.mktemp("contrastive-run")
    params = {**tiny, "objective": "supcon", "simclr": True, "remedy": "small_loss", "noise": 0.3}
    record, models = pt.run_contrastive(params, run_dir)
    return params, record, models, run_dir


@pytest.fixture(scope="module")
def generative(tiny, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("generative-run")
    params = {**tiny, "objective": "mvae", "noise": 0.1}
    record, models = pt.run_generative(params, run_dir)
    return params, record, models, run_dir


def _check_rows(record, method):
    rows = record["results"]
    assert rows and {r["method"] for r in rows} == {method}
    for r in rows:
        assert set(r) == (RETRIEVAL_KEYS if r["protocol"] == "retrieval" else ROW_KEYS), r
    protocols = {r["protocol"] for r in rows}
    assert protocols == {"linear_probe", "knn", "finetune", "retrieval", "zero_shot"}
    plain = {(r["protocol"], r["view"]) for r in rows if r["test_set"] == "test"}
    for protocol in ("linear_probe", "knn", "finetune"):
        assert {(protocol, v) for v in ("audio", "image", "fused")} <= plain
    assert {("retrieval", "audio->image"), ("zero_shot", "image->audio")} <= plain
    # counterfactual test sets are evaluated too, as for the baselines
    assert {r["test_set"] for r in rows} > {"test"}


def test_baseline_rows_have_the_keys_checked_here(contrastive):
    """run_baselines makes its rows with evaluate_probas: the keys ROW_KEYS stands for."""
    from helpers.experiments import evaluate_probas
    models = contrastive[2]
    rows, _ = evaluate_probas(models["study"], "image", "supervised", {"image": models["finetuned"]["image"]})
    assert {frozenset(r) for r in rows} == {frozenset(ROW_KEYS)}


def test_contrastive_record(contrastive):
    params, record, models, run_dir = contrastive
    assert record["notebook"] == "03_contrastive" and record["method"] == "supcon+simclr+small_loss"
    _check_rows(record, "supcon+simclr+small_loss")
    assert record["params"]["objective"] == "supcon" and record["drop_rate_used"] == pytest.approx(0.3)
    h = record["history"]["supcon+simclr+small_loss"]
    assert len(h["train_loss"]) == len(h["val_score"]) == params["epochs"] and 0 <= h["best_epoch"] < params["epochs"]
    # small-loss selection: nothing dropped in the warm-up epoch, the drop rate after it
    assert record["pairing"]["dropped_share"][0] == 0
    assert record["pairing"]["dropped_share"][1] == pytest.approx(0.3, abs=0.05)
    for name in ("image_encoder.pt", "audio_encoder.pt", "heads.pt"):
        assert (run_dir / name).is_file()
    state = torch.load(run_dir / "image_encoder.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in models["image"].state_dict().items())


def test_contrastive_is_deterministic(contrastive):
    params, record, _, _ = contrastive
    again, _ = pt.run_contrastive(params)
    assert again["results"] == record["results"]
    assert _same_history(again, record)


def _same_history(a, b):
    strip = lambda r: {m: {k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")}
                       for m, h in r["history"].items()}
    return strip(a) == strip(b)


def test_generative_record(generative):
    params, record, models, run_dir = generative
    assert record["notebook"] == "04_generative" and record["method"] == "mvae"
    _check_rows(record, "mvae")
    views = {r["view"] for r in record["reconstruction"]}
    assert {"image->image", "audio->mel", "audio->image", "image->mel", "joint->image", "joint->mel",
            "mean->image", "class_mean->mel"} <= views
    assert all(np.isfinite(r["mse"]) and r["mse"] >= 0 for r in record["reconstruction"])
    for name in ("image_encoder.pt", "audio_encoder.pt", "vae.pt"):
        assert (run_dir / name).is_file()
    ex = pt.reconstruction_examples(models, n=3)
    size = params["image_size"]
    assert len(ex["classes"]) == 3
    for key in ("image", "image->image", "audio->image", "joint->image"):
        assert ex[key].shape == (3, 3, size, size) and 0 <= ex[key].min() and ex[key].max() <= 1
    for key in ("image->mel", "audio->mel", "joint->mel"):
        assert ex[key].shape == ex["mel"].shape
    assert pt.reconstruction_table(record).shape[1] == 1
    assert not pt.probe_table(record).empty and not pt.cross_modal_table(record).empty


def test_generative_is_deterministic(generative):
    params, record, _, _ = generative
    again, _ = pt.run_generative(params)
    assert again["results"] == record["results"]
    assert again["reconstruction"] == record["reconstruction"]
    assert _same_history(again, record)


def test_autoencoder_reference(tiny):
    record, models = pt.run_generative({**tiny, "objective": "autoencoder", "epochs": 1, "finetune_epochs": 0})
    assert {r["method"] for r in record["results"]} == {"autoencoder"}
    assert "finetune" not in {r["protocol"] for r in record["results"]}
    assert not any(r["view"].startswith("joint") for r in record["reconstruction"])
    assert "joint->image" not in pt.reconstruction_examples(models, n=2)


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_pairing_under_noise_is_noisy_correspondence(tiny, kind):
    study = prepare_study({**tiny, "noise": 0.3, "noise_kind": kind}, "03_contrastive")
    a_idx = study.split["audio"].train
    clips, images = pair_sampler(study, np.random.default_rng(0))()
    true_a, noisy_a = study.data.audio.y[clips], study.y_train["audio"][clips]
    flipped = noisy_a != true_a
    mismatched = study.data.image.y[images] != true_a
    assert flipped.any()
    np.testing.assert_array_equal(mismatched, flipped)       # exactly the flipped clips get a wrong animal
    np.testing.assert_array_equal(study.data.image.y[images], noisy_a)  # ... of their noisy label's class
    # train + val together flip exactly the achieved share; the training part is a subset of it
    trainval = np.concatenate([a_idx, study.split["audio"].val])
    assert np.mean(study.y_train["audio"][trainval] != study.data.audio.y[trainval]) == pytest.approx(
        study.noise_achieved["audio"])


def test_core_records_the_mismatch_rate_of_the_pairs_it_trained_on(contrastive):
    _, record, _, _ = contrastive
    p = record["pairing"]
    assert p["train_clip_flip_rate"] > 0
    # balanced pairs repeat the clips of classes with more images, so the pairs' mismatch rate is the flip
    # rate of the clips as dealt: near the clips' own flip rate, never 0 under noise
    assert all(0 < r < 1 and abs(r - p["train_clip_flip_rate"]) < 0.2 for r in p["mismatch_rate"])


def test_no_noise_no_mismatch_and_no_drop(tiny):
    p = {**schema.defaults("03_contrastive"), **tiny, "noise": 0.0, "remedy": "small_loss"}
    assert pt.drop_rate_used(p) == 0.0
    assert pt.drop_rate_used({**p, "drop_rate": 0.2}) == 0.2
    assert pt.drop_rate_used({**p, "remedy": "none", "drop_rate": 0.2}) == 0.0


@pytest.mark.parametrize("bad, match", [
    ({"objetive": "supcon"}, "unknown parameter"),
    ({"latent_dim": 8}, "unknown parameter"),          # a generative name is not a contrastive one
    ({"objective": "mvae"}, "objective"),
    ({"remedy": "coteach"}, "remedy"),
    ({"drop_rate": 1.0}, "drop_rate"),
    ({"simclr": "yes"}, "simclr"),
    ({"audio_encoder": "image"}, "audio_encoder"),
    ({"finetune_epochs": -1}, "finetune_epochs"),
])
def test_contrastive_rejects_bad_parameters(tiny, bad, match):
    with pytest.raises(StudyError, match=match):
        pt.run_contrastive({**tiny, **bad})


@pytest.mark.parametrize("bad, match", [
    ({"remedy": "small_loss"}, "unknown parameter"),
    ({"objective": "contrastive"}, "objective"),
    ({"beta": -1}, "beta"),
    ({"latent_dim": 1}, "latent_dim"),
])
def test_generative_rejects_bad_parameters(tiny, bad, match):
    with pytest.raises(StudyError, match=match):
        pt.run_generative({**tiny, **bad})


def test_run_notebook_merges_objectives(monkeypatch, tmp_path):
    calls = []

    def fake(params, run_dir=None):
        calls.append((params["objective"], run_dir))
        m = pt.method_name(params)
        row = {"method": m, "protocol": "linear_probe", "view": "audio", "test_set": "test", "accuracy": 0.5,
               "macro_f1": 0.5, "n": 4}
        return ({"notebook": "03_contrastive", "params": params, "results": [row],
                 "details": {f"{m}/x": 1}, "history": {m: {}}, "finetune_history": {m: {}}, "timings": {"s": 1},
                 "method": m, "pairing": {"mismatch_rate": [0.0]}, "drop_rate_used": 0.0,
                 "predictions": {f"{m}/linear_probe/audio/test": [1, 0, 2, 2]}}, {"model": m})

    monkeypatch.setattr(pt, "run_contrastive", fake)
    record, models = pt.run_notebook("contrastive", {"objective": "contrastive, supcon", "simclr": True}, tmp_path)
    assert [c[0] for c in calls] == ["contrastive", "supcon"]
    assert [c[1] for c in calls] == [tmp_path / "contrastive+simclr", tmp_path / "supcon+simclr"]
    assert record["methods"] == ["contrastive+simclr", "supcon+simclr"] == list(models)
    assert record["params"]["objective"] == "contrastive,supcon"
    assert [r["method"] for r in record["results"]] == record["methods"]
    assert set(record["pairing"]) == set(record["history"]) == set(record["methods"])
    # every objective's per-item predictions are kept, not the first one's only (item-level tests need them)
    assert {k.split("/")[0] for k in record["predictions"]} == set(record["methods"])
    assert "method" not in record and "reconstruction" not in record
    with pytest.raises(StudyError, match="objective"):
        pt.run_notebook("contrastive", {"objective": "contrastive,mvae"})
