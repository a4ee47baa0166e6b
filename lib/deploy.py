"""What compression buys on a real device: CPU latency, and quantized weights in real integer storage.

    cpu_latency({"unpruned": vgg, "pruned 50%": small}, (3, 32, 32))    {name: {batch size: seconds}}
    save_packed(qmodel, "model.packed.pt")                            bytes on disk, quantized weights as integers
    load_packed("model.packed.pt", quantizer)                         the model back, its weights dequantized
    IntegerSincNet(qmodel)(x)                                         its forward pass in integer arithmetic

Counting parameters and FLOPs predicts the gains; these functions measure them. Fake quantization (QAT)
computes with float weights that happen to take 2**bits values; `save_packed` stores each of those weights as
its b-bit level number (8 // b of them per byte) plus one float per layer, which is what an integer runtime
ships to the device. `load_packed` turns the level numbers back into float weights: the model it returns runs
float convolutions, so it measures the storage. `IntegerSincNet` computes with the level numbers themselves, as
an integer runtime would: integer products and sums, fixed-point rescaling, BatchNorm folded in.
"""
from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

# torch.utils.benchmark imports the C++ extension builder, which warns "No CUDA runtime is found" on machines
# that set CUDA_HOME without a GPU; the timer builds nothing, so that warning is noise here.
_extension_log = logging.getLogger("torch.utils.cpp_extension")
_level = _extension_log.level
_extension_log.setLevel(logging.ERROR)
import torch.utils.benchmark as benchmark  # noqa: E402
_extension_log.setLevel(_level)

from .models.quant import QuantAct, QuantConv1d, QuantLinear, QuantSincNet, Quantizer, WeightScale


def cpu_latency(models: Mapping[str, nn.Module], input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 64),
                threads: int = 1, min_run_time: float = 0.2) -> dict[str, dict[int, float]]:
    """Median CPU time of one forward pass of each model, measured with torch.utils.benchmark.

    models        {name: nn.Module}; each is copied to the CPU in eval mode (the originals are untouched)
    input_shape   one input without the batch dimension, e.g. (3, 32, 32)
    batch_sizes   the batch sizes to time
    threads       torch threads during the timing (fixed, so that runs and machines compare)
    min_run_time  seconds of timing per model and batch size; the median of those runs is reported
    Returns {name: {batch_size: seconds per forward pass}}.
    """
    times: dict[str, dict[int, float]] = {}
    for name, model in models.items():
        model = copy.deepcopy(model).cpu().eval()
        times[name] = {}
        for batch_size in batch_sizes:
            timer = benchmark.Timer(stmt="with torch.no_grad(): model(x)", num_threads=threads,
                                    globals={"torch": torch, "model": model,
                                             "x": torch.randn(batch_size, *input_shape)})
            times[name][batch_size] = timer.blocked_autorange(min_run_time=min_run_time).median
    return times


def _check_bits(bits: int) -> None:
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"bits must be 1, 2, 4 or 8 (a whole number of codes per byte), got {bits}")


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Packs integer codes of `bits` bits into bytes, 8 // bits codes per byte.

    codes  integer tensor of any shape, values in [0, 2**bits)
    Returns a 1-D uint8 tensor of ceil(codes.numel() * bits / 8) bytes. Code i (in flattened order) sits in
    byte i // (8 // bits) at bit offset (i % (8 // bits)) * bits: the first code in the lowest bits.
    """
    _check_bits(bits)
    flat = codes.flatten().long()
    if flat.numel() and not (0 <= int(flat.min()) and int(flat.max()) < 2 ** bits):
        raise ValueError(f"codes must lie in [0, {2 ** bits}) for {bits} bits, "
                         f"got [{int(flat.min())}, {int(flat.max())}]")
    per_byte = 8 // bits
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % per_byte)]).view(-1, per_byte)
    shifts = torch.arange(0, 8, bits)                        # bit offset of each code in its byte
    return (flat << shifts).sum(dim=1).to(torch.uint8)       # the codes' bits do not overlap: sum = or


def unpack_codes(packed: torch.Tensor, bits: int, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of pack_codes: a uint8 tensor of `shape` holding the codes (values in [0, 2**bits))."""
    _check_bits(bits)
    shifts = torch.arange(0, 8, bits)
    codes = (packed.long().unsqueeze(1) >> shifts) & (2 ** bits - 1)    # (bytes, 8 // bits)
    return codes.flatten()[:torch.Size(shape).numel()].view(shape).to(torch.uint8)


