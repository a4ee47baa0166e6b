"""The kd notebook's runs checked against each other: the T x alpha sweep and the distillation itself.

Trusted code, run by the grader on the submitted files (never inside a student's sandbox). Checkpoints are read
only through lib.checkpoint (torch.load with weights_only=True), histories through lib.train.History, and no file
is followed through a symbolic link.

    check_kd_sweep(artifacts)        every run of the sweep exists and is what its history says: the sweep setup
                                     with that T and alpha, all its epochs, the student network, the best epoch,
                                     the recorded accuracy; no two of all the notebook's runs (sweep and students)
                                     the same function or the same curve
    check_kd_distilled(artifacts)    student_kd really was distilled from artifacts/teacher.pt: it is not the
                                     scratch run (weights, history), and its softened outputs are much closer to
                                     the teacher's than the scratch student's are

Runs are compared by their outputs (autograde.similarity.output_distance), not their parameters. The checks raise
AssertionError with a message for the student, like the rest of autograde.checks.
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
import torch.nn.functional as F

from autograde.checks.common import ACCURACY_TOLERANCE
from autograde.similarity import FUNCTION_TOLERANCE, MAX_CHECKPOINT_BYTES, output_distance
from lib import profile
from lib.artifacts import FOLDER, TEACHER, checkpoint_file, history_file, kd_student_runs, kd_sweep_runs, run_files
from lib.checkpoint import CheckpointError, load_model
from lib.data import images
from lib.models import VGG
from lib.models.vgg import VGG19_CFG, scale_cfg
from lib.train import History

if TYPE_CHECKING:
    from torch import nn

# A batch of the data loaders: (inputs, labels).
Batch: TypeAlias = tuple[torch.Tensor, torch.Tensor]
# One run of the sweep, as sweep_runs lists it: (artifact name without .pt, T, alpha, expected History config).
SweepRun: TypeAlias = tuple[str, float | None, float | None, dict[str, Any]]

# Two training curves are "the same" when their per-epoch losses differ by at most this, relative (a copied curve
# nudged by 1e-7 is still a copy; separately trained runs differ by percents from the first epoch on).
CURVE_TOLERANCE = 1e-3

# check_kd_distilled: KL(softmax(teacher / T) || softmax(student / T)) on the test split, at the profile's T.
# The distilled student must be at most this fraction of the scratch student's. Measured in the quick profile
# (60-epoch students on 10% of the images; KL at T = 4; the slimming lab's lambda = 0 VGG-19 as trained with 1
# and with 2 torch threads, and an older one; bench/bench_kd_teachers.py prints the ratios):
#   KD T=4 alpha=0.5 seeds 0-2              ratio to its seed's scratch run: 0.50-0.69
#   scratch seed i relabelled as seed j     ratio 0.85-1.18
# (With the whole training set the ratios were 0.12-0.19: with few images the student cannot follow the teacher
# as closely.) 0.77: 1.1x above the worst honest ratio and 1.1x below the closest relabelled scratch run.
DISTILLED_KL_RATIO = 0.77


# ------------------------------------------------------------------------------------------ shared pieces

def _artifact(artifacts: str | Path, name: str) -> Path:
    """artifacts/<name>: refused when it, or a folder between it and `artifacts`, is a symbolic link, or when it
    is larger than any checkpoint of the kit (MAX_CHECKPOINT_BYTES)."""
    root = Path(artifacts)
    path = link = root / name
    while link != root:
        if link.is_symlink():
            raise AssertionError(f"{path}: {link} is a symbolic link; submit the file itself (artifacts are "
                                 "read from your own folder only)")
        link = link.parent
    if path.is_file() and path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise AssertionError(f"{path}: {path.stat().st_size:,} bytes, far more than any artifact of this "
                             "assignment; save it again with the notebook")
    return path


def _history(path: Path) -> History:
    """The History at `path`, with every record checked to be a plain epoch record."""
    try:
        history = History.load(path)
    except (FileNotFoundError, ValueError) as error:
        raise AssertionError(str(error)) from None
    assert isinstance(history.config, dict), f"{path}: its 'config' must be a dict of hyperparameters"
    for i, record in enumerate(history.records):
        ok = (isinstance(record, dict) and isinstance(record.get("epoch"), int)
              and all(isinstance(record.get(k), (int, float)) and math.isfinite(record[k])
                      for k in ("val_accuracy", "val_loss", "train_loss")))
        assert ok, (f"{path}: record {i} is not an epoch record of lib.train.fit (epoch, train_loss, val_loss, "
                    "val_accuracy...); save histories with the notebook's training cells")
    assert len(history), f"{path} has no epochs; re-run the training cell"
    return history


def _run(artifacts: str | Path, name: str, cfg: Sequence[int | str],
         advice: str) -> tuple[VGG, dict[str, Any], History]:
    """(VGG with the weights, meta, History) of artifacts/<name>.pt and .json.

    The checkpoint's cfg must be `cfg`, and it must hold its history's best epoch. `advice` ends the message of
    a wrong cfg. (lib.checkpoint.load_model refuses a cfg that does not fit the stored weights before it builds
    anything: a cfg from a submitted file could ask for any size.)
    """
    path, json_path = (_artifact(artifacts, file) for file in run_files(name))
    try:
        with warnings.catch_warnings():   # torch's remarks on a hostile pickle are not the student's message
            warnings.simplefilter("ignore")
            model, meta = load_model(path, VGG)
    except CheckpointError as error:
        raise AssertionError(str(error)) from None
    assert model.cfg == list(cfg), f"{path} has cfg {model.cfg}, expected {list(cfg)}: {advice}"
    meta = meta if isinstance(meta, dict) else {}
    history = _history(json_path)
    assert meta.get("epoch") == history.best["epoch"], (
        f"{path} holds epoch {meta.get('epoch')}, but its history's best epoch is {history.best['epoch']}: "
        "the checkpoint and its history are from different runs; re-run the training cell")
    return model, meta, history


@functools.lru_cache(maxsize=1)
def _batches() -> dict[str, list[Batch]]:
    """{"val", "test"}: each split as a list of (inputs, labels) batches (loaded once per process)."""
    loaders = images.loaders(batch_size=256)
    return {split: list(loaders[split]) for split in ("val", "test")}


@torch.no_grad()
def _logits(model: nn.Module, batches: Iterable[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of `model` in eval mode on the CPU over all batches."""
    model.eval()
    outputs = [(model(x), y) for x, y in batches]
    return torch.cat([o for o, _ in outputs]), torch.cat([y for _, y in outputs])


