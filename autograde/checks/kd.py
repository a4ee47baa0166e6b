"""Hidden checks of the knowledge-distillation assignment (kd.ipynb).

Each function raises AssertionError with a message meant for the student, or returns quietly; a condition that
the notebook's own (visible) test asserts raises its subclass VisibleCheckFailed (autograde.checks.common).

kd_loss is judged in two steps, so that the verdict never runs in the student's process: a probe
(autograde.probes.kd) calls the student's function on logits drawn from a seed and records what came out as
plain data; judge_kd_loss regenerates the logits from the seed and decides. check_kd_loss does both in one
process (the plain nbgrader path of the notebook's hidden test).

The artifact check takes the folder of the submitted artifacts and never trusts printed numbers: checkpoints
are loaded with lib.checkpoint (weights_only=True) and evaluated on the test split, histories are
cross-checked against the checkpoints they belong to.

Artifact names (fixed, written by the notebook):
    teacher.pt/.json            the teacher (copied from the slimming assignment, or trained by the notebook)
    student_scratch.pt/.json    the student trained with cross-entropy only (the first seed)
    student_kd.pt/.json         the same student (same cfg, seed, epochs, data order) trained with kd_loss
    student_scratch_seed<s>, student_kd_seed<s>   the same pair for each further seed of the profile
                                (lib.artifacts.kd_student_runs names them)
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import torch
import torch.nn.functional as F

from autograde.checks.common import (as_tensor, best_accuracy, checked_test_accuracy, entries, failed_call, field,
                                     judge_in_order, load_run, loaded_as_submitted, probe_record, raise_if_failed,
                                     visible)
from autograde.probes import kd as probes
from lib import profile
from lib.artifacts import (FOLDER, STUDENT_KD, STUDENT_SCRATCH, checkpoint_file, history_file, history_path,
                           kd_student_runs)
from lib.data import images
from lib.models import VGG
from lib.train import History

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


def settings() -> dict[str, Any]:
    """The "kd" section of the active profile."""
    return profile.config("kd")


# ------------------------------------------------------------------------------------------------ kd_loss

KD_LOSS = "kd_loss"     # names the function in the messages about an unreadable record

# One call of kd_loss, as probes.kd_experiments lists them: (student_logits (B, C), teacher_logits (B, C),
# labels (B,), T, alpha).
KDCall: TypeAlias = tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]


def check_kd_loss(kd_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor],
                  seed: int = 0) -> None:
    """kd_loss(student_logits, teacher_logits, labels, T, alpha) against its defining properties."""
    judge_kd_loss(probes.probe_kd_loss(kd_loss, seed), seed)


def judge_kd_loss(record: object, seed: int) -> None:
    """Decide kd_loss from the record of probes.probe_kd_loss(kd_loss, seed): the notebook's visible test
    first (VisibleCheckFailed), then every experiment of probes.kd_experiments(seed), in order.
    Raises AssertionError with a message for the student, or returns None."""
    record = probe_record(record, KD_LOSS)

    def hidden() -> None:
        experiments = probes.kd_experiments(seed)
        results = entries(record, "experiments", KD_LOSS, len(experiments))
        for (kind, calls), outputs in zip(experiments, results):
            JUDGES[kind](calls, {name: field(outputs, name, KD_LOSS, dict) for name in calls})

    judge_in_order(lambda: _judge_visible_kd_loss(field(record, "visible", KD_LOSS, dict)), hidden)


def _expected(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, T: float,
              alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The KD loss computed by hand in float64: (total, soft term without alpha, hard term)."""
    s, t = student.double(), teacher.double()
    log_p_s = s / T - torch.logsumexp(s / T, dim=1, keepdim=True)
    log_p_t = t / T - torch.logsumexp(t / T, dim=1, keepdim=True)
    soft = T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum() / len(s)
    hard = -(s - torch.logsumexp(s, dim=1, keepdim=True)).gather(1, labels[:, None]).mean()
    return alpha * soft + (1 - alpha) * hard, soft, hard


