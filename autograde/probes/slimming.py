"""Probes of the slimming TODOs, update_bn, build_cfg_mask, prune_vgg and absorb_constants, and their inputs.

The judges (autograde.checks.slimming) import the input generators from here, so probe and judge build the
very same models from the same seed. Every seed is a valid test: the properties the checks rely on (exact
zero gammas, non-zero BN biases, tiny layers, a threshold that strict > decides...) hold by construction.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lib import profile
from lib.artifacts import FOLDER, checkpoint_file, sparsity_run
from lib.checkpoint import load_model
from lib.models import VGG
from lib.slimming import bn_layers, check_cfg_mask

from . import attempt, away_from_zero, generator, plain, plain_tensor, seeded, text

if TYPE_CHECKING:     # hints only: nothing more is imported in the sandbox
    from collections.abc import Callable
    from typing import Any

    from lib.models.vgg import VGGCfg

# ----------------------------------------------------------------------------------------------- update_bn

UPDATE_BN_S = (1e-4, 1e-2, 0.5)   # the paper's s, a strong one, and one large enough to see any scaling bug


def update_bn_cases(seed: int) -> list[tuple[tuple[int, str, int], VGGCfg, float]]:
    """[(model_seed, cfg, s), ...]: what update_bn is run on, in order.

    Three cfgs (2 to 4 BN layers of 3 to 10 channels, max-pools at different places), each with every s of
    UPDATE_BN_S, then the first one with s = 0 (the baseline run, where nothing may change).
    """
    g = generator(seed, "update_bn", "cfgs")

    def width() -> int:
        return int(torch.randint(3, 11, (), generator=g))

    cfgs: list[VGGCfg] = [[width(), 'M', width(), width(), 'M', width()],
            [width(), width(), 'M', width()],
            [width(), 'M', width(), 'M', width(), 'M', width()]]
    cases = [((seed, "update_bn", i), cfg, s) for i, cfg in enumerate(cfgs) for s in UPDATE_BN_S]
    return cases + [((seed, "update_bn", 0), cfgs[0], 0.0)]


def update_bn_model(model_seed: tuple[int | str, ...], cfg: VGGCfg) -> VGG:
    """VGG(cfg) as right after loss.backward(), the same for the same (model_seed, cfg).

    BN gammas: signed, |gamma| >= 0.05, then two exact zeros per layer (sign(0) = 0: no push there) and one
    tiny one, |gamma| in [1e-8, 1e-5] (as sparsity training leaves them: it still gets the full push s).
    BN biases: signed and |bias| >= 0.05, so that a penalty wrongly put on the biases changes their gradient.
    Every parameter has a gradient with |grad| >= 0.05 (an overwritten gradient shows).
    """
    with seeded(*model_seed):
        model = VGG(list(cfg), num_classes=10)
        with torch.no_grad():
            for bn in bn_layers(model):
                gamma = away_from_zero(torch.randn(bn.num_features) * 0.5)
                zero, tiny = torch.randperm(bn.num_features)[:3].split([2, 1])
                gamma[tiny] = gamma[tiny].sign() * 10 ** (-8 + 3 * torch.rand(1))
                gamma[zero] = 0.0
                bn.weight.copy_(gamma)
                bn.bias.copy_(away_from_zero(torch.randn(bn.num_features) * 0.5))
        for p in model.parameters():
            p.grad = away_from_zero(torch.randn_like(p))
    return model


VISIBLE_UPDATE_BN_S = 0.1


def visible_update_bn_model() -> VGG:
    """The notebook's visible test_update_bn model: VGG([4, 'M', 3]) with set gammas, every gradient 1."""
    with seeded("visible update_bn"):
        model = VGG([4, 'M', 3], num_classes=10)
    with torch.no_grad():
        bn_layers(model)[0].weight.copy_(torch.tensor([0.5, -0.2, 0.0, 1.0]))
        bn_layers(model)[1].weight.copy_(torch.tensor([-3.0, 0.1, 0.2]))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    return model


