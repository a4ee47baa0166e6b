"""Known-wrong answers to the slimming TODOs; each must lose the points of its target grade cell, and only those."""
from . import Mutant

_UPDATE_BN = '''import torch
from lib.slimming import bn_layers


def update_bn(model, s):
    """Add the L1 subgradient s * sign(gamma) to the gradient of every BN scale factor (in place)."""
    for bn in {layers}:
        {body}
'''


def _update_bn(name, body, layers="bn_layers(model)"):
    return Mutant(name, "sparsity_train", "update_bn", "test_update_bn",
                  _UPDATE_BN.format(layers=layers, body=body))


_BUILD_CFG_MASK = '''import torch
from lib.slimming import bn_layers, gammas


def build_cfg_mask(model, percent, min_channels):
    """One global threshold on |gamma|; returns (cfg, cfg_mask)."""
    all_gammas = torch.sort(gammas(model)).values
    threshold = all_gammas[min(int(len(all_gammas) * {fraction}), len(all_gammas) - 1)]
    layers = iter(bn_layers(model))
    cfg, cfg_mask = [], []
    for v in model.cfg:
        if v == 'M':
            cfg.append('M')
            continue
        g = next(layers).weight.detach().abs().cpu()
        {threshold_line}
        mask = (g {compare} threshold).float()
        if {min_rule}mask.sum() < min_channels:
            mask = torch.zeros_like(g)
            mask[torch.topk(g, min(min_channels, len(g))).indices] = 1.0
        cfg.append(int(mask.sum()))
        cfg_mask.append(mask)
    return cfg, cfg_mask
'''


def _build_cfg_mask(name, fraction="percent", compare=">", threshold_line="", min_rule=""):
    code = _BUILD_CFG_MASK.format(fraction=fraction, compare=compare, min_rule=min_rule,
                                  threshold_line=threshold_line or "# one threshold for every layer")
    return Mutant(name, "vggprune", "build_cfg_mask", "test_build_cfg_mask", code)


MUTANTS = [
    _update_bn("wrong sign", "bn.weight.grad.add_(-s * torch.sign(bn.weight.detach()))"),
    _update_bn("L2 instead of L1 (s * gamma)", "bn.weight.grad.add_(s * bn.weight.detach())"),
    _update_bn("only the first BN layer", "bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))",
               layers="bn_layers(model)[:1]"),
    _update_bn("overwrites the gradient", "bn.weight.grad = s * torch.sign(bn.weight.detach())"),
    _update_bn("sign(0) taken as +1",
               "bn.weight.grad.add_(s * torch.where(bn.weight.detach() >= 0, 1.0, -1.0))"),
    # Passes the visible test and the checks before the probes: there every BN bias was 0, and sign(0) = 0.
    _update_bn("penalty on the BN biases too",
               "bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))\n"
               "        bn.bias.grad.add_(s * torch.sign(bn.bias.detach()))"),
    _build_cfg_mask("per-layer threshold",
                    threshold_line="threshold = torch.sort(g).values[min(int(len(g) * percent), len(g) - 1)]"),
    _build_cfg_mask(">= instead of >", compare=">="),
    _build_cfg_mask("min_channels ignored", min_rule="False and "),
    _build_cfg_mask("percent of kept channels instead of pruned", fraction="(1 - percent)"),
]
