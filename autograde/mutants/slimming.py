"""Known-wrong answers to the slimming TODOs (MUTANTS) and wrong workflows of its notebooks (ARTIFACT_MUTANTS);
each must lose the points of its target grade cell, and only those."""
import tempfile
from collections.abc import Sized
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from autograde.reference.slimming import build_cfg_mask as reference_build_cfg_mask
from autograde.reference.slimming import prune_vgg as reference_prune_vgg
from autograde.reference.slimming import update_bn as reference_update_bn
from lib import profile
from lib.artifacts import (checkpoint_file, finetuned_run, history_file, in_folder, last_checkpoint_file, last_path,
                           percent_tag, pruned_net, run_files, sparsity_run)
from lib.checkpoint import load_checkpoint, load_model, save_checkpoint
from lib.data import images
from lib.models import VGG
from lib.slimming import sparsity
from lib.train import fit, seed_everything

from . import (ArtifactMutant, Edit, Mutant, MutantBuildError, copy_run, edit_history, patched, plant_code,
               start_from, swap_files)


def _update_bn(name: str, *edits: Edit) -> Mutant:
    """The reference update_bn cell with `edits` made."""
    return Mutant(name, "sparsity_train", "update_bn", "test_update_bn",
                  patched("slimming", "sparsity_train", "update_bn", *edits))


def _vggprune(cell: str, name: str, *edits: Edit) -> Mutant:
    """The reference solution cell `cell` of vggprune.ipynb with `edits` made, caught by its test_<cell>."""
    return Mutant(name, "vggprune", cell, f"test_{cell}", patched("slimming", "vggprune", cell, *edits))


# Two build_cfg_mask bugs that sincnet_quant's pasted copy of the cell is also planted with.
PER_LAYER_THRESHOLD: Edit = (
    "mask = (g > threshold)",
    "threshold = torch.sort(g).values[min(int(len(g) * percent), len(g) - 1)]\n        mask = (g > threshold)")
KEEPS_AT_THRESHOLD: Edit = ("g > threshold", "g >= threshold")

_SUBGRADIENT = "torch.sign(bn.weight.detach())"   # update_bn's sign(gamma)

MUTANTS = [
    _update_bn("wrong sign", ("s * torch.sign", "-s * torch.sign")),
    _update_bn("L2 instead of L1 (s * gamma)", (_SUBGRADIENT, "bn.weight.detach()")),
    _update_bn("only the first BN layer", ("in bn_layers(model):", "in bn_layers(model)[:1]:")),
    _update_bn("overwrites the gradient", ("bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))",
                                           "bn.weight.grad = s * torch.sign(bn.weight.detach())")),
    _update_bn("sign(0) taken as +1", (_SUBGRADIENT, "torch.where(bn.weight.detach() >= 0, 1.0, -1.0)")),
    # Passes the visible test and the checks before the probes: there every BN bias was 0, and sign(0) = 0.
    _update_bn("penalty on the BN biases too",
               ("bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))",
                "bn.weight.grad.add_(s * torch.sign(bn.weight.detach()))\n"
                "        bn.bias.grad.add_(s * torch.sign(bn.bias.detach()))")),
    # Passed before the tiny gammas: at |gamma| >= 0.05 it is s * sign(gamma) to 1e-7; at 1e-8 it pushes half.
    _update_bn("sign as gamma / (|gamma| + 1e-8)",
               (_SUBGRADIENT, "bn.weight.detach() / (bn.weight.detach().abs() + 1e-8)")),
    _vggprune("build_cfg_mask", "per-layer threshold", PER_LAYER_THRESHOLD),
    _vggprune("build_cfg_mask", ">= instead of >", KEEPS_AT_THRESHOLD),
    _vggprune("build_cfg_mask", "min_channels ignored", ("if mask.sum() < min_channels", "if False")),
    _vggprune("build_cfg_mask", "percent of kept channels instead of pruned",
              ("len(all_gammas) * percent", "len(all_gammas) * (1 - percent)")),
    # Passed the gamma sets before layer 4's one or two strong channels: there min_channels only ever topped
    # up layers that kept no channel (or, in about 1 seed of 10, one that kept fewer by chance).
    _vggprune("build_cfg_mask", "min_channels only for a layer left empty",
              ("if mask.sum() < min_channels", "if mask.sum() == 0 and mask.sum() < min_channels")),
    _vggprune("prune_vgg", "running_var not copied (left at 1)",
              ("new_bn.running_var.copy_(old_bn.running_var[out_idx])", "pass   # the running variance stays at 1")),
    # Shapes fit, so nothing raises: the next conv reads the first channels instead of the kept ones.
    _vggprune("prune_vgg", "next conv's input channels unmasked (the first ones taken)",
              ("old_conv.weight[out_idx][:, in_idx]", "old_conv.weight[out_idx][:, torch.arange(len(in_idx))]")),
    _vggprune("prune_vgg", "classifier inputs unmasked (the first columns taken)",
              ("model.classifier.weight[:, in_idx]", "model.classifier.weight[:, torch.arange(len(in_idx))]")),
    _vggprune("absorb_constants", "constant beta instead of ReLU(beta)", ("torch.relu(bn.bias) *", "bn.bias *")),
    _vggprune("absorb_constants", "running mean raised instead of lowered",
              ("running_mean.sub_(", "running_mean.add_(")),
    _vggprune("absorb_constants", "centre tap only instead of the kernel's sum",
              (".weight.sum(dim=(2, 3))", ".weight[:, :, 1, 1]")),
    _vggprune("absorb_constants", "last layer's constants not given to the classifier",
              ("new.classifier.bias.add_(new.classifier.weight @ constant)", "pass   # the classifier left as it is")),
]


