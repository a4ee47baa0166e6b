"""Grader self-test with real nbgrader, for every assignment that exists in solutions/.

The session's class course (`class_course`, tests/conftest.py) already holds the graded reference work (the demo's
student ada) and the blank release (ben). To it each assignment adds one submission per code mutant (a wrong
solution cell planted in the reference work: its notebook and the reference's artifacts) and one per artifact mutant (the reference's notebooks with the
artifacts of a wrong workflow, built from the reference work: autograde.mutants.ArtifactMutant), graded by one
run of the cohort runner (real `nbgrader autograde`, two submissions at a time); then the reference is graded
once more by plain `nbgrader autograde`. Then:
  - the reference gets every auto-graded point, and grading it a second time gives the same scores;
  - the blank release gets zero on every auto-graded cell (and the run completed);
  - every mutant, of either kind, loses points in its target cell and nowhere else in the assignment, and no
    artifact mutant (an honest mistake) is reported to the TA as possible tampering.
Which cells the mutants cover is tested without grading, in tests/test_artifact_mutants.py.
"""
import importlib
import shutil
from pathlib import Path

import nbformat
import pytest

from autograde import cohort, demo
from autograde.course import ASSIGNMENTS, SOLUTIONS, Course, nbgrader_id
from autograde.mutants import ArtifactMutant, Mutant, build_artifact_mutants

PRESENT = [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]
STUDENT_IN_ROLE = {role: student for student, (_, role) in demo.STUDENTS.items()}   # Reference: ada, Blank: ben


def mutants_of(assignment):
    return importlib.import_module(f"autograde.mutants.{assignment}").MUTANTS


def artifact_mutants_of(assignment):
    return importlib.import_module(f"autograde.mutants.{assignment}").ARTIFACT_MUTANTS


def describe(mutant):
    """How the messages name a mutant: its kind and name."""
    kind = "artifact mutant" if isinstance(mutant, ArtifactMutant) else "mutant"
    return f"{kind} '{mutant.name}'"


def plant(mutant, reference, dest):
    """A submission: the reference work with the mutant's wrong cell planted, and only that notebook.

    The assignment's other notebooks would be the reference's byte for byte, reading the reference's
    artifacts: the class course graded exactly that, and grading repeats (test_grading_twice_gives_the_same_
    scores), so they are left out rather than graded again (a third of the self-test's time for slimming).
    """
    shutil.copytree(reference, dest, ignore=lambda folder, names: [
        n for n in names if Path(folder) == reference and n.endswith(".ipynb") and n != f"{mutant.notebook}.ipynb"])
    nb = nbformat.read(reference / f"{mutant.notebook}.ipynb", as_version=4)
    cells = [c for c in nb.cells if nbgrader_id(c) == mutant.cell]
    assert len(cells) == 1, f"{mutant.name}: no solution cell {mutant.cell} in {mutant.notebook}"
    cells[0].source = mutant.code
    nbformat.write(nb, dest / f"{mutant.notebook}.ipynb")
    return dest


def graded_apart_from_left_out(result, mutant=None):
    """The submission was graded; a code mutant's may also report the notebooks plant() left out, and only those."""
    if result.status == "graded":
        return True
    left_out = {notebook for notebook, problems in result.problems.items()
                if all("was not graded" in problem for problem in problems)}
    return (isinstance(mutant, Mutant) and bool(left_out)
            and set(result.problems) == left_out and mutant.notebook not in left_out)


