"""Known-wrong STEQuantize implementations; each must lose the points of test_ste_quantize, and only those.

The trained-model checks rebuild the submitted checkpoints with the reference quantizer, so a wrong
STEQuantize (with the reference work's artifacts) loses nothing there.
"""
from . import Mutant

_STE = '''import torch


class STEQuantize(torch.autograd.Function):
    """Uniform quantizer on [lo, hi] with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x, bits, lo, hi):
        ctx.save_for_backward(x, lo, hi)
        step = (hi - lo) / ({levels})
        clipped = {clip}
        return torch.{rounding}((clipped - lo) / step) * step + lo

    @staticmethod
    def backward(ctx, grad_output):
        x, lo, hi = ctx.saved_tensors
        inside = (x >= lo) & (x <= hi)
        return {grad}, None, None, None
'''


def _ste(name, levels="2 ** bits - 1", clip="torch.minimum(torch.maximum(x, lo), hi)", rounding="round",
         grad="grad_output * inside"):
    return Mutant(name, "sincnet_quant", "ste_quantize", "test_ste_quantize",
                  _STE.format(levels=levels, clip=clip, rounding=rounding, grad=grad))


MUTANTS = [
    _ste("identity backward everywhere (no zero outside the range)", grad="grad_output"),
    _ste("2**b + 1 levels (step = (hi - lo) / 2**bits)", levels="2 ** bits"),
    _ste("no clipping", clip="x"),
    _ste("gradient blocked (zero everywhere)", grad="torch.zeros_like(grad_output)"),
    _ste("floor instead of round", rounding="floor"),
]
