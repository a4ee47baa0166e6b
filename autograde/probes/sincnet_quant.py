"""Probes of the sincnet_quant TODOs, STEQuantize and weight_scale, and the inputs they are run on.

The judge (autograde.checks.sincnet_quant) imports the input generators from here, so probe and judge build
the very same tensors from the same seed. Every seed is a valid test: each case has inputs below, inside and
above its range, and the backward inputs keep clear of the range's edges (where either gradient is fine).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lib.models.quant import QuantSincNet, quantized_layers

from . import attempt, away_from_zero, backward, describe, generator, plain, plain_tensor, seeded

if TYPE_CHECKING:     # hints only: nothing more is imported in the sandbox
    from collections.abc import Callable
    from typing import Any

    from lib.models.quant import QuantConv1d, QuantLinear, QuantSincConv1d

STE_BITS = (2, 3, 4, 8)
DENSE_PER_LEVEL = 64          # dense inputs: this many points per level over the range and a quarter beyond it
MODEL_WEIGHTS_LIMIT = 1 << 16  # effective weights of a layer are recorded up to this many values

# One STEQuantize case: (bits, lo, hi, shape of x).
STECase = tuple[int, float, float, tuple[int, ...]]


def ste_cases(seed: int) -> list[STECase]:
    """[(bits, lo, hi, shape), ...]: for each bit width of STE_BITS, four ranges of different kinds on
    tensors of 1, 2, 3 and 1 dimensions: around 0, from exactly 0 (as for activations after ReLU), narrow
    and lopsided, and one that does not hold 0 (all positive or all negative, drawn), where a quantizer
    that widens the range to include 0 shows. lo and hi have 3 decimals (readable in the messages); they
    reach the quantizer as float32 0-d tensors, within the judge's tolerance of 1e-5 * (hi - lo)."""
    g = generator(seed, "ste", "cases")

    def uniform(a: float, b: float) -> float:
        return round(a + (b - a) * float(torch.rand((), generator=g)), 3)

    def size(a: int, b: int) -> int:
        return int(torch.randint(a, b + 1, (), generator=g))

    cases: list[STECase] = []
    for bits in STE_BITS:
        low = uniform(0.2, 1.0)
        one_signed = (low, round(low + uniform(0.5, 2.0), 3))
        if float(torch.rand((), generator=g)) < 0.5:
            one_signed = (-one_signed[1], -one_signed[0])
        ranges = [(-uniform(0.5, 2.0), uniform(0.5, 2.0)), (0.0, uniform(1.0, 4.0)),
                  (-uniform(0.1, 0.5), uniform(0.01, 0.1)), one_signed]
        shapes = [(size(300, 1000),), (size(8, 40), size(8, 40)), (size(2, 5), size(2, 4), size(20, 60)),
                  (size(300, 1000),)]
        cases += [(bits, lo, hi, shape) for (lo, hi), shape in zip(ranges, shapes)]
    return cases


def ste_forward_input(seed: int, index: int, case: STECase) -> torch.Tensor:
    """x of the forward test of case `index`: half inside [lo, hi], a quarter below, a quarter above, and
    x[0] below and x[1] above for sure."""
    _, lo, hi, shape = case
    span = hi - lo
    x = lo + span * (torch.rand(shape, generator=generator(seed, "ste", "forward", index)) * 2 - 0.5)
    flat = x.view(-1)
    flat[0], flat[1] = lo - 0.3 * span, hi + 0.3 * span
    return x


def ste_dense_input(case: STECase) -> torch.Tensor:
    """Points every 1/DENSE_PER_LEVEL of a step over [lo - span/4, hi + span/4]: every level, and every
    position between two levels, is reached."""
    bits, lo, hi, _ = case
    span = hi - lo
    return torch.linspace(lo - 0.25 * span, hi + 0.25 * span, DENSE_PER_LEVEL * 2 ** bits + 1)


