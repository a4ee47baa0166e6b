"""VGG for 32x32 images, as in network slimming (Liu et al., ICCV 2017).

The network is described by a cfg list: an int is a 3x3 conv with that many output channels
(conv -> BatchNorm -> ReLU), 'M' is a 2x2 max-pool. Pruning only changes the ints, so a pruned
network is just `VGG(pruned_cfg)`. State-dict keys are `feature.<i>.*` and `classifier.*`, the same as
the public network-slimming code, so checkpoints move between the two.
"""
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

VGGCfg = list[int | Literal['M']]   # an int: a 3x3 conv with that many output channels; 'M': a 2x2 max-pool

VGG19_CFG: VGGCfg = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512]


def scale_cfg(cfg: Sequence[int | Literal['M']], width: float) -> VGGCfg:
    """The cfg with every channel count multiplied by `width` (at least 1 channel); 'M' stays."""
    return [v if v == 'M' else max(1, round(v * width)) for v in cfg]


class VGG(nn.Module):
    """VGG with BatchNorm. Input (B, 3, 32, 32) -> logits (B, num_classes).

    VGG-19 leaves a 2x2 feature map; it is average-pooled to one vector per image, so the classifier
    is a single Linear(last conv's channels, num_classes).
    """

    def __init__(self, cfg: Sequence[int | Literal['M']] | None = None, num_classes: int = 10,
                 width: float = 1.0) -> None:
        super().__init__()
        cfg = scale_cfg(cfg or VGG19_CFG, width)
        self.cfg = cfg
        self.feature = self.make_layers(cfg)
        channels = [v for v in cfg if v != 'M']
        self.classifier = nn.Linear(channels[-1], num_classes)
        self._initialize_weights()

    @staticmethod
    def make_layers(cfg: Sequence[int | Literal['M']]) -> nn.Sequential:
        layers: list[nn.Module] = []
        in_channels = 3
        for v in cfg:
            if v == 'M':
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1, bias=False),
                           nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_channels = v
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature(x)                        # (B, C, 2, 2) for VGG-19 on 32x32 inputs
        x = nn.functional.avg_pool2d(x, 2)         # (B, C, 1, 1)
        return self.classifier(x.flatten(1))

    def _initialize_weights(self) -> None:
        # As in the network-slimming code. BN gamma starts at 0.5, not 1: the L1 penalty then has less to push.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
