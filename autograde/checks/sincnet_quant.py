"""Hidden checks of the sincnet_quant assignment (keyword spotting, channel pruning, quantization-aware training).

Each function raises AssertionError with a message meant for the student, or returns quietly. They take the
student's STEQuantize or the folder of the submitted artifacts and never trust printed numbers: checkpoints are
loaded with lib.checkpoint (weights_only=True) and evaluated on the test split, and each history is
cross-checked against its checkpoint on the validation split.

The trained models are rebuilt here with the *reference* quantizer: a wrong STEQuantize loses the points of
its own grade cell (check_ste_quantize), and the quantized model is judged by what was trained, once.

Artifacts (names fixed by the notebook):
    sincnet_float.pt/.json    the float SincNet            (hyperparameters: profile "sincnet")
    sincnet_pruned.pt/.json   pruned by pruning_rate, fine-tuned  (profile "sincnet_quant", finetune)
    sincnet_quant.pt/.json    the pruned model after QAT   (profile "sincnet_quant", qat)
"""
from pathlib import Path

import torch
import torch.nn as nn

from autograde.reference.sincnet_quant import STEQuantize as ReferenceSTE
from autograde.reference.slimming import build_cfg_mask
from lib import profile
from lib.checkpoint import CheckpointError, load_model
from lib.data import speech
from lib.models import SincNet
from lib.models.quant import QuantSincNet, quantized_layers
from lib.train import History, evaluate

FLOAT, PRUNED, QUANT = "sincnet_float", "sincnet_pruned", "sincnet_quant"

# A checkpoint re-evaluated here may differ from the accuracy its history recorded by a few clips (another
# device, another BLAS); 1 point is ~4 of the ~420 quick-profile validation clips.
ACCURACY_TOLERANCE = 1.0


def settings():
    """The "sincnet_quant" section of the active profile."""
    return profile.config("sincnet_quant")


def float_hp():
    """What the notebook trains the float model with (and fit_or_load records in its history)."""
    return profile.config("sincnet")


def finetune_hp():
    """Fine-tuning of the pruned model; the pruning it follows is recorded with it."""
    config = settings()
    return dict(config["finetune"], pruning_rate=config["pruning_rate"], min_channels=config["min_channels"])


def qat_hp():
    return settings()["qat"]


# ------------------------------------------------------------------------------------------- STEQuantize

def _quantize(STEQuantize, x, bits, lo, hi):
    try:
        return STEQuantize.apply(x, bits, torch.tensor(lo), torch.tensor(hi))
    except NotImplementedError:
        raise AssertionError("STEQuantize is not implemented yet (forward or backward raises "
                             "NotImplementedError)") from None


def _distinct(values, tolerance):
    """Sorted distinct values of a tensor, values closer than `tolerance` counted once."""
    v = torch.sort(values.detach().flatten()).values
    if v.numel() == 0:
        return v
    keep = torch.cat([torch.tensor([True]), v.diff() > tolerance])
    return v[keep]


def _check_forward(STEQuantize, bits, lo, hi, shape, seed):
    torch.manual_seed(seed)
    levels, step = 2 ** bits, (hi - lo) / (2 ** bits - 1)
    call = f"STEQuantize.apply(x, bits={bits}, lo={lo}, hi={hi}) with x of shape {tuple(shape)}"
    span = hi - lo
    # Half of x inside [lo, hi], a quarter below, a quarter above.
    x = lo + span * (torch.rand(shape) * 2 - 0.5)
    x_before = x.clone()
    q = _quantize(STEQuantize, x, bits, lo, hi)
    assert isinstance(q, torch.Tensor) and q.shape == x.shape, (
        f"{call}: returned {type(q).__name__} of shape {tuple(getattr(q, 'shape', ()))}, expected a tensor "
        f"of the input's shape {tuple(shape)}")
    assert torch.equal(x, x_before), f"{call}: changed its input x in place; return a new tensor"
    q = q.detach()
    eps = 1e-5 * span
    assert torch.isfinite(q).all(), f"{call}: the output has NaN or inf values"
    assert q.min() >= lo - eps and q.max() <= hi + eps, (
        f"{call}: outputs range over [{q.min().item():.4f}, {q.max().item():.4f}], outside [lo, hi]: "
        "clip x to [lo, hi] before rounding (values below lo become lo, above hi become hi)")
    below, above = x < lo, x > hi
    assert torch.allclose(q[below], torch.full_like(q[below], lo), atol=eps) and \
        torch.allclose(q[above], torch.full_like(q[above], hi), atol=eps), (
        f"{call}: inputs below lo must give exactly lo and inputs above hi exactly hi (clipping)")

    dense = torch.linspace(lo - 0.25 * span, hi + 0.25 * span, 64 * levels + 1)
    found = _distinct(_quantize(STEQuantize, dense, bits, lo, hi), step / 4)
    if found.numel() == levels + 1:
        raise AssertionError(f"STEQuantize with bits={bits} gives {levels + 1} levels on [lo, hi] instead of "
                             f"2**bits = {levels}: the step is (hi - lo) / (2**bits - 1), so that lo and hi are "
                             "both levels")
    assert found.numel() == levels, (
        f"STEQuantize with bits={bits} on [lo={lo}, hi={hi}] gives {found.numel()} distinct output levels "
        f"over inputs covering the range; expected 2**bits = {levels}")

    index = (q - lo) / step
    off_grid = (index - torch.round(index)).abs().max().item()
    assert off_grid < 1e-3, (
        f"{call}: outputs are not on the grid lo + k * step, step = (hi - lo) / (2**bits - 1) = {step:.6g} "
        f"(off by up to {off_grid * step:.3g})")
    inside = ~(below | above)
    error = (q[inside] - x[inside]).abs().max().item()
    assert error <= step / 2 + eps, (
        f"{call}: an input inside [lo, hi] moved by {error:.4g}, more than half a step ({step / 2:.4g}); "
        "round to the nearest level (torch.round), do not truncate (floor)")
    again = _quantize(STEQuantize, q.clone(), bits, lo, hi).detach()
    assert torch.allclose(again, q, atol=eps), (
        f"{call}: quantizing an already quantized tensor changed it (Q(Q(x)) != Q(x)) by up to "
        f"{(again - q).abs().max().item():.3g}; levels must map to themselves")


