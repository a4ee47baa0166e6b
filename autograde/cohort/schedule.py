"""Scheduling: a class's submissions handed to Dask workers in order, a few at a time, and each result
recorded as it comes back (merged into the gradebook, its notebooks placed, the progress saved)."""
from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import cluster
from ..course import REPO, Course, cores_per_worker
from ..sandbox import Bounds, bwrap
from . import results as saved
from .gradebook import GradebookWriter, check_gradebook, place_notebooks
from .prepare import pack_submission
from .results import Result, printable
from .task import Limits, grade_task, resume_local_gradings, stop_local_gradings
from .transport import LARGE_GRAPH, Graded, as_is, course_bundle

MAX_BYTES_IN_FLIGHT = 2 * 10**8   # packed submissions handed out and not yet graded (always at least one)

Say = Callable[[str], None]


class PreflightSet(RuntimeError):
    """LAB_PREFLIGHT is set: the profile's thresholds read 0 (lib.profile.PREFLIGHT), so nobody could fail."""


def refuse_preflight() -> None:
    from lib.profile import PREFLIGHT_VARIABLE
    if os.environ.get(PREFLIGHT_VARIABLE):
        raise PreflightSet(f"{PREFLIGHT_VARIABLE} is set in this shell ({os.environ[PREFLIGHT_VARIABLE]!r}): it sets "
                           f"every grading threshold to 0 (the preflight's override). Unset it (`unset "
                           f"{PREFLIGHT_VARIABLE}`) and grade again")


@dataclass
class Progress:
    """One assignment's results so far and the file they are saved in (grading/cohort/<assignment>/)."""
    work: Path
    results: dict[str, Result]

    @property
    def state_file(self) -> Path:
        return self.work / "results.json"


def run(assignment: str, **options: Any) -> dict[str, Result]:
    """Grade every submission of `assignment` (run_many's options); returns {student: Result}."""
    return run_many([assignment], **options)[assignment]


