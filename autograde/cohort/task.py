"""The grading task, on a worker: real `nbgrader autograde` of one submission in a scratch course of its own,
under limits, from data alone (the worker shares no filesystem with the client)."""
from __future__ import annotations

import hashlib
import os
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .. import cluster
from ..course import BIN, Course, course_config, cores_per_worker, tool_env
from ..referee import AUTOGRADE_PREPROCESSORS
from ..sandbox import Bounds, kill_tree
from .gradebook import forget_submission, read_grades
from .prepare import Submission, repair_notebooks
from .results import Result
from .transport import Graded


@dataclass
class Limits:
    """The bounds of one grading. threads: its kernel's OMP_NUM_THREADS (torch's threads); None leaves the
    worker's as they are, "worker" shares out the worker's cores between the gradings it runs at once.
    sandbox=False runs the kernel without bubblewrap (--no-sandbox, recorded in the result). memory_bytes bounds
    each process (RLIMIT_DATA) and the kernel's processes together, as processes and disk_bytes do
    (autograde.sandbox.Bounds): a grading over one is stopped, and its notebook says why."""
    timeout: float = 900
    memory_bytes: int = 4 * 2**30
    threads: int | str | None = None
    sandbox: bool = True
    processes: int = Bounds.processes
    disk_bytes: int = Bounds.disk


# Run as `python -c LIMITED arg...`: set the memory limit, ask the kernel to kill this process when the thread
# that started it dies (a worker killed mid-task leaves no nbgrader behind; its sandboxed kernel dies with
# nbgrader, bwrap --die-with-parent), then become nbgrader. (A preexec_fn would do the same, but it is not safe
# in a process that runs threads, as this one does.)
LIMITED = ("import ctypes, os, resource, signal, sys; limit = int(sys.argv[1]); "
           "limit and resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)); "
           "sys.platform == 'linux' and ctypes.CDLL(None).prctl(1, signal.SIGKILL); "   # 1: PR_SET_PDEATHSIG
           "os.execv(sys.argv[2], sys.argv[2:])")

_running: set[subprocess.Popen[bytes]] = set()   # the nbgrader processes started by local workers
_stopping = threading.Event()                     # set on Ctrl-C: workers start no new nbgrader


def stop_local_gradings() -> None:
    """Ctrl-C: kill every nbgrader this process's workers started, and start no new one until resumed."""
    _stopping.set()
    for process in list(_running):
        _kill(process)


def resume_local_gradings() -> None:
    _stopping.clear()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill nbgrader and everything it started (its kernels run in sessions of their own)."""
    kill_tree(process.pid)
    process.wait()


def grade_task(bundle: bytes, assignment: str, student: str, submission: Submission, limits: Limits) -> Graded:
    """One Dask task: grade one submission from data alone. bundle: transport.course_bundle()'s bytes."""
    course = _worker_course(bundle)
    scratch_root = Path(tempfile.mkdtemp(prefix="grading-", dir=_worker_dir()))
    try:
        if limits.threads == "worker":
            limits = replace(limits, threads=_worker_threads())
        return grade_one(course, assignment, student, scratch_root, submission, limits)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


def grade_one(course: Course, assignment: str, student: str, scratch_root: Path, submission: Submission,
              limits: Limits) -> Graded:
    """Grade one submission in its own scratch course under scratch_root (never raises).

    course: the course as the worker has it (its config, the assignment's source, the gradebook template).
    The scores are the referee's (autograde.referee), decided in this trusted nbgrader process.
    """
    start = time.time()
    scratch = scratch_root / student
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "grading").mkdir(parents=True)
    db = scratch / "grading" / "gradebook.db"
    shutil.copy(course.db, db)
    forget_submission(db, course.course_id, assignment, student)
    course_config(scratch, base=course.root, **{
        "CourseDirectory.root": str(scratch),
        "CourseDirectory.source_directory": str(course.source),
        "CourseDirectory.submitted_directory": "grading/submitted",
        "CourseDirectory.autograded_directory": "grading/autograded",
        "CourseDirectory.db_url": f"sqlite:///{db}",
        # the trusted pipeline: kernel in the sandbox, scores from the referee (autograde.referee)
        "Autograde.autograde_preprocessors": AUTOGRADE_PREPROCESSORS,
        "SandboxedExecute.sandbox": bool(limits.sandbox),
        "SandboxedExecute.max_processes": int(limits.processes),
        "SandboxedExecute.max_memory": int(limits.memory_bytes or 0),
        "SandboxedExecute.max_disk": int(limits.disk_bytes),
        "Referee.report": str(scratch / "referee.json")})
    submitted = scratch / "grading" / "submitted" / student / assignment
    cluster.unpack(submission.files, submitted)
    submission.files = b""       # not held while nbgrader runs (in an in-process worker, it is the client's copy)
    result = Result(student, sandbox=bool(limits.sandbox), manifest_mismatch=list(submission.manifest_mismatch),
                    problems={notebook: list(notes) for notebook, notes in submission.problems.items()})
    collected = {path.stem for path in submitted.glob("*.ipynb")}
    try:
        for notebook, notes in repair_notebooks(course, assignment, submitted).items():
            result.problems.setdefault(notebook, []).extend(notes)
    except Exception as error:       # the repair catches what a notebook can hold; this is the grader's own failure
        result.add_problem("(files)", f"the notebooks could not be checked ({type(error).__name__}: "
                                      f"{str(error)[:200]}): they were graded as submitted")
    # notebooks that never reached nbgrader (too large to collect, unreadable) already have their message
    left_out = [*submission.left_out, *(nb for nb in collected if not (submitted / f"{nb}.ipynb").exists())]
    if _stopping.is_set():
        result.status = "interrupted"
        return Graded(result)
    log = scratch / "nbgrader.log"
    result.status = _run_nbgrader(scratch, assignment, student, submission.profile, limits, log)
    if result.status == "timeout":
        reason = f"grading stopped after the {limits.timeout:.0f} s limit per submission"
        # nbgrader copies a notebook into autograded/ before running it: after a kill, none of them is graded.
        shutil.rmtree(scratch / "grading" / "autograded", ignore_errors=True)
    else:
        reason = "nbgrader could not grade it"
    graded_dir = scratch / "grading" / "autograded" / student / assignment
    for notebook in course.notebooks(assignment):
        if not (graded_dir / f"{notebook}.ipynb").exists():
            if notebook not in left_out:
                result.add_problem(notebook, f"{notebook}.ipynb was not graded: {reason}{_log_reason(log, notebook)}; "
                                             "its cells score zero")
            if result.status == "graded":
                result.status = "failed"
    graded = [nb for nb in course.notebooks(assignment) if (graded_dir / f"{nb}.ipynb").exists()]
    timestamp, grades = read_grades(db, course.course_id, assignment, student, graded, result)
    report = json.loads((scratch / "referee.json").read_text()) if (scratch / "referee.json").is_file() else {}
    result.verdicts_disagree = sorted({c for found in report.values() for c in found["disagree"]})
    result.unrefereed = sorted({c for found in report.values() for c in found["unrefereed"]})
    result.seconds = round(time.time() - start, 1)
    files = cluster.pack(scratch, exclude=[Path("grading", "submitted"), Path("grading", "gradebook.db")])
    return Graded(result, timestamp, grades, files)


