"""The teacher of the distillation lab: where it comes from, and a cache of its logits.

    teacher, source = load_teacher()          # a VGG-19 in eval mode, and a sentence saying where it came from
    distiller = CachedTeacher(teacher)        # the same logits, each batch's computed once

The teacher is the lambda = 0 VGG-19 of the slimming lab (../slimming/artifacts/sparsity_s0.pt), copied into
this assignment's artifacts/teacher.pt; without it, the same network is trained here with the same setup.
"""
import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import grading, profile
from .checkpoint import load_model
from .data import images
from .models import VGG
from .train import History, fit_or_load, seed_everything

SLIMMING = Path("../slimming/artifacts")   # what the slimming notebooks saved, if you did that assignment
ARTIFACTS = Path("artifacts")


def copy_from_slimming(name: str, new_name: str, slimming: str | Path = SLIMMING,
                       artifacts: str | Path = ARTIFACTS) -> bool:
    """Copy <slimming>/<name>.pt and .json to <artifacts>/<new_name>.pt and .json; True if they exist.

    Never while nbgrader grades or validates: a submission is graded from its own artifacts/ folder only, so
    everything the kd notebook uses from the slimming assignment is copied there first.
    """
    source = Path(slimming) / f"{name}.pt"
    if grading.active() or not (source.is_file() and source.with_suffix(".json").is_file()):
        return False
    Path(artifacts).mkdir(exist_ok=True)
    for suffix in (".pt", ".json"):
        shutil.copyfile(source.with_suffix(suffix), Path(artifacts) / f"{new_name}{suffix}")
    return True


def trained_with(path: str | Path, hp: Mapping[str, Any]) -> bool:
    """True when the checkpoint `path` and its history exist and the history was trained with exactly `hp`."""
    path = Path(path)
    return (path.is_file() and path.with_suffix(".json").is_file()
            and History.load(path.with_suffix(".json")).config == History(hp).config)


def load_teacher(hp: Mapping[str, Any] | None = None, slimming: str | Path = SLIMMING,
                 artifacts: str | Path = ARTIFACTS, device: torch.device | None = None) -> tuple[VGG, str]:
    """The teacher VGG-19 in eval mode on `device`, saved as <artifacts>/teacher.pt: (model, where it came from).

    hp  the teacher's training setup (default: the profile's "vgg", the slimming lab's VGG-19)
    In order: the slimming lab's lambda = 0 run (copied here); while nbgrader grades, the submitted
    teacher.pt; a teacher.pt trained with `hp` by an earlier run; else a new one trained here with `hp`.
    """
    hp = hp or profile.config("vgg")
    path = Path(artifacts) / "teacher.pt"
    if copy_from_slimming("sparsity_s0", "teacher", slimming, artifacts):
        source = f"the lambda = 0 run of the slimming assignment ({Path(slimming) / 'sparsity_s0.pt'})"
    elif grading.active() and path.is_file():
        source = f"the submitted {path}"
    elif trained_with(path, hp):
        source = f"{path}, trained by an earlier run of this notebook"
    else:
        print("No slimming artifacts found: training the teacher here.")
        seed_everything(0)
        fit_or_load(VGG(width=hp["width"]), images.loaders(batch_size=hp["batch_size"], seed=0), hp, save_path=path)
        source = "trained by this notebook"
    teacher, _ = load_model(path, VGG)
    return teacher.to(device or profile.device()).eval(), source


class CachedTeacher(torch.nn.Module):
    """The teacher, remembering its logits for every batch it has already seen.

    The teacher never changes, and every student run sees the same batches (same seed, same order,
    same augmentation), so after the first distillation run the teacher's logits come from this cache
    instead of a forward pass through VGG-19: the T x alpha sweep then costs what scratch runs cost.
    A batch is recognised by its bytes (a SHA-1 digest), so a different batch is never mixed up.
    """

    def __init__(self, teacher: torch.nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.logits: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) teacher logits of the batch x (B, 3, H, W), computed once per distinct batch."""
        key = hashlib.sha1(x.detach().cpu().numpy().tobytes()).hexdigest()
        if key not in self.logits:
            self.logits[key] = self.teacher(x)
        return self.logits[key]
