"""Translation (notebook 06's core) on the synthetic data: shapes, Griffin-Lim, the judge on log-mels,
the evaluation rows, the fill-missing protocol, and finding a saved MVAE."""
import json

import numpy as np
import pytest
import torch

from helpers import schema
from helpers import translation as tr
from helpers.config import StudyError
from helpers.models import Classifier, LogMel, make_encoder

SMALL = dict(external_data="", image_size=32, sample_rate=8000, clip_seconds=0.5, epochs=1, progress=False)
NOTEBOOK = "06_translation"


@pytest.fixture
def env(synthetic_study_env):
    """The synthetic data and Study of this module (tests/conftest.py), its folders set for each test."""
    return synthetic_study_env


def test_translators_produce_target_shapes(env):
    study = env["study"]
    n_mels, n_frames = LogMel(8000).shape(study.clip_samples)
    a2i = tr.Translator("audio->image", study.num_classes, 16, 8000, 32, study.clip_samples, latent_dim=8).eval()
    i2a = tr.Translator("image->audio", study.num_classes, 16, 8000, 32, study.clip_samples, latent_dim=8).eval()
    with torch.no_grad():
        img = a2i(study.audio(study.split["audio"].test[:3]))
        mel = i2a(study.image(study.split["image"].test[:3]))
    assert img.shape == (3, 3, 32, 32) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert mel.shape == (3, n_mels, n_frames) and torch.isfinite(mel).all()
    # the target of image->audio is the log-mel the log-mel CNN sees
    clip = study.audio(study.split["audio"].train[:2])
    assert i2a.target(clip).shape == (2, n_mels, n_frames)
    with pytest.raises(StudyError, match="direction"):
        tr.Translator("audio->audio", study.num_classes)


def test_prototypes_are_class_means(env):
    study = env["study"]
    t = tr.Translator("image->audio", 3, 16, 8000, 32, study.clip_samples, latent_dim=8)
    n_mels, n_frames = LogMel(8000).shape(study.clip_samples)
    assert float(t.prototypes.abs().max()) == 0  # neutral before training: the decoder alone
    targets = torch.arange(4.0)[:, None, None].expand(4, n_mels, n_frames)
    t.set_prototypes(targets, [0, 0, 1, 1])  # class 2 has no item: the overall mean
    assert t.prototypes[:, 0, 0].tolist() == [0.5, 2.5, 1.5]
    img = tr.Translator("audio->image", 3, 16, 8000, 32, study.clip_samples, latent_dim=8)
    assert float(img.prototypes.min()) == float(img.prototypes.max()) == 0.5  # grey


def test_train_translator_one_epoch(env):
    study = env["study"]
    model, history = tr.train_translator(study, "image->audio", num_epochs=1)
    assert len(history.train_loss) == 1 and np.isfinite(history.train_loss[0])
    out = model(study.image(study.split["image"].test[:2]))
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    # with a trained source classifier: its encoder is frozen, only the decoder side learns
    judge = Classifier(make_encoder("audio_mel", 16, 8000), study.num_classes)
    before = {k: v.clone() for k, v in judge.state_dict().items()}
    model, history = tr.train_translator(study, "audio->image", num_epochs=1, source_classifier=judge)
    assert model.frozen and not any(q.requires_grad for q in model.encoder.parameters())
    assert all(torch.equal(v, before[f"encoder.{k}"]) for k, v in model.encoder.state_dict().items())
    assert model(study.audio(study.split["audio"].test[:2])).shape == (2, 3, 32, 32)
    # 0 epochs is an error, not "the default number of epochs"
    with pytest.raises(StudyError, match="num_epochs"):
        tr.train_translator(study, "image->audio", num_epochs=0)


def test_griffin_lim_gives_finite_waveform_of_clip_length(env):
    study = env["study"]
    inv = tr.MelInverter.from_study(study, n_iter=8)
    X = study.audio(study.split["audio"].test[:3])
    mel = LogMel(8000)(X)
    wave = inv(mel)
    assert wave.shape == (3, study.clip_samples)
    assert torch.isfinite(wave).all() and float(wave.abs().max()) <= 0.9 + 1e-5
    # the sound comes back recognisably: its log-mel correlates with the one it was made from
    again = LogMel(8000)(wave)
    corr = np.corrcoef(again.flatten().numpy(), mel.flatten().numpy())[0, 1]
    assert corr > 0.5
    with pytest.raises(StudyError):
        inv(torch.zeros(2, 10, 5))
    # the precomputed pseudo-inverse gives torchaudio's InverseMelScale solution
    power = torch.exp(mel * inv.log_std + inv.log_mean)
    ref = inv.inverse_mel(power)
    assert torch.allclose(torch.relu(inv.fb_pinv @ power), ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))


