"""A small synthetic paired data set, written as real files, for fast tests of the whole loading path.

Each class has a tone (audio) and a colour and shape (image) of its own, so a model can learn it
in a few steps. The study itself always runs on the real data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def make_synthetic(root: Path, num_classes: int = 4, clips_per_class: int = 10, images_per_class: int = 10,
                   sample_rate: int = 8000, seed: int = 0) -> Path:
    """Write `root/sounds/<class>/*.wav`, `root/images/<class>/*.png` and `root/synthetic.yaml`; return the YAML."""
    import soundfile as sf
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    classes = [f"class{c}" for c in range(num_classes)]
    for c, name in enumerate(classes):
        (root / "sounds" / name).mkdir(parents=True, exist_ok=True)
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        freq = 300.0 * (c + 1)
        for i in range(clips_per_class):
            seconds = rng.uniform(0.3, 1.5)
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            chirp = np.sin(2 * np.pi * (freq * t + 50 * c * t ** 2))
            x = 0.5 * chirp + 0.05 * rng.standard_normal(len(t))
            sf.write(root / "sounds" / name / f"clip_{i}.wav", x.astype(np.float32), sample_rate, subtype="PCM_16")
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        for i in range(images_per_class):
            im = Image.new("RGB", (48, 40), tuple(int(v) for v in rng.integers(0, 256, 3)))
            draw = ImageDraw.Draw(im)
            x0, y0 = rng.integers(0, 16, 2)
            box = [int(x0), int(y0), int(x0) + 24, int(y0) + 20]
            (draw.ellipse if c % 2 else draw.rectangle)(box, fill=colour)
            im.save(root / "images" / name / f"img_{i}.png")
    spec = {"name": f"synthetic-{seed}", "root": str(root), "audio_dir": "sounds", "image_dir": "images",
            "classes": classes, "audio_folders": {}, "image_folders": {}, "test_fraction": 0.2, "split_seed": 0}
    path = root / "synthetic.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
