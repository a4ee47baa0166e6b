"""Similar submissions: which students' checkpoints are identical or nearly identical to another student's.

Trusted code, run by the grader on the submitted files (never inside a student's sandbox). Checkpoints are read
only through lib.checkpoint (torch.load with weights_only=True: a file can hold tensors and plain values, never
code), and no file is followed through a symbolic link.

    similar_submissions(folders)     for the cohort: which students' checkpoints are identical or nearly
                                     identical to another student's, by their tensors or, for VGG checkpoints,
                                     by what they compute (reported to the TA, never a verdict)
    checkpoint_distance(a, b)        how far two state dicts are (also: a fine-tuned network from its parent)
    output_distance(a, b)            how differently two networks behave, from their logits on the same images

Networks are also compared by their outputs, not only their parameters: reordering a network's channels
(consistently through its layers) gives other weights for the same function, which a parameter-by-parameter
distance cannot see.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lib.artifacts import CHECKPOINT_SUFFIX, FOLDER
from lib.checkpoint import Checkpoint, CheckpointError, build_model, load_checkpoint
from lib.models import VGG

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import TypeAlias

    Layout: TypeAlias = tuple[tuple[str, tuple[int, ...]], ...]     # (name, shape) of each tensor

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

# similar_submissions skips larger files: nbgrader's own limit per file (CourseDirectory.max_file_size, 200 MB),
# 2.5x the kit's largest checkpoint (VGG-19 at full width, 80 MB). The cohort client holds at most two at once.
MAX_CHECKPOINT_BYTES = 200 * 10**6
SKETCH_SIZE = 32                  # elements per tensor kept for the near-duplicate search


def output_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """How differently two networks behave: ||a - b|| / max(||a||, ||b||) of their logits on the same images
    (a, b: (N, classes)). 0.0 for the same function (a copy, with its channels reordered or not)."""
    return _relative(a.double(), b.double())


def _float_tensors(state: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """{name: float tensor} of a state dict (integer buffers such as num_batches_tracked say nothing)."""
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}


def checkpoint_distance(a: Mapping[str, object], b: Mapping[str, object]) -> float:
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


def _relative(x: torch.Tensor, y: torch.Tensor, chunk: int = 1 << 20) -> float:
    """||x - y|| / max(||x||, ||y||) in float64, a chunk at a time: no float64 copy of a whole tensor (a hostile
    class's checkpoints can be hundreds of MB each)."""
    x, y = x.reshape(-1), y.reshape(-1)
    xx = yy = dd = 0.0                  # sums of x^2, y^2 and (x - y)^2
    for start in range(0, x.numel(), chunk):
        a, b = x[start:start + chunk].double(), y[start:start + chunk].double()
        xx, yy, dd = xx + a.square().sum().item(), yy + b.square().sum().item(), dd + (a - b).square().sum().item()
    scale = math.sqrt(max(xx, yy))
    return 0.0 if scale == 0 else math.sqrt(dd) / scale


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per row of `values` (n, k): the smallest value v such that the entries <= v hold half of `weights` (k,)."""
    ordered, order = values.sort(dim=1)
    cumulative = weights[order].cumsum(dim=1)
    index = (cumulative < cumulative[:, -1:] / 2).sum(dim=1, keepdim=True).clamp_max(values.shape[1] - 1)
    return ordered.gather(1, index).squeeze(1)


# ------------------------------------------------------------------------------- similar submissions

@dataclass(frozen=True)
class Fingerprint:
    """What similar_submissions keeps of one checkpoint: an exact digest and a small sketch of its tensors."""
    student: str
    path: Path          # the file
    name: str           # its path relative to the submission folder (the same for every student)
    digest: str         # SHA-256 of every tensor's name, dtype, shape and contents (not of the file's bytes)
    layout: Layout      # (name, shape) of the floating-point tensors: only equal layouts are compared
    sketch: torch.Tensor   # (tensors, SKETCH_SIZE): SKETCH_SIZE evenly spaced elements of each float tensor
    outputs: torch.Tensor | None = None   # (_function_probe() images, classes): a VGG checkpoint's logits


@dataclass(frozen=True)
class Match:
    """Two students' checkpoints found identical (distance 0.0) or nearly identical: checkpoint_distance at most
    NEAR_TOLERANCE, or output_distance at most FUNCTION_TOLERANCE (the same function, e.g. reordered channels)."""
    student: str
    path: Path
    other: str
    other_path: Path
    distance: float


def _checkpoint_files(folder: str | Path) -> Iterator[Path]:
    """Every regular *.pt file under an artifacts/ folder of `folder`; symbolic links are not followed."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):   # followlinks=False: linked folders are not entered
        dirs.sort()
        for file in sorted(files):
            path = Path(root) / file
            if file.endswith(CHECKPOINT_SUFFIX) and FOLDER in path.relative_to(folder).parts[:-1]:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_CHECKPOINT_BYTES:
                    yield path


def _digest(state: Mapping[str, object]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state, key=str):
        value = state[key]
        digest.update(repr(key).encode())
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            # the buffer itself, not a copy (numpy's types give ndarray its buffer protocol from Python 3.12 on)
            digest.update(value.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _sketch(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    rows = []
    for value in tensors.values():
        flat = value.detach().reshape(-1)
        if flat.numel() > SKETCH_SIZE:
            flat = flat[torch.linspace(0, flat.numel() - 1, SKETCH_SIZE, dtype=torch.float64).long()]
        rows.append(F.pad(flat.double(), (0, SKETCH_SIZE - flat.numel())))
    return torch.stack(rows) if rows else torch.zeros(0, SKETCH_SIZE, dtype=torch.float64)


@functools.lru_cache(maxsize=1)
def _function_probe() -> torch.Tensor:
    """The images every VGG checkpoint is run on to compare what it computes: 64 fixed random 32x32 images (no
    data set needed; two separately trained networks disagree on them as much as on real images)."""
    return torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _vgg_outputs(ckpt: Checkpoint, path: str | Path) -> torch.Tensor | None:
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


def reordered_channels(model: VGG, seed: int = 0) -> VGG:
    """A copy of the VGG `model` with the channels of every conv layer in another order (the next layer's inputs
    reordered to match): other weights, parameter by parameter as far apart as two unrelated networks, and the
    same function. The copy find_similar_checkpoints' function comparison is there to see through."""
    copy = VGG(model.cfg, num_classes=model.classifier.out_features)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    convs = [i for i, layer in enumerate(model.feature) if isinstance(layer, torch.nn.Conv2d)]
    for n, i in enumerate(convs):
        conv = model.feature[i]
        assert isinstance(conv, torch.nn.Conv2d)
        order = torch.randperm(conv.out_channels, generator=g)
        state[f"feature.{i}.weight"] = state[f"feature.{i}.weight"][order]
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"feature.{i + 1}.{name}"] = state[f"feature.{i + 1}.{name}"][order]
        following = f"feature.{convs[n + 1]}.weight" if n + 1 < len(convs) else "classifier.weight"
        state[following] = state[following][:, order]
    copy.load_state_dict(state)
    return copy


def fingerprint(student: str, folder: str | Path, path: str | Path) -> Fingerprint | None:
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


def _sketch_distances(sketches: torch.Tensor, sizes: torch.Tensor, rows: int = 64) -> torch.Tensor:
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


def find_similar_checkpoints(folders: Mapping[str, str | Path], tolerance: float = NEAR_TOLERANCE) -> list[Match]:
    """Every pair of checkpoints of two different students that are identical or nearly identical: [Match].

    Exact: the same tensor contents under any name (a copy, or a copy loaded and saved again). Near: the same
    file name and tensor layout and checkpoint_distance <= tolerance (a copy with small noise added). The
    near search compares small sketches first and loads both files again only for the candidates. Same function:
    VGG checkpoints of the same file name whose outputs on fixed images are within FUNCTION_TOLERANCE
    (output_distance: a copy with its channels reordered, or with noise added).
    """
    prints = [fp for student, folder in folders.items() for path in _checkpoint_files(folder)
              if (fp := fingerprint(student, folder, path)) is not None]
    matches: dict[tuple[str, Path, str, Path], Match] = {}     # (student, path, other, other_path)

    def add(a: Fingerprint, b: Fingerprint, distance: float) -> None:
        for x, y in ((a, b), (b, a)):
            key = (x.student, x.path, y.student, y.path)
            if key not in matches or distance < matches[key].distance:
                matches[key] = Match(x.student, x.path, y.student, y.path, distance)

    by_digest: dict[str, list[Fingerprint]] = {}
    for fp in prints:
        by_digest.setdefault(fp.digest, []).append(fp)
    for group in by_digest.values():
        for i, a in enumerate(group):
            for b in group[:i]:
                if a.student != b.student:
                    add(a, b, 0.0)

    @functools.lru_cache(maxsize=2)     # a pair at a time: a hostile class cannot fill the client's memory
    def state(path: Path) -> Mapping[str, object]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_checkpoint(path)["state_dict"]

    by_layout: dict[tuple[str, Layout], list[Fingerprint]] = {}
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

    by_function: dict[tuple[str, tuple[int, ...]], list[Fingerprint]] = {}
    for fp in prints:
        if fp.outputs is not None:
            by_function.setdefault((fp.name, tuple(fp.outputs.shape)), []).append(fp)
    for group in by_function.values():
        if len({fp.student for fp in group}) < 2:
            continue
        outputs = torch.stack([fp.outputs.reshape(-1) for fp in group              # (n, images x classes)
                               if fp.outputs is not None])      # all of them (by_function holds no other)
        norms = outputs.norm(dim=1)
        distances = torch.cdist(outputs, outputs) / torch.maximum(norms[:, None], norms[None, :]).clamp_min(1e-300)
        for i, j in (distances <= FUNCTION_TOLERANCE).nonzero().tolist():
            if j < i and group[i].student != group[j].student:
                add(group[i], group[j], distances[i, j].item())
    return sorted(matches.values(), key=lambda m: (m.student, str(m.path), m.other, str(m.other_path)))


def similar_submissions(folders: Mapping[str, str | Path], tolerance: float = NEAR_TOLERANCE) -> dict[str, list[str]]:
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
    result: dict[str, set[str]] = {student: set() for student in folders}
    for match in find_similar_checkpoints(folders, tolerance):
        result[match.student].add(match.other)
    return {student: sorted(others) for student, others in result.items()}
