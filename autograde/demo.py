"""`make demo`: the course pipeline end to end on a demo class, with real nbgrader, offline, on the CPU.

    python -m autograde.demo [--jobs 2] [--reuse ASSIGNMENT=FOLDER ...]

1. regenerates the student releases labs/ from solutions/ (nbgrader generate_assignment);
2. creates five students in the gradebook of a demo course under grading/demo/:
     ada  submits the reference work (the notebooks run in the quick profile, and their artifacts)
     ben  submits the release untouched
     cy   submits work whose TODOs are wrong (the first mutant of each TODO, from autograde/mutants/)
     dee  submits the reference work after the due date
     eve  submits notebooks that are not notebooks (corrupt files)
3. moves the work through nbgrader's exchange as a JupyterHub course would: release_assignment, each
   student fetch_assignment and submit under their id, collect;
4. autogrades every assignment for every student (autograde.cohort, in parallel), generates the feedback
   HTML, exports the grades CSV (nbgrader export), and prints the table student x assignment.

--reuse gives an already executed reference work folder for an assignment (the tests use it to save time).
"""
import argparse
import csv
import importlib
import json
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat

from . import cohort
from .course import ASSIGNMENTS, LABS, REPO, SOLUTIONS, Course, make_student_work, nbgrader_id
from .labs import refuse_stray_artifacts

STUDENTS = {
    "ada": ("Ada", "Reference"),
    "ben": ("Ben", "Blank"),
    "cy": ("Cy", "Mutant"),
    "dee": ("Dee", "Late"),
    "eve": ("Eve", "Broken"),
}


def assignments():
    return [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]


def mutant_work(assignment, reference, dest):
    """The reference work with the first mutant of every TODO cell planted (the notebooks not re-run)."""
    shutil.copytree(reference, dest)
    first = {}
    for mutant in importlib.import_module(f"autograde.mutants.{assignment}").MUTANTS:
        first.setdefault((mutant.notebook, mutant.cell), mutant)
    for (notebook, cell_id), mutant in first.items():
        path = dest / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if nbgrader_id(cell) == cell_id:
                cell.source = mutant.code
        nbformat.write(nb, path)
    return dest, sorted(first.values())


