"""External evaluation: collections from other sources, one modality or other classes, never split or trained on."""
import shutil

import numpy as np
import torch
import pytest
import yaml

from helpers.config import StudyError, external_root
from helpers.data import load_evaluation_set
from helpers.synthetic import make_synthetic

SMALL = dict(fraction=0.8, external_data="", image_size=32, sample_rate=8000, clip_seconds=0.5, epochs=1, progress=False)


@pytest.fixture
def one_modality_collection(synthetic_study_env, tmp_path):
    """Images only, of two study classes and one class the study does not have."""
    other = make_synthetic(tmp_path / "other", num_classes=3, clips_per_class=3, images_per_class=4, seed=5)
    spec = yaml.safe_load(other.read_text())
    shutil.rmtree(tmp_path / "other" / "sounds")
    (tmp_path / "other" / "images" / "class2").rename(tmp_path / "other" / "images" / "zebra")
    spec.update(name="other-images", evaluation_only=True, audio_dir=None, classes=["class0", "class1", "zebra"])
    other.write_text(yaml.safe_dump(spec))
    return other


def test_one_modality_collection_is_evaluated_on_the_classes_it_shares(synthetic_study_env, one_modality_collection):
    from helpers.experiments import prepare_study
    study = prepare_study({**SMALL, "dataset": str(synthetic_study_env["yaml"]),
                           "external_data": str(one_modality_collection)})
    assert set(study.external.modalities) == {"image"}
    assert study.external.unknown == {"image": {"zebra": 4}}          # reported, not dropped silently
    assert "external" not in study.test_sets("audio")
    X, y = study.test_sets("image")["external"]
    assert len(X) == 8 and sorted(np.unique(y)) == [0, 1]             # study class indices
    summary = study.external.summary()
    assert summary["image"] == {"class0": 4, "class1": 4} and summary["unknown_classes"]["image"] == {"zebra": 4}


def test_baselines_report_external_rows_with_chance_levels(synthetic_study_env, one_modality_collection):
    from helpers.baselines import run_baselines
    record, _ = run_baselines({**SMALL, "dataset": str(synthetic_study_env["yaml"]),
                               "external_data": str(one_modality_collection)})
    ext = [r for r in record["results"] if r["test_set"] == "external"]
    assert {(r["method"], r["view"]) for r in ext} == {("image", "image"), ("imagenet", "image")}
    for r in ext:
        assert r["n"] == 8 and r["chance_uniform"] == 0.5 and r["chance_majority"] == 0.5
        assert f"{r['method']}/{r['protocol']}/image/external" in record["details"]
    assert not any(r["view"] == "fused" and r["test_set"] == "external" for r in record["results"])
    assert record["external"]["unknown_classes"] == {"image": {"zebra": 4}}


def test_a_collection_without_a_study_class_is_refused(tmp_path):
    other = make_synthetic(tmp_path / "x", num_classes=2, clips_per_class=3, images_per_class=3)
    spec = yaml.safe_load(other.read_text())
    spec.update(evaluation_only=True, classes=["elk", "moose"])
    for m in ("sounds", "images"):
        for c, new in (("class0", "elk"), ("class1", "moose")):
            (tmp_path / "x" / m / c).rename(tmp_path / "x" / m / new)
    other.write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyError, match="none of its classes"):
        load_evaluation_set(other, ["cat", "dog"], sample_rate=8000, image_size=32, progress=False)


def test_the_external_development_set_loads(real_cache):
    root = external_root()
    if not (root / "sounds").is_dir():
        pytest.skip(f"no external development set at {root} (set STUDY_EXTERNAL)")
    classes = ["bird", "cat", "chicken", "cow", "dog", "donkey", "frog", "lion", "monkey", "sheep"]
    ext = load_evaluation_set("external", classes, sample_rate=8000, image_size=64, progress=False)
    counts = ext.summary()
    assert sum(counts["audio"].values()) == 106 and len(counts["audio"]) == 7
    assert sum(counts["image"].values()) == 129 and len(counts["image"]) == 6
    assert "lion" not in counts["audio"] and "bird" not in counts["image"]


def test_the_imagenet_model_sees_images_decoded_at_its_own_size(synthetic_study_env, one_modality_collection):
    from helpers.experiments import imagenet_images, prepare_study
    from helpers.models import IMAGENET_SIZE
    study = prepare_study({**SMALL, "dataset": str(synthetic_study_env["yaml"]),
                           "external_data": str(one_modality_collection)})
    X, X_external = imagenet_images(study)
    assert X.shape == (len(study.data.image), 3, IMAGENET_SIZE, IMAGENET_SIZE) and X.dtype == study.data.image.X.dtype
    assert X_external.shape == (8, 3, IMAGENET_SIZE, IMAGENET_SIZE)
    # the same pictures as the study's 32 px ones, in the same order
    small = torch.nn.functional.interpolate(X.float(), size=study.data.image.X.shape[-2:], mode="area")
    assert (small - study.data.image.X.float()).abs().mean() < 12
