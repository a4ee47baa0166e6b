"""BatchNorm-gamma tools for network slimming (Liu et al., ICCV 2017) that are not lab TODOs.

Each BN channel multiplies its normalised output by a scale factor gamma. Training with an L1 penalty
on the gammas drives many of them to ~0; those channels contribute (almost) nothing and can be removed.

Vocabulary shared with the notebooks:
    cfg       the architecture list of the pruned model, e.g. [13, 20, 'M', ...] for VGG
    cfg_mask  one 0/1 tensor per BN layer, in model order: 1 = keep that channel
Both VGG and SincNet have exactly one BN layer per int of their cfg, in the same order.

The VGG weight copy (prune_vgg) is a TODO of the vggprune notebook, so it is not here: lib holds no TODO's
solution. check_cfg_mask, kept_indices and zero_pruned_channels (its invariant) are the tools it uses.
"""
import copy
from collections.abc import Sequence
from typing import Literal, TypeVar

import torch
import torch.nn as nn

from .models import VGG, SincNet

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def bn_layers(model: nn.Module) -> list[nn.BatchNorm1d | nn.BatchNorm2d]:
    """The model's BatchNorm layers (1d or 2d), in the order they run."""
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


def gammas(model: nn.Module) -> torch.Tensor:
    """All BN scale factors' absolute values, concatenated: a 1-D CPU tensor of length (total channels)."""
    return torch.cat([bn.weight.detach().abs().cpu().flatten() for bn in bn_layers(model)])


def sparsity(model: nn.Module, threshold: float) -> float:
    """Fraction of BN channels whose |gamma| is below `threshold` (0.0 = dense, 1.0 = all pruned away)."""
    g = gammas(model)
    return (g < threshold).float().mean().item()


def check_cfg_mask(model: VGG | SincNet, cfg: Sequence[int | Literal['M']], cfg_mask: Sequence[torch.Tensor]) -> None:
    """Raise ValueError unless (cfg, cfg_mask) describe a pruning of `model`."""
    layers = bn_layers(model)
    skeleton = ['M' if v == 'M' else 'C' for v in model.cfg]
    if ['M' if v == 'M' else 'C' for v in cfg] != skeleton:
        raise ValueError(f"cfg {cfg} does not have the layout of the model's cfg {model.cfg} "
                         "(same length, 'M' at the same places)")
    if len(cfg_mask) != len(layers):
        raise ValueError(f"cfg_mask has {len(cfg_mask)} masks, but the model has {len(layers)} BN layers")
    for i, (v, mask, bn) in enumerate(zip([v for v in cfg if v != 'M'], cfg_mask, layers)):
        if mask.numel() != bn.num_features:
            raise ValueError(f"cfg_mask[{i}] has {mask.numel()} entries, BN layer {i} has {bn.num_features} channels")
        if int(mask.sum()) != v:
            raise ValueError(f"cfg says {v} channels for BN layer {i}, but cfg_mask[{i}] keeps {int(mask.sum())}")
        if v < 1:
            raise ValueError(f"BN layer {i} would keep no channel: the network would be cut in two")


def kept_indices(cfg_mask: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """For each mask, the indices of the channels it keeps (LongTensor)."""
    return [torch.as_tensor(mask).flatten().nonzero().flatten().cpu() for mask in cfg_mask]


def zero_pruned_channels(model: ModuleT, cfg_mask: Sequence[torch.Tensor], keep_beta: bool = False) -> ModuleT:
    """A copy of `model` whose pruned channels output exactly 0 (their BN gamma and beta set to 0).

    This is what pruning removes: the pruned model's outputs equal this model's outputs. With keep_beta,
    only gamma is set to 0: each pruned channel then still emits the constant ReLU(beta), what a channel with
    a tiny gamma emits, so that the accuracy lost by dropping the betas can be told from the gammas' share.
    """
    model = copy.deepcopy(model)
    with torch.no_grad():
        for bn, mask in zip(bn_layers(model), cfg_mask):
            keep = torch.as_tensor(mask, dtype=bn.weight.dtype, device=bn.weight.device).flatten()
            bn.weight.mul_(keep)
            if not keep_beta:
                bn.bias.mul_(keep)
    return model


def _copy_bn(new: nn.BatchNorm1d, old: nn.BatchNorm1d, idx: torch.Tensor) -> None:
    new.weight.data = old.weight.data[idx].clone()
    new.bias.data = old.bias.data[idx].clone()
    new.running_mean = old.running_mean[idx].clone()
    new.running_var = old.running_var[idx].clone()
    new.num_batches_tracked = old.num_batches_tracked.clone()


def prune_sincnet(model: SincNet, cfg: Sequence[int], cfg_mask: Sequence[torch.Tensor]) -> SincNet:
    """A new SincNet(cfg) holding the kept channels' weights of `model`.

    Copied: the kept sinc filters' band parameters; per block the depthwise filters of the kept input
    channels, the pointwise conv's kept rows and columns, the BN; the Linear head's kept input columns.
    """
    check_cfg_mask(model, cfg, cfg_mask)
    kept = kept_indices(cfg_mask)
    new = SincNet(cfg, num_classes=model.classifier.out_features,
                  sample_rate=model.front[0].sample_rate).to(next(model.parameters()).device)
    old_sinc, new_sinc = model.front[0], new.front[0]
    new_sinc.low_hz_.data = old_sinc.low_hz_.data[kept[0]].clone()
    new_sinc.band_hz_.data = old_sinc.band_hz_.data[kept[0]].clone()
    _copy_bn(new.front[2], model.front[2], kept[0])
    for j, (old_block, new_block) in enumerate(zip(model.blocks, new.blocks), start=1):
        in_idx, out_idx = kept[j - 1], kept[j]
        new_block[0].weight.data = old_block[0].weight.data[in_idx].clone()               # depthwise
        new_block[1].weight.data = old_block[1].weight.data[out_idx][:, in_idx].clone()   # pointwise
        _copy_bn(new_block[2], old_block[2], out_idx)
    new.classifier.weight.data = model.classifier.weight.data[:, kept[-1]].clone()
    new.classifier.bias.data = model.classifier.bias.data.clone()
    return new
