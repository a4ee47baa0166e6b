"""The gradebook merge. Each worker grades in a scratch gradebook of its own (nbgrader's SQLite gradebook is
not safe for concurrent writers) and sends back what it holds as data (read_grades); the client, the course
gradebook's only writer, copies it in (GradebookWriter: one session for the whole run) and moves the
autograded notebooks into place."""
from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import nbformat

from ..course import Course
from ..referee import sanitize_markdown
from .results import Result, markdown_literal

if TYPE_CHECKING:
    from .transport import Graded


@dataclass
class NotebookGrades:
    """What nbgrader gave one notebook of a submission: {grade cell: (auto_score, needs_manual_grade)},
    {comment cell: auto_comment}, whether it is flagged, and its late penalty."""
    grades: dict[str, tuple[float | None, bool]] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)
    flagged: bool = False
    late_submission_penalty: float | None = None


class GradebookNotReady(RuntimeError):
    """The course gradebook does not know an assignment's grade cells yet: nothing can be graded."""


def check_gradebook(course: Course, assignment: str) -> None:
    """Raise GradebookNotReady, naming the one command that fixes it, unless the gradebook holds `assignment`
    with its notebooks (`nbgrader generate_assignment` registers them; a fresh clone has no gradebook)."""
    from nbgrader.api import Gradebook, MissingEntry
    fix = (f"run `nbgrader generate_assignment {assignment} --force` in {course.root} first: it registers "
           f"the grade cells of {assignment} in the gradebook (and rewrites labs/{assignment} from solutions/)")
    if not course.db.is_file():
        raise GradebookNotReady(f"{course.db} does not exist: {fix}")
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        try:
            registered = gb.find_assignment(assignment).notebooks
        except MissingEntry:
            registered = []
    if not registered:
        raise GradebookNotReady(f"{course.db} has no assignment '{assignment}': {fix}")


# ---------------------------------------------------------------------------------------------------------
# On the worker: its scratch gradebook.

def forget_submission(db: Path, course_id: str, assignment: str, student: str) -> None:
    """Remove an earlier grading of this submission from a scratch gradebook: only this run's grades count."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{db}", course_id) as gb:
        try:
            gb.remove_submission(assignment, student)
        except MissingEntry:
            pass


def read_grades(db: Path, course_id: str, assignment: str, student: str, notebooks: list[str],
                result: Result) -> tuple[datetime | None, dict[str, NotebookGrades]]:
    """The submission's timestamp and the grades of each of `notebooks` (those nbgrader wrote an autograded
    copy of) in the scratch gradebook `db`. A notebook nbgrader copied but stopped before grading gets a
    problem in `result`, and no grades."""
    from nbgrader.api import Gradebook, MissingEntry
    grades = {}
    with Gradebook(f"sqlite:///{db}", course_id) as gb:
        try:
            timestamp = gb.find_submission(assignment, student).timestamp
        except MissingEntry:
            timestamp = None
        for notebook in notebooks:
            try:
                source = gb.find_submission_notebook(notebook, assignment, student)
            except MissingEntry:
                result.add_problem(notebook, f"{notebook}.ipynb was not graded: nbgrader stopped before grading "
                                             "it; its cells score zero")
                continue
            grades[notebook] = NotebookGrades({g.name: (g.auto_score, g.needs_manual_grade) for g in source.grades},
                                              {c.name: c.auto_comment for c in source.comments},
                                              source.flagged, source.late_submission_penalty)
    return timestamp, grades


# ---------------------------------------------------------------------------------------------------------
# In the client: the course gradebook's single writer.

class GradebookWriter:
    """The course gradebook, open once for a whole run (opening it runs nbgrader's schema check: the cost that
    capped a class at about 35 submissions a minute when every result opened it three times).

        with GradebookWriter(course) as writer:
            writer.write(assignment, graded)      # committed, then read back
    """

    def __init__(self, course: Course) -> None:
        from nbgrader.api import Gradebook
        self.course = course
        self.gb = Gradebook(course.gradebook_url, course.course_id)

    def __enter__(self) -> GradebookWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.gb.close()

    def write(self, assignment: str, graded: Graded) -> None:
        """Copy one submission's grades in: a notebook without grades (not graded) scores zero in every cell.
        Committed, then read back in a session of its own: raises if any grade was not stored."""
        from sqlalchemy.exc import SAWarning
        student, gb = graded.result.student, self.gb
        expected = {}
        try:
            with warnings.catch_warnings():
                # nbgrader's own submission code trips SQLAlchemy's autoflush warning; it is harmless here (the
                # grades are read back below), so the TA's console stays clean.
                warnings.filterwarnings("ignore", category=SAWarning)
                gb.update_or_create_student(student)
                gb.update_or_create_submission(assignment, student, timestamp=graded.timestamp)
                for notebook in self.course.notebooks(assignment):
                    target = gb.find_submission_notebook(notebook, assignment, student)
                    source = graded.notebooks.get(notebook, NotebookGrades())
                    for grade in target.grades:
                        grade.auto_score, grade.needs_manual_grade = source.grades.get(grade.name, (0.0, False))
                        expected[(notebook, grade.name)] = grade.auto_score
                    for comment in target.comments:
                        if comment.name in source.comments:
                            comment.auto_comment = source.comments[comment.name]
                    if notebook in graded.notebooks:
                        target.flagged = source.flagged
                        target.late_submission_penalty = source.late_submission_penalty
                gb.db.commit()
        except Exception:
            gb.db.rollback()                 # the session stays usable for the next submission
            raise
        stored = self._stored(assignment, student)
        lost = {cell: score for cell, score in expected.items() if stored.get(cell) != score}
        if lost:
            raise RuntimeError(f"grades of {student} were not stored: {lost}")

    def _stored(self, assignment: str, student: str) -> dict[tuple[str, str], Any]:
        """{(notebook, grade cell): auto_score} of a submission, read in a fresh session."""
        from nbgrader.api import Assignment, SubmittedAssignment
        from sqlalchemy.orm import Session
        with Session(self.gb.engine) as fresh:
            submission = (fresh.query(SubmittedAssignment)
                          .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
                          .filter(Assignment.name == assignment, SubmittedAssignment.student_id == student).one())
            return {(nb.name, g.name): g.auto_score for nb in submission.notebooks for g in nb.grades}


def place_notebooks(course: Course, assignment: str, result: Result, graded_dir: Path) -> None:
    """Move the autograded folder into the course; add a message cell to notebooks that had problems."""
    dest = course.autograded / result.student / assignment
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if graded_dir.exists():
        shutil.move(str(graded_dir), dest)
    dest.mkdir(parents=True, exist_ok=True)
    general = result.problems.get("(files)", [])
    for notebook in course.notebooks(assignment):
        path = dest / f"{notebook}.ipynb"
        notes = general + result.problems.get(notebook, [])
        if not path.exists():                     # give feedback on the released notebook, all zeros
            release = course.release / assignment / f"{notebook}.ipynb"
            if release.exists():                  # (never the source: it holds the solutions and hidden tests)
                shutil.copy(release, path)
            else:
                nbformat.write(nbformat.v4.new_notebook(), path)
        if notes:
            nb = nbformat.read(path, as_version=4)
            text = "**Message from the grader**\n\n" + "\n".join(f"- {markdown_literal(note)}" for note in notes)
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(sanitize_markdown(text)))
            nbformat.write(nb, path)
