"""Speed of the sincnet_quant assignment in the quick profile: notebook wall time and autograde time.

    .venv/bin/python bench/bench_sincnet_quant.py [--keep] [--work EXECUTED_WORK]

1. Executes the reference work (release notebook + reference solutions) with autograde.course.make_student_work
   in a temporary folder and prints the notebook's wall time (goal: under 5 minutes on 2 CPU cores), the
   test accuracies it reports, and how far the float model's sinc cut-offs moved (lib.models.cutoff_change).
2. Submits that work to a temporary nbgrader course and times one real `nbgrader autograde` (grading mode:
   the artifacts are loaded, nothing is retrained), with the scores.
With --work (an executed work folder, e.g. a prebuilt reference work's sincnet_quant/) only the figures of 1
are printed, from that folder: nothing is executed or timed.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MPLBACKEND", "Agg")

from autograde.course import Course, make_student_work  # noqa: E402

ASSIGNMENT = "sincnet_quant"


def accuracies(work):
    """Test accuracies of the three submitted checkpoints, re-evaluated (the reference quantizer for QAT)."""
    from autograde.reference.sincnet_quant import STEQuantize, weight_scale
    from lib.checkpoint import load_model
    from lib.data import speech
    from lib.models import SincNet
    from lib.models.quant import QuantSincNet
    from lib.train import evaluate
    test = speech.loaders()["test"]
    found = {}
    for name, builder, kwargs in (("sincnet_float", SincNet, {}), ("sincnet_pruned", SincNet, {}),
                                  ("sincnet_quant", QuantSincNet,
                                   {"quantizer": STEQuantize.apply, "weight_scale": weight_scale})):
        model, _ = load_model(work / "artifacts" / f"{name}.pt", builder, **kwargs)
        found[name] = (model.cfg, evaluate(model.eval(), test, progress=False)[1])
    return found


def sinc_change(work):
    """Mean relative change of the float model's cut-offs from their mel initialisation (the same for any seed)."""
    from lib.checkpoint import load_model
    from lib.models import SincNet, cutoff_change
    model, _ = load_model(work / "artifacts" / "sincnet_float.pt", SincNet)
    return cutoff_change(SincNet(model.cfg).front[0].bands(), model.front[0].bands())


def print_figures(work):
    for name, (cfg, accuracy) in accuracies(work).items():
        print(f"  {name:<16} cfg {str(cfg):<26} test accuracy {accuracy:6.2f}%")
    print(f"  sinc cut-offs moved by {100 * sinc_change(work):.1f}% on average during the float training")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    parser.add_argument("--work", type=Path, help="an executed work folder: print its figures, run nothing")
    args = parser.parse_args()
    if args.work:
        print_figures(args.work)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_sincnet_quant_"))
    print(f"{os.cpu_count()} CPUs; torch threads as the kernel chooses; load average {os.getloadavg()[0]:.1f} "
          "(other processes inflate the times)")

    start = time.time()
    work = make_student_work(ASSIGNMENT, tmp / "work")
    print(f"notebook sincnet_quant.ipynb (quick profile, reference solutions): {time.time() - start:6.1f} s")
    print_figures(work)

    course = Course(tmp / "course")
    course.generate(ASSIGNMENT)
    course.submit("student", ASSIGNMENT, work)
    start = time.time()
    course.autograde(ASSIGNMENT, student="student")
    print(f"autograde of one submission: {time.time() - start:6.1f} s")
    for (notebook, cell), (score, max_score) in sorted(course.scores(ASSIGNMENT, "student").items()):
        print(f"  {cell:<22} {score if score is not None else '-'} / {max_score}")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
