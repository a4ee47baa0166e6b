"""lib.models: shapes, parameter counts, state-dict layout, initialisation, SincNet band limits."""
import math

import pytest
import torch

from lib.models import (SINCNET_CFG, VGG, VGG19_CFG, SincConv1d, SincNet, count_flops, count_parameters, cutoff_change,
                        scale_cfg)

MIN_CUTOFF_CHANGE = 1e-3   # 4 SGD steps at the quick sinc_lr: 0.17% (seed 0); at lr 0.05, ~1e-5


def test_vgg19_matches_the_network_slimming_reference():
    model = VGG()
    assert model.cfg == VGG19_CFG
    assert count_parameters(model) == 20_035_018          # VGG-19 for CIFAR-10 in the network-slimming code
    assert count_flops(model, (3, 32, 32)) == 398_136_320
    keys = list(model.state_dict())
    assert keys[:6] == ["feature.0.weight", "feature.1.weight", "feature.1.bias", "feature.1.running_mean",
                        "feature.1.running_var", "feature.1.num_batches_tracked"]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]


def test_vgg_forward_shape_and_width():
    model = VGG(width=0.25)
    assert model.cfg == scale_cfg(VGG19_CFG, 0.25) and model.cfg[0] == 16 and model.cfg[2] == 'M'
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert VGG(cfg=[8, "M", 4], num_classes=3)(torch.randn(1, 3, 4, 4)).shape == (1, 3)


def test_vgg_initialisation():
    torch.manual_seed(0)
    model = VGG(width=0.5)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(bn.weight == 0.5) and torch.all(bn.bias == 0) for bn in bns)
    conv = model.feature[0]
    expected_std = math.sqrt(2.0 / (9 * conv.out_channels))
    big = VGG(width=1.0).feature[3].weight          # enough samples to estimate the std
    assert abs(big.std().item() - math.sqrt(2.0 / (9 * 64))) < 0.01
    assert conv.bias is None and expected_std > 0
    assert abs(model.classifier.weight.std().item() - 0.01) < 0.003
    assert torch.all(model.classifier.bias == 0)


def test_sincnet_shape_and_size():
    model = SincNet()
    assert model.cfg == SINCNET_CFG
    assert count_parameters(model) == 269_778                  # README: "269,778 parameters"
    assert model(torch.randn(2, 1, 16000)).shape == (2, 10)
    small = SincNet(width=0.25)
    assert small.cfg == [40, 48, 64, 64, 64, 64]
    assert count_parameters(small) == 22_242                   # README, quick profile
    bns = [m for m in small.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [bn.num_features for bn in bns] == small.cfg         # one BN per cfg entry, in order
    with pytest.raises(ValueError, match="6 entries"):
        SincNet(cfg=[40, 64])


def test_sinc_filters_respect_band_limits():
    sinc = SincConv1d(40, kernel_size=101, sample_rate=16000)
    with torch.no_grad():                                      # push some parameters past the limits
        sinc.low_hz_[:5] = -1000.0
        sinc.band_hz_[5:10] = 0.0
        sinc.low_hz_[10:12] = 20000.0
    low, high = sinc.bands()
    assert torch.all(low >= 50) and torch.all(high <= 8000)
    assert torch.all(high[:10] - low[:10] >= 50 - 1e-4)
    filters = sinc.filters()
    assert filters.shape == (40, 1, 101)
    assert torch.allclose(filters, filters.flip(-1))           # symmetric: linear phase
    # Initial bands are mel-spaced: narrow at low frequencies, wide at high ones.
    fresh = SincConv1d(40)
    widths = (fresh.bands()[1] - fresh.bands()[0]).flatten()
    assert widths[0] < widths[-1]
    # A filter passes its own band: its response at the band centre beats one far outside it.
    f = fresh.filters()[20, 0].detach()
    response = torch.fft.rfft(f, n=16000).abs()               # 1 Hz resolution
    lo, hi = [int(v) for v in (fresh.bands()[0][20].item(), fresh.bands()[1][20].item())]
    assert response[(lo + hi) // 2] > 5 * response[min(7999, hi * 3)]
    with pytest.raises(ValueError, match="odd"):
        SincConv1d(4, kernel_size=100)


def test_count_flops_counts_convolutions_and_linear():
    model = VGG(cfg=[4, 'M', 8])
    # conv1: 4x4x4 outputs x 27 MACs, max-pool, conv2: 2x2x8 outputs x 36 MACs, avg-pool, linear: 8 x 10
    assert count_flops(model, (3, 4, 4)) == 4 * 4 * 4 * 27 + 2 * 2 * 8 * 36 + 8 * 10


def test_cutoff_change_is_the_mean_relative_change():
    before = (torch.tensor([[100.0], [1000.0]]), torch.tensor([[200.0], [2000.0]]))
    after = (torch.tensor([[110.0], [900.0]]), torch.tensor([[180.0], [2200.0]]))
    assert cutoff_change(before, after) == pytest.approx(0.1)
    assert cutoff_change(before, before) == 0.0


def test_sinc_band_edges_move_in_a_short_training():
    """At the blocks' lr the band edges (Hz) did not move; with the profile's sinc_lr they do."""
    from torch.utils.data import DataLoader, Subset

    from lib import profile, train
    from lib.data import speech
    data = speech.loaders()["train"].dataset
    loaders = {"train": DataLoader(Subset(data, range(256)), batch_size=64, shuffle=True,
                                   generator=torch.Generator()),
               "val": DataLoader(Subset(data, range(64)), batch_size=64)}
    hp = dict(profile.config("sincnet", "quick"), epochs=1)
    torch.manual_seed(0)
    model = SincNet(width=hp["width"])
    before = [b.detach().clone() for b in model.front[0].bands()]
    train.fit(model, loaders, hp, progress=False, device=torch.device("cpu"))
    assert cutoff_change(before, model.front[0].bands()) > MIN_CUTOFF_CHANGE
