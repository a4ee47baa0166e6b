"""Build data/digits/digits32.npz, the quick profile's stand-in for CIFAR-10, from scikit-learn's digits.

scikit-learn ships the UCI handwritten digits (1797 images, 8x8, 16 grey levels) inside the package,
so this needs no download. Each digit is upscaled to 28x28, padded to 32x32 and painted with a random
foreground and background colour, giving CIFAR-shaped (3, 32, 32) uint8 RGB images.
The split is stratified and fixed: 80% train, 20% test.

    python data/digits/make_digits.py      # rewrites digits32.npz and SHA256SUMS
"""
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SEED = 0


def make(seed=SEED):
    digits = load_digits()
    rng = np.random.default_rng(seed)
    grey = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0          # (N, 1, 8, 8) in [0, 1]
    grey = F.interpolate(grey, size=(28, 28), mode="bilinear", align_corners=False)
    grey = F.pad(grey, (2, 2, 2, 2)).clamp(0, 1).numpy()                                   # (N, 1, 32, 32)
    n = len(grey)
    # Foreground and background colours far enough apart that the digit stays visible.
    background = rng.uniform(0, 1, size=(n, 3, 1, 1))
    foreground = np.clip(1 - background + rng.uniform(-0.25, 0.25, size=(n, 3, 1, 1)), 0, 1)
    images = background + (foreground - background) * grey
    images = (images * 255).round().astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(n), test_size=0.2, stratify=labels, random_state=seed)
    return dict(train_images=images[train_idx], train_labels=labels[train_idx],
                test_images=images[test_idx], test_labels=labels[test_idx])


if __name__ == "__main__":
    path = HERE / "digits32.npz"
    np.savez_compressed(path, **make())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (HERE / "SHA256SUMS").write_text(f"{digest}  digits32.npz\n")
    with np.load(path) as data:
        print({k: data[k].shape for k in data.files}, f"{path.stat().st_size} bytes", digest)