def _run_nbgrader(scratch: Path, assignment: str, student: str, profile: str, limits: Limits, log: Path) -> str:
    """`nbgrader autograde` in the scratch course under `limits`, its output in `log`; "graded" or "timeout"."""
    command = [str(BIN / "nbgrader"), "autograde", assignment, "--student", student, "--create", "--force"]
    # The grading's profile is the TA's (the client's), whatever the worker's shell says; never the preflight's.
    # Its temporary files (the sandbox's box: a copy of the submission and all the kernel wrote) go in a folder
    # removed below: a grading killed at the time limit cannot clean up itself. (A short path: the kernel's
    # sockets are files in the box, and a socket's path has at most 107 characters.)
    tmp = Path(tempfile.mkdtemp(prefix="clgrading-"))
    threads = limits.threads if isinstance(limits.threads, int) else None
    env = tool_env(threads, LAB_PROFILE=profile, TMPDIR=str(tmp))
    env.pop(_preflight_variable(), None)
    status = "graded"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", LIMITED, str(limits.memory_bytes or 0), *command],
                                   cwd=scratch, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        _running.add(process)
        if _stopping.is_set():                     # Ctrl-C came while it started
            _kill(process)
        try:
            process.wait(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            status = "timeout"
        finally:
            _running.discard(process)
            shutil.rmtree(tmp, ignore_errors=True)
    return status


def _log_reason(log: Path, notebook: str) -> str:
    """The cause nbgrader logged for failing on `notebook`, if any (e.g. 'DeadKernelError: Kernel died').

    An exception line (`SomeError: what`) is the cause; nbgrader's own summary lines ("There was an error
    processing assignment ...") only say that something failed, so they are the last resort.
    """
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
             if "ERROR" in line or "Error" in line or "died" in line]
    causes = [line for line in lines if re.search(r"\w(Error|Exception): \S", line) and "AutogradeApp" not in line]
    mentioning = causes or [line for line in lines if notebook in line] or lines
    return f" ({mentioning[-1][:300]})" if mentioning else ""


def _preflight_variable() -> str:
    from lib.profile import PREFLIGHT_VARIABLE
    return PREFLIGHT_VARIABLE


_unpacking = threading.Lock()      # a worker's threads unpack a course bundle once between them


def _worker_dir() -> Path:
    """This worker's own folder for scratch courses (Dask's local directory; the temp folder outside Dask)."""
    try:
        from distributed import get_worker
        return Path(get_worker().local_directory)
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir())


def _worker_threads() -> int | None:
    """Torch threads for one grading on this worker: OMP_NUM_THREADS if its shell sets it (None: left as it
    is), else its cores shared out between the submissions it grades at once (its Dask threads)."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    from distributed import get_worker
    return cores_per_worker(get_worker().state.nthreads)


def _worker_course(bundle: bytes) -> Course:
    """The worker's copy of a course bundle, unpacked once per worker (named by its digest)."""
    root = _worker_dir() / f"course-{hashlib.sha256(bundle).hexdigest()[:16]}"
    with _unpacking:
        if not (root / "nbgrader_config.py").is_file():
            shutil.rmtree(root, ignore_errors=True)
            cluster.unpack(bundle, root)
    return Course.open(root)
