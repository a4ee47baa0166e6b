"""Autograde a whole class in parallel, safely: `python -m autograde.cohort ASSIGNMENT [ASSIGNMENT ...] -j 2`,
or on a Dask cluster of several machines: `... --scheduler tcp://HOST:PORT`.

nbgrader grades one submission at a time, and its SQLite gradebook is not safe for concurrent writers.
So each submission is one Dask task (autograde.cluster): real `nbgrader autograde` in a scratch course of its
own, on whichever worker runs it. The task carries what it needs as data, so workers share no filesystem with
this process: the submission's files (checked and repaired here first), and once per assignment the course's
configuration, the assignment's source and the gradebook as it was before this run. It returns its grades
(the scratch gradebook), its autograded notebooks and its log as data. Only this process writes the course's
gradebook: each result is copied in and read back to check that none was lost, then its autograded notebooks
are moved into place. By default the workers are a LocalCluster of `-j` threads in this process.

Each submission runs under a wall-clock limit (--timeout) and a memory limit (--memory, on every process
it starts, kernels included); its kernel gets its share of its machine's cores (cores / gradings at once
torch threads). A submission that breaks something (unreadable notebook, duplicated or renamed cells, a file
over the size limit, a crash, a timeout) gets zero on what it broke and a message at the top of its feedback
saying why; the others are graded as usual. Progress is saved after every submission in
grading/cohort/<assignment>/results.json: run the command again to resume. Ctrl-C stops every local worker's
nbgrader and kernel at once; the submissions being graded then are graded again on resume. A cluster worker
that dies mid-task has its submission graded again by another (Dask reschedules it); each result is merged
once. Several assignments given at once share one pool of workers.
"""
import argparse
import ast
import copy
import hashlib
import html
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import nbformat
from sqlalchemy.exc import SAWarning

from . import cluster, doctor, late
from .course import BIN, REPO, Course, course_config, cores_per_worker, nbgrader_id, tool_env
from .lms import manifest_problems
from .referee import AUTOGRADE_PREPROCESSORS, sanitize_markdown
from .sandbox import Bounds, SandboxUnavailable, bwrap, kill_tree

# ---------------------------------------------------------------------------------------------------------
# Checks and repairs before nbgrader sees a submission.

# What one submission may bring into the grader, whose client has no memory limit: an honest one is a few tens
# of MB in a few dozen files (the slimming lab's checkpoints are the largest).
MAX_SUBMISSION_BYTES = 10**9
MAX_SUBMISSION_FILES = 5_000
MAX_BYTES_IN_FLIGHT = 2 * 10**8   # packed submissions handed out and not yet graded (always at least one)


def prepare_submission(course, assignment, submitted, dest):
    """Copy one submission into `dest`, fixing what would make nbgrader crash; returns {notebook: [problems]}.

    Only regular files are read: links are left out, and a FIFO, socket or device (which would block or feed
    the grader forever) is refused with a message. Unreadable notebooks are left out (nbgrader then scores them
    zero), later copies of duplicated cells are dropped, cells whose grade_id is not one of the assignment's lose
    their nbgrader metadata (nbgrader then puts the original grade cell back), and files over the size limit are
    not copied, nor those past MAX_SUBMISSION_BYTES or MAX_SUBMISSION_FILES in all (the notebooks come first).
    """
    problems = {}
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
        if path.suffix != ".ipynb" or rel.parent != Path("."):
            shutil.copy(path, target)
            continue
        notes = _repair_notebook(path, target, _known_ids(course, assignment, path.stem),
                                 _release_cells(course, assignment, path.stem))
        if notes:
            problems[path.stem] = notes
    return problems


def _known_ids(course, assignment, notebook):
    source = course.source / assignment / f"{notebook}.ipynb"
    if not source.exists():
        return None
    return {nbgrader_id(c) for c in nbformat.read(source, as_version=4).cells} - {None}


def _release_cells(course, assignment, notebook):
    """The released notebook's cells (what the student started from), or [] when there is none."""
    release = course.release / assignment / f"{notebook}.ipynb"
    return nbformat.read(release, as_version=4).cells if release.exists() else []


def _put_back_missing(cells, release_cells):
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


# A notebook is repaired here, in the client, which has no memory limit: nbformat takes about 1.4 KB of memory
# per JSON object or array (300,000 of them: 0.9 MB on disk, 430 MB in memory). The executed reference
# notebooks hold at most 44,000 (kd, mostly its progress bars' widget state); a notebook with more than
# MAX_NOTEBOOK_CONTAINERS is refused before nbformat reads it.
MAX_NOTEBOOK_CONTAINERS = 1_000_000


