"""`python -m autograde.cohort ASSIGNMENT [ASSIGNMENT ...] -j 2`: the command line."""
from __future__ import annotations

import argparse
import sys

from .. import cluster, doctor
from ..course import REPO, Course
from ..sandbox import Bounds, SandboxUnavailable
from . import __doc__ as overview
from .gradebook import GradebookNotReady
from .schedule import PreflightSet, run_many


def main(argv: list[str] | None = None) -> int:
    """Grade the assignments given; 0 when everyone asked for was graded, 1 when someone was not (failed, timed
    out, lost), 2 when nothing could start (the message says why)."""
    parser = argparse.ArgumentParser(description=(overview or "").split("\n")[0])
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
        results = run_many(args.assignment, jobs=args.jobs, timeout=args.timeout, memory_gb=args.memory,
                           course_root=args.course, students=args.student, force=args.force,
                           sandbox=not args.no_sandbox, scheduler=args.scheduler, processes=args.processes,
                           disk_gb=args.disk, tls=args.tls, insecure=args.insecure_tcp)
    except (SandboxUnavailable, GradebookNotReady, PreflightSet) as error:
        print(f"autograde.cohort: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    everyone = all(set(args.student or Course.open(args.course).students(a)) <= set(done)
                   for a, done in results.items())
    return 0 if everyone and all(r.status == "graded" for done in results.values() for r in done.values()) else 1
