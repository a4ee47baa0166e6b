"""Training loop of every lab: fit, evaluate, a History of per-epoch records, and fit_or_load for grading.

    hp = profile.config("vgg")                    # epochs, lr, momentum, weight_decay, milestones, ...
    history = fit(model, loaders, hp, save_path="artifacts/vgg.pt",
                  after_backward=lambda m: update_bn(m, s))   # your code, run after every loss.backward()

Your code plugs in through hooks instead of editing this loop:
    after_backward(model)           called after loss.backward(), before optimizer.step(), every batch
    step(model, inputs, targets)    returns (loss, logits); the default is cross-entropy on model(inputs)
    epoch_metrics={name: f}         f(model) -> a number, recorded in the history after every epoch,
                                    e.g. {"sparsity": lambda m: sparsity(m, threshold)} in the slimming lab
"""
from __future__ import annotations

import getpass
import hashlib
import itertools
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import grading, profile
from .artifacts import ArtifactError, explain, history_path
from .artifacts import last_path as last_path   # the notebooks import it from here
from .checkpoint import load_checkpoint, load_into, save_checkpoint
from .grading import may_write

if TYPE_CHECKING:
    from .checkpoint import CfgModel

Batch = tuple[torch.Tensor, torch.Tensor]        # (inputs, targets), as a DataLoader of the labs gives them
Step = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]   # -> (loss, logits)

# A network whose scale factors all collapsed (sparsity_train's largest lambda) computes with subnormal floats,
# which a CPU handles about 10x slower than normal ones: flush them to zero (they are below 1e-38).
torch.set_flush_denormal(True)

FALLBACK_EPOCHS = 1   # grading a submission without matching artifacts: a short run, so the notebook still runs


def student_seed() -> int:
    """This student's own seed, added to every seed of the labs: two students' runs start from other random
    weights and see other batches, so their checkpoints differ (the grader reports near-identical checkpoints
    of two students as possible copies), while each student's runs repeat exactly.

    LAB_SEED=<integer> sets it (empty counts as unset). The kit's own builds (reference work, answer keys, lib/CALIBRATION.md, the
    preflight, the tests) run with LAB_SEED=0. Without it, it is drawn from the student's id: LAB_STUDENT,
    else JUPYTERHUB_USER, else the login name. Returns an int in [0, 2**24).
    """
    pinned = os.environ.get("LAB_SEED", "").strip()
    if pinned:
        try:
            return int(pinned)
        except ValueError:
            raise ValueError(f"LAB_SEED={pinned!r}: expected an integer (the kit's own builds use LAB_SEED=0)") from None
    student = os.environ.get("LAB_STUDENT") or os.environ.get("JUPYTERHUB_USER") or _login()
    return int.from_bytes(hashlib.sha256(student.encode()).digest()[:3], "big")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):      # a container user without a name
        return str(os.getuid())


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch with `seed` + student_seed(), so that a run can be repeated; returns that
    seed."""
    seed += student_seed()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


class History:
    """Per-epoch records of one run plus the configuration that produced it; saved as JSON.

    history["val_accuracy"] is the list of one column over the epochs; history.records the raw dicts.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, records: Iterable[dict[str, Any]] | None = None,
                 seed: int | None = None) -> None:
        self.config: dict[str, Any] = _plain(config or {})
        self.records: list[dict[str, Any]] = list(records or [])
        self.seed = seed      # the seed fit() used (its `seed` + student_seed()); None in older histories

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))

    def __getitem__(self, key: str) -> list[Any]:
        return [r[key] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def best(self) -> dict[str, Any]:
        """The record of the epoch with the highest validation accuracy."""
        return max(self.records, key=lambda r: r["val_accuracy"])

    @property
    def kept(self) -> dict[str, Any]:
        """The record of the epoch whose weights the checkpoint holds: the run's rule (config "select")."""
        return kept_record(self.records, self.config.get("select", "best"))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if not may_write(path):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": self.config, "seed": self.seed, "records": self.records}, indent=1))
        os.replace(tmp, path)   # never leave a half-written history behind

    @classmethod
    def load(cls, path: str | Path) -> History:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(data["config"], data["records"], data.get("seed"))
        except FileNotFoundError:
            raise FileNotFoundError(explain(path, f"{path}: no such history file")) from None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a training history (expected JSON with 'config' and 'records'): "
                             f"{error}") from None


