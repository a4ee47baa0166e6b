"""Artifact integrity: checks that tie a submission's artifacts to the work that should have produced them.

Trusted code, run by the grader on the submitted files (never inside the student's sandbox). Checkpoints are
read only through lib.checkpoint (torch.load with weights_only=True: a file can hold tensors and plain values,
never code), histories through lib.train.History, and no file is followed through a symbolic link.

    check_kd_sweep(artifacts)        every run of the kd notebook's T x alpha sweep exists and is what its
                                     history says: the sweep setup with that T and alpha, all its epochs, the
                                     student network, the best epoch, the recorded accuracy; no two of all the
                                     notebook's runs (sweep and students) the same function or the same curve
    check_kd_distilled(artifacts)    student_kd really was distilled from artifacts/teacher.pt: it is not the
                                     scratch run (weights, history), and its softened outputs are much closer to
                                     the teacher's than the scratch student's are
    similar_submissions(folders)     for the cohort: which students' checkpoints are identical or nearly
                                     identical to another student's, by their tensors or, for VGG checkpoints,
                                     by what they compute (reported to the TA, never a verdict)

Runs are compared by their outputs, not their parameters: reordering a network's channels (consistently through
its layers) gives other weights for the same function, which a parameter-by-parameter distance cannot see.

The check functions raise AssertionError with a message for the student, like autograde.checks.
"""
import functools
import hashlib
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from lib import profile
from lib.artifacts import kd_student_runs, kd_sweep_runs
from lib.checkpoint import CheckpointError, build_model, load_checkpoint, load_model
from lib.data import images
from lib.models import VGG
from lib.models.vgg import VGG19_CFG, scale_cfg
from lib.train import History

from autograde.checks.common import ACCURACY_TOLERANCE

# Two checkpoints are "nearly identical" when the size-weighted median over their floating-point tensors of the
# relative difference ||a - b|| / max(||a||, ||b||) (checkpoint_distance) is at most this. Measured on the
# quick-profile kd student (20 epochs): a copy with Gaussian noise of eps times each tensor's std: eps
# (1e-4 -> 1.0e-4, 1e-2 -> 1.0e-2); the same seed trained with 1 and with 2 torch threads (honest students whose
# rounding differs): 0.57; the scratch student and a KD student of the same seed: 0.57-0.67; two seeds:
# 1.26-1.42 (sqrt 2: unrelated); two freshly initialised networks: 1.41. 0.05 flags copies with up to ~5% noise
# and sits 11x below the closest pair of genuinely different runs.
NEAR_TOLERANCE = 0.05

# Two networks compute "the same function" when their logits on the same images are at most this far apart,
# relative: ||a - b|| / max(||a||, ||b||) (output_distance). Measured in the quick profile on 64 fixed random images
# (_function_probe) and on the test split: the closest pair of separately trained kd runs (11 runs: seeds, scratch
# and KD, the T x alpha sweep) 0.66 (test split: 0.53); the lambda = 0 and lambda > 0 slimming runs 1.03; a
# copy with its channels reordered 0.0 (the same function); one run's best and last epochs 0.04-0.21. 0.1 flags
# copies up to ~10% output noise, 5x below the closest honest pair.
FUNCTION_TOLERANCE = 0.1
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

# similar_submissions skips larger files: nbgrader's own limit per file (CourseDirectory.max_file_size, 200 MB),
# 2.5x the kit's largest checkpoint (VGG-19 at full width, 80 MB). The cohort client holds at most two at once.
MAX_CHECKPOINT_BYTES = 200 * 10**6
SKETCH_SIZE = 32                  # elements per tensor kept for the near-duplicate search


# ------------------------------------------------------------------------------------------ shared pieces

def _artifact(artifacts, name):
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


def _history(path):
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