def level_step(bound: torch.Tensor, bits: int) -> torch.Tensor:
    """The spacing of the 2**bits levels on [-bound, bound]: the quantizer's (hi - lo) / (2**bits - 1)."""
    return 2 * bound / (2 ** bits - 1)


def weight_codes(layer: QuantConv1d | QuantLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """The level numbers of the weights a quantized layer computes with: (codes, bound).

    layer  a QuantConv1d or QuantLinear (it has .weight, .bits and .effective_weight())
    Returns codes, a uint8 tensor shaped like layer.weight with values in [0, 2**bits), and bound, the 0-d float
    tensor of the layer's range [-bound, bound] (layer.weight_bound()). Code k stands for the level
    -bound + k * level_step(bound, bits). The codes are read off the layer's quantized weights, so they hold
    what its quantizer produced; values off that grid would be rounded to the nearest level.
    """
    bound = layer.weight_bound().detach()
    levels = layer.effective_weight().detach()
    codes = torch.round((levels + bound) / level_step(bound, layer.bits))
    return codes.clamp(0, 2 ** layer.bits - 1).to(torch.uint8), bound


def dequantize(codes: torch.Tensor, bits: int, bound: torch.Tensor) -> torch.Tensor:
    """The float32 weights, shaped like codes, that `codes` stand for on [-bound, bound]; see weight_codes."""
    return codes.float() * level_step(bound, bits) - bound    # the quantizer's k * step + lo: bit for bit its values


def tensor_bytes(state: object) -> int:
    """Bytes of the tensors in `state` (a state dict, or any dict/list nesting of tensors), without file overhead."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    values = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else []
    return sum(tensor_bytes(value) for value in values)


def _packed_layers(model: nn.Module) -> dict[str, QuantConv1d | QuantLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (QuantConv1d, QuantLinear))}


def save_packed(qmodel: QuantSincNet, path: str | Path) -> dict[str, int]:
    """Saves a QuantSincNet with its quantized conv and linear weights as packed integers.

    Each such weight is stored as pack_codes(weight_codes(layer)) (2-bit weights four to a byte, 8-bit one)
    plus its float bound; everything else (BN, biases, sinc band edges, activation ranges) stays float32.
    Returns {"file": bytes of the file on disk, "tensors": bytes of all the tensors in it (tensor_bytes),
             "weights": bytes of the packed weights, "float_weights": bytes the same weights take as float32}.
    """
    packed: dict[str, dict[str, Any]] = {}
    for name, layer in _packed_layers(qmodel).items():
        codes, bound = weight_codes(layer)
        packed[f"{name}.weight"] = {"bits": layer.bits, "shape": list(codes.shape), "bound": bound.cpu(),
                                    "data": pack_codes(codes.cpu(), layer.bits)}
    floats = {key: value.cpu() for key, value in qmodel.state_dict().items() if key not in packed}
    arch = {"cfg": list(qmodel.cfg), "num_classes": qmodel.classifier[-1].out_features,
            "sample_rate": qmodel.front[0].sample_rate, "sinc_bits": qmodel.sinc_bits,
            "front_act_bits": qmodel.front_act_bits, "weight_bits": qmodel.weight_bits,
            "act_bits": qmodel.act_bits, "classifier_bits": qmodel.classifier_bits,
            "clip_stds": dict(qmodel.clip_stds)}
    saved = {"arch": arch, "packed": packed, "float": floats}
    torch.save(saved, path)
    return {"file": os.path.getsize(path), "tensors": tensor_bytes([packed, floats]),
            "weights": sum(entry["data"].numel() for entry in packed.values()),
            "float_weights": sum(4 * torch.Size(entry["shape"]).numel() for entry in packed.values())}


def _plain_copy(layer: QuantConv1d | QuantLinear, weight: torch.Tensor) -> nn.Conv1d | nn.Linear:
    """An nn.Conv1d / nn.Linear with layer's shape and bias that computes with the fixed `weight`."""
    if isinstance(layer, QuantConv1d):
        # (the stubs type a conv's kernel_size, stride... as tuple[int, ...], not the 1-tuples a Conv1d's are)
        plain: nn.Conv1d | nn.Linear = nn.Conv1d(
            layer.in_channels, layer.out_channels,
            layer.kernel_size, layer.stride, layer.padding, layer.dilation,  # type: ignore[arg-type]
            layer.groups, bias=layer.bias is not None)
    else:
        plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if layer.bias is not None:
            assert plain.bias is not None        # made with a bias above
            plain.bias.copy_(layer.bias)
    return plain


def load_packed(path: str | Path, quantizer: Quantizer, weight_scale: WeightScale) -> QuantSincNet:
    """The model saved by save_packed, its stored integer weights dequantized (floats again).

    quantizer     the activation quantizer, quantizer(x, bits, lo, hi) (the lab's STEQuantize.apply)
    weight_scale  the lab's weight_scale: the sinc filters are recomputed from their band edges and quantized
    Returns a QuantSincNet (CPU, eval mode) whose quantized conv and linear layers are plain nn.Conv1d /
    nn.Linear holding dequantize(unpack_codes(...)): fixed weights, as on the device; activations are still
    quantized on the fly.
    """
    saved = torch.load(path, map_location="cpu")
    model = QuantSincNet(quantizer=quantizer, weight_scale=weight_scale, **saved["arch"])
    result = model.load_state_dict(saved["float"], strict=False)
    if set(result.missing_keys) != set(saved["packed"]) or result.unexpected_keys:
        raise ValueError(f"{path}: expected the float state of all but the packed weights {sorted(saved['packed'])}; "
                         f"missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    for key, entry in saved["packed"].items():
        codes = unpack_codes(entry["data"], entry["bits"], entry["shape"])
        layer_name = key.rsplit(".", 1)[0]
        parent_name, _, child = layer_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, _plain_copy(getattr(parent, child), dequantize(codes, entry["bits"], entry["bound"])))
    return model.eval()


# ------------------------------------------------------------------------------------------ integer inference

def fixed_point(multiplier: torch.Tensor | float, bits: int = 30) -> tuple[torch.Tensor, int]:
    """(m, s): the real `multiplier` (a float or a tensor of them) as integers, multiplier ~ m / 2**s.

    One shift s for the whole tensor, chosen so that its largest |m| lies in [2**bits, 2**(bits + 1)): an integer
    runtime rescales an int32 accumulator this way, with one integer multiply and one shift. m is int64.
    """
    multiplier = torch.as_tensor(multiplier, dtype=torch.float64)
    largest = multiplier.abs().max().clamp_min(1e-30)
    shift = bits - int(torch.floor(torch.log2(largest)))
    return torch.round(multiplier * 2.0 ** shift).to(torch.int64), shift


def rounding_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """round(x / 2**shift) of an int64 tensor (halves rounded up), with integer operations only."""
    return torch.div(x + (1 << (shift - 1)), 1 << shift, rounding_mode="floor")


def activation_codes(act: QuantAct) -> tuple[float, int, int]:
    """(scale, lo, hi) of a QuantAct: the value of integer code q is scale * q, and its codes run from lo to hi.

    An unsigned range [0, r] has levels k * step, k = 0 .. 2**b - 1: the code is k, scale = step. A signed range
    [-r, r] has levels -r + k * step, with no level at 0; doubled, they are odd integers: code 2k - (2**b - 1),
    scale = step / 2. Either way 0 stands for 0, so zero padding is code 0.
    """
    top = 2 ** act.bits - 1
    r = act.clip.clamp_min(1e-8).item()
    if act.signed:
        return r / top, -top, top          # step / 2 = 2r / top / 2
    return r / top, 0, top


def _front_act(front: nn.Sequential) -> QuantAct:
    """The QuantAct that ends a QuantSincNet's front end (an nn.Sequential types its items as just nn.Module)."""
    return cast(QuantAct, front[-1])


_BlockLayers = tuple[QuantConv1d, QuantAct, QuantConv1d, nn.BatchNorm1d, nn.ReLU, nn.AvgPool1d, QuantAct]


def _block_layers(block: nn.Module) -> _BlockLayers:
    """The seven layers of a block of QuantSincNet.make_block: depthwise conv, QuantAct, pointwise conv, BN, ReLU,
    pool, QuantAct (an nn.Sequential types its items as just nn.Module)."""
    return cast(_BlockLayers, tuple(cast(nn.Sequential, block)))


def _out_act(block: nn.Module) -> QuantAct:
    """The QuantAct that ends a block of QuantSincNet.make_block: block[6], its last layer."""
    return cast(QuantAct, cast(nn.Sequential, block)[6])


class IntegerSincNet(nn.Module):
    """A QuantSincNet's forward pass in integer arithmetic, from the output of its front end on.

        integer = IntegerSincNet(qmodel)   # qmodel: a QuantSincNet after QAT (its quantized layers and ranges)
        logits = integer(x)                # x (B, 1, T) audio -> (B, classes) float logits, on the CPU
        codes = integer.codes(x)           # the integer codes after the front end and after each block
        fake_quantized_codes(qmodel, x)    # the codes qmodel's own activations stand for: the same

    The sinc front end (log compression, float BatchNorm) runs in float up to its 8-bit activations. From there
    on every activation and weight is an integer code (activation_codes; weights as odd integers 2k - (2**b - 1)
    on their symmetric grid, scale step / 2), and each block computes:
        depthwise conv    int64 sums of code x code products
        requantize        to the next QuantAct's 4-bit codes: one fixed-point multiply, a rounding shift, a clamp
        pointwise conv    int64 sums
        BN, ReLU, pool    BN folded into a per-channel fixed-point multiplier and offset, ReLU as max(., 0), the
                          average of two neighbours as their sum (the 1/2 is in the multiplier), then as above
    The classifier averages over time into its 8-bit codes the same way; its accumulator plus an integer bias,
    times one float scale, gives the logits. What is float: the front end and that last scale.
    """

    def __init__(self, qmodel: QuantSincNet) -> None:
        super().__init__()
        self.front = copy.deepcopy(qmodel.front).cpu().eval()
        self.blocks = [self._block(block, self._input_scale(i, qmodel)) for i, block in enumerate(qmodel.blocks)]
        self.classifier = self._classifier(qmodel.classifier, activation_codes(_out_act(qmodel.blocks[-1]))[0])

    @staticmethod
    def _input_scale(i: int, qmodel: QuantSincNet) -> float:
        act = _front_act(qmodel.front) if i == 0 else _out_act(qmodel.blocks[i - 1])
        return activation_codes(act)[0]

    @staticmethod
    def _weight_codes(layer: QuantConv1d | QuantLinear) -> tuple[torch.Tensor, float]:
        """(odd integer codes int64, scale) of a quantized layer's weights: weight = scale * code."""
        codes, bound = weight_codes(layer)
        top = 2 ** layer.bits - 1
        return 2 * codes.to(torch.int64) - top, (level_step(bound, layer.bits) / 2).item()

    def _block(self, block: nn.Module, in_scale: float) -> dict[str, Any]:
        depthwise, act, pointwise, bn, _, pool, out_act = _block_layers(block)
        w1, w1_scale = self._weight_codes(depthwise)
        mid_scale, _, top = activation_codes(act)
        # Into the signed QuantAct after it: the level k = round((value + r) / step), with value = in_scale *
        # w1_scale * sum and step = 2 * mid_scale, is round(sum * m1 / 2**s1 + top / 2).
        m1, s1 = fixed_point(in_scale * w1_scale / (2 * mid_scale))
        offset1 = round(top / 2 * 2 ** s1)
        r = act.clip.clamp_min(1e-8)
        with torch.no_grad():     # the code the fake-quantized model gives an exact 0 (see block_codes)
            zero_code = int(torch.round(act.quantizer(torch.zeros(1, device=r.device), act.bits, -r, r)
                                        / mid_scale).item())
        w2, w2_scale = self._weight_codes(pointwise)
        out_scale, _, out_hi = activation_codes(out_act)
        assert bn.running_mean is not None and bn.running_var is not None   # (BatchNorm1d tracks them by default)
        inv_std = 1 / torch.sqrt(bn.running_var.double() + bn.eps)
        a = bn.weight.double() * inv_std * (mid_scale * w2_scale)           # BN(value) = a * sum + b, per channel
        b = bn.bias.double() - bn.weight.double() * bn.running_mean.double() * inv_std
        m2, s2 = fixed_point(torch.cat([a, b]) / (2 * out_scale))            # one shift for multiplier and offset
        pool_size = pool.kernel_size[0]  # type: ignore[index]  # a 1-tuple (the stubs say int | tuple[int])
        return dict(w1=w1[:, 0], stride=depthwise.stride[0], padding=depthwise.padding[0], m1=m1.item(), s1=s1,
                    offset1=offset1, mid_top=top, zero_code=zero_code, w2=w2[:, :, 0], m2=m2[:len(a)].view(-1, 1),
                    b2=m2[len(a):].view(-1, 1), s2=s2, out_hi=out_hi, pool=pool_size)

    def _classifier(self, classifier: nn.Sequential, in_scale: float) -> dict[str, Any]:
        act, linear = cast(tuple[QuantAct, QuantLinear], tuple(classifier))   # QuantSincNet.make_linear's layers
        scale, _, hi = activation_codes(act)
        w, w_scale = self._weight_codes(linear)
        return dict(act_scale=scale, hi=hi, in_scale=in_scale, w=w,
                    bias=torch.round(linear.bias.double() / (w_scale * scale)).to(torch.int64),
                    logit_scale=w_scale * scale)

    def block_codes(self, i: int, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block i on the int64 codes q (B, C, L) of its input: (depthwise sums, the codes after its first QuantAct,
        its output codes), all int64. A depthwise sum of exactly 0 (a window of zeros, after a ReLU) lies halfway
        between the two middle levels of the signed grid after it, which has no level at 0: it gets the code that
        the fake-quantized model gives an input of 0.0 (float rounding picks one of the two), so that the two
        models stay comparable code for code."""
        p = self.blocks[i]
        x = nn.functional.pad(q, (p["padding"], p["padding"]))
        sums = (x.unfold(2, len(p["w1"][0]), p["stride"]) * p["w1"][None, :, None, :]).sum(-1)   # (B, C, L')
        k = rounding_shift(sums * p["m1"] + p["offset1"], p["s1"]).clamp(0, p["mid_top"])
        mid = torch.where(sums == 0, p["zero_code"], 2 * k - p["mid_top"])         # odd codes of a signed range
        y = (torch.einsum("oc,bcl->bol", p["w2"], mid) * p["m2"] + p["b2"]).clamp_min(0)   # BN, ReLU
        pairs = y[:, :, :y.shape[2] // p["pool"] * p["pool"]].unflatten(2, (-1, p["pool"])).sum(-1)
        return sums, mid, rounding_shift(pairs, p["s2"]).clamp(0, p["out_hi"])

    def codes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[front codes, block 1 codes, ..., block 5 codes]: int64 tensors (B, C, L)."""
        with torch.no_grad():
            front = self.front(x.cpu())
        q = torch.round(front / activation_codes(_front_act(self.front))[0]).to(torch.int64)
        found = [q]
        for i in range(len(self.blocks)):
            q = self.block_codes(i, q)[2]
            found.append(q)
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.codes(x.cpu())[-1]
        c = self.classifier
        m, s = fixed_point(c["in_scale"] / (q.shape[2] * c["act_scale"]))         # the mean over time, rescaled
        pooled = rounding_shift(q.sum(2) * m, s).clamp(0, c["hi"])
        return (pooled @ c["w"].T + c["bias"]).double().mul(c["logit_scale"]).float()


def fake_quantized_codes(qmodel: QuantSincNet, x: torch.Tensor) -> list[torch.Tensor]:
    """[front codes, block 1 codes, ...] that the activations of the fake-quantized `qmodel` stand for on x:
    each QuantAct's output divided by its scale (activation_codes), int64 (B, C, L). IntegerSincNet.codes(x)
    computes the same codes in integer arithmetic, except where a value lies exactly halfway between two levels:
    float rounding error decides those in qmodel (see IntegerSincNet.block_codes)."""
    acts = [_front_act(qmodel.front)] + [_out_act(block) for block in qmodel.blocks]
    with torch.no_grad():
        h = qmodel.front(x)
        outputs = [h]
        for block in qmodel.blocks:
            h = block(h)
            outputs.append(h)
    return [torch.round(out.cpu() / activation_codes(act)[0]).to(torch.int64) for out, act in zip(outputs, acts)]