def _repair_notebook(path, target, known_ids, release_cells=()):
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
        nbformat.write(nb, target)
    except Exception as error:   # text Python reads but cannot write back as UTF-8 (a lone surrogate)
        target.unlink(missing_ok=True)
        return [unreadable.format(name=path.name, what=f"{type(error).__name__}: {str(error)[:200]}")]
    return notes


def _json_containers(data):
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


# ---------------------------------------------------------------------------------------------------------
# One worker: real nbgrader in a scratch course, under limits.

# Run as `python -c LIMITED arg...`: set the memory limit, ask the kernel to kill this process when the thread
# that started it dies (a worker killed mid-task leaves no nbgrader behind; its sandboxed kernel dies with
# nbgrader, bwrap --die-with-parent), then become nbgrader. (A preexec_fn would do the same, but it is not safe
# in a process that runs threads, as this one does.)
LIMITED = ("import ctypes, os, resource, signal, sys; limit = int(sys.argv[1]); "
           "limit and resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)); "
           "sys.platform == 'linux' and ctypes.CDLL(None).prctl(1, signal.SIGKILL); "   # 1: PR_SET_PDEATHSIG
           "os.execv(sys.argv[2], sys.argv[2:])")

_running = set()                 # the nbgrader processes started by the workers, to stop them on Ctrl-C
_stopping = threading.Event()    # set on Ctrl-C: workers start no new nbgrader


def _kill(process):
    """Kill nbgrader and everything it started (its kernels run in sessions of their own)."""
    kill_tree(process.pid)
    process.wait()


def grade_task(bundle, task):
    """One Dask task, on a worker: grade one submission from data alone; returns grade_one's result, its
    "scratch" replaced by "files": the grading's gradebook, autograded notebooks and log as tar bytes.

    bundle: course_bundle()'s bytes; task: the submission (pack_submission) and the limits (run_many).
    """
    course = _worker_course(bundle)
    scratch_root = Path(tempfile.mkdtemp(prefix="grading-", dir=_worker_dir()))
    try:
        threads = _worker_threads() if task["threads"] == "worker" else task["threads"]
        result = grade_one(course, task["assignment"], task["student"], scratch_root, task["submission"],
                           task["timeout"], task["memory_bytes"], threads, task["sandbox"], task["processes"],
                           task["disk_bytes"])
        result["files"] = cluster.pack(result.pop("scratch"), exclude=[Path("grading", "submitted")])
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return result


