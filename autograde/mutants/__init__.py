"""Known-wrong submissions, used by the grader self-test (tests/test_selftest.py).

Two kinds, both in each assignment module:

MUTANTS = [Mutant(...), ...]: wrong code. A mutant replaces the whole source of one solution cell (`cell`, its
nbgrader grade_id) of one notebook; the self-test grades a submission with it planted and requires that it
loses points in the grade cell `target` and in no other cell.

ARTIFACT_MUTANTS = [ArtifactMutant(...), ...]: a wrong workflow. The notebooks are the reference's (or, when
the mistake is in a solution cell that no grade cell probes, `cell`, hold the wrong code that ran), and the
artifacts are what the mistake leaves behind: `make(reference, dest)` copies the reference work folder to
`dest` and redoes, with lib, the part of the work the mistake changes (a training run with the wrong
setting, a checkpoint saved under the wrong name, a history copied from another run...), and everything a
student who then ran the later notebooks would have redone after it. The same requirement: points lost in
`target`, and nowhere else.

Every build is seeded (lib.train.fit seeds the run), so a build repeats. A build that needs a property of the
reference work (e.g. a run whose best epoch is not its last) checks it and raises MutantBuildError otherwise.
"""
import os
import shutil
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import nbformat

from lib.train import History


class Mutant(NamedTuple):
    name: str        # short description of the bug, e.g. "wrong sign"
    notebook: str    # notebook name without .ipynb
    cell: str        # grade_id of the solution cell it replaces
    target: str      # grade_id of the grade cell that must catch it
    code: str        # the complete wrong cell source


class ArtifactMutant(NamedTuple):
    name: str        # the wrong workflow, e.g. "fine-tuned from scratch, not from the pruned weights"
    notebook: str    # the notebook whose grade cell must catch it (notebook name without .ipynb)
    target: str      # that grade cell's grade_id
    make: Callable   # make(reference: Path, dest: Path) -> None: writes a complete submission folder at dest
    cell: Optional[str] = None   # the solution (TODO) cell whose mistake it models, if any


class MutantBuildError(RuntimeError):
    """The reference work lacks what a mutant's wrong workflow needs to differ from it."""


# ------------------------------------------------------------------------------------ building blocks

def start_from(reference, dest):
    """Copy the reference work folder to `dest` (which must not exist); returns dest/"artifacts".

    Refuses to run while nbgrader grades (NBGRADER_EXECUTION set): lib then never overwrites an existing
    artifact, and the build would silently keep the reference's files.
    """
    if os.environ.get("NBGRADER_EXECUTION"):
        raise MutantBuildError("artifact mutants cannot be built with NBGRADER_EXECUTION set (lib would keep "
                               "the reference's files instead of writing the wrong ones)")
    shutil.copytree(reference, dest)
    return Path(dest) / "artifacts"


def plant_code(dest, notebook, cell, code):
    """Replace the source of the solution cell `cell` of dest/<notebook>.ipynb by `code`."""
    from autograde.course import nbgrader_id
    path = Path(dest) / f"{notebook}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if nbgrader_id(c) == cell]
    if len(cells) != 1:
        raise MutantBuildError(f"{path}: no (single) cell {cell}")
    cells[0].source = code
    nbformat.write(nb, path)


def edit_history(path, **changes):
    """Rewrite the config of the History at `path` with `changes` (a value None removes the key)."""
    history = History.load(path)
    config = dict(history.config, **changes)
    History({k: v for k, v in config.items() if v is not None}, history.records).save(path)


def copy_run(artifacts, source, dest, suffixes=(".pt", ".json"), **changes):
    """Copy artifacts/<source><suffix> to artifacts/<dest><suffix> for each of `suffixes` (a run's checkpoint and
    history by default); `changes` edit the config of the copied history (artifacts/<dest>.json)."""
    artifacts = Path(artifacts)
    (artifacts / dest).parent.mkdir(parents=True, exist_ok=True)
    for suffix in suffixes:
        shutil.copyfile(artifacts / f"{source}{suffix}", artifacts / f"{dest}{suffix}")
    if changes:
        edit_history(artifacts / f"{dest}.json", **changes)


def swap_files(a, b):
    """Exchange the contents of the files `a` and `b`."""
    a, b = Path(a), Path(b)
    tmp = a.with_name(a.name + ".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