# ------------------------------------------------------------------------------------ artifact mutants
#
# Wrong workflows of the slimming notebooks. The notebooks are the reference's (the finetune mutants: with the
# wrong finetune cell that ran); the artifacts are redone from the step the mistake is in, the later notebooks'
# artifacts after it: a sparse model that changed would be pruned and fine-tuned again, a pruned model that
# changed fine-tuned again. Runs are trained as the notebooks train them (seed 0, lib.train.fit, the profile's
# setup), so an unchanged step gives the reference's files bit for bit, and such files are copied instead.


def _settings() -> tuple[dict[str, Any], dict[str, Any]]:
    """The profile's VGG training setup and its "slimming" section."""
    return profile.config("vgg"), profile.config("slimming")


def _sparsity_run(artifacts: str | Path, tag: str, s: float, loaders: dict[str, DataLoader] | None = None,
                  **changes: Any) -> None:
    """sparsity_train's run `tag` trained as its train cell does (seed 0, VGG-19 of the profile's width,
    update_bn after every backward, the best and the last epoch saved), with `changes` to its setup
    (recorded in the history, as fit_or_load records its hp) and the given loaders."""
    hp, _ = _settings()
    hp = dict(hp, s=s, **changes)
    seed_everything(0)
    model = VGG(width=hp["width"])
    fit(model, loaders or images.loaders(), hp, save_path=Path(artifacts) / checkpoint_file(sparsity_run(tag)),
        after_backward=lambda m: reference_update_bn(m, s), save_last=True, progress=False,
        epoch_metrics={"sparsity": lambda m: sparsity(m, profile.config("sparsity_threshold"))})


def _finetune(artifacts: str | Path, percent: float, **changes: Any) -> None:
    """train_prune_model's fine-tuning of pruned_<pct>.pt (its finetune cell), saved as finetuned_<pct>.pt/.json;
    `changes` alter its hyperparameters (recorded in the history, as fit_or_load records its hp)."""
    hp, slim = _settings()
    hp = dict(hp, epochs=slim["finetune_epochs"], lr=slim["finetune_lr"], percent=percent)
    hp.update(changes)
    tag = percent_tag(percent)
    model, _ = load_model(Path(artifacts) / checkpoint_file(pruned_net(tag)), VGG)
    fit(model, images.loaders(), hp, save_path=Path(artifacts) / checkpoint_file(finetuned_run(tag)), progress=False)


def _finetune_cell(dest: str | Path, old: str, new: str) -> None:
    """The reference finetune cell with `old` replaced by `new`, planted in dest/train_prune_model.ipynb."""
    plant_code(dest, "train_prune_model", "finetune", patched("slimming", "train_prune_model", "finetune", (old, new)))


# --- test_sparsity_curves

def _collapse_tag(slim: dict[str, Any]) -> str:
    """The tag of the run with the largest lambda (s2)."""
    return max(slim["lambdas"], key=slim["lambdas"].get)