def _run_update_bn(update_bn: Callable[..., object], model: VGG, s: float) -> dict[str, Any]:
    """{"grads": {name: grad or None}, "params": {name: value}} of `model` after update_bn(model, s),
    or {"error": ...} when update_bn (or reading the model afterwards) raises."""
    _, error = attempt(update_bn, model, s)
    if error:
        return error

    def read() -> dict[str, dict[str, torch.Tensor | None]]:
        parameters = list(model.named_parameters())
        return {"grads": {name: p.grad for name, p in parameters},
                "params": {name: p.detach() for name, p in parameters}}

    result, error = attempt(read)
    return error or result


def probe_update_bn(update_bn: Callable[..., object], seed: int) -> dict[str, Any]:
    """Run update_bn on the visible test's model and on the models of update_bn_cases(seed).

    Returns {"visible": result, "cases": [result, ...]} (one result per case, in order), where a result is
    what _run_update_bn records. About 20 ms.
    """
    with seeded(seed, "probe update_bn"):
        record = {"visible": _run_update_bn(update_bn, visible_update_bn_model(), VISIBLE_UPDATE_BN_S),
                  "cases": [_run_update_bn(update_bn, update_bn_model(model_seed, cfg), s)
                            for model_seed, cfg, s in update_bn_cases(seed)]}
    return plain(record)


# ----------------------------------------------------------------------------------------- build_cfg_mask

# The gamma sets' cfgs. Layers 1 and 4's tiny gammas together are under half of the channels, so every tested
# percent's threshold lies above all of them.
GAMMA_SET_CFGS: tuple[VGGCfg, ...] = ([12, 'M', 16, 10, 'M', 14, 8],
                  [10, 'M', 12, 16, 'M', 9, 'M', 14, 6],
                  [16, 14, 'M', 9, 12, 'M', 11])
# |gamma| scale of layer i (cycled). Layers 1 and 4 are tiny, (0, 1e-3] (layer 4 but its one or two strong
# channels), 15x below the smallest |gamma| of any other layer (0.3 * 0.05); the others differ by up to 7x,
# so that one global threshold cuts them very differently and a per-layer threshold gives another cfg.
LAYER_SCALES = (1.0, 1e-3, 0.3, 2.0, 1e-3)
CFG_MASK_PERCENTS = (0.5, 0.9)
CFG_MASK_MIN_CHANNELS = (1, 3)


def _draw_gammas(model: VGG, g: torch.Generator) -> None:
    """Fill the BN weights of `model` from generator `g`: signed, |gamma| in [0.05, 1] * the layer's scale
    (layer 1: in (0, 1e-3]), ties at the bottom of layer 2, two exact zeros in layer 3, and in layer 4 one
    or two channels above every other |gamma| with the rest in (0, 1e-3]: at each tested percent it keeps
    some channels, but fewer than max(CFG_MASK_MIN_CHANNELS) (min_channels must top up such a layer too)."""
    with torch.no_grad():
        for i, bn in enumerate(bn_layers(model)):
            n, scale = bn.num_features, LAYER_SCALES[i % len(LAYER_SCALES)]
            low = 0.0 if i in (1, 4) else 0.05
            magnitude = scale * (low + (1 - low) * torch.rand(n, generator=g))
            if i == 4:
                strong = torch.randperm(n, generator=g)[:int(torch.randint(1, 3, (), generator=g))]
                magnitude[strong] = max(LAYER_SCALES) * (1.1 + 0.5 * torch.rand(len(strong), generator=g))
            sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
            gamma = sign * magnitude
            if i == 2:
                gamma[:3] = gamma.abs().min()   # ties, at the bottom so that no top-k has to break them
            if i == 3:
                gamma[:2] = 0.0                 # exact zeros
            bn.weight.copy_(gamma)


