"""Cohort throughput on Dask: submissions per minute with 1 and 2 local workers and on a two-worker cluster.

    .venv/bin/python bench/bench_cohort_dask.py [--reuse kd=FOLDER] [-n 6] [--assignment kd]

Submits the reference work of one assignment (built, or --reuse'd) for n simulated students and grades them
with `autograde.cohort` (trusted path: sandbox + referee) three ways: -j 1 and -j 2 (the default in-process
LocalCluster), then through --scheduler on a cluster this script starts on localhost (`dask scheduler` and two
`dask worker --nthreads 1` processes, like two one-slot machines). It also prints what one submission costs
the client (preparing it, merging its grades: the single writer's serial share) and the LocalCluster's start
and stop time, then projects the wall time of a class against its size and number of workers:
    wall = start + max(n x client seconds, ceil(n / workers) x seconds per submission of one worker)
where one worker is one grading slot with the cores of this 2-core machine (the -j 1 figure).
"""
import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograde import cluster, cohort  # noqa: E402
from autograde.cohort import schedule  # noqa: E402
from autograde.course import BIN, Course, make_student_work  # noqa: E402


def timed_client(counter):
    """Add the client's own seconds to counter[0]: preparing each submission (pack_submission), recording each
    result (record: unpacking, the gradebook merge, placing its notebooks, saving the progress) and opening the
    gradebook once per run (GradebookWriter)."""
    def timed(original):
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                counter[0] += time.time() - start
        return wrapper
    for name in ("pack_submission", "record"):
        setattr(schedule, name, timed(getattr(schedule, name)))
    schedule.GradebookWriter.__init__ = timed(schedule.GradebookWriter.__init__)


def start_cluster(tmp):
    """`dask scheduler` and two one-thread `dask worker` processes on localhost, with TLS as the kit sets it up;
    (address, processes, certificates folder)."""
    file, tls = tmp / "scheduler.json", cluster.make_certificates(tmp / "tls")
    common = dict(cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--protocol", "tls", "--host", "127.0.0.1",
                                   "--port", "0", "--no-dashboard", "--scheduler-file", str(file),
                                   *cluster.tls_options(tls)], **common)]
    while not file.exists():
        time.sleep(0.2)
    address = json.loads(file.read_text())["address"]
    processes += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                    "--host", "127.0.0.1", "--local-directory", str(tmp / f"w{i}"),
                                    *cluster.tls_options(tls)], **common) for i in range(2)]
    from distributed import Client
    with Client(address, security=cluster.security(tls)) as client:
        client.wait_for_workers(2, timeout=300)
    return address, processes, tls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="append", default=[], metavar="ASSIGNMENT=FOLDER")
    parser.add_argument("--assignment", default="kd")
    parser.add_argument("-n", type=int, default=6, help="simulated submissions (default 6)")
    args = parser.parse_args()
    reuse = dict(item.split("=", 1) for item in args.reuse)
    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    course = Course(tmp / "course")
    work = Path(reuse[args.assignment]) if args.assignment in reuse else \
        make_student_work(args.assignment, tmp / "work")
    course.generate(args.assignment)
    students = [f"s{i:03d}" for i in range(args.n)]
    for student in students:
        course.submit(student, args.assignment, work)

    start = time.time()
    with cluster.connect(jobs=2):
        started = time.time() - start
    overhead = time.time() - start
    print(f"LocalCluster (2 workers, in this process): {started:.2f} s to start, {overhead:.2f} s start + stop")

    client_seconds = [0.0]
    timed_client(client_seconds)
    rates, per_submission = {}, {}
    address, processes, tls = start_cluster(tmp)
    try:
        for label, jobs, scheduler in (("1 local worker (-j 1)", 1, None), ("2 local workers (-j 2)", 2, None),
                                       ("2-worker Dask cluster (--scheduler)", 2, address)):
            client_seconds[0] = 0.0
            start = time.time()
            results = cohort.run(args.assignment, jobs=jobs, course_root=course.root, students=students, force=True,
                                 quiet=True, scheduler=scheduler, tls=tls)
            seconds = time.time() - start
            assert all(r.status == "graded" for r in results.values()), results
            rates[label] = 60 * args.n / seconds
            per_submission[jobs, scheduler] = seconds / args.n
            print(f"{label:<38} {args.n} submissions in {seconds:6.1f} s: {rates[label]:5.2f} per minute "
                  f"(client: {client_seconds[0] / args.n:.2f} s per submission)")
            if jobs == 2 and scheduler is None:
                client_share = client_seconds[0] / args.n
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
    shutil.rmtree(tmp, ignore_errors=True)

    one_worker = per_submission[1, None]      # seconds per submission of one grading slot with 2 cores
    print(f"\nprojected wall time (one worker = {one_worker:.1f} s per submission, the client "
          f"{client_share:.2f} s per submission, {overhead:.1f} s start-up):")
    sizes, workers = (50, 200, 1000, 5000), (1, 2, 8, 32, 128)
    print("| submissions | " + " | ".join(f"{w} worker{'s' * (w > 1)}" for w in workers) + " |")
    print("|---:|" + "---:|" * len(workers))
    for n in sizes:
        cells = [overhead + max(n * client_share, math.ceil(n / w) * one_worker) for w in workers]
        print(f"| {n} | " + " | ".join(_duration(c) for c in cells) + " |")


def _duration(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else \
        f"{seconds:.0f} s"


if __name__ == "__main__":
    main()
