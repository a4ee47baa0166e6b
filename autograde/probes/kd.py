"""Probe of the kd TODO, kd_loss, and the inputs it is run on.

The judge (autograde.checks.kd) imports the input generators from here, so probe and judge use the very same
logits from the same seed. Every seed is a valid test: the temperatures include 1 (where the T^2 factor
cannot show) and several others (where it must), the batch shapes include a single example, three classes
and a hundred, and the alphas include 0 and 1 (each term alone).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from . import attempt, backward, describe, generator, plain, seeded

if TYPE_CHECKING:     # hints only: nothing more is imported in the sandbox
    from collections.abc import Callable
    from typing import Any

KD_TEMPERATURES = (1.0, 2.0, 4.0, 20.0)
KD_ALPHAS = (0.0, 0.3, 0.5, 0.9, 1.0)
KD_SHAPES = ((8, 10), (1, 10), (5, 3), (16, 100))       # (batch, classes)
GRADIENT_SETTINGS = ((1.0, 1.0), (4.0, 1.0), (20.0, 1.0), (4.0, 0.5), (2.0, 0.9))   # (T, alpha)

# The arguments of one kd_loss call: (student_logits, teacher_logits, labels, T, alpha).
KDCall = tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]


def kd_case(seed: int, label: str, batch: int = 8, classes: int = 10,
            scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student_logits, teacher_logits, labels) drawn from (seed, label): float32 (B, C), (B, C), int64 (B,).
    Logits ~ N(0, scale^2): confident enough that the soft and the hard term differ clearly."""
    g = generator(seed, "kd", label)
    student = torch.randn(batch, classes, generator=g) * scale
    teacher = torch.randn(batch, classes, generator=g) * scale
    labels = torch.randint(0, classes, (batch,), generator=g)
    return student, teacher, labels


def kd_temperatures(seed: int) -> tuple[float, ...]:
    """KD_TEMPERATURES and one more drawn from [1.5, 10] (rounded to 2 decimals)."""
    g = generator(seed, "kd", "temperature")
    return KD_TEMPERATURES + (round(1.5 + 8.5 * float(torch.rand((), generator=g)), 2),)


def kd_alphas(seed: int) -> tuple[float, ...]:
    """KD_ALPHAS and one more drawn from [0.05, 0.95] (rounded to 2 decimals)."""
    g = generator(seed, "kd", "alpha")
    return KD_ALPHAS + (round(0.05 + 0.9 * float(torch.rand((), generator=g)), 2),)


def kd_experiments(seed: int) -> list[tuple[str, dict[str, KDCall]]]:
    """[(kind, {call name: (student_logits, teacher_logits, labels, T, alpha)}), ...]: the calls the probe
    makes and the judge checks, in order.

    kinds: "hard" (alpha = 0: the cross-entropy), "mixture" (one batch shape and T: alpha = 1, then every
    alpha), "same" (alpha = 1, student == teacher, and a student that differs), "shift" (a constant added to
    each example's logits), "swap" (student and teacher swapped), "gradient" (the gradient w.r.t. the
    student logits is recorded too).
    """
    temperatures, alphas = kd_temperatures(seed), kd_alphas(seed)
    experiments: list[tuple[str, dict[str, KDCall]]] = []
    for i, T in enumerate(temperatures):
        s, t, y = kd_case(seed, f"hard {i}")
        experiments.append(("hard", {"loss": (s, t, y, T, 0.0)}))
    for i, (batch, classes) in enumerate(KD_SHAPES):
        s, t, y = kd_case(seed, f"mixture {i}", batch, classes)
        for T in temperatures:
            experiments.append(("mixture", {f"alpha={alpha}": (s, t, y, T, alpha) for alpha in (1.0, *alphas)}))
    for i, T in enumerate(temperatures):
        s, t, y = kd_case(seed, f"same {i}")
        experiments.append(("same", {"same": (t, t, y, T, 1.0), "differ": (s, t, y, T, 1.0)}))
    for i, T in enumerate(temperatures):
        s, t, y = kd_case(seed, f"shift {i}")
        g = generator(seed, "kd", "shift", i)
        shift_s, shift_t = torch.randn(len(s), 1, generator=g) * 5, torch.randn(len(t), 1, generator=g) * 5
        experiments.append(("shift", {"base": (s, t, y, T, 0.5), "shifted": (s + shift_s, t + shift_t, y, T, 0.5)}))
    s, t, y = kd_case(seed, "swap", scale=4.0)
    experiments.append(("swap", {"forward": (s, t, y, 4.0, 1.0), "backward": (t, s, y, 4.0, 1.0)}))
    for i, (T, alpha) in enumerate(GRADIENT_SETTINGS):
        s, t, y = kd_case(seed, f"gradient {i}")
        experiments.append(("gradient", {"loss": (s, t, y, T, alpha)}))
    return experiments


# The notebook's visible test_kd_loss: (call name, student, teacher, T, alpha) on its fixed logits.
VISIBLE_STUDENT = ((2.0, 0.5, -1.0), (0.0, 1.0, 0.0))
VISIBLE_TEACHER = ((1.0, 1.0, 0.0), (0.5, 2.0, -0.5))
VISIBLE_LABELS = (0, 1)
VISIBLE_SOFT = 0.27568       # its "differ" call's value, by hand: T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean
VISIBLE_SOFT_TOLERANCE = 3e-4   # the three traps of the docstring are >= 6e-3 away (swapped KL, per number, no T^2)


def visible_calls() -> dict[str, KDCall]:
    """{call name: (student_logits, teacher_logits, labels, T, alpha)} of the notebook's visible test."""
    s, t, y = torch.tensor(VISIBLE_STUDENT), torch.tensor(VISIBLE_TEACHER), torch.tensor(VISIBLE_LABELS)
    return {"hard": (s, t, y, 4.0, 0.0), "same": (t, t, y, 4.0, 1.0), "differ": (s, t, y, 4.0, 1.0)}


def _call(kd_loss: Callable[..., object], inputs: KDCall, gradient: bool = False) -> dict[str, Any]:
    """describe() of kd_loss(copies of the inputs), or {"error": ...}. With `gradient`, the student logits
    require grad and the entry also holds "grad" (their gradient after .backward(), or None) or
    "backward_error"."""
    s, t, y, T, alpha = inputs
    student = s.clone().requires_grad_(gradient)
    with torch.enable_grad():
        out, error = attempt(kd_loss, student, t.clone(), y.clone(), T, alpha)
        if error:
            return error
        entry = describe(out)
        if gradient:
            entry.update(backward(lambda: out, student))
    return entry


def probe_kd_loss(kd_loss: Callable[..., object], seed: int) -> dict[str, Any]:
    """Run kd_loss on the visible test's logits and on every call of kd_experiments(seed).

    Returns {"visible": {call name: entry}, "experiments": [{call name: entry}, ...]} where an entry is
    describe() of the result (type, tensor, requires_grad) or {"error": ...}. About 0.1 s.
    """
    with seeded(seed, "probe kd_loss"):
        record = {"visible": {name: _call(kd_loss, inputs) for name, inputs in visible_calls().items()},
                  "experiments": [{name: _call(kd_loss, inputs, gradient=kind == "gradient")
                                   for name, inputs in calls.items()}
                                  for kind, calls in kd_experiments(seed)]}
    return plain(record)