def _strict_threshold_matters(model: VGG, percent: float, min_channels: int) -> bool:
    """True when the threshold |gamma| at `percent` lies in a layer that keeps at least `min_channels`
    channels strictly above it: there keeping |gamma| >= threshold gives another cfg than > threshold."""
    values = torch.sort(torch.cat([bn.weight.detach().abs() for bn in bn_layers(model)])).values
    threshold = values[min(int(len(values) * percent), len(values) - 1)]
    for bn in bn_layers(model):
        g = bn.weight.detach().abs()
        if (g == threshold).any():
            return int((g > threshold).sum()) >= min_channels
    return False


def gamma_set(seed: int, index: int) -> VGG:
    """VGG(GAMMA_SET_CFGS[index]) with the gammas of `_draw_gammas`, the same for the same (seed, index).

    Redrawn (from the same private generator, so still determined by the seed) until the threshold at
    percent 0.5 lies in a layer that keeps max(CFG_MASK_MIN_CHANNELS) channels above it: then >= instead
    of > changes the cfg for every seed. Nearly every draw qualifies.
    """
    g = generator(seed, "gamma set", index)
    with seeded(seed, "gamma set", index):
        model = VGG(list(GAMMA_SET_CFGS[index]), num_classes=10)
    for _ in range(1000):
        _draw_gammas(model, g)
        if _strict_threshold_matters(model, CFG_MASK_PERCENTS[0], max(CFG_MASK_MIN_CHANNELS)):
            break
    return model


def cfg_mask_cases(seed: int) -> list[tuple[int, float, int]]:
    """[(set index, percent, min_channels), ...]: the calls on the seeded gamma sets, in order."""
    return [(i, p, m) for i in range(len(GAMMA_SET_CFGS)) for p in CFG_MASK_PERCENTS for m in CFG_MASK_MIN_CHANNELS]


# The notebook's visible test: sorted |gamma| 0.01 0.02 0.1 0.2 [0.3] 0.4 0.5 0.6 -> threshold 0.3 at 0.5.
VISIBLE_CFG_MASK_CALLS = ((0.5, 1), (0.5, 2))


def visible_cfg_mask_model() -> VGG:
    """The visible test_build_cfg_mask model: VGG([4, 'M', 4]) with set gammas."""
    with seeded("visible build_cfg_mask"):
        model = VGG([4, 'M', 4], num_classes=10)
    with torch.no_grad():
        bn_layers(model)[0].weight.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
        bn_layers(model)[1].weight.copy_(torch.tensor([0.01, 0.02, -0.5, 0.6]))
    return model


def sparse_checkpoint(artifacts: str | Path = FOLDER) -> tuple[Path, list[float], int]:
    """(path, percents, min_channels): the student's sparse model that vggprune prunes, and how."""
    config = profile.config("slimming")
    path = Path(artifacts) / checkpoint_file(sparsity_run(config["sparse_tag"]))
    return path, config["percents"], config["min_channels"]


def _cfg_entry(value: object) -> int | str:
    """One cfg entry as plain data: a str stays a str ('M'), anything else becomes int(value) as the
    notebooks read it, or a "<type>" string when it is no number."""
    if isinstance(value, str):
        return text(value, 50)
    number, error = attempt(int, value)
    return number if error is None else f"<{text(type(value).__name__, 50)}>"


def _mask(value: object) -> torch.Tensor | dict[str, str]:
    """One mask as a flat float tensor, or {"error": ...}."""
    def convert() -> torch.Tensor:
        return plain_tensor(value).float().flatten()
    result, error = attempt(convert)
    return error or result


def _run_cfg_mask(build_cfg_mask: Callable[..., object], model: VGG, percent: float,
                  min_channels: int) -> dict[str, Any]:
    """What build_cfg_mask(copy of model, percent, min_channels) returned, as plain data:
    {"is_tuple": bool, "length": int or None, "cfg": [int or str, ...], "masks": [tensor or error, ...]}
    ("cfg" and "masks" only for a pair), or {"error": ...}."""
    result, error = attempt(build_cfg_mask, copy.deepcopy(model), percent, min_channels)
    if error:
        return error

    def read() -> dict[str, Any]:
        length, _ = attempt(len, result)
        entry: dict[str, Any] = {"is_tuple": isinstance(result, tuple),
                                 "length": length if type(length) is int else None,
                                 "type": text(type(result).__name__, 100)}
        if entry["length"] == 2:
            cfg, masks = result
            entry["cfg"] = [_cfg_entry(v) for v in cfg]
            entry["masks"] = [_mask(m) for m in masks]
        return entry

    entry, error = attempt(read)
    return error or entry