def _collapse_run_cut_short(reference: Path, dest: Path) -> None:
    """The collapse run (s2) trained for 3 of the profile's epochs, to save time."""
    artifacts = start_from(reference, dest)
    _, slim = _settings()
    tag = _collapse_tag(slim)
    _sparsity_run(artifacts, tag, slim["lambdas"][tag], epochs=3)


def _last_copied_from_best(reference: Path, dest: Path) -> None:
    """save_last=True left out, so no sparsity_<tag>_last.pt was written; the best checkpoints were copied to
    those names to make the histogram cell run."""
    artifacts = start_from(reference, dest)
    _, slim = _settings()
    differs = False
    for tag in slim["lambdas"]:
        best = artifacts / checkpoint_file(sparsity_run(tag))
        last = last_path(best)
        differs |= load_checkpoint(best)["meta"]["epoch"] != load_checkpoint(last)["meta"]["epoch"]
        last.write_bytes(best.read_bytes())
    if not differs:
        raise MutantBuildError("every sparsity run of the reference has its best epoch last: copying the best "
                               "checkpoints to the _last names changes nothing")


def _collapse_run_with_moderate_lambda(reference: Path, dest: Path) -> None:
    """The collapse run (s2) trained with the moderate lambda (s hard-coded in the after_backward hook), its
    history recording s = lambda of s2. Same seed, data order and setup as the s1 run: its files are s1's."""
    artifacts = start_from(reference, dest)
    _, slim = _settings()
    moderate, collapse = slim["sparse_tag"], _collapse_tag(slim)
    copy_run(artifacts, sparsity_run(moderate), sparsity_run(collapse),
             files=(checkpoint_file, last_checkpoint_file, history_file), s=slim["lambdas"][collapse])


# --- test_sparsity_accuracy

def _subset_loaders(fraction: int = 10) -> dict[str, DataLoader]:
    """The notebook's loaders with the training set cut to its first 1/fraction (a debugging subset)."""
    hp, _ = _settings()
    loaders = images.loaders()
    train = loaders["train"].dataset
    assert isinstance(train, Sized)
    loaders["train"] = DataLoader(Subset(train, range(len(train) // fraction)), batch_size=hp["batch_size"],
                                  shuffle=True, generator=torch.Generator().manual_seed(0))
    return loaders


def _baseline_on_debug_subset(reference: Path, dest: Path) -> None:
    """The baseline run (s0) trained on the first 10% of the training images (a debugging subset left in)."""
    artifacts = start_from(reference, dest)
    _sparsity_run(artifacts, "s0", 0.0, loaders=_subset_loaders())


def _baseline_checkpoint_from_debug_run(reference: Path, dest: Path) -> None:
    """Two baseline runs mixed: sparsity_s0.pt from a debugging run on 10% of the training images (trained
    in a copy of the notebook), sparsity_s0.json and _last.pt from the complete run."""
    artifacts = start_from(reference, dest)
    with tempfile.TemporaryDirectory() as scratch:
        _sparsity_run(scratch, "s0", 0.0, loaders=_subset_loaders())
        baseline = checkpoint_file(sparsity_run("s0"))
        (artifacts / baseline).write_bytes((Path(scratch) / baseline).read_bytes())


# --- test_pruned_models

def _pruned_names_swapped(reference: Path, dest: Path) -> None:
    """vggprune saved the 90%-pruned net as pruned_50.pt and the 50% one as pruned_90.pt; train_prune_model
    then fine-tuned each file under its name (same runs as the reference's, the percent recorded swapped)."""
    artifacts = start_from(reference, dest)
    _, slim = _settings()
    low, high = (percent_tag(p) for p in slim["percents"])
    swap_files(artifacts / checkpoint_file(pruned_net(low)), artifacts / checkpoint_file(pruned_net(high)))
    for low_file, high_file in zip(run_files(finetuned_run(low)), run_files(finetuned_run(high))):
        swap_files(artifacts / low_file, artifacts / high_file)
    for percent in slim["percents"]:
        edit_history(artifacts / history_file(finetuned_run(percent_tag(percent))), percent=percent)


def _pruned_in_train_mode(reference: Path, dest: Path) -> None:
    """vggprune measured each pruned net with a loop of its own that left out .eval(): the BN layers took the
    test batches' statistics into their running averages before the checkpoint was saved.

    The fine-tuned runs are the reference's: fine-tuning trains BN on batch statistics, so the weights take
    the same path from either checkpoint, and the different starting running averages weigh 0.9^45 < 1% in
    them after the first epoch (BN momentum 0.1, 45 steps per epoch).
    """
    artifacts = start_from(reference, dest)
    _, slim = _settings()
    sparse_path = in_folder(checkpoint_file(sparsity_run(slim["sparse_tag"])))
    model, _ = load_model(Path(dest) / sparse_path, VGG)
    model.eval()
    test = images.loaders()["test"]
    assert isinstance(test.dataset, Sized)
    for percent in slim["percents"]:
        cfg, cfg_mask = reference_build_cfg_mask(model, percent, slim["min_channels"])
        pruned = reference_prune_vgg(model, cfg, cfg_mask)   # a new module: in training mode
        correct = 0
        with torch.no_grad():
            for inputs, labels in test:
                correct += (pruned(inputs).argmax(1) == labels).sum().item()
        save_checkpoint(artifacts / checkpoint_file(pruned_net(percent_tag(percent))), pruned,
                        meta=dict(percent=percent, min_channels=slim["min_channels"], source=sparse_path,
                                  test_accuracy=100.0 * correct / len(test.dataset)))


# --- test_finetuned_accuracy (the finetune cell)

def _finetune_from_pruned_50(reference: Path, dest: Path) -> None:
    """finetune(percent) loads artifacts/pruned_50.pt whatever the percent (a path not made from `percent`):
    finetuned_90 is the 50% net fine-tuned, the same run as finetuned_50 with percent 0.9 recorded."""
    artifacts = start_from(reference, dest)
    _, slim = _settings()
    low, high = slim["percents"]
    # The cell's path, an f-string of the percent (as the notebook spells it), replaced by the low percent's file.
    any_percent = in_folder(checkpoint_file(pruned_net("{pct(percent)}")))
    _finetune_cell(dest, f'f"{any_percent}"', f'"{in_folder(checkpoint_file(pruned_net(percent_tag(low))))}"')
    copy_run(artifacts, finetuned_run(percent_tag(low)), finetuned_run(percent_tag(high)), percent=high)


def _finetune_at_training_lr(reference: Path, dest: Path) -> None:
    """finetune(percent) trains at the training lr HP["lr"] instead of SLIM["finetune_lr"]."""
    artifacts = start_from(reference, dest)
    hp, slim = _settings()
    _finetune_cell(dest, 'lr=SLIM["finetune_lr"]', 'lr=HP["lr"]')
    for percent in slim["percents"]:
        _finetune(artifacts, percent, lr=hp["lr"])


ARTIFACT_MUTANTS = [
    ArtifactMutant("collapse run (s2) trained for 3 of the epochs", "sparsity_train", "test_sparsity_curves",
                   _collapse_run_cut_short),
    ArtifactMutant("no _last checkpoints saved: the best ones copied to their names", "sparsity_train",
                   "test_sparsity_curves", _last_copied_from_best),
    ArtifactMutant("collapse run (s2) trained with the moderate lambda, recorded as its own", "sparsity_train",
                   "test_sparsity_curves", _collapse_run_with_moderate_lambda),
    ArtifactMutant("baseline (s0) trained on a 10% debugging subset", "sparsity_train", "test_sparsity_accuracy",
                   _baseline_on_debug_subset),
    ArtifactMutant("baseline checkpoint from a debugging run on 10% of the data, history from the full run",
                   "sparsity_train", "test_sparsity_accuracy", _baseline_checkpoint_from_debug_run),
    ArtifactMutant("the 50% and 90% pruned nets saved under each other's names", "train_prune_model",
                   "test_pruned_models", _pruned_names_swapped),
    ArtifactMutant("pruned nets saved after a forward pass in training mode (BN statistics of the test batches)",
                   "train_prune_model", "test_pruned_models", _pruned_in_train_mode),
    ArtifactMutant("finetune loads the 50% pruned net for every percent: the 90% fine-tuned run is the 50% net",
                   "train_prune_model", "test_finetuned_accuracy", _finetune_from_pruned_50, cell="finetune"),
    ArtifactMutant("finetune at the training lr instead of finetune_lr", "train_prune_model",
                   "test_finetuned_accuracy", _finetune_at_training_lr, cell="finetune"),
]