def _run(artifacts, name, cfg, advice):
    """(VGG with the weights, meta, History) of artifacts/<name>.pt and .json.

    The checkpoint's cfg must be `cfg`, and it must hold its history's best epoch. `advice` ends the message of
    a wrong cfg. (lib.checkpoint.load_model refuses a cfg that does not fit the stored weights before it builds
    anything: a cfg from a submitted file could ask for any size.)
    """
    path = _artifact(artifacts, f"{name}.pt")
    json_path = _artifact(artifacts, f"{name}.json")
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
def _batches():
    """{"val", "test"}: each split as a list of (inputs, labels) batches (loaded once per process)."""
    loaders = images.loaders(batch_size=256)
    return {split: list(loaders[split]) for split in ("val", "test")}


def output_distance(a, b):
    """How differently two networks behave: ||a - b|| / max(||a||, ||b||) of their logits on the same images
    (a, b: (N, classes)). 0.0 for the same function (a copy, with its channels reordered or not)."""
    return _relative(a.double(), b.double())


@torch.no_grad()
def _logits(model, batches):
    """(logits, labels) of `model` in eval mode on the CPU over all batches."""
    model.eval()
    outputs = [(model(x), y) for x, y in batches]
    return torch.cat([o for o, _ in outputs]), torch.cat([y for _, y in outputs])


_EVALUATED = {}    # (path, size, mtime) of a run's .pt and .json -> (history, test logits): each run evaluated once


def _evaluated_run(artifacts, name, cfg, advice):
    """(History, test logits) of the run artifacts/<name>.pt/.json, checked as _run and _checked_logits check it;
    evaluated once per process (the kd checks of one grading share their runs)."""
    files = [_artifact(artifacts, f"{name}.pt"), _artifact(artifacts, f"{name}.json")]
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


def _checked_logits(model, history, batches, path):
    """The model's test logits, after checking its validation accuracy against the one its history recorded
    for its best epoch (`batches` as _batches() gives them)."""
    logits, labels = _logits(model, batches["val"])
    accuracy = 100.0 * (logits.argmax(1) == labels).float().mean().item()
    recorded = history.best["val_accuracy"]
    assert abs(accuracy - recorded) <= ACCURACY_TOLERANCE, (
        f"{path}: evaluated at {accuracy:.2f}% on the validation split, but its history records {recorded:.2f}%; "
        "the checkpoint and its history are from different runs; re-run the training cell")
    return _logits(model, batches["test"])[0]


def _float_tensors(state):
    """{name: float tensor} of a state dict (integer buffers such as num_batches_tracked say nothing)."""
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}


def checkpoint_distance(a, b):
    """How different two state dicts are: the relative difference ||a_k - b_k|| / max(||a_k||, ||b_k||) of their
    floating-point tensors, its median weighted by the tensors' sizes (at least half of the numbers sit in
    tensors at most this different). 0.0 for equal tensors, ~1 for independent runs; inf when the two do not
    have the same tensor names and shapes. Weighted by size, so that the many small tensors that start equal in
    every network (BatchNorm's initial 0.5 and 0, running statistics) do not make two fresh networks look alike,
    and replacing a few small tensors of a copy does not hide it."""
    a, b = _float_tensors(a), _float_tensors(b)
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a) or not a:
        return math.inf
    keys = sorted(a)
    relative = torch.tensor([[_relative(a[k], b[k]) for k in keys]], dtype=torch.float64)
    return _weighted_median(relative, torch.tensor([a[k].numel() for k in keys], dtype=torch.float64))[0].item()


def _relative(x, y, chunk=1 << 20):
    """||x - y|| / max(||x||, ||y||) in float64, a chunk at a time: no float64 copy of a whole tensor (a hostile
    class's checkpoints can be hundreds of MB each)."""
    x, y = x.reshape(-1), y.reshape(-1)
    xx = yy = dd = 0.0                  # sums of x^2, y^2 and (x - y)^2
    for start in range(0, x.numel(), chunk):
        a, b = x[start:start + chunk].double(), y[start:start + chunk].double()
        xx, yy, dd = xx + a.square().sum().item(), yy + b.square().sum().item(), dd + (a - b).square().sum().item()
    scale = math.sqrt(max(xx, yy))
    return 0.0 if scale == 0 else math.sqrt(dd) / scale


