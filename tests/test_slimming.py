"""The slimming assignment: reference vs solution cells, the hidden checks on right and wrong answers,
and the lib.slimming helpers the notebooks rely on (the pruned VGG's invariant, cfg/mask validation, the error
for a checkpoint of another cfg). Fast: no training; artifacts are fabricated in a temporary folder.
"""
import ast
import copy
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from records import Liar, judge_each_tampering, round_trip, same_plain_data
from autograde.checks import slimming as checks
from autograde.checks import common
from autograde.checks.common import VisibleCheckFailed
from autograde.course import SOLUTIONS, nbgrader_id, reference_code
from autograde.mutants.slimming import MUTANTS
from autograde.probes import slimming as probes
from autograde.reference import define
from autograde.reference import slimming as reference
from lib import profile
from lib.artifacts import percent_tag
from lib.checkpoint import CheckpointError, load_checkpoint, load_into, load_model, save_checkpoint
from lib.data import images
from lib.models import VGG, SincNet
import lib.slimming
import lib.train
from lib.slimming import bn_layers, check_cfg_mask, gammas, prune_sincnet, sparsity, zero_pruned_channels
from lib.train import History, evaluate, last_path


def _mutant(mutant):
    return define("slimming", mutant.notebook, mutant.cell, mutant.code)[mutant.cell]


def _random_vgg(seed, cfg=None, width=0.25):
    torch.manual_seed(seed)
    model = VGG(cfg, width=width) if cfg is None else VGG(cfg)
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.weight.copy_(torch.randn(bn.num_features) * torch.rand(1))
            bn.bias.normal_(0, 0.1)
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


# ----------------------------------------------------------------------------- fabricated student artifacts

@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A folder shaped like a finished student's artifacts/, made without training (seconds, not minutes)."""
    folder = tmp_path_factory.mktemp("slimming") / "artifacts"
    hp, config = profile.config("vgg"), profile.config("slimming")
    threshold = profile.config("sparsity_threshold")
    val_loader = images.loaders()["val"]
    for i, (tag, s) in enumerate(sorted(config["lambdas"].items(), key=lambda item: item[1])):
        model = _random_vgg(i, width=hp["width"])
        with torch.no_grad():   # more lambda, more gammas near zero
            for bn in bn_layers(model):
                bn.weight.mul_((torch.rand(bn.num_features) > 0.3 * i).float())
        _fake_run(model, dict(hp, s=s), folder / f"sparsity_{tag}.pt", val_loader, threshold, last=True)
    sparse = VGG(cfg=torch.load(folder / f"sparsity_{config['sparse_tag']}.pt", weights_only=True)["cfg"])
    load_into(sparse, folder / f"sparsity_{config['sparse_tag']}.pt")
    for percent in config["percents"]:
        tag = percent_tag(percent)
        pruned = reference.prune_vgg(sparse, *reference.build_cfg_mask(sparse, percent, config["min_channels"]))
        save_checkpoint(folder / f"pruned_{tag}.pt", pruned, meta=dict(percent=percent))
        _fake_run(pruned, checks.finetune_hp(percent), folder / f"finetuned_{tag}.pt", val_loader, threshold)
    return folder


def _fake_run(model, hp, path, val_loader, threshold, last=False):
    """Checkpoint + history of a `hp["epochs"]` run whose every epoch holds `model`'s weights."""
    _, accuracy = evaluate(model, val_loader, progress=False)
    records = [dict(epoch=e, train_loss=1.0, train_accuracy=accuracy, val_loss=1.0, val_accuracy=accuracy,
                    lr=0.1, train_time=1.0, val_time=0.1, sparsity=sparsity(model, threshold))
               for e in range(1, hp["epochs"] + 1)]
    save_checkpoint(path, model, meta=dict(epoch=1, val_accuracy=accuracy))
    if last:
        save_checkpoint(last_path(path), model, meta=dict(epoch=hp["epochs"], val_accuracy=accuracy))
    History(hp, records).save(path.with_suffix(".json"))


@pytest.fixture
def no_thresholds(monkeypatch):
    """Accuracy thresholds at 0: the fabricated models are untrained."""
    section = profile.TABLES[profile.name()]["slimming"]
    for key in ("baseline_accuracy", "sparse_accuracy"):
        monkeypatch.setitem(section, key, 0.0)
    monkeypatch.setitem(section, "finetuned_accuracy", {k: 0.0 for k in section["finetuned_accuracy"]})


def _copy(artifacts, tmp_path):
    return shutil.copytree(artifacts, tmp_path / "artifacts")


# ----------------------------------------------------------------------------------------------- update_bn

def test_solution_cell_update_bn_passes_the_check():
    checks.check_update_bn(reference.update_bn)


def test_solution_cell_build_cfg_mask_passes_the_check(artifacts):
    checks.check_build_cfg_mask(reference.build_cfg_mask, artifacts)


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "update_bn"], ids=lambda m: m.name)
def test_update_bn_mutants_fail(mutant):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.check_update_bn(_mutant(mutant))


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "build_cfg_mask"], ids=lambda m: m.name)
def test_build_cfg_mask_mutants_fail(mutant, artifacts):
    with pytest.raises(AssertionError):
        checks.check_build_cfg_mask(_mutant(mutant), artifacts)


def test_mutants_cover_each_todo_three_times():
    for cell, target in (("update_bn", "test_update_bn"), ("build_cfg_mask", "test_build_cfg_mask"),
                         ("prune_vgg", "test_prune_vgg"), ("absorb_constants", "test_absorb_constants")):
        assert sum(m.cell == cell and m.target == target for m in MUTANTS) >= 3


def test_update_bn_messages_name_the_mistake():
    by_name = {m.name: _mutant(m) for m in MUTANTS}
    for name, words in (("wrong sign", "sign is wrong"), ("L2 instead of L1 (s * gamma)", "L2"),
                        ("overwrites the gradient", "overwritten"), ("only the first BN layer", "not changed"),
                        ("sign(0) taken as +1", "exactly 0")):
        with pytest.raises(AssertionError, match=words):
            checks.check_update_bn(by_name[name])


