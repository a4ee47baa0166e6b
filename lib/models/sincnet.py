"""SincNet keyword spotter: a learnable band-pass filter bank on raw audio, then depthwise-separable convs.

Front end as in SincNet (Ravanelli & Bengio, 2018), body as in the small-footprint keyword spotter of
Mittermaier et al. (2020): SincConv -> log(|x| + 1) -> BN -> avg-pool, five depthwise-separable blocks,
global average pool, Linear.

Like VGG, the network is described by a cfg: cfg[0] is the number of sinc filters, cfg[1:] the output
channels of the five blocks. Every int of the cfg has exactly one BatchNorm, in order, so the BN-gamma
pruning code of the slimming lab works here unchanged, and `SincNet(pruned_cfg)` rebuilds a pruned net.
"""
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

SINCNET_CFG = [40, 192, 256, 256, 256, 256]
BLOCKS = [(25, 2), (9, 1), (15, 1), (9, 1), (9, 1)]   # (depthwise kernel size, stride) of the five blocks


def hz_to_mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


def mel_to_hz(mel: float) -> float:
    return 700 * (10 ** (mel / 2595) - 1)


class SincConv1d(nn.Module):
    """Band-pass filters whose only parameters are their low cut-off and bandwidth (2 numbers per filter).

    Input (B, 1, T) -> output (B, out_channels, (T - kernel_size) // stride + 1).
    Filter i passes [low_i, low_i + band_i] Hz, with low_i >= min_low_hz and band_i >= min_band_hz;
    it is the difference of two windowed sinc low-pass filters (Hamming window, odd length).
    """

    window_: torch.Tensor    # buffers (register_buffer below): the Hamming window's left half, (kernel_size // 2,)
    n_: torch.Tensor         # and the left taps' times as 2 pi t, t in seconds, (1, kernel_size // 2)

    def __init__(self, out_channels: int = 40, kernel_size: int = 101, sample_rate: int = 16000, stride: int = 8,
                 min_low_hz: float = 50, min_band_hz: float = 50) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the filters are symmetric, got {kernel_size}")
        self.out_channels, self.kernel_size, self.stride = out_channels, kernel_size, stride
        self.sample_rate, self.min_low_hz, self.min_band_hz = sample_rate, min_low_hz, min_band_hz

        # Initial bands: equally spaced on the mel scale, like the ear's filter bank.
        high = sample_rate / 2 - (min_low_hz + min_band_hz)
        mel = torch.linspace(hz_to_mel(30), hz_to_mel(high), out_channels + 1)
        hz = 700 * (10 ** (mel / 2595) - 1)
        self.low_hz_ = nn.Parameter(hz[:-1].unsqueeze(1))            # (C, 1)
        self.band_hz_ = nn.Parameter(hz.diff().unsqueeze(1))         # (C, 1)

        # Only the left half is computed: the filters are symmetric around the centre tap.
        half = kernel_size // 2
        n = torch.linspace(0, half - 1, half)
        self.register_buffer("window_", 0.54 - 0.46 * torch.cos(2 * math.pi * n / (kernel_size - 1)))
        self.register_buffer("n_", 2 * math.pi * torch.arange(-half, 0).float().unsqueeze(0) / sample_rate)

    def band_parameters(self) -> list[nn.Parameter]:
        """The two trained tensors, low cut-off and bandwidth in Hz, each (C, 1).

        They are thousands of Hz while a conv weight is ~0.1, and their gradients are as many times smaller,
        so with the blocks' learning rate they would not move: lib.train.fit gives them `sinc_lr`.
        """
        return [self.low_hz_, self.band_hz_]

    def bands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) cut-offs in Hz, each (C, 1), after applying the minimums and the Nyquist limit."""
        low = self.min_low_hz + torch.abs(self.low_hz_)
        high = torch.clamp(low + self.min_band_hz + torch.abs(self.band_hz_), self.min_low_hz, self.sample_rate / 2)
        return low, high

    def filters(self) -> torch.Tensor:
        """The (C, 1, kernel_size) impulse responses, each normalised to unit gain at its band centre."""
        low, high = self.bands()
        band = (high - low)[:, 0]
        left = (torch.sin(high @ self.n_) - torch.sin(low @ self.n_)) / (self.n_ / 2) * self.window_
        centre = 2 * band.unsqueeze(1)
        filters = torch.cat([left, centre, left.flip(dims=[1])], dim=1) / (2 * band.unsqueeze(1))
        return filters.view(self.out_channels, 1, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filters(), stride=self.stride)


def cutoff_change(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> float:
    """Mean relative change of the cut-offs, e.g. 0.1 when they moved by 10% of their value on average.

    before, after: (low, high) as SincConv1d.bands() returns them, each (C, 1) in Hz (low >= min_low_hz > 0).
    Returns a float: the mean over all 2C cut-offs of |after - before| / before.
    """
    change = [((a.detach() - b.detach()).abs() / b.detach()).flatten() for b, a in zip(before, after)]
    return torch.cat(change).mean().item()


class LogCompression(nn.Module):
    """log(|x| + 1): squashes the filter outputs' huge dynamic range, like a log-mel spectrogram does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.abs(x) + 1)


class SincNet(nn.Module):
    """Keyword spotter. Input (B, 1, 16000) raw audio at 16 kHz -> logits (B, num_classes).

    cfg = [sinc filters, block1 channels, ..., block5 channels]. With the default cfg it has about
    0.27 M parameters; `width` scales the five blocks' channels (not the sinc filters).
    """

    def __init__(self, cfg: Sequence[int] | None = None, num_classes: int = 10, width: float = 1.0,
                 sample_rate: int = 16000) -> None:
        super().__init__()
        cfg = list(cfg or SINCNET_CFG)
        if len(cfg) != len(BLOCKS) + 1:
            raise ValueError(f"a SincNet cfg has {len(BLOCKS) + 1} entries (sinc filters + 5 blocks), got {cfg}")
        cfg = cfg[:1] + [max(1, round(c * width)) for c in cfg[1:]]
        self.cfg = cfg
        self.front = nn.Sequential(
            self.make_sinc(cfg[0], sample_rate), LogCompression(), nn.BatchNorm1d(cfg[0]), nn.AvgPool1d(2))
        blocks, in_channels = [], cfg[0]
        for (kernel, stride), out_channels in zip(BLOCKS, cfg[1:]):
            blocks.append(self.make_block(in_channels, out_channels, kernel, stride))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = self.make_linear(cfg[-1], num_classes)

    # The quantized model (lib.models.quant) overrides these three builders; the wiring stays here.
    def make_sinc(self, channels: int, sample_rate: int) -> SincConv1d:
        return SincConv1d(channels, sample_rate=sample_rate)

    def make_block(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
        """Depthwise conv (one filter per channel) -> pointwise 1x1 conv -> BN -> ReLU -> avg-pool 2."""
        return nn.Sequential(
            nn.Conv1d(in_channels, in_channels, kernel, stride, padding=kernel // 2, groups=in_channels, bias=False),
            nn.Conv1d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True), nn.AvgPool1d(2))

    def make_linear(self, in_features: int, num_classes: int) -> nn.Module:
        return nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.front(x)              # (B, cfg[0], ~T/16)
        x = self.blocks(x)             # (B, cfg[-1], ~T/512)
        x = x.mean(dim=2)              # global average pool over time
        return self.classifier(x)