SMOOTHING_EPOCHS = 3   # select "smoothed": the window of epochs whose mean validation accuracy is compared


def kept_record(records: Sequence[dict[str, Any]], select: str = "best") -> dict[str, Any]:
    """Which epoch's weights a run keeps, from its records so far (list of dicts with "val_accuracy").

    select "best": the highest validation accuracy (the first, on a tie).
           "last": the last epoch, for a run that settles once its learning rate has decayed. (QAT at 2 bits
                   does not: its last epoch swings like any other, lib/CALIBRATION.md.)
           "smoothed": the last epoch of the SMOOTHING_EPOCHS consecutive epochs with the highest mean
                   validation accuracy, so that one lucky epoch between poor ones is not kept; the last epoch
                   while fewer epochs exist. Like "best", the kept epoch is the newest when it is chosen, so
                   fit() can save it as it goes.
    Returns one of `records`. Never select on the test split: it would no longer measure unseen data.
    """
    if select == "best":
        return max(records, key=lambda r: r["val_accuracy"])
    if select == "last":
        return records[-1]
    if select == "smoothed":
        k = SMOOTHING_EPOCHS
        if len(records) < k:
            return records[-1]
        means = [sum(r["val_accuracy"] for r in records[i - k + 1:i + 1]) / k for i in range(k - 1, len(records))]
        return records[k - 1 + means.index(max(means))]
    raise ValueError(f"select={select!r}: expected 'best', 'last' or 'smoothed'")


def param_groups(model: nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """SGD parameter groups: every parameter at hp["lr"], except the sinc band edges when hp has "sinc_lr".

    Band edges are in Hz with tiny gradients (SincConv1d.band_parameters), so they get their own learning
    rate, and no weight decay: decay would pull every cut-off towards 0 Hz. Group 0 is the main one.
    """
    if "sinc_lr" not in hp:
        return [dict(params=list(model.parameters()))]
    # any layer that says which of its parameters are band edges (SincConv1d): train.py knows no lab's model
    # (nn.Module's stubs type an attribute they do not know as Tensor | Module, even after hasattr)
    bands = [p for m in model.modules() if hasattr(m, "band_parameters")
             for p in m.band_parameters()]  # type: ignore[operator]
    rest = [p for p in model.parameters() if all(p is not b for b in bands)]
    return [dict(params=rest), dict(params=bands, lr=hp["sinc_lr"], weight_decay=0.0)]


def _plain(value: Any) -> Any:
    """`value` as JSON would give it back (tuples become lists), so saved and live configs compare equal."""
    return json.loads(json.dumps(value))


def cross_entropy_step(model: nn.Module, inputs: torch.Tensor,
                       targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(inputs)
    return F.cross_entropy(logits, targets), logits


def distillation_step(teacher: nn.Module,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor],
                      T: float, alpha: float) -> Step:
    """A `step` for fit() that trains a student on `loss_fn(student_logits, teacher_logits, labels, T, alpha)`.

    The teacher only gives targets: eval mode (its BN statistics stay as they are), no gradients,
    parameters frozen.
    """
    for p in teacher.parameters():
        p.requires_grad_(False)

    def step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher.eval()
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        logits = model(inputs)
        return loss_fn(logits, teacher_logits, targets, T, alpha), logits

    return step


def _batches(loader: Iterable[Batch]) -> Iterable[Batch]:
    """The batches of `loader`: all of them, or the first profile.preflight_batches() in a preflight."""
    limit = profile.preflight_batches()
    return loader if limit is None else itertools.islice(loader, limit)


def _show_progress(progress: bool | None) -> bool:
    return (not grading.active()) if progress is None else progress


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Batch], device: torch.device | None = None,
             progress: bool | None = None) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy in %) of `model` on every batch of `loader`, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, targets in tqdm(_batches(loader), desc="Testing", leave=False, disable=not _show_progress(progress)):
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)
        total_loss += F.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(1) == targets).sum().item()
        count += len(targets)
    model.train(was_training)
    return total_loss / count, 100.0 * correct / count


_recorded_setups: list[dict[str, Any]] | None = None   # the list setup_only() yields while it is active


