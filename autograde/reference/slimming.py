"""Reference answers of the slimming assignment's TODOs (the solution cells hold the same code)."""
import copy

import torch
import torch.nn as nn

from lib.models import VGG, SincNet
from lib.slimming import bn_layers, check_cfg_mask, gammas, kept_indices


def update_bn(model: nn.Module, s: float) -> None:
    """Add the L1 penalty's subgradient s * sign(gamma) to every BN scale factor's gradient (in place)."""
    for bn in bn_layers(model):
        bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))


def build_cfg_mask(model: VGG | SincNet, percent: float,
                   min_channels: int) -> tuple[list[int | str], list[torch.Tensor]]:
    """Prune `percent` of all BN channels with one global threshold on |gamma|.

    Returns (cfg, cfg_mask): cfg is model.cfg with each int replaced by the number of kept channels ('M'
    stays); cfg_mask has one float 0/1 tensor per BN layer. A channel is kept when its |gamma| is strictly
    greater than the threshold, sorted |gamma|[int(total * percent)]; a layer keeps at least
    `min_channels` channels (its largest |gamma|) so the network is never cut in two.
    """
    all_gammas = torch.sort(gammas(model)).values
    threshold = all_gammas[min(int(len(all_gammas) * percent), len(all_gammas) - 1)]
    layers = iter(bn_layers(model))
    cfg: list[int | str] = []
    cfg_mask: list[torch.Tensor] = []
    for v in model.cfg:
        if v == 'M':
            cfg.append('M')
            continue
        g = next(layers).weight.detach().abs().cpu()
        mask = (g > threshold).float()
        if mask.sum() < min_channels:
            mask = torch.zeros_like(g)
            mask[torch.topk(g, min(min_channels, len(g))).indices] = 1.0
        cfg.append(int(mask.sum()))
        cfg_mask.append(mask)
    return cfg, cfg_mask


def prune_vgg(model: VGG, cfg: list[int | str], cfg_mask: list[torch.Tensor]) -> VGG:
    """A new VGG(cfg) holding the weights of the channels of `model` that cfg_mask keeps.

    Copied, layer by layer: the conv's kept output filters, each restricted to the kept channels of the
    previous layer (the 3 RGB channels for the first conv); the BN's gamma, beta, running_mean and
    running_var of the kept channels; the classifier's columns of the last layer's kept channels and its
    whole bias. `model` is not changed; the new model is on model's device, in training mode (a new module).
    Invariant: in eval mode its outputs equal lib.slimming.zero_pruned_channels(model, cfg_mask)'s.
    """
    check_cfg_mask(model, cfg, cfg_mask)
    kept = kept_indices(cfg_mask)
    new = VGG(cfg, num_classes=model.classifier.out_features).to(next(model.parameters()).device)
    old_convs = [m for m in model.feature if isinstance(m, nn.Conv2d)]
    new_convs = [m for m in new.feature if isinstance(m, nn.Conv2d)]
    in_idx = torch.arange(3)   # the RGB channels feed the first conv
    with torch.no_grad():
        for out_idx, old_conv, new_conv, old_bn, new_bn in zip(kept, old_convs, new_convs,
                                                                bn_layers(model), bn_layers(new)):
            new_conv.weight.copy_(old_conv.weight[out_idx][:, in_idx])   # (out, in, 3, 3)
            new_bn.weight.copy_(old_bn.weight[out_idx])
            new_bn.bias.copy_(old_bn.bias[out_idx])
            new_bn.running_mean.copy_(old_bn.running_mean[out_idx])
            new_bn.running_var.copy_(old_bn.running_var[out_idx])
            in_idx = out_idx   # the next conv reads only the channels kept here
        new.classifier.weight.copy_(model.classifier.weight[:, in_idx])
        new.classifier.bias.copy_(model.classifier.bias)
    return new


def absorb_constants(model: VGG, cfg_mask: list[torch.Tensor]) -> VGG:
    """A copy of `model` in which the next layer takes over the constant output of every channel cfg_mask prunes.

    A pruned channel j of BN layer i emits the constant c_j = ReLU(beta_j) once its gamma is 0; max-pools and the
    final average pool pass a constant through unchanged. The next conv turns it into c_j * W[o, j].sum() on
    each output channel o (away from the zero-padded borders), which the next BN subtracts with its running mean:
    that mean goes down by the same amount. After the last BN layer the classifier adds W[:, j] * c_j to its bias.
    Returns the copy with those running means and the classifier bias changed; `model` is not changed.
    """
    new = copy.deepcopy(model)
    convs = [m for m in new.feature if isinstance(m, nn.Conv2d)]
    layers = bn_layers(new)
    with torch.no_grad():
        for i, (bn, mask) in enumerate(zip(layers, cfg_mask)):
            constant = torch.relu(bn.bias) * (1 - mask.to(bn.bias.device))   # (channels,): 0 where kept
            if i + 1 < len(layers):
                layers[i + 1].running_mean.sub_(convs[i + 1].weight.sum(dim=(2, 3)) @ constant)   # (out, in) @ (in,)
            else:
                new.classifier.bias.add_(new.classifier.weight @ constant)
    return new