def test_accuracy_below_the_threshold_fails_the_visible_test_too(artifacts):
    """The fabricated runs' histories record ~10%: the notebook's own test_sparsity_accuracy fails on them."""
    with pytest.raises(VisibleCheckFailed, match="at least"):
        checks.check_sparsity_accuracy(artifacts)


@pytest.mark.parametrize("same_settings", [True, False])
def test_the_visible_test_is_judged_only_on_what_the_notebook_loaded(artifacts, tmp_path, no_thresholds,
                                                                      same_settings):
    """A history below the threshold fails the notebook's own test only if fit_or_load would have loaded it;
    trained with other settings, the notebook ran a fallback instead: a plain AssertionError, not tampering."""
    folder = _copy(artifacts, tmp_path)
    history = History.load(folder / "sparsity_s0.json")
    for record in history.records:
        record["val_accuracy"] = -5.0
    if not same_settings:
        history.config["lr"] = 123.0
    history.save(folder / "sparsity_s0.json")
    with pytest.raises(AssertionError) as failure:
        checks.check_sparsity_accuracy(folder)
    assert isinstance(failure.value, VisibleCheckFailed) == same_settings, failure.value


def test_update_bn_in_training_pulls_gammas_down():
    """A few SGD steps with the hook: the mean |gamma| falls faster than without it."""
    from lib.train import fit
    loaders = images.loaders()
    subset = torch.utils.data.Subset(loaders["train"].dataset, range(64))
    small = {"train": torch.utils.data.DataLoader(subset, batch_size=32), "val": loaders["val"]}
    hp = dict(profile.config("vgg"), epochs=2, milestones=())
    means = []
    for s in (0.0, 0.1):
        torch.manual_seed(0)
        model = VGG([8, 'M', 8, 'M', 8, 'M', 8, 'M', 8])
        fit(model, small, hp, after_backward=lambda m: reference.update_bn(m, s), progress=False)
        means.append(gammas(model).mean().item())
    assert means[1] < means[0] - 0.01


# ----------------------------------------------------------------------------------------- build_cfg_mask

def test_build_cfg_mask_global_threshold_by_hand():
    model = VGG([4, 'M', 4])
    with torch.no_grad():
        bn_layers(model)[0].weight.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
        bn_layers(model)[1].weight.copy_(torch.tensor([0.01, 0.02, -0.5, 0.6]))
    cfg, mask = reference.build_cfg_mask(model, 0.5, 1)
    assert cfg == [1, 'M', 2]
    assert [m.tolist() for m in mask] == [[0, 0, 0, 1], [0, 0, 1, 1]]
    assert reference.build_cfg_mask(model, 0.5, 2)[0] == [2, 'M', 2]
    assert reference.build_cfg_mask(model, 0.0, 1)[0] == [4, 'M', 3]    # only the smallest goes
    assert reference.build_cfg_mask(model, 1.0, 1)[0] == [1, 'M', 1]    # percent 1: min_channels only


@pytest.mark.parametrize("percent", [0.5, 0.9, 0.99])
def test_pruning_never_empties_a_layer(percent):
    model = _random_vgg(3)
    with torch.no_grad():
        bn_layers(model)[5].weight.zero_()           # a layer whose channels all look useless
    cfg, cfg_mask = reference.build_cfg_mask(model, percent, 2)
    assert all(v == 'M' or v >= 2 for v in cfg)
    check_cfg_mask(model, cfg, cfg_mask)


def test_build_cfg_mask_is_generic_over_sincnet():
    torch.manual_seed(0)
    model = SincNet([8, 12, 12, 12, 12, 12])
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.weight.copy_(torch.randn(bn.num_features))
    cfg, cfg_mask = reference.build_cfg_mask(model, 0.5, 2)
    assert len(cfg) == 6 and sum(cfg) == sum(int(m.sum()) for m in cfg_mask)
    check_cfg_mask(model, cfg, cfg_mask)
    prune_sincnet(model, cfg, cfg_mask)


