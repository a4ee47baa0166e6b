"""Grader self-test with real nbgrader, for every assignment that exists in solutions/.

One course per assignment: the reference work, the blank release and one submission per mutant, graded by
the cohort runner (real `nbgrader autograde`, two submissions at a time), then the reference once more by
plain `nbgrader autograde`. Then:
  - the reference gets every auto-graded point, and grading it a second time gives the same scores;
  - the blank release gets zero on every auto-graded cell (and the run completed);
  - every mutant loses points in its target cell and nowhere else in the assignment.
"""
import importlib
import shutil

import nbformat
import pytest

from autograde import cohort
from autograde.course import ASSIGNMENTS, LABS, SOLUTIONS, Course, nbgrader_id

PRESENT = [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]


def mutants_of(assignment):
    return importlib.import_module(f"autograde.mutants.{assignment}").MUTANTS


def plant(mutant, reference, dest):
    """A submission: the whole reference work (notebooks and artifacts) with the mutant's wrong cell planted."""
    shutil.copytree(reference, dest)
    nb = nbformat.read(reference / f"{mutant.notebook}.ipynb", as_version=4)
    cells = [c for c in nb.cells if nbgrader_id(c) == mutant.cell]
    assert len(cells) == 1, f"{mutant.name}: no solution cell {mutant.cell} in {mutant.notebook}"
    cells[0].source = mutant.code
    nbformat.write(nb, dest / f"{mutant.notebook}.ipynb")
    return dest


@pytest.fixture(scope="module", params=PRESENT)
def graded(request, reference_work, tmp_path_factory):
    assignment = request.param
    reference = reference_work(assignment)
    tmp = tmp_path_factory.mktemp(f"selftest_{assignment}")
    course = Course(tmp / "course")
    course.generate(assignment)
    course.submit("reference", assignment, reference)
    course.submit("blank", assignment, LABS / assignment)
    mutants = {f"mutant{i}": m for i, m in enumerate(mutants_of(assignment))}
    for student, mutant in mutants.items():
        course.submit(student, assignment, plant(mutant, reference, tmp / student))
    results = cohort.run(assignment, jobs=2, course_root=course.root, quiet=True)
    assert all(r["status"] == "graded" for r in results.values()), results
    scores = {student: course.scores(assignment, student) for student in ["reference", "blank", *mutants]}
    course.autograde(assignment, student="reference")
    scores["reference_again"] = course.scores(assignment, "reference")
    return assignment, scores, mutants


def test_reference_gets_full_marks(graded):
    assignment, scores, _ = graded
    assert scores["reference"], f"{assignment} has no auto-graded cells"
    lost = {cell: s for cell, s in scores["reference"].items() if s[0] != s[1]}
    assert not lost, f"the reference solution of {assignment} loses points: {lost}"


def test_grading_twice_gives_the_same_scores(graded):
    _, scores, _ = graded
    assert scores["reference_again"] == scores["reference"]


def test_blank_release_gets_zero(graded):
    assignment, scores, _ = graded
    assert scores["blank"].keys() == scores["reference"].keys()
    earned = {cell: s for cell, s in scores["blank"].items() if s[0] != 0}
    assert not earned, f"the blank release of {assignment} earns points: {earned}"


def test_every_mutant_is_caught_where_it_is_targeted(graded):
    assignment, scores, mutants = graded
    assert len(mutants) >= 3, f"{assignment} needs at least 3 mutants"
    for student, mutant in mutants.items():
        target = (mutant.notebook, mutant.target)
        assert target in scores["reference"], f"{mutant.name}: no grade cell {target}"
        got = scores[student]
        assert got[target][0] < scores["reference"][target][0], f"mutant '{mutant.name}' is not caught by {target}"
        elsewhere = {cell: (got[cell], scores["reference"][cell]) for cell in got
                     if cell != target and got[cell] != scores["reference"][cell]}
        assert not elsewhere, f"mutant '{mutant.name}' also changes the scores of {elsewhere}"