def _value(entry: dict[str, Any], inputs: KDCall) -> float:
    """The recorded result of kd_loss(*inputs) as a float, after checking that it is a finite scalar tensor."""
    T, alpha = inputs[3], inputs[4]
    raise_if_failed(entry, f"kd_loss(student_logits, teacher_logits, labels, T={T}, alpha={alpha})")
    found = field(entry, "type", KD_LOSS, str)
    assert "tensor" in entry, f"kd_loss must return a tensor (to call .backward() on), got {found}"
    out = as_tensor(entry["tensor"], KD_LOSS, dtype=torch.float64)
    assert out.dim() == 0, (f"kd_loss must return one number for the whole batch (a 0-dim tensor), got shape "
                            f"{tuple(out.shape)}: average over the batch")
    assert torch.isfinite(out), f"kd_loss returned {out.item()} for T={T}, alpha={alpha}"
    return out.item()


def _close(a: float, b: float, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


def _judge_hard(calls: dict[str, KDCall], outputs: dict[str, dict[str, Any]]) -> None:
    """alpha = 0: only the hard term, the ordinary cross-entropy with the labels."""
    s, t, y, T, alpha = calls["loss"]
    got, want = _value(outputs["loss"], calls["loss"]), F.cross_entropy(s, y).item()
    assert _close(got, want), (
        f"kd_loss with alpha=0 must equal F.cross_entropy(student_logits, labels) = {want:.6f} "
        f"(T={T}), got {got:.6f}: the hard term is (1 - alpha) * cross-entropy on the raw logits (no /T)")


def _judge_mixture(calls: dict[str, KDCall], outputs: dict[str, dict[str, Any]]) -> None:
    """The hand computation: the soft term alone (alpha = 1, with a hint when wrong), then every alpha."""
    for name, inputs in calls.items():
        s, t, y, T, alpha = inputs
        got = _value(outputs[name], inputs)
        want, soft, hard = (v.item() for v in _expected(s, t, y, T, alpha))
        if alpha == 1.0 and not _close(got, want):
            _explain_soft(got, s, t, y, T)
        assert _close(got, want), (
            f"kd_loss(T={T}, alpha={alpha}) on a batch of {len(s)}x{s.shape[1]} logits: got {got:.6f}, "
            f"expected alpha * soft + (1 - alpha) * hard = {alpha} * {soft:.6f} + {1 - alpha:.2g} * "
            f"{hard:.6f} = {want:.6f}")


def _explain_soft(got: float, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                  T: float) -> NoReturn:
    """Raise an AssertionError that names the likely bug of a wrong soft term (`got`, at alpha = 1)."""
    soft = _expected(student, teacher, labels, T, 1.0)[1].item()
    batch, classes = student.shape
    reversed_soft = _expected(teacher, student, labels, T, 1.0)[1].item()
    s, t = student.double() / T, teacher.double() / T
    # F.kl_div(F.softmax(s), p_t): the input is read as log-probabilities although it holds probabilities
    p_t = F.softmax(t, dim=1)
    softmax_input = T * T * (p_t * (p_t.log() - F.softmax(s, dim=1))).sum().item() / batch
    hints = [
        (soft / (T * T), "the soft term misses the factor T^2 (it keeps the soft gradients' size independent of T)"),
        (soft / classes, "the soft term is divided by B*C instead of B: use reduction='batchmean' "
                         "('mean' averages over every element, classes included)"),
        (soft * T * T, "the soft term is multiplied by T^2 twice, or by T^4"),
        (reversed_soft, "the KL divergence is reversed: it must be KL(teacher || student), i.e. "
                        "F.kl_div(log-probabilities of the STUDENT, probabilities of the TEACHER)"),
        (softmax_input, "F.kl_div's first argument must be LOG-probabilities: use F.log_softmax(student / T), "
                        "not F.softmax"),
        (soft / T, "the soft term is multiplied by T instead of T^2"),
    ]
    for value, hint in hints:
        if _close(got, value):
            raise AssertionError(f"kd_loss with alpha=1, T={T}: got {got:.6f}, expected {soft:.6f}: {hint}")
    raise AssertionError(f"kd_loss with alpha=1, T={T} (the soft term alone): got {got:.6f}, expected "
                         f"T^2 * KL(softmax(t/T) || softmax(s/T)) averaged over the batch = {soft:.6f}")


def _judge_same(calls: dict[str, KDCall], outputs: dict[str, dict[str, Any]]) -> None:
    """The soft term (alpha = 1): 0 when the student copies the teacher, positive otherwise."""
    T = calls["same"][3]
    same = _value(outputs["same"], calls["same"])
    # float32 rounding of the log-probabilities, amplified by the T^2 factor: about 1e-7 * T^2
    assert abs(same) < 1e-5 * max(1.0, T * T), (f"kd_loss with alpha=1 and student_logits == teacher_logits must be 0 "
                              f"(KL of a distribution with itself), got {same:.6f} at T={T}")
    other = _value(outputs["differ"], calls["differ"])
    assert other > 0, f"kd_loss with alpha=1 must be > 0 when student and teacher differ, got {other:.6f}"


def _judge_shift(calls: dict[str, KDCall], outputs: dict[str, dict[str, Any]]) -> None:
    """Softmax ignores a constant added to all logits of an example; so must the loss."""
    T = calls["base"][3]
    base, shifted = _value(outputs["base"], calls["base"]), _value(outputs["shifted"], calls["shifted"])
    assert _close(shifted, base, rtol=1e-4, atol=1e-4), (
        f"kd_loss changed from {base:.6f} to {shifted:.6f} when a constant was added to each example's logits "
        f"(T={T}); it must only depend on the softmax of the logits: use log_softmax / softmax, not the raw logits")


def _judge_swap(calls: dict[str, KDCall], outputs: dict[str, dict[str, Any]]) -> None:
    """KL is not symmetric: the teacher is the target distribution."""
    forward, backward = _value(outputs["forward"], calls["forward"]), _value(outputs["backward"], calls["backward"])
    assert not _close(forward, backward), (
        "kd_loss gives the same value with student and teacher swapped: the soft term must be "
        "KL(teacher || student), which is not symmetric")


def _judge_gradient(calls: dict[str, KDCall], outputs: dict[str, dict[str, Any]]) -> None:
    """The gradient w.r.t. the student logits: alpha * T * (p_s - p_t) / B + (1 - alpha) * (softmax(s) - y) / B."""
    inputs, entry = calls["loss"], outputs["loss"]
    s, t, y, T, alpha = inputs
    _value(entry, inputs)
    assert field(entry, "requires_grad", KD_LOSS) is True, (
        "kd_loss must stay differentiable w.r.t. the student logits (no .item(), .detach() or numpy "
        "on the student's side)")
    error = field(entry, "backward_error", KD_LOSS) if "backward_error" in entry else None
    assert error is None, f"calling .backward() on kd_loss's result raised {error}"
    grad = field(entry, "grad", KD_LOSS)
    assert grad is not None, "kd_loss's result has no gradient w.r.t. student_logits"
    got = as_tensor(grad, KD_LOSS, s.shape, torch.float64)
    batch = len(s)
    p_s, p_t = F.softmax(s.double() / T, dim=1), F.softmax(t.double() / T, dim=1)
    hard = (F.softmax(s.double(), dim=1) - F.one_hot(y, s.shape[1]).double()) / batch
    want = alpha * T * (p_s - p_t) / batch + (1 - alpha) * hard
    if not torch.allclose(got, want, rtol=1e-3, atol=1e-6):
        soft_part = alpha * T * (p_s - p_t) / batch
        detail = ""
        if alpha == 1.0:
            ratio = (got.norm() / soft_part.norm()).item()
            detail = f" (it is {ratio:.3g} times the expected size)"
        raise AssertionError(
            f"gradient of kd_loss w.r.t. the student logits (T={T}, alpha={alpha}) is wrong{detail}: the soft "
            f"term's gradient must be alpha * T * (softmax(s/T) - softmax(t/T)) / B, the hard term's "
            f"(1 - alpha) * (softmax(s) - onehot(y)) / B")


JUDGES = {"hard": _judge_hard, "mixture": _judge_mixture, "same": _judge_same, "shift": _judge_shift,
          "swap": _judge_swap, "gradient": _judge_gradient}


def _judge_visible_kd_loss(outputs: dict[str, Any]) -> None:
    """The asserts of the notebook's test_kd_loss, on the probe's calls of its fixed logits."""
    calls = probes.visible_calls()
    values: dict[str, torch.Tensor] = {}
    for name, inputs in calls.items():
        entry = field(outputs, name, KD_LOSS, dict)
        error = failed_call(entry)
        visible(error is None, f"kd_loss(T={inputs[3]}, alpha={inputs[4]}) of the visible test raised {error}")
        visible("tensor" in entry and as_tensor(entry["tensor"], KD_LOSS).dim() == 0,
                "kd_loss must return a scalar tensor")
        values[name] = as_tensor(entry["tensor"], KD_LOSS, dtype=torch.float64)
    s, _, y, _, _ = calls["hard"]
    hard = values["hard"]
    visible(torch.isclose(hard, F.cross_entropy(s, y).double()),
            "with alpha = 0, kd_loss is F.cross_entropy(student, labels)")
    visible(abs(values["same"].item()) < 1e-6, "alpha = 1 and student == teacher: the loss must be 0")
    visible(values["differ"].item() > 0, "alpha = 1 and student != teacher: the KL divergence is > 0")
    soft = values["differ"].item()
    visible(abs(soft - probes.VISIBLE_SOFT) < probes.VISIBLE_SOFT_TOLERANCE,
            f"alpha = 1, T = 4: kd_loss returned {soft:.5f}, expected {probes.VISIBLE_SOFT}")


# ---------------------------------------------------------------------------------------- trained students

def _load(artifacts: str | Path, name: str) -> tuple[VGG, dict[str, Any], History]:
    """(VGG with the checkpoint's weights, meta, History) of artifacts/<name>.pt and .json; the checkpoint
    must hold the history's best epoch."""
    path = Path(artifacts) / checkpoint_file(name)
    model, meta, history = load_run(path, VGG)
    assert len(history), f"{history_path(path)} has no epochs"
    assert meta.get("epoch") == history.best["epoch"], (
        f"{path} holds epoch {meta.get('epoch')}, but its history's best epoch is {history.best['epoch']}: "
        "the checkpoint and its history are from different runs; re-run the training cell")
    return model, meta, history


def _test_accuracy(model: VGG, loaders: dict[str, DataLoader], path: str, history: History) -> float:
    """The checkpoint's accuracy on the test split, after cross-checking its validation accuracy with the one
    its history recorded for its best epoch."""
    return checked_test_accuracy(model, loaders, history.best, path)


def run_config(config: dict[str, Any], seed: int, kind: str) -> dict[str, Any]:
    """The hyperparameters the notebook's train_student records for the student run of `seed` and `kind`."""
    extra = dict(T=config["T"], alpha=config["alpha"]) if kind == "kd" else {}
    return dict(config["student"], seed=seed, **extra)


def _mean_gain(accuracy: dict[str, float]) -> float:
    """The mean over the seeds of KD - scratch, from {name: accuracy} of every run of kd_student_runs."""
    runs = kd_student_runs(settings())
    gains = [accuracy[kd] - accuracy[scratch] for (_, _, scratch), (_, _, kd) in zip(runs[::2], runs[1::2])]
    return sum(gains) / len(gains)


def _visible_kd_student(artifacts: str | Path) -> None:
    """test_kd_student's own asserts, on the submitted histories: KD gains the profile's min_gain over the
    seeds; the first seed's KD student reaches the profile's accuracy on validation and is not below its scratch student by
    more than the margin."""
    config = settings()
    accuracy: dict[str, float] = {}
    for seed, kind, name in kd_student_runs(config):
        path = Path(artifacts) / checkpoint_file(name)
        if not loaded_as_submitted(path, run_config(config, seed, kind), config["student_cfg"]):
            return          # the notebook trained a fallback run: its test saw that one
        best = best_accuracy(load_run(path, VGG)[2])
        if best is None:
            return
        accuracy[name] = best
    gain = _mean_gain(accuracy)
    visible(gain >= config["min_gain"], f"KD - scratch over the seeds: {gain:.2f} points on average, at least "
                                        f"{config['min_gain']} expected: check kd_loss")
    kd, scratch = accuracy[STUDENT_KD], accuracy[STUDENT_SCRATCH]
    visible(kd >= config["kd_accuracy"],
            f"KD student: {kd:.2f}% validation accuracy, at least {config['kd_accuracy']}% expected")
    visible(kd >= scratch - config["margin"], f"KD student {kd:.2f}% vs scratch {scratch:.2f}%: worse by more than "
                                              f"the seed noise ({config['margin']} points)")


def check_kd_student(artifacts: str | Path = FOLDER) -> None:
    """KD gains on the scratch student over the seeds, and the first seed's KD student meets the profile.

    Every run of kd_student_runs is the profile's student (cfg) trained with the profile's setup and its seed, the
    KD runs differing only by their T and alpha, which must be the profile's (alpha = 0 would be scratch
    training). Accuracies are re-evaluated from the checkpoints: the first seed's KD student reaches
    kd_accuracy and is not worse than its scratch student by more than the margin; the mean over the seeds of
    KD - scratch is at least min_gain.
    """
    _visible_kd_student(artifacts)
    config = settings()
    loaders = images.loaders(batch_size=256)
    accuracy: dict[str, float] = {}
    for seed, kind, name in kd_student_runs(config):
        model, _, history = _load(artifacts, name)
        assert model.cfg == list(config["student_cfg"]), (
            f"{checkpoint_file(name)} has cfg {model.cfg}, the profile's student is {config['student_cfg']}: train "
            "every student with the notebook's train_student (the same network in every run)")
        expected = History(run_config(config, seed, kind)).config
        if kind == "kd":
            for key in ("T", "alpha"):
                assert history.config.get(key) == config[key], (
                    f"{history_file(name)} records {key} = {history.config.get(key)}, the profile's KD setup has "
                    f"{key} = {config[key]}: train it with the notebook's KD setup")
        assert history.config == expected, (
            f"{history_file(name)} records the setup {history.config}, the notebook trains this run with {expected} "
            f"(seed {seed}; apart from T and alpha the scratch and KD runs must be the same: epochs, learning "
            "rate, batch size, fraction of the images); run the training cell unchanged")
        accuracy[name] = _test_accuracy(model, loaders, checkpoint_file(name), history)

    kd_accuracy, scratch_accuracy = accuracy[STUDENT_KD], accuracy[STUDENT_SCRATCH]
    assert kd_accuracy >= config["kd_accuracy"], (
        f"the KD student reaches {kd_accuracy:.2f}% test accuracy, at least {config['kd_accuracy']}% is "
        f"expected in the {profile.name()} profile; check kd_loss and re-run the training cells")
    assert kd_accuracy >= scratch_accuracy - config["margin"], (
        f"the KD student ({kd_accuracy:.2f}%) is worse than the same student trained from scratch "
        f"({scratch_accuracy:.2f}%) by more than the seed noise ({config['margin']} points): the teacher's "
        "soft targets should not hurt; check kd_loss (T^2, the direction of the KL, batchmean)")
    gain = _mean_gain(accuracy)
    assert gain >= config["min_gain"], (
        f"averaged over the seeds {tuple(config['seeds'])}, the KD students are {gain:+.2f} points from the scratch "
        f"students (checkpoints re-evaluated); with this teacher and {config['student']['train_fraction']:.0%} of "
        f"the images distillation gains at least {config['min_gain']} points: check kd_loss")