def probe_build_cfg_mask(build_cfg_mask: Callable[..., object], seed: int,
                         artifacts: str | Path = FOLDER) -> dict[str, Any]:
    """Run build_cfg_mask on the visible test's model, on the gamma sets of cfg_mask_cases(seed), and on the
    student's sparse checkpoint (sparse_checkpoint(artifacts)) for each of the profile's percents.

    Returns {"visible": [result per VISIBLE_CFG_MASK_CALLS], "sets": [result per case],
    "checkpoint": [result per percent] or {"error": ...} when the checkpoint cannot be loaded}; a result is
    what _run_cfg_mask records. About 0.1 s.
    """
    with seeded(seed, "probe build_cfg_mask"):
        visible = visible_cfg_mask_model()
        record: dict[str, Any] = {"visible": [_run_cfg_mask(build_cfg_mask, visible, p, m)
                                              for p, m in VISIBLE_CFG_MASK_CALLS]}
        models = [gamma_set(seed, i) for i in range(len(GAMMA_SET_CFGS))]
        record["sets"] = [_run_cfg_mask(build_cfg_mask, models[i], p, m) for i, p, m in cfg_mask_cases(seed)]
        path, percents, min_channels = sparse_checkpoint(artifacts)
        loaded, error = attempt(load_model, path, VGG)
        record["checkpoint"] = error or [_run_cfg_mask(build_cfg_mask, loaded[0], p, min_channels)
                                         for p in percents]
    return plain(record)


# ---------------------------------------------------------------------------------------------- prune_vgg

PRUNE_VGG_CASES = 4   # random models; in the last one every layer keeps a single channel


def image_size(cfg: VGGCfg) -> int:
    """The input side that leaves VGG(cfg) a 2x2 feature map (its forward average-pools that to 1x1)."""
    return 2 * 2 ** cfg.count('M')


def _draw_cfg(g: torch.Generator) -> VGGCfg:
    """A VGG cfg of 3 to 5 convs of 3 to 10 channels with 1 or 2 max-pools, never first."""
    convs = int(torch.randint(3, 6, (), generator=g))
    cfg: VGGCfg = [int(torch.randint(3, 11, (), generator=g)) for _ in range(convs)]
    pools = 1 + int(torch.randint(0, 2, (), generator=g))
    for place in sorted(torch.randperm(convs - 1, generator=g)[:pools].tolist(), reverse=True):
        cfg.insert(place + 1, 'M')
    return cfg


def _draw_mask(width: int, keep: int, g: torch.Generator) -> torch.Tensor:
    """A float 0/1 tensor of `width` entries with `keep` ones at random places, never the first `keep` ones
    (unless keep == width): so copying the first channels instead of the kept ones always shows."""
    while True:
        mask = torch.zeros(width)
        mask[torch.randperm(width, generator=g)[:keep]] = 1.0
        if keep == width or mask[:keep].sum() < keep:
            return mask


def randomize_vgg(model: VGG, g: torch.Generator) -> VGG:
    """Fill every weight, BN parameter and BN running statistic of `model` from generator `g`, in place.

    Non-trivial everywhere, so that a value copied from the wrong place or not at all shows: signed gammas
    and betas, running means around 0, running variances in [0.2, 3], a non-zero classifier bias.
    """
    with torch.no_grad():
        for bn in bn_layers(model):
            n = bn.num_features
            assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
            bn.weight.copy_(torch.randn(n, generator=g))
            bn.bias.copy_(torch.randn(n, generator=g) * 0.5)
            bn.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            bn.running_var.copy_(0.2 + 2.8 * torch.rand(n, generator=g))
            bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, (), generator=g)))
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
        model.classifier.bias.copy_(torch.randn(model.classifier.bias.shape, generator=g))
    return model.eval()