def _weighted_median(values, weights):
    """Per row of `values` (n, k): the smallest value v such that the entries <= v hold half of `weights` (k,)."""
    ordered, order = values.sort(dim=1)
    cumulative = weights[order].cumsum(dim=1)
    index = (cumulative < cumulative[:, -1:] / 2).sum(dim=1, keepdim=True).clamp_max(values.shape[1] - 1)
    return ordered.gather(1, index).squeeze(1)


def _kl(teacher_logits, student_logits, T):
    """KL(softmax(teacher / T) || softmax(student / T)), averaged over the examples."""
    return F.kl_div(F.log_softmax(student_logits.double() / T, 1), F.log_softmax(teacher_logits.double() / T, 1),
                    log_target=True, reduction="batchmean").item()


# ------------------------------------------------------------------------------------------------ kd sweep

def sweep_runs(config=None):
    """The runs the kd notebook's sweep cell leaves (lib.artifacts.kd_sweep_runs), as (artifact name without .pt,
    T, alpha, expected History config); T and alpha are None for the scratch run the heat map is compared with."""
    config = config or profile.config("kd")
    sweep_hp = dict(config["student"], epochs=config["sweep"]["epochs"])
    seed = config["seeds"][0]                # the sweep trains the first seed's student
    runs = []
    for name, T, alpha in kd_sweep_runs(config):
        hp = dict(sweep_hp, seed=seed) if T is None else dict(sweep_hp, seed=seed, T=T, alpha=alpha)
        runs.append((name, T, alpha, History(hp).config))
    return runs


def _config_difference(found, expected):
    """What differs between a recorded config and the expected one, in words."""
    parts = []
    for key in sorted(set(found) | set(expected), key=str):
        if key not in found:
            parts.append(f"{key} is missing (expected {expected[key]!r})")
        elif key not in expected:
            parts.append(f"{key} = {found[key]!r} should not be there")
        elif found[key] != expected[key]:
            parts.append(f"{key} = {found[key]!r}, expected {key} = {expected[key]!r}")
    return "; ".join(parts)


def check_kd_sweep(artifacts="artifacts"):
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
    loaded = []
    for name, T, alpha, expected in sweep_runs(config):
        what = f"the sweep's run T = {T}, alpha = {alpha}" if T is not None else "the sweep's scratch run"
        json_path = Path(artifacts) / f"{name}.json"
        try:
            history, logits = _evaluated_run(artifacts, name, student_cfg, "the profile's student; train every "
                                             "run with the notebook's train_student")
        except AssertionError as error:
            raise AssertionError(f"{error} ({name}.pt/.json is {what}; the sweep cell trains one student for "
                                 f"every {grid}: run it to the end and submit artifacts/ with all its files)") from None
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
        if T > 1:
            _check_distilled(name, logits, scratch_name, scratch_logits, teacher_logits, config["T"],
                             "run the sweep cell with your kd_loss")


def same_curve(history, other):
    """Whether two histories record the same training curve: the same epochs, and per-epoch losses (train and
    validation) within CURVE_TOLERANCE of each other, relative. Separately trained runs never share one."""
    a = torch.tensor([[r["train_loss"], r["val_loss"]] for r in history.records], dtype=torch.float64)
    b = torch.tensor([[r["train_loss"], r["val_loss"]] for r in other.records], dtype=torch.float64)
    if a.shape != b.shape:
        return False
    return bool(((a - b).abs() <= CURVE_TOLERANCE * torch.maximum(a.abs(), b.abs())).all())


def _check_all_different(runs, advice):
    """runs: [(name, History, test logits)] that must all be separate trainings: no two compute the same function
    (output_distance <= FUNCTION_TOLERANCE: the same weights, up to reordered channels or small noise) or record
    the same training curve."""
    for i, (name, history, logits) in enumerate(runs):
        for other, other_history, other_logits in runs[:i]:
            distance = output_distance(logits, other_logits)
            assert distance > FUNCTION_TOLERANCE, (
                f"{name}.pt has the same weights as {other}.pt, up to reordered channels or small noise: its "
                f"outputs on the test images are {distance:.1e} from those of {other}.pt, relative (separately "
                f"trained runs: more than 0.5): {advice}")
            assert not same_curve(history, other_history), (
                f"{name}.json records the same training curve as {other}.json: {advice}")


