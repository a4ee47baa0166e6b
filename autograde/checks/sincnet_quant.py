"""Hidden checks of the sincnet_quant assignment (keyword spotting, channel pruning, quantization-aware training).

Each function raises AssertionError with a message meant for the student, or returns quietly; a condition that
the notebook's own (visible) test asserts raises its subclass VisibleCheckFailed (autograde.checks.common).

STEQuantize is judged in two steps, so that the verdict never runs in the student's process: a probe
(autograde.probes.sincnet_quant) runs the student's class on inputs drawn from a seed and records what came
out as plain data; judge_ste_quantize regenerates the inputs from the seed and decides. check_ste_quantize
does both in one process (the plain nbgrader path of the notebook's hidden test).

The artifact checks take the folder of the submitted artifacts and never trust printed numbers: checkpoints
are loaded with lib.checkpoint (weights_only=True) and evaluated on the test split, and each history is
cross-checked against its checkpoint on the validation split.

weight_scale is judged the same way (probes.probe_weight_scale, judge_weight_scale, check_weight_scale).

The trained models are rebuilt here with the *reference* quantizer and weight range: a wrong STEQuantize or
weight_scale loses the points of its own grade cell, and the quantized model is judged by what was trained, once.

Artifacts (lib.artifacts names them: SINCNET_FLOAT, SINCNET_PRUNED, SINCNET_QUANT):
    sincnet_float.pt/.json    the float SincNet            (hyperparameters: profile "sincnet")
    sincnet_pruned.pt/.json   pruned by pruning_rate, fine-tuned  (profile "sincnet_quant", finetune)
    sincnet_quant.pt/.json    the pruned model after QAT   (profile "sincnet_quant", qat)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
import torch.nn as nn

from autograde.checks.common import ACCURACY_TOLERANCE  # noqa: F401 (re-exported: the tests tamper by it)
from autograde.checks.common import (as_tensor, best_accuracy, checked_test_accuracy, entries, failed_call, field,
                                     judge_in_order, load_run, loaded_as_submitted, probe_record, raise_if_failed,
                                     record_at, tensor_field, visible)
from autograde.probes import sincnet_quant as probes
from autograde.reference.sincnet_quant import STEQuantize as ReferenceSTE
from autograde.reference.sincnet_quant import weight_scale as reference_weight_scale
from autograde.reference.slimming import build_cfg_mask
from lib import profile
from lib.artifacts import FOLDER, SINCNET_FLOAT, SINCNET_PRUNED, SINCNET_QUANT, checkpoint_file, history_path
from lib.data import speech
from lib.models import SincNet
from lib.models.quant import QuantSincNet, quantized_layers
from lib.train import History

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from lib.checkpoint import ModelT

# One case of probes.ste_cases: (bits, lo, hi, shape of x).
STECase: TypeAlias = tuple[int, float, float, tuple[int, ...]]
# check(condition, message) in a weight_scale judgement: visible (VisibleCheckFailed) or _hidden (AssertionError).
Check: TypeAlias = Callable[[bool, str], None]

FLOAT, PRUNED, QUANT = SINCNET_FLOAT, SINCNET_PRUNED, SINCNET_QUANT      # the notebook's three runs
# The quantized model is rebuilt with the reference quantizer and weight range: the student's own are judged in
# their cells (test_ste_quantize, test_weight_scale).
REFERENCE_QUANTIZATION = dict(quantizer=ReferenceSTE.apply, weight_scale=reference_weight_scale)


def settings() -> dict[str, Any]:
    """The "sincnet_quant" section of the active profile."""
    return profile.config("sincnet_quant")


def float_hp() -> dict[str, Any]:
    """What the notebook trains the float model with (and fit_or_load records in its history)."""
    return profile.config("sincnet")


def finetune_hp() -> dict[str, Any]:
    """Fine-tuning of the pruned model; the pruning it follows is recorded with it."""
    config = settings()
    return dict(config["finetune"], pruning_rate=config["pruning_rate"], min_channels=config["min_channels"])


def qat_hp() -> dict[str, Any]:
    return settings()["qat"]


# ------------------------------------------------------------------------------------------- STEQuantize

STE = "STEQuantize"     # names the class in the messages about an unreadable record
NOT_IMPLEMENTED = "STEQuantize is not implemented yet (forward or backward raises NotImplementedError)"


def check_ste_quantize(STEQuantize: type[torch.autograd.Function], seed: int = 0) -> None:
    """Forward: a uniform 2**bits-level grid on [lo, hi] with clipping; backward: straight through inside, 0 outside.
    Then in lib's quantized SincNet: at most 2**bits weight values per layer, gradients reach the latent weights."""
    judge_ste_quantize(probes.probe_ste_quantize(STEQuantize, seed), seed)


