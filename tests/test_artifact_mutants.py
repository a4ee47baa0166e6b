"""Which cells the grader self-test's mutants cover, read from solutions/ and autograde/mutants (no grading).

tests/test_selftest.py grades every mutant and requires each to be caught in its target cell only; these tests
require that the mutants are there to be graded:
  - every auto-graded code cell of every notebook (a grade cell with points) is the target of at least two
    mutants, code and artifact mutants together;
  - every solution (TODO) code cell of every notebook is the `cell` of at least two mutants: a code mutant
    replaces it, an artifact mutant models a mistake in it (autograde.mutants.ArtifactMutant.cell);
  - every mutant names a notebook, grade cell and solution cell that exist.
"""
import importlib
from collections import Counter

import nbformat
import pytest

from autograde.course import ASSIGNMENTS, SOLUTIONS, nbgrader_id
from autograde.mutants import ArtifactMutant, Mutant

PRESENT = [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]
MINIMUM = 2


def cells(kind):
    """{(assignment, notebook, grade_id)} of the code cells of solutions/ that are auto-graded ("graded":
    a grade cell with points) or solutions ("solution": a TODO)."""
    found = set()
    for assignment in PRESENT:
        for notebook in ASSIGNMENTS[assignment]:
            nb = nbformat.read(SOLUTIONS / assignment / f"{notebook}.ipynb", as_version=4)
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if cell.cell_type != "code":
                    continue
                if kind == "graded" and meta.get("grade") and meta.get("points"):
                    found.add((assignment, notebook, nbgrader_id(cell)))
                if kind == "solution" and meta.get("solution"):
                    found.add((assignment, notebook, nbgrader_id(cell)))
    return found


def all_mutants():
    """[(assignment, mutant)] of both kinds."""
    result = []
    for assignment in PRESENT:
        module = importlib.import_module(f"autograde.mutants.{assignment}")
        result += [(assignment, m) for m in module.MUTANTS + module.ARTIFACT_MUTANTS]
    return result


def test_every_assignment_has_both_kinds_of_mutants():
    for assignment in PRESENT:
        module = importlib.import_module(f"autograde.mutants.{assignment}")
        assert all(isinstance(m, Mutant) for m in module.MUTANTS), f"{assignment}: MUTANTS holds other things"
        assert all(isinstance(m, ArtifactMutant) for m in module.ARTIFACT_MUTANTS), (
            f"{assignment}: ARTIFACT_MUTANTS holds other things")
        assert module.ARTIFACT_MUTANTS, f"{assignment} has no artifact mutants"


def test_every_graded_code_cell_is_the_target_of_two_mutants():
    graded = cells("graded")
    assert graded, "no auto-graded code cell found in solutions/"
    targets = Counter((assignment, m.notebook, m.target) for assignment, m in all_mutants())
    short = {cell: targets[cell] for cell in sorted(graded) if targets[cell] < MINIMUM}
    assert not short, f"auto-graded cells targeted by fewer than {MINIMUM} mutants (count): {short}"


def test_every_solution_cell_has_two_mutants():
    solutions = cells("solution")
    assert solutions, "no solution cell found in solutions/"
    modelled = Counter((assignment, m.notebook, m.cell) for assignment, m in all_mutants() if m.cell is not None)
    short = {cell: modelled[cell] for cell in sorted(solutions) if modelled[cell] < MINIMUM}
    assert not short, f"solution cells with fewer than {MINIMUM} mutants (count): {short}"


@pytest.mark.parametrize("assignment, mutant", all_mutants(), ids=lambda v: getattr(v, "name", v))
def test_mutant_names_cells_that_exist(assignment, mutant):
    graded, solutions = cells("graded"), cells("solution")
    assert (assignment, mutant.notebook, mutant.target) in graded, (
        f"'{mutant.name}': {mutant.notebook}.ipynb of {assignment} has no auto-graded code cell {mutant.target}")
    if mutant.cell is not None:
        assert (assignment, mutant.notebook, mutant.cell) in solutions, (
            f"'{mutant.name}': {mutant.notebook}.ipynb of {assignment} has no solution cell {mutant.cell}")
    if isinstance(mutant, ArtifactMutant):
        assert callable(mutant.make), f"'{mutant.name}': make is not callable"


def test_mutant_names_are_unique_per_assignment():
    names = Counter((assignment, type(m).__name__, m.name) for assignment, m in all_mutants())
    repeated = [key for key, n in names.items() if n > 1]
    assert not repeated, f"mutants with the same name: {repeated}"
