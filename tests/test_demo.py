"""`make demo` end to end (reusing the session's executed reference work): the table's scores are exact."""
import importlib

import pytest

from autograde import demo
from autograde.course import Course

PRESENT = demo.assignments()


@pytest.fixture(scope="module")
def demo_run(class_course):
    """The session's class course is the demo's run (tests/conftest.py)."""
    return class_course


def auto_points(root, assignment):
    """{grade_id: max points} of the auto-graded cells, read from the demo's gradebook."""
    return {cell: m for (_, cell), (_, m) in Course.open(root).scores(assignment, "ada").items()}


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
    course = Course.open(root)
    with Gradebook(course.gradebook_url, course_id=course.course_id) as gb:
        for assignment in PRESENT:
            late = {s for s in demo.STUDENTS if gb.find_submission(assignment, s).total_seconds_late > 0}
            assert late == {"dee"}, assignment


def test_references_are_built_side_by_side_then_kd(tmp_path, monkeypatch):
    """The scheduling of `make demo`'s reference builds (the builds themselves replaced by a recorder:
    the real ones take minutes and run in the demo above and in the benches)."""
    import os
    import threading
    import time
    calls, lock = [], threading.Lock()

    def record(assignment, out_dir, threads=None):
        with lock:
            calls.append(("start", assignment, threads))
        time.sleep(0.2)
        with lock:
            calls.append(("end", assignment, threads))
        return out_dir

    monkeypatch.setattr(demo, "make_student_work", record)
    monkeypatch.setattr(demo, "assignments", lambda: ["slimming", "sincnet_quant", "kd"])
    works = demo.build_references(tmp_path, reuse={})
    assert set(works) == {"slimming", "sincnet_quant", "kd"}
    half = max(1, (os.cpu_count() or 1) // 2)
    assert calls[:2] == [("start", "slimming", half), ("start", "sincnet_quant", half)] or \
        calls[:2] == [("start", "sincnet_quant", half), ("start", "slimming", half)], calls   # at once
    assert calls[-2:] == [("start", "kd", None), ("end", "kd", None)], calls               # after, every core
    reused = demo.build_references(tmp_path, reuse={"slimming": tmp_path / "given"})
    assert reused["slimming"] == tmp_path / "given"