def grade_one(course, assignment, student, scratch_root, submission, timeout, memory_bytes, threads=None,
              sandbox=True, processes=Bounds.processes, disk_bytes=Bounds.disk):
    """Grade one submission in its own scratch course under scratch_root; returns a result dict (never raises).

    course: the course as the worker has it (its config, the assignment's source, the gradebook template);
    submission: pack_submission()'s dict (the prepared files as tar bytes, the problems found while preparing).
    threads: the OMP_NUM_THREADS of its kernel (torch's threads), None to leave it as it is.
    sandbox: run the student's kernel in the bubblewrap sandbox (False: --no-sandbox, recorded in the result).
    memory_bytes bounds each process (RLIMIT_DATA) and the kernel's processes together (autograde.sandbox.Bounds,
    as processes and disk_bytes do): a grading over one is stopped, and its notebook says why.
    The scores are the referee's (autograde.referee), decided in this trusted nbgrader process.
    """
    start = time.time()
    scratch = scratch_root / student
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "grading").mkdir(parents=True)
    shutil.copy(course.db, scratch / "grading" / "gradebook.db")
    _forget_submission(course, scratch / "grading" / "gradebook.db", assignment, student)
    course_config(scratch, base=course.root, **{
        "CourseDirectory.root": str(scratch),
        "CourseDirectory.source_directory": str(course.source),
        "CourseDirectory.submitted_directory": "grading/submitted",
        "CourseDirectory.autograded_directory": "grading/autograded",
        "CourseDirectory.db_url": f"sqlite:///{scratch / 'grading' / 'gradebook.db'}",
        # the trusted pipeline: kernel in the sandbox, scores from the referee (autograde.referee)
        "Autograde.autograde_preprocessors": AUTOGRADE_PREPROCESSORS,
        "SandboxedExecute.sandbox": bool(sandbox),
        "SandboxedExecute.max_processes": int(processes),
        "SandboxedExecute.max_memory": int(memory_bytes or 0),
        "SandboxedExecute.max_disk": int(disk_bytes),
        "Referee.report": str(scratch / "referee.json")})
    cluster.unpack(submission["files"], scratch / "grading" / "submitted" / student / assignment)
    problems = {notebook: list(notes) for notebook, notes in submission["problems"].items()}
    command = [str(BIN / "nbgrader"), "autograde", assignment,
               "--student", student, "--create", "--force"]
    log = scratch / "nbgrader.log"
    if _stopping.is_set():
        return dict(student=student, status="interrupted", scratch=str(scratch))
    status = "graded"
    # The grading's profile is the TA's (the client's), whatever the worker's shell says; never the preflight's.
    # Its temporary files (the sandbox's box: a copy of the submission and all the kernel wrote) go in a folder
    # removed below: a grading killed at the time limit cannot clean up itself. (A short path: the kernel's
    # sockets are files in the box, and a socket's path has at most 107 characters.)
    tmp = Path(tempfile.mkdtemp(prefix="clgrading-"))
    env = tool_env(threads, LAB_PROFILE=submission["profile"], TMPDIR=str(tmp))
    env.pop(_preflight_variable(), None)
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", LIMITED, str(memory_bytes or 0), *command], cwd=scratch,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        _running.add(process)
        if _stopping.is_set():                     # Ctrl-C came while it started
            _kill(process)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            status = "timeout"
        finally:
            _running.discard(process)
            shutil.rmtree(tmp, ignore_errors=True)
    if status == "timeout":
        reason = f"grading stopped after the {timeout:.0f} s limit per submission"
        # nbgrader copies a notebook into autograded/ before running it: after a kill, none of them is graded.
        shutil.rmtree(scratch / "grading" / "autograded", ignore_errors=True)
    else:
        reason = "nbgrader could not grade it"
    graded_dir = scratch / "grading" / "autograded" / student / assignment
    for notebook in course.notebooks(assignment):
        if not (graded_dir / f"{notebook}.ipynb").exists():
            if notebook not in submission["left_out"]:   # an unreadable notebook left out already has its message
                problems.setdefault(notebook, []).append(
                    f"{notebook}.ipynb was not graded: {reason}{_log_reason(log, notebook)}; its cells score zero")
            if status == "graded":
                status = "failed"
    report = json.loads((scratch / "referee.json").read_text()) if (scratch / "referee.json").is_file() else {}
    return dict(student=student, status=status, seconds=round(time.time() - start, 1), problems=problems,
                sandbox=bool(sandbox), manifest_mismatch=submission["manifest_mismatch"],
                verdicts_disagree=sorted({c for found in report.values() for c in found["disagree"]}),
                unrefereed=sorted({c for found in report.values() for c in found["unrefereed"]}),
                scratch=str(scratch))


def _preflight_variable():
    from lib.profile import PREFLIGHT_VARIABLE
    return PREFLIGHT_VARIABLE


_unpacking = threading.Lock()      # a worker's threads unpack a course bundle once between them


def _worker_dir():
    """This worker's own folder for scratch courses (Dask's local directory; the temp folder outside Dask)."""
    try:
        from distributed import get_worker
        return Path(get_worker().local_directory)
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir())


def _worker_threads():
    """Torch threads for one grading on this worker: OMP_NUM_THREADS if its shell sets it, else its cores
    shared out between the submissions it grades at once (its Dask threads)."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    from distributed import get_worker
    return cores_per_worker(get_worker().state.nthreads)


def _worker_course(bundle):
    """The worker's copy of a course bundle, unpacked once per worker (named by its digest); a Course."""
    root = _worker_dir() / f"course-{hashlib.sha256(bundle).hexdigest()[:16]}"
    with _unpacking:
        if not (root / "nbgrader_config.py").is_file():
            shutil.rmtree(root, ignore_errors=True)
            cluster.unpack(bundle, root)
    return Course.open(root)


# ---------------------------------------------------------------------------------------------------------
# What travels to the workers, made here (the client).