def prune_vgg_case(seed: int, index: int) -> tuple[VGG, VGGCfg, list[torch.Tensor]]:
    """(model, cfg, cfg_mask) of case `index`, the same for the same (seed, index).

    model: a random VGG (randomize_vgg) in eval mode. Each layer keeps a random number of channels at random
    places; one layer keeps 1 channel (the min_channels floor), another keeps all; in the last case every
    layer keeps 1 channel.
    """
    g = generator(seed, "prune_vgg", index)
    with seeded(seed, "prune_vgg", index):
        model = VGG(_draw_cfg(g), num_classes=int(torch.randint(2, 11, (), generator=g)))
    randomize_vgg(model, g)
    widths = [bn.num_features for bn in bn_layers(model)]
    keeps = [int(torch.randint(1, w + 1, (), generator=g)) for w in widths]
    floor, full = torch.randperm(len(widths), generator=g)[:2].tolist()
    keeps[floor], keeps[full] = 1, widths[full]
    if index == PRUNE_VGG_CASES - 1:
        keeps = [1] * len(widths)
    cfg_mask = [_draw_mask(w, k, g) for w, k in zip(widths, keeps)]
    counts = iter(keeps)
    cfg: VGGCfg = ['M' if v == 'M' else next(counts) for v in model.cfg]
    check_cfg_mask(model, cfg, cfg_mask)
    return model, cfg, cfg_mask


