"""Models of the labs and two measuring tools: parameter and FLOP counts."""
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .sincnet import SINCNET_CFG, SincConv1d, SincNet, cutoff_change
from .vgg import VGG, VGG19_CFG, scale_cfg

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one input of `input_shape` (e.g. (3, 32, 32)).

    Counts conv and linear layers only, which is where nearly all of the work is. The sinc front end
    is counted as the convolution it is.
    """
    macs = 0

    def conv_hook(module: nn.Conv1d | nn.Conv2d | SincConv1d, inputs: tuple[torch.Tensor, ...],
                  output: torch.Tensor) -> None:
        nonlocal macs
        weight = module.filters() if isinstance(module, SincConv1d) else module.weight
        per_output = weight[0].numel()          # in_channels/groups * kernel elements
        macs += output.numel() * per_output

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * module.in_features

    hooks: list[RemovableHandle] = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, SincConv1d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return macs