def course_bundle(course, assignment, template):
    """What a worker needs of the course to grade `assignment`, as tar bytes: nbgrader_config.py (the
    course's configuration resolved here into plain values: a worker has the kit, not this course's files),
    source/<assignment>/ and grading/gradebook.db (the gradebook `template`, as it was before this run)."""
    from traitlets.config.loader import PyFileConfigLoader
    config = PyFileConfigLoader("nbgrader_config.py", str(course.root)).load_config()
    lines = [f"c.{section}.{name} = {_literal(value)!r}" for section, traits in config.items()
             for name, value in traits.items()]
    lines += ["c.CourseDirectory.source_directory = 'source'",
              "c.CourseDirectory.db_url = 'sqlite:///grading/gradebook.db'"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(course.source / assignment, root / "source" / assignment, symlinks=True)
        (root / "grading").mkdir()
        shutil.copy(template, root / "grading" / "gradebook.db")
        (root / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n")
        return cluster.pack(root)


def _literal(value):
    """A configuration value as a Python literal: a class becomes its import path (traitlets takes either)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (list, tuple)):
        return type(value)(_literal(v) for v in value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    ast.literal_eval(repr(value))         # anything else must already be one (ValueError otherwise)
    return value


def pack_submission(course, assignment, student, staging):
    """One submission, checked and repaired here (prepare_submission, in the empty folder `staging`, removed
    after), as data for a worker: {files: tar bytes, problems, manifest_mismatch, left_out, profile}.

    left_out: the notebooks that were submitted but are not readable (they already have their message).
    Never raises: a submission that cannot be prepared at all is sent as an empty one that says why.
    """
    submitted = course.submitted / student / assignment
    shutil.rmtree(staging, ignore_errors=True)
    try:
        problems = prepare_submission(course, assignment, submitted, staging)
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
    return dict(files=files, problems=problems, manifest_mismatch=changed, left_out=left_out,
                profile=course.profile)


def _forget_submission(course, db, assignment, student):
    """Remove an earlier grading of this submission from a scratch gradebook: only this run's grades count."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{db}", course.course_id) as gb:
        try:
            gb.remove_submission(assignment, student)
        except MissingEntry:
            pass


def _log_reason(log, notebook):
    """The cause nbgrader logged for failing on `notebook`, if any (e.g. 'DeadKernelError: Kernel died').

    An exception line (`SomeError: what`) is the cause; nbgrader's own summary lines ("There was an error
    processing assignment ...") only say that something failed, so they are the last resort.
    """
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
             if "ERROR" in line or "Error" in line or "died" in line]
    causes = [line for line in lines if re.search(r"\w(Error|Exception): \S", line) and "AutogradeApp" not in line]
    mentioning = causes or [line for line in lines if notebook in line] or lines
    return f" ({mentioning[-1][:300]})" if mentioning else ""


# ---------------------------------------------------------------------------------------------------------
# The single writer: grades, autograded notebooks and messages go into the course.

def merge(course, assignment, result):
    """Copy one worker's grades into the course gradebook, check them, and move its notebooks in place."""
    from nbgrader.api import Gradebook, MissingEntry
    student, scratch = result["student"], Path(result["scratch"])
    scratch_db = f"sqlite:///{scratch / 'grading' / 'gradebook.db'}"
    graded_dir = scratch / "grading" / "autograded" / student / assignment
    expected = {}
    with Gradebook(scratch_db, course.course_id) as src, Gradebook(course.gradebook_url, course.course_id) as dst, \
            warnings.catch_warnings():
        # nbgrader's own submission code trips SQLAlchemy's autoflush warning; it is harmless here (the grades
        # are read back below), so the TA's console stays clean.
        warnings.filterwarnings("ignore", category=SAWarning)
        dst.update_or_create_student(student)
        try:
            timestamp = src.find_submission(assignment, student).timestamp
        except MissingEntry:
            timestamp = None
        dst.update_or_create_submission(assignment, student, timestamp=timestamp)
        for notebook in course.notebooks(assignment):
            target = dst.find_submission_notebook(notebook, assignment, student)
            source = None
            if (graded_dir / f"{notebook}.ipynb").exists():
                try:
                    source = src.find_submission_notebook(notebook, assignment, student)
                except MissingEntry:                          # nbgrader stopped before grading it
                    result["problems"].setdefault(notebook, []).append(
                        f"{notebook}.ipynb was not graded: nbgrader stopped before grading it; its cells score zero")
            grades = {g.name: g for g in source.grades} if source else {}
            comments = {c.name: c for c in source.comments} if source else {}
            for grade in target.grades:
                if grade.name in grades:
                    grade.auto_score = grades[grade.name].auto_score
                    grade.needs_manual_grade = grades[grade.name].needs_manual_grade
                else:                                         # the notebook could not be graded
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
                expected[(notebook, grade.name)] = grade.auto_score
            for comment in target.comments:
                if comment.name in comments:
                    comment.auto_comment = comments[comment.name].auto_comment
            if source is not None:
                target.flagged = source.flagged
                target.late_submission_penalty = source.late_submission_penalty
        dst.db.commit()
    # Read back from a fresh connection: every grade the worker produced is in the course gradebook.
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        stored = {(nb.name, g.name): g.auto_score
                  for nb in gb.find_submission(assignment, student).notebooks for g in nb.grades}
    lost = {cell: score for cell, score in expected.items() if stored.get(cell) != score}
    if lost:
        raise RuntimeError(f"grades of {student} were not stored: {lost}")
    _place_notebooks(course, assignment, result, graded_dir)


def _place_notebooks(course, assignment, result, graded_dir):
    """Move the autograded folder into the course; add a message cell to notebooks that had problems."""
    student, problems = result["student"], result["problems"]
    dest = course.autograded / student / assignment
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if graded_dir.exists():
        shutil.move(str(graded_dir), dest)
    dest.mkdir(parents=True, exist_ok=True)
    general = problems.get("(files)", [])
    for notebook in course.notebooks(assignment):
        path = dest / f"{notebook}.ipynb"
        notes = general + problems.get(notebook, [])
        if not path.exists():                     # give feedback on the released notebook, all zeros
            release = course.release / assignment / f"{notebook}.ipynb"
            if release.exists():                  # (never the source: it holds the solutions and hidden tests)
                shutil.copy(release, path)
            else:
                nbformat.write(nbformat.v4.new_notebook(), path)
        if notes:
            nb = nbformat.read(path, as_version=4)
            text = "**Message from the grader**\n\n" + "\n".join(f"- {markdown_literal(note)}" for note in notes)
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(sanitize_markdown(text)))
            nbformat.write(nb, path)