def test_build_cfg_mask_leaves_the_model_alone():
    model = _random_vgg(1)
    before = copy.deepcopy(model.state_dict())
    reference.build_cfg_mask(model, 0.9, 1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------ lib.slimming

@pytest.mark.parametrize("seed,percent", [(0, 0.5), (1, 0.9), (2, 0.7)])
def test_prune_vgg_output_equivalence(seed, percent):
    model = _random_vgg(seed)
    cfg, cfg_mask = reference.build_cfg_mask(model, percent, 1)
    pruned = reference.prune_vgg(model, cfg, cfg_mask).eval()
    assert pruned.cfg == cfg
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = zero_pruned_channels(model, cfg_mask).eval()(x)
        got = pruned(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_silencing_through_gamma_only_leaves_each_channel_its_constant_relu_beta():
    """zero_pruned_channels(..., keep_beta=True): the pruned channels of the first BN layer output ReLU(beta)
    for every input (what vggprune's "beta kept" column measures); by default they output 0."""
    model = _random_vgg(0, cfg=[4, 'M', 6]).eval()
    with torch.no_grad():
        bn_layers(model)[0].bias.copy_(torch.tensor([0.7, -0.3, 0.2, 1.5]))
    cfg_mask = [torch.tensor([1., 0, 1, 0]), torch.ones(6)]
    first_block = lambda net, x: net.feature[:3](x)           # conv, BN, ReLU of layer 0
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        kept_beta = first_block(zero_pruned_channels(model, cfg_mask, keep_beta=True).eval(), x)
        silenced = first_block(zero_pruned_channels(model, cfg_mask).eval(), x)
    assert torch.equal(kept_beta[:, 1], torch.zeros_like(kept_beta[:, 1]))          # ReLU(-0.3) = 0
    assert torch.allclose(kept_beta[:, 3], torch.full_like(kept_beta[:, 3], 1.5))  # ReLU(1.5), whatever x
    assert torch.equal(silenced[:, [1, 3]], torch.zeros_like(silenced[:, [1, 3]]))
    assert torch.equal(kept_beta[:, [0, 2]], silenced[:, [0, 2]])


def test_check_cfg_mask_errors():
    model = _random_vgg(0, cfg=[4, 'M', 6, 'M', 5])
    cfg, cfg_mask = reference.build_cfg_mask(model, 0.5, 1)
    with pytest.raises(ValueError, match="layout"):
        check_cfg_mask(model, [v for v in cfg if v != 'M'], cfg_mask)
    with pytest.raises(ValueError, match="masks"):
        check_cfg_mask(model, cfg, cfg_mask[:-1])
    wrong = list(cfg)
    wrong[0] = cfg[0] + 1
    with pytest.raises(ValueError, match="keeps"):
        check_cfg_mask(model, wrong, cfg_mask)
    with pytest.raises(ValueError, match="entries"):
        check_cfg_mask(model, cfg, [torch.ones(3)] + cfg_mask[1:])
    empty = [torch.zeros(4)] + cfg_mask[1:]
    with pytest.raises(ValueError, match="no channel"):
        check_cfg_mask(model, [0] + cfg[1:], empty)


def test_pruned_checkpoint_into_a_full_model_is_a_clear_error(tmp_path):
    model = _random_vgg(0)
    cfg, cfg_mask = reference.build_cfg_mask(model, 0.5, 1)
    save_checkpoint(tmp_path / "pruned_50.pt", reference.prune_vgg(model, cfg, cfg_mask))
    with pytest.raises(CheckpointError) as error:
        load_into(VGG(width=0.25), tmp_path / "pruned_50.pt")
    message = str(error.value)
    assert "pruned_50.pt" in message and str(cfg) in message and "load_model" in message


# ------------------------------------------------------------------------- checks on the artifact folder

def test_artifact_checks_pass_on_consistent_artifacts(artifacts, no_thresholds):
    checks.check_sparsity_curves(artifacts)
    checks.check_sparsity_accuracy(artifacts)
    checks.check_pruned_models(artifacts)
    checks.check_finetuned(artifacts)


def test_a_network_trained_from_new_weights_is_not_a_fine_tune(artifacts, tmp_path, no_thresholds):
    """finetuned_90.pt replaced by a network of the pruned cfg from new random weights (its history consistent
    with it): fine-tuning starts from the pruned weights, and a run that did not is not one."""
    folder = shutil.copytree(artifacts, tmp_path / "artifacts")
    tag = percent_tag(profile.config("slimming")["percents"][-1])
    cfg = load_checkpoint(folder / f"pruned_{tag}.pt")["cfg"]
    _fake_run(_random_vgg(7, cfg=cfg), checks.finetune_hp(profile.config("slimming")["percents"][-1]),
              folder / f"finetuned_{tag}.pt", images.loaders()["val"], profile.config("sparsity_threshold"))
    with pytest.raises(AssertionError, match=rf"finetuned_{tag}.pt does not descend from pruned_{tag}.pt"):
        checks.check_finetuned(folder)


def test_accuracy_thresholds_apply(artifacts):
    with pytest.raises(AssertionError, match="at least"):
        checks.check_sparsity_accuracy(artifacts)     # untrained fabricated models: ~10%
    with pytest.raises(AssertionError, match="at least"):
        checks.check_finetuned(artifacts)


def test_a_dense_model_cannot_stand_in_for_the_sparse_one(artifacts, tmp_path, no_thresholds):
    """The baseline's run saved under the sparse run's names (its history's lambda edited): accurate, but not
    sparse. (The reference baseline with 20% of its scales zeroed falls from 94.4% to 19.0%: it cannot pose
    as sparse either.)"""
    folder = _copy(artifacts, tmp_path)
    config = profile.config("slimming")
    sparse = config["sparse_tag"]
    for suffix in (".pt", "_last.pt", ".json"):
        shutil.copy(folder / f"sparsity_s0{suffix}", folder / f"sparsity_{sparse}{suffix}")
    history = json.loads((folder / f"sparsity_{sparse}.json").read_text())
    history["config"]["s"] = config["lambdas"][sparse]
    (folder / f"sparsity_{sparse}.json").write_text(json.dumps(history))
    with pytest.raises(AssertionError, match=rf"sparsity_{sparse}.pt has sparsity 0.\d\d; the sparse model"):
        checks.check_sparsity_accuracy(folder)


def test_accuracy_is_graded_on_test_and_the_history_checked_on_validation(artifacts, monkeypatch, no_thresholds):
    """The threshold applies to the checkpoint's test accuracy; the history's recorded accuracy is the
    validation split's (where fit selected the epoch), so it is compared with the validation accuracy."""
    monkeypatch.setattr(common, "ACCURACY_TOLERANCE", 0.05)             # exact: same device, same data
    monkeypatch.setattr(checks, "visible", lambda ok, message: None)    # the notebook's own test reads validation
    model, _ = load_model(artifacts / "sparsity_s0.pt", VGG)
    loaders = images.loaders()
    val, test = (evaluate(model, loaders[split], progress=False)[1] for split in ("val", "test"))
    assert abs(val - test) > 0.05                                       # the two splits tell them apart
    section = profile.TABLES[profile.name()]["slimming"]
    monkeypatch.setitem(section, "baseline_accuracy", test)
    checks.check_sparsity_accuracy(artifacts)
    monkeypatch.setitem(section, "baseline_accuracy", test + 0.01)
    with pytest.raises(AssertionError, match=rf"reaches {test:.2f}% test accuracy"):
        checks.check_sparsity_accuracy(artifacts)


def test_sparsity_curves_must_increase(artifacts, tmp_path):
    folder = _copy(artifacts, tmp_path)
    tags = sorted(profile.config("slimming")["lambdas"], key=profile.config("slimming")["lambdas"].get)
    for suffix in (".pt", "_last.pt"):   # swap the weights of the two strongest runs, keep their configs
        a, b = folder / f"sparsity_{tags[-1]}{suffix}", folder / f"sparsity_{tags[-2]}{suffix}"
        a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
        a.write_bytes(b_bytes)
        b.write_bytes(a_bytes)
    for tag in tags[-2:]:   # histories that match their (swapped) checkpoints
        history = History.load(folder / f"sparsity_{tag}.json")
        model = VGG(cfg=torch.load(folder / f"sparsity_{tag}.pt", weights_only=True)["cfg"])
        load_into(model, folder / f"sparsity_{tag}.pt")
        for record in history.records:
            record["sparsity"] = sparsity(model, profile.config("sparsity_threshold"))
        history.save(folder / f"sparsity_{tag}.json")
    with pytest.raises(AssertionError, match="grow with lambda"):
        checks.check_sparsity_curves(folder)


def test_history_must_match_checkpoint(artifacts, tmp_path):
    folder = _copy(artifacts, tmp_path)
    (folder / "sparsity_s0_last.pt").write_bytes((folder / "sparsity_s2.pt").read_bytes())
    with pytest.raises(AssertionError, match="different runs|not the last"):
        checks.check_sparsity_curves(folder)


def test_sparsity_run_with_wrong_lambda_is_named(artifacts, tmp_path):
    folder = _copy(artifacts, tmp_path)
    history = History.load(folder / "sparsity_s1.json")
    history.config["s"] = 123.0
    history.save(folder / "sparsity_s1.json")
    with pytest.raises(AssertionError, match="s=123"):
        checks.check_sparsity_curves(folder)


def test_pruned_checkpoint_with_wrong_cfg_or_weights_fails(artifacts, tmp_path):
    folder = _copy(artifacts, tmp_path)
    sparse = VGG(cfg=torch.load(folder / "sparsity_s1.pt", weights_only=True)["cfg"])
    load_into(sparse, folder / "sparsity_s1.pt")
    cfg, cfg_mask = reference.build_cfg_mask(sparse, 0.5, 1000)    # another min_channels: another cfg
    save_checkpoint(folder / "pruned_50.pt", reference.prune_vgg(sparse, cfg, cfg_mask))
    with pytest.raises(AssertionError, match="cfg"):
        checks.check_pruned_models(folder)

    folder = _copy(artifacts, tmp_path / "b")
    pruned = VGG(cfg=torch.load(folder / "pruned_90.pt", weights_only=True)["cfg"])   # right cfg, fresh weights
    save_checkpoint(folder / "pruned_90.pt", pruned)
    with pytest.raises(AssertionError, match="not copied right"):
        checks.check_pruned_models(folder)


def test_missing_artifacts_are_assertion_errors(tmp_path):
    for check in (checks.check_sparsity_curves, checks.check_sparsity_accuracy, checks.check_pruned_models,
                  checks.check_finetuned):
        with pytest.raises(AssertionError, match="no such"):
            check(tmp_path)
    with pytest.raises(AssertionError, match="no such"):
        checks.check_build_cfg_mask(reference.build_cfg_mask, tmp_path)


def test_profiles_have_the_same_slimming_keys():
    quick, full = profile.config("slimming", "quick"), profile.config("slimming", "full")
    assert set(quick) == set(full)
    for config in (quick, full):
        s = list(config["lambdas"].values())
        assert s == sorted(s) and s[0] == 0.0 and "s0" in config["lambdas"]
        assert config["sparse_tag"] in config["lambdas"]
        assert set(config["finetuned_accuracy"]) == {percent_tag(p) for p in config["percents"]}


# ------------------------------------------------------------------------------------------ probes, judges

SEEDS = (0, 1, 12345)
PROBES = Path(probes.__file__).parent


def probed_update_bn(update_bn, seed):
    return round_trip(probes.probe_update_bn(update_bn, seed))


def probed_cfg_mask(build_cfg_mask, seed, artifacts):
    return round_trip(probes.probe_build_cfg_mask(build_cfg_mask, seed, artifacts=artifacts))


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_passes_the_judges(seed, artifacts):
    checks.judge_update_bn(probed_update_bn(reference.update_bn, seed), seed)
    checks.judge_build_cfg_mask(probed_cfg_mask(reference.build_cfg_mask, seed, artifacts), seed, artifacts)


# The part of its hint each mutant must get (the hidden one, also when the visible test fails first).
HINTS = {"wrong sign": "sign is wrong", "L2 instead of L1 (s * gamma)": "L2 penalty",
         "only the first BN layer": "not changed", "overwrites the gradient": "overwritten",
         "sign(0) taken as +1": "exactly 0", "penalty on the BN biases too": "BN shift",
         "per-layer threshold": "one value for the whole network", ">= instead of >": "strictly greater",
         "min_channels ignored": "at least min_channels",
         "percent of kept channels instead of pruned": "percent is the fraction pruned",
         "sign as gamma / (|gamma| + 1e-8)": "tiny non-zero gamma",
         "min_channels only for a layer left empty": "not only a layer left empty",
         "running_var not copied (left at 1)": "running variance was not copied",
         "next conv's input channels unmasked (the first ones taken)": "must read the channels the previous layer keeps",
         "classifier inputs unmasked (the first columns taken)": "classifier's first columns",
         "constant beta instead of ReLU(beta)": r"not beta: a channel with beta < 0 emits 0",
         "running mean raised instead of lowered": "sign is wrong",
         "centre tap only instead of the kernel's sum": "summed over its 3x3 taps",
         "last layer's constants not given to the classifier": "bias did not change"}


def test_every_mutant_has_a_hint():
    assert {m.name for m in MUTANTS} == set(HINTS)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "update_bn"], ids=lambda m: m.name)
