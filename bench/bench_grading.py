"""Grading speed: autograde seconds per submission per assignment, and cohort throughput.

    .venv/bin/python bench/bench_grading.py [--reuse ASSIGNMENT=FOLDER ...] [--cohort ASSIGNMENT] [-n 20]

1. Builds (or reuses) the reference work of every assignment, submits it for one student and times its
   trusted grading (autograde.cohort, -j 1: real `nbgrader autograde`, the kernel in the bubblewrap sandbox,
   the scores decided by the referee), per assignment (goal: all five notebooks under 60 s on 2 CPU cores).
   With --no-sandbox the same without the sandbox, to see what it costs.
2. Submits the same work for n simulated students of one assignment and times `autograde.cohort` with
   -j 1 and with -j 2.
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograde import cohort  # noqa: E402
from autograde.course import ASSIGNMENTS, SOLUTIONS, Course, make_student_work  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="append", default=[], metavar="ASSIGNMENT=FOLDER")
    parser.add_argument("--cohort", default="kd", help="assignment for the throughput run (default kd)")
    parser.add_argument("-n", type=int, default=20, help="simulated submissions (default 20)")
    parser.add_argument("--no-sandbox", action="store_true", help="grade without the sandbox (for comparison)")
    args = parser.parse_args()
    reuse = dict(item.split("=", 1) for item in args.reuse)
    tmp = Path(tempfile.mkdtemp(prefix="bench_grading_"))
    assignments = [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]
    course = Course(tmp / "course")
    work, total = {}, 0.0
    sandbox = not args.no_sandbox
    print(f"trusted grading of one reference submission ({'sandbox' if sandbox else 'no sandbox'} + referee; "
          "artifacts loaded, nothing retrained)")
    for assignment in assignments:
        work[assignment] = Path(reuse[assignment]) if assignment in reuse else \
            make_student_work(assignment, tmp / "work" / assignment)
        course.generate(assignment)
        course.submit("student", assignment, work[assignment])
        start = time.time()
        result = cohort.run(assignment, jobs=1, course_root=course.root, students=["student"], force=True,
                            quiet=True, sandbox=sandbox)["student"]
        seconds = time.time() - start
        scores = course.scores(assignment, "student")
        earned, total_points = sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())
        assert result.status == "graded" and earned == total_points, (result, scores)
        total += seconds
        notebooks = len(ASSIGNMENTS[assignment])
        print(f"  {assignment:<14} {notebooks} notebook(s)  {seconds:6.1f} s  ({earned:g} / {total_points:g} points)")
    print(f"  all {sum(len(ASSIGNMENTS[a]) for a in assignments)} notebooks of one student: {total:.1f} s")

    if args.cohort in work:
        for i in range(args.n):
            course.submit(f"s{i:02d}", args.cohort, work[args.cohort])
        students = [f"s{i:02d}" for i in range(args.n)]
        for jobs in (1, 2):
            start = time.time()
            cohort.run(args.cohort, jobs=jobs, course_root=course.root, students=students, force=True, quiet=True,
                       sandbox=sandbox)
            seconds = time.time() - start
            print(f"cohort {args.cohort}: {args.n} submissions with -j {jobs}: {seconds:6.1f} s "
                  f"({seconds / args.n:.1f} s per submission, {60 * args.n / seconds:.1f} per minute)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
