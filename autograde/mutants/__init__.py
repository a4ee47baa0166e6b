"""Known-wrong answers to the TODOs, used by the grader self-test (tests/test_selftest.py).

Each assignment module defines MUTANTS = [Mutant(...), ...]. A mutant replaces the whole source of one
solution cell (`cell`, its nbgrader grade_id) of one notebook; the self-test grades a submission with it
planted and requires that it loses points in the grade cell `target` and in no other cell.
"""
from typing import NamedTuple


class Mutant(NamedTuple):
    name: str        # short description of the bug, e.g. "wrong sign"
    notebook: str    # notebook name without .ipynb
    cell: str        # grade_id of the solution cell it replaces
    target: str      # grade_id of the grade cell that must catch it
    code: str        # the complete wrong cell source
