"""lib.deploy: packing quantized weights into integer storage and back, and the CPU latency measurement.

Timing claims (pruned faster than unpruned) are not asserted here: they live in bench/bench_deploy.py."""
import math

import pytest
import torch

from autograde.reference.sincnet_quant import STEQuantize, weight_scale
from lib import deploy
from lib.models import VGG, SincNet
from lib.models.quant import QuantAct, QuantConv1d, QuantLinear, quantize_sincnet


def small_qat_model(weight_bits=2):
    """A quantized SincNet (reference quantizer) with random weights, BN statistics and activation ranges set."""
    torch.manual_seed(0)
    model = SincNet(width=0.25)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.2, 0.2)       # nothing all ones or all zeros
    qmodel = quantize_sincnet(model, STEQuantize.apply, weight_scale, weight_bits=weight_bits)
    qmodel.train()
    with torch.no_grad():
        qmodel(torch.randn(4, 1, 16000))        # the activation quantizers record their ranges
    return qmodel.eval()


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pack_unpack_round_trip_is_exact(bits):
    codes = torch.randint(0, 2 ** bits, (3, 5, 7), dtype=torch.uint8)     # 105 codes: not a multiple of 8
    packed = deploy.pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (math.ceil(105 * bits / 8),)
    unpacked = deploy.unpack_codes(packed, bits, codes.shape)
    assert unpacked.dtype == torch.uint8 and torch.equal(unpacked, codes)


def test_two_bit_codes_go_four_to_a_byte_lowest_bits_first():
    packed = deploy.pack_codes(torch.tensor([1, 2, 3, 0, 3]), 2)
    assert packed.tolist() == [1 | 2 << 2 | 3 << 4 | 0 << 6, 3]


def test_pack_refuses_codes_out_of_range_and_odd_widths():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        deploy.pack_codes(torch.tensor([0, 4]), 2)
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        deploy.pack_codes(torch.tensor([0, 1]), 3)


def test_codes_reproduce_the_fake_quantized_weights_bit_for_bit():
    qmodel = small_qat_model()
    layers = [m for m in qmodel.modules() if isinstance(m, (QuantConv1d, QuantLinear))]
    assert {layer.bits for layer in layers} == {2, 8}
    for layer in layers:
        codes, bound = deploy.weight_codes(layer)
        assert codes.dtype == torch.uint8 and codes.shape == layer.weight.shape and int(codes.max()) < 2 ** layer.bits
        assert torch.equal(deploy.dequantize(codes, layer.bits, bound), layer.effective_weight().detach())


def test_packed_model_reloads_and_computes_exactly_what_the_fake_quantized_one_does(tmp_path):
    qmodel = small_qat_model()
    sizes = deploy.save_packed(qmodel, tmp_path / "packed.pt")
    assert sizes["file"] == (tmp_path / "packed.pt").stat().st_size
    layers = [m for m in qmodel.modules() if isinstance(m, (QuantConv1d, QuantLinear))]
    assert sizes["weights"] == sum(math.ceil(m.weight.numel() * m.bits / 8) for m in layers)
    assert sizes["float_weights"] == sum(4 * m.weight.numel() for m in layers)
    float_state = deploy.tensor_bytes(qmodel.state_dict())
    assert sizes["tensors"] == float_state - sizes["float_weights"] + sizes["weights"] + 4 * len(layers), \
        "the float state with the packed weights in place of the float ones, plus one float bound per layer"
    reloaded = deploy.load_packed(tmp_path / "packed.pt", STEQuantize.apply, weight_scale)
    assert not any(isinstance(m, (QuantConv1d, QuantLinear)) for m in reloaded.modules()), \
        "the reloaded model computes with fixed weights, not re-quantized latent ones"
    clips = torch.randn(6, 1, 16000)
    with torch.no_grad():
        expected, got = qmodel(clips), reloaded(clips)
    assert expected.std() > 0, "a model whose outputs are constant would hide a wrong reload"
    assert torch.equal(got, expected)



def test_the_notebook_says_what_the_packed_model_computes_with(tmp_path):
    """load_packed's layers hold float weights (dequantized codes) and compute in float; the notebook's text
    says so instead of promising integer arithmetic."""
    import nbformat
    from autograde.course import SOLUTIONS
    deploy.save_packed(small_qat_model(), tmp_path / "packed.pt")
    reloaded = deploy.load_packed(tmp_path / "packed.pt", STEQuantize.apply, weight_scale)
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    nb = nbformat.read(SOLUTIONS / "sincnet_quant" / "sincnet_quant.ipynb", as_version=4)
    text = " ".join(c.source.replace("\n", " ") for c in nb.cells if "`load_packed`" in c.source)
    assert "float convolutions" in text and "integer runtime would, and" not in text, text[:600]