@pytest.fixture(scope="module", params=PRESENT)
def graded(request, class_course, reference_work, tmp_path_factory):
    assignment = request.param
    reference = reference_work(assignment)
    tmp = tmp_path_factory.mktemp(f"selftest_{assignment}")
    course = Course.open(class_course[0])
    mutants = {f"mutant{i}": m for i, m in enumerate(mutants_of(assignment))}
    for student, mutant in mutants.items():
        course.submit(student, assignment, plant(mutant, reference, tmp / student))
    artifact_mutants = {f"artifact{i}": m for i, m in enumerate(artifact_mutants_of(assignment))}
    seconds = build_artifact_mutants(assignment, reference, [tmp / student for student in artifact_mutants])
    print(f"{assignment}: artifact mutants built in {sum(seconds):.0f} s of builds "
          f"({', '.join(f'{s} {t:.0f} s' for s, t in zip(artifact_mutants, seconds))})")
    for student in artifact_mutants:
        course.submit(student, assignment, tmp / student)
    mutants.update(artifact_mutants)
    results = cohort.run(assignment, jobs=2, course_root=course.root, quiet=True, students=list(mutants))
    named = {"reference": STUDENT_IN_ROLE["Reference"], "blank": STUDENT_IN_ROLE["Blank"], **{s: s for s in mutants}}
    assert all(graded_apart_from_left_out(results[student], mutants.get(student)) for student in named.values()), results
    scores = {name: course.scores(assignment, student) for name, student in named.items()}
    course.autograde(assignment, student=named["reference"])
    scores["reference_again"] = course.scores(assignment, named["reference"])
    return assignment, scores, mutants, results


def test_reference_gets_full_marks(graded):
    assignment, scores, _, _ = graded
    assert scores["reference"], f"{assignment} has no auto-graded cells"
    lost = {cell: s for cell, s in scores["reference"].items() if s[0] != s[1]}
    assert not lost, f"the reference solution of {assignment} loses points: {lost}"


def test_grading_twice_gives_the_same_scores(graded):
    _, scores, _, _ = graded
    assert scores["reference_again"] == scores["reference"]


def test_blank_release_gets_zero(graded):
    assignment, scores, _, _ = graded
    assert scores["blank"].keys() == scores["reference"].keys()
    earned = {cell: s for cell, s in scores["blank"].items() if s[0] != 0}
    assert not earned, f"the blank release of {assignment} earns points: {earned}"


def test_every_mutant_is_caught_where_it_is_targeted(graded):
    """Code and artifact mutants alike: fewer points in the target cell, the reference's everywhere else."""
    assignment, scores, mutants, _ = graded
    code = [m for m in mutants.values() if not isinstance(m, ArtifactMutant)]
    assert len(code) >= 3, f"{assignment} needs at least 3 code mutants"
    assert len(mutants) > len(code), f"{assignment} has no artifact mutants"
    wrong = []
    for student, mutant in mutants.items():
        target = (mutant.notebook, mutant.target)
        if target not in scores["reference"]:
            wrong.append(f"{describe(mutant)}: no grade cell {target}")
            continue
        got = scores[student]
        if not isinstance(mutant, ArtifactMutant):     # only its own notebook was submitted (plant)
            got = {cell: s for cell, s in got.items() if cell[0] == mutant.notebook}
        if got[target][0] >= scores["reference"][target][0]:
            wrong.append(f"{describe(mutant)} is not caught by {target}: {got[target]}")
        elsewhere = {cell: (got[cell], scores["reference"][cell]) for cell in got
                     if cell != target and got[cell] != scores["reference"][cell]}
        if elsewhere:
            wrong.append(f"{describe(mutant)} also changes the scores of {elsewhere} (got, reference)")
    assert not wrong, f"{assignment}:\n" + "\n".join(wrong)


def test_no_artifact_mutant_is_reported_as_tampering(graded):
    """A wrong workflow is an honest mistake: the notebook's own tests saw what the referee judged, so the
    two never disagree (a disagreement tells the TA "possible tampering")."""
    assignment, _, mutants, results = graded
    flagged = {describe(mutant): results[student].verdicts_disagree for student, mutant in mutants.items()
               if isinstance(mutant, ArtifactMutant) and results[student].verdicts_disagree}
    assert not flagged, f"{assignment}: artifact mutants reported as possible tampering: {flagged}"
