"""The cohort runner on a real Dask cluster: `dask scheduler` and two `dask worker` processes on localhost,
speaking TLS with the certificates `python -m autograde.cluster certificates` made, graded through
`python -m autograde.cohort --scheduler tls://... --tls FOLDER`. Without the certificates nobody joins or submits.

The submissions are the small "toy" assignment of tests/test_cohort.py (a few seconds of grading each). The
workers share nothing with the client but the kit: each task carries its submission's files and brings its
grades back as data. Two hard stops are tested: a worker killed mid-task, holding the only copy of everything
the cluster had (its submission is graded again by a worker that joined later: graded exactly once, with the
scores of a local run), and the client killed mid-run (the rerun grades only what was not merged). No process
started here outlives the module.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from autograde import cluster, cohort
from autograde.course import BIN
from test_cohort import corrupt_json, good_work, points, toy_course
from conftest import needs_sandbox

pytestmark = needs_sandbox()

# Two submissions: one graded in full, one that fails fast (an unreadable notebook: no kernel started).
CASES = {"good": None, "corrupt": corrupt_json}


def with_checkpoint_sized_file(work):
    """A 12 MB artifact beside the notebook, a VGG checkpoint's size: over Dask's large-graph threshold (10 MB)."""
    (work / "artifacts" / "weights.bin").write_bytes(os.urandom(12 * 2**20))


def submit_class(tmp, name, cases=CASES, cell_timeout=60):
    """A toy course under tmp/name with one submission per `cases` entry (student: change to the good work)."""
    course = toy_course(tmp / name, cell_timeout=cell_timeout)
    for student, change in cases.items():
        work = good_work(tmp / name / "work" / student)
        if change is not None:
            change(work)
        course.submit(student, "toy", work)
    return course


def family(pids):
    """The live processes among `pids` and all their descendants."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found += [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def wait_for(condition, seconds, what):
    for _ in range(int(seconds * 5)):
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"waited {seconds} s for {what}")


