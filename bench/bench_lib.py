"""Quick-profile speed of the kit's two networks on this machine: seconds per epoch and parameter counts.

    .venv/bin/python bench/bench_lib.py [epochs]      # default: the quick profile's epochs, on the CPU

Trains VGG-19 (width from the quick profile) on the embedded digits and SincNet on the embedded keywords
with lib.train.fit, exactly as the notebooks do, and prints one line per network.
"""
import os
import sys
import time

os.environ.setdefault("LAB_PROFILE", "quick")

import torch  # noqa: E402

from lib import profile, train  # noqa: E402
from lib.data import images, speech  # noqa: E402
from lib.models import SincNet, VGG, count_flops, count_parameters  # noqa: E402


def bench(label, model, loaders, hp, input_shape, epochs):
    hp = dict(hp, epochs=epochs)
    start = time.time()
    history = train.fit(model, loaders, hp, device=torch.device("cpu"), progress=False)
    per_epoch = (time.time() - start) / epochs
    print(f"{label:8s} params {count_parameters(model):>9,d}  MACs/sample {count_flops(model, input_shape):>11,d}  "
          f"train {sum(history['train_time']) / epochs:5.2f} s/epoch  total {per_epoch:5.2f} s/epoch  "
          f"val acc after {epochs} epochs {history['val_accuracy'][-1]:.1f}%  ({len(loaders['train'].dataset)} train clips/images)")


if __name__ == "__main__":
    # Fewer epochs than the profile's squeeze its lr schedule (x0.1 at 50% and 75%): speed figures only.
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else None
    print(f"profile quick, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    hp = profile.config("vgg")
    train.seed_everything(0)
    bench("VGG-19", VGG(width=hp["width"]), images.loaders(), hp, (3, 32, 32), epochs or hp["epochs"])
    hp = profile.config("sincnet")
    train.seed_everything(0)
    bench("SincNet", SincNet(width=hp["width"]), speech.loaders(), hp, (1, 16000), epochs or hp["epochs"])
