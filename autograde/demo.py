"""`make demo`: the course pipeline end to end on a demo class, with real nbgrader, offline, on the CPU.

    python -m autograde.demo [--jobs 2] [--reuse ASSIGNMENT=FOLDER ...]

1. generates the student releases from solutions/ into the demo course's own release/ folder (nbgrader
   generate_assignment; the kit's committed labs/ is left as it is);
2. creates six students in the gradebook of a demo course under grading/demo/:
     ada  submits the reference work (the notebooks run in the quick profile, and their artifacts)
     ben  submits the release untouched
     cy   submits ada's work with wrong TODOs (the first mutant of each TODO, from autograde/mutants/), the
          notebooks not re-run: cy's checkpoints are ada's, and the similarity pass lists them together
     dee  runs the reference notebooks herself, with her own seeds (lib.train.student_seed), and submits after
          the due date
     eve  submits notebooks that are not notebooks (corrupt files)
     fay  submits ada's work with the channels of every VGG reordered: other weights, the same networks
3. moves the work through nbgrader's exchange as a JupyterHub course would: release_assignment, each
   student fetch_assignment and submit under their id, collect;
4. autogrades every assignment for every student (autograde.cohort: `nbgrader autograde` in parallel
   workers), generates the feedback HTML, exports the grades CSV, and prints the table student x assignment
   and which students' checkpoints are (nearly) the same: ada, cy and fay; dee's own runs are not.

Steps 1, 3 and 4's feedback and export call nbgrader's Python API in this process (NbGraderAPI, which
formgrader uses, and the exchange classes behind the Assignments tab): the same code as the `nbgrader`
commands, without 3.5 s of start-up for each of the ~50 calls.

--reuse gives an already executed reference work folder for an assignment (the tests use it to save time);
dee's work is always run.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from traitlets.config.loader import PyFileConfigLoader

from lib.checkpoint import CheckpointError, load_model, save_checkpoint
from lib.models import VGG

from . import cohort, doctor
from .course import (ASSIGNMENTS, BIN, LABS, REPO, SOLUTIONS, Course, make_student_work,
                     nbgrader_id, reference_builder, tool_env)
from .similarity import reordered_channels
from .labs import refuse_stray_artifacts
from .release import student_nbgrader_config

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import TypeAlias

    from nbgrader.apps import NbGraderAPI

    from .course import WorkMaker
    from .mutants import Mutant

    Scores: TypeAlias = dict[str, dict[str, tuple[float, float]]]   # {student: {assignment: (score, max_score)}}

STUDENTS = {
    "ada": ("Ada", "Reference"),
    "ben": ("Ben", "Blank"),
    "cy": ("Cy", "Mutant"),
    "dee": ("Dee", "Late"),
    "eve": ("Eve", "Broken"),
    "fay": ("Fay", "Copier"),
}


def assignments() -> list[str]:
    return [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]


def mutant_work(assignment: str, reference: Path, dest: Path) -> tuple[Path, list[Mutant]]:
    """The reference work with the first mutant of every TODO cell planted (the notebooks not re-run)."""
    shutil.copytree(reference, dest)
    first: dict[tuple[str, str], Mutant] = {}       # (notebook, cell) -> its first mutant
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


def reordered_work(reference: Path, dest: Path) -> Path:
    """The reference work with every VGG checkpoint's channels reordered (similarity.reordered_channels): a
    copy that no parameter-by-parameter comparison finds."""
    shutil.copytree(reference, dest)
    for path in sorted((dest / "artifacts").rglob("*.pt")):
        try:
            model, meta = load_model(path, VGG)
        except CheckpointError:          # not a VGG (SincNet): copied as it is
            continue
        save_checkpoint(path, reordered_channels(model), meta=meta)
    return dest


def broken_work(assignment: str, dest: Path) -> Path:
    """Notebooks that are not JSON any more (a truncated upload)."""
    dest.mkdir(parents=True)
    for notebook in ASSIGNMENTS[assignment]:
        text = (LABS / assignment / f"{notebook}.ipynb").read_text()
        (dest / f"{notebook}.ipynb").write_text(text[: len(text) // 3])
    return dest


class Student:
    """A student's side of the exchange, as on a JupyterHub: their own folder, and nbgrader's exchange classes
    (the code behind the Assignments tab and `nbgrader fetch_assignment` / `nbgrader submit`).

    command("fetch_assignment", "kd") runs the real `nbgrader` command instead, as the student types it in their
    folder, with the student bundle's nbgrader_config.py (autograde.release) there. nbgrader submits under the
    login's name (on a JupyterHub, JUPYTERHUB_USER): here every student is this one Unix user, so a submit
    names the student (`nbgrader submit kd --student ID`).
    """

    def __init__(self, root: Path, student_id: str) -> None:
        from nbgrader.auth import Authenticator
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.exchange import ExchangeFactory
        from traitlets.config import Config
        self.id = student_id
        self.course_id = Course.open(root).course_id
        self.home = root / "home" / student_id
        self.home.mkdir(parents=True, exist_ok=True)
        self.config = Config()
        self.config.CourseDirectory.course_id = self.course_id
        self.config.CourseDirectory.student_id = student_id        # what `nbgrader submit --student` sets
        self.config.Exchange.root = str(root / "grading" / "exchange")
        self.config.Exchange.cache = str(self.home / ".nbgrader_cache")
        self.config.Exchange.assignment_dir = str(self.home)         # the student's Jupyter folder
        self.config.Exchange.path_includes_course = True
        self.coursedir = CourseDirectory(config=self.config)
        self.authenticator = Authenticator(config=self.config)
        self.exchange = ExchangeFactory(config=self.config)

    def command(self, *args: object) -> subprocess.CompletedProcess[str]:
        """Run `nbgrader *args` in the student's folder as the student; returns the CompletedProcess."""
        config = self.home / "nbgrader_config.py"
        if not config.exists():
            config.write_text(student_nbgrader_config(exchange=self.config.Exchange.root))
        result = subprocess.run([str(BIN / "nbgrader"), *map(str, args)], cwd=self.home,
                                env=tool_env(HOME=str(self.home)), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{self.id}: nbgrader {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
        return result

    def _run(self, action: type[Any], assignment: str) -> None:      # action: an nbgrader exchange class
        self.coursedir.assignment_id = assignment
        check(action(coursedir=self.coursedir, authenticator=self.authenticator, config=self.config),
              f"{self.id}: {action.__name__} {assignment}")

    def fetch(self, assignment: str) -> Path:
        self._run(self.exchange.FetchAssignment, assignment)
        return self.home / self.course_id / assignment

    def submit(self, assignment: str, work: Path | None) -> None:
        """Replace the fetched notebooks with `work` (a folder), then submit them under the student's id."""
        folder = self.home / self.course_id / assignment
        if work is not None:
            for path in folder.glob("*.ipynb"):
                path.unlink()
            shutil.copytree(work, folder, dirs_exist_ok=True)
        self._run(self.exchange.Submit, assignment)


def instructor(root: str | Path) -> NbGraderAPI:
    """nbgrader's Python API on the course at `root` (what formgrader uses): the same code as the `nbgrader`
    commands, without their 3.5 s of start-up each."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    config = PyFileConfigLoader("nbgrader_config.py", str(root)).load_config()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def check(app_or_result: Any, what: str) -> dict[str, Any]:
    """Run an nbgrader app (or take an NbGraderAPI result); raise with nbgrader's log if it failed."""
    from nbgrader.utils import capture_log
    result = app_or_result if isinstance(app_or_result, dict) else capture_log(app_or_result)
    if not result["success"]:
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('log', '')}{result.get('error', '')}")
    return result


def build_references(root: Path,
                     reuse: Mapping[str, str | Path] | None) -> tuple[dict[str, Path], dict[str, Path]]:
    """({assignment: folder of the reference work}, {assignment: folder of dee's own run}), the folders in `reuse`
    taken as they are. The two builds run at once, each with its assignments side by side on its half of the
    cores (autograde.course.reference_builder)."""
    def maker(student: str | None) -> WorkMaker:
        whose = "the reference" if student is None else f"{student}'s"

        def make(assignment: str, folder: Path, threads: int | None) -> Path:
            # one string per print: several threads print at once
            print(f"  running {whose} {assignment} notebooks (quick profile)...\n", end="", flush=True)
            start = time.time()
            work = make_student_work(assignment, folder, threads=threads, student=student)
            print(f"  ... {whose} {assignment} done in {time.time() - start:.0f} s\n", end="", flush=True)
            return work
        return make

    builds = (reference_builder(root / "work" / "reference", maker(None), reuse, assignments(), share=2),
              reference_builder(root / "work" / "dee", maker("dee"), None, assignments(), share=2))
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference, dee = pool.map(lambda build: {a: build(a) for a in assignments()}, builds)
    return reference, dee


def run(root: str | Path = REPO / "grading" / "demo", jobs: int = 2,
        reuse: Mapping[str, str | Path] | None = None) -> Scores:
    reuse = dict(reuse or {})
    root = Path(root).resolve()
    shutil.rmtree(root, ignore_errors=True)
    Course(root).grading.mkdir()                          # the demo course's config, and its gradebook's folder
    api = instructor(root)
    started = time.time()
    print(f"Demo course in {root}")

    print("1. Generating the student releases from solutions/ (nbgrader generate_assignment)")
    for assignment in assignments():
        refuse_stray_artifacts(assignment)                # what students get must not hold the reference's artifacts
        check(api.generate_assignment(assignment, force=True), f"generate_assignment {assignment}")
    with api.gradebook as gb:
        for student, (first, last) in STUDENTS.items():
            gb.update_or_create_student(student, first_name=first, last_name=last)

    print("2. Preparing each student's work")
    works: dict[str, dict[str, Path | None]] = {}     # {assignment: {student: the folder submitted}}
    references, dees = build_references(root, reuse)
    for assignment, reference in references.items():
        mutated, _ = mutant_work(assignment, reference, root / "work" / "mutant" / assignment)
        works[assignment] = {"ada": reference, "ben": None, "cy": mutated, "dee": dees[assignment],
                             "eve": broken_work(assignment, root / "work" / "broken" / assignment),
                             "fay": reordered_work(reference, root / "work" / "reordered" / assignment)}

    print("3. Exchange: release_assignment, fetch_assignment, submit (dee after the due date), collect")
    students = {s: Student(root, s) for s in STUDENTS}
    for assignment in assignments():
        check(api.release_assignment(assignment), f"release_assignment {assignment}")
        for account in students.values():
            account.fetch(assignment)
        for s in ("ada", "ben", "cy", "eve", "fay"):
            students[s].submit(assignment, works[assignment][s])
        # The due date: the next whole second, after every on-time submission; dee submits once it has passed.
        due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        with api.gradebook as gb:
            gb.update_or_create_assignment(assignment, duedate=due.replace(tzinfo=None))
        time.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()) + 0.1)
        students["dee"].submit(assignment, works[assignment]["dee"])
        check(api.collect(assignment), f"collect {assignment}")

    print(f"4. Autograding ({jobs} workers), feedback, export")
    results = cohort.run_many(assignments(), jobs=jobs, course_root=root)
    for assignment in assignments():
        check(api.generate_feedback(assignment, force=True), f"generate_feedback {assignment}")
    csv_path = root / "grades.csv"
    export_csv(api, csv_path)

    table = read_scores(csv_path)
    print_table(table)
    print_similar(results)
    print(f"\nGrades CSV:     {csv_path}")
    print(f"Feedback HTML:  {root / 'grading' / 'feedback'}/<student>/<assignment>/<notebook>.html")
    print(f"Gradebook:      {root / 'grading' / 'gradebook.db'}")
    print(f"Demo finished in {time.time() - started:.0f} s")
    (root / "scores.json").write_text(json.dumps(table, indent=1))
    return table