class LocalDaskCluster:
    """A scheduler and one worker process, as a TA's cluster would run them (one thread per worker, no nanny:
    killing a worker's process kills the worker); start_worker() adds more."""

    def __init__(self, tmp):
        self.tmp, self.file = tmp, tmp / "scheduler.json"
        self.env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        made = subprocess.run([sys.executable, "-m", "autograde.cluster", "certificates", str(tmp / "tls")],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        self.tls = tmp / "tls"
        self.scheduler = self._start("scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(self.file), *cluster.tls_options(self.tls))
        wait_for(self.file.exists, 120, "the scheduler to start")
        self.address = json.loads(self.file.read_text())["address"]
        self.workers, self.started = [], [self.scheduler]
        self.start_worker()

    def _start(self, *args):
        log = open(self.tmp / f"{args[0]}-{len(list(self.tmp.glob('*.log')))}.log", "w")
        return subprocess.Popen([str(BIN / "dask"), *args], cwd=self.tmp, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self, certified=True):
        """One more worker process (with the cluster's certificate, or without); returns it once it has joined
        (certified) or at once."""
        folder = self.tmp / f"worker-{len(self.started)}"
        folder.mkdir()
        worker = self._start("worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                             "--host", "127.0.0.1", "--local-directory", str(folder),
                             *(cluster.tls_options(self.tls) if certified else []))
        self.started.append(worker)
        if certified:
            self.workers.append(worker)
            live = sum(w.poll() is None for w in self.workers)
            wait_for(lambda: self.count_workers() >= live, 180, f"worker {len(self.workers)} to join")
        return worker

    def count_workers(self):
        from distributed import Client
        with Client(self.address, timeout=30, security=cluster.security(self.tls)) as client:
            return len(client.scheduler_info()["workers"])

    def stop(self):
        everything = family([p.pid for p in self.started])
        for process in self.started:
            process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for proc in everything:           # whatever they started, should it have outlived them
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        return everything


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    cluster = LocalDaskCluster(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.stop()
    time.sleep(1)
    assert not family([p.pid for p in cluster.started]), "processes of the Dask cluster left running"


def test_a_scheduler_without_tls_is_refused_unless_asked_for(tmp_path):
    """Plain tcp: anyone who reaches the port joins as a worker and receives submissions: refused, in seconds,
    saying what to do instead."""
    course = submit_class(tmp_path, "course", {"good": None})
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "autograde.cohort", "toy", "--course", str(course.root),
                           "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not a tls:// address" in done.stderr and "autograde.cluster certificates" in done.stderr, done.stderr
    assert time.time() - start < 30
    with pytest.raises(cluster.InsecureCluster):
        cohort.run("toy", course_root=course.root, quiet=True, scheduler="tcp://127.0.0.1:9")


def test_without_the_certificate_nobody_joins_or_submits(dask_cluster, tmp_path):
    from distributed import Client
    joined = dask_cluster.count_workers()
    stranger = dask_cluster.start_worker(certified=False)
    time.sleep(10)
    assert dask_cluster.count_workers() == joined, "a worker without the cluster's certificate joined"
    stranger.kill()
    with pytest.raises(TypeError, match="TLS expects"):          # no certificate at all: Dask does not connect
        Client(dask_cluster.address, timeout=5)
    other = cluster.make_certificates(tmp_path / "another-authority")
    with pytest.raises((OSError, TimeoutError)):                  # a certificate of another authority: refused
        Client(dask_cluster.address, timeout=10, security=cluster.security(other))
    assert (dask_cluster.tls / cluster.KEY).stat().st_mode & 0o077 == 0, "the key is readable by others"


def cohort_cli(course, *args):
    return subprocess.Popen([sys.executable, "-m", "autograde.cohort", "toy", "--course", str(course.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def merged_lines(output, cases=CASES):
    """student -> how many times the client printed that it merged that student's grades."""
    return {s: sum(line.split()[:2] == ["toy", s] for line in output.splitlines()) for s in cases}


def test_killing_the_client_mid_run_resumes_without_regrading(dask_cluster, tmp_path):
    course = submit_class(tmp_path, "course")
    state = course.root / "grading" / "cohort" / "toy" / "results.json"
    client = cohort_cli(course, "--scheduler", dask_cluster.address, "--tls", str(dask_cluster.tls))
    wait_for(lambda: state.exists() and json.loads(state.read_text()), 300, "a first merged submission")
    client.kill()
    client.communicate()
    merged = json.loads(state.read_text())
    assert 0 < len(merged) < len(CASES), f"the client was not killed mid-run: {sorted(merged)}"
    before = {s: course.scores("toy", s) for s in merged}
    rerun = cohort_cli(course, "--scheduler", dask_cluster.address, "--tls", str(dask_cluster.tls))
    output, _ = rerun.communicate(timeout=600)
    assert f"{len(CASES) - len(merged)} submission(s) to grade" in output, output
    counts = merged_lines(output)
    assert all(counts[s] == 0 for s in merged) and all(counts[s] == 1 for s in CASES if s not in merged), output
    after = json.loads(state.read_text())
    assert set(after) == set(CASES)
    assert all(after[s]["seconds"] == merged[s]["seconds"] for s in merged)     # the saved results, untouched
    assert {s: course.scores("toy", s) for s in merged} == before


def test_a_worker_killed_mid_task_loses_no_grade(dask_cluster, tmp_path):
    """The cluster's one worker holds everything it was sent (the course bundle, the submission) when it is
    killed mid-grading; a worker that joined after the hand-out grades the submission from what the scheduler
    kept. Its 12 MB artifact travels without Dask's large-graph warning."""
    cases = {"good": with_checkpoint_sized_file}
    local = submit_class(tmp_path, "local", cases)
    cohort.run("toy", jobs=1, course_root=local.root, quiet=True)
    course = submit_class(tmp_path, "remote", cases)
    client = cohort_cli(course, "--scheduler", dask_cluster.address, "--tls", str(dask_cluster.tls))

    def busy_worker():                   # the worker running nbgrader for our submission
        for worker in dask_cluster.workers:
            graders = [p for p in family([worker.pid]) if "nbgrader" in " ".join(p.cmdline())]
            if worker.poll() is None and graders:
                return worker, graders
    victim, graders = wait_for(busy_worker, 300, "a worker to start grading")
    dask_cluster.start_worker()
    victim.kill()
    victim.wait()
    output, _ = client.communicate(timeout=600)
    assert client.returncode == 0, output
    assert "large graph" not in output, output
    time.sleep(2)
    assert not [p for p in graders if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], \
        "the killed worker's nbgrader outlived it"
    assert merged_lines(output, cases) == {"good": 1}, output      # merged exactly once
    results = json.loads((course.root / "grading" / "cohort" / "toy" / "results.json").read_text())
    local_results = json.loads((local.root / "grading" / "cohort" / "toy" / "results.json").read_text())
    assert {s: r["status"] for s, r in results.items()} == {s: r["status"] for s, r in local_results.items()}
    assert points({"s": course.scores("toy", "good")}, "s") == points({"s": local.scores("toy", "good")}, "s") \
        == {"test_add": 2, "test_model": 1}
    assert (course.root / "grading" / "autograded" / "good" / "toy" / "toy.ipynb").exists()
