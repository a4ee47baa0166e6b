"""Reference answer of the knowledge-distillation assignment's TODO (the solution cell holds the same code)."""
import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, T: float,
            alpha: float) -> torch.Tensor:
    """Knowledge-distillation loss of Hinton et al. (2015), a scalar tensor.

    student_logits, teacher_logits  (B, C) raw scores; labels (B,) class indices.
    alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch,
    + (1 - alpha) * cross_entropy(student, labels).
    """
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="batchmean") * T * T
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard
