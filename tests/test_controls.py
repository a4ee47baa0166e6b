"""Comparisons at equal cost and effects above seed noise.

train_prune_model: the unpruned model trained for the fine-tuning's epochs and the 90%-pruned cfg trained from
random weights for the same epochs sit next to the fine-tuned networks, in the table and the curves.
kd: the students learn from a fraction of the images over several seeds, reported as mean ± std, and the heat
map is drawn as the difference from the scratch student on a colour scale centred on it. The last tests read
the executed reference work (the session's shared `reference_work`); the others are fast.
"""
import re

import nbformat
import pytest
import torch

from autograde.checks import kd_runs
from autograde.checks import kd as kd_checks
from autograde.course import SOLUTIONS, nbgrader_id
from lib import plots, profile
from lib.artifacts import kd_student_runs, percent_tag
from lib.checkpoint import load_checkpoint, load_model
from lib.data import images
from lib.models import VGG
from lib.train import History, evaluate


def _cell(path, grade_id):
    return next(c for c in nbformat.read(path, as_version=4).cells if nbgrader_id(c) == grade_id)


def _text(cell):
    return "".join(output.get("text", "") for output in cell.outputs)


def _markdown(assignment, notebook):
    nb = nbformat.read(SOLUTIONS / assignment / f"{notebook}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


# ----------------------------------------------------------------------------------------- fast checks

def test_class_subset_keeps_each_class_and_the_same_images():
    train = images.EmbeddedDigits("train")
    subset = images.class_subset(train, 0.2)
    labels = images.labels_of(train)
    counts = torch.bincount(labels[subset.indices], minlength=10)
    assert (counts - 0.2 * torch.bincount(labels, minlength=10)).abs().max() <= 1
    assert subset.indices == images.class_subset(train, 0.2).indices        # fixed, whatever the seed
    assert len(images.loaders(train_fraction=0.2)["train"].dataset) == len(subset)
    assert len(images.loaders()["test"].dataset) == len(images.loaders(train_fraction=0.2)["test"].dataset)


def test_heatmap_with_a_center_is_symmetric_about_it():
    fig = plots.plot_heatmap([[1.0, -3.0], [0.5, 2.0]], ["a", "b"], ["c", "d"], center=0)
    image = fig.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (-3.0, 3.0)
    assert image.get_cmap().name.startswith("RdBu")
    fig = plots.plot_heatmap([[91.0, 95.0]], ["a"], ["c", "d"], center=90.0)
    assert (fig.axes[0].images[0].norm.vmin, fig.axes[0].images[0].norm.vmax) == (85.0, 95.0)


def test_kd_profile_has_several_seeds_on_a_fraction_of_the_images():
    for name in profile.PROFILES:
        config = profile.config("kd", name)
        assert len(config["seeds"]) >= 3 and len(set(config["seeds"])) == len(config["seeds"])
        assert 0 < config["student"]["train_fraction"] < 1
        assert "min_gain" in config
    runs = kd_student_runs(profile.config("kd"))
    assert [name for _, _, name in runs[:2]] == ["student_scratch", "student_kd"]
    assert len(runs) == 2 * len(profile.config("kd")["seeds"])


def test_kd_heat_map_is_drawn_as_the_difference_from_scratch():
    source = _cell(SOLUTIONS / "kd" / "kd.ipynb", "sweep").source
    assert re.search(r"plot_heatmap\(difference,", source) and "center=0" in source
    assert "accuracy - reference" in source


def test_questions_ask_what_the_figures_show_not_what_the_text_says():
    slimming = _markdown("slimming", "train_prune_model")
    assert "What problems did you meet" not in slimming
    assert "At 90%" in slimming and "trained from random weights" in slimming and "whole\nbudget" in slimming
    kd = _markdown("kd", "kd")
    assert "Why the factor $T^2$?" not in kd


# ------------------------------------------------------------------------------ the executed reference

def test_train_prune_model_compares_at_equal_cost(reference_work):
    work = reference_work("slimming")
    slim, vgg = profile.config("slimming"), profile.config("vgg")
    budget = dict(vgg, epochs=slim["finetune_epochs"], lr=slim["finetune_lr"])
    top = max(slim["percents"])
    runs = {"finetuned_0": dict(budget, percent=0.0),
            f"scratch_{round(top * 100)}": dict(budget, percent=top, init="random")}
    for percent in slim["percents"]:
        runs[f"finetuned_{round(percent * 100)}"] = dict(budget, percent=percent)
    for name, hp in runs.items():
        history = History.load(work / "artifacts" / f"{name}.json")
        assert history.config == History(hp).config, f"{name} was not trained with the fine-tuning's budget"
        assert len(history) == slim["finetune_epochs"]
    pruned = load_checkpoint(work / "artifacts" / f"pruned_{round(top * 100)}.pt")
    scratch = load_checkpoint(work / "artifacts" / f"scratch_{round(top * 100)}.pt")
    assert scratch["cfg"] == pruned["cfg"]
    notebook = work / "train_prune_model.ipynb"
    rows = [line.split("|")[0].strip() for line in _text(_cell(notebook, "table")).splitlines() if "|" in line]
    assert rows == ["model", "unpruned", "pruned 50%", "pruned 90%", "90%, scratch"]
    assert "curves[f\"{SCRATCH:.0%} cfg from random weights\"]" in _cell(notebook, "curves").source
    assert "unpruned, trained on" in _cell(notebook, "curves").source


def test_the_second_controls_have_the_budgets_they_claim(reference_work):
    """The lambda = 0 baseline pruned by the same rule and fine-tuned with the sparse networks' exact budget; the
    most-pruned cfg from random weights trained for the epochs of sparsity training and fine-tuning together, at
    the training learning rate, once per seed; sparsity_train's sweep with the grid's setup, one run per lambda."""
    work = reference_work("slimming")
    slim, vgg = profile.config("slimming"), profile.config("vgg")
    budget = dict(vgg, epochs=slim["finetune_epochs"], lr=slim["finetune_lr"])
    top = max(slim["percents"])
    for percent in slim["percents"]:
        history = History.load(work / "artifacts" / f"baseline_finetuned_{percent_tag(percent)}.json")
        assert history.config == History(dict(budget, percent=percent, pruned="baseline")).config
        pruned = load_checkpoint(work / "artifacts" / f"baseline_pruned_{percent_tag(percent)}.pt")
        assert pruned["meta"]["source"].endswith("sparsity_s0.pt"), pruned["meta"]
    assert len(slim["scratch_seeds"]) >= 2
    for seed in slim["scratch_seeds"]:
        name = f"scratch_{percent_tag(top)}_whole_seed{seed}"
        history = History.load(work / "artifacts" / f"{name}.json")
        whole = dict(vgg, epochs=vgg["epochs"] + slim["finetune_epochs"], percent=top, init="random", seed=seed)
        assert history.config == History(whole).config and len(history) == whole["epochs"], name
        assert load_checkpoint(work / "artifacts" / f"{name}.pt")["cfg"] == load_checkpoint(
            work / "artifacts" / f"pruned_{percent_tag(top)}.pt")["cfg"]
    for s in slim["sweep_lambdas"]:
        history = History.load(work / "artifacts" / "sweep" / f"sparsity_{s:g}.json")
        assert history.config == History(dict(vgg, s=s)).config and len(history) == vgg["epochs"]


def _kd_test_accuracy(work):
    """{(seed, kind): test accuracy} of every student checkpoint of the executed kd work, after checking that
    each run was trained with the notebook's setup."""
    config = profile.config("kd")
    accuracy = {}
    test = images.loaders()["test"]
    for seed, kind, name in kd_student_runs(config):
        history = History.load(work / "artifacts" / f"{name}.json")
        assert history.config == History(kd_checks.run_config(config, seed, kind)).config
        model, _ = load_model(work / "artifacts" / f"{name}.pt", VGG)     # the table reports test, once
        accuracy[seed, kind] = evaluate(model, test, progress=False)[1]
    return accuracy


def test_kd_reports_every_seed_as_mean_and_std(reference_work):
    work = reference_work("kd")
    accuracy = _kd_test_accuracy(work)
    lines = {line.split("|")[0].strip(): line for line in _text(_cell(work / "kd.ipynb", "seed_table")).splitlines()
             if "|" in line}
    seeds = profile.config("kd")["seeds"]
    for label, values in (("scratch", [accuracy[s, "scratch"] for s in seeds]),
                          ("KD", [accuracy[s, "kd"] for s in seeds]),
                          ("KD - scratch", [accuracy[s, "kd"] - accuracy[s, "scratch"] for s in seeds])):
        values = torch.tensor(values)
        mean, std = re.search(r"\| (-?[\d.]+) ± ([\d.]+)$", lines[label]).groups()
        assert float(mean) == pytest.approx(values.mean().item(), abs=0.006)
        assert float(std) == pytest.approx(values.std().item(), abs=0.006)


def test_reference_kd_gain_stands_above_the_seed_noise(reference_work):
    """The documented calibration: on the test split (what the seed table reports), every seed gains and the
    mean gain is larger than its standard deviation over the seeds, the notebook's own test of an effect worth
    reporting. (Twice the deviation held on one machine, +8.5 ± 2.7, not on another: +9.4 ± 5.7, lib/CALIBRATION.md.
    The validation split, 142 images, resolves less: there the notebook's test asks only for a mean gain of at
    least min_gain.)"""
    accuracy = _kd_test_accuracy(reference_work("kd"))
    gains = torch.tensor([accuracy[s, "kd"] - accuracy[s, "scratch"] for s in profile.config("kd")["seeds"]])
    assert gains.min() > 0 and gains.mean() > gains.std(), gains


def test_a_seed_run_copied_from_another_seed_fails(reference_work, tmp_path):
    import shutil
    artifacts = shutil.copytree(reference_work("kd") / "artifacts", tmp_path / "artifacts")
    config = profile.config("kd")
    other = [name for seed, kind, name in kd_student_runs(config) if kind == "kd" and seed != config["seeds"][0]][0]
    seed = int(other.rsplit("seed", 1)[1])
    shutil.copyfile(artifacts / "student_kd.pt", artifacts / f"{other}.pt")
    history = History.load(artifacts / "student_kd.json")
    History(dict(history.config, seed=seed), history.records).save(artifacts / f"{other}.json")
    with pytest.raises(AssertionError, match=f"{other}.pt has the same weights as student_kd.pt"):
        kd_runs.check_kd_distilled(artifacts)