def test_mel_judge_equals_the_classifier_on_real_clips(env):
    study = env["study"]
    clf = Classifier(make_encoder("audio_mel", 16, 8000), study.num_classes).eval()
    X = study.audio(study.split["audio"].test[:4])
    with torch.no_grad():
        direct = clf(X)
        via_mel = tr.mel_logits(clf, LogMel(8000)(X))
    assert torch.allclose(direct, via_mel, atol=1e-3)
    with pytest.raises(StudyError, match="log-mel CNN"):
        tr.mel_embed(Classifier(make_encoder("image", 16), study.num_classes), X)


def test_evaluation_rows_and_fill_missing(env):
    study = env["study"]
    judges, _ = tr.train_judges(study, num_epochs=1)
    k = study.num_classes
    translators = {"translator": {d: tr.Translator(d, k, 16, 8000, 32, study.clip_samples, 8)
                                  for d in tr.DIRECTIONS}}
    result = tr.evaluate_translations(study, judges, translators, tr.MelInverter.from_study(study, n_iter=4))
    rows = result["rows"]
    for row in rows:
        assert {"method", "protocol", "view", "test_set", "n", "fraction"} <= set(row)
    keys = {(r["method"], r["protocol"], r["view"], r["test_set"]) for r in rows}
    assert ("real", "judge", "image", "test") in keys and ("real", "judge", "audio", "test") in keys
    assert ("translator", "judge", "audio->image", "test") in keys
    assert ("translator", "judge", "image->audio", "griffin_lim") in keys
    assert ("translator", "retrieval", "image->audio", "test") in keys
    assert {r["method"] for r in result["reconstruction"]} == {"translator", "mean", "class_mean"}
    fill = tr.fill_missing_rows(study, result)
    assert {(r["method"], r["view"]) for r in fill} == {(m, v) for m in ("single", "translator", "both_real")
                                                       for v in tr.DIRECTIONS}
    n_test = {"audio->image": len(study.split["audio"].test), "image->audio": len(study.split["image"].test)}
    for r in fill:
        assert 0 <= r["accuracy"] <= 1
        if r["method"] != "both_real":
            assert r["n"] == n_test[r["view"]]
    # the MVAE's cross decoders plug into the same evaluation
    from helpers.pretraining import PairedVAE
    vae = PairedVAE("audio_mel", 16, 8000, 4, 32, study.clip_samples, True).eval()
    fns = tr.mvae_translators(vae)
    with torch.no_grad():
        assert fns["audio->image"](study.audio([0, 1])).shape == (2, 3, 32, 32)
        assert fns["image->audio"](study.image([0, 1])).shape == (2, *LogMel(8000).shape(study.clip_samples))


def test_load_mvae_from_a_matching_run(env, tmp_path):
    from helpers.pretraining import PairedVAE
    study = env["study"]
    generative = schema.defaults("04_generative")
    vae = PairedVAE("audio_mel", study.params["embed_dim"], 8000, generative["latent_dim"], 32,
                    study.clip_samples, True, generative["decoder_width"])
    run = tmp_path / "runs" / "04_generative" / "abc"
    (run / "mvae").mkdir(parents=True)
    torch.save(vae.state_dict(), run / "mvae" / "vae.pt")
    shared = {k: v for k, v in study.params.items() if k in schema.STUDY_PARAMS}
    params = {**generative, **shared, "objective": "mvae"}
    params = {k: v for k, v in params.items() if k not in ("class_weight", "fractions", "mvae", "griffin_lim_iters")}
    (run / "metrics.json").write_text(json.dumps({"notebook": "04_generative", "params": params}))
    loaded, info = tr.load_mvae(study, results_dir=tmp_path)
    assert info["source"] == "loaded"
    assert torch.equal(loaded.decoders["image"].linear.weight, vae.decoders["image"].linear.weight)
    # another training fraction: not the same training data, so not reused
    (run / "metrics.json").write_text(json.dumps({"notebook": "04_generative", "params": {**params, "fraction": 0.5}}))
    assert tr.load_mvae(study, results_dir=tmp_path) is None


def test_parameters_are_checked(env):
    assert schema.parse_fractions("0.8, 0.2,0.2") == [0.2, 0.8]
    for bad in ("", "0.9", "a,b"):
        with pytest.raises(StudyError, match="fractions"):
            schema.parse_fractions(bad)
    with pytest.raises(StudyError, match="mvae"):
        tr.run_translation(dict(dataset=str(env["yaml"]), **SMALL, mvae="maybe"))


def test_by_default_a_translator_does_not_read_the_judge(env, monkeypatch):
    """translator_encoder="own" (the default): run_translation trains the translators without the judges, so a
    judge scoring a translation is independent of it."""
    from helpers import schema
    assert schema.defaults("06_translation")["translator_encoder"] == "own"
    sources = []
    real = tr.train_translator

    def spy(study, direction, num_epochs=None, source_classifier=None):
        sources.append(source_classifier)
        return real(study, direction, num_epochs=num_epochs, source_classifier=source_classifier)
    monkeypatch.setattr(tr, "train_translator", spy)
    tr.run_translation(dict(dataset=str(env["yaml"]), **SMALL, mvae="off", fractions="0.8", griffin_lim_iters=2))
    assert sources and all(s is None for s in sources)
