"""Speed of the slimming assignment in the quick profile on this machine.

    .venv/bin/python bench/bench_slimming.py [--keep FOLDER | --report FOLDER]

Prints the wall time of each reference notebook executed as a student would (in order, in a temporary
folder, with nbclient), the accuracies and sparsities of its saved checkpoints (the best epoch's, chosen on the
validation split, and the last epoch's; test accuracies measured here on each), then the time
of `nbgrader autograde` on that submission (grading mode loads the artifacts instead of training) and its
score. --keep copies the executed work to FOLDER (for bench_kd.py --slimming or bench_grading.py --reuse);
--report only prints the figures of an executed work folder.
Goal: each notebook under 3 minutes on 2 CPU cores.
Other processes on the machine inflate the figures: the load average is printed before and after.
"""
import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from autograde.course import Course, execute, fill_solutions
from lib import profile
from lib.checkpoint import load_model
from lib.data import images
from lib.models import VGG
from lib.slimming import sparsity
from lib.train import History, evaluate, last_path


def load():
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def report(artifacts):
    """Each run's figures, every one from the model it names: the best checkpoint (the epoch of the highest
    validation accuracy, sparsity_<tag>.pt) and, for the sparsity runs, the last epoch (sparsity_<tag>_last.pt)."""
    slim = profile.config("slimming", "quick")
    threshold = profile.config("sparsity_threshold", "quick")
    test = images.loaders("quick")["test"]
    for tag, s in slim["lambdas"].items():
        path = artifacts / f"sparsity_{tag}.pt"
        best, meta = load_model(path, VGG)
        last, last_meta = load_model(last_path(path), VGG)
        print(f"  lambda {s:<7g} best (epoch {meta['epoch']:>2}): validation {meta['val_accuracy']:6.2f}%  "
              f"test {_test_accuracy(best, test):6.2f}%  sparsity {sparsity(best, threshold):.2f}   "
              f"last (epoch {last_meta['epoch']:>2}): test {_test_accuracy(last, test):6.2f}%  "
              f"sparsity {sparsity(last, threshold):.2f}")
    for percent in slim["percents"]:
        tag = round(percent * 100)
        model, meta = load_model(artifacts / f"finetuned_{tag}.pt", VGG)
        epochs = len(History.load(artifacts / f"finetuned_{tag}.json"))
        print(f"  pruned {tag}% + {epochs} fine-tune epochs, best (epoch {meta['epoch']:>2}): validation "
              f"{meta['val_accuracy']:6.2f}%  test {_test_accuracy(model, test):6.2f}%")

    # the controls with the fine-tuning's budget (train_prune_model, "Two controls at the same cost")
    top = round(max(slim["percents"]) * 100)
    for name, what in (("finetuned_0", "unpruned, trained on"), (f"scratch_{top}", f"{top}% cfg from random weights")):
        model, meta = load_model(artifacts / f"{name}.pt", VGG)
        epochs = len(History.load(artifacts / f"{name}.json"))
        print(f"  {what} for {epochs} epochs, best (epoch {meta['epoch']:>2}): validation "
              f"{meta['val_accuracy']:6.2f}%  test {_test_accuracy(model, test):6.2f}%")


def _test_accuracy(model, loader):
    return evaluate(model, loader, device=torch.device("cpu"), progress=False)[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="copy the executed work folder here")
    parser.add_argument("--report", type=Path, help="only print the figures of this executed work folder")
    args = parser.parse_args()
    if args.report:
        return report(args.report / "artifacts")
    print(f"slimming, quick profile: {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = tmp / "work"
        total = 0.0
        for path in fill_solutions("slimming", work):
            start = time.time()
            execute(path, profile="quick")
            elapsed = time.time() - start
            total += elapsed
            print(f"  {path.name:<26} {elapsed:7.1f} s   (goal < 180 s)")
        print(f"  {'all three notebooks':<26} {total:7.1f} s   {load()}")
        report(work / "artifacts")
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)

        course = Course(tmp / "course")
        course.generate("slimming")
        course.submit("bench", "slimming", work)
        start = time.time()
        course.autograde("slimming", student="bench")
        elapsed = time.time() - start
        scores = course.scores("slimming", "bench")
        auto = {key: value for key, value in scores.items() if value[0] is not None}
        got, out_of = sum(v[0] for v in auto.values()), sum(v[1] for v in auto.values())
        print(f"  autograde of one submission {elapsed:5.1f} s   auto-graded score {got:g} / {out_of:g}   {load()}")


if __name__ == "__main__":
    main()
