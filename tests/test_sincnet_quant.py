"""The sincnet_quant assignment: its checks on the reference and on the mutants, the solution cells against
autograde/reference/, the lib pieces it relies on (prune_sincnet, quantize_sincnet), and the checks of the
trained models on the reference work's artifacts (the notebook executed once per session, shared with the
grader self-test) and on tampered copies of them."""
import io
import json
import random
import re
import shutil
import sys

import nbformat
import pytest
import torch

from records import Liar, judge_each_tampering, round_trip, same_plain_data
from autograde.checks import sincnet_quant as checks
from autograde.checks.common import VisibleCheckFailed
from autograde.course import SOLUTIONS, nbgrader_id
from autograde.mutants.sincnet_quant import ARTIFACT_MUTANTS, MUTANTS
from autograde.probes import sincnet_quant as probes
from autograde.reference import slimming as reference_slimming
from autograde.reference import define, solution
from autograde.reference.sincnet_quant import STEQuantize, weight_scale
from lib import profile
from lib.checkpoint import load_checkpoint, load_model, save_checkpoint
from lib.models import SincNet, cutoff_change
from lib.models.quant import (CLIP_STDS, QuantSincNet, model_size_bytes, quantization_levels, quantize_sincnet,
                              quantized_layers)
from lib.slimming import bn_layers, prune_sincnet, zero_pruned_channels
from lib.train import History

NOTEBOOK = SOLUTIONS / "sincnet_quant" / "sincnet_quant.ipynb"
STE_MUTANTS = [m for m in MUTANTS if m.cell == "ste_quantize"]
SCALE_MUTANTS = [m for m in MUTANTS if m.cell == "weight_scale"]


def mutant_class(mutant):
    return define("sincnet_quant", mutant.notebook, mutant.cell, mutant.code)["STEQuantize"]


# ------------------------------------------------------------------------------------------ STEQuantize

def test_reference_passes():
    checks.check_ste_quantize(STEQuantize)


@pytest.mark.parametrize("mutant", STE_MUTANTS, ids=[m.name for m in STE_MUTANTS])
def test_mutant_fails(mutant):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.check_ste_quantize(mutant_class(mutant))


OTHER_CORRECT = {
    "ctx attributes, clamp, lo + k * step": '''
class STEQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits, lo, hi):
        ctx.mask = (x >= lo) & (x <= hi)
        step = (hi - lo) / (2 ** bits - 1)
        return lo + torch.round((torch.clamp(x, lo, hi) - lo) / step) * step

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.mask, None, None, None
''',
    "floor(x + 0.5), exclusive edges, where": '''
class STEQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = float(lo), float(hi)
        levels = 2 ** bits - 1
        unit = (x.clamp(float(lo), float(hi)) - lo) / (hi - lo)
        return torch.floor(unit * levels + 0.5) / levels * (hi - lo) + lo

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        inside = (x > ctx.lo) & (x < ctx.hi)
        return torch.where(inside, grad_output, torch.zeros_like(grad_output)), None, None, None
''',
}


@pytest.mark.parametrize("name", OTHER_CORRECT)
def test_other_correct_implementations_pass(name):
    namespace = {"torch": torch}
    exec(OTHER_CORRECT[name], namespace)
    checks.check_ste_quantize(namespace["STEQuantize"])


class _Identity(torch.autograd.Function):
    """Not a quantizer: returns x. Its weights keep all their distinct values."""
    @staticmethod
    def forward(ctx, x, bits, lo, hi):
        return x.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None, None, None


class _Detached:
    """Quantizes a detached copy: no gradient reaches the latent weights."""
    @staticmethod
    def apply(x, bits, lo, hi):
        return STEQuantize.apply(x.detach(), bits, lo, hi)


@pytest.mark.parametrize("quantizer, message", [(_Identity, "distinct weight values"),
                                                (_Detached, "no gradient reaches")])
def test_quantizer_is_also_checked_inside_lib_quantized_sincnet(quantizer, message):
    with pytest.raises(AssertionError, match=message):
        checks.judge_in_quantized_model(probes.probe_in_quantized_model(quantizer.apply))


def test_blank_release_fails_with_a_message():
    class Blank(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, bits, lo, hi):
            raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented"):
        checks.check_ste_quantize(Blank)


# ----------------------------------------------------------------------------------- probe and judge
# round_trip, tamperings, same_plain_data and Liar: the record helpers of tests/test_slimming.py.

SEEDS = (0, 1, 12345)