@contextmanager
def setup_only() -> Iterator[list[dict[str, Any]]]:
    """Within it, fit and fit_or_load neither train nor load: each call appends {"model": model, "hp": hp,
    "save_path": str(save_path)} to the list this yields and returns None. To check a training setup before
    minutes of training:

        with setup_only() as runs:
            finetune(0.5)                  # your function, which calls fit_or_load
        assert runs[0]["hp"]["lr"] == 0.02
    """
    global _recorded_setups
    outer, _recorded_setups = _recorded_setups, []
    try:
        yield _recorded_setups
    finally:
        _recorded_setups = outer


def _recorded(model: nn.Module, hp: Mapping[str, Any], save_path: str | Path | None) -> bool:
    """True (and the call recorded) inside setup_only()."""
    if _recorded_setups is None:
        return False
    _recorded_setups.append({"model": model, "hp": dict(hp), "save_path": str(save_path)})
    return True


def fit(model: CfgModel, loaders: Mapping[str, DataLoader[Any]], hp: Mapping[str, Any],
        save_path: str | Path | None = None, after_backward: Callable[[nn.Module], None] | None = None,
        step: Step = cross_entropy_step, epoch_metrics: Mapping[str, Callable[[nn.Module], float]] | None = None,
        seed: int = 0, device: torch.device | None = None, progress: bool | None = None,
        save_last: bool = False) -> History | None:
    """Train `model` with SGD and a step schedule; return its History.

    loaders      dict with "train" and "val": the checkpoint is selected on "val" (ValueError without it);
                 a "test" loader is never used here: evaluate the returned (selected) model on it once
    hp           epochs, lr, momentum, weight_decay, milestones (fractions of the epochs where lr drops
                 x0.1); optional: sinc_lr (param_groups), select ("best", "last", "smoothed": kept_record);
                 any other keys are only recorded, so they tell runs apart
    save_path    where the kept checkpoint goes (by default the best validation epoch; never chosen on
                 test); its history goes next to it as .json. At the end the model holds those weights.
    epoch_metrics  {name: f}: each epoch's record also holds name = f(model), the model as that epoch ended
    seed         the batches' order and augmentation: seed + student_seed(), recorded as history.seed
    save_last    also save the last epoch's weights as <save_path stem>_last.pt (where the training ended,
                 which differs from the best epoch when a run degrades)
    In a preflight (profile.preflight_batches()) each epoch stops after that many batches, and its record
    also holds the seconds of each training step and the loaders' batch counts (autograde.preflight).
    """
    if _recorded(model, hp, save_path):
        return None
    _require_validation(loaders)
    seed = seed_everything(seed)
    if getattr(loaders["train"], "generator", None) is not None:
        loaders["train"].generator.manual_seed(seed)   # the same batches as any other run with this seed
    device = device or profile.device()
    model.to(device)
    optimizer = torch.optim.SGD(param_groups(model, hp), lr=hp["lr"], momentum=hp["momentum"],
                                weight_decay=hp["weight_decay"])
    # A short run may merge two milestones; one at epoch 0 would lower the lr before training starts.
    milestones = sorted({int(f * hp["epochs"]) for f in hp["milestones"]} - {0})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    val_loader = loaders["val"]
    history = History(config=hp, seed=seed)
    kept_state: dict[str, torch.Tensor] | None = None

    for epoch in range(1, hp["epochs"] + 1):
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        start, total_loss, correct, count = time.time(), 0.0, 0, 0
        batch_times, batch_start = [], start        # seconds of each step, data loading included
        for inputs, targets in tqdm(_batches(loaders["train"]), desc="Training", leave=False,
                                    disable=not _show_progress(progress)):
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss, logits = step(model, inputs, targets)
            loss.backward()
            if after_backward is not None:
                after_backward(model)
            optimizer.step()
            total_loss += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).sum().item()
            count += len(targets)
            batch_times.append(time.time() - batch_start)    # loss.item() above waited for the device
            batch_start = time.time()
        scheduler.step()
        train_time = time.time() - start

        start = time.time()
        val_loss, val_accuracy = evaluate(model, val_loader, device, progress)
        record: dict[str, Any] = dict(
            epoch=epoch, train_loss=total_loss / count, train_accuracy=100.0 * correct / count, val_loss=val_loss,
            val_accuracy=val_accuracy, lr=lr, train_time=train_time, val_time=time.time() - start)
        record.update({name: metric(model) for name, metric in (epoch_metrics or {}).items()})
        preflight = profile.preflight_batches()
        if preflight:     # what autograde.preflight scales to a whole epoch
            record.update(batch_times=batch_times, batches_per_epoch=len(loaders["train"]),
                          val_batches=min(len(val_loader), preflight),
                          val_batches_per_epoch=len(val_loader))
        history.append(record)
        print(f"Epoch: {epoch} |train loss: {record['train_loss']:.4f} |train accuracy: {record['train_accuracy']:.2f} "
              f"|validation loss: {val_loss:.4f} |validation accuracy: {val_accuracy:.2f} |learning rate: {lr:.1e} "
              f"|train time: {train_time:.2f} |validation time: {record['val_time']:.2f}")

        if kept_record(history.records, hp.get("select", "best")) is history.records[-1]:
            kept_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if save_path is not None:
                save_checkpoint(save_path, model, meta=dict(epoch=epoch, val_accuracy=val_accuracy))
        if save_path is not None:
            history.save(history_path(save_path))

    if save_path is not None and save_last:
        save_checkpoint(last_path(save_path), model, meta=dict(epoch=epoch, val_accuracy=val_accuracy))
    assert kept_state is not None, "fit() keeps one of the epochs: hp['epochs'] must be at least 1"
    model.load_state_dict(kept_state)
    return history


