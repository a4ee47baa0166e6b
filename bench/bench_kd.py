"""Speed and results of the kd assignment in the quick profile on this machine.

    .venv/bin/python bench/bench_kd.py [--slimming FOLDER] [--keep FOLDER]

Executes the reference kd notebook as a student would (nbclient, in a temporary folder) and prints its wall
time, the test accuracies of its checkpoints and the sweep's validation accuracies, then the time of
`nbgrader autograde` on that submission (grading mode loads the artifacts instead of training) and its score.

Without --slimming the notebook finds no slimming artifacts, so it trains its own teacher: the path CI runs.
With --slimming FOLDER (an executed slimming work folder, e.g. from make_student_work("slimming", ...)) the
kd folder is placed next to a copy of it, as labs/kd sits next to labs/slimming, and the notebook takes the
teacher and the pruned + fine-tuned model from there.
Goal: the notebook under 3 minutes on 2 CPU cores. Other processes on the machine inflate the
figures: the load average is printed before and after.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograde.course import Course, execute, fill_solutions  # noqa: E402
from lib import profile  # noqa: E402
from lib.artifacts import kd_student_runs, kd_sweep_runs  # noqa: E402
from lib.checkpoint import load_model  # noqa: E402
from lib.data import images  # noqa: E402
from lib.models import VGG  # noqa: E402
from lib.train import History, evaluate  # noqa: E402


def load():
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def best(artifacts, name):
    """The best validation accuracy of a run (the epoch its checkpoint holds)."""
    return History.load(artifacts / f"{name}.json").best["val_accuracy"]


def tested(artifacts, name, loader):
    """The test accuracy of the checkpoint artifacts/<name>.pt (the best-validation epoch), measured here."""
    model, _ = load_model(artifacts / f"{name}.pt", VGG)
    return evaluate(model, loader, device=torch.device("cpu"), progress=False)[1]


def report(work):
    """Print the accuracies the executed notebook reached: test accuracy of each checkpoint (the epoch of the
    best validation accuracy); the sweep, which chooses T and alpha, by its validation accuracies."""
    artifacts = work / "artifacts"
    kd = profile.config("kd", "quick")
    cfg = json.loads((artifacts / "student_cfg.json").read_text())["cfg"]
    teacher = "copied from the slimming artifacts" if "s" in History.load(artifacts / "teacher.json").config \
        else "trained by the notebook"
    print(f"  student cfg {cfg}; teacher {teacher}")
    test = images.loaders("quick")["test"]
    names = ("teacher",) + (("finetuned_90",) if (artifacts / "finetuned_90.pt").is_file() else ())
    print("  test accuracy of the best-validation checkpoints: " + ", ".join(
        f"{name} {tested(artifacts, name, test):.2f}%" for name in names))
    runs = kd_student_runs(kd)
    accuracy = {kind: torch.tensor([tested(artifacts, name, test) for _, k, name in runs if k == kind])
                for kind in ("scratch", "kd")}
    gain = accuracy["kd"] - accuracy["scratch"]
    print(f"  students on {kd['student']['train_fraction']:.0%} of the images, seeds {kd['seeds']} "
          f"(T = {kd['T']}, alpha = {kd['alpha']}), test accuracy of each run's checkpoint:")
    for label, values in (("scratch", accuracy["scratch"]), ("KD", accuracy["kd"]), ("KD - scratch", gain)):
        print(f"    {label:<13} " + " ".join(f"{v:6.2f}" for v in values.tolist())
              + f"   mean {values.mean():.2f} ± {values.std():.2f}")
    sweep, runs = kd["sweep"], kd_sweep_runs(kd)
    scratch = best(artifacts, next(name for name, T, _ in runs if T is None))
    print(f"  sweep ({sweep['epochs']} epochs, seed {kd['seeds'][0]}), best validation accuracy, KD minus scratch "
          f"({scratch:.2f}%):")
    for T in sweep["T"]:
        cells = "  ".join(f"alpha={a}: {best(artifacts, name) - scratch:+6.2f}" for name, t, a in runs if t == T)
        print(f"    T={T:<3} {cells}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--slimming", type=Path, help="an executed slimming work folder to place kd next to")
    parser.add_argument("--keep", type=Path, help="copy the executed kd work folder here")
    args = parser.parse_args()
    print(f"kd, quick profile: {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.slimming:
            shutil.copytree(args.slimming, tmp / "slimming")
        work = tmp / "kd"
        (path,) = fill_solutions("kd", work)
        start = time.time()
        execute(path, profile="quick")
        elapsed = time.time() - start
        print(f"  {path.name:<10} {elapsed:7.1f} s   (goal < 180 s)   {load()}")
        report(work)
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)

        course = Course(tmp / "course")
        course.generate("kd")
        course.submit("bench", "kd", work)
        start = time.time()
        course.autograde("kd", student="bench")
        elapsed = time.time() - start
        scores = course.scores("kd", "bench")
        auto = {key: value for key, value in scores.items() if value[0] is not None}
        got, out_of = sum(v[0] for v in auto.values()), sum(v[1] for v in auto.values())
        print(f"  autograde of one submission {elapsed:5.1f} s   auto-graded score {got:g} / {out_of:g}   {load()}")


if __name__ == "__main__":
    main()