def test_cpu_latency_times_each_model_and_batch_size():
    models = {"unpruned": VGG([8, 'M', 16, 'M', 16, 'M', 32, 'M', 32]),      # four pools: 32x32 -> 2x2
              "pruned 50%": VGG([4, 'M', 8, 'M', 8, 'M', 16, 'M', 16]),
              "pruned 90%": VGG([1, 'M', 2, 'M', 2, 'M', 3, 'M', 3])}
    training = models["unpruned"].train()
    times = deploy.cpu_latency(models, (3, 32, 32), batch_sizes=(1, 4), min_run_time=0.01)
    assert set(times) == set(models) and all(set(by_batch) == {1, 4} for by_batch in times.values())
    assert all(t > 0 for by_batch in times.values() for t in by_batch.values())
    assert training.training, "the caller's model is left in training mode (a copy is timed)"


# ------------------------------------------------------------------------------------------ integer inference

def test_fixed_point_multipliers_and_rounding_shifts_are_exact_integers():
    multipliers = torch.tensor([0.3, -0.001, 2.5], dtype=torch.float64)
    m, s = deploy.fixed_point(multipliers)
    assert m.dtype == torch.int64 and 2 ** 30 <= m.abs().max() < 2 ** 31
    assert (m.double() / 2 ** s - multipliers).abs().max() <= 2 ** -s     # half a unit of the last place
    x = torch.tensor([-5, -4, -3, 3, 4, 5, 12], dtype=torch.int64)
    assert deploy.rounding_shift(x, 3).tolist() == [-1, 0, 0, 0, 1, 1, 2]     # /8, halves up


def mid_codes(qmodel, i, x):
    """The codes of block i's first QuantAct (after its depthwise conv) in the fake-quantized `qmodel`, for the
    block's input x (B, C, L): what IntegerSincNet.block_codes(i, ...)[1] computes in integers."""
    block = qmodel.blocks[i]
    with torch.no_grad():
        mid = block[1](block[0](x))
    return torch.round(mid / deploy.activation_codes(block[1])[0]).to(torch.int64)


@pytest.mark.parametrize("weight_bits", [2, 4])
def test_integer_arithmetic_gives_the_fake_quantized_models_codes_and_outputs(weight_bits):
    """Every integer code after the front end and after each block equals the code the fake-quantized model's
    activation stands for, and the logits agree; the codes use many levels, so the comparison means something."""
    qmodel = small_qat_model(weight_bits)
    x = torch.randn(6, 1, 16000, generator=torch.Generator().manual_seed(1))
    acts = [m for m in qmodel.modules() if isinstance(m, QuantAct)]
    inputs = {}
    hooks = [act.register_forward_hook(lambda m, args, out: inputs.setdefault(m, args[0])) for act in acts]
    with torch.no_grad():
        qmodel(x)
    for hook in hooks:
        hook.remove()
    for act in acts:   # ranges at the 95th percentile of |input|: every level is used, and the largest are clipped
        act.clip.fill_(torch.quantile(inputs[act].abs().flatten()[:100000], 0.95).item())
    integer = deploy.IntegerSincNet(qmodel)
    inputs = deploy.fake_quantized_codes(qmodel, x)
    assert torch.equal(integer.codes(x)[0], inputs[0])
    for i in range(len(qmodel.blocks)):     # each block on the fake-quantized model's own input codes
        sums, mid, out = integer.block_codes(i, inputs[i])
        scale = deploy.activation_codes(qmodel.front[-1] if i == 0 else qmodel.blocks[i - 1][-1])[0]
        want_mid = mid_codes(qmodel, i, scale * inputs[i].float())
        # A sum of exactly 0 lies halfway between the two middle levels. The float model rounds a window of zeros
        # one way (the runtime copies it), and a sum that cancels to 0 whichever way its rounding error points.
        ties = sums == 0
        assert torch.equal(mid[~ties], want_mid[~ties]), f"block {i}: {(mid != want_mid)[~ties].sum()} codes differ"
        assert (mid[ties] != want_mid[ties]).sum() <= 0.2 * ties.sum() and set(want_mid[ties].tolist()) <= {-1, 1}
        assert len(torch.unique(out)) >= 8, f"block {i}: the codes use only {torch.unique(out).tolist()}"
        same = out == inputs[i + 1]      # those ties, and values within float error of a rounding boundary, aside
        assert same.float().mean() > 0.99, f"block {i}: {1 - same.float().mean():.2%} of its output codes differ"
    with torch.no_grad():
        expected = qmodel(x)
    assert torch.equal(integer(x).argmax(1), expected.argmax(1))