def test_update_bn_mutants_fail_the_judge_with_their_hint(mutant, seed):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.judge_update_bn(probed_update_bn(_mutant(mutant), seed), seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "build_cfg_mask"], ids=lambda m: m.name)
def test_build_cfg_mask_mutants_fail_the_judge_with_their_hint(mutant, seed, artifacts):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.judge_build_cfg_mask(probed_cfg_mask(_mutant(mutant), seed, artifacts), seed, artifacts)


def _old_update_bn_model(seed, cfg):
    """The input of check_update_bn before the probes: random gammas with two zeros and random gradients,
    but the BN biases as VGG initialises them, all 0."""
    torch.manual_seed(seed)
    model = VGG(cfg, num_classes=10)
    with torch.no_grad():
        for bn in bn_layers(model):
            g = torch.randn(bn.num_features) * 0.5
            g[torch.randperm(bn.num_features)[:2]] = 0.0
            bn.weight.copy_(g)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def test_penalty_on_the_biases_was_a_blind_spot():
    """The mutant adds s * sign(beta) to the BN biases' gradients: with the old inputs' zero biases that adds
    nothing, so it passed; the probe's biases are non-zero, and the judge names the mistake."""
    mutant = _mutant(next(m for m in MUTANTS if m.name == "penalty on the BN biases too"))
    for seed, cfg in enumerate([[6, 'M', 8, 8, 'M', 5], [4, 4, 'M', 7], [3, 'M', 5, 'M', 6, 'M', 9]]):
        for s in (1e-4, 1e-2, 0.5):
            got, want = _old_update_bn_model(seed, cfg), _old_update_bn_model(seed, cfg)
            mutant(got, s)
            reference.update_bn(want, s)
            assert all(torch.equal(a.grad, b.grad) for a, b in zip(got.parameters(), want.parameters()))
    for seed in SEEDS:
        with pytest.raises(AssertionError, match="not a BatchNorm scale factor") as failure:
            checks.judge_update_bn(probed_update_bn(mutant, seed), seed)
        assert not isinstance(failure.value, VisibleCheckFailed)      # the visible test cannot see it either