def _require_validation(loaders: Mapping[str, object]) -> None:
    """Refuse loaders without a "val" split: selecting the best epoch on the test split would make the
    reported test accuracy a biased (too high) estimate."""
    if "val" not in loaders:
        raise ValueError(
            f"fit() selects the best epoch on loaders['val'], but the loaders have only {sorted(loaders)}: "
            "hold a validation split out of the training data (lib.data.images.loaders() and "
            "lib.data.speech.loaders() return one); never select on the test split")


def fit_or_load(model: CfgModel, loaders: Mapping[str, DataLoader[Any]], hp: Mapping[str, Any], save_path: str | Path,
                **fit_kwargs: Any) -> History | None:
    """fit(), except while nbgrader runs the notebook: then the artifacts already there are loaded instead.

    The checkpoint `save_path` and its history (.json) are used when the history's config equals `hp` and
    the checkpoint's cfg equals model.cfg. When they are missing or do not match:
      grading (nbgrader autograde)  trains a short fallback run (FALLBACK_EPOCHS) so that the rest of the
                                    notebook still runs; its accuracy will be low. Submitted files are never
                                    overwritten (lib.grading.may_write): it only fills in what is missing.
      validating (nbgrader validate) raises ArtifactError naming the notebook and section that make the file:
                                    validating trains nothing and writes nothing.
    Returns the History; `model` holds the weights.
    """
    if _recorded(model, hp, save_path):
        return None
    save_path = Path(save_path)
    json_path = history_path(save_path)
    if grading.active():
        reason = artifacts_mismatch(model.cfg, hp, save_path, json_path)
        if reason is None:
            load_into(model, save_path)
            model.to(fit_kwargs.get("device") or profile.device())
            history = History.load(json_path)
            print(f"Loaded {save_path} ({len(history)} epochs, "
                  f"validation accuracy {history.kept['val_accuracy']:.2f}% at the kept epoch {history.kept['epoch']})")
            return history
        if grading.validating():
            raise ArtifactError(explain(save_path, f"Validation trains nothing, and {reason}"))
        print(f"Not using the submitted {save_path.name}: {reason}. Training {FALLBACK_EPOCHS} epoch(s) instead.")
        hp = dict(hp, epochs=min(hp["epochs"], FALLBACK_EPOCHS))
    return fit(model, loaders, hp, save_path=save_path, **fit_kwargs)


def artifacts_mismatch(cfg: Sequence[Any], hp: Mapping[str, Any], save_path: Path, history_path: Path) -> str | None:
    """None when the submitted artifacts belong to the run of a model with this `cfg` and `hp`, otherwise why not."""
    for path in (save_path, history_path):
        if not path.is_file():
            return f"{path} is missing"
    try:
        history = History.load(history_path)
        ckpt = load_checkpoint(save_path)
    except (ValueError, OSError) as error:
        return str(error)
    if history.config != _plain(hp):
        return f"{history_path} was trained with {history.config}, this cell asks for {_plain(hp)}"
    if list(ckpt["cfg"]) != list(cfg):
        return f"{save_path} has cfg {ckpt['cfg']}, the model has cfg {list(cfg)}"
    if not history.records:
        return f"{history_path} has no epochs"
    return None