def run_many(assignments: list[str], jobs: int = 1, timeout: float = 900, memory_gb: float = 4.0,
             course_root: Path | str = REPO, students: list[str] | None = None, force: bool = False,
             quiet: bool = False, sandbox: bool = True, scheduler: str | None = None,
             processes: int = Bounds.processes, disk_gb: float = Bounds.disk / 2**30, tls: str | None = None,
             insecure: bool = False) -> dict[str, dict[str, Result]]:
    """Grade the submissions of several assignments with one pool of workers (none waits for an assignment's
    last submission while another assignment has work left); returns {assignment: {student: Result}}.

    scheduler: the address of a Dask cluster's scheduler (tls://HOST:PORT, its certificates in the folder `tls`:
    autograde.cluster) to grade on; tcp:// only with insecure=True; None: a LocalCluster of `jobs` workers in
    this process. sandbox=False grades without the bubblewrap sandbox (recorded per submission); with
    sandbox=True and no bwrap installed here, it raises SandboxUnavailable before grading anyone (a cluster
    worker without it fails each of its gradings with the same message).
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
    say: Say = (lambda text: None) if quiet else (lambda text: print(printable(text)))
    progress, todo = {}, []
    for assignment in assignments:
        work = course.grading / "cohort" / assignment
        work.mkdir(parents=True, exist_ok=True)
        progress[assignment] = mine = Progress(work, {} if force else saved.load(work / "results.json"))
        shutil.copy(course.db, work / "gradebook-template.db")   # the gradebook before this run: every worker's
        waiting = [s for s in (students or course.students(assignment)) if s not in mine.results]
        todo += [(assignment, student) for student in waiting]
        say(f"{assignment}: {len(waiting)} submission(s) to grade "
            f"{f'on the Dask cluster at {scheduler}' if scheduler else f'with {jobs} worker(s)'}, "
            f"{len(mine.results)} already done ({mine.state_file})")
    # Share the cores out between the gradings running at once (oversubscribed, grading gets several times
    # slower); an OMP_NUM_THREADS set by the TA wins. On a cluster, each worker shares out its own machine's.
    threads = "worker" if scheduler else None if "OMP_NUM_THREADS" in os.environ else cores_per_worker(jobs)
    limits = Limits(timeout, int(memory_gb * 2**30), threads, sandbox, processes, int(disk_gb * 2**30))
    start = time.time()
    bar = cluster.Progress(len(todo), enabled=not quiet)
    lost: list[tuple[str, str, str]] = []
    try:
        with cluster.connect(jobs, scheduler, tls, insecure) as client, GradebookWriter(course) as writer:
            try:
                lost = grade_on(client, course, writer, todo, progress, limits, bar,
                                (lambda text: bar.write(printable(text))) if not quiet else say)
            except KeyboardInterrupt:       # Ctrl-C: stop every local nbgrader now, before the cluster closes
                stop_local_gradings()
                raise
    except KeyboardInterrupt:               # what was merged stays saved
        bar.close()
        say(f"\ninterrupted: the results so far are saved in {', '.join(str(p.state_file) for p in progress.values())}; "
            "run the command again to resume")
        raise
    finally:
        resume_local_gradings()
    bar.close()
    elapsed = time.time() - start
    for assignment, mine in progress.items():
        mark_similar(course, assignment, mine.results)
        saved.save(mine.state_file, mine.results)
        counts = {status: sum(r.status == status for r in mine.results.values())
                  for status in ("graded", "failed", "timeout")}
        say(f"{assignment}: {counts['graded']} graded, {counts['failed']} failed, {counts['timeout']} timed out")
        for student, result in sorted(mine.results.items()):
            for flag in result.flags():
                say(f"  {student}: {flag}")
    for assignment, student, error in lost:
        say(f"  {assignment} {student}: NOT GRADED ({error}); run the command again to grade it")
    say(f"this run: {len(todo)} submission(s) in {elapsed:.1f} s")
    return {assignment: mine.results for assignment, mine in progress.items()}


def grade_on(client: Any, course: Course, writer: GradebookWriter, todo: list[tuple[str, str]],
             progress: dict[str, Progress], limits: Limits, bar: cluster.Progress,
             say: Say) -> list[tuple[str, str, str]]:
    """Hand `todo` [(assignment, student)] to the Dask cluster of `client`, in order, and record each result
    as it comes back; returns [(assignment, student, error)] of the tasks Dask gave up on (their worker died
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

    def submit(function: Callable[..., Any], *args: Any, key: str) -> Any:
        with dask.config.set({LARGE_GRAPH: "1 TiB"}):      # large by design (LARGE_GRAPH)
            return client.submit(function, *args, key=f"{key}-{run_id}", pure=False)

    bundles = {assignment: submit(as_is, course_bundle(course, assignment, progress[assignment].work /
                                                      "gradebook-template.db"), key=f"bundle-{assignment}")
               for assignment in {a for a, _ in todo}}
    queue, lost = list(reversed(todo)), []
    out: dict[str, tuple[str, str, int]] = {}     # {key: (assignment, student, bytes of its files)}
    finished = as_completed()

    def hand_out() -> None:
        while (queue and len(out) < max(2, 2 * cluster.slots(client))
               and (not out or sum(size for *_, size in out.values()) < MAX_BYTES_IN_FLIGHT)):
            assignment, student = queue.pop()
            staging = progress[assignment].work / student / "submitted"
            submission = pack_submission(course, assignment, student, staging)
            future = submit(grade_task, bundles[assignment], assignment, student, submission, limits,
                            key=f"grade-{assignment}-{student}")
            out[future.key] = assignment, student, len(submission.files)
            finished.add(future)

    hand_out()
    for future in finished:
        assignment, student, _ = out.pop(future.key)
        try:
            graded = future.result()
        except Exception as error:           # KilledWorker after repeated worker deaths, a lost connection...
            lost.append((assignment, student, f"{type(error).__name__}: {error}"))
            bar.update("lost")
        else:
            if graded.result.status != "interrupted":     # Ctrl-C came before it started: graded on resume
                record(course, writer, assignment, graded, progress[assignment], say)
            bar.update(graded.result.status)
        future.release()
        hand_out()
    return lost


def record(course: Course, writer: GradebookWriter, assignment: str, graded: Graded, progress: Progress,
           say: Say) -> None:
    """Merge one finished grading into the course (grades, then notebooks) and save the progress: the single
    writer's job. Whatever goes wrong with one result is recorded as that student's failure."""
    result = graded.result
    scratch = progress.work / result.student
    try:
        shutil.rmtree(scratch, ignore_errors=True)
        cluster.unpack(graded.files, scratch)
        graded.files = b""                 # no copy kept past unpacking: the client's memory must not grow
        writer.write(assignment, graded)
        place_notebooks(course, assignment, result, scratch / "grading" / "autograded" / result.student / assignment)
    except Exception as error:            # keep going: one bad merge must not stop the class
        result.status = "failed"
        result.problems["(merge)"] = [f"{type(error).__name__}: {str(error)[:500]}"]
    shutil.rmtree(scratch, ignore_errors=True)
    progress.results[result.student] = result
    saved.save(progress.state_file, progress.results)
    say(f"  {assignment:<14} {result.student:<20} {result.status:<8} {result.seconds:6.1f} s"
        + "".join(f"\n      {nb}: {note}" for nb, notes in result.problems.items() for note in notes))


def mark_similar(course: Course, assignment: str, results: dict[str, Result]) -> None:
    """Record in each result the other students whose submitted checkpoints are (nearly) the same."""
    from ..similarity import similar_submissions
    folders = {student: course.submitted / student / assignment for student in results
               if (course.submitted / student / assignment).is_dir()}
    try:
        similar = similar_submissions(folders)
    except Exception as error:      # one odd file must not cost the class its summary, on every rerun
        print(printable(f"{assignment}: the similarity pass failed ({type(error).__name__}: {str(error)[:200]}); "
                        "no submission is flagged as similar"), file=sys.stderr)
        similar = {}
    for student, result in results.items():
        result.similar_to = similar.get(student, [])
