"""Quick-profile speed of the kit's two networks on this machine: seconds per epoch and parameter counts.

    .venv/bin/python bench/bench_lib.py [epochs]      # default: the quick profile's epochs, on the CPU

Trains VGG-19 (width from the quick profile) on the embedded digits and SincNet on the embedded keywords
with lib.train.fit, exactly as the notebooks do, and prints one line per network. Then the cost of the
subnormal floats of a collapsed VGG (every BN scale near 0, as sparsity_train's largest lambda leaves it) with
and without lib.train's flush to zero.
"""
import os
import sys
import time

os.environ.setdefault("LAB_PROFILE", "quick")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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


def bench_collapsed(steps=10):
    """ms per training step of a VGG whose BN scales are all 1e-6 (shifts 0), with subnormals kept or flushed."""
    hp = profile.config("vgg")
    train.seed_everything(0)
    model = VGG(width=hp["width"]).train()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1e-6)
                module.bias.fill_(0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs, targets = torch.randn(hp["batch_size"], 3, 32, 32), torch.randint(0, 10, (hp["batch_size"],))
    times = {}
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        start = time.time()
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
        times[flush] = (time.time() - start) / steps * 1000
    torch.set_flush_denormal(True)
    print(f"collapsed VGG-19 (BN scales 1e-6), batch {hp['batch_size']}: {times[False]:.0f} ms/step with subnormal "
          f"floats, {times[True]:.0f} ms/step flushed to zero (lib.train), {times[False] / times[True]:.1f}x")


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
    bench_collapsed()