def test_records_are_plain_data_of_a_few_hundred_kb(artifacts):
    for record in (probes.probe_update_bn(reference.update_bn, 7),
                   probes.probe_build_cfg_mask(reference.build_cfg_mask, 7, artifacts=artifacts)):
        buffer = io.BytesIO()
        torch.save(record, buffer)
        assert buffer.tell() < 2**20
        assert same_plain_data(record, round_trip(record))


def test_probes_leave_the_callers_random_state_alone(artifacts):
    def noisy_update_bn(model, s):            # a student's function may draw random numbers too
        random.random()
        torch.rand(3)
        reference.update_bn(model, s)

    def noisy_cfg_mask(model, percent, min_channels):
        random.random()
        torch.rand(3)
        return reference.build_cfg_mask(model, percent, min_channels)

    torch_state, python_state = torch.get_rng_state(), random.getstate()
    probes.probe_update_bn(noisy_update_bn, 3)
    probes.probe_build_cfg_mask(noisy_cfg_mask, 3, artifacts=artifacts)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def test_probes_are_deterministic_in_the_seed(artifacts):
    assert same_plain_data(probes.probe_update_bn(reference.update_bn, 5),
                            probes.probe_update_bn(reference.update_bn, 5))
    one = probes.probe_build_cfg_mask(reference.build_cfg_mask, 5, artifacts=artifacts)
    assert same_plain_data(one, probes.probe_build_cfg_mask(reference.build_cfg_mask, 5, artifacts=artifacts))
    assert not same_plain_data(one, probes.probe_build_cfg_mask(reference.build_cfg_mask, 6, artifacts=artifacts))


def _update_bn_raises(model, s):
    raise ValueError("oops")


def _update_bn_blank(model, s):
    raise NotImplementedError()


def _update_bn_exits(model, s):
    sys.exit(3)


def _update_bn_drops_grads(model, s):
    for p in model.parameters():
        p.grad = None


def _update_bn_subclass_grads(model, s):
    reference.update_bn(model, s)
    for bn in bn_layers(model):
        bn.weight.grad = bn.weight.grad.as_subclass(Liar)


def _update_bn_breaks_the_model(model, s):
    model.named_parameters = None


@pytest.mark.parametrize("update_bn", [_update_bn_raises, _update_bn_blank, _update_bn_exits, _update_bn_drops_grads,
                                       _update_bn_breaks_the_model, "not a function"])
def test_update_bn_of_any_kind_gets_an_assertion_error(update_bn):
    with pytest.raises(AssertionError):
        checks.judge_update_bn(probed_update_bn(update_bn, 0), 0)


def test_blank_update_bn_is_named():
    with pytest.raises(AssertionError, match="not implemented"):
        checks.judge_update_bn(probed_update_bn(_update_bn_blank, 0), 0)


def test_a_tensor_subclass_is_read_for_its_values():
    """Right values in a tensor subclass pass (the probe copies the data, past the subclass's lies)."""
    checks.judge_update_bn(probed_update_bn(_update_bn_subclass_grads, 0), 0)


def _cfg_mask_of(result):
    return lambda model, percent, min_channels: result


@pytest.mark.parametrize("build_cfg_mask", [
    _cfg_mask_of(None), _cfg_mask_of(("abc", object())), _cfg_mask_of(([1, 'M', 2], "masks")),
    _cfg_mask_of(([1.5, None, 'M'], [torch.ones(2)])), _cfg_mask_of([[1, 'M', 2], [torch.ones(4)] * 2]),
    _cfg_mask_of(([torch.tensor(1), 'M', Liar(torch.ones(2))], [Liar(torch.ones(4))] * 2)),
    lambda model, percent, min_channels: 1 / 0])
def test_build_cfg_mask_of_any_kind_gets_an_assertion_error(build_cfg_mask, artifacts):
    with pytest.raises(AssertionError):
        checks.judge_build_cfg_mask(probed_cfg_mask(build_cfg_mask, 0, artifacts), 0, artifacts)


def test_tampered_update_bn_records_give_assertion_errors():
    record = probed_update_bn(reference.update_bn, 0)
    judge_each_tampering(lambda tampered: checks.judge_update_bn(tampered, 0), record, random.Random(0))
    for tampered in ({}, {"visible": record["visible"]}, "a string", {"error": "NameError: update_bn"},
                     dict(record, cases=record["cases"][:-1])):
        with pytest.raises(AssertionError):
            checks.judge_update_bn(tampered, 0)
    grads = record["cases"][0]["grads"]
    name = next(iter(grads))
    for value in ("a string", torch.zeros(7, 7, 7), None):
        case = dict(record["cases"][0], grads=dict(grads, **{name: value}))
        with pytest.raises(AssertionError):
            checks.judge_update_bn(dict(record, cases=[case] + record["cases"][1:]), 0)