# (path, size, mtime) of a run's .pt and .json -> (history, test logits): each run evaluated once
_EVALUATED: dict[tuple[Hashable, ...], tuple[History, torch.Tensor]] = {}


def _evaluated_run(artifacts: str | Path, name: str, cfg: Sequence[int | str],
                   advice: str) -> tuple[History, torch.Tensor]:
    """(History, test logits) of the run artifacts/<name>.pt/.json, checked as _run and _checked_logits check it;
    evaluated once per process (the kd checks of one grading share their runs)."""
    files = [_artifact(artifacts, file) for file in run_files(name)]
    try:
        key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files) + (tuple(cfg),)
    except OSError:
        key = None                         # a missing file: _run says which
    if key not in _EVALUATED:
        model, _, history = _run(artifacts, name, cfg, advice)
        logits = _checked_logits(model, history, _batches(), files[0])
        if key is None:
            return history, logits
        if len(_EVALUATED) > 64:           # one grading's runs are a dozen: a long-lived process stays small
            _EVALUATED.clear()
        _EVALUATED[key] = history, logits
    return _EVALUATED[key]


def _checked_logits(model: nn.Module, history: History, batches: dict[str, list[Batch]], path: Path) -> torch.Tensor:
    """The model's test logits, after checking its validation accuracy against the one its history recorded
    for its best epoch (`batches` as _batches() gives them)."""
    logits, labels = _logits(model, batches["val"])
    accuracy = 100.0 * (logits.argmax(1) == labels).float().mean().item()
    recorded = history.best["val_accuracy"]
    assert abs(accuracy - recorded) <= ACCURACY_TOLERANCE, (
        f"{path}: evaluated at {accuracy:.2f}% on the validation split, but its history records {recorded:.2f}%; "
        "the checkpoint and its history are from different runs; re-run the training cell")
    return _logits(model, batches["test"])[0]


def _kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, T: float) -> float:
    """KL(softmax(teacher / T) || softmax(student / T)), averaged over the examples."""
    return F.kl_div(F.log_softmax(student_logits.double() / T, 1), F.log_softmax(teacher_logits.double() / T, 1),
                    log_target=True, reduction="batchmean").item()


# ------------------------------------------------------------------------------------------------ kd sweep

def sweep_runs(config: dict[str, Any] | None = None) -> list[SweepRun]:
    """The runs the kd notebook's sweep cell leaves (lib.artifacts.kd_sweep_runs), as (artifact name without .pt,
    T, alpha, expected History config); T and alpha are None for the scratch run the heat map is compared with."""
    config = config or profile.config("kd")
    sweep_hp = dict(config["student"], epochs=config["sweep"]["epochs"])
    seed = config["seeds"][0]                # the sweep trains the first seed's student
    runs: list[SweepRun] = []
    for name, T, alpha in kd_sweep_runs(config):
        hp = dict(sweep_hp, seed=seed) if T is None else dict(sweep_hp, seed=seed, T=T, alpha=alpha)
        runs.append((name, T, alpha, History(hp).config))
    return runs


