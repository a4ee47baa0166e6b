"""Hidden checks of the knowledge-distillation assignment (kd.ipynb).

Each function raises AssertionError with a message meant for the student, or returns quietly. They take the
student's function or the folder of the submitted artifacts and never trust printed numbers: checkpoints are
loaded with lib.checkpoint (weights_only=True) and evaluated on the test split, histories are cross-checked
against the checkpoints they belong to.

Artifact names (fixed, written by the notebook):
    teacher.pt/.json            the teacher (copied from the slimming assignment, or trained by the notebook)
    student_scratch.pt/.json    the student trained with cross-entropy only
    student_kd.pt/.json         the same student (same cfg, seed, epochs, data order) trained with kd_loss
"""
from pathlib import Path

import torch
import torch.nn.functional as F

from lib import profile
from lib.checkpoint import CheckpointError, load_model
from lib.data import images
from lib.models import VGG
from lib.train import History, evaluate

# A checkpoint re-evaluated here may differ from the accuracy its history recorded by a few test images
# (another device, another BLAS): 1 point of accuracy is 3-4 of the 360 quick-profile test images.
ACCURACY_TOLERANCE = 1.0


def settings():
    """The "kd" section of the active profile."""
    return profile.config("kd")


# ------------------------------------------------------------------------------------------------ kd_loss

def _expected(student, teacher, labels, T, alpha):
    """The KD loss computed by hand in float64: (total, soft term without alpha, hard term)."""
    s, t = student.double(), teacher.double()
    log_p_s = s / T - torch.logsumexp(s / T, dim=1, keepdim=True)
    log_p_t = t / T - torch.logsumexp(t / T, dim=1, keepdim=True)
    soft = T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum() / len(s)
    hard = -(s - torch.logsumexp(s, dim=1, keepdim=True)).gather(1, labels[:, None]).mean()
    return alpha * soft + (1 - alpha) * hard, soft, hard


def _case(seed, batch=8, classes=10, scale=3.0):
    """Seeded (student_logits, teacher_logits, labels): float32, (B, C), (B, C), (B,)."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=g) * scale
    teacher = torch.randn(batch, classes, generator=g) * scale
    labels = torch.randint(0, classes, (batch,), generator=g)
    return student, teacher, labels


def _value(kd_loss, student, teacher, labels, T, alpha):
    """kd_loss's result as a float, after checking that it is a scalar tensor."""
    out = kd_loss(student.clone(), teacher.clone(), labels.clone(), T, alpha)
    assert isinstance(out, torch.Tensor), f"kd_loss must return a tensor (to call .backward() on), got {type(out)}"
    assert out.dim() == 0, (f"kd_loss must return one number for the whole batch (a 0-dim tensor), got shape "
                            f"{tuple(out.shape)}: average over the batch")
    assert torch.isfinite(out), f"kd_loss returned {out.item()} for T={T}, alpha={alpha}"
    return out.item()


def _close(a, b, rtol=1e-4, atol=1e-5):
    return abs(a - b) <= atol + rtol * abs(b)


def _explain_soft(kd_loss, student, teacher, labels, T):
    """Raise an AssertionError that names the likely bug of a wrong soft term (alpha = 1)."""
    got = _value(kd_loss, student, teacher, labels, T, 1.0)
    _, soft, _ = _expected(student, teacher, labels, T, 1.0)
    soft = soft.item()
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