def _check_backward(STEQuantize, bits, lo, hi, shape, seed):
    torch.manual_seed(seed)
    call = f"STEQuantize backward with bits={bits}, lo={lo}, hi={hi}, x of shape {tuple(shape)}"
    span = hi - lo
    x = lo + span * (torch.rand(shape) * 2 - 0.5)
    margin = 1e-3 * span
    x[(x - lo).abs() < margin] += 2 * margin          # keep clear of the edges, where either answer is fine
    x[(x - hi).abs() < margin] += 2 * margin
    x.requires_grad_(True)
    upstream = torch.randn(shape) + 0.5
    try:
        q = _quantize(STEQuantize, x, bits, lo, hi)
        (q * upstream).sum().backward()
    except RuntimeError as error:
        raise AssertionError(f"{call}: backward failed ({error}). backward(ctx, grad_output) returns one "
                             "gradient per input of forward: (grad_x, None, None, None)") from None
    assert x.grad is not None, f"{call}: no gradient reached x (forward must not detach x or use .data)"
    grad = x.grad.detach()
    assert grad.shape == x.shape, f"{call}: gradient of shape {tuple(grad.shape)}, expected {tuple(x.shape)}"
    inside = (x.detach() >= lo) & (x.detach() <= hi)
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


def _check_in_quantized_model(STEQuantize):
    """lib's quantized SincNet built with STEQuantize: each layer computes with at most 2**bits weight values,
    and one training step's gradient reaches every latent weight."""
    torch.manual_seed(0)
    model = QuantSincNet([8, 8, 8, 8, 8, 8], quantizer=STEQuantize.apply)
    model(0.1 * torch.randn(2, 1, 16000)).logsumexp(1).sum().backward()
    for i, layer in enumerate(quantized_layers(model)):
        name = f"{type(layer).__name__} #{i} of lib's QuantSincNet ({layer.bits} bits)"
        with torch.no_grad():
            weight = layer.effective_weight()
        levels = _distinct(weight, 1e-6 * weight.abs().max().item()).numel()
        assert levels <= 2 ** layer.bits, (
            f"with your STEQuantize, {name} computes with {levels} distinct weight values, more than "
            f"2**{layer.bits}")
        for pname, p in layer.named_parameters(recurse=False):
            assert p.grad is not None and p.grad.abs().sum() > 0, (
                f"with your STEQuantize, no gradient reaches the latent {pname} of {name}: quantize in forward "
                "without detaching, and pass the gradient straight through in backward")


def check_ste_quantize(STEQuantize):
    """Forward: a uniform 2**bits-level grid on [lo, hi] with clipping; backward: straight through inside, 0 outside.
    Then in lib's quantized SincNet: at most 2**bits weight values per layer, gradients reach the latent weights."""
    assert isinstance(STEQuantize, type) and issubclass(STEQuantize, torch.autograd.Function), (
        "STEQuantize must be a class deriving from torch.autograd.Function")
    ranges = [(-1.0, 1.0), (0.0, 3.5), (-0.3, 0.05)]
    shapes = [(1000,), (32, 17), (4, 3, 50)]
    seed = 0
    for bits in (2, 3, 4, 8):
        for (lo, hi), shape in zip(ranges, shapes):
            _check_forward(STEQuantize, bits, lo, hi, shape, seed)
            _check_backward(STEQuantize, bits, lo, hi, shape, seed)
            seed += 1
    _check_in_quantized_model(STEQuantize)


# ----------------------------------------------------------------------------------------- trained models

def _load_run(artifacts, name, model_class, **kwargs):
    """(model with the checkpoint's weights, meta, History) of artifacts/<name>.pt and .json."""
    path = Path(artifacts) / f"{name}.pt"
    try:
        model, meta = load_model(path, model_class, **kwargs)
        history = History.load(path.with_suffix(".json"))
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        raise AssertionError(str(error)) from None
    return model.eval(), meta, history


