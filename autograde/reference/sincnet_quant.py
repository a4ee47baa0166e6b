"""Reference answers of the sincnet_quant assignment's TODOs, STEQuantize and weight_scale (the solution cells
hold the same code).

The other solution cell of that notebook, build_cfg_mask, is the slimming assignment's: see
autograde.reference.slimming.build_cfg_mask.
"""
import torch
from torch.autograd.function import FunctionCtx


class STEQuantize(torch.autograd.Function):
    """Uniform quantizer with a straight-through estimator (STE) of its gradient.

    forward: x (any shape) -> the nearest of the 2**bits evenly spaced levels lo, lo + step, ..., hi,
             step = (hi - lo) / (2**bits - 1); values outside [lo, hi] are clipped to lo or hi first.
    backward: the rounding's true gradient is 0 almost everywhere, so it is replaced by the identity
             (straight through) inside [lo, hi]; outside, the clipping really is flat: gradient 0.
    lo and hi are numbers or 0-d tensors (not trained: they get no gradient), bits an int.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, bits: int, lo: float | torch.Tensor,
                hi: float | torch.Tensor) -> torch.Tensor:
        lo = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
        ctx.save_for_backward(x, lo, hi)
        step = (hi - lo) / (2 ** bits - 1)
        clipped = torch.minimum(torch.maximum(x, lo), hi)
        return torch.round((clipped - lo) / step) * step + lo

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        x, lo, hi = ctx.saved_tensors  # type: ignore[attr-defined]  # torch's stubs leave it off FunctionCtx
        inside = (x >= lo) & (x <= hi)
        return grad_output * inside, None, None, None


def weight_scale(w: torch.Tensor, bits: int, clip_std: float | None = None) -> torch.Tensor:
    """The step between two neighbouring levels of the symmetric `bits`-bit range of the weights `w`.

    w: a tensor of any shape (the layer's weights, detached); bits: int >= 1; clip_std: None or a number k > 0.
    The range is [-r, r] with r = max|w|; with clip_std, r = min(max|w|, clip_std * sigma), where
    sigma = sqrt(mean(w**2)) is the spread of the weights around 0, the centre of the range. r is at least
    1e-8 (all-zero weights still get a positive step). Returns the 0-d tensor 2 * r / (2**bits - 1): the
    2**bits levels are -r, -r + step, ..., r.
    """
    r = w.abs().max()
    if clip_std is not None:
        r = torch.minimum(r, clip_std * w.pow(2).mean().sqrt())
    return 2 * r.clamp_min(1e-8) / (2 ** bits - 1)