def export_csv(api: NbGraderAPI, path: Path) -> None:
    """`nbgrader export --to path`: nbgrader's CSV export plugin on the course gradebook."""
    from nbgrader.plugins import CsvExportPlugin
    with api.gradebook as gb:
        CsvExportPlugin(to=str(path), parent=api).export(gb)


def read_scores(csv_path: str | Path) -> Scores:
    """{student: {assignment: (score, max_score)}} from nbgrader's grades CSV (late penalty applied)."""
    table: Scores = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            table.setdefault(row["student_id"], {})[row["assignment"]] = (float(row["score"]), float(row["max_score"]))
    return table


def print_table(table: Scores) -> None:
    names = assignments()
    print("\n" + f"{'student':<10}" + "".join(f"{a:>18}" for a in names))
    for student in STUDENTS:
        cells = [table.get(student, {}).get(a) for a in names]
        print(f"{student:<10}" + "".join(f"{s:>10.1f} / {m:<5.0f}" if s is not None else f"{'-':>18}"
                                          for s, m in (c or (None, None) for c in cells)))


def print_similar(results: Mapping[str, Mapping[str, cohort.Result]]) -> None:
    """Each assignment's students whose checkpoints are identical or nearly identical (the TA decides)."""
    print("\nSimilar checkpoints (autograde.similarity.similar_submissions; the TA decides what they mean):")
    for assignment, by_student in results.items():
        pairs = sorted({tuple(sorted((student, other))) for student, result in by_student.items()
                        for other in result.similar_to})
        print(f"  {assignment:<14} {', '.join(f'{a} ~ {b}' for a, b in pairs) or 'none'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the course pipeline on a demo class.")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--root", default=str(REPO / "grading" / "demo"))
    parser.add_argument("--reuse", action="append", default=[], metavar="ASSIGNMENT=FOLDER")
    args = parser.parse_args(argv)
    try:
        # Before eight minutes of notebooks: can this machine grade at all? One line per problem, in seconds.
        doctor.require(Path(args.root).parent, doctor.DEMO_BYTES, "make demo", say=lambda line: None)
    except doctor.NotReady as error:
        for line in str(error).splitlines():
            print(f"make demo: {line}", file=sys.stderr)
        return 2
    run(args.root, args.jobs, dict(item.split("=", 1) for item in args.reuse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