def check_kd_loss(kd_loss):
    """kd_loss(student_logits, teacher_logits, labels, T, alpha) against its defining properties."""
    temperatures, alphas = (1.0, 2.0, 4.0, 20.0), (0.0, 0.3, 0.5, 0.9, 1.0)

    # alpha = 0: only the hard term, the ordinary cross-entropy with the labels.
    for seed, T in enumerate(temperatures):
        s, t, y = _case(seed)
        got, want = _value(kd_loss, s, t, y, T, 0.0), F.cross_entropy(s, y).item()
        assert _close(got, want), (
            f"kd_loss with alpha=0 must equal F.cross_entropy(student_logits, labels) = {want:.6f} "
            f"(T={T}), got {got:.6f}: the hard term is (1 - alpha) * cross-entropy on the raw logits (no /T)")

    # The hand computation, for the soft term alone and for the mixture.
    for seed, (batch, classes) in enumerate([(8, 10), (1, 10), (5, 3), (16, 100)]):
        s, t, y = _case(20 + seed, batch, classes)
        for T in temperatures:
            want = _expected(s, t, y, T, 1.0)[0].item()
            if not _close(_value(kd_loss, s, t, y, T, 1.0), want):
                _explain_soft(kd_loss, s, t, y, T)
            for alpha in alphas:
                want, soft, hard = (v.item() for v in _expected(s, t, y, T, alpha))
                got = _value(kd_loss, s, t, y, T, alpha)
                assert _close(got, want), (
                    f"kd_loss(T={T}, alpha={alpha}) on a batch of {batch}x{classes} logits: got {got:.6f}, "
                    f"expected alpha * soft + (1 - alpha) * hard = {alpha} * {soft:.6f} + {1 - alpha:.2g} * "
                    f"{hard:.6f} = {want:.6f}")

    # The soft term (alpha = 1): 0 when the student copies the teacher, positive otherwise.
    for seed, T in enumerate(temperatures):
        s, t, y = _case(10 + seed)
        same = _value(kd_loss, t, t, y, T, 1.0)
        assert abs(same) < 1e-5, (f"kd_loss with alpha=1 and student_logits == teacher_logits must be 0 "
                                  f"(KL of a distribution with itself), got {same:.6f} at T={T}")
        other = _value(kd_loss, s, t, y, T, 1.0)
        assert other > 0, f"kd_loss with alpha=1 must be > 0 when student and teacher differ, got {other:.6f}"

    # Softmax ignores a constant added to all logits of an example; so must the loss.
    for seed, T in enumerate(temperatures):
        s, t, y = _case(30 + seed)
        g = torch.Generator().manual_seed(40 + seed)
        shift_s, shift_t = torch.randn(len(s), 1, generator=g) * 5, torch.randn(len(t), 1, generator=g) * 5
        base, shifted = _value(kd_loss, s, t, y, T, 0.5), _value(kd_loss, s + shift_s, t + shift_t, y, T, 0.5)
        assert _close(shifted, base, rtol=1e-4, atol=1e-4), (
            f"kd_loss changed from {base:.6f} to {shifted:.6f} when a constant was added to each example's logits "
            f"(T={T}); it must only depend on the softmax of the logits: use log_softmax / softmax, not the raw logits")

    # KL is not symmetric: the teacher is the target distribution.
    s, t, y = _case(50, scale=4.0)
    forward, backward = _value(kd_loss, s, t, y, 4.0, 1.0), _value(kd_loss, t, s, y, 4.0, 1.0)
    assert not _close(forward, backward), (
        "kd_loss gives the same value with student and teacher swapped: the soft term must be "
        "KL(teacher || student), which is not symmetric")

    _check_gradient(kd_loss)


def _check_gradient(kd_loss):
    """The gradient w.r.t. the student logits: alpha * T * (p_s - p_t) / B + (1 - alpha) * (softmax(s) - y) / B."""
    for seed, (T, alpha) in enumerate([(1.0, 1.0), (4.0, 1.0), (20.0, 1.0), (4.0, 0.5), (2.0, 0.9)]):
        s, t, y = _case(60 + seed)
        student = s.clone().requires_grad_(True)
        teacher = t.clone()
        loss = kd_loss(student, teacher, y, T, alpha)
        assert isinstance(loss, torch.Tensor) and loss.requires_grad, (
            "kd_loss must stay differentiable w.r.t. the student logits (no .item(), .detach() or numpy "
            "on the student's side)")
        loss.backward()
        assert student.grad is not None, "kd_loss's result has no gradient w.r.t. student_logits"
        batch = len(s)
        p_s, p_t = F.softmax(s.double() / T, dim=1), F.softmax(t.double() / T, dim=1)
        hard = (F.softmax(s.double(), dim=1) - F.one_hot(y, s.shape[1]).double()) / batch
        want = alpha * T * (p_s - p_t) / batch + (1 - alpha) * hard
        got = student.grad.double()
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