# The notebook's visible test_prune_vgg: this model, cfg and cfg_mask (layer 1 at one channel, layer 2 whole).
VISIBLE_PRUNE_CFG: VGGCfg = [6, 'M', 5, 4]
VISIBLE_PRUNE_KEEP = ([1, 0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [1, 1, 1, 1])


def visible_prune_vgg_case() -> tuple[VGG, VGGCfg, list[torch.Tensor]]:
    """(model, cfg, cfg_mask) of the visible test_prune_vgg: its cell draws them after torch.manual_seed(0)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGG(VISIBLE_PRUNE_CFG, num_classes=10)
        with torch.no_grad():
            for bn in bn_layers(model):
                bn.weight.normal_()
                bn.bias.normal_(0, 0.5)
                assert bn.running_mean is not None and bn.running_var is not None
                bn.running_mean.normal_(0, 0.5)
                bn.running_var.uniform_(0.2, 3.0)
    cfg_mask = [torch.tensor(keep, dtype=torch.float32) for keep in VISIBLE_PRUNE_KEEP]
    return model.eval(), [3, 'M', 1, 4], cfg_mask


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """{name: tensor} of module.state_dict() as plain tensors; raises for anything else."""
    return {text(name, 200): plain_tensor(value) for name, value in dict(module.state_dict()).items()}


def _run_prune_vgg(prune_vgg: Callable[..., object], model: VGG, cfg: VGGCfg,
                   cfg_mask: list[torch.Tensor]) -> dict[str, Any]:
    """What prune_vgg(model, cfg, cfg_mask) returned, as plain data: {"type": str, "cfg": its cfg,
    "state": its state_dict, "original": model's state_dict after the call}, or {"error": ...}."""
    result, error = attempt(prune_vgg, model, list(cfg), [m.clone() for m in cfg_mask])
    if error:
        return error

    def read() -> dict[str, Any]:
        cfg_read, failed = attempt(lambda: [_cfg_entry(v) for v in result.cfg])
        return {"type": text(type(result).__name__, 100), "cfg": failed or cfg_read,
                "state": _state(result), "original": _state(model)}

    entry, error = attempt(read)
    return error or entry


def probe_prune_vgg(prune_vgg: Callable[..., object], seed: int) -> dict[str, Any]:
    """Run prune_vgg on the visible test's case and on the PRUNE_VGG_CASES cases of prune_vgg_case(seed).

    Returns {"visible": result, "cases": [result, ...]}, a result being what _run_prune_vgg records.
    The models are tiny (at most 5 convs of 10 channels): a record is a few hundred kB at most.
    """
    with seeded(seed, "probe prune_vgg"):
        record = {"visible": _run_prune_vgg(prune_vgg, *visible_prune_vgg_case()),
                  "cases": [_run_prune_vgg(prune_vgg, *prune_vgg_case(seed, i)) for i in range(PRUNE_VGG_CASES)]}
    return plain(record)


# --------------------------------------------------------------------------------------- absorb_constants

def absorb_case(seed: int, index: int) -> tuple[VGG, list[torch.Tensor]]:
    """(model, cfg_mask) of absorb_constants' case `index` (< PRUNE_VGG_CASES), the same for the same (seed, index).

    prune_vgg_case's model and masks, with the betas of each layer's pruned channels alternately positive and
    negative (|beta| >= 0.05): a constant taken as beta instead of ReLU(beta) shows in every layer that prunes two
    channels. In the last case every layer keeps one channel, so the last layer's constants reach the classifier.
    """
    model, _, cfg_mask = prune_vgg_case(seed, index)
    with torch.no_grad():
        for bn, mask in zip(bn_layers(model), cfg_mask):
            pruned = (mask == 0).nonzero().flatten()
            signs = torch.tensor([1.0, -1.0]).repeat(len(pruned))[:len(pruned)]
            bn.bias[pruned] = signs * away_from_zero(bn.bias[pruned]).abs()
    return model, cfg_mask


# The notebook's visible test_absorb_constants: this model and these masks, the values set by hand.
VISIBLE_ABSORB_CFG: VGGCfg = [3, 'M', 2]
VISIBLE_ABSORB_KEEP = ([0, 0, 1], [1, 0])


def visible_absorb_case() -> tuple[VGG, list[torch.Tensor]]:
    """(model, cfg_mask) of the visible test_absorb_constants, built as its cell builds them (after
    torch.manual_seed(0): the weights it does not set are VGG's random initial ones)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGG(VISIBLE_ABSORB_CFG, num_classes=2).eval()
    with torch.no_grad():
        bn_layers(model)[0].bias.copy_(torch.tensor([0.5, -1.0, 0.3]))
        bn_layers(model)[1].bias.copy_(torch.tensor([0.25, 2.0]))
        second_conv = model.feature[4]
        assert isinstance(second_conv, torch.nn.Conv2d)
        second_conv.weight.copy_(torch.arange(54.).reshape(2, 3, 3, 3) / 54)
        model.classifier.weight.copy_(torch.tensor([[1., 2.], [3., 4.]]))
        model.classifier.bias.zero_()
    return model, [torch.tensor(keep, dtype=torch.float32) for keep in VISIBLE_ABSORB_KEEP]


def _run_absorb_constants(absorb_constants: Callable[..., object], model: VGG,
                          cfg_mask: list[torch.Tensor]) -> dict[str, Any]:
    """What absorb_constants(model, cfg_mask) returned, as plain data: {"type": str, "state": its state_dict,
    "original": model's state_dict after the call}, or {"error": ...}."""
    result, error = attempt(absorb_constants, model, [m.clone() for m in cfg_mask])
    if error:
        return error
    entry, error = attempt(lambda: {"type": text(type(result).__name__, 100), "state": _state(result),
                                    "original": _state(model)})
    return error or entry


def probe_absorb_constants(absorb_constants: Callable[..., object], seed: int) -> dict[str, Any]:
    """Run absorb_constants on the visible test's case and on the PRUNE_VGG_CASES cases of absorb_case(seed).

    Returns {"visible": result, "cases": [result, ...]}, a result being what _run_absorb_constants records.
    """
    with seeded(seed, "probe absorb_constants"):
        record = {"visible": _run_absorb_constants(absorb_constants, *visible_absorb_case()),
                  "cases": [_run_absorb_constants(absorb_constants, *absorb_case(seed, i))
                            for i in range(PRUNE_VGG_CASES)]}
    return plain(record)