def test_tampered_cfg_mask_records_give_assertion_errors(artifacts):
    record = probed_cfg_mask(reference.build_cfg_mask, 0, artifacts)
    judge_each_tampering(lambda tampered: checks.judge_build_cfg_mask(tampered, 0, artifacts), record, random.Random(1))
    first = record["sets"][0]
    for change in (dict(first, cfg="[1, 'M', 2]"), dict(first, masks=[torch.ones(3, 3)] * len(first["masks"])),
                   dict(first, cfg=[torch.tensor(1)] * len(first["cfg"])), {"is_tuple": True}):
        with pytest.raises(AssertionError):
            checks.judge_build_cfg_mask(dict(record, sets=[change] + record["sets"][1:]), 0, artifacts)


def test_the_judge_reads_the_checkpoint_from_its_own_folder(artifacts, tmp_path):
    """The probe ran build_cfg_mask on a copy of the sparse model that was tampered with (all gammas equal):
    what it recorded does not match the reference on the grader's copy."""
    folder = _copy(artifacts, tmp_path)
    path, _, _ = probes.sparse_checkpoint(folder)
    model = VGG(cfg=torch.load(path, weights_only=True)["cfg"])
    load_into(model, path)
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.weight.fill_(1.0)
    save_checkpoint(path, model)
    record = probed_cfg_mask(reference.build_cfg_mask, 0, folder)
    with pytest.raises(AssertionError, match=str(probes.sparse_checkpoint(artifacts)[0])):
        checks.judge_build_cfg_mask(record, 0, artifacts)


def test_probes_import_only_the_standard_library_torch_lib_and_themselves():
    allowed = set(sys.stdlib_module_names) | {"torch", "lib"}
    for path in sorted(PROBES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue        # a relative import: inside autograde/probes
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_probes_work_as_the_top_level_package_the_sandbox_mounts(tmp_path):
    """Inside the sandbox autograde/probes is the package `probes`, and `autograde` cannot be imported."""
    (tmp_path / "probes").symlink_to(PROBES)
    code = ("import sys; sys.modules['autograde'] = None\n"
            "import probes.slimming, probes.sincnet_quant, probes.kd\n"
            "from lib.slimming import bn_layers\n"
            "record = probes.slimming.probe_update_bn(lambda m, s: None, 0)\n"
            "print(len(record['cases']))")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(probes.update_bn_cases(0)))


@pytest.mark.parametrize("seed", SEEDS)
def test_tiny_gammas_were_a_blind_spot(seed):
    """Every gamma was 0 or |gamma| >= 0.05, where gamma / (|gamma| + 1e-8) is sign(gamma) to 1e-7: that
    mutant scored full marks. Each probed layer now has a gamma in [1e-8, 1e-5] (as sparsity training leaves
    them), where it pushes by a fraction of s only."""
    for model_seed, cfg, _ in probes.update_bn_cases(seed):
        for bn in bn_layers(probes.update_bn_model(model_seed, cfg)):
            magnitude = bn.weight.detach().abs()
            assert ((magnitude > 0) & (magnitude <= 1e-5)).sum() == 1
    mutant = _mutant(next(m for m in MUTANTS if m.name == "sign as gamma / (|gamma| + 1e-8)"))
    with pytest.raises(AssertionError, match="tiny non-zero gamma") as failure:
        checks.judge_update_bn(probed_update_bn(mutant, seed), seed)
    assert not isinstance(failure.value, VisibleCheckFailed)


BLIND_SPOT_SEEDS = range(40)


def test_min_channels_tops_up_a_layer_that_keeps_some_channels():
    """Before, min_channels bound only in a layer left empty, except in a layer that kept 1 or 2 channels by
    chance (4 of 40 seeds did not have one): a min_channels rule applied to empty layers only then scored
    full marks. Layer 4 of every gamma set now keeps 1 or 2 channels at every tested percent."""
    mutant = _mutant(next(m for m in MUTANTS if m.name == "min_channels only for a layer left empty"))
    need = max(probes.CFG_MASK_MIN_CHANNELS)
    for seed in BLIND_SPOT_SEEDS:
        models = [probes.gamma_set(seed, i) for i in range(len(probes.GAMMA_SET_CFGS))]
        differs = False
        for i, percent, min_channels in probes.cfg_mask_cases(seed):
            cfg, _ = reference.build_cfg_mask(copy.deepcopy(models[i]), percent, 0)
            kept = [v for v in cfg if v != 'M']
            assert any(0 < k < need for k in kept), (seed, i, percent, cfg)
            differs |= mutant(copy.deepcopy(models[i]), percent, min_channels)[0] != \
                reference.build_cfg_mask(copy.deepcopy(models[i]), percent, min_channels)[0]
        assert differs, f"seed {seed}: the mutant gives the reference's cfg on every gamma set"



# ---------------------------------------------------------------------------------------------- prune_vgg

def probed_prune_vgg(prune_vgg, seed):
    return round_trip(probes.probe_prune_vgg(prune_vgg, seed))


def test_lib_holds_no_prune_vgg():
    """The weight copy is a TODO of vggprune: students import lib, so lib must not hold its solution."""
    assert not hasattr(lib.slimming, "prune_vgg")


def test_solution_cell_prune_vgg_passes_the_check():
    for seed in SEEDS:
        checks.check_prune_vgg(reference.prune_vgg, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_keeps_the_invariant_on_the_probe_cases(seed):
    """The probe's random models (BN statistics, biases, layers at one channel) through the reference:
    outputs equal the model's with the pruned channels zeroed, and the model is left unchanged."""
    for i in range(probes.PRUNE_VGG_CASES):
        model, cfg, cfg_mask = probes.prune_vgg_case(seed, i)
        before = copy.deepcopy(model.state_dict())
        pruned = reference.prune_vgg(model, cfg, cfg_mask)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        keeps = [int(m.sum()) for m in cfg_mask]
        assert 1 in keeps and (i == probes.PRUNE_VGG_CASES - 1 or any(
            k == bn.num_features for k, bn in zip(keeps, bn_layers(model))))
        gap, scale = checks._invariant_gap(pruned, model, cfg, cfg_mask)
        assert gap <= 1e-5 * scale


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "prune_vgg"], ids=lambda m: m.name)
def test_prune_vgg_mutants_fail_the_judge_with_their_hint(mutant, seed):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.judge_prune_vgg(probed_prune_vgg(_mutant(mutant), seed), seed)


