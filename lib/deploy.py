"""What compression buys on a real device: CPU latency, and quantized weights in real integer storage.

    cpu_latency({"unpruned": vgg, "pruned 50%": small}, (3, 32, 32))    {name: {batch size: seconds}}
    save_packed(qmodel, "model.packed.pt")                            bytes on disk, quantized weights as integers
    load_packed("model.packed.pt", quantizer)                         the model back, its weights dequantized

Counting parameters and FLOPs predicts the gains; these functions measure them. Fake quantization (QAT)
computes with float weights that happen to take 2**bits values; `save_packed` stores each of those weights as
its b-bit level number (8 // b of them per byte) plus one float per layer, which is what an integer runtime
ships to the device. `load_packed` turns the level numbers back into float weights: the model it returns runs
float convolutions, so it measures the storage, not integer arithmetic.
"""
import copy
import logging
import os

import torch
import torch.nn as nn

# torch.utils.benchmark imports the C++ extension builder, which warns "No CUDA runtime is found" on machines
# that set CUDA_HOME without a GPU; the timer builds nothing, so that warning is noise here.
_extension_log = logging.getLogger("torch.utils.cpp_extension")
_level = _extension_log.level
_extension_log.setLevel(logging.ERROR)
import torch.utils.benchmark as benchmark  # noqa: E402
_extension_log.setLevel(_level)

from .models.quant import QuantConv1d, QuantLinear, QuantSincNet


def cpu_latency(models, input_shape, batch_sizes=(1, 64), threads=1, min_run_time=0.2):
    """Median CPU time of one forward pass of each model, measured with torch.utils.benchmark.

    models        {name: nn.Module}; each is copied to the CPU in eval mode (the originals are untouched)
    input_shape   one input without the batch dimension, e.g. (3, 32, 32)
    batch_sizes   the batch sizes to time
    threads       torch threads during the timing (fixed, so that runs and machines compare)
    min_run_time  seconds of timing per model and batch size; the median of those runs is reported
    Returns {name: {batch_size: seconds per forward pass}}.
    """
    times = {}
    for name, model in models.items():
        model = copy.deepcopy(model).cpu().eval()
        times[name] = {}
        for batch_size in batch_sizes:
            timer = benchmark.Timer(stmt="with torch.no_grad(): model(x)", num_threads=threads,
                                    globals={"torch": torch, "model": model,
                                             "x": torch.randn(batch_size, *input_shape)})
            times[name][batch_size] = timer.blocked_autorange(min_run_time=min_run_time).median
    return times


def _check_bits(bits):
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"bits must be 1, 2, 4 or 8 (a whole number of codes per byte), got {bits}")


def pack_codes(codes, bits):
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


def unpack_codes(packed, bits, shape):
    """The inverse of pack_codes: a uint8 tensor of `shape` holding the codes (values in [0, 2**bits))."""
    _check_bits(bits)
    shifts = torch.arange(0, 8, bits)
    codes = (packed.long().unsqueeze(1) >> shifts) & (2 ** bits - 1)    # (bytes, 8 // bits)
    return codes.flatten()[:torch.Size(shape).numel()].view(shape).to(torch.uint8)


def level_step(bound, bits):
    """The spacing of the 2**bits levels on [-bound, bound]: the quantizer's (hi - lo) / (2**bits - 1)."""
    return 2 * bound / (2 ** bits - 1)


def weight_codes(layer):
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


def dequantize(codes, bits, bound):
    """The float32 weights, shaped like codes, that `codes` stand for on [-bound, bound]; see weight_codes."""
    return codes.float() * level_step(bound, bits) - bound    # the quantizer's k * step + lo: bit for bit its values


def tensor_bytes(state):
    """Bytes of the tensors in `state` (a state dict, or any dict/list nesting of tensors), without file overhead."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    values = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else []
    return sum(tensor_bytes(value) for value in values)


def _packed_layers(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, (QuantConv1d, QuantLinear))}


def save_packed(qmodel, path):
    """Saves a QuantSincNet with its quantized conv and linear weights as packed integers.

    Each such weight is stored as pack_codes(weight_codes(layer)) (2-bit weights four to a byte, 8-bit one)
    plus its float bound; everything else (BN, biases, sinc band edges, activation ranges) stays float32.
    Returns {"file": bytes of the file on disk, "tensors": bytes of all the tensors in it (tensor_bytes),
             "weights": bytes of the packed weights, "float_weights": bytes the same weights take as float32}.
    """
    packed = {}
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


def _plain_copy(layer, weight):
    """An nn.Conv1d / nn.Linear with layer's shape and bias that computes with the fixed `weight`."""
    if isinstance(layer, QuantConv1d):
        plain = nn.Conv1d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, layer.groups, bias=layer.bias is not None)
    else:
        plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if layer.bias is not None:
            plain.bias.copy_(layer.bias)
    return plain


def load_packed(path, quantizer, weight_scale):
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
