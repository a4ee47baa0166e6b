"""Speed of the slimming assignment in the quick profile on this machine.

    .venv/bin/python bench/bench_slimming.py [--keep FOLDER]

Prints the wall time of each reference notebook executed as a student would (in order, in a temporary
folder, with nbclient), the accuracies and sparsities it reached (from its saved histories), then the time
of `nbgrader autograde` on that submission (grading mode loads the artifacts instead of training) and its
score. --keep copies the executed work to FOLDER (for bench_kd.py --slimming or bench_grading.py --reuse).
Goal (issue 3): each notebook under 3 minutes on 2 CPU cores.
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
from lib.train import History


def load():
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def report(artifacts):
    """The accuracies (best epoch, test split) and final sparsities the executed notebooks saved."""
    slim = profile.config("slimming", "quick")
    for tag, s in slim["lambdas"].items():
        history = History.load(artifacts / f"sparsity_{tag}.json")
        print(f"  lambda {s:<7g} best test accuracy {history.best['val_accuracy']:6.2f}%   "
              f"final sparsity {history['sparsity'][-1]:.2f}")
    for percent in slim["percents"]:
        tag = round(percent * 100)
        history = History.load(artifacts / f"finetuned_{tag}.json")
        print(f"  pruned {tag}% + {len(history)} fine-tune epochs: best test accuracy "
              f"{history.best['val_accuracy']:6.2f}%")
    # the controls with the fine-tuning's budget (train_prune_model, "Two controls at the same cost")
    top = round(max(slim["percents"]) * 100)
    for name, what in (("finetuned_0", "unpruned, trained on"), (f"scratch_{top}", f"{top}% cfg from random weights")):
        history = History.load(artifacts / f"{name}.json")
        print(f"  {what} for {len(history)} epochs: best test accuracy {history.best['val_accuracy']:6.2f}%")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="copy the executed work folder here")
    args = parser.parse_args()
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
