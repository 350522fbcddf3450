"""Image-bound audio (helpers.imagebound): the frozen ImageNet tower teaches the audio encoder, and the audio is
classified through an image-only probe without reading an audio label."""
import numpy as np
import pytest

from helpers import evaluation as ev
from helpers import experiments
from helpers import imagebound as ib
from helpers.synthetic import make_synthetic

# 40 clips and images per class: the ImageNet features of the synthetic shapes need a few dozen images a
# class for the image probe; with 12 epochs seed 0 reached 0.75 image-probe accuracy (chance 0.25).
SMALL = dict(fraction=0.8, external_data="", image_size=32, sample_rate=8000, clip_seconds=0.5, epochs=12,
             batch_size=16, progress=False, seed=0)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagebound")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE", str(root / "cache"))
        yield make_synthetic(root / "synthetic", num_classes=4, clips_per_class=40, images_per_class=40)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    return ib.run_image_bound({**SMALL, "dataset": str(data), "objective": "image_bound"}, tmp_path_factory.mktemp("ib"))


def test_rows_of_the_three_protocols(run):
    record, models = run
    protocols = {(r["protocol"], r["view"]) for r in record["results"] if r["test_set"] == "test"}
    assert protocols == {("image_probe", "audio"), ("linear_probe", "audio"), ("knn", "audio")}
    assert record["method"] == "image_bound" and "image_bound" in record["history"]


def test_the_loss_and_the_image_probe_read_no_audio_label(data, monkeypatch):
    """Pairs carry their labels (the pairing uses them); the loss must not, and the probe that classifies the
    clips is fitted on image features and image labels only."""
    real_batch = experiments.EpochPairs.batch

    def no_labels(self, b):
        a, i, _ = real_batch(self, b)
        return a, i, None   # a loss that read them would fail
    monkeypatch.setattr(experiments.EpochPairs, "batch", no_labels)
    calls = []
    real_probe = ev.linear_probe

    def spy(Z_train, y_train, Z_test, y_test, *a, **kw):
        calls.append((np.asarray(Z_train).shape, np.asarray(y_train).copy(), np.asarray(kw.get("y_val")).copy()))
        return real_probe(Z_train, y_train, Z_test, y_test, *a, **kw)
    monkeypatch.setattr(ev, "linear_probe", spy)
    record, models = ib.run_image_bound({**SMALL, "epochs": 1, "dataset": str(data), "objective": "image_bound"})
    study = models["study"]
    shape, y_train, y_val = calls[0]                          # the first probe is the image probe
    assert shape == (len(study.split["image"].train), 1280)
    np.testing.assert_array_equal(y_train, study.labels("image", "train"))
    np.testing.assert_array_equal(y_val, study.labels("image", "val"))


def test_the_image_probe_classifies_audio_above_chance(run):
    record, _ = run
    row = next(r for r in record["results"] if r["protocol"] == "image_probe" and r["test_set"] == "test")
    assert row["accuracy"] >= 2 * row["chance_uniform"], row