def test_the_reference_passes_the_prune_vgg_judge():
    for seed in SEEDS:
        checks.judge_prune_vgg(probed_prune_vgg(reference.prune_vgg, seed), seed)


def test_prune_vgg_visible_cell_builds_the_probes_visible_case():
    """The notebook's visible test and the judge's re-run of it (VisibleCheckFailed) use the same model and masks."""
    nb = nbformat.read(SOLUTIONS / "slimming" / "vggprune.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if nbgrader_id(c) == "test_prune_vgg")
    namespace = {"torch": torch, "VGG": VGG, "bn_layers": bn_layers, "zero_pruned_channels": zero_pruned_channels,
                 "prune_vgg": reference.prune_vgg}
    exec(source.split("### BEGIN HIDDEN TESTS")[0], namespace)
    model, cfg, cfg_mask = probes.visible_prune_vgg_case()
    assert namespace["_cfg"] == cfg and all(torch.equal(a, b) for a, b in zip(namespace["_cfg_mask"], cfg_mask))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in namespace["_model"].state_dict().items())


def _prune_vgg_changes_the_model(model, cfg, cfg_mask):
    with torch.no_grad():
        bn_layers(model)[0].running_var.fill_(1.0)
    return reference.prune_vgg(model, cfg, cfg_mask)


def _prune_vgg_returns(value):
    return lambda model, cfg, cfg_mask: value


@pytest.mark.parametrize("prune_vgg", [
    _prune_vgg_changes_the_model, _prune_vgg_returns(None), _prune_vgg_returns("a model"),
    _prune_vgg_returns(VGG([3, 'M', 3])), lambda model, cfg, cfg_mask: model,
    lambda model, cfg, cfg_mask: 1 / 0])
def test_prune_vgg_of_any_kind_gets_an_assertion_error(prune_vgg):
    with pytest.raises(AssertionError):
        checks.judge_prune_vgg(probed_prune_vgg(prune_vgg, 0), 0)


def test_tampered_prune_vgg_records_give_assertion_errors():
    record = probed_prune_vgg(reference.prune_vgg, 0)
    judge_each_tampering(lambda tampered: checks.judge_prune_vgg(tampered, 0), record, random.Random(2))
    first = record["cases"][0]
    for change in (dict(first, state="weights"), dict(first, state={}), dict(first, cfg="cfg"),
                   dict(first, state=dict(first["state"], **{"classifier.weight": torch.zeros(3)}))):
        with pytest.raises(AssertionError):
            checks.judge_prune_vgg(dict(record, cases=[change] + record["cases"][1:]), 0)


def test_prune_vgg_record_is_small_plain_data():
    record = probes.probe_prune_vgg(reference.prune_vgg, 7)
    buffer = io.BytesIO()
    torch.save(record, buffer)
    assert buffer.tell() < 2**20
    assert same_plain_data(record, round_trip(record))
    assert same_plain_data(record, probes.probe_prune_vgg(reference.prune_vgg, 7))


def test_a_curve_claiming_accuracy_its_checkpoints_do_not_have_fails(artifacts, tmp_path, no_thresholds):
    """Hand-edited histories: the collapse run's records claim 95% validation accuracy (its sparsity left as
    the checkpoints give it). Every checkpoint of a curve is re-evaluated on the validation split."""
    folder = _copy(artifacts, tmp_path)
    collapse = max(profile.config("slimming")["lambdas"].items(), key=lambda item: item[1])[0]
    path = folder / f"sparsity_{collapse}.json"
    history = History.load(path)
    History(history.config, [dict(r, val_accuracy=95.0) for r in history.records]).save(path)
    with pytest.raises(AssertionError, match=rf"sparsity_{collapse}.pt evaluates to [\d.]+% on the validation split, "
                                             r"but its history recorded 95.00%"):
        checks.check_sparsity_curves(folder)


# --------------------------------------------------------------------------------------- absorb_constants

def probed_absorb(absorb_constants, seed):
    return round_trip(probes.probe_absorb_constants(absorb_constants, seed))


def test_solution_cell_absorb_constants_passes_the_check():
    for seed in SEEDS:
        checks.check_absorb_constants(reference.absorb_constants, seed)


def test_the_reference_passes_the_absorb_constants_judge():
    for seed in SEEDS:
        checks.judge_absorb_constants(probed_absorb(reference.absorb_constants, seed), seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "absorb_constants"], ids=lambda m: m.name)
def test_absorb_constants_mutants_fail_the_visible_test_and_the_judge_with_their_hint(mutant, seed):
    """Each mutant fails the notebook's own test (VisibleCheckFailed) and, asked alone, the hidden cases."""
    record = probed_absorb(_mutant(mutant), seed)
    with pytest.raises(VisibleCheckFailed):
        checks.judge_absorb_constants(record, seed)
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        for i, result in enumerate(record["cases"]):
            model, cfg_mask = probes.absorb_case(seed, i)
            checks._compare_absorbed(result, model, cfg_mask, "case")


def test_absorb_constants_visible_cell_builds_the_probes_visible_case():
    """The notebook's visible test and the judge's re-run of it use the same model and masks, and it passes."""
    nb = nbformat.read(SOLUTIONS / "slimming" / "vggprune.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if nbgrader_id(c) == "test_absorb_constants")
    namespace = {"torch": torch, "VGG": VGG, "bn_layers": bn_layers, "absorb_constants": reference.absorb_constants}
    exec(source.split("### BEGIN HIDDEN TESTS")[0], namespace)
    model, cfg_mask = probes.visible_absorb_case()
    assert all(torch.equal(a, b) for a, b in zip(namespace["_cfg_mask"], cfg_mask))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in namespace["_model"].state_dict().items())


