"""Reference answers of the slimming assignment's TODOs (the solution cells hold the same code)."""
import torch

from lib.slimming import bn_layers, gammas


def update_bn(model, s):
    """Add the L1 penalty's subgradient s * sign(gamma) to every BN scale factor's gradient (in place)."""
    for bn in bn_layers(model):
        bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))


def build_cfg_mask(model, percent, min_channels):
    """Prune `percent` of all BN channels with one global threshold on |gamma|.

    Returns (cfg, cfg_mask): cfg is model.cfg with each int replaced by the number of kept channels ('M'
    stays); cfg_mask has one float 0/1 tensor per BN layer. A channel is kept when its |gamma| is strictly
    greater than the threshold, sorted |gamma|[int(total * percent)]; a layer keeps at least
    `min_channels` channels (its largest |gamma|) so the network is never cut in two.
    """
    all_gammas = torch.sort(gammas(model)).values
    threshold = all_gammas[min(int(len(all_gammas) * percent), len(all_gammas) - 1)]
    layers = iter(bn_layers(model))
    cfg, cfg_mask = [], []
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