# ------------------------------------------------------------------------------------------ distillation

def _teacher_logits(artifacts):
    """The test logits of artifacts/teacher.pt, after checking it is the profile's VGG-19 and its history's run."""
    teacher_cfg = scale_cfg(VGG19_CFG, profile.config("vgg")["width"])
    return _evaluated_run(artifacts, "teacher", teacher_cfg,
                          "the teacher is the profile's VGG-19 (the slimming assignment's lambda = 0 run, or the one "
                          "the notebook's teacher cell trains)")[1]


def _check_distilled(name, logits, scratch_name, scratch_logits, teacher_logits, T, advice):
    """The run `name` is at most DISTILLED_KL_RATIO times as far (KL at T) from the teacher as the scratch run."""
    kl, kl_scratch = _kl(teacher_logits, logits, T), _kl(teacher_logits, scratch_logits, T)
    assert kl <= DISTILLED_KL_RATIO * kl_scratch, (
        f"{name}.pt does not behave like a student distilled from teacher.pt: at T = {T} its softened outputs are "
        f"{kl:.4f} (KL divergence) away from the teacher's, those of {scratch_name}.pt (trained on the labels "
        f"only) {kl_scratch:.4f}; a student trained with kd_loss and this teacher gets much closer to it (under "
        f"{DISTILLED_KL_RATIO:g} times the scratch student's distance). {advice}")


def check_kd_distilled(artifacts="artifacts"):
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
    students = {}
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


# ------------------------------------------------------------------------------- similar submissions

@dataclass(frozen=True)
class Fingerprint:
    """What similar_submissions keeps of one checkpoint: an exact digest and a small sketch of its tensors."""
    student: str
    path: Path          # the file
    name: str           # its path relative to the submission folder (the same for every student)
    digest: str         # SHA-256 of every tensor's name, dtype, shape and contents (not of the file's bytes)
    layout: tuple       # (name, shape) of the floating-point tensors: only equal layouts are compared
    sketch: torch.Tensor   # (tensors, SKETCH_SIZE): SKETCH_SIZE evenly spaced elements of each float tensor
    outputs: Optional[torch.Tensor] = None   # (_function_probe() images, classes): a VGG checkpoint's logits


@dataclass(frozen=True)
class Match:
    """Two students' checkpoints found identical (distance 0.0) or nearly identical: checkpoint_distance at most
    NEAR_TOLERANCE, or output_distance at most FUNCTION_TOLERANCE (the same function, e.g. reordered channels)."""
    student: str
    path: Path
    other: str
    other_path: Path
    distance: float


