"""`make demo` end to end (reusing the session's executed reference work): the table's scores are exact."""
import importlib

import pytest

from autograde import demo
from autograde.course import Course

PRESENT = demo.assignments()


@pytest.fixture(scope="module")
def demo_run(reference_work, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "course"
    reuse = {a: reference_work(a) for a in PRESENT}
    table = demo.run(root, jobs=2, reuse=reuse)
    return root, table


def auto_points(root, assignment):
    """{grade_id: max points} of the auto-graded cells, read from the demo's gradebook."""
    return {cell: m for (_, cell), (_, m) in Course(root).scores(assignment, "ada").items()}


@pytest.mark.skipif(not PRESENT, reason="no assignment in solutions/")
def test_demo_scores(demo_run):
    root, table = demo_run
    for assignment in PRESENT:
        full = sum(auto_points(root, assignment).values())
        score = {student: table[student][assignment][0] for student in demo.STUDENTS}
        assert score["ada"] == pytest.approx(full), f"{assignment}: the reference work lost points"
        assert score["ben"] == 0 and score["eve"] == 0, f"{assignment}: blank or broken work earned points"
        assert score["dee"] == pytest.approx(0.9 * full), f"{assignment}: late penalty is not 10%"
        mutants = importlib.import_module(f"autograde.mutants.{assignment}").MUTANTS
        first = {}
        for m in mutants:
            first.setdefault((m.notebook, m.cell), m)
        lost = sum(auto_points(root, assignment)[m.target] for m in first.values())
        assert score["cy"] == pytest.approx(full - lost), f"{assignment}: the mutants lost other points too"


@pytest.mark.skipif(not PRESENT, reason="no assignment in solutions/")
def test_demo_writes_csv_and_feedback(demo_run):
    root, _ = demo_run
    assert (root / "grades.csv").read_text().count("\n") == 1 + len(demo.STUDENTS) * len(PRESENT)
    for assignment in PRESENT:
        for student in demo.STUDENTS:
            assert list((root / "grading" / "feedback" / student / assignment).glob("*.html")), (student, assignment)


@pytest.mark.skipif(not PRESENT, reason="no assignment in solutions/")
def test_only_the_late_student_is_late(demo_run):
    from nbgrader.api import Gradebook
    root, _ = demo_run
    with Gradebook(f"sqlite:///{root / 'grading' / 'gradebook.db'}", course_id="compresslab") as gb:
        for assignment in PRESENT:
            late = {s for s in demo.STUDENTS if gb.find_submission(assignment, s).total_seconds_late > 0}
            assert late == {"dee"}, assignment
