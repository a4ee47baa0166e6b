"""lib.deploy: packing quantized weights into integer storage and back, and the CPU latency measurement.

Timing claims (pruned faster than unpruned) are not asserted here: they live in bench/bench_deploy.py."""
import math

import pytest
import torch

from autograde.reference.sincnet_quant import STEQuantize, weight_scale
from lib import deploy
from lib.models import VGG, SincNet
from lib.models.quant import QuantConv1d, QuantLinear, quantize_sincnet


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