def _check_history(history, meta, path, hp, what):
    """The history is a complete run with `hp`, and the checkpoint holds its best epoch: that record."""
    json_path = path.with_suffix(".json")
    assert history.config == History(hp).config, (
        f"{json_path} was trained with {history.config}, but {what} is trained with {History(hp).config} "
        f"(profile {profile.name()}); re-run the training cell and submit artifacts/ with the notebook")
    assert len(history) == hp["epochs"], (
        f"{json_path} has {len(history)} epochs, the profile trains {hp['epochs']}: re-run the training cell "
        "to the end and submit artifacts/ with the notebook")
    assert "epoch" in meta, f"{path} has no epoch in its meta: save it with lib.train.fit / fit_or_load"
    records = [r for r in history.records if r["epoch"] == meta["epoch"]]
    assert records, f"{path} was saved at epoch {meta['epoch']}, but its history has no record of that epoch"
    return records[0]


def _test_accuracy(model, record, path, loaders):
    """Test accuracy of `model`, after checking its validation accuracy against its history's record."""
    cpu = torch.device("cpu")
    _, val_accuracy = evaluate(model, loaders["val"], device=cpu, progress=False)
    recorded = record["val_accuracy"]
    assert abs(val_accuracy - recorded) <= ACCURACY_TOLERANCE, (
        f"{path} evaluates to {val_accuracy:.2f}% on the validation split, but its history recorded "
        f"{recorded:.2f}% for that epoch: the checkpoint and its history are from different runs")
    return evaluate(model, loaders["test"], device=cpu, progress=False)[1]


def _assert_accuracy(accuracy, key, path):
    need = settings()["thresholds"][key]
    assert accuracy >= need, (
        f"{path} reaches {accuracy:.2f}% test accuracy; at least {need}% is expected (profile {profile.name()}, "
        f"thresholds[{key!r}])")


def check_float_model(artifacts="artifacts", loaders=None):
    """sincnet_float.pt: the profile's SincNet, trained with the profile's hyperparameters to its threshold."""
    loaders = loaders or speech.loaders()
    hp = float_hp()
    path = Path(artifacts) / f"{FLOAT}.pt"
    model, meta, history = _load_run(artifacts, FLOAT, SincNet)
    expected_cfg = SincNet(width=hp["width"]).cfg
    assert model.cfg == expected_cfg, (
        f"{path} has cfg {model.cfg}; the float model of profile {profile.name()} is SincNet(width="
        f"{hp['width']}), cfg {expected_cfg}")
    record = _check_history(history, meta, path, hp, "the float model")
    _assert_accuracy(_test_accuracy(model, record, path, loaders), "float", path)


def _float_model(artifacts):
    return _load_run(artifacts, FLOAT, SincNet)[0]


def check_pruned_model(artifacts="artifacts", loaders=None):
    """sincnet_pruned.pt: the reference cfg of the student's float model pruned by pruning_rate, fine-tuned."""
    loaders = loaders or speech.loaders()
    config = settings()
    expected_cfg, _ = build_cfg_mask(_float_model(artifacts), config["pruning_rate"], config["min_channels"])
    path = Path(artifacts) / f"{PRUNED}.pt"
    model, meta, history = _load_run(artifacts, PRUNED, SincNet)
    assert model.cfg == expected_cfg, (
        f"{path} has cfg {model.cfg}, but pruning {FLOAT}.pt with pruning_rate={config['pruning_rate']} and "
        f"min_channels={config['min_channels']} (one global threshold on |gamma|) gives {expected_cfg}; "
        "check build_cfg_mask and re-run the pruning cells")
    record = _check_history(history, meta, path, finetune_hp(), "the pruned model")
    _assert_accuracy(_test_accuracy(model, record, path, loaders), "pruned", path)


def _changed_beyond_decay(before, after):
    """Relative size of the part of `after` that is not a multiple of `before` (weight decay only rescales)."""
    before, after = before.flatten().double(), after.flatten().double()
    scale = (after @ before) / (before @ before).clamp_min(1e-30)
    return ((after - scale * before).norm() / after.norm().clamp_min(1e-30)).item()


def check_quantized_model(artifacts="artifacts", loaders=None):
    """sincnet_quant.pt: QAT of the pruned model. Latent full-precision weights kept in the parameters (not
    overwritten with quantized values) and changed by training, and the profile's accuracy (computed with the
    reference quantizer). The student's quantizer itself is judged by check_ste_quantize, in its own cell."""
    loaders = loaders or speech.loaders()
    path = Path(artifacts) / f"{QUANT}.pt"
    pruned = _load_run(artifacts, PRUNED, SincNet)[0]
    model, meta, history = _load_run(artifacts, QUANT, QuantSincNet, quantizer=ReferenceSTE.apply)
    assert model.cfg == pruned.cfg, (
        f"{path} has cfg {model.cfg}, but the pruned model {PRUNED}.pt has {pruned.cfg}: "
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
