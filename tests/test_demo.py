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
        assert score["fay"] <= score["ada"], f"{assignment}: a reordered copy gained points"


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
    """The scheduling of `make demo`'s builds, the reference work and dee's own run at once (the builds
    themselves replaced by a recorder: the real ones take minutes and run in the demo above and in the benches)."""
    import os
    import threading
    import time
    calls, lock = [], threading.Lock()

    def record(assignment, out_dir, threads=None, student=None):
        with lock:
            calls.append(("start", assignment, threads, student))
        time.sleep(0.2)
        with lock:
            calls.append(("end", assignment, threads, student))
        return out_dir

    monkeypatch.setattr(demo, "make_student_work", record)
    monkeypatch.setattr(demo, "assignments", lambda: ["slimming", "sincnet_quant", "kd"])
    reference, dee = demo.build_references(tmp_path, reuse={})
    assert set(reference) == set(dee) == {"slimming", "sincnet_quant", "kd"} and reference["kd"] != dee["kd"]
    cores = os.cpu_count() or 1
    for student in (None, "dee"):
        mine = [c[:3] for c in calls if c[3] == student]
        quarter = max(1, cores // 4)           # two builds at once, two notebooks side by side in each
        assert sorted(mine[:2]) == [("start", "sincnet_quant", quarter), ("start", "slimming", quarter)], calls
        assert mine[-2:] == [("start", "kd", max(1, cores // 2)), ("end", "kd", max(1, cores // 2))], calls
    assert {c[3] for c in calls[:4]} == {None, "dee"}, "the two builds did not start at once"
    calls.clear()
    reused, _ = demo.build_references(tmp_path, reuse={"slimming": tmp_path / "given"})
    assert reused["slimming"] == tmp_path / "given"
    assert ("start", "slimming", max(1, cores // 4), "dee") in calls, "dee's own run is never reused"


@pytest.mark.skipif(not PRESENT, reason="no assignment in solutions/")
def test_copies_are_listed_as_similar_and_an_honest_classmate_is_not(demo_run):
    """dee ran the notebooks herself (her own seeds): her checkpoints are hers. cy's are ada's (cy's notebooks
    were not re-run) and fay's are ada's networks with their channels reordered: both are listed with ada."""
    import json
    root, _ = demo_run
    for assignment in PRESENT:
        results = json.loads((Course.open(root).grading / "cohort" / assignment / "results.json").read_text())
        similar = {student: set(result.get("similar_to", [])) for student, result in results.items()}
        assert similar["dee"] == set() and "dee" not in similar["ada"], f"{assignment}: {similar}"
        assert {"cy", "fay"} <= similar["ada"], f"{assignment}: {similar}"
