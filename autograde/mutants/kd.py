"""Known-wrong answers to the kd TODO; each must lose the points of test_kd_loss, and only those."""
from . import Mutant

_KD_LOSS = '''import torch.nn.functional as F


def kd_loss(student_logits, teacher_logits, labels, T, alpha):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) (batch mean) + (1 - alpha) * CE(s, labels)."""
    soft = F.kl_div({input}, {target}, reduction="{reduction}"){scale}
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard
'''

_STUDENT_LOG = "F.log_softmax(student_logits / T, dim=1)"
_TEACHER_P = "F.softmax(teacher_logits / T, dim=1)"


def _kd_loss(name, input=_STUDENT_LOG, target=_TEACHER_P, reduction="batchmean", scale=" * T * T"):
    return Mutant(name, "kd", "kd_loss", "test_kd_loss",
                  _KD_LOSS.format(input=input, target=target, reduction=reduction, scale=scale))


MUTANTS = [
    _kd_loss("missing T^2", scale=""),
    # KL(student || teacher): the teacher's log-probabilities as input, the student's probabilities as target
    _kd_loss("reversed KL", input="F.log_softmax(teacher_logits / T, dim=1)",
             target="F.softmax(student_logits / T, dim=1)"),
    _kd_loss("softmax instead of log_softmax", input="F.softmax(student_logits / T, dim=1)"),
    _kd_loss("'mean' reduction instead of 'batchmean'", reduction="mean"),
    # the student's side detached: the value is right, but no gradient reaches the student
    _kd_loss("student logits detached in the soft term", input="F.log_softmax(student_logits.detach() / T, dim=1)"),
]