def judge_ste_quantize(record: object, seed: int) -> None:
    """Decide STEQuantize from the record of probes.probe_ste_quantize(STEQuantize, seed): the notebook's
    visible test first (VisibleCheckFailed), then every case of probes.ste_cases(seed) and lib's quantized
    SincNet. Raises AssertionError with a message for the student, or returns None."""
    record = probe_record(record, STE)
    judge_in_order(lambda: _judge_visible_ste(field(record, "visible", STE, dict)),
                   lambda: _judge_hidden_ste(record, seed))


def _judge_hidden_ste(record: dict[str, Any], seed: int) -> None:
    assert field(record, "is_function", STE) is True, (
        "STEQuantize must be a class deriving from torch.autograd.Function")
    cases = probes.ste_cases(seed)
    for index, (case, entry) in enumerate(zip(cases, entries(record, "cases", STE, len(cases)))):
        _judge_forward(entry, seed, index, case)
        _judge_backward(field(entry, "backward", STE), seed, index, case)
    judge_in_quantized_model(field(record, "model", STE))


def _raise_if_failed(entry: object, call: str) -> None:
    """AssertionError for an exception the probe recorded; NotImplementedError (the blank TODO) has its own."""
    error = failed_call(entry)
    if error is not None and error.startswith("NotImplementedError"):
        raise AssertionError(NOT_IMPLEMENTED)
    raise_if_failed(entry, call)


def _output(entry: dict[str, Any], call: str, shape: Sequence[int]) -> torch.Tensor:
    """The tensor STEQuantize returned (as float32), checked to have the input's `shape`."""
    _raise_if_failed(entry, call)
    found = field(entry, "type", STE, str)
    assert "tensor" in entry, (f"{call}: returned {found}, expected a tensor of the input's shape {tuple(shape)}")
    q = as_tensor(entry["tensor"], STE)
    assert tuple(q.shape) == tuple(shape), (
        f"{call}: returned {found} of shape {tuple(q.shape)}, expected a tensor of the input's shape {tuple(shape)}")
    return q.float()