def ste_backward_inputs(seed: int, index: int, case: STECase) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, upstream) of the backward test of case `index`: x as in the forward test but kept 1e-3 * span
    clear of lo and hi, and an upstream gradient with |value| >= 0.05 (so a gradient passed on shows)."""
    _, lo, hi, shape = case
    g = generator(seed, "ste", "backward", index)
    span = hi - lo
    x = lo + span * (torch.rand(shape, generator=g) * 2 - 0.5)
    flat = x.view(-1)
    flat[0], flat[1], flat[2] = lo - 0.3 * span, hi + 0.3 * span, (lo + hi) / 2
    margin = 1e-3 * span
    x[(x - lo).abs() < margin] += 2 * margin      # keep clear of the edges, where either answer is fine
    x[(x - hi).abs() < margin] += 2 * margin
    upstream = away_from_zero(torch.randn(shape, generator=g) + 0.5)
    return x, upstream


def _bounds(lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(lo), torch.tensor(hi)


def _forward(STEQuantize: type[torch.autograd.Function], x: torch.Tensor, bits: int, lo: float,
             hi: float) -> dict[str, Any]:
    """describe() of STEQuantize.apply(x, bits, lo, hi) (lo, hi as 0-d tensors), or {"error": ...}."""
    out, error = attempt(lambda: STEQuantize.apply(x, bits, *_bounds(lo, hi)))
    return error or describe(out)


def _backward(STEQuantize: type[torch.autograd.Function], x: torch.Tensor, upstream: torch.Tensor, bits: int,
              lo: float, hi: float) -> dict[str, Any]:
    """{"grad": x's gradient or None} after (STEQuantize.apply(x, ...) * upstream).sum().backward(),
    or {"error": ...}."""
    x = x.clone().requires_grad_(True)

    def run() -> dict[str, torch.Tensor | None]:
        with torch.enable_grad():
            q = STEQuantize.apply(x, bits, *_bounds(lo, hi))
            (q * upstream).sum().backward()
        return {"grad": x.grad}

    result, error = attempt(run)
    return error or result


def _probe_case(STEQuantize: type[torch.autograd.Function], seed: int, index: int, case: STECase) -> dict[str, Any]:
    """One case: forward on x (and x after the call, to see in-place changes), forward on the dense points,
    forward again on the first output (Q(Q(x))), and the backward pass."""
    bits, lo, hi, _ = case
    x = ste_forward_input(seed, index, case)
    entry: dict[str, Any] = {"forward": _forward(STEQuantize, x, bits, lo, hi), "x_after": x,
             "dense": _forward(STEQuantize, ste_dense_input(case), bits, lo, hi)}
    if "tensor" in entry["forward"]:
        entry["again"] = _forward(STEQuantize, entry["forward"]["tensor"].clone(), bits, lo, hi)
    entry["backward"] = _backward(STEQuantize, *ste_backward_inputs(seed, index, case), bits, lo, hi)
    return entry


def distinct_count(values: torch.Tensor, tolerance: float) -> int:
    """How many distinct values a tensor holds, values closer than `tolerance` counted once."""
    v = torch.sort(values.detach().flatten()).values
    if v.numel() == 0:
        return 0
    return int(1 + (v.diff() > tolerance).sum())


def fixed_range_scale(w: torch.Tensor, bits: int, clip_std: float | None = None) -> torch.Tensor:
    """The step of the fixed weight range [-1, 1], whatever the weights: STEQuantize is probed alone, so that its
    grade does not depend on the student's weight_scale (its own cell), and this step gives away no part of that
    answer. Every initial weight of lib's quantized layers lies inside [-1, 1] (bound 1 / sqrt(fan_in))."""
    return torch.tensor(2.0 / (2 ** bits - 1))


def probe_in_quantized_model(quantizer: Callable[..., torch.Tensor], seed: int = 0) -> dict[str, Any]:
    """lib's QuantSincNet([8] * 6) built with `quantizer`, one forward and backward pass on a random batch.

    Returns {"layers": [{"name", "bits", "distinct", "weights" (when small), "grads": {parameter: sum of
    |grad| or None}}, ...]} per quantized layer, or {"error": ...}.
    """
    def run() -> list[dict[str, Any]]:
        with seeded(seed, "quantized sincnet"), torch.enable_grad():
            model = QuantSincNet([8, 8, 8, 8, 8, 8], quantizer=quantizer, weight_scale=fixed_range_scale)
            model(0.1 * torch.randn(2, 1, 16000)).logsumexp(1).sum().backward()
            return [_layer_entry(i, layer) for i, layer in enumerate(quantized_layers(model))]

    layers, error = attempt(run)
    return error or {"layers": layers}


def _layer_entry(i: int, layer: QuantConv1d | QuantLinear | QuantSincConv1d) -> dict[str, Any]:
    """What one quantized layer computes with (its effective weights) and whether gradients reached it."""
    with torch.no_grad():
        weights, error = attempt(lambda: plain_tensor(layer.effective_weight()))
    entry: dict[str, Any] = {"name": f"{type(layer).__name__} #{i} of lib's QuantSincNet ({layer.bits} bits)", "bits": layer.bits,
             "grads": {name: None if p.grad is None else float(p.grad.abs().sum())
                       for name, p in layer.named_parameters(recurse=False)}}
    if error:
        entry["weights_error"] = error["error"]
    else:
        entry["distinct"] = distinct_count(weights, 1e-6 * float(weights.abs().max()))
        if weights.numel() <= MODEL_WEIGHTS_LIMIT:
            entry["weights"] = weights
    return entry


VISIBLE_X = (-2.0, 2.0, 41)     # the visible test: x = torch.linspace(-2, 2, 41), 2 bits on [-1, 1]


def _probe_visible(STEQuantize: type[torch.autograd.Function]) -> dict[str, Any]:
    """The notebook's visible test_ste_quantize: q = STEQuantize.apply(x, 2, -1, 1), then q.sum().backward().
    {"q": describe(q) or error, "grad": x.grad or None, or "backward_error"}."""
    x = torch.linspace(*VISIBLE_X, requires_grad=True)
    q, error = attempt(lambda: STEQuantize.apply(x, 2, torch.tensor(-1.0), torch.tensor(1.0)))
    if error:
        return {"q": error}
    return {"q": describe(q), **backward(lambda: q.sum(), x)}


def probe_ste_quantize(STEQuantize: type[torch.autograd.Function], seed: int) -> dict[str, Any]:
    """Run STEQuantize on the visible test's input, on every case of ste_cases(seed), and in lib's quantized
    SincNet.

    Returns {"is_function": whether STEQuantize is a torch.autograd.Function subclass, "visible": ...,
    "cases": [per case: {"forward", "x_after", "dense", "again", "backward"}], "model": ...}. About 0.3 s.
    """
    with seeded(seed, "probe STEQuantize"):
        is_function, _ = attempt(lambda: isinstance(STEQuantize, type)
                                 and issubclass(STEQuantize, torch.autograd.Function))
        record = {"is_function": is_function is True, "visible": _probe_visible(STEQuantize),
                  "cases": [_probe_case(STEQuantize, seed, i, case) for i, case in enumerate(ste_cases(seed))]}
        apply, error = attempt(lambda: STEQuantize.apply)
        record["model"] = error or probe_in_quantized_model(apply, seed)
    return plain(record)



# ------------------------------------------------------------------------------------------ weight_scale

SCALE_BITS = (1, 2, 3, 4, 8)
SCALE_KINDS = ("negative outlier", "positive outlier, clipped", "shifted mean, clipped",
               "clip above max|w|", "all zero")
SCALE_VISIBLE = "visible"     # the record's entry of the notebook's visible test

# One weight_scale case: (bits, clip_std, shape of w, kind of SCALE_KINDS).
ScaleCase = tuple[int, float | None, tuple[int, ...], str]


def scale_cases(seed: int) -> list[ScaleCase]:
    """[(bits, clip_std, shape, kind), ...]: every kind of SCALE_KINDS at every bit width of SCALE_BITS, on
    tensors of 1 to 4 dimensions (a bias-like vector, a linear weight, depthwise and pointwise conv weights).
    clip_std has 2 decimals; None for "negative outlier", drawn for "all zero" half of the time. The clipped
    kinds have at least 100 weights, so that their outliers make at most a bounded part of sigma and the
    clipping really cuts (see scale_input)."""
    g = generator(seed, "scale", "cases")

    def uniform(a: float, b: float) -> float:
        return round(a + (b - a) * float(torch.rand((), generator=g)), 2)

    def size(a: int, b: int) -> int:
        return int(torch.randint(a, b + 1, (), generator=g))

    cases: list[ScaleCase] = []
    for bits in SCALE_BITS:
        shapes = [(size(50, 400),), (size(10, 30), size(10, 40)), (size(20, 40), 1, size(5, 11)),
                  (size(2, 6), size(2, 8), size(1, 5), size(3, 9)), (size(3, 20), size(3, 20))]
        clips = [None, uniform(1.2, 3.0), uniform(1.2, 2.0), uniform(4.0, 8.0),
                 None if bool(torch.rand((), generator=g) < 0.5) else uniform(1.2, 3.0)]
        cases += [(bits, clip, shape, kind) for clip, shape, kind in zip(clips, shapes, SCALE_KINDS)]
    return cases


def scale_input(seed: int, index: int, case: ScaleCase) -> torch.Tensor:
    """The weights w of case `index`, by kind: "negative outlier" has max|w| at a negative weight, larger
    than the largest positive one (w.max() is not max|w|); "positive outlier, clipped" three positive weights
    8 to 9 standard deviations out, which clip_std * sigma cuts off; "shifted mean, clipped" a mean of 0.5 to
    1.5 standard deviations (the spread around 0 then differs from w.std() and from the spread of |w|) and one
    weight 10 standard deviations out, cut off; "clip above max|w|" uniform weights, whose max|w| is below
    clip_std * sigma; "all zero" zeros."""
    _, _, shape, kind = case
    g = generator(seed, "scale", "input", index)
    scale = 0.02 + float(torch.rand((), generator=g))            # weights of any magnitude, 0.02 to 1
    w = torch.randn(shape, generator=g) * scale
    flat = w.view(-1)
    if kind == "negative outlier":
        flat[int(torch.randint(0, flat.numel(), (), generator=g))] = -(w.abs().max() * 2 + scale)
    elif kind == "positive outlier, clipped":
        flat[:3] = w.abs().max() + scale * (8 + torch.rand(3, generator=g))
    elif kind == "shifted mean, clipped":
        sign = 1 if bool(torch.rand((), generator=g) < 0.5) else -1
        w += sign * scale * (0.5 + torch.rand((), generator=g))
        flat[0] = sign * (w.abs().max() + 10 * scale)
    elif kind == "clip above max|w|":
        w = (torch.rand(shape, generator=g) * 2 - 1) * scale
    elif kind == "all zero":
        w = torch.zeros(shape)
    return w


SCALE_VISIBLE_W = ((0.5, -2.0), (1.0, 0.0))    # the notebook's visible test: this w, and zeros((3, 4))


def scale_visible_calls() -> list[tuple[torch.Tensor, int, float | None]]:
    """[(w, bits, clip_std), ...]: the calls of the notebook's visible test_weight_scale, in order."""
    w = torch.tensor(SCALE_VISIBLE_W)
    return [(w, 2, None), (w, 2, 1.0), (w, 8, 10.0), (torch.zeros(3, 4), 4, None)]


def _scale_output(weight_scale: Callable[..., object], w: torch.Tensor, bits: int,
                  clip_std: float | None) -> dict[str, Any]:
    """describe() of weight_scale(w, bits, clip_std) (a Python number as {"type", "number"}), with w after
    the call (to see in-place changes), or {"error": ...}."""
    given = w.clone()
    out, error = attempt(lambda: weight_scale(given, bits, clip_std))
    if error:
        return error
    entry = describe(out)
    if type(out) in (int, float):
        entry["number"] = float(out)
    entry["w_after"] = given
    return entry


def probe_weight_scale(weight_scale: Callable[..., object], seed: int) -> dict[str, Any]:
    """Run the student's weight_scale on the visible test's calls and on every case of scale_cases(seed).

    Returns {"visible": [entry per call], "cases": [entry per case]}, each entry _scale_output's. Milliseconds.
    """
    with seeded(seed, "probe weight_scale"):
        record = {SCALE_VISIBLE: [_scale_output(weight_scale, *call) for call in scale_visible_calls()],
                  "cases": [_scale_output(weight_scale, scale_input(seed, i, case), case[0], case[1])
                            for i, case in enumerate(scale_cases(seed))]}
    return plain(record)
