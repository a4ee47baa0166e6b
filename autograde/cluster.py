"""Where the cohort runner's gradings run: Dask distributed, on this machine or on a cluster.

    with connect(jobs=2) as client: ...                               # a LocalCluster in this process, 2 workers
    with connect(scheduler="tls://10.0.0.5:8786", tls=folder) as client: ...   # an existing Dask cluster
    data = pack(folder); unpack(data, other_folder)                   # a folder as bytes, to travel with a task

A cluster's scheduler, workers and this client speak TLS and prove they hold the course's certificate, made
once by `python -m autograde.cluster certificates FOLDER` (which prints the scheduler's and workers' commands):
whoever reaches the scheduler's port without it can neither join as a worker (and receive submissions) nor
submit work. A plain tcp:// scheduler is refused unless asked for (insecure=True, --insecure-tcp).

The local cluster's workers are threads of this process (processes=False): each grading is already a process
of its own (`nbgrader autograde`, its kernel in the sandbox), so worker processes would add only start-up time
and a second place to clean up after Ctrl-C. On a real cluster each `dask worker` is a process on its machine;
its number of threads is how many submissions it grades at once.
"""
from __future__ import annotations

import argparse
import datetime
import io
import logging
import os
import shutil
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from distributed import Client
    from distributed.security import Security

CA, CERTIFICATE, KEY = "ca.pem", "cluster.pem", "cluster-key.pem"     # the files of a certificates FOLDER


class InsecureCluster(RuntimeError):
    pass


def make_certificates(folder: str | Path, days: int = 365) -> Path:
    """Write a new certificate authority and one certificate (with its key) that it signed into `folder`: the
    scheduler, every worker and the cohort client present that certificate and accept only its authority's.
    The folder is readable by its owner only: whoever holds cluster-key.pem can join the cluster."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
                    signing_key: ec.EllipticCurvePrivateKey, is_ca: bool) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days))
                .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
                .sign(signing_key, hashes.SHA256()))

    authority_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    authority = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compresslab grading cluster authority")])
    member = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compresslab grading cluster")])
    pem = serialization.Encoding.PEM
    (folder / CA).write_bytes(certificate(authority, authority, authority_key.public_key(), authority_key, True)
                              .public_bytes(pem))
    (folder / CERTIFICATE).write_bytes(certificate(member, authority, key.public_key(), authority_key, False)
                                       .public_bytes(pem))
    opened = os.open(folder / KEY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(opened, "wb") as out:
        out.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder


def tls_options(folder: str | Path) -> list[str]:
    """The options of `dask scheduler` and `dask worker` that make them use the certificates in `folder`."""
    folder = Path(folder).resolve()
    return ["--tls-ca-file", str(folder / CA), "--tls-cert", str(folder / CERTIFICATE),
            "--tls-key", str(folder / KEY)]


def security(folder: str | Path) -> Security:
    """Dask's Security for a client of the cluster whose certificates are in `folder` (encryption required)."""
    from distributed.security import Security
    folder = Path(folder)
    missing = [name for name in (CA, CERTIFICATE, KEY) if not (folder / name).is_file()]
    if missing:
        raise InsecureCluster(f"{folder} lacks {', '.join(missing)}: make the cluster's certificates with "
                              f"`python -m autograde.cluster certificates {folder}`")
    return Security(tls_ca_file=str(folder / CA), tls_client_cert=str(folder / CERTIFICATE),
                    tls_client_key=str(folder / KEY), require_encryption=True)


def check_address(scheduler: str, insecure: bool = False) -> None:
    """Refuse a scheduler address without TLS (unless `insecure`): InsecureCluster, saying what to do."""
    if scheduler.startswith("tls://") or insecure:
        return
    raise InsecureCluster(
        f"the scheduler {scheduler} is not a tls:// address: over plain tcp anyone who reaches it can join as a "
        "worker and receive submissions. Make certificates (`python -m autograde.cluster certificates FOLDER`), "
        "start the scheduler and workers with the options it prints, and grade with --scheduler tls://HOST:PORT "
        "--tls FOLDER; or, on a network only the course staff reaches, add --insecure-tcp")


LOW_LEVEL_LOG = "distributed.admin.low-level-log-length"


@contextmanager
def connect(jobs: int = 1, scheduler: str | None = None, tls: str | Path | None = None,
            insecure: bool = False) -> Iterator[Client]:
    """A Dask Client: to the scheduler at `scheduler` (tls://HOST:PORT, with the certificates in the folder `tls`),
    or to a LocalCluster of `jobs` single-threaded workers in this process, closed on exit.
    A tcp:// scheduler only with insecure=True (InsecureCluster otherwise)."""
    import dask
    from distributed import Client, LocalCluster
    # Dask's workers and scheduler keep their last 1,000 events for debugging, and with them each grading task's
    # arguments (a submission's files): in this process, memory that grows with the class. No such log here.
    with dask.config.set({LOW_LEVEL_LOG: 0}):
        if scheduler:
            check_address(scheduler, insecure)
            client = Client(scheduler, timeout=60, security=security(tls) if tls else None)
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


def slots(client: Client) -> int:
    """Submissions the cluster grades at once now: its workers' threads (0 while none has joined)."""
    return sum(client.nthreads().values())


def pack(folder: str | Path, exclude: Iterable[str | Path] = ()) -> bytes:
    """The regular files under `folder` (symlinks and folders named in `exclude` left out) as tar bytes."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and not any(rel.is_relative_to(e) for e in exclude):
                tar.add(path, arcname=rel.as_posix(), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, folder: str | Path) -> None:
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
            source = tar.extractfile(member)
            assert source is not None                   # None only for a member that is not a regular file
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


class Progress:
    """A progress bar on stderr: submissions done of the total, how many failed, submissions per minute."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="sub", disable=not enabled or total == 0, dynamic_ncols=True)
        self.start, self.done, self.failed = time.time(), 0, 0

    def update(self, status: str) -> None:
        self.done += 1
        self.failed += status != "graded"
        rate = self.done / max(time.time() - self.start, 1e-9) * 60
        self.bar.set_postfix_str(f"failed {self.failed}, {rate:.1f}/min", refresh=False)
        self.bar.update(1)

    def write(self, text: str) -> None:
        """Print a line above the bar (a plain print would break it)."""
        if self.bar.disable:
            print(text)
        else:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The grading cluster's TLS certificates.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("certificates", help="make a certificate authority and the cluster's certificate")
    make.add_argument("folder", help="where to write them (readable by you only; copy it to each worker machine)")
    make.add_argument("--days", type=int, default=365, help="how long the certificate is valid (default 365)")
    args = parser.parse_args(argv)
    folder = make_certificates(args.folder, args.days)
    options = " ".join(tls_options(folder))
    quiet = "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH=0"     # see connect(): no log keeping submissions
    print(f"certificates in {folder}; start the cluster with them (the same folder on every machine):\n"
          f"  {quiet} dask scheduler --protocol tls {options}\n"
          f"  {quiet} dask worker tls://SCHEDULER:8786 {options}\n"
          f"and grade with: python -m autograde.cohort ASSIGNMENT --scheduler tls://SCHEDULER:8786 --tls {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
