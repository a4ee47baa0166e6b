"""Known-wrong submissions, used by the grader self-test (tests/test_selftest.py).

Two kinds, both in each assignment module:

MUTANTS = [Mutant(...), ...]: wrong code. A mutant replaces the whole source of one solution cell (`cell`, its
nbgrader grade_id) of one notebook; the self-test grades a submission with it planted and requires that it
loses points in the grade cell `target` and in no other cell. Its code is the solution cell with a small edit
(`patched`): the reference answer is written once, in solutions/, and each mutant shows only its bug.

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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import nbformat

from autograde.reference import source
from lib.artifacts import FOLDER, checkpoint_file, history_file
from lib.train import History

Edit = tuple[str, str]   # (old, new): the text `old` of a solution cell replaced by `new`


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
    make: Callable[[Path, Path], None]   # make(reference, dest): writes a complete submission folder at dest
    cell: str | None = None   # the solution (TODO) cell whose mistake it models, if any


class MutantBuildError(RuntimeError):
    """The reference work lacks what a mutant's wrong workflow needs to differ from it."""


def patched(assignment: str, notebook: str, cell_id: str, *edits: Edit) -> str:
    """The code of solution cell `cell_id` (autograde.reference.source) with each edit (old, new) made, in order.

    Each `old` must occur exactly once in the code: when the solution cell changes, a mutant whose edit no
    longer fits fails loudly here, instead of silently planting the reference (or a bug in the wrong place).
    """
    code = source(assignment, notebook, cell_id)
    for old, new in edits:
        count = code.count(old)
        if count != 1:
            raise MutantBuildError(f"solution cell '{cell_id}' of solutions/{assignment}/{notebook}.ipynb holds "
                                   f"{old!r} {count} times: a mutant's edit needs it exactly once")
        code = code.replace(old, new)
    return code


# ------------------------------------------------------------------------------------ building blocks

def start_from(reference: str | Path, dest: str | Path) -> Path:
    """Copy the reference work folder to `dest` (which must not exist); returns dest/"artifacts".

    Refuses to run while nbgrader grades (NBGRADER_EXECUTION set): lib then never overwrites an existing
    artifact, and the build would silently keep the reference's files.
    """
    if os.environ.get("NBGRADER_EXECUTION"):
        raise MutantBuildError("artifact mutants cannot be built with NBGRADER_EXECUTION set (lib would keep "
                               "the reference's files instead of writing the wrong ones)")
    shutil.copytree(reference, dest)
    return Path(dest) / FOLDER


def plant_code(dest: str | Path, notebook: str, cell: str, code: str) -> None:
    """Replace the source of the solution cell `cell` of dest/<notebook>.ipynb by `code`."""
    from autograde.course import nbgrader_id
    path = Path(dest) / f"{notebook}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if nbgrader_id(c) == cell]
    if len(cells) != 1:
        raise MutantBuildError(f"{path}: no (single) cell {cell}")
    cells[0].source = code
    nbformat.write(nb, path)


def edit_history(path: str | Path, **changes: Any) -> None:
    """Rewrite the config of the History at `path` with `changes` (a value None removes the key)."""
    history = History.load(path)
    config = dict(history.config, **changes)
    History({k: v for k, v in config.items() if v is not None}, history.records).save(path)


def copy_run(artifacts: str | Path, source: str, dest: str,
             files: Sequence[Callable[[str], str]] = (checkpoint_file, history_file), **changes: Any) -> None:
    """Copy the files of the run `source` to those of the run `dest`, in the folder `artifacts`: file(source) to
    file(dest) for each of `files`, lib.artifacts' name -> file functions (a run's checkpoint and history by
    default); `changes` edit the config of the copied history (history_file(dest))."""
    artifacts = Path(artifacts)
    (artifacts / dest).parent.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copyfile(artifacts / file(source), artifacts / file(dest))
    if changes:
        edit_history(artifacts / history_file(dest), **changes)


def swap_files(a: str | Path, b: str | Path) -> None:
    """Exchange the contents of the files `a` and `b`."""
    a, b = Path(a), Path(b)
    tmp = a.with_name(a.name + ".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


# ------------------------------------------------------------------------------------ building them all

def build_artifact_mutants(assignment: str, reference: str | Path, folders: Sequence[str | Path],
                           workers: int | None = None) -> list[float]:
    """Build `assignment`'s ARTIFACT_MUTANTS from the reference work, the i-th into folders[i]; returns the
    seconds each build took.

    The builds run `workers` at a time (default: one per core), each in its own process with its share of the
    cores: these small models gain far less than 2x from a second core, so builds side by side finish sooner.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from autograde.course import cores_per_worker
    workers = workers or os.cpu_count() or 1
    jobs = [(assignment, i, str(reference), str(folder)) for i, folder in enumerate(folders)]
    spawn = multiprocessing.get_context("spawn")    # a fresh interpreter: torch's thread pool does not survive fork
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_set_threads,
                             initargs=(cores_per_worker(workers),)) as pool:
        return list(pool.map(_build_one, jobs))


def _set_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _build_one(job: tuple[str, int, str, str]) -> float:
    import importlib
    import time
    assignment, index, reference, folder = job
    start = time.time()
    importlib.import_module(f"autograde.mutants.{assignment}").ARTIFACT_MUTANTS[index].make(Path(reference), Path(folder))
    return time.time() - start
