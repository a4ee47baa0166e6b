import torch.nn.functional as F


def kd_loss(student_logits, teacher_logits, labels, T, alpha):
    """Wrong on purpose, and visibly: the cross-entropy alone. The notebook's own asserts catch it (at alpha = 1
    with identical logits it is not 0), unless something stops them from running."""
    return F.cross_entropy(student_logits, labels)
