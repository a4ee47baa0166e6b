"""The plots say what they show: readable axes, starting points, reference lines, paired colours, legends.

Fast: each figure is drawn from small made-up inputs (matplotlib's Agg backend, nothing saved).
"""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from lib import plots  # noqa: E402
from lib.models import VGG  # noqa: E402
from lib.slimming import bn_layers  # noqa: E402
from lib.train import History  # noqa: E402


def _vgg_with_gammas(values):
    model = VGG([4, 'M', 4])
    with torch.no_grad():
        for bn, chunk in zip(bn_layers(model), torch.tensor(values).split(4)):
            bn.weight.copy_(chunk)
    return model


def _history(values):
    return History({}, [dict(epoch=i + 1, val_accuracy=v) for i, v in enumerate(values)])


def test_gamma_histograms_share_a_log_gamma_axis():
    """A silenced run (gammas near 1e-6) and an active one (near 0.5) on the same log |gamma| axis, so that the
    panels compare; the sparsity threshold is drawn."""
    models = {"active": _vgg_with_gammas([0.4, 0.5, 0.6, 0.5] * 2),
              "silenced": _vgg_with_gammas([1e-6, 2e-6, 5e-7, 1e-6] * 2)}
    fig = plots.plot_gamma_histograms(models, percents=(0.5,), threshold=0.01)
    axes = fig.axes
    assert all(ax.get_xscale() == "log" for ax in axes)
    assert axes[0].get_xlim() == axes[1].get_xlim()
    low, high = axes[0].get_xlim()
    assert low < 1e-6 and high > 0.6, (low, high)
    assert any("sparsity threshold" in text.get_text() for text in axes[0].get_legend().get_texts())


def test_curves_start_at_epoch_0_when_given_and_take_styles():
    histories = {"scratch, seed 0": _history([20, 30]), "KD, seed 0": _history([25, 40])}
    fig = plots.plot_curves(histories, "val_accuracy", start={"KD, seed 0": 10.0},
                            styles={"scratch, seed 0": dict(color="C0", linestyle="--"),
                                    "KD, seed 0": dict(color="C0", linestyle="-")})
    scratch, kd = fig.axes[0].get_lines()
    assert list(kd.get_xdata()) == [0, 1, 2] and list(kd.get_ydata()) == [10.0, 25, 40]
    assert list(scratch.get_xdata()) == [1, 2]
    assert scratch.get_color() == kd.get_color() and scratch.get_linestyle() != kd.get_linestyle()


def test_sweep_draws_its_float_reference():
    fig = plots.plot_sweep({"max|w|": {8: 84.0, 4: 80.0}}, "bits", "accuracy", reference=("float", 86.0))
    reference = [line for line in fig.axes[0].get_lines() if line.get_label() == "float"]
    assert reference and set(reference[0].get_ydata()) == {86.0}


def test_frequency_responses_name_their_filters():
    filters = torch.randn(3, 51)
    fig = plots.plot_frequency_responses({"before": filters, "after": filters}, 16000,
                                         names=["filter 0", "filter 10", "filter 20"])
    legend = fig.axes[-1].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["filter 0", "filter 10", "filter 20"]
    before, after = (ax.get_lines() for ax in fig.axes)
    assert [line.get_color() for line in before] == [line.get_color() for line in after]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    matplotlib.pyplot.close("all")
