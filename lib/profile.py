"""Run profiles: which data, how big the models, how long the training, what the grader expects.

    quick (default)  embedded data sets, width-scaled models, few epochs: minutes on a laptop CPU, offline.
    full             CIFAR-10 and Speech Commands (downloaded), the published hyperparameters: meant for a GPU.

Pick one with the environment variable LAB_PROFILE before starting Jupyter:

    LAB_PROFILE=full jupyter lab

Every hyperparameter and every grading threshold of the kit lives in the two tables below, QUICK and FULL.
A threshold sits next to the measured value it was calibrated from, so a change of either is visible here.
"""
import copy
import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]   # the kit's top folder: lib/, data/, labs/ ...
DATA_DIR = ROOT / "data"
PROFILES = ("quick", "full")

# Reference setup of network slimming (Liu et al., ICCV 2017) for VGG-19 on CIFAR-10.
_VGG_FULL = dict(
    width=1.0, epochs=160, batch_size=64, lr=0.1, momentum=0.9, weight_decay=1e-4,
    milestones=(0.5, 0.75),    # lr x0.1 at 50% and 75% of the epochs
)

FULL = {
    "vgg": _VGG_FULL,
    # |gamma| below this counts as a pruned-away channel when we report sparsity.
    "sparsity_threshold": 1e-2,
    # Network slimming lab (solutions/slimming). lambdas: run tag -> s of the L1 penalty, increasing; the
    # paper's grid. vggprune prunes the run `sparse_tag` by each of `percents`; train_prune_model fine-tunes
    # the pruned nets with the "vgg" setup for `finetune_epochs`. Accuracies (test %) are PROVISIONAL: derived
    # from the reference code's CIFAR-10 anchors (93.77 baseline, 93.30 sparsity-trained, 93.78 after 70%
    # pruning + 160 fine-tune epochs) minus ~1 point, not yet measured with this kit on a GPU.
    "slimming": dict(
        lambdas={"s0": 0.0, "s1": 1e-4, "s2": 1e-2},
        sparse_tag="s1",
        percents=(0.5, 0.9),
        min_channels=4,
        finetune_epochs=160,
        baseline_accuracy=92.5,
        sparse_accuracy=92.5,
        finetuned_accuracy={"50": 92.5, "90": 88.0},
    ),
    "sincnet": dict(
        width=1.0, epochs=60, batch_size=128, lr=0.05, momentum=0.9, weight_decay=1e-4,
        milestones=(0.5, 0.75),
    ),
}

QUICK = {
    # 1/4 of VGG-19's channels on the embedded 32x32 digits; the schedule keeps the reference's shape.
    # Batch 32 gives the 1437 training images 45 steps per epoch. Measured (bench/bench_lib.py, 2 CPU
    # cores): 2.6 s per epoch, 94-95% test accuracy after 15 epochs.
    "vgg": dict(_VGG_FULL, width=0.25, epochs=15, batch_size=32),
    "sparsity_threshold": 1e-2,
    "sincnet": dict(
        width=0.25, epochs=15, batch_size=64, lr=0.05, momentum=0.9, weight_decay=1e-4,
        milestones=(0.5, 0.75),
    ),
}

TABLES = {"quick": QUICK, "full": FULL}


def name():
    """The active profile, "quick" or "full", from the environment variable LAB_PROFILE (default quick)."""
    value = os.environ.get("LAB_PROFILE", "").strip().lower() or "quick"
    if value not in PROFILES:
        raise ValueError(f"LAB_PROFILE={value!r} is not a profile: expected one of {', '.join(PROFILES)}")
    return value


def config(section, profile=None):
    """A copy of one section of the profile's table, e.g. config("vgg")["epochs"]."""
    table = TABLES[profile or name()]
    if section not in table:
        raise KeyError(f"profile {profile or name()!r} has no section {section!r}; sections: {sorted(table)}")
    return copy.deepcopy(table[section])


def device():
    """The fastest device here: a CUDA GPU, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def grading():
    """True while nbgrader runs the notebook (it sets NBGRADER_EXECUTION, e.g. to "autograde")."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))
