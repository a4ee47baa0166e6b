"""Quantized SincNet for quantization-aware training (QAT).

Every quantized layer takes two functions of the lab as arguments:
    quantizer(x, bits, lo, hi)         rounds x onto 2**bits evenly spaced levels from lo to hi (clipping
                                       outside): your `STEQuantize.apply`; its backward pass decides how
                                       gradients get through the rounding;
    weight_scale(w, bits, clip_std)    the step between two levels of the symmetric range of the weights w
                                       (clip_std None: the range is [-max|w|, max|w|]; else clipped at clip_std
                                       standard deviations): your `weight_scale`.

The layers keep full-precision ("latent") weights as their parameters and quantize them afresh in every
forward pass. The optimizer updates the latent weights; the network computes with the quantized ones.
Writing quantized values into `.data` instead would cut the gradients off from the weights.

Bit widths of QuantSincNet (as in the lab):
    sinc filters 8 bits, front-end activations 8 bits, block weights 2 bits (four levels),
    block activations 4 bits, classifier input and weights 8 bits. BatchNorm stays in float.
Weight ranges are clipped at CLIP_STDS[bits] standard deviations at 2-4 bits, [-max|w|, max|w|] otherwise.
"""
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import torch
import torch.nn as nn

from .sincnet import SincConv1d, SincNet

Quantizer = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]   # quantizer(x, bits, lo, hi)
WeightScale = Callable[[torch.Tensor, int, float | None], torch.Tensor | float]       # weight_scale(w, bits, clip_std)
ModuleT = TypeVar("ModuleT", bound=nn.Module)


# Clipping range of low-bit weights, in standard deviations of the weights: the range that minimizes the
# mean squared rounding + clipping error of 2**bits uniform levels for bell-shaped (Gaussian) weights
# (Banner et al., "Post training 4-bit quantization", NeurIPS 2019). With [-max|w|, max|w|] instead, a few
# large weights stretch the range and at 2 bits nearly every weight lands on the two inner levels.
# QuantSincNet's default; clip_stds={} quantizes every layer on [-max|w|, max|w|].
CLIP_STDS: dict[int, float] = {2: 1.71, 3: 2.15, 4: 2.55}


def quantization_levels(bound: torch.Tensor | float, bits: int) -> torch.Tensor:
    """The 2**bits levels -bound, -bound + step, ..., bound of a symmetric range (a 1-d tensor, ascending)."""
    bound = torch.as_tensor(bound, dtype=torch.float32)
    return torch.linspace(-1.0, 1.0, 2 ** bits) * bound


class _QuantizedWeights:
    """What the quantized conv, linear and sinc layers share: the range of their weights and its rounding.

    `weight_scale(w, bits, clip_std)` (the lab's TODO) gives the step between two levels; the symmetric range is
    [-bound, bound] with bound = step * (2**bits - 1) / 2, and `quantizer(w, bits, -bound, bound)` rounds.
    """

    quantizer: Quantizer
    weight_scale: WeightScale
    bits: int
    clip_std: float | None
    weight: torch.Tensor     # the latent weights of a conv or linear layer (the sinc layer overrides raw_weight)

    def _setup(self, quantizer: Quantizer, weight_scale: WeightScale, bits: int, clip_std: float | None) -> None:
        self.quantizer, self.weight_scale, self.bits, self.clip_std = quantizer, weight_scale, bits, clip_std

    def raw_weight(self) -> torch.Tensor:
        return self.weight

    def weight_bound(self) -> torch.Tensor:
        """The half-width of the symmetric range the weights are quantized on (0-d tensor)."""
        w = self.raw_weight().detach()                     # the range is data, not something to learn
        step = torch.as_tensor(self.weight_scale(w, self.bits, self.clip_std), dtype=w.dtype, device=w.device)
        return step * (2 ** self.bits - 1) / 2

    def effective_weight(self) -> torch.Tensor:
        """The weights the layer computes with: at most 2**bits distinct values."""
        bound = self.weight_bound()
        return self.quantizer(self.raw_weight(), self.bits, -bound, bound)


