"""Submission preparation: each submission is checked and repaired before nbgrader sees it (nbgrader crashes
on a duplicated or renamed cell, blocks on a FIFO, reads whatever size it is given). The client collects the
files, reading only their sizes, and packs them as data (pack_submission); the worker repairs the notebooks
(repair_notebooks), so that the client, which every submission goes through, never parses one."""
from __future__ import annotations

import copy
import json
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import nbformat

from .. import cluster, late
from ..course import Course, nbgrader_id
from ..lms import manifest_problems

# What one submission may bring into the grader, whose client has no memory limit: an honest one is a few tens
# of MB in a few dozen files (the slimming lab's checkpoints are the largest).
MAX_SUBMISSION_BYTES = 10**9
MAX_SUBMISSION_FILES = 5_000


@dataclass
class Submission:
    """One submission as it travels to a worker (pack_submission).

    files: the collected folder as tar bytes; problems: {"(files)": [messages]} found while collecting;
    manifest_mismatch: an LMS upload's files that differ from its manifest; left_out: notebooks submitted but
    not collected (they already have their message); profile: the TA's LAB_PROFILE, which the grading runs under.
    """
    files: bytes
    problems: dict[str, list[str]] = field(default_factory=dict)
    manifest_mismatch: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    profile: str = "quick"


def prepare_submission(course: Course, assignment: str, submitted: Path, dest: Path) -> dict[str, list[str]]:
    """Copy one submission into `dest` and repair its notebooks: collect_files, then repair_notebooks (the
    client does the first, the worker the second); returns {notebook or "(files)": [problems]}."""
    problems = collect_files(course, submitted, dest)
    for notebook, notes in repair_notebooks(course, assignment, dest).items():
        problems.setdefault(notebook, []).extend(notes)
    return problems


def collect_files(course: Course, submitted: Path, dest: Path) -> dict[str, list[str]]:
    """Copy the files of one submission into `dest`, reading nothing but their sizes; returns {"(files)":
    [problems]}.

    Only regular files are read: links are left out, and a FIFO, socket or device (which would block or feed
    the grader forever) is refused with a message. Files over the size limit are not copied, nor those past
    MAX_SUBMISSION_BYTES or MAX_SUBMISSION_FILES in all (the notebooks come first).
    """
    problems: dict[str, list[str]] = {}
    dest.mkdir(parents=True)
    files = sorted(submitted.rglob("*"), key=lambda p: (p.parent != submitted or p.suffix != ".ipynb", p))
    total = count = 0
    for path in files:
        info = path.lstat()
        rel = path.relative_to(submitted)
        if stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.setdefault("(files)", []).append(
                f"{rel} is not a regular file (a FIFO, socket or device): it was not read")
            continue
        size = info.st_size
        if size > course.max_file_size:
            problems.setdefault("(files)", []).append(
                f"{rel} is {size / 1e9:.1f} GB, over the {course.max_file_size / 1e6:.0f} MB limit per file: "
                "it was not graded")
            continue
        total, count = total + size, count + 1
        if total > MAX_SUBMISSION_BYTES or count > MAX_SUBMISSION_FILES:
            problems.setdefault("(files)", []).append(
                f"the submission holds more than {MAX_SUBMISSION_BYTES / 1e9:g} GB or {MAX_SUBMISSION_FILES} files "
                f"in all: {rel} and the files after it were not graded")
            break
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return problems


def repair_notebooks(course: Course, assignment: str, folder: Path) -> dict[str, list[str]]:
    """Fix, in place, what would make nbgrader crash in the notebooks of a collected submission `folder`;
    returns {notebook: [problems]}. Unreadable notebooks are removed (nbgrader then scores them zero), later
    copies of duplicated cells are dropped, cells whose grade_id is not one of the assignment's lose their
    nbgrader metadata (nbgrader then puts the original grade cell back), missing grade cells are put back."""
    problems = {}
    for path in sorted(folder.glob("*.ipynb")):
        notes = _repair_notebook(path, _known_ids(course, assignment, path.stem),
                                 _release_cells(course, assignment, path.stem))
        if notes:
            problems[path.stem] = notes
    return problems


def _known_ids(course: Course, assignment: str, notebook: str) -> set[str] | None:
    """The grade ids of the source notebook's cells (None when the assignment has no such notebook)."""
    source = course.source / assignment / f"{notebook}.ipynb"
    if not source.exists():
        return None
    return {cell_id for c in _cells(source, source.stat().st_mtime_ns) if (cell_id := nbgrader_id(c)) is not None}


def _release_cells(course: Course, assignment: str, notebook: str) -> list[Any]:
    """The released notebook's cells (what the student started from), or [] when there is none."""
    release = course.release / assignment / f"{notebook}.ipynb"
    return _cells(release, release.stat().st_mtime_ns) if release.exists() else []


@lru_cache(maxsize=32)
def _cells(path: Path, mtime_ns: int) -> list[Any]:
    """A notebook's cells, read once per version of the file: every submission is checked against the same
    source and release notebooks. (Callers copy a cell before changing it.)"""
    return nbformat.read(path, as_version=4).cells


