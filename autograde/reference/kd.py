"""The knowledge-distillation TODO's reference answer: the solution cell of solutions/kd/kd.ipynb."""
from . import solution

kd_loss = solution("kd", "kd", "kd_loss")
