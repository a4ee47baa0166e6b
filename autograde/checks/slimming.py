"""Hidden checks of the slimming assignment (sparsity_train, vggprune, train_prune_model).

Each function raises AssertionError with a message meant for the student, or returns quietly. They take the
student's function or the folder of the submitted artifacts and never trust printed numbers: checkpoints are
loaded with lib.checkpoint (weights_only=True) and evaluated on the test split, histories are cross-checked
against the checkpoints they belong to.

Artifact names (fixed; the kd assignment reads some of them):
    sparsity_<tag>.pt/.json     one run per lambda of profile "slimming" -> lambdas (tag -> s): best epoch
    sparsity_<tag>_last.pt      the same run's last epoch
    pruned_<pct>.pt             the sparse model (tag `sparse_tag`) pruned by `pct` percent, before fine-tuning
    finetuned_<pct>.pt/.json    that pruned model after fine-tuning
"""
import copy
from pathlib import Path

import torch

from autograde.reference import slimming as reference
from lib import profile
from lib.checkpoint import CheckpointError, load_checkpoint, load_model
from lib.data import images
from lib.models import VGG
from lib.slimming import bn_layers, sparsity, zero_pruned_channels
from lib.train import History, evaluate, last_path

# A checkpoint re-evaluated here may differ from the accuracy its history recorded by a few test images
# (another device, another BLAS): 1 point of accuracy is 3-4 of the 360 quick-profile test images.
ACCURACY_TOLERANCE = 1.0


def settings():
    """The "slimming" section of the active profile."""
    return profile.config("slimming")


def pct_tag(percent):
    """0.5 -> "50": the suffix of the pruned/fine-tuned artifacts of a pruning percent."""
    return f"{round(percent * 100):d}"


# ----------------------------------------------------------------------------------------------- update_bn