def _config_difference(found: dict[str, Any], expected: dict[str, Any]) -> str:
    """What differs between a recorded config and the expected one, in words."""
    parts: list[str] = []
    for key in sorted(set(found) | set(expected), key=str):
        if key not in found:
            parts.append(f"{key} is missing (expected {expected[key]!r})")
        elif key not in expected:
            parts.append(f"{key} = {found[key]!r} should not be there")
        elif found[key] != expected[key]:
            parts.append(f"{key} = {found[key]!r}, expected {key} = {expected[key]!r}")
    return "; ".join(parts)


def check_kd_sweep(artifacts: str | Path = FOLDER) -> None:
    """Every run of the kd notebook's T x alpha sweep (profile.config("kd")["sweep"]) is there and genuine.

    For each run (sweep_runs()): the checkpoint and its history exist; the history's config is the sweep setup
    with that T and alpha, as the notebook's train_student records it; it has the sweep's number of epochs; the
    checkpoint is the profile's student network and holds the history's best epoch, whose recorded accuracy
    the checkpoint reproduces on the validation split (within ACCURACY_TOLERANCE). No two runs have the same weights
    or training curve. Every distilled run with T > 1 behaves like one (_check_distilled against the sweep's
    scratch run and teacher.pt); at T = 1 the teacher's softmax is nearly the labels, and a distilled run is
    measurably but not reliably closer to the teacher than a scratch run (KL ratio 0.36-0.49 at T = 1 and 4).
    """
    config = profile.config("kd")
    student_cfg = list(config["student_cfg"])
    grid = f"T in {tuple(config['sweep']['T'])} x alpha in {tuple(config['sweep']['alpha'])}"
    loaded: list[tuple[str, float | None, History, torch.Tensor]] = []
    for name, T, alpha, expected in sweep_runs(config):
        what = f"the sweep's run T = {T}, alpha = {alpha}" if T is not None else "the sweep's scratch run"
        json_path = Path(artifacts) / history_file(name)
        try:
            history, logits = _evaluated_run(artifacts, name, student_cfg, "the profile's student; train every "
                                             "run with the notebook's train_student")
        except AssertionError as error:
            raise AssertionError(f"{error} ({' and '.join(run_files(name))} are {what}; the sweep cell trains one "
                                 f"student for every {grid}: run it to the end and submit {FOLDER}/ with all its "
                                 "files)") from None
        difference = _config_difference(history.config, expected)
        assert not difference, (
            f"{json_path} is {what}, but it records {difference}. It must be trained with the sweep setup "
            f"{expected}: run the sweep cell unchanged")
        epochs = [r["epoch"] for r in history.records]
        assert epochs == list(range(1, expected["epochs"] + 1)), (
            f"{json_path} has the epochs {epochs[:3]}...{epochs[-1:]} ({len(epochs)} records), the sweep trains "
            f"{expected['epochs']} (epochs 1 to {expected['epochs']}): run the sweep cell to the end")
        loaded.append((name, T, history, logits))

    # Every run of the notebook against every other: the sweep's, and the students' of every seed.
    sweep_names = {name for name, *_ in loaded}
    students = [(name, None, *_evaluated_run(artifacts, name, student_cfg, "the profile's student; train every "
                                             "student with the notebook's train_student"))
                for _, _, name in kd_student_runs(config) if name not in sweep_names]
    _check_all_different([(name, history, logits) for name, _, history, logits in loaded + students],
                         "each run of the sweep trains its own student with its own T and alpha, and each student "
                         "run is its own training; run the sweep cell (and the training cell)")

    teacher_logits = _teacher_logits(artifacts)
    scratch_name, _, _, scratch_logits = loaded[-1]
    for name, T, _, logits in loaded[:-1]:
        if T is not None and T > 1:     # T is None only for the scratch run, loaded[-1]
            _check_distilled(name, logits, scratch_name, scratch_logits, teacher_logits, config["T"],
                             "run the sweep cell with your kd_loss")