def _distinct(values: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Sorted distinct values of a tensor, values closer than `tolerance` counted once."""
    v = torch.sort(values.detach().flatten()).values
    if v.numel() == 0:
        return v
    keep = torch.cat([torch.tensor([True]), v.diff() > tolerance])
    return v[keep]


def _judge_forward(entry: dict[str, Any], seed: int, index: int, case: STECase) -> None:
    """One case's forward pass: outputs within [lo, hi], rounded to the nearest of 2**bits levels on the
    uniform grid from lo to hi, inputs outside clipped to lo or hi, levels mapped to themselves."""
    bits, lo, hi, shape = case
    levels, step, span = 2 ** bits, (hi - lo) / (2 ** bits - 1), hi - lo
    eps = 1e-5 * span
    call = f"STEQuantize.apply(x, bits={bits}, lo={lo}, hi={hi}) with x of shape {tuple(shape)}"
    x = probes.ste_forward_input(seed, index, case)
    q = _output(field(entry, "forward", STE), call, shape)
    x_after = tensor_field(entry, "x_after", STE, shape, torch.float32)
    assert torch.equal(x_after, x), f"{call}: changed its input x in place; return a new tensor"
    dense_x = probes.ste_dense_input(case)
    dense = _output(field(entry, "dense", STE), f"STEQuantize.apply(x, bits={bits}, lo={lo}, hi={hi}) with x "
                    f"covering [lo, hi] and beyond", dense_x.shape)

    _judge_range_kept(dense, dense_x, bits, lo, hi, eps)
    for inputs, outputs in ((x, q), (dense_x, dense)):
        assert torch.isfinite(outputs).all(), f"{call}: the output has NaN or inf values"
        assert outputs.min() >= lo - eps and outputs.max() <= hi + eps, (
            f"{call}: outputs range over [{outputs.min().item():.4f}, {outputs.max().item():.4f}], outside "
            "[lo, hi]: clip x to [lo, hi] before rounding (values below lo become lo, above hi become hi)")
    # Rounding before the number of levels: floor loses the top level as well, but its real bug is floor.
    for inputs, outputs in ((x, q), (dense_x, dense)):
        inside = (inputs >= lo) & (inputs <= hi)
        error = (outputs[inside] - inputs[inside]).abs().max().item()
        assert error <= step / 2 + eps, (
            f"{call}: an input inside [lo, hi] moved by {error:.4g}, more than half a step ({step / 2:.4g}); "
            "round to the nearest level (torch.round), do not truncate (floor)")

    found = _distinct(dense, step / 4)
    if found.numel() == levels + 1:
        raise AssertionError(f"STEQuantize with bits={bits} gives {levels + 1} levels on [lo, hi] instead of "
                             f"2**bits = {levels}: the step is (hi - lo) / (2**bits - 1), so that lo and hi are "
                             "both levels")
    assert found.numel() == levels, (
        f"STEQuantize with bits={bits} on [lo={lo}, hi={hi}] gives {found.numel()} distinct output levels "
        f"over inputs covering the range; expected 2**bits = {levels}")
    index_ = (q - lo) / step
    off_grid = (index_ - torch.round(index_)).abs().max().item()
    assert off_grid < 1e-3, (
        f"{call}: outputs are not on the grid lo + k * step, step = (hi - lo) / (2**bits - 1) = {step:.6g} "
        f"(off by up to {off_grid * step:.3g})")
    below, above = x < lo, x > hi
    assert torch.allclose(q[below], torch.full_like(q[below], lo), atol=eps) and \
        torch.allclose(q[above], torch.full_like(q[above], hi), atol=eps), (
        f"{call}: inputs below lo must give exactly lo and inputs above hi exactly hi (clipping)")
    again = _output(field(entry, "again", STE), f"{call}, applied to its own output,", shape)
    assert torch.allclose(again, q, atol=eps), (
        f"{call}: quantizing an already quantized tensor changed it (Q(Q(x)) != Q(x)) by up to "
        f"{(again - q).abs().max().item():.3g}; levels must map to themselves")


def _judge_range_kept(dense: torch.Tensor, dense_x: torch.Tensor, bits: int, lo: float, hi: float,
                      eps: float) -> None:
    """AssertionError naming the mistake when, on a range without 0, the outputs are those of [lo, hi]
    widened to include 0."""
    if lo <= 0 <= hi:
        return
    wide = ReferenceSTE.apply(dense_x, bits, torch.tensor(min(lo, 0.0)), torch.tensor(max(hi, 0.0)))
    assert not torch.allclose(dense, wide, atol=eps), (
        f"STEQuantize with bits={bits} on [lo={lo}, hi={hi}] quantizes on [{min(lo, 0.0)}, {max(hi, 0.0)}]: "
        "the range is [lo, hi] as given, also when it does not hold 0 (do not widen it to include 0)")


def _judge_backward(entry: object, seed: int, index: int, case: STECase) -> None:
    """One case's backward pass: grad_output straight through inside [lo, hi], 0 outside."""
    bits, lo, hi, shape = case
    call = f"STEQuantize backward with bits={bits}, lo={lo}, hi={hi}, x of shape {tuple(shape)}"
    error = failed_call(entry)
    if error is not None:
        if error.startswith("NotImplementedError"):
            raise AssertionError(NOT_IMPLEMENTED)
        raise AssertionError(f"{call}: backward failed ({error}). backward(ctx, grad_output) returns one "
                             "gradient per input of forward: (grad_x, None, None, None)")
    grad = field(entry, "grad", STE)
    assert grad is not None, f"{call}: no gradient reached x (forward must not detach x or use .data)"
    grad = as_tensor(grad, STE, dtype=torch.float32)
    assert tuple(grad.shape) == tuple(shape), f"{call}: gradient of shape {tuple(grad.shape)}, expected {tuple(shape)}"
    x, upstream = probes.ste_backward_inputs(seed, index, case)
    inside = (x >= lo) & (x <= hi)
    if not torch.allclose(grad[inside], upstream[inside], atol=1e-6):
        if torch.allclose(grad[inside], torch.zeros_like(grad[inside])):
            raise AssertionError(f"{call}: the gradient is 0 inside [lo, hi], so no gradient reaches the "
                                 "weights; the straight-through estimator passes grad_output through unchanged "
                                 "there (round() would give 0 almost everywhere: that is what STE replaces)")
        raise AssertionError(f"{call}: inside [lo, hi] the gradient must be grad_output unchanged "
                             "(straight through)")
    outside = ~inside
    if not torch.allclose(grad[outside], torch.zeros_like(grad[outside]), atol=1e-7):
        if torch.allclose(grad[outside], upstream[outside], atol=1e-6):
            raise AssertionError(f"{call}: the gradient passes straight through outside [lo, hi] too; there the "
                                 "output is clipped (constant), so the gradient must be 0")
        raise AssertionError(f"{call}: outside [lo, hi] the gradient must be 0 (the clipped output is flat)")


def _expected_layers() -> list[tuple[int, list[str]]]:
    """[(bits, parameter names), ...] of the quantized layers of lib's QuantSincNet([8] * 6), in order."""
    model = QuantSincNet([8, 8, 8, 8, 8, 8], quantizer=ReferenceSTE.apply, weight_scale=probes.fixed_range_scale)
    return [(layer.bits, sorted(name for name, _ in layer.named_parameters(recurse=False)))
            for layer in quantized_layers(model)]


def judge_in_quantized_model(entry: object) -> None:
    """The record of probes.probe_in_quantized_model: each layer computes with at most 2**bits weight
    values, and one training step's gradient reaches every latent weight."""
    error = failed_call(entry)
    assert error is None, f"lib's QuantSincNet with your STEQuantize failed in a forward and backward pass: {error}"
    expected = _expected_layers()
    layers = entries(entry, "layers", STE, len(expected))
    for layer, (bits, names) in zip(layers, expected):
        name = field(layer, "name", STE, str)
        assert field(layer, "bits", STE, int) == bits, f"{STE}: the grader's record of {name} is wrong"
        if "weights" in layer:
            weights = as_tensor(layer["weights"], STE, dtype=torch.float32)
            count = probes.distinct_count(weights, 1e-6 * weights.abs().max().item())
        elif "distinct" in layer:
            count = field(layer, "distinct", STE, int)
        else:
            raise AssertionError(f"with your STEQuantize, {name} could not compute its weights: "
                                 f"{layer.get('weights_error')}")
        assert count <= 2 ** bits, (
            f"with your STEQuantize, {name} computes with {count} distinct weight values, more than 2**{bits}")
        grads = field(layer, "grads", STE, dict)
        assert set(grads) == set(names), f"{STE}: the grader's record of {name} is wrong"
        for pname in names:
            total = grads[pname]
            assert isinstance(total, float) and total > 0, (
                f"with your STEQuantize, no gradient reaches the latent {pname} of {name}: quantize in forward "
                "without detaching, and pass the gradient straight through in backward")


def _judge_visible_ste(entry: dict[str, Any]) -> None:
    """The asserts of the notebook's test_ste_quantize: 2 bits on [-1, 1] of x = linspace(-2, 2, 41)."""
    q_entry = field(entry, "q", STE, dict)
    error = failed_call(q_entry)
    visible(error is None, f"STEQuantize.apply(x, 2, -1, 1) of the visible test raised {error}")
    visible("tensor" in q_entry, f"STEQuantize.apply(x, 2, -1, 1) returned {field(q_entry, 'type', STE, str)}, "
                                 "not a tensor")
    x = torch.linspace(*probes.VISIBLE_X)
    q = as_tensor(q_entry["tensor"], STE, dtype=torch.float32)
    visible(q.shape == x.shape, f"STEQuantize.apply(x, 2, -1, 1) returned shape {tuple(q.shape)}, expected "
                                f"{tuple(x.shape)}")
    levels = torch.unique(q)
    visible(len(levels) == 4 and torch.allclose(levels, torch.tensor([-1, -1 / 3, 1 / 3, 1], dtype=levels.dtype)),
            f"2 bits on [-1, 1] give the four levels -1, -1/3, 1/3, 1; got {levels.tolist()}")
    one = torch.tensor(1.0, dtype=q.dtype)
    visible(torch.allclose(q[x > 1], one) and torch.allclose(q[x < -1], -one),
            "inputs above 1 must give 1 and inputs below -1 must give -1 (clipping)")
    visible("backward_error" not in entry,
            f"q.sum().backward() of the visible test raised {entry.get('backward_error')}")
    grad = field(entry, "grad", STE)
    visible(grad is not None, "no gradient reached x in the visible test")
    grad = as_tensor(grad, STE, shape=x.shape, dtype=torch.float32)
    visible(grad[20] == 1 and grad[0] == 0 and grad[40] == 0,
            f"the gradient must be 1 inside [-1, 1] and 0 outside; got {grad[20].item():g} at x = 0, "
            f"{grad[0].item():g} at x = -2 and {grad[40].item():g} at x = 2")


# ----------------------------------------------------------------------------------------- trained models

def _load_run(artifacts: str | Path, name: str, model_class: type[ModelT],
              **kwargs: Any) -> tuple[ModelT, dict[str, Any], History]:
    """(model with the checkpoint's weights in eval mode, meta, History) of artifacts/<name>.pt and .json."""
    model, meta, history = load_run(Path(artifacts) / checkpoint_file(name), model_class, **kwargs)
    model.eval()
    return model, meta, history


def _check_history(history: History, meta: dict[str, Any], path: Path, hp: dict[str, Any],
                   what: str) -> dict[str, Any]:
    """The history is a complete run with `hp`, and the checkpoint holds its best epoch: that record."""
    json_path = history_path(path)
    assert history.config == History(hp).config, (
        f"{json_path} was trained with {history.config}, but {what} is trained with {History(hp).config} "
        f"(profile {profile.name()}); re-run the training cell and submit {FOLDER}/ with the notebook")
    assert len(history) == hp["epochs"], (
        f"{json_path} has {len(history)} epochs, the profile trains {hp['epochs']}: re-run the training cell "
        f"to the end and submit {FOLDER}/ with the notebook")
    return record_at(history, meta, path)


def _test_accuracy(model: nn.Module, record: dict[str, Any], path: Path, loaders: dict[str, DataLoader]) -> float:
    """Test accuracy of `model`, after checking its validation accuracy against its history's record."""
    return checked_test_accuracy(model, loaders, record, path)


def _submitted(artifacts: str | Path, name: str, hp: dict[str, Any],
               cfg: list[int] | None = None) -> tuple[History, int, list[int]] | None:
    """(History, parameter count, cfg) of the run artifacts/<name> when the notebook's fit_or_load loads it
    while grading (hp and cfg as the notebook asks; cfg None: the checkpoint's), else None: the notebook then
    trained a short fallback run and its visible test saw that run."""
    path = Path(artifacts) / checkpoint_file(name)
    if not loaded_as_submitted(path, hp, cfg):
        return None
    model_class = QuantSincNet if name == QUANT else SincNet
    kwargs = REFERENCE_QUANTIZATION if name == QUANT else {}
    model, _, history = load_run(path, model_class, **kwargs)
    return history, sum(p.numel() for p in model.parameters()), model.cfg


def _assert_accuracy(accuracy: float, key: str, path: Path) -> None:
    need = settings()["thresholds"][key]
    assert accuracy >= need, (
        f"{path} reaches {accuracy:.2f}% test accuracy; at least {need}% is expected (profile {profile.name()}, "
        f"thresholds[{key!r}])")


def check_float_model(artifacts: str | Path = FOLDER, loaders: dict[str, DataLoader] | None = None) -> None:
    """sincnet_float.pt: the profile's SincNet, trained with the profile's hyperparameters to its threshold."""
    hp = float_hp()
    submitted = _submitted(artifacts, FLOAT, hp, SincNet(width=hp["width"]).cfg)
    if submitted is not None:   # the notebook's own test_float
        history = submitted[0]
        visible(len(history) == hp["epochs"], "train the float model for all the profile's epochs")
        accuracy = best_accuracy(history)
        visible(accuracy is None or accuracy > 50, "the float model should be far above chance (10%)")
    loaders = loaders or speech.loaders()
    path = Path(artifacts) / checkpoint_file(FLOAT)
    model, meta, history = _load_run(artifacts, FLOAT, SincNet)
    expected_cfg = SincNet(width=hp["width"]).cfg
    assert model.cfg == expected_cfg, (
        f"{path} has cfg {model.cfg}; the float model of profile {profile.name()} is SincNet(width="
        f"{hp['width']}), cfg {expected_cfg}")
    record = _check_history(history, meta, path, hp, "the float model")
    _assert_accuracy(_test_accuracy(model, record, path, loaders), "float", path)


def _float_model(artifacts: str | Path) -> SincNet:
    return _load_run(artifacts, FLOAT, SincNet)[0]


def _visible_pruned(artifacts: str | Path) -> None:
    """The notebook's own test_pruned: fewer parameters than the float model, every fine-tuning epoch run."""
    hp = float_hp()
    float_run = _submitted(artifacts, FLOAT, hp, SincNet(width=hp["width"]).cfg)
    pruned_run = _submitted(artifacts, PRUNED, finetune_hp())
    if float_run is None or pruned_run is None:
        return
    visible(pruned_run[1] < float_run[1], "the pruned model should have fewer parameters")
    visible(len(pruned_run[0]) == finetune_hp()["epochs"], "fine-tune for all the profile's epochs")


def check_pruned_model(artifacts: str | Path = FOLDER, loaders: dict[str, DataLoader] | None = None) -> None:
    """sincnet_pruned.pt: the reference cfg of the student's float model pruned by pruning_rate, fine-tuned."""
    _visible_pruned(artifacts)
    loaders = loaders or speech.loaders()
    config = settings()
    expected_cfg, _ = build_cfg_mask(_float_model(artifacts), config["pruning_rate"], config["min_channels"])
    path = Path(artifacts) / checkpoint_file(PRUNED)
    model, meta, history = _load_run(artifacts, PRUNED, SincNet)
    assert model.cfg == expected_cfg, (
        f"{path} has cfg {model.cfg}, but pruning {checkpoint_file(FLOAT)} with pruning_rate={config['pruning_rate']} "
        f"and min_channels={config['min_channels']} (one global threshold on |gamma|) gives {expected_cfg}; "
        "check build_cfg_mask and re-run the pruning cells")
    record = _check_history(history, meta, path, finetune_hp(), "the pruned model")
    _assert_accuracy(_test_accuracy(model, record, path, loaders), "pruned", path)


def _changed_beyond_decay(before: torch.Tensor, after: torch.Tensor) -> float:
    """Relative size of the part of `after` that is not a multiple of `before` (weight decay only rescales)."""
    before, after = before.flatten().double(), after.flatten().double()
    scale = (after @ before) / (before @ before).clamp_min(1e-30)
    return ((after - scale * before).norm() / after.norm().clamp_min(1e-30)).item()


def _visible_quantized(artifacts: str | Path) -> None:
    """The notebook's own test_qat: QAT of the pruned architecture, every epoch run, far above chance."""
    pruned_run = _submitted(artifacts, PRUNED, finetune_hp())
    if pruned_run is None:
        return
    quant_run = _submitted(artifacts, QUANT, qat_hp(), pruned_run[2])
    if quant_run is None:
        return
    history, _, cfg = quant_run
    visible(cfg == pruned_run[2], "quantize the pruned model")
    visible(len(history) == qat_hp()["epochs"], "run QAT for all the profile's epochs")
    accuracy = best_accuracy(history)
    visible(accuracy is None or accuracy > 30, "QAT should be far above chance (10%)")


def check_quantized_model(artifacts: str | Path = FOLDER, loaders: dict[str, DataLoader] | None = None) -> None:
    """sincnet_quant.pt: QAT of the pruned model. Latent full-precision weights kept in the parameters (not
    overwritten with quantized values) and changed by training, and the profile's accuracy (computed with the
    reference quantizer). The student's quantizer itself is judged by check_ste_quantize, in its own cell."""
    _visible_quantized(artifacts)
    loaders = loaders or speech.loaders()
    path = Path(artifacts) / checkpoint_file(QUANT)
    pruned = _load_run(artifacts, PRUNED, SincNet)[0]
    model, meta, history = _load_run(artifacts, QUANT, QuantSincNet, **REFERENCE_QUANTIZATION)
    assert model.cfg == pruned.cfg, (
        f"{path} has cfg {model.cfg}, but the pruned model {checkpoint_file(PRUNED)} has {pruned.cfg}: "
        "quantize the pruned model (quantize_sincnet(pruned, STEQuantize.apply))")
    record = _check_history(history, meta, path, qat_hp(), "the quantized model")

    start = [m for m in pruned.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    trained = [m for m in quantized_layers(model) if hasattr(m, "weight")]
    assert len(start) == len(trained), f"{path}: {len(trained)} quantized conv/linear layers, expected {len(start)}"
    for i, (old, layer) in enumerate(zip(start, trained)):
        name = f"{type(layer).__name__} #{i} ({layer.bits} bits)"
        latent = layer.weight.detach()
        if latent.numel() > 4 * 2 ** layer.bits:
            assert torch.unique(latent).numel() > 2 ** layer.bits, (
                f"{path}: the latent weights of {name} take only {torch.unique(latent).numel()} values: they "
                "were overwritten with quantized ones. Keep the full-precision weights in the parameters "
                "(quantize in forward, never write into .data)")
        change = _changed_beyond_decay(old.weight.detach(), latent)
        assert change > 1e-3, (
            f"{path}: the latent weights of {name} are the pruned model's (up to weight decay's shrinking): no "
            "gradient reached them during QAT. STEQuantize's backward must pass the gradient straight through")
    _assert_accuracy(_test_accuracy(model, record, path, loaders), "quantized", path)


# ------------------------------------------------------------------------------------------- weight_scale

SCALE = "weight_scale"


def check_weight_scale(weight_scale: Callable[[torch.Tensor, int, float | None], torch.Tensor],
                       seed: int = 0) -> None:
    """The step of the symmetric b-bit range [-r, r], r = max|w| or min(max|w|, clip_std * sqrt(mean(w**2))),
    on the visible test's calls and on weights of both signs, with outliers, all zero, of several shapes and
    bit widths (probes.scale_cases)."""
    judge_weight_scale(probes.probe_weight_scale(weight_scale, seed), seed)


def judge_weight_scale(record: object, seed: int) -> None:
    """Decide weight_scale from the record of probes.probe_weight_scale(weight_scale, seed): the notebook's
    visible test first (VisibleCheckFailed), then every case of probes.scale_cases(seed)."""
    record = probe_record(record, SCALE)
    calls = probes.scale_visible_calls()
    visible_entries = entries(record, probes.SCALE_VISIBLE, SCALE, len(calls))
    cases = probes.scale_cases(seed)
    case_entries = entries(record, "cases", SCALE, len(cases))

    def visible_part() -> None:
        for entry, (w, bits, clip_std) in zip(visible_entries, calls):
            _judge_scale(entry, w, bits, clip_std, f"weight_scale(w, {bits}, clip_std={clip_std}) of the visible "
                         f"test, w = {w.tolist()}", visible)

    def hidden_part() -> None:
        for index, (entry, case) in enumerate(zip(case_entries, cases)):
            bits, clip_std, shape, kind = case
            _judge_scale(entry, probes.scale_input(seed, index, case), bits, clip_std,
                         f"weight_scale(w, {bits}, clip_std={clip_std}) with w of shape {tuple(shape)} ({kind})",
                         _hidden)

    judge_in_order(visible_part, hidden_part)


def _hidden(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _scale_value(entry: dict[str, Any], call: str, check: Check) -> float:
    """The step weight_scale returned (a float), checked to be a 0-d tensor or a number; `check(condition,
    message)` raises the failure (visible or hidden). None after a failed check cannot happen: check raises."""
    error = failed_call(entry)
    check(error is None or not error.startswith("NotImplementedError"),
          "weight_scale is not implemented yet (it raises NotImplementedError)")
    check(error is None, f"{call} raised {error}")
    found = field(entry, "type", SCALE, str)
    if "number" in entry:
        return float(field(entry, "number", SCALE, float))
    check("tensor" in entry, f"{call}: returned {found}, expected a 0-d tensor (the step)")
    value = as_tensor(entry["tensor"], SCALE, dtype=torch.float64)
    check(value.numel() == 1, f"{call}: returned a tensor of shape {tuple(value.shape)}, expected a 0-d tensor")
    return float(value.reshape(()))


def _judge_scale(entry: dict[str, Any], w: torch.Tensor, bits: int, clip_std: float | None, call: str,
                 check: Check) -> None:
    """One call: the step equals the reference's (relative tolerance 1e-5); for all-zero weights any step in
    (0, 1e-6] is accepted (the weights quantize to about 0 whatever it is); w is left unchanged."""
    step = _scale_value(entry, call, check)
    w_after = tensor_field(entry, "w_after", SCALE, tuple(w.shape), torch.float32)
    _hidden(torch.equal(w_after, w), f"{call}: changed the weights w in place; compute the step without writing to w")
    check(math.isfinite(step), f"{call}: returned {step} (NaN or inf)" + (
        "; at bits = 1 the two levels -r and r are one step of 2r apart" if bits == 1 else ""))
    if not bool(w.any()):
        check(0 < step <= 1e-6, f"{call}: returned {step:.3g} for all-zero weights; max|w| = 0, so use a tiny "
              "floor r = 1e-8 for the range: the step must be positive (the quantizer divides by it) and tiny")
        return
    expected = float(reference_weight_scale(w, bits, clip_std))
    check(abs(step - expected) <= 1e-5 * expected,
          f"{call}: returned {step:.6g}, expected {expected:.6g}. {_scale_hint(step, w, bits, clip_std)}")


def _scale_hint(step: float, w: torch.Tensor, bits: int, clip_std: float | None) -> str:
    """What a wrong step matches among the usual mistakes, else the contract."""
    w = w.double()
    rms, top = w.pow(2).mean().sqrt(), w.abs().max()
    levels_apart = 2 ** bits - 1

    def r_of(clip_sigma: torch.Tensor, top: torch.Tensor = top) -> torch.Tensor:
        return top if clip_std is None else torch.minimum(top, clip_std * clip_sigma)

    mistakes = [
        (2 * r_of(rms, w.max()) / levels_apart, "r must be max|w| (the largest magnitude, of either sign), not max(w)"),
        (2 * r_of(w.abs().std()) / levels_apart, "sigma is sqrt(mean(w**2)), the spread around 0, not the std of |w|"),
        (2 * r_of(w.std()) / levels_apart, "sigma is sqrt(mean(w**2)), the spread around 0 (the centre of the "
                                           "range), not w.std(), the spread around the mean"),
        (r_of(rms) / (2 ** (bits - 1) - 1) if bits > 1 else math.inf,
         "2**bits levels are 2**bits - 1 steps across [-r, r]: step = 2r / (2**bits - 1), not the int8-style "
         "r / (2**(bits-1) - 1)"),
        (2 * clip_std * rms / levels_apart if clip_std is not None else math.inf,
         "when clip_std * sigma is above max|w|, r stays max|w| (r = min(max|w|, clip_std * sigma))"),
    ]
    for value, hint in mistakes:
        value = float(value)
        if math.isfinite(value) and abs(value - step) <= 1e-5 * abs(value):
            return hint
    return ("The range is [-r, r] with r = max|w| (clip_std None) or min(max|w|, clip_std * sqrt(mean(w**2))), "
            "and its 2**bits levels are 2**bits - 1 steps apart")
