"""Fast checks of the encoders, heads and decoders in helpers.models (CPU, a few seconds)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.config import StudyError, data_root
from helpers.models import (AudioMelCNN, AudioWaveCNN, Classifier, GaussianHead, ImageCNN,
                            ImageDecoder, ImageNetFeatures, MelDecoder, TimmEncoder,
                            count_parameters, flops_per_sample, imagenet_efficientnet_lite0,
                            make_encoder)

TIMM_SMALL = "resnet10t"  # small timm CNN, fast enough for a unit test


def waves(sample_rate, seconds=2, batch=2):
    return torch.randn(batch, seconds * sample_rate)


@pytest.mark.parametrize("size", [32, 64])
def test_image_encoder_shapes(size):
    enc = ImageCNN(embed_dim=16)
    x = torch.rand(3, 3, size, size)
    assert enc.embed_dim == 16
    assert enc(x).shape == (3, 16)
    maps = enc.feature_maps(x)
    assert len(maps) == 4 and all(m.shape[0] == 3 for m in maps)
    assert maps[0].shape[-1] > maps[-1].shape[-1]  # early maps are finer than late ones


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("cls", [AudioWaveCNN, AudioMelCNN])
def test_audio_encoder_shapes(cls, sample_rate):
    enc = cls(embed_dim=24, sample_rate=sample_rate)
    x = waves(sample_rate)
    assert enc.embed_dim == 24 and enc(x).shape == (2, 24)
    maps = enc.feature_maps(x)
    assert len(maps) >= 2 and all(m.dim() == 3 and m.shape[0] == 2 for m in maps)


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_log_mel_shape_and_loudness(sample_rate):
    enc = AudioMelCNN(sample_rate=sample_rate, n_mels=40)
    x = waves(sample_rate)
    mel = enc.log_mel(x)
    assert tuple(mel.shape[1:]) == enc.mel_shape(x.shape[1]) == (40, 1 + x.shape[1] * 100 // sample_rate)
    assert torch.allclose(mel.mean(dim=(1, 2)), torch.zeros(2), atol=1e-4)
    # per-clip standardisation: a clip 10x louder looks the same to either audio encoder
    assert torch.allclose(enc.log_mel(10 * x), mel, atol=1e-3)
    wave_enc = AudioWaveCNN(sample_rate=sample_rate).eval()
    assert torch.allclose(wave_enc(10 * x), wave_enc(x), atol=1e-4)


@pytest.mark.parametrize("kind,x", [(f"timm:{TIMM_SMALL}:image", torch.rand(2, 3, 32, 32)),
                                    (f"timm:{TIMM_SMALL}:audio_mel", torch.randn(2, 8000))])
def test_timm_encoder(kind, x):
    enc = make_encoder(kind, embed_dim=8, sample_rate=8000)
    assert isinstance(enc, TimmEncoder) and enc.embed_dim == 8
    assert enc(x).shape == (2, 8)
    assert len(enc.feature_maps(x)) >= 2


def test_make_encoder_kinds():
    assert isinstance(make_encoder("image", embed_dim=8, width=8), ImageCNN)
    wave = make_encoder("audio_wave", sample_rate=8000)
    assert isinstance(wave, AudioWaveCNN) and wave.sample_rate == 8000
    assert make_encoder("audio_mel", n_mels=32).n_mels == 32


@pytest.mark.parametrize("kind,kw,match", [
    ("spectrogram", {}, "unknown encoder kind .*audio_mel"),
    (None, {}, "must be a string"),
    ("timm:resnet10t", {}, "timm:<name>:<modality>"),
    ("timm:resnet10t:video", {}, "modality"),
    ("timm:no_such_net:image", {}, "no model"),
    ("image", {"colour": True}, "bad argument"),
    ("image", {"embed_dim": 0}, "embed_dim"),
    ("audio_wave", {"sample_rate": 16000.0}, "sample_rate"),
])
def test_make_encoder_errors(kind, kw, match):
    with pytest.raises(StudyError, match=match):
        make_encoder(kind, **kw)


def test_bad_inputs_and_arguments():
    with pytest.raises(StudyError, match=r"\[B, 3, H, W\]"):
        ImageCNN()(torch.rand(2, 1, 32, 32))
    with pytest.raises(StudyError, match=r"\[B, L\]"):
        AudioWaveCNN()(torch.randn(2, 1, 16000))
    with pytest.raises(StudyError, match="num_classes"):
        Classifier(ImageCNN(), 1)
    with pytest.raises(StudyError, match="embed_dim"):
        Classifier(torch.nn.Linear(2, 2), 3)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    for enc, x in [(ImageCNN(width=8), torch.rand(4, 3, 32, 32)),
                   (AudioWaveCNN(width=8, sample_rate=8000), torch.randn(4, 8000)),
                   (AudioMelCNN(width=8, sample_rate=8000), torch.randn(4, 8000))]:
        model = Classifier(enc, 3)
        F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_determinism():
    def build_and_run():
        torch.manual_seed(0)
        model = Classifier(ImageCNN(), 10).eval()
        return model(torch.rand(2, 3, 32, 32))
    assert torch.equal(build_and_run(), build_and_run())


def test_overfit_twenty_images():
    torch.manual_seed(0)
    x, y = torch.rand(20, 3, 32, 32), torch.arange(20)
    model = Classifier(ImageCNN(width=8), 20)  # reaches 100% after ~25 steps (seeds 0-3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_mel_decoder_matches_mel_shape(sample_rate):
    enc = AudioMelCNN(sample_rate=sample_rate)
    x = waves(sample_rate)
    n_mels, n_frames = enc.mel_shape(x.shape[1])
    dec = MelDecoder(12, n_mels, n_frames)
    assert dec(torch.randn(2, 12)).shape == enc.log_mel(x).shape


@pytest.mark.parametrize("size", [32, 50, 64])
def test_image_decoder_and_gaussian_head(size):
    mu, logvar = GaussianHead(128, 12)(torch.randn(3, 128))
    assert mu.shape == logvar.shape == (3, 12)
    img = ImageDecoder(12, image_size=size)(mu)
    assert img.shape == (3, 3, size, size)
    assert img.min() >= 0 and img.max() <= 1


def test_count_parameters_and_flops():
    enc = ImageCNN(width=8)
    assert count_parameters(enc) == sum(p.numel() for p in enc.parameters())
    enc.proj.requires_grad_(False)
    frozen = enc.proj.weight.numel() + enc.proj.bias.numel()
    assert count_parameters(enc, trainable_only=True) == count_parameters(enc) - frozen
    enc.train()
    flops = flops_per_sample(enc, torch.rand(4, 3, 32, 32))
    # first conv alone: 32x32 outputs x 8 channels x 27 multiply-adds x 2
    assert flops > 2 * 32 * 32 * 8 * 27
    assert enc.training  # mode restored


# ---------------------------------------------------------------- ImageNet efficientnet_lite0

def _animal_images():
    root = data_root() / "animal-images"
    return root if root.is_dir() else None


def _load(paths):
    from PIL import Image
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
              for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255


def test_imagenet_features_frozen_and_shaped():
    feats = ImageNetFeatures()
    feats.train()  # must stay in eval mode: frozen BN statistics
    assert not feats.training and not feats.model.training
    assert count_parameters(feats, trainable_only=True) == 0
    out = feats.extract(torch.rand(5, 3, 64, 64), batch_size=2)
    assert out.shape == (5, 1280)
    assert feats.prepare(torch.rand(1, 3, 64, 64)).shape == (1, 3, 224, 224)


@pytest.mark.skipif(_animal_images() is None, reason="real animal images not available")
def test_imagenet_model_recognises_cats():
    images = _animal_images()
    cats = sorted((images / "cat").glob("*"))[:8]
    assert cats, "no cat images found"
    model = imagenet_efficientnet_lite0()
    feats = ImageNetFeatures()  # reuse its prepare(): the normalisation under test
    with torch.no_grad():
        top5 = model(feats.prepare(_load(cats))).topk(5).indices
    hits = sum(any(281 <= int(c) <= 285 for c in row) for row in top5)  # ImageNet cat classes
    assert hits >= 6, f"only {hits}/{len(cats)} cat photos have a cat class in their top 5"


def test_spec_augment_masks_bands_of_bins_and_frames_per_clip_in_training_only():
    import torch
    from helpers.models import make_encoder, spec_augment
    torch.manual_seed(0)
    mel = torch.randn(8, 64, 100) + 5.0                         # no zeros anywhere before masking
    out = spec_augment(mel)
    masked = out == 0
    assert masked.any() and not masked.all()
    bins_all_zero = masked.all(dim=2)                           # a whole mel bin masked
    frames_all_zero = masked.all(dim=1)                         # a whole frame masked
    assert bins_all_zero.any() and frames_all_zero.any()
    assert not torch.equal(masked[0], masked[1])                # different masks per clip
    assert bins_all_zero.sum(1).max() <= 2 * 8 and frames_all_zero.sum(1).max() <= 2 * 10
    enc = make_encoder("audio_mel", 16, 8000, spec_augment=True)
    x = torch.randn(2, 4000)
    enc.eval()
    assert torch.equal(enc.prepare(x), enc.frontend(x))         # evaluation sees the clip as it is
    enc.train()
    assert not torch.equal(enc.prepare(x), enc.frontend(x))
