"""Models of the labs and two measuring tools: parameter and FLOP counts."""
import torch
import torch.nn as nn

from .sincnet import SINCNET_CFG, SincConv1d, SincNet, cutoff_change
from .vgg import VGG, VGG19_CFG, scale_cfg


def count_parameters(model):
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model, input_shape):
    """Multiply-accumulates of one forward pass on one input of `input_shape` (e.g. (3, 32, 32)).

    Counts conv and linear layers only, which is where nearly all of the work is. The sinc front end
    is counted as the convolution it is.
    """
    macs = 0

    def conv_hook(module, inputs, output):
        nonlocal macs
        weight = module.filters() if isinstance(module, SincConv1d) else module.weight
        per_output = weight[0].numel()          # in_channels/groups * kernel elements
        macs += output.numel() * per_output

    def linear_hook(module, inputs, output):
        nonlocal macs
        macs += output.numel() * module.in_features

    hooks = []
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