class QuantConv1d(_QuantizedWeights, nn.Conv1d):
    """nn.Conv1d that convolves with its weights quantized to `bits` bits."""

    def __init__(self, *args: Any, quantizer: Quantizer, weight_scale: WeightScale, bits: int,
                 clip_std: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup(quantizer, weight_scale, bits, clip_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class QuantLinear(_QuantizedWeights, nn.Linear):
    """nn.Linear with weights quantized to `bits` bits (the bias stays in float, as in integer kernels)."""

    def __init__(self, *args: Any, quantizer: Quantizer, weight_scale: WeightScale, bits: int,
                 clip_std: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup(quantizer, weight_scale, bits, clip_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)


class QuantSincConv1d(_QuantizedWeights, SincConv1d):
    """SincConv1d whose computed filters are quantized to `bits` bits (the band edges stay in float)."""

    def __init__(self, *args: Any, quantizer: Quantizer, weight_scale: WeightScale, bits: int,
                 clip_std: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup(quantizer, weight_scale, bits, clip_std)

    def raw_weight(self) -> torch.Tensor:
        return super().filters()

    def filters(self) -> torch.Tensor:
        return self.effective_weight()


class QuantAct(nn.Module):
    """Quantizes activations to `bits` bits on [0, r] (or [-r, r] when signed).

    r is a running average of the batches' largest |activation|, learned in training, frozen in eval,
    like BatchNorm's statistics.
    """

    clip: torch.Tensor          # buffers: r (0-d)
    initialized: torch.Tensor   # and whether r holds a batch's maximum yet (0-d bool)

    def __init__(self, bits: int, quantizer: Quantizer, signed: bool = False, momentum: float = 0.1) -> None:
        super().__init__()
        self.bits, self.quantizer, self.signed, self.momentum = bits, quantizer, signed, momentum
        self.register_buffer("clip", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            batch_max = x.detach().abs().max()
            if self.initialized:
                self.clip.lerp_(batch_max, self.momentum)
            else:
                self.clip.copy_(batch_max)
                self.initialized.fill_(True)
        r = self.clip.clamp_min(1e-8)
        return self.quantizer(x, self.bits, -r if self.signed else torch.zeros_like(r), r)


class QuantSincNet(SincNet):
    """SincNet computing with low-bit weights and activations; same cfg, same wiring as SincNet.

    quantizer, weight_scale: the lab's functions (see the module docstring). clip_stds: {bits: k}, the weights
    of a layer with that many bits are clipped at k standard deviations (CLIP_STDS by default; {}: every layer
    on [-max|w|, max|w|]). Build it from a trained float (or pruned) SincNet with `quantize_sincnet`, then
    train it (QAT).
    """

    classifier: nn.Sequential     # QuantAct, then QuantLinear (make_linear)

    def __init__(self, cfg: Sequence[int], quantizer: Quantizer, weight_scale: WeightScale, num_classes: int = 10,
                 sample_rate: int = 16000, sinc_bits: int = 8, front_act_bits: int = 8, weight_bits: int = 2,
                 act_bits: int = 4, classifier_bits: int = 8, clip_stds: dict[int, float] | None = None) -> None:
        self.quantizer, self.weight_scale = quantizer, weight_scale
        self.clip_stds = dict(CLIP_STDS if clip_stds is None else clip_stds)
        self.sinc_bits, self.front_act_bits, self.weight_bits = sinc_bits, front_act_bits, weight_bits
        self.act_bits, self.classifier_bits = act_bits, classifier_bits
        super().__init__(cfg, num_classes=num_classes, sample_rate=sample_rate)
        self.front.append(QuantAct(front_act_bits, quantizer, signed=True))   # BN output can be negative

    def _weights(self, bits: int) -> dict[str, Any]:
        """The keyword arguments of a quantized layer with `bits`-bit weights."""
        return dict(quantizer=self.quantizer, weight_scale=self.weight_scale, bits=bits,
                    clip_std=self.clip_stds.get(bits))

    def make_sinc(self, channels: int, sample_rate: int) -> QuantSincConv1d:
        return QuantSincConv1d(channels, sample_rate=sample_rate, **self._weights(self.sinc_bits))

    def make_block(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
        q, ab, weights = self.quantizer, self.act_bits, self._weights(self.weight_bits)
        return nn.Sequential(
            QuantConv1d(in_channels, in_channels, kernel, stride, padding=kernel // 2, groups=in_channels,
                        bias=False, **weights),
            QuantAct(ab, q, signed=True),
            QuantConv1d(in_channels, out_channels, 1, bias=False, **weights),
            nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True), nn.AvgPool1d(2),
            QuantAct(ab, q))

    def make_linear(self, in_features: int, num_classes: int) -> nn.Sequential:
        b = self.classifier_bits
        return nn.Sequential(QuantAct(b, self.quantizer), QuantLinear(in_features, num_classes, **self._weights(b)))


def _layers(model: nn.Module, kind: type[ModuleT]) -> list[ModuleT]:
    return [m for m in model.modules() if isinstance(m, kind)]


def quantize_sincnet(model: SincNet, quantizer: Quantizer, weight_scale: WeightScale, **settings: Any) -> QuantSincNet:
    """A QuantSincNet with the cfg and the trained weights of the float SincNet `model` (the QAT start).

    `settings` overrides QuantSincNet's bit widths and clip_stds, e.g. weight_bits=4, clip_stds={}.
    """
    sinc = cast(SincConv1d, model.front[0])      # (an nn.Sequential's items are typed as just nn.Module)
    qmodel = QuantSincNet(model.cfg, quantizer, weight_scale, num_classes=_layers(model, nn.Linear)[0].out_features,
                          sample_rate=sinc.sample_rate, **settings)
    for kind in (SincConv1d, nn.Conv1d, nn.BatchNorm1d, nn.Linear):
        sources, targets = _layers(model, kind), _layers(qmodel, kind)
        assert len(sources) == len(targets), f"{kind.__name__}: {len(sources)} vs {len(targets)} layers"
        for src, dst in zip(sources, targets):
            dst.load_state_dict(src.state_dict())
    return qmodel.to(next(model.parameters()).device)


def quantized_layers(model: nn.Module) -> list[QuantConv1d | QuantLinear | QuantSincConv1d]:
    """The layers whose weights are quantized (they have .bits and .effective_weight())."""
    return [m for m in model.modules() if isinstance(m, (QuantConv1d, QuantLinear, QuantSincConv1d))]


def model_size_bytes(model: nn.Module) -> int:
    """Storage of the parameters at their bit widths: quantized weights at .bits, everything else 32-bit."""
    bits = 0
    quantized = {id(m.weight): m.bits for m in quantized_layers(model) if hasattr(m, "weight")}
    for p in model.parameters():
        bits += p.numel() * quantized.get(id(p), 32)
    # The sinc layer stores 2 float band edges per filter, counted above at 32 bits: its filters are
    # recomputed from them, so there are no stored filter weights to quantize.
    return bits // 8
