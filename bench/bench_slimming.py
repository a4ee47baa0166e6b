"""Speed of the slimming assignment in the quick profile on this machine.

    .venv/bin/python bench/bench_slimming.py

Prints the wall time of each reference notebook executed as a student would (in order, in a temporary
folder, with nbclient), then the time of `nbgrader autograde` on that submission (grading mode loads the
artifacts instead of training) and its score. Goal (issue 3): each notebook under 3 minutes on 2 CPU cores.
Other processes on the machine inflate the figures: the load average is printed before and after.
"""
import os
import tempfile
import time
from pathlib import Path

import torch

from autograde.course import Course, execute, fill_solutions


def load():
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
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