def _checkpoint_files(folder):
    """Every regular *.pt file under an artifacts/ folder of `folder`; symbolic links are not followed."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):   # followlinks=False: linked folders are not entered
        dirs.sort()
        for file in sorted(files):
            path = Path(root) / file
            if file.endswith(".pt") and "artifacts" in path.relative_to(folder).parts[:-1]:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_CHECKPOINT_BYTES:
                    yield path


def _digest(state):
    digest = hashlib.sha256()
    for key in sorted(state, key=str):
        value = state[key]
        digest.update(repr(key).encode())
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy())      # the buffer itself, not a copy
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _sketch(tensors):
    rows = []
    for value in tensors.values():
        flat = value.detach().reshape(-1)
        if flat.numel() > SKETCH_SIZE:
            flat = flat[torch.linspace(0, flat.numel() - 1, SKETCH_SIZE, dtype=torch.float64).long()]
        rows.append(F.pad(flat.double(), (0, SKETCH_SIZE - flat.numel())))
    return torch.stack(rows) if rows else torch.zeros(0, SKETCH_SIZE, dtype=torch.float64)


@functools.lru_cache(maxsize=1)
def _function_probe():
    """The images every VGG checkpoint is run on to compare what it computes: 64 fixed random 32x32 images (no
    data set needed; two separately trained networks disagree on them as much as on real images)."""
    return torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _vgg_outputs(ckpt, path):
    """The logits on _function_probe() of the VGG checkpoint `ckpt` (read from `path`), or None when it is no VGG
    checkpoint."""
    bias = ckpt["state_dict"].get("classifier.bias")
    if not isinstance(bias, torch.Tensor) or bias.dim() != 1:
        return None
    try:
        model, _ = build_model(ckpt, VGG, path, num_classes=bias.shape[0])
        return model.eval()(_function_probe()).double()
    except (CheckpointError, RuntimeError, TypeError, ValueError):   # a cfg that takes no 32x32 image, too
        return None


def reordered_channels(model, seed=0):
    """A copy of the VGG `model` with the channels of every conv layer in another order (the next layer's inputs
    reordered to match): other weights, parameter by parameter as far apart as two unrelated networks, and the
    same function. The copy find_similar_checkpoints' function comparison is there to see through."""
    copy = VGG(model.cfg, num_classes=model.classifier.out_features)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    convs = [i for i, layer in enumerate(model.feature) if isinstance(layer, torch.nn.Conv2d)]
    for n, i in enumerate(convs):
        order = torch.randperm(model.feature[i].out_channels, generator=g)
        state[f"feature.{i}.weight"] = state[f"feature.{i}.weight"][order]
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"feature.{i + 1}.{name}"] = state[f"feature.{i + 1}.{name}"][order]
        following = f"feature.{convs[n + 1]}.weight" if n + 1 < len(convs) else "classifier.weight"
        state[following] = state[following][:, order]
    copy.load_state_dict(state)
    return copy


