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
from typing import Literal, TypeVar, cast

import torch
import torch.nn as nn

from .models import VGG, SincConv1d, SincNet

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
    assert old.running_mean is not None and old.running_var is not None and old.num_batches_tracked is not None
    new.weight.data = old.weight.data[idx].clone()
    new.bias.data = old.bias.data[idx].clone()
    new.running_mean = old.running_mean[idx].clone()
    new.running_var = old.running_var[idx].clone()
    new.num_batches_tracked = old.num_batches_tracked.clone()


def _block_layers(block: nn.Module) -> tuple[nn.Conv1d, nn.Conv1d, nn.BatchNorm1d]:
    """The depthwise conv, pointwise conv and BN of a block of SincNet.make_block: block[0], [1] and [2]."""
    block = cast(nn.Sequential, block)                 # (an nn.Sequential types its items as just nn.Module)
    return cast(nn.Conv1d, block[0]), cast(nn.Conv1d, block[1]), cast(nn.BatchNorm1d, block[2])


def prune_sincnet(model: SincNet, cfg: Sequence[int], cfg_mask: Sequence[torch.Tensor]) -> SincNet:
    """A new SincNet(cfg) holding the kept channels' weights of `model`.

    Copied: the kept sinc filters' band parameters; per block the depthwise filters of the kept input
    channels, the pointwise conv's kept rows and columns, the BN; the Linear head's kept input columns.
    """
    check_cfg_mask(model, cfg, cfg_mask)
    kept = kept_indices(cfg_mask)
    # The layers SincNet.__init__ makes (an nn.Sequential types its items as just nn.Module):
    old_sinc, old_head = cast(SincConv1d, model.front[0]), cast(nn.Linear, model.classifier)
    new = SincNet(cfg, num_classes=old_head.out_features,
                  sample_rate=old_sinc.sample_rate).to(next(model.parameters()).device)
    new_sinc, new_head = cast(SincConv1d, new.front[0]), cast(nn.Linear, new.classifier)
    new_sinc.low_hz_.data = old_sinc.low_hz_.data[kept[0]].clone()
    new_sinc.band_hz_.data = old_sinc.band_hz_.data[kept[0]].clone()
    _copy_bn(cast(nn.BatchNorm1d, new.front[2]), cast(nn.BatchNorm1d, model.front[2]), kept[0])
    for j, (old_block, new_block) in enumerate(zip(model.blocks, new.blocks), start=1):
        in_idx, out_idx = kept[j - 1], kept[j]
        old_depthwise, old_pointwise, old_bn = _block_layers(old_block)
        new_depthwise, new_pointwise, new_bn = _block_layers(new_block)
        new_depthwise.weight.data = old_depthwise.weight.data[in_idx].clone()
        new_pointwise.weight.data = old_pointwise.weight.data[out_idx][:, in_idx].clone()
        _copy_bn(new_bn, old_bn, out_idx)
    new_head.weight.data = old_head.weight.data[:, kept[-1]].clone()
    new_head.bias.data = old_head.bias.data.clone()
    return new
