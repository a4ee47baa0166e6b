"""The slimming assignment: reference vs solution cells, the hidden checks on right and wrong answers,
and the lib.slimming helpers the notebooks rely on (prune_vgg's invariant, cfg/mask validation, the error
for a checkpoint of another cfg). Fast: no training; artifacts are fabricated in a temporary folder.
"""
import copy

import nbformat
import pytest
import torch

from autograde.checks import slimming as checks
from autograde.course import SOLUTIONS, nbgrader_id, reference_code
from autograde.mutants.slimming import MUTANTS
from autograde.reference import slimming as reference
from lib import profile
from lib.checkpoint import CheckpointError, load_into, save_checkpoint
from lib.data import images
from lib.models import VGG, SincNet
from lib.slimming import bn_layers, check_cfg_mask, gammas, prune_sincnet, prune_vgg, sparsity, zero_pruned_channels
from lib.train import History, evaluate, last_path


def _solution(notebook, cell_id):
    """The function defined by a solution cell of solutions/slimming/<notebook>.ipynb."""
    nb = nbformat.read(SOLUTIONS / "slimming" / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_id(c) == cell_id)
    namespace = {"torch": torch, "bn_layers": bn_layers, "gammas": gammas}   # what the setup cells import
    exec(reference_code(cell), namespace)
    return namespace[cell_id]


def _mutant(mutant):
    namespace = {}
    exec(mutant.code, namespace)
    return namespace[mutant.cell]


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
    test_loader = images.loaders()["test"]
    for i, (tag, s) in enumerate(sorted(config["lambdas"].items(), key=lambda item: item[1])):
        model = _random_vgg(i, width=hp["width"])
        with torch.no_grad():   # more lambda, more gammas near zero
            for bn in bn_layers(model):
                bn.weight.mul_((torch.rand(bn.num_features) > 0.3 * i).float())
        _fake_run(model, dict(hp, s=s), folder / f"sparsity_{tag}.pt", test_loader, threshold, last=True)
    sparse = VGG(cfg=torch.load(folder / f"sparsity_{config['sparse_tag']}.pt", weights_only=True)["cfg"])
    load_into(sparse, folder / f"sparsity_{config['sparse_tag']}.pt")
    for percent in config["percents"]:
        tag = checks.pct_tag(percent)
        pruned = prune_vgg(sparse, *reference.build_cfg_mask(sparse, percent, config["min_channels"]))
        save_checkpoint(folder / f"pruned_{tag}.pt", pruned, meta=dict(percent=percent))
        _fake_run(pruned, checks.finetune_hp(percent), folder / f"finetuned_{tag}.pt", test_loader, threshold)
    return folder


def _fake_run(model, hp, path, test_loader, threshold, last=False):
    """Checkpoint + history of a `hp["epochs"]` run whose every epoch holds `model`'s weights."""
    _, accuracy = evaluate(model, test_loader, progress=False)
    records = [dict(epoch=e, train_loss=1.0, train_accuracy=accuracy, val_loss=1.0, val_accuracy=accuracy,
                    lr=0.1, train_time=1.0, test_time=0.1, sparsity=sparsity(model, threshold))
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
    import shutil
    return shutil.copytree(artifacts, tmp_path / "artifacts")


# ----------------------------------------------------------------------------------------------- update_bn

def test_solution_cell_update_bn_passes_the_check():
    checks.check_update_bn(_solution("sparsity_train", "update_bn"))
    checks.check_update_bn(reference.update_bn)


def test_solution_cell_build_cfg_mask_equals_reference(artifacts):
    solution = _solution("vggprune", "build_cfg_mask")
    checks.check_build_cfg_mask(solution, artifacts)
    checks.check_build_cfg_mask(reference.build_cfg_mask, artifacts)


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "update_bn"], ids=lambda m: m.name)
def test_update_bn_mutants_fail(mutant):
    with pytest.raises(AssertionError):
        checks.check_update_bn(_mutant(mutant))


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.cell == "build_cfg_mask"], ids=lambda m: m.name)
def test_build_cfg_mask_mutants_fail(mutant, artifacts):
    with pytest.raises(AssertionError):
        checks.check_build_cfg_mask(_mutant(mutant), artifacts)


def test_mutants_cover_each_todo_three_times():
    for cell, target in (("update_bn", "test_update_bn"), ("build_cfg_mask", "test_build_cfg_mask")):
        assert sum(m.cell == cell and m.target == target for m in MUTANTS) >= 3


def test_update_bn_messages_name_the_mistake():
    by_name = {m.name: _mutant(m) for m in MUTANTS}
    for name, words in (("wrong sign", "sign is wrong"), ("L2 instead of L1 (s * gamma)", "L2"),
                        ("overwrites the gradient", "overwritten"), ("only the first BN layer", "not changed"),
                        ("sign(0) taken as +1", "exactly 0")):
        with pytest.raises(AssertionError, match=words):
            checks.check_update_bn(by_name[name])


def test_update_bn_in_training_pulls_gammas_down():
    """A few SGD steps with the hook: the mean |gamma| falls faster than without it."""
    from lib.train import fit
    loaders = images.loaders()
    subset = torch.utils.data.Subset(loaders["train"].dataset, range(64))
    small = {"train": torch.utils.data.DataLoader(subset, batch_size=32), "test": loaders["test"]}
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
    pruned = prune_vgg(model, cfg, cfg_mask).eval()
    assert pruned.cfg == cfg
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = zero_pruned_channels(model, cfg_mask).eval()(x)
        got = pruned(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


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
    save_checkpoint(tmp_path / "pruned_50.pt", prune_vgg(model, cfg, cfg_mask))
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


def test_accuracy_thresholds_apply(artifacts):
    with pytest.raises(AssertionError, match="at least"):
        checks.check_sparsity_accuracy(artifacts)     # untrained fabricated models: ~10%
    with pytest.raises(AssertionError, match="at least"):
        checks.check_finetuned(artifacts)


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
    save_checkpoint(folder / "pruned_50.pt", prune_vgg(sparse, cfg, cfg_mask))
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
        assert set(config["finetuned_accuracy"]) == {checks.pct_tag(p) for p in config["percents"]}