def same_curve(history: History, other: History) -> bool:
    """Whether two histories record the same training curve: the same epochs, and per-epoch losses (train and
    validation) within CURVE_TOLERANCE of each other, relative. Separately trained runs never share one."""
    a = torch.tensor([[r["train_loss"], r["val_loss"]] for r in history.records], dtype=torch.float64)
    b = torch.tensor([[r["train_loss"], r["val_loss"]] for r in other.records], dtype=torch.float64)
    if a.shape != b.shape:
        return False
    return bool(((a - b).abs() <= CURVE_TOLERANCE * torch.maximum(a.abs(), b.abs())).all())


def _check_all_different(runs: Sequence[tuple[str, History, torch.Tensor]], advice: str) -> None:
    """runs: [(name, History, test logits)] that must all be separate trainings: no two compute the same function
    (output_distance <= FUNCTION_TOLERANCE: the same weights, up to reordered channels or small noise) or record
    the same training curve."""
    for i, (name, history, logits) in enumerate(runs):
        for other, other_history, other_logits in runs[:i]:
            distance = output_distance(logits, other_logits)
            assert distance > FUNCTION_TOLERANCE, (
                f"{checkpoint_file(name)} has the same weights as {checkpoint_file(other)}, up to reordered channels "
                f"or small noise: its outputs on the test images are {distance:.1e} from those of "
                f"{checkpoint_file(other)}, relative (separately "
                f"trained runs: more than 0.5): {advice}")
            assert not same_curve(history, other_history), (
                f"{history_file(name)} records the same training curve as {history_file(other)}: {advice}")


# ------------------------------------------------------------------------------------------ distillation

def _teacher_logits(artifacts: str | Path) -> torch.Tensor:
    """The test logits of artifacts/teacher.pt, after checking it is the profile's VGG-19 and its history's run."""
    teacher_cfg = scale_cfg(VGG19_CFG, profile.config("vgg")["width"])
    return _evaluated_run(artifacts, TEACHER, teacher_cfg,
                          "the teacher is the profile's VGG-19 (the slimming assignment's lambda = 0 run, or the one "
                          "the notebook's teacher cell trains)")[1]


def _check_distilled(name: str, logits: torch.Tensor, scratch_name: str, scratch_logits: torch.Tensor,
                     teacher_logits: torch.Tensor, T: float, advice: str) -> None:
    """The run `name` is at most DISTILLED_KL_RATIO times as far (KL at T) from the teacher as the scratch run."""
    kl, kl_scratch = _kl(teacher_logits, logits, T), _kl(teacher_logits, scratch_logits, T)
    assert kl <= DISTILLED_KL_RATIO * kl_scratch, (
        f"{checkpoint_file(name)} does not behave like a student distilled from {checkpoint_file(TEACHER)}: at "
        f"T = {T} its softened outputs are {kl:.4f} (KL divergence) away from the teacher's, those of "
        f"{checkpoint_file(scratch_name)} (trained on the labels "
        f"only) {kl_scratch:.4f}; a student trained with kd_loss and this teacher gets much closer to it (under "
        f"{DISTILLED_KL_RATIO:g} times the scratch student's distance). {advice}")


def check_kd_distilled(artifacts: str | Path = FOLDER) -> None:
    """Every KD student was distilled from artifacts/teacher.pt, and no student run is another one relabelled.

    1. teacher.pt is the profile's VGG-19 and reproduces the accuracy its history records;
    2. the student runs of every seed (lib.artifacts.kd_student_runs) differ from each other (weights and
       training curves): a copy of the scratch run with T and alpha added to its history, or of one seed's run
       as another seed's, is caught here, also when its weights were re-saved with small noise;
    3. behaviour: on the test split, KL(softmax(teacher / T) || softmax(student / T)) at the profile's T is, for
       each distilled student, at most DISTILLED_KL_RATIO times its seed's scratch student's (measured: 0.50-0.69
       times; another scratch run, e.g. with another seed, labelled as KD: 0.85-1.18 times).
    """
    config = profile.config("kd")
    teacher_logits = _teacher_logits(artifacts)
    students: dict[str, tuple[int, str, History, torch.Tensor]] = {}
    for seed, kind, name in kd_student_runs(config):
        history, logits = _evaluated_run(artifacts, name, list(config["student_cfg"]), "the profile's student; "
                                         "train every student with the notebook's train_student")
        students[name] = seed, kind, history, logits
    _check_all_different([(name, history, logits) for name, (_, _, history, logits) in students.items()],
                         "every student run (each seed, scratch and KD) is its own training; run the training cell")
    scratch = {seed: name for name, (seed, kind, *_) in students.items() if kind == "scratch"}
    for name, (seed, kind, _, logits) in students.items():
        if kind == "kd":
            _check_distilled(name, logits, scratch[seed], students[scratch[seed]][3], teacher_logits, config["T"],
                             f"Train {name} with the notebook's KD cell, with this teacher")