def broken_work(assignment, dest):
    """Notebooks that are not JSON any more (a truncated upload)."""
    dest.mkdir(parents=True)
    for notebook in ASSIGNMENTS[assignment]:
        text = (LABS / assignment / f"{notebook}.ipynb").read_text()
        (dest / f"{notebook}.ipynb").write_text(text[: len(text) // 3])
    return dest


class Student:
    """A student's side of the exchange: their own folder and nbgrader config, as on a JupyterHub."""

    def __init__(self, course, student_id):
        self.course, self.id = course, student_id
        self.home = course.root / "home" / student_id
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "nbgrader_config.py").write_text(
            "c = get_config()\n"
            "c.CourseDirectory.course_id = 'compresslab'\n"
            f"c.Exchange.root = {str(course.root / 'grading' / 'exchange')!r}\n"
            f"c.Exchange.cache = {str(self.home / '.nbgrader_cache')!r}\n"
            "c.Exchange.path_includes_course = True\n")

    def run(self, *args):
        return self.course.nbgrader(*args, cwd=self.home)

    def fetch(self, assignment):
        self.run("fetch_assignment", assignment)
        return self.home / "compresslab" / assignment

    def submit(self, assignment, work):
        """Replace the fetched notebooks with `work` (a folder), then nbgrader submit under the student's id."""
        folder = self.home / "compresslab" / assignment
        if work is not None:
            for path in folder.glob("*.ipynb"):
                path.unlink()
            shutil.copytree(work, folder, dirs_exist_ok=True)
        self.run("submit", assignment, "--student", self.id)


def build_reference(assignment, root, reuse):
    if assignment in reuse:
        return Path(reuse[assignment])
    print(f"  running the reference {assignment} notebooks (quick profile)...", flush=True)
    start = time.time()
    work = make_student_work(assignment, root / "work" / "reference" / assignment)
    print(f"  ... done in {time.time() - start:.0f} s", flush=True)
    return work


def run(root=REPO / "grading" / "demo", jobs=2, reuse=None):
    reuse = dict(reuse or {})
    root = Path(root).resolve()
    shutil.rmtree(root, ignore_errors=True)
    course = Course(root, release=LABS)
    started = time.time()
    print(f"Demo course in {root}")

    print("1. Regenerating the student releases labs/ from solutions/ (nbgrader generate_assignment)")
    for assignment in assignments():
        refuse_stray_artifacts(assignment)                # labs/ is the kit's own release folder
        course.generate(assignment)
    for student, (first, last) in STUDENTS.items():
        course.nbgrader("db", "student", "add", student, "--first-name", first, "--last-name", last)

    print("2. Preparing each student's work")
    works = {}
    for assignment in assignments():
        reference = build_reference(assignment, root, reuse)
        mutated, _ = mutant_work(assignment, reference, root / "work" / "mutant" / assignment)
        works[assignment] = {"ada": reference, "ben": None, "cy": mutated, "dee": reference,
                             "eve": broken_work(assignment, root / "work" / "broken" / assignment)}

    print("3. Exchange: release_assignment, fetch_assignment, submit (dee after the due date), collect")
    students = {s: Student(course, s) for s in STUDENTS}
    for assignment in assignments():
        course.nbgrader("db", "assignment", "add", assignment, "--duedate", "2100-01-01 00:00:00 UTC")
        course.nbgrader("release_assignment", assignment, "--force")
        for student in students.values():
            student.fetch(assignment)
        for s in ("ada", "ben", "cy", "eve"):
            students[s].submit(assignment, works[assignment][s])
        # The due date: the next whole second, after every on-time submission; dee submits once it has passed.
        due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        course.nbgrader("db", "assignment", "add", assignment, "--duedate", due.strftime("%Y-%m-%d %H:%M:%S UTC"))
        time.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()) + 0.1)
        students["dee"].submit(assignment, works[assignment]["dee"])
        course.nbgrader("collect", assignment)

    print(f"4. Autograding ({jobs} workers), feedback, export")
    for assignment in assignments():
        cohort.run(assignment, jobs=jobs, course_root=root)
        course.nbgrader("generate_feedback", assignment, "--force")
    csv_path = root / "grades.csv"
    course.nbgrader("export", "--to", str(csv_path))

    table = read_scores(csv_path)
    print_table(table)
    print(f"\nGrades CSV:     {csv_path}")
    print(f"Feedback HTML:  {root / 'grading' / 'feedback'}/<student>/<assignment>/<notebook>.html")
    print(f"Gradebook:      {root / 'grading' / 'gradebook.db'}")
    print(f"Demo finished in {time.time() - started:.0f} s")
    (root / "scores.json").write_text(json.dumps(table, indent=1))
    return table


def read_scores(csv_path):
    """{student: {assignment: (score, max_score)}} from nbgrader's grades CSV (late penalty applied)."""
    table = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            table.setdefault(row["student_id"], {})[row["assignment"]] = (float(row["score"]), float(row["max_score"]))
    return table


def print_table(table):
    names = assignments()
    print("\n" + f"{'student':<10}" + "".join(f"{a:>18}" for a in names))
    for student in STUDENTS:
        cells = [table.get(student, {}).get(a) for a in names]
        print(f"{student:<10}" + "".join(f"{s:>10.1f} / {m:<5.0f}" if s is not None else f"{'-':>18}"
                                          for s, m in (c or (None, None) for c in cells)))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the course pipeline on a demo class.")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--root", default=str(REPO / "grading" / "demo"))
    parser.add_argument("--reuse", action="append", default=[], metavar="ASSIGNMENT=FOLDER")
    args = parser.parse_args(argv)
    run(args.root, args.jobs, dict(item.split("=", 1) for item in args.reuse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
