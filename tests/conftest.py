"""Shared fixtures, each built once per session. The expensive ones:
- `reference_work`: an assignment's release notebooks with the reference solutions filled in, executed in the
  quick profile (with their artifacts);
- `class_course`: the one graded course of the session, the demo class of every assignment. Test modules add
  their own submissions to it (mutants, attacks) and grade only those: the reference and the blank release are
  graded once for all of them."""
import os

import pytest

os.environ.setdefault("LAB_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["LAB_SEED"] = "0"      # the kit's own builds: the seeds the answer keys and CALIBRATION quote


@pytest.fixture(scope="session")
def reference_work(tmp_path_factory):
    """build(assignment) -> folder of its executed reference work (autograde.course.reference_builder)."""
    from autograde.course import reference_builder
    return reference_builder(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def class_course(reference_work, tmp_path_factory):
    """(course root, score table) of `autograde.demo` run on the session's reference work: every assignment
    released, fetched and submitted through nbgrader's exchange by ada (the reference), ben (the blank release),
    cy (a mutant), dee (her own run, late), eve (broken notebooks) and fay (a reordered copy), then collected and
    graded."""
    from autograde import demo
    root = tmp_path_factory.mktemp("class") / "course"
    table = demo.run(root, jobs=2, reuse={a: reference_work(a) for a in demo.assignments()})
    return root, table


def _git_status():
    import subprocess
    from pathlib import Path
    result = subprocess.run(["git", "status", "--porcelain"], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def working_tree_left_as_found():
    """The suite writes only under temporary or git-ignored folders: `git status` is the same after it.

    (It fails the run at its very end, as an error in the teardown of the last test.)
    """
    before = _git_status()
    yield
    after = _git_status()
    assert before is None or after == before, (
        f"the test run changed the repository's files (git status --porcelain):\nbefore:\n{before}\nafter:\n{after}")


# How many `nbgrader autograde` processes the suite starts (printed at its end): grading is the suite's cost.
_AUTOGRADE_RUNS = []


def pytest_sessionstart(session):
    import subprocess
    start = subprocess.Popen.__init__

    def counting(self, args, *rest, **kwargs):
        words = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
        if any(w.endswith("nbgrader") for w in words) and "autograde" in words:
            _AUTOGRADE_RUNS.append(words)
        start(self, args, *rest, **kwargs)
    subprocess.Popen.__init__ = counting


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"nbgrader autograde processes started by the suite: {len(_AUTOGRADE_RUNS)}")


def needs_sandbox():
    """A mark for tests that grade in the sandbox: skipped, saying why, on a machine where it cannot start (user
    namespaces off); under CI (the CI variable set) that is a failure instead, as for the browser test."""
    from autograde import doctor
    problem = doctor.sandbox_problem()
    if problem and os.environ.get("CI"):
        raise RuntimeError(f"CI cannot run the grading sandbox: {problem}")
    return pytest.mark.skipif(problem is not None, reason=problem or "")