# The part of its hint each mutant must get (the hidden one, also when the visible test fails first).
HINTS = {"identity backward everywhere (no zero outside the range)": r"outside \[lo, hi\] too",
         "2**b + 1 levels (step = (hi - lo) / 2**bits)": r"instead of 2\*\*bits",
         "no clipping": "clip x to", "gradient blocked (zero everywhere)": "straight-through estimator",
         "floor instead of round": "do not truncate", "range widened to include 0": "do not widen it to include 0"}


def probed(STEQuantize, seed):
    return round_trip(probes.probe_ste_quantize(STEQuantize, seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_passes_the_judge(seed):
    checks.judge_ste_quantize(probed(STEQuantize, seed), seed)


def test_every_mutant_has_a_hint():
    assert {m.name for m in STE_MUTANTS} == set(HINTS)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", STE_MUTANTS, ids=[m.name for m in STE_MUTANTS])
def test_mutant_fails_the_judge_with_its_hint(mutant, seed):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.judge_ste_quantize(probed(mutant_class(mutant), seed), seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_bit_width_is_tried_on_a_range_without_0(seed):
    """Before, every range held 0 (around 0, from 0, lopsided), so a quantizer that widened [lo, hi] to
    include 0 computed the right levels everywhere and scored full marks."""
    for bits in probes.STE_BITS:
        assert any(lo > 0 or hi < 0 for b, lo, hi, _ in probes.ste_cases(seed) if b == bits)
    widened = mutant_class(next(m for m in MUTANTS if m.name == "range widened to include 0"))
    with pytest.raises(AssertionError, match="do not widen") as failure:
        checks.judge_ste_quantize(probed(widened, seed), seed)
    assert not isinstance(failure.value, VisibleCheckFailed)      # the visible test cannot see it either


def test_a_mutant_that_fails_the_visible_test_is_marked():
    mutant = next(m for m in STE_MUTANTS if m.name == "no clipping")
    with pytest.raises(VisibleCheckFailed, match="four levels"):
        checks.judge_ste_quantize(probed(mutant_class(mutant), 0), 0)


def test_record_is_plain_data_of_a_few_hundred_kb():
    record = probes.probe_ste_quantize(STEQuantize, 7)
    buffer = io.BytesIO()
    torch.save(record, buffer)
    assert buffer.tell() < 2**20
    assert same_plain_data(record, round_trip(record))


def test_probe_leaves_the_callers_random_state_alone():
    class Noisy(STEQuantize):
        @staticmethod
        def forward(ctx, x, bits, lo, hi):
            random.random()
            torch.rand(3)
            return STEQuantize.forward(ctx, x, bits, lo, hi)

    torch_state, python_state = torch.get_rng_state(), random.getstate()
    probes.probe_ste_quantize(Noisy, 3)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def _forward_returning(make):
    """An STEQuantize whose forward returns make(x) and whose backward passes the gradient through."""
    class Returning(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, bits, lo, hi):
            return make(x)

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output, None, None, None
    return Returning


class _RaisesInBackward(STEQuantize):
    @staticmethod
    def backward(ctx, grad_output):
        raise ValueError("oops")


class _ExitsInForward(STEQuantize):
    @staticmethod
    def forward(ctx, x, bits, lo, hi):
        sys.exit(3)


class _NotAFunction:
    apply = STEQuantize.apply


def _liar_quantizer():

    class LiarOutput(torch.autograd.Function):
        """Quantizes right, but returns a tensor subclass that shows zeros when detached."""
        @staticmethod
        def forward(ctx, x, bits, lo, hi):
            return STEQuantize.apply(x, bits, lo, hi).as_subclass(Liar)

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output, None, None, None
    return LiarOutput


@pytest.mark.parametrize("quantizer", [
    _forward_returning(lambda x: "levels"), _forward_returning(lambda x: [1.0, 2.0]),
    _forward_returning(lambda x: x.sum()), _forward_returning(lambda x: x.double()), _RaisesInBackward,
    _ExitsInForward, _NotAFunction, "not a class", _liar_quantizer()], ids=str)
def test_quantizer_of_any_kind_gets_an_assertion_error(quantizer):
    with pytest.raises(AssertionError):
        checks.judge_ste_quantize(probed(quantizer, 0), 0)


def test_tampered_records_give_assertion_errors():
    record = probed(STEQuantize, 0)
    judge_each_tampering(lambda tampered: checks.judge_ste_quantize(tampered, 0), record, random.Random(2), count=60)
    case = record["cases"][0]
    for change in (dict(case, x_after="x"), dict(case, forward=dict(case["forward"], tensor=torch.zeros(3))),
                   dict(case, backward={"grad": torch.zeros(2, 2)}), {"forward": case["forward"]}):
        with pytest.raises(AssertionError):
            checks.judge_ste_quantize(dict(record, cases=[change] + record["cases"][1:]), 0)
    for model in ({"layers": []}, {"layers": record["model"]["layers"][:1] * len(record["model"]["layers"])}):
        with pytest.raises(AssertionError):
            checks.judge_ste_quantize(dict(record, model=model), 0)


# ------------------------------------------------------------------------------------------ weight_scale

# The part of its hint each weight_scale mutant must get (the hidden cases' message, also when the visible
# test fails first).
SCALE_HINTS = {"max w instead of max |w|": r"not max\(w\)",
               "sigma = std of |w| instead of sqrt(mean(w**2))": r"not the std of \|w\|",
               "int8-style r / (2**(b-1) - 1) instead of 2**b - 1 steps across [-r, r]": "one step of 2r apart",
               "clip_std * sigma even above max|w|": "r stays max|w|"}


def scale_function(code, name="weight_scale"):
    namespace = {}
    exec(compile(code, f"<{name}>", "exec"), namespace)
    return namespace["weight_scale"]


def mutant_scale(mutant):
    return define("sincnet_quant", mutant.notebook, mutant.cell, mutant.code)["weight_scale"]


def probed_scale(weight_scale, seed):
    return round_trip(probes.probe_weight_scale(weight_scale, seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_weight_scale_passes_the_judge(seed):
    checks.judge_weight_scale(probed_scale(weight_scale, seed), seed)


def test_every_weight_scale_mutant_has_a_hint():
    assert {m.name for m in SCALE_MUTANTS} == set(SCALE_HINTS)
    assert all(m.target == "test_weight_scale" for m in SCALE_MUTANTS) and len(SCALE_MUTANTS) >= 3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", SCALE_MUTANTS, ids=[m.name for m in SCALE_MUTANTS])
def test_weight_scale_mutant_fails_the_judge_with_its_hint(mutant, seed):
    with pytest.raises(VisibleCheckFailed, match=SCALE_HINTS[mutant.name]):
        checks.judge_weight_scale(probed_scale(mutant_scale(mutant), seed), seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", SCALE_MUTANTS, ids=[m.name for m in SCALE_MUTANTS])
def test_hidden_cases_alone_catch_each_weight_scale_mutant(mutant, seed):
    """With the visible test's entries replaced by the reference's, the drawn cases still catch the mutant."""
    record = probed_scale(mutant_scale(mutant), seed)
    record[probes.SCALE_VISIBLE] = probed_scale(weight_scale, seed)[probes.SCALE_VISIBLE]
    with pytest.raises(AssertionError, match=SCALE_HINTS[mutant.name]) as failure:
        checks.judge_weight_scale(record, seed)
    assert not isinstance(failure.value, VisibleCheckFailed)


OTHER_CORRECT_SCALES = {
    "python float": "def weight_scale(w, bits, clip_std=None):\n"
                    "    r = max(float(w.abs().max()), 1e-8)\n"
                    "    if clip_std is not None:\n"
                    "        r = min(r, clip_std * float((w ** 2).mean()) ** 0.5)\n"
                    "    return 2 * max(r, 1e-8) / (2 ** bits - 1)\n",
    "float64, amax, floor on the step": "import torch\n"
                    "def weight_scale(w, bits, clip_std=None):\n"
                    "    w = w.double()\n"
                    "    r = w.abs().amax()\n"
                    "    if clip_std:\n"
                    "        r = r.clamp(max=clip_std * torch.sqrt(torch.mean(w * w)))\n"
                    "    return (2 * r / (2 ** bits - 1)).clamp_min(1e-9)\n",
}


@pytest.mark.parametrize("name", OTHER_CORRECT_SCALES)
def test_other_correct_weight_scales_pass(name):
    for seed in SEEDS:
        checks.check_weight_scale(scale_function(OTHER_CORRECT_SCALES[name], name), seed)


def test_blank_weight_scale_fails_with_a_message():
    def blank(w, bits, clip_std=None):
        raise NotImplementedError()
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_weight_scale(blank)


def test_weight_scale_that_writes_into_w_fails():
    def in_place(w, bits, clip_std=None):
        step = weight_scale(w, bits, clip_std)
        w.clamp_(-1e-3, 1e-3)
        return step
    with pytest.raises(AssertionError, match="changed the weights w in place"):
        checks.check_weight_scale(in_place)


def test_tampered_weight_scale_records_give_assertion_errors():
    record = probed_scale(weight_scale, 0)
    judge_each_tampering(lambda tampered: checks.judge_weight_scale(tampered, 0), record, random.Random(3), count=60)
    for change in ({"type": "Tensor", "tensor": torch.zeros(3)}, {"type": "str"}, {"error": "ValueError: no"}):
        with pytest.raises(AssertionError):
            checks.judge_weight_scale(dict(record, cases=[change] + record["cases"][1:]), 0)


def test_weight_scale_record_round_trips_as_plain_data():
    record = probes.probe_weight_scale(weight_scale, 5)
    assert same_plain_data(record, round_trip(record))


def test_lib_layers_quantize_on_the_range_of_weight_scale():
    """QuantSincNet asks weight_scale for each layer's step with CLIP_STDS.get(bits), and clip_stds={} gives
    [-max|w|, max|w|] everywhere: the levels the 2-bit block weights take are the expected four."""
    torch.manual_seed(0)
    model = SincNet(width=0.25)
    for clip_stds in (None, {}):
        qmodel = quantize_sincnet(model, STEQuantize.apply, weight_scale, clip_stds=clip_stds)
        layer = qmodel.blocks[0][2]
        w = layer.weight.detach()
        k = CLIP_STDS[2] if clip_stds is None else None
        expected_r = w.abs().max() if k is None else min(w.abs().max(), k * w.pow(2).mean().sqrt())
        assert torch.allclose(layer.weight_bound(), expected_r)
        assert torch.allclose(torch.unique(layer.effective_weight().detach()),
                              quantization_levels(expected_r, 2), atol=1e-6)


# --------------------------------------------------------------------------------------- build_cfg_mask

def random_sincnet(seed, width=0.25):
    """A SincNet whose BN layers have random gammas, betas and running statistics (eval mode)."""
    torch.manual_seed(seed)
    model = SincNet(width=width)
    with torch.no_grad():
        for i, bn in enumerate(bn_layers(model)):
            bn.weight.copy_(torch.randn(bn.num_features) * (0.1 + i % 3))
            bn.bias.copy_(torch.randn(bn.num_features) * 0.1)
            bn.running_mean.copy_(torch.randn(bn.num_features) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features) + 0.5)
    return model.eval()


def test_build_cfg_mask_cell_equals_the_slimming_reference():
    student = solution("sincnet_quant", "sincnet_quant", "build_cfg_mask")
    for seed in range(3):
        model = random_sincnet(seed)
        for percent, min_channels in ((0.3, 2), (0.5, 4), (0.9, 3)):
            cfg, mask = student(model, percent, min_channels)
            expected_cfg, expected_mask = reference_slimming.build_cfg_mask(model, percent, min_channels)
            assert cfg == expected_cfg and all(torch.equal(a, b) for a, b in zip(mask, expected_mask))
            assert min(cfg) >= min_channels


# -------------------------------------------------------------------------------------------- lib pieces

@pytest.mark.parametrize("percent", [0.3, 0.6, 0.9])
def test_prune_sincnet_keeps_the_outputs(percent):
    model = random_sincnet(1)
    cfg, cfg_mask = reference_slimming.build_cfg_mask(model, percent, 2)
    pruned = prune_sincnet(model, cfg, cfg_mask).eval()
    assert pruned.cfg == cfg
    x = torch.randn(3, 1, 16000)
    with torch.no_grad():
        expected = zero_pruned_channels(model, cfg_mask).eval()(x)
        assert torch.allclose(pruned(x), expected, atol=1e-4, rtol=1e-4)


def test_quantize_sincnet_copies_the_weights_and_passes_gradients():
    model = random_sincnet(2)
    identity = quantize_sincnet(model, lambda x, bits, lo, hi: x, weight_scale).eval()
    x = torch.randn(2, 1, 16000)
    with torch.no_grad():
        assert torch.allclose(identity(x), model(x), atol=1e-4, rtol=1e-4)   # no rounding: the same network

    qmodel = quantize_sincnet(model, STEQuantize.apply, weight_scale).train()
    qmodel(x).sum().backward()
    for layer in quantized_layers(qmodel):
        weights = layer.effective_weight().detach()
        assert torch.unique(weights).numel() <= 2 ** layer.bits
        parameters = [layer.weight] if hasattr(layer, "weight") else [layer.low_hz_, layer.band_hz_]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters), type(layer).__name__


def test_model_size_counts_quantized_weights_at_their_bits():
    model = SincNet(width=0.25)
    qmodel = quantize_sincnet(model, STEQuantize.apply, weight_scale)
    assert model_size_bytes(model) == 4 * sum(p.numel() for p in model.parameters())
    weight_bits = sum(m.weight.numel() * m.bits for m in quantized_layers(qmodel) if hasattr(m, "weight"))
    other = sum(p.numel() for p in qmodel.parameters()) - sum(
        m.weight.numel() for m in quantized_layers(qmodel) if hasattr(m, "weight"))
    assert model_size_bytes(qmodel) == (weight_bits + 32 * other) // 8 < model_size_bytes(model) / 4


# ------------------------------------------------------------------------ trained-model checks, artifacts

@pytest.fixture(scope="module")
def artifacts(reference_work):
    return reference_work("sincnet_quant") / "artifacts"


@pytest.fixture(scope="module")
def loaders():
    from lib.data import speech
    return speech.loaders()


def test_reference_artifacts_pass(artifacts, loaders):
    checks.check_float_model(artifacts, loaders)
    checks.check_pruned_model(artifacts, loaders)
    checks.check_quantized_model(artifacts, loaders)


def tampered(artifacts, tmp_path):
    copy_dir = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy_dir)
    return copy_dir


def test_missing_artifacts_fail(tmp_path, loaders):
    for check in (checks.check_float_model, checks.check_pruned_model, checks.check_quantized_model):
        with pytest.raises(AssertionError, match="no such"):
            check(tmp_path, loaders)


def test_quantized_weights_written_into_data_fail(artifacts, tmp_path, loaders):
    # the self-test's artifact mutant of that mistake, built the same way
    mutant = next(m for m in ARTIFACT_MUTANTS if m.name.startswith("latent weights overwritten"))
    mutant.make(artifacts.parent, tmp_path / "work")
    with pytest.raises(AssertionError, match="overwritten with quantized"):
        checks.check_quantized_model(tmp_path / "work" / "artifacts", loaders)


def test_untrained_latent_weights_fail(artifacts, tmp_path, loaders):
    """A QAT whose gradients never reached the weights: the latent weights are the pruned model's, shrunk by
    weight decay; the check must see through the shrinking."""
    folder = tampered(artifacts, tmp_path)
    path = folder / "sincnet_quant.pt"
    qmodel, meta = load_model(path, QuantSincNet, quantizer=STEQuantize.apply,
                              weight_scale=weight_scale)
    pruned, _ = load_model(folder / "sincnet_pruned.pt", SincNet)
    start = quantize_sincnet(pruned, STEQuantize.apply, weight_scale)
    with torch.no_grad():
        for layer, original in zip(quantized_layers(qmodel), quantized_layers(start)):
            if hasattr(layer, "weight"):
                layer.weight.copy_(original.weight * 0.97)
    save_checkpoint(path, qmodel, meta)
    with pytest.raises(AssertionError, match="no gradient reached them"):
        checks.check_quantized_model(folder, loaders)


def test_wrong_pruned_cfg_fails(artifacts, tmp_path, loaders):
    folder = tampered(artifacts, tmp_path)
    float_model, _ = load_model(folder / "sincnet_float.pt", SincNet)
    config = checks.settings()
    cfg, cfg_mask = reference_slimming.build_cfg_mask(float_model, config["pruning_rate"] / 2, config["min_channels"])
    save_checkpoint(folder / "sincnet_pruned.pt", prune_sincnet(float_model, cfg, cfg_mask),
                    load_checkpoint(folder / "sincnet_pruned.pt")["meta"])
    with pytest.raises(AssertionError, match="gives"):
        checks.check_pruned_model(folder, loaders)


def test_history_of_another_run_fails(artifacts, tmp_path, loaders):
    folder = tampered(artifacts, tmp_path)
    history = json.loads((folder / "sincnet_float.json").read_text())
    history["config"]["epochs"] = 1
    history["records"] = history["records"][:1]
    (folder / "sincnet_float.json").write_text(json.dumps(history))
    with pytest.raises(AssertionError, match="trained with"):
        checks.check_float_model(folder, loaders)


def test_checkpoint_of_another_epoch_fails(artifacts, tmp_path, loaders):
    folder = tampered(artifacts, tmp_path)
    history = json.loads((folder / "sincnet_pruned.json").read_text())
    best = max(history["records"], key=lambda r: r["val_accuracy"])
    best["val_accuracy"] = min(100.0, best["val_accuracy"] + 5 * checks.ACCURACY_TOLERANCE)
    (folder / "sincnet_pruned.json").write_text(json.dumps(history))
    with pytest.raises(AssertionError, match="different runs"):
        checks.check_pruned_model(folder, loaders)


def test_thresholds_sit_below_the_reference_accuracies(artifacts, loaders):
    """The quick thresholds keep a margin under what the reference reaches (documented in lib/profile.py)."""
    thresholds = profile.config("sincnet_quant", "quick")["thresholds"]
    from lib.train import evaluate
    for name, key, builder in (("sincnet_float", "float", SincNet), ("sincnet_pruned", "pruned", SincNet)):
        model, _ = load_model(artifacts / f"{name}.pt", builder)
        assert evaluate(model.eval(), loaders["test"], progress=False)[1] >= thresholds[key] + 2
    qmodel, _ = load_model(artifacts / "sincnet_quant.pt", QuantSincNet, quantizer=STEQuantize.apply,
                          weight_scale=weight_scale)
    assert evaluate(qmodel.eval(), loaders["test"], progress=False)[1] >= thresholds["quantized"] + 2
    full = profile.config("sincnet_quant", "full")["thresholds"]
    assert full["float"] >= 90 and full["quantized"] >= 85                 # the course's targets, provisional


# ------------------------------------------------------------------ filters that learn, QAT's kept epoch

MIN_NOTEBOOK_CUTOFF_CHANGE = 0.03   # 10 float epochs at sinc_lr 2e4: 5.8% (seed 0); 0.7% before


def _cell_text(work, grade_id):
    nb = nbformat.read(work / "sincnet_quant.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_id(c) == grade_id)
    return "".join(output.get("text", "") for output in cell.outputs)


def test_notebook_shows_the_sinc_filters_learn(reference_work):
    """The float model's band edges move, and the filter cell says by how much (cutoff_change)."""
    work = reference_work("sincnet_quant")
    match = re.search(r"cut-offs moved by ([\d.]+)% of their value", _cell_text(work, "plot_float"))
    assert match, "the filter cell prints no mean relative cut-off change"
    model, _ = load_model(work / "artifacts" / "sincnet_float.pt", SincNet)
    initial = SincNet(model.cfg).front[0].bands()            # the mel initialisation does not depend on the seed
    change = cutoff_change(initial, model.front[0].bands())
    assert float(match.group(1)) == pytest.approx(100 * change, abs=0.06)
    assert change > MIN_NOTEBOOK_CUTOFF_CHANGE
    assert (work / "artifacts" / "sinc_bands.png").is_file()


def test_qat_checkpoint_is_the_epoch_its_rule_keeps(artifacts):
    """QAT's checkpoint is the epoch its profile's rule keeps, chosen on validation, and the notebook says which
    and evaluates the test split once."""
    history = History.load(artifacts / "sincnet_quant.json")
    meta = load_checkpoint(artifacts / "sincnet_quant.pt")["meta"]
    select = profile.config("sincnet_quant", "quick")["qat"]["select"]
    assert history.config["select"] == select and meta["epoch"] == history.kept["epoch"]
    text = _cell_text(artifacts.parent, "qat")
    assert f"kept epoch {meta['epoch']} (select={select!r}, on validation)" in text
    assert text.count("test accuracy") == 1


def test_quantized_threshold_is_calibrated_from_the_seed_spread():
    """QAT over seeds 0-9 from one pruned model reaches 62.6 +- 2.6% test, 56.67% at the worst seed
    (lib/CALIBRATION.md): the threshold sits clearly under the lowest, and far above a QAT that fails (2-bit
    post-training quantization: 10-25%)."""
    quantized = profile.config("sincnet_quant", "quick")["thresholds"]["quantized"]
    assert 40.0 <= quantized <= 56.67 - 5


def test_the_ste_probe_gives_away_no_part_of_weight_scale():
    """The STE probe runs in the sandbox, where a student can read it: its weight range is fixed, not the
    reference weight_scale without its clipping branch (what it was)."""
    from autograde.probes import sincnet_quant as probe
    from autograde.reference.sincnet_quant import weight_scale
    weights = 0.1 * torch.randn(64, generator=torch.Generator().manual_seed(0))
    for bits in (2, 4, 8):
        assert not torch.allclose(probe.fixed_range_scale(weights, bits), weight_scale(weights, bits))
        assert probe.fixed_range_scale(weights, bits) == probe.fixed_range_scale(10 * weights, bits)