# ---------------------------------------------------------------------------------------- trained students

def _load(artifacts, name):
    """(VGG with the checkpoint's weights, meta, History) of artifacts/<name>.pt and .json."""
    path = Path(artifacts) / f"{name}.pt"
    try:
        model, meta = load_model(path, VGG)
        history = History.load(path.with_suffix(".json"))
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        raise AssertionError(str(error)) from None
    assert len(history), f"{path.with_suffix('.json')} has no epochs"
    assert meta.get("epoch") == history.best["epoch"], (
        f"{path} holds epoch {meta.get('epoch')}, but its history's best epoch is {history.best['epoch']}: "
        "the checkpoint and its history are from different runs; re-run the training cell")
    return model, meta, history


def _test_accuracy(model, loader, path, history):
    """The checkpoint's accuracy on the test split, cross-checked with what its history recorded."""
    _, accuracy = evaluate(model, loader, device=torch.device("cpu"), progress=False)
    recorded = history.best["val_accuracy"]
    assert abs(accuracy - recorded) <= ACCURACY_TOLERANCE, (
        f"{path}: evaluated at {accuracy:.2f}% on the test split, but its history records {recorded:.2f}%; "
        "the checkpoint and its history are from different runs; re-run the training cell")
    return accuracy


def check_kd_student(artifacts="artifacts"):
    """The KD student reaches the profile's threshold and is not much worse than the scratch student.

    Both students must be the same network (cfg) trained with the same hyperparameters, the KD run's
    differing only by its T and alpha, which must be the profile's (alpha = 0 would be scratch training).
    """
    config = settings()
    scratch, _, scratch_history = _load(artifacts, "student_scratch")
    student, _, kd_history = _load(artifacts, "student_kd")
    for name, model in (("student_scratch.pt", scratch), ("student_kd.pt", student)):
        assert model.cfg == list(config["student_cfg"]), (
            f"{name} has cfg {model.cfg}, the profile's student is {config['student_cfg']}: train both students "
            "with the notebook's train_student (the same network in both runs)")
    for key in ("T", "alpha"):
        assert kd_history.config.get(key) == config[key], (
            f"student_kd.json records {key} = {kd_history.config.get(key)}, the profile's KD setup has {key} = "
            f"{config[key]}: train it with the notebook's KD setup")
    common = {k: v for k, v in kd_history.config.items() if k not in ("T", "alpha")}
    assert common == scratch_history.config, (
        f"the scratch run was trained with {scratch_history.config} and the KD run with {kd_history.config}: "
        "apart from T and alpha they must be the same (epochs, learning rate, batch size...)")

    loader = images.loaders(batch_size=256)["test"]
    scratch_accuracy = _test_accuracy(scratch, loader, "student_scratch.pt", scratch_history)
    kd_accuracy = _test_accuracy(student, loader, "student_kd.pt", kd_history)
    assert kd_accuracy >= config["kd_accuracy"], (
        f"the KD student reaches {kd_accuracy:.2f}% test accuracy, at least {config['kd_accuracy']}% is "
        f"expected in the {profile.name()} profile; check kd_loss and re-run the training cells")
    assert kd_accuracy >= scratch_accuracy - config["margin"], (
        f"the KD student ({kd_accuracy:.2f}%) is worse than the same student trained from scratch "
        f"({scratch_accuracy:.2f}%) by more than the seed noise ({config['margin']} points): the teacher's "
        "soft targets should not hurt; check kd_loss (T^2, the direction of the KL, batchmean)")
