"""Code mutants are small patches of their solution cells (autograde.mutants.patched): an edit that no longer
fits the cell fails loudly, and no mutant repeats the reference answer wholesale."""
import difflib
import importlib

import pytest

from autograde.course import ASSIGNMENTS, SOLUTIONS
from autograde.mutants import MutantBuildError, patched
from autograde.reference import source

PRESENT = [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]
CODE_MUTANTS = [(a, m) for a in PRESENT for m in importlib.import_module(f"autograde.mutants.{a}").MUTANTS]
MAX_CHANGED_LINES = 4   # lines removed plus lines added: a bug, not a rewrite


def test_an_edit_is_made_where_its_text_is():
    code = patched("kd", "kd", "kd_loss", ('reduction="batchmean"', 'reduction="mean"'))
    assert code == source("kd", "kd", "kd_loss").replace('reduction="batchmean"', 'reduction="mean"')


def test_an_edit_that_does_not_match_names_the_cell_and_the_text():
    with pytest.raises(MutantBuildError, match=r"solution cell 'kd_loss' .*'no such text' 0 times"):
        patched("kd", "kd", "kd_loss", ("no such text", "anything"))


def test_an_edit_that_matches_twice_names_the_cell_and_the_text():
    assert source("kd", "kd", "kd_loss").count("student_logits, labels") >= 2   # signature and cross-entropy
    with pytest.raises(MutantBuildError, match=r"solution cell 'kd_loss' .*'student_logits, labels' \d times"):
        patched("kd", "kd", "kd_loss", ("student_logits, labels", "anything"))


@pytest.mark.parametrize("assignment, mutant", CODE_MUTANTS, ids=[m.name for _, m in CODE_MUTANTS])
def test_a_code_mutant_changes_a_few_lines_of_its_solution_cell(assignment, mutant):
    reference = source(assignment, mutant.notebook, mutant.cell).splitlines()
    diff = difflib.unified_diff(reference, mutant.code.splitlines(), lineterm="", n=0)
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert 0 < len(changed) <= MAX_CHANGED_LINES, (
        f"'{mutant.name}' changes {len(changed)} lines of {mutant.cell}:\n" + "\n".join(changed))