def fingerprint(student, folder, path):
    """The Fingerprint of one checkpoint file, or None when it is not a readable lib.checkpoint file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = load_checkpoint(path)                  # weights_only=True: a pickle with code is refused
            state = ckpt["state_dict"]
            if not isinstance(state, dict) or not state:
                return None
            tensors = dict(sorted(_float_tensors(state).items()))
            layout = tuple((k, tuple(v.shape)) for k, v in tensors.items())
            return Fingerprint(student, Path(path), Path(path).relative_to(folder).as_posix(), _digest(state),
                               layout, _sketch(tensors), _vgg_outputs(ckpt, path))
    except Exception:   # CheckpointError, or a dict of odd values: not a checkpoint anyone can be compared on
        return None


def _sketch_distances(sketches, sizes, rows=64):
    """(n, n) estimates of checkpoint_distance from the sketches (n, tensors, SKETCH_SIZE); sizes: (tensors,)."""
    n = len(sketches)
    by_tensor = sketches.transpose(0, 1)                            # (tensors, n, SKETCH_SIZE)
    norms = by_tensor.norm(dim=2)                                   # (tensors, n)
    result = torch.empty((n, n), dtype=torch.float64)
    for start in range(0, n, rows):                                 # (tensors, rows, n) at a time
        stop = min(n, start + rows)
        diff = torch.cdist(by_tensor[:, start:stop], by_tensor)
        scale = torch.maximum(norms[:, start:stop, None], norms[:, None, :])
        relative = torch.where(scale > 0, diff / scale.clamp_min(1e-300), torch.zeros_like(diff))
        result[start:stop] = _weighted_median(relative.permute(1, 2, 0).reshape(-1, len(sizes)), sizes).view(
            stop - start, n)
    return result


def find_similar_checkpoints(folders, tolerance=NEAR_TOLERANCE):
    """Every pair of checkpoints of two different students that are identical or nearly identical: [Match].

    Exact: the same tensor contents under any name (a copy, or a copy loaded and saved again). Near: the same
    file name and tensor layout and checkpoint_distance <= tolerance (a copy with small noise added). The
    near search compares small sketches first and loads both files again only for the candidates. Same function:
    VGG checkpoints of the same file name whose outputs on fixed images are within FUNCTION_TOLERANCE
    (output_distance: a copy with its channels reordered, or with noise added).
    """
    prints = [fp for student, folder in folders.items() for path in _checkpoint_files(folder)
              if (fp := fingerprint(student, folder, path)) is not None]
    matches = {}

    def add(a, b, distance):
        for x, y in ((a, b), (b, a)):
            key = (x.student, x.path, y.student, y.path)
            if key not in matches or distance < matches[key].distance:
                matches[key] = Match(x.student, x.path, y.student, y.path, distance)

    by_digest = {}
    for fp in prints:
        by_digest.setdefault(fp.digest, []).append(fp)
    for group in by_digest.values():
        for i, a in enumerate(group):
            for b in group[:i]:
                if a.student != b.student:
                    add(a, b, 0.0)

    @functools.lru_cache(maxsize=2)     # a pair at a time: a hostile class cannot fill the client's memory
    def state(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_checkpoint(path)["state_dict"]

    by_layout = {}
    for fp in prints:
        by_layout.setdefault((fp.name, fp.layout), []).append(fp)
    for group in by_layout.values():
        if len({fp.student for fp in group}) < 2 or not group[0].layout:   # no float tensor: nothing to measure
            continue
        sizes = torch.tensor([math.prod(shape) for _, shape in group[0].layout], dtype=torch.float64)
        estimates = _sketch_distances(torch.stack([fp.sketch for fp in group]), sizes)
        # A sketch of SKETCH_SIZE elements estimates a tensor's relative difference to within a factor ~2:
        # candidates up to 4x the tolerance are confirmed on the full tensors.
        for i, j in (estimates <= 4 * tolerance).nonzero().tolist():
            a, b = group[i], group[j]
            if j >= i or a.student == b.student or a.digest == b.digest:
                continue
            try:
                distance = checkpoint_distance(state(a.path), state(b.path))
            except Exception:
                continue
            if distance <= tolerance:
                add(a, b, distance)

    by_function = {}
    for fp in prints:
        if fp.outputs is not None:
            by_function.setdefault((fp.name, tuple(fp.outputs.shape)), []).append(fp)
    for group in by_function.values():
        if len({fp.student for fp in group}) < 2:
            continue
        outputs = torch.stack([fp.outputs.reshape(-1) for fp in group])            # (n, images x classes)
        norms = outputs.norm(dim=1)
        distances = torch.cdist(outputs, outputs) / torch.maximum(norms[:, None], norms[None, :]).clamp_min(1e-300)
        for i, j in (distances <= FUNCTION_TOLERANCE).nonzero().tolist():
            if j < i and group[i].student != group[j].student:
                add(group[i], group[j], distances[i, j].item())
    return sorted(matches.values(), key=lambda m: (m.student, str(m.path), m.other, str(m.other_path)))


def similar_submissions(folders, tolerance=NEAR_TOLERANCE):
    """{student: sorted list of the other students with an identical or nearly identical checkpoint}.

    `folders` maps each student to their submission folder; every *.pt under an artifacts/ folder in it is
    compared by tensor contents, not file bytes (saving a copy again does not hide it): identical tensors under
    any file name, or, for the same file name and tensor shapes, a checkpoint_distance (size-weighted median of
    the tensors' relative differences) of at most `tolerance` (a copy with small noise added). Files that are
    not readable lib.checkpoint files (a truncated file, a pickle with code: weights_only=True never runs it),
    symbolic links and files over MAX_CHECKPOINT_BYTES are skipped. Every student of `folders` is a key.

    VGG checkpoints are also compared by what they compute (find_similar_checkpoints): a classmate's network
    with its channels reordered computes the same function with other weights, and is listed.

    This reports similarity; it does not decide anything: the TA does. Honest students' runs differ because
    each student's seeds are drawn from their id (lib.train.student_seed); two students who run with the same
    LAB_SEED on the same kind of machine and thread count get bitwise-identical checkpoints, and are listed.
    """
    result = {student: set() for student in folders}
    for match in find_similar_checkpoints(folders, tolerance):
        result[match.student].add(match.other)
    return {student: sorted(others) for student, others in result.items()}