def _put_back_missing(cells: list[Any], release_cells: Sequence[Any]) -> list[str]:
    """Put the released grade and answer cells that `cells` lacks back, each after the nearest cell that precedes
    it in the release and is still there; returns their ids. (nbgrader puts a deleted grade cell back only after
    a grade or answer cell: after any other one, such as a locked plotting cell, it crashes with a KeyError and
    scores the whole notebook zero.)"""
    present = [nbgrader_id(cell) for cell in cells]
    put_back = []
    for i, cell in enumerate(release_cells):
        meta = cell.metadata.get("nbgrader", {})
        cell_id = nbgrader_id(cell)
        if cell_id is None or cell_id in present or not (meta.get("grade") or meta.get("solution")):
            continue
        earlier = [nbgrader_id(c) for c in release_cells[:i] if nbgrader_id(c) in present]
        position = present.index(earlier[-1]) + 1 if earlier else 0
        cells.insert(position, copy.deepcopy(cell))
        present.insert(position, cell_id)
        put_back.append(cell_id)
    return put_back


# A notebook is repaired by the worker's own process, which has no memory limit: nbformat takes about 1.4 KB of memory
# per JSON object or array (300,000 of them: 0.9 MB on disk, 430 MB in memory). The executed reference
# notebooks hold at most 44,000 (kd, mostly its progress bars' widget state); a notebook with more than
# MAX_NOTEBOOK_CONTAINERS is refused before nbformat reads it.
MAX_NOTEBOOK_CONTAINERS = 1_000_000


def _repair_notebook(path: Path, known_ids: set[str] | None, release_cells: Sequence[Any] = ()) -> list[str]:
    """Repair the notebook at `path` in place, or remove it when it is unreadable; returns what was done."""
    unreadable = ("{name} is not a readable notebook ({what}); every cell of it scores zero. "
                  "Submit the .ipynb file Jupyter saved.")
    try:
        text = path.read_text(encoding="utf-8")
        containers = _json_containers(json.loads(text))
        if containers > MAX_NOTEBOOK_CONTAINERS:
            raise ValueError(f"{containers} JSON objects and arrays, over the {MAX_NOTEBOOK_CONTAINERS} a "
                             "notebook may hold")
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as error:   # not JSON, not a notebook, a future format, too deep...
        path.unlink()
        return [unreadable.format(name=path.name, what=f"{type(error).__name__}: {str(error)[:200]}")]
    notes, seen, cells = [], set(), []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is not None and not (isinstance(meta, dict) and isinstance(meta.get("grade_id", ""), str)):
            notes.append("a cell's nbgrader metadata is not nbgrader's: it was graded as a plain cell")
            del cell.metadata["nbgrader"]
        cell_id = nbgrader_id(cell)
        if cell_id is not None and known_ids is not None and cell_id not in known_ids:
            notes.append(f"cell id '{cell_id}' is not one of this notebook's cells (was it renamed?): "
                         "it was graded as a plain cell and the original cell was put back")
            del cell.metadata["nbgrader"]
        elif cell_id is not None and cell_id in seen:
            notes.append(f"cell '{cell_id}' appears more than once: only its first copy was graded")
            continue
        seen.add(cell_id)
        cells.append(cell)
    notes += [f"cell '{cell_id}' was missing: the released cell was put back and graded"
              for cell_id in _put_back_missing(cells, release_cells)]
    nb.cells = cells
    try:
        nbformat.write(nb, path)
    except Exception as error:   # text Python reads but cannot write back as UTF-8 (a lone surrogate)
        path.unlink(missing_ok=True)
        return [unreadable.format(name=path.name, what=f"{type(error).__name__}: {str(error)[:200]}")]
    return notes


def _json_containers(data: Any) -> int:
    """How many objects and arrays a parsed JSON document holds."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            count += 1
            stack.extend(value.values())
        elif isinstance(value, list):
            count += 1
            stack.extend(value)
    return count


def pack_submission(course: Course, assignment: str, student: str, staging: Path) -> Submission:
    """One submission, checked and repaired here (prepare_submission, in the empty folder `staging`, removed
    after), as data for a worker. Never raises: a submission that cannot be prepared at all is sent as an empty
    one that says why."""
    submitted = course.submitted / student / assignment
    shutil.rmtree(staging, ignore_errors=True)
    try:
        problems = collect_files(course, submitted, staging)
        changed = manifest_problems(submitted)          # an LMS upload's (autograde.lms)
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        problems, changed = {"(files)": [f"the submission could not be read ({type(error).__name__}: "
                                         f"{str(error)[:200]}): nothing of it was graded"]}, []
    if changed:
        problems.setdefault("(files)", []).extend(changed)
    # The time it came in is the collection's (or the TA's), never a timestamp.txt from the student's files.
    (staging / "timestamp.txt").unlink(missing_ok=True)
    when = late.recorded_time(course.submitted, assignment, student)
    if when is not None:
        (staging / "timestamp.txt").write_text(when)
    left_out = [notebook for notebook in course.notebooks(assignment)
                if (submitted / f"{notebook}.ipynb").exists() and not (staging / f"{notebook}.ipynb").exists()]
    files = cluster.pack(staging)
    shutil.rmtree(staging)
    return Submission(files, problems, changed, left_out, course.profile)