def _seeded(function):
    """`function(seed, ...)` run under its own seed, leaving the caller's random state as it was."""
    def seeded(seed, *args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return function(seed, *args, **kwargs)
    return seeded


@_seeded
def _seeded_model(seed, cfg):
    """A small VGG whose BN gammas are random, signed, some exactly 0, and whose parameters all have a grad."""
    model = VGG(cfg, num_classes=10)
    with torch.no_grad():
        for bn in bn_layers(model):
            g = torch.randn(bn.num_features) * 0.5
            g[torch.randperm(bn.num_features)[:2]] = 0.0   # sign(0) = 0: no push on an exact 0
            bn.weight.copy_(g)
    for p in model.parameters():
        p.grad = torch.randn_like(p)   # an existing gradient, as after loss.backward()
    return model


def _grads(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def check_update_bn(update_bn):
    """update_bn(model, s) must add s * sign(gamma) to each BN gamma's gradient and change nothing else."""
    cfgs = [[6, 'M', 8, 8, 'M', 5], [4, 4, 'M', 7], [3, 'M', 5, 'M', 6, 'M', 9]]
    for seed, cfg in enumerate(cfgs):
        for s in (1e-4, 1e-2, 0.5):
            model = _seeded_model(seed, cfg)
            grads_before, params_before = _grads(model), _params(model)
            expected = _seeded_model(seed, cfg)
            reference.update_bn(expected, s)
            expected_grads = _grads(expected)
            update_bn(model, s)
            bn_names = {name for name, p in model.named_parameters()
                        if any(p is bn.weight for bn in bn_layers(model))}
            for name, p in model.named_parameters():
                assert p.grad is not None, f"update_bn removed the gradient of {name} (set .grad to None)"
                assert torch.equal(p.detach(), params_before[name]), (
                    f"update_bn changed the parameter values of {name}: it must only change gradients "
                    "(the optimizer step updates the weights)")
                if name not in bn_names:
                    assert torch.equal(p.grad, grads_before[name]), (
                        f"update_bn changed the gradient of {name}, which is not a BatchNorm scale factor "
                        "(only the BN weights, the gammas, get the L1 penalty)")
                    continue
                if torch.allclose(p.grad, expected_grads[name], rtol=1e-5, atol=1e-7):
                    continue
                _explain_update_bn(name, p, grads_before[name], s)
    # s = 0 is the baseline run: nothing may change.
    model = _seeded_model(0, cfgs[0])
    before = _grads(model)
    update_bn(model, 0.0)
    for name, g in _grads(model).items():
        assert torch.equal(g, before[name]), f"update_bn(model, 0) changed the gradient of {name}"


def _explain_update_bn(name, p, grad_before, s):
    """Raise an AssertionError that says how the BN gradient differs from grad + s * sign(gamma)."""
    gamma, got = p.detach(), p.grad.detach()
    added = got - grad_before
    sign = torch.sign(gamma)
    hints = [
        (added, -s * sign, "the sign is wrong: the L1 subgradient is +s * sign(gamma), it pulls gamma towards 0"),
        (added, s * gamma, "this is the L2 penalty's gradient s * gamma; network slimming uses L1: s * sign(gamma)"),
        (got, s * sign, "the existing gradient was overwritten: add s * sign(gamma) to it (grad.add_(...))"),
        (added, torch.zeros_like(added), "this BN layer's gradient was not changed: every BN layer gets the penalty"),
    ]
    for value, wrong, hint in hints:
        if torch.allclose(value, wrong, rtol=1e-5, atol=1e-7):
            raise AssertionError(f"update_bn, gradient of {name}: {hint}")
    zero = gamma == 0
    if zero.any() and not torch.allclose(added[zero], torch.zeros_like(added[zero]), atol=1e-7):
        raise AssertionError(f"update_bn, gradient of {name}: a gamma that is exactly 0 must get no push "
                             "(sign(0) = 0), but its gradient changed")
    raise AssertionError(f"update_bn, gradient of {name} with s={s}: expected grad + s * sign(gamma) = "
                         f"{(grad_before + s * sign)[:4].tolist()}..., got {got[:4].tolist()}...")


# ------------------------------------------------------------------------------------------ sparsity runs

def _load_run(artifacts, tag):
    """(VGG with the checkpoint's weights, its meta, its History) of the run `sparsity_<tag>`."""
    path = Path(artifacts) / f"sparsity_{tag}.pt"
    try:
        model, meta = load_model(path, VGG)
        history = History.load(path.with_suffix(".json"))
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        raise AssertionError(f"{error}") from None
    return model, meta, history


def _record_at(history, meta, path):
    """The history record of the epoch whose weights the checkpoint holds."""
    assert "epoch" in meta, f"{path} has no epoch in its meta: save it with lib.train.fit / fit_or_load"
    records = [r for r in history.records if r["epoch"] == meta["epoch"]]
    assert records, f"{path} was saved at epoch {meta['epoch']}, but its history has no record of that epoch"
    return records[0]


def _check_record_sparsity(model, record, path, threshold):
    found = sparsity(model, threshold)
    assert abs(record["sparsity"] - found) < 1e-6, (
        f"{path}: the history says sparsity {record['sparsity']:.4f} at epoch {record['epoch']}, but the "
        f"checkpoint's gammas give {found:.4f}; the checkpoint and its history are from different runs")


def check_sparsity_curves(artifacts="artifacts"):
    """One complete run per lambda; final sparsity strictly increases with lambda; histories match checkpoints.

    Both checkpoints of a run are cross-checked with its history: sparsity_<tag>.pt (best epoch) with the
    record of its epoch, sparsity_<tag>_last.pt with the last record.
    """
    lambdas = settings()["lambdas"]
    threshold = profile.config("sparsity_threshold")
    epochs = profile.config("vgg")["epochs"]
    finals = []
    for tag, s in sorted(lambdas.items(), key=lambda item: item[1]):
        model, meta, history = _load_run(artifacts, tag)
        path = Path(artifacts) / f"sparsity_{tag}.pt"
        assert history.config.get("s") == s, (
            f"{path.with_suffix('.json')} was trained with s={history.config.get('s')}, the run '{tag}' needs "
            f"s={s} (profile section 'slimming', lambdas)")
        assert len(history) == epochs, (
            f"{path.with_suffix('.json')} has {len(history)} epochs, the profile trains {epochs}: "
            "re-run the training cell to the end")
        _check_record_sparsity(model, _record_at(history, meta, path), path, threshold)
        last = last_path(path)
        try:
            last_model, last_meta = load_model(last, VGG)
        except CheckpointError as error:
            raise AssertionError(f"{error} (fit_or_load(..., save_last=True) writes it)") from None
        assert last_meta.get("epoch") == epochs, (
            f"{last} holds epoch {last_meta.get('epoch')}, not the last one ({epochs}): re-run the training cell")
        _check_record_sparsity(last_model, history.records[-1], last, threshold)
        finals.append((s, history["sparsity"][-1]))
    for (s_low, low), (s_high, high) in zip(finals, finals[1:]):
        assert high > low, (
            f"final sparsity should grow with lambda, but s={s_high:g} ends at {high:.3f} and s={s_low:g} at "
            f"{low:.3f}; check that update_bn is passed to the training (after_backward) with each run's s")


def _checked_accuracy(model, history_record, path, test_loader):
    """Test accuracy of `model`, after checking it against the accuracy its history recorded."""
    _, accuracy = evaluate(model, test_loader, device=torch.device("cpu"), progress=False)
    recorded = history_record["val_accuracy"]
    assert abs(accuracy - recorded) <= ACCURACY_TOLERANCE, (
        f"{path} evaluates to {accuracy:.2f}% on the test split, but its history recorded {recorded:.2f}% "
        "for that epoch: the checkpoint and its history are from different runs")
    return accuracy


def check_sparsity_accuracy(artifacts="artifacts"):
    """The baseline (lambda=0) and the sparse model that vggprune prunes reach the profile's accuracy."""
    config = settings()
    test_loader = images.loaders()["test"]
    for tag, key in (("s0", "baseline_accuracy"), (config["sparse_tag"], "sparse_accuracy")):
        model, meta, history = _load_run(artifacts, tag)
        path = Path(artifacts) / f"sparsity_{tag}.pt"
        accuracy = _checked_accuracy(model, _record_at(history, meta, path), path, test_loader)
        assert accuracy >= config[key], (
            f"{path} reaches {accuracy:.2f}% test accuracy; at least {config[key]}% is expected "
            f"(profile {profile.name()}, {key})")


# ----------------------------------------------------------------------------------------- build_cfg_mask

@_seeded
def _gamma_set(seed, cfg=(12, 'M', 16, 10, 'M', 14, 8)):
    """A small VGG whose BN layers have very different |gamma| scales, negative gammas, ties and zeros.

    Layer 1's gammas are all tiny, so any threshold above them leaves it to the min_channels rule; the
    layers' scales differ so that a per-layer threshold gives another cfg than the global one.
    """
    model = VGG(list(cfg), num_classes=10)
    scales = [1.0, 1e-3, 0.3, 2.0, 0.05]
    with torch.no_grad():
        for i, bn in enumerate(bn_layers(model)):
            g = torch.randn(bn.num_features) * scales[i % len(scales)]
            if i == 2:
                g[:3] = g.abs().min()  # ties, at the bottom so that no top-k has to break them
            if i == 3:
                g[:2] = 0.0            # exact zeros
            bn.weight.copy_(g)
    return model


def _compare_cfg_mask(build_cfg_mask, model, percent, min_channels, where):
    expected_cfg, expected_mask = reference.build_cfg_mask(copy.deepcopy(model), percent, min_channels)
    result = build_cfg_mask(copy.deepcopy(model), percent, min_channels)
    assert isinstance(result, tuple) and len(result) == 2, "build_cfg_mask must return a pair (cfg, cfg_mask)"
    cfg, cfg_mask = result
    call = f"build_cfg_mask(model, percent={percent}, min_channels={min_channels}) on {where}"
    assert len(cfg_mask) == len(expected_mask), (
        f"{call}: cfg_mask has {len(cfg_mask)} masks, expected one per BN layer ({len(expected_mask)})")
    cfg = [v if v == 'M' else int(v) for v in cfg]
    if cfg != expected_cfg:
        hint = _hint_cfg(model, percent, min_channels, cfg)
        raise AssertionError(f"{call}: cfg {cfg}, expected {expected_cfg}.{hint}")
    for i, (mask, expected) in enumerate(zip(cfg_mask, expected_mask)):
        mask = torch.as_tensor(mask).detach().cpu().float().flatten()
        assert mask.shape == expected.shape and torch.equal(mask, expected), (
            f"{call}: cfg_mask[{i}] keeps channels {mask.nonzero().flatten().tolist()}, expected "
            f"{expected.nonzero().flatten().tolist()} (the channels with the largest |gamma|)")


def _hint_cfg(model, percent, min_channels, cfg):
    """A sentence naming the likely mistake when the cfg matches a known wrong variant."""
    g = torch.sort(torch.cat([bn.weight.detach().abs() for bn in bn_layers(model)])).values
    threshold = g[min(int(len(g) * percent), len(g) - 1)]
    ints = [v for v in cfg if v != 'M']
    layers = bn_layers(model)
    if ints == [int((bn.weight.detach().abs() >= threshold).sum().clamp(min=min_channels)) for bn in layers]:
        return " Keep a channel only when |gamma| is strictly greater than the threshold (>, not >=)."
    if ints == [int((bn.weight.detach().abs() > threshold).sum()) for bn in layers]:
        return f" A layer must keep at least min_channels={min_channels} channels (its largest |gamma|)."
    if any(v < 1 for v in ints):
        return " A layer with no channel left cuts the network in two: apply the min_channels rule."
    return (" The threshold is one value for the whole network: sort all |gamma| of all BN layers together "
            "and take the one at index int(total * percent); percent is the fraction pruned.")


def check_build_cfg_mask(build_cfg_mask, artifacts="artifacts"):
    """cfg and cfg_mask equal the reference's on seeded gamma sets and on the student's sparse checkpoint."""
    for seed in range(3):
        model = _gamma_set(seed)
        for percent in (0.5, 0.9):
            for min_channels in (1, 3):
                _compare_cfg_mask(build_cfg_mask, model, percent, min_channels, f"seeded gamma set {seed}")
    config = settings()
    path = Path(artifacts) / f"sparsity_{config['sparse_tag']}.pt"
    try:
        model, _ = load_model(path, VGG)
    except CheckpointError as error:
        raise AssertionError(str(error)) from None
    for percent in config["percents"]:
        _compare_cfg_mask(build_cfg_mask, model, percent, config["min_channels"], str(path))


# ------------------------------------------------------------------------------------ pruned / fine-tuned

def _sparse_model(artifacts):
    path = Path(artifacts) / f"sparsity_{settings()['sparse_tag']}.pt"
    try:
        return load_model(path, VGG)[0]
    except CheckpointError as error:
        raise AssertionError(str(error)) from None


def check_pruned_models(artifacts="artifacts"):
    """pruned_<pct>.pt: the reference cfg of the student's sparse model, and the same outputs as that model
    with the pruned channels zeroed (prune_vgg's invariant), on a batch of test images."""
    config = settings()
    sparse = _sparse_model(artifacts).eval()
    inputs, _ = next(iter(images.loaders()["test"]))
    for percent in config["percents"]:
        path = Path(artifacts) / f"pruned_{pct_tag(percent)}.pt"
        cfg, cfg_mask = reference.build_cfg_mask(sparse, percent, config["min_channels"])
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as error:
            raise AssertionError(str(error)) from None
        assert list(ckpt["cfg"]) == cfg, (
            f"{path} has cfg {ckpt['cfg']}, but pruning the sparse model by {percent:.0%} with "
            f"min_channels={config['min_channels']} gives {cfg}; re-run vggprune")
        pruned, _ = load_model(path, VGG)
        with torch.no_grad():
            got = pruned.eval()(inputs)
            expected = zero_pruned_channels(sparse, cfg_mask).eval()(inputs)
        scale = expected.abs().max().item() + 1e-6
        error = (got - expected).abs().max().item()
        assert error <= 1e-4 * scale, (
            f"{path}: its outputs differ from the sparse model's with the pruned channels zeroed by up to "
            f"{error:.2e}; the kept weights were not copied right (use lib.slimming.prune_vgg)")


def finetune_hp(percent):
    """The fine-tuning hyperparameters of the model pruned by `percent` (what train_prune_model passes)."""
    return dict(profile.config("vgg"), epochs=settings()["finetune_epochs"], lr=settings()["finetune_lr"],
                percent=percent)


def check_finetuned(artifacts="artifacts"):
    """finetuned_<pct>.pt: fine-tuned from pruned_<pct>.pt (same cfg, complete history) to the profile's accuracy."""
    config = settings()
    test_loader = images.loaders()["test"]
    for percent in config["percents"]:
        tag = pct_tag(percent)
        path = Path(artifacts) / f"finetuned_{tag}.pt"
        try:
            pruned_cfg = load_checkpoint(Path(artifacts) / f"pruned_{tag}.pt")["cfg"]
            model, meta = load_model(path, VGG)
            history = History.load(path.with_suffix(".json"))
        except (CheckpointError, FileNotFoundError, ValueError) as error:
            raise AssertionError(str(error)) from None
        assert list(model.cfg) == list(pruned_cfg), (
            f"{path} has cfg {model.cfg}, but pruned_{tag}.pt has {pruned_cfg}: fine-tune the pruned model")
        expected = History(finetune_hp(percent)).config       # as the history stores it (tuples as lists)
        assert history.config == expected and len(history) == expected["epochs"], (
            f"{path.with_suffix('.json')} should be {expected['epochs']} epochs of fine-tuning with {expected}; "
            f"found {len(history)} epochs with {history.config}")
        accuracy = _checked_accuracy(model, _record_at(history, meta, path), path, test_loader)
        need = config["finetuned_accuracy"][tag]
        assert accuracy >= need, (
            f"{path} reaches {accuracy:.2f}% test accuracy after fine-tuning; at least {need}% is expected "
            f"(profile {profile.name()})")
