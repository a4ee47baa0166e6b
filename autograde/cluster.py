"""Where the cohort runner's gradings run: Dask distributed, on this machine or on a cluster.

    with connect(jobs=2) as client: ...                               # a LocalCluster in this process, 2 workers
    with connect(scheduler="tcp://10.0.0.5:8786") as client: ...      # an existing Dask cluster (dask-jobqueue...)
    data = pack(folder); unpack(data, other_folder)                   # a folder as bytes, to travel with a task

The local cluster's workers are threads of this process (processes=False): each grading is already a process
of its own (`nbgrader autograde`, its kernel in the sandbox), so worker processes would add only start-up time
and a second place to clean up after Ctrl-C. On a real cluster each `dask worker` is a process on its machine;
its number of threads is how many submissions it grades at once.
"""
import io
import logging
import shutil
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def connect(jobs=1, scheduler=None):
    """A Dask Client: to the scheduler at `scheduler` (tcp://HOST:PORT), or to a LocalCluster of `jobs`
    single-threaded workers in this process, closed on exit."""
    from distributed import Client, LocalCluster
    if scheduler:
        client = Client(scheduler, timeout=60)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=False, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def slots(client):
    """Submissions the cluster grades at once now: its workers' threads (0 while none has joined)."""
    return sum(client.nthreads().values())


def pack(folder, exclude=()):
    """The regular files under `folder` (symlinks and folders named in `exclude` left out) as tar bytes."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and not any(rel.is_relative_to(e) for e in exclude):
                tar.add(path, arcname=rel.as_posix(), recursive=False)
    return buffer.getvalue()


def unpack(data, folder):
    """Write the files of pack()'s bytes under `folder`. pack() writes regular files only, so anything else (a
    link, a device, a name that leads out of `folder`) is refused with ValueError. (Not tarfile's 'data' filter:
    Python 3.11 has it from 3.11.4 on, and Debian 12's Python 3.11 is older.)"""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar:
            target = (folder / member.name).resolve()
            if not member.isreg() or not target.is_relative_to(folder) or target == folder:
                raise ValueError(f"{member.name!r} in a packed submission: only regular files inside it are unpacked")
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


class Progress:
    """A progress bar on stderr: submissions done of the total, how many failed, submissions per minute."""

    def __init__(self, total, enabled=True):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="sub", disable=not enabled or total == 0, dynamic_ncols=True)
        self.start, self.done, self.failed = time.time(), 0, 0

    def update(self, status):
        self.done += 1
        self.failed += status != "graded"
        rate = self.done / max(time.time() - self.start, 1e-9) * 60
        self.bar.set_postfix_str(f"failed {self.failed}, {rate:.1f}/min", refresh=False)
        self.bar.update(1)

    def write(self, text):
        """Print a line above the bar (a plain print would break it)."""
        if self.bar.disable:
            print(text)
        else:
            self.bar.write(text)

    def close(self):
        self.bar.close()
