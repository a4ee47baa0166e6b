"""Reference answer of the sincnet_quant assignment's TODO (the solution cell holds the same code).

The other solution cell of that notebook, build_cfg_mask, is the slimming assignment's: see
autograde.reference.slimming.build_cfg_mask.
"""
import torch


class STEQuantize(torch.autograd.Function):
    """Uniform quantizer with a straight-through estimator (STE) of its gradient.

    forward: x (any shape) -> the nearest of the 2**bits evenly spaced levels lo, lo + step, ..., hi,
             step = (hi - lo) / (2**bits - 1); values outside [lo, hi] are clipped to lo or hi first.
    backward: the rounding's true gradient is 0 almost everywhere, so it is replaced by the identity
             (straight through) inside [lo, hi]; outside, the clipping really is flat: gradient 0.
    lo and hi are numbers or 0-d tensors (not trained: they get no gradient), bits an int.
    """

    @staticmethod
    def forward(ctx, x, bits, lo, hi):
        lo = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
        ctx.save_for_backward(x, lo, hi)
        step = (hi - lo) / (2 ** bits - 1)
        clipped = torch.minimum(torch.maximum(x, lo), hi)
        return torch.round((clipped - lo) / step) * step + lo

    @staticmethod
    def backward(ctx, grad_output):
        x, lo, hi = ctx.saved_tensors
        inside = (x >= lo) & (x <= hi)
        return grad_output * inside, None, None, None