# ---------------------------------------------------------------------------------------------------------

def _save(path, results):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)


def _receive(work, result):
    """Unpack a worker's result files into work/<student>/ (a scratch course as merge() reads it)."""
    scratch = work / result["student"]
    shutil.rmtree(scratch, ignore_errors=True)
    cluster.unpack(result.pop("files"), scratch)
    result["scratch"] = str(scratch)
    return result


def _record(course, assignment, result, results, state_file, keep_scratch, say):
    """Unpack one finished worker's files and merge them into the course, and save the progress (the single
    writer's job). Whatever goes wrong with one result is recorded as that student's failure."""
    try:
        _receive(course.grading / "cohort" / assignment, result)
        merge(course, assignment, result)
    except Exception as error:            # keep going: one bad merge must not stop the class
        result["status"] = "failed"
        result["problems"]["(merge)"] = [f"{type(error).__name__}: {str(error)[:500]}"]
    if not keep_scratch and "scratch" in result:
        shutil.rmtree(result["scratch"], ignore_errors=True)
    results[result["student"]] = {k: v for k, v in result.items() if k != "scratch"}
    _save(state_file, results)
    say(f"  {assignment:<14} {result['student']:<20} {result['status']:<8} {result['seconds']:6.1f} s"
        + "".join(f"\n      {nb}: {note}" for nb, notes in result["problems"].items() for note in notes))


def markdown_literal(text):
    """`text` (a file name, a cell id: the student's words) shown as it is in a markdown cell: printable, HTML's
    special characters as entities and markdown's punctuation escaped, so that it renders as plain text."""
    text = html.escape(printable(text), quote=False)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", text)