@pytest.mark.parametrize("absorb_constants", [
    lambda model, cfg_mask: model, lambda model, cfg_mask: None, lambda model, cfg_mask: VGG([3, 'M', 3]),
    lambda model, cfg_mask: zero_pruned_channels(reference.absorb_constants(model, cfg_mask), cfg_mask),
    lambda model, cfg_mask: 1 / 0])
def test_absorb_constants_of_any_kind_gets_an_assertion_error(absorb_constants):
    with pytest.raises(AssertionError):
        checks.judge_absorb_constants(probed_absorb(absorb_constants, 0), 0)


def test_absorb_constants_that_changes_the_model_fails():
    def in_place(model, cfg_mask):
        absorbed = reference.absorb_constants(model, cfg_mask)
        model.load_state_dict(absorbed.state_dict())
        return model
    with pytest.raises(VisibleCheckFailed, match="changed the model|must work on a copy"):
        checks.judge_absorb_constants(probed_absorb(in_place, 0), 0)


def test_tampered_absorb_constants_records_give_assertion_errors():
    record = probed_absorb(reference.absorb_constants, 0)
    judge_each_tampering(lambda tampered: checks.judge_absorb_constants(tampered, 0), record, random.Random(3))
    last = record["cases"][-1]
    bias = last["state"]["classifier.bias"]
    with pytest.raises(AssertionError, match="classifier.bias"):
        checks.judge_absorb_constants(dict(record, cases=record["cases"][:-1] + [
            dict(last, state=dict(last["state"], **{"classifier.bias": bias + 1}))]), 0)


@pytest.mark.parametrize("seed", SEEDS)
def test_absorbed_and_pruned_equals_beta_kept_away_from_the_borders(seed):
    """What the rule claims: the pruned network with the constants absorbed computes, at every pixel whose 3x3
    neighbourhood lies inside the map, what the network with the pruned channels' gamma set to 0 computes."""
    torch.manual_seed(seed)
    model = probes.randomize_vgg(VGG([6, 5, 4], num_classes=3), torch.Generator().manual_seed(seed))
    cfg_mask = [torch.tensor([1., 0, 1, 0, 0, 1]), torch.tensor([0., 1, 1, 0, 1]), torch.tensor([1., 1, 0, 1])]
    cfg = [int(m.sum()) for m in cfg_mask]
    pruned = reference.prune_vgg(reference.absorb_constants(model, cfg_mask), cfg, cfg_mask).eval()
    kept = zero_pruned_channels(model, cfg_mask, keep_beta=True).eval()
    x = torch.randn(2, 3, 12, 12)
    for layer, end in ((1, 6), (2, 9)):                   # after the 2nd and the 3rd conv + BN + ReLU
        with torch.no_grad():
            got = pruned.feature[:end](x)[..., layer:-layer, layer:-layer]
            want = kept.feature[:end](x)[:, cfg_mask[layer].bool()][..., layer:-layer, layer:-layer]
        assert torch.allclose(got, want, atol=1e-5), (layer, (got - want).abs().max())
        with torch.no_grad():   # at the borders it is not exact: the full kernel sum was subtracted
            edge = (pruned.feature[:end](x) - kept.feature[:end](x)[:, cfg_mask[layer].bool()]).abs()
        assert edge.max() > 1e-3


def test_absorb_constants_record_is_small_plain_data():
    record = probes.probe_absorb_constants(reference.absorb_constants, 7)
    buffer = io.BytesIO()
    torch.save(record, buffer)
    assert buffer.tell() < 2**20
    assert same_plain_data(record, probes.probe_absorb_constants(reference.absorb_constants, 7))


# ------------------------------------------------------------------------- finetune's setup, before training

FINETUNE_MISTAKES = {   # (text of the reference finetune cell, replacement), and what the check must name
    "the training lr": (('lr=SLIM["finetune_lr"]', 'lr=HP["lr"]'), r"lr=0\.\d+ \(expected 0\.02"),
    "the training epochs": (('epochs=SLIM["finetune_epochs"]', 'epochs=HP["epochs"]'), "epochs="),
    "no percent recorded": ((", percent=percent)", ")"), "percent=None"),
    "pruned_50.pt for every percent": (('f"artifacts/pruned_{pct(percent)}.pt"', '"artifacts/pruned_50.pt"'),
                                       "not pruned_90.pt's"),
    "another file name": (('save_path=f"artifacts/finetuned_{pct(percent)}.pt"',
                           'save_path=f"artifacts/ft_{pct(percent)}.pt"'), "would save its run as"),
}


@pytest.mark.parametrize("mistake", [None, *FINETUNE_MISTAKES])
def test_finetunes_setup_is_checked_before_anything_trains(mistake, artifacts, monkeypatch):
    """train_prune_model's check_finetune cell runs the student's finetune under lib.train.setup_only: a wrong
    setup fails there, naming what is wrong, and nothing trains (fit would raise here) either way."""
    nb = nbformat.read(SOLUTIONS / "slimming" / "train_prune_model.ipynb", as_version=4)
    cells = {nbgrader_id(c): c.source for c in nb.cells}
    finetune = reference_code(next(c for c in nb.cells if nbgrader_id(c) == "finetune"))
    if mistake:
        (old, new), _ = FINETUNE_MISTAKES[mistake]
        assert finetune.count(old) == 1
        finetune = finetune.replace(old, new)
    monkeypatch.chdir(artifacts.parent)
    monkeypatch.setattr(lib.train, "_require_validation", lambda loaders: pytest.fail("fit started training"))
    namespace = {"HP": profile.config("vgg"), "SLIM": profile.config("slimming"),
                 "PERCENTS": profile.config("slimming")["percents"], "loaders": None,
                 "load_model": load_model, "VGG": VGG, "fit_or_load": lib.train.fit_or_load,
                 "setup_only": lib.train.setup_only, "pct": lambda percent: round(percent * 100)}
    exec(finetune, namespace)
    if mistake is None:
        exec(cells["check_finetune"], namespace)
    else:
        with pytest.raises(AssertionError, match=FINETUNE_MISTAKES[mistake][1]):
            exec(cells["check_finetune"], namespace)