def printable(text):
    """`text` safe to print and to write as UTF-8: control characters (but newlines and tabs) and lone
    surrogates, which a submission's file names and metadata may hold, become escapes. Student text reaches
    the TA's console: a cursor-moving escape sequence could erase the line that flags that student."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def run(assignment, jobs=1, timeout=900, memory_gb=4.0, course_root=REPO, students=None, force=False,
        keep_scratch=False, quiet=False, sandbox=True, scheduler=None, processes=Bounds.processes,
        disk_gb=Bounds.disk / 2**30, tls=None, insecure=False):
    """Grade every submission of `assignment` (or only `students`); returns {student: result}."""
    return run_many([assignment], jobs, timeout, memory_gb, course_root, students, force, keep_scratch,
                    quiet, sandbox, scheduler, processes, disk_gb, tls, insecure)[assignment]


def run_many(assignments, jobs=1, timeout=900, memory_gb=4.0, course_root=REPO, students=None, force=False,
             keep_scratch=False, quiet=False, sandbox=True, scheduler=None, processes=Bounds.processes,
             disk_gb=Bounds.disk / 2**30, tls=None, insecure=False):
    """Grade the submissions of several assignments with one pool of workers (none waits for an assignment's
    last submission while another assignment has work left); returns {assignment: {student: result}}.

    scheduler: the address of a Dask cluster's scheduler (tls://HOST:PORT, its certificates in the folder `tls`:
    autograde.cluster) to grade on; tcp:// only with insecure=True; None: a LocalCluster of `jobs` workers in
    this process. sandbox=False grades without the bubblewrap sandbox (recorded per
    submission); with sandbox=True and no bwrap installed here, it raises SandboxUnavailable before grading
    anyone (a cluster worker without it fails each of its gradings with the same message).
    Bounds per submission: `timeout` seconds, `memory_gb` (each process, and the kernel's all together),
    `processes` at once, `disk_gb` written.
    """
    if scheduler:
        cluster.check_address(scheduler, insecure)
    if sandbox:
        bwrap()
    refuse_preflight()
    course = Course.open(course_root)
    for assignment in assignments:
        check_gradebook(course, assignment)
    say = (lambda *a: None) if quiet else (lambda text: print(printable(text)))
    progress, todo = {}, []
    for assignment in assignments:
        work = course.grading / "cohort" / assignment
        work.mkdir(parents=True, exist_ok=True)
        state_file = work / "results.json"
        results = json.loads(state_file.read_text()) if state_file.exists() and not force else {}
        progress[assignment] = state_file, results
        template = work / "gradebook-template.db"
        shutil.copy(course.db, template)          # the gradebook before this run: every worker starts from it
        mine = [s for s in (students or course.students(assignment)) if s not in results]
        todo += [(assignment, student) for student in mine]
        say(f"{assignment}: {len(mine)} submission(s) to grade "
            f"{f'on the Dask cluster at {scheduler}' if scheduler else f'with {jobs} worker(s)'}, "
            f"{len(results)} already done ({state_file})")
    # Share the cores out between the gradings running at once (oversubscribed, grading gets several times
    # slower); an OMP_NUM_THREADS set by the TA wins. On a cluster, each worker shares out its own machine's.
    threads = "worker" if scheduler else None if "OMP_NUM_THREADS" in os.environ else cores_per_worker(jobs)
    limits = dict(timeout=timeout, memory_bytes=int(memory_gb * 2**30), threads=threads, sandbox=sandbox,
                  processes=processes, disk_bytes=int(disk_gb * 2**30))
    start = time.time()
    bar = cluster.Progress(len(todo), enabled=not quiet)
    lost = []
    try:
        with cluster.connect(jobs, scheduler, tls, insecure) as client:
            try:
                lost = _grade_on(client, course, todo, progress, limits, keep_scratch, bar,
                                 (lambda text: bar.write(printable(text))) if not quiet else say)
            except KeyboardInterrupt:       # Ctrl-C: stop every local nbgrader now, before the cluster closes
                _stopping.set()
                for process in list(_running):
                    _kill(process)
                raise
    except KeyboardInterrupt:               # what was merged stays saved
        bar.close()
        say(f"\ninterrupted: the results so far are saved in {', '.join(str(f) for f, _ in progress.values())}; "
            "run the command again to resume")
        raise
    finally:
        _stopping.clear()
    bar.close()
    elapsed = time.time() - start
    for assignment, (state_file, results) in progress.items():
        _mark_similar(course, assignment, results)
        _save(state_file, results)
        counts = {status: sum(r["status"] == status for r in results.values())
                  for status in ("graded", "failed", "timeout")}
        say(f"{assignment}: {counts['graded']} graded, {counts['failed']} failed, {counts['timeout']} timed out")
        for student, result in sorted(results.items()):
            for flag in _flags(result):
                say(f"  {student}: {flag}")
    for assignment, student, error in lost:
        say(f"  {assignment} {student}: NOT GRADED ({error}); run the command again to grade it")
    say(f"this run: {len(todo)} submission(s) in {elapsed:.1f} s")
    return {assignment: results for assignment, (_, results) in progress.items()}


def _grade_on(client, course, todo, progress, limits, keep_scratch, bar, say):
    """Hand `todo` [(assignment, student)] to the Dask cluster of `client`, in order, and merge each result as
    it comes back; returns [(assignment, student, error)] of the tasks Dask gave up on (their worker died
    `distributed.scheduler.allowed-failures` times, or the cluster lost them), which are not recorded.

    At most two tasks per worker thread are out at once, holding at most MAX_BYTES_IN_FLIGHT of packed files
    (one task always): a submission's files are read and held in memory only when a worker is about to need
    them, so the client's memory does not grow with the class (nor do Dask's logs keep them: cluster.connect).

    Nothing travels as scattered data: the scheduler cannot recover scattered data from a worker that dies,
    and its memory manager keeps one copy of it wherever it likes, so a broadcast copy does not survive
    either. The course bundle is a task of its own (the scheduler computes it again after a worker's death)
    and each submission's files travel inside their grading task, which the scheduler keeps until it is done.
    """
    import dask
    from distributed import as_completed
    run_id = os.urandom(4).hex()

    def submit(function, *args, key):
        with dask.config.set({LARGE_GRAPH: "1 TiB"}):      # large by design (LARGE_GRAPH)
            return client.submit(function, *args, key=f"{key}-{run_id}", pure=False)

    bundles = {}
    for assignment in {a for a, _ in todo}:
        work = course.grading / "cohort" / assignment
        bundle = course_bundle(course, assignment, work / "gradebook-template.db")
        bundles[assignment] = submit(_as_is, bundle, key=f"bundle-{assignment}")
    queue, out, lost = list(reversed(todo)), {}, []     # out: {key: (assignment, student, bytes of its files)}
    finished = as_completed()

    def hand_out():
        while (queue and len(out) < max(2, 2 * cluster.slots(client))
               and (not out or sum(size for *_, size in out.values()) < MAX_BYTES_IN_FLIGHT)):
            assignment, student = queue.pop()
            work = course.grading / "cohort" / assignment
            task = dict(limits, assignment=assignment, student=student,
                        submission=pack_submission(course, assignment, student, work / student / "submitted"))
            future = submit(grade_task, bundles[assignment], task, key=f"grade-{assignment}-{student}")
            out[future.key] = assignment, student, len(task["submission"]["files"])
            finished.add(future)

    hand_out()
    for future in finished:
        assignment, student, _ = out.pop(future.key)
        try:
            result = future.result()
        except Exception as error:           # KilledWorker after repeated worker deaths, a lost connection...
            lost.append((assignment, student, f"{type(error).__name__}: {error}"))
            bar.update("lost")
        else:
            state_file, results = progress[assignment]
            _record(course, assignment, result, results, state_file, keep_scratch, say)
            bar.update(result["status"])
        future.release()
        hand_out()
    return lost


# Dask warns of any task over 10 MB: it suspects data that should be loaded once and shared. Ours are large by
# design: a grading task carries one submission's files, which no other task needs, and the bundle is sent once.
LARGE_GRAPH = "distributed.admin.large-graph-warning-threshold"


def _as_is(data):
    """The bundle task: its data, as the client gave it."""
    return data


class GradebookNotReady(RuntimeError):
    """The course gradebook does not know an assignment's grade cells yet: nothing can be graded."""


class PreflightSet(RuntimeError):
    """LAB_PREFLIGHT is set: the profile's thresholds read 0 (lib.profile.PREFLIGHT), so nobody could fail."""


def refuse_preflight():
    from lib.profile import PREFLIGHT_VARIABLE
    if os.environ.get(PREFLIGHT_VARIABLE):
        raise PreflightSet(f"{PREFLIGHT_VARIABLE} is set in this shell ({os.environ[PREFLIGHT_VARIABLE]!r}): it sets "
                           f"every grading threshold to 0 (the preflight's override). Unset it (`unset "
                           f"{PREFLIGHT_VARIABLE}`) and grade again")


def check_gradebook(course, assignment):
    """Raise GradebookNotReady, naming the one command that fixes it, unless the gradebook holds `assignment`
    with its notebooks (`nbgrader generate_assignment` registers them; a fresh clone has no gradebook)."""
    from nbgrader.api import Gradebook, MissingEntry
    fix = (f"run `nbgrader generate_assignment {assignment} --force` in {course.root} first: it registers "
           f"the grade cells of {assignment} in the gradebook (and rewrites labs/{assignment} from solutions/)")
    if not course.db.is_file():
        raise GradebookNotReady(f"{course.db} does not exist: {fix}")
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        try:
            registered = gb.find_assignment(assignment).notebooks
        except MissingEntry:
            registered = []
    if not registered:
        raise GradebookNotReady(f"{course.db} has no assignment '{assignment}': {fix}")


def _flags(result):
    """What the TA must look at in one submission's result, as sentences."""
    flags = []
    if not result.get("sandbox", True):
        flags.append("graded WITHOUT the sandbox (--no-sandbox)")
    for cell in result.get("verdicts_disagree", []):
        flags.append(f"{cell}: verdicts disagree: possible tampering (the notebook's own test passed, the "
                     "referee found the condition it asserts broken)")
    if result.get("manifest_mismatch"):
        flags.append(f"files differ from the manifest of the zip it uploaded: {'; '.join(result['manifest_mismatch'])}")
    if result.get("similar_to"):
        flags.append(f"checkpoints identical or nearly identical to those of {', '.join(result['similar_to'])}")
    if result.get("unrefereed"):
        flags.append(f"cells scored from the notebook's own outputs (no referee verdict): "
                     f"{', '.join(result['unrefereed'])}")
    return flags


def _mark_similar(course, assignment, results):
    """Record in each result the other students whose submitted checkpoints are (nearly) the same."""
    from .similarity import similar_submissions
    folders = {student: course.submitted / student / assignment for student in results
               if (course.submitted / student / assignment).is_dir()}
    try:
        similar = similar_submissions(folders)
    except Exception as error:      # one odd file must not cost the class its summary, on every rerun
        print(printable(f"{assignment}: the similarity pass failed ({type(error).__name__}: {str(error)[:200]}); "
                        "no submission is flagged as similar"), file=sys.stderr)
        similar = {}
    for student, result in results.items():
        result["similar_to"] = similar.get(student, [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignment", nargs="+", help="one or more assignments, graded with one pool of workers")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="submissions graded at once on this machine (default 1; not with --scheduler)")
    parser.add_argument("--scheduler", metavar="tls://HOST:PORT",
                        help="grade on this Dask cluster (its workers need the kit installed)")
    parser.add_argument("--tls", metavar="FOLDER",
                        help="the cluster's certificates (made by `python -m autograde.cluster certificates FOLDER`)")
    parser.add_argument("--insecure-tcp", action="store_true",
                        help="accept a tcp:// scheduler, without TLS: only on a network that no student reaches")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per submission (default 900)")
    parser.add_argument("--memory", type=float, default=4.0,
                        help="GiB of memory for a submission: for nbgrader, and for its kernel's processes all "
                             "together, shared memory included (default 4)")
    parser.add_argument("--processes", type=int, default=Bounds.processes,
                        help=f"processes a submission's kernel may run at once (default {Bounds.processes})")
    parser.add_argument("--disk", type=float, default=Bounds.disk / 2**30,
                        help=f"GiB a submission's kernel may write (default {Bounds.disk / 2**30:g})")
    parser.add_argument("--course", default=str(REPO), help="the nbgrader course directory (default: the kit)")
    parser.add_argument("--student", action="append", help="grade only this student (repeatable)")
    parser.add_argument("--force", action="store_true", help="regrade everyone, ignoring saved progress")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run students' kernels without the bubblewrap sandbox (recorded per submission): "
                             "their code can then read and write whatever your user can")
    args = parser.parse_args(argv)
    try:
        if args.scheduler:
            cluster.check_address(args.scheduler, args.insecure_tcp)
            if args.tls:
                cluster.security(args.tls)
    except cluster.InsecureCluster as error:
        print(f"autograde.cohort: {error}", file=sys.stderr)
        return 2
    try:
        # Within seconds, before anyone is graded: a machine that cannot grade says why in one line each.
        doctor.require(args.course, doctor.GRADING_BYTES, "grading",
                       sandbox=not args.no_sandbox and not args.scheduler, say=print)
    except doctor.NotReady as error:
        for line in str(error).splitlines():
            print(f"autograde.cohort: {line}", file=sys.stderr)
        return 2
    try:
        results = run_many(args.assignment, args.jobs, args.timeout, args.memory, args.course, args.student,
                           args.force, sandbox=not args.no_sandbox, scheduler=args.scheduler,
                           processes=args.processes, disk_gb=args.disk, tls=args.tls, insecure=args.insecure_tcp)
    except (SandboxUnavailable, GradebookNotReady, PreflightSet) as error:
        print(f"autograde.cohort: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    everyone = all(set(args.student or Course.open(args.course).students(a)) <= set(done) for a, done in results.items())
    return 0 if everyone and all(r["status"] == "graded" for done in results.values() for r in done.values()) else 1


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's: Dask sends tasks by reference to
    # autograde.cohort.grade_task (a worker imports it), and Ctrl-C must stop the gradings that copy started.
    from autograde.cohort import main as cohort_main
    sys.exit(cohort_main())
