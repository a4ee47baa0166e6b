"""Red-team suite of trusted grading: one hostile submission per known attack class, submitted to
the session's class course (whose demo students are already graded) and graded like a class twice, by
`autograde.cohort` (one run, two workers) and by the course's own `nbgrader autograde kd` (the mission's
command, which nbgrader_config.py points at the same sandbox and referee), then checked from the outside.

Setting: the `kd` assignment. Every submission is the prebuilt reference work (notebook and artifacts,
fixture `reference_work`) with its one unlocked code cell (grade_id `kd_loss`) replaced. An attacker's
`kd_loss` is wrong (tests/redteam/wrong_kd_loss.py: its terms weighted by alpha^2 and 1 - alpha^2,
which the notebook's visible asserts, at alpha 0 and 1, do not see but the hidden check does), followed by the attack: tests/redteam/<attack>.py,
the text a student would type, after tests/redteam/common.py (where an attacker looks for the course, the
kit and the gradebook) for the attacks that need it. Placeholders in those files are filled in here:
__TOKEN__ (this run's random token, as text) and __COURSE__, __REPO__, __ME__, __VICTIM__, __PORT__,
__KIT_LINE__, __CHILD__ (as Python literals); a real attacker could guess the course and kit paths.
So "no points gained" means: test_kd_loss scores 0 and test_kd_student keeps the 3 points the reference
artifacts earn. Attacks on the artifacts keep the honest reference `kd_loss` (4 points) and must lose
test_kd_student.

    victim             the honest reference work: full marks, before and after everything else ran
    honest_wrong       the wrong kd_loss, no attack: scores 0 there and is not reported as tampering
    patch_checks       replaces check_kd_loss with a no-op (module and sys.modules; a fake module if hidden)
    blank_cells        an IPython input transformer empties every later cell that asserts or checks; its
                       kd_loss (tests/redteam/visibly_wrong_kd_loss.py, the cross-entropy alone) fails the
                       notebook's visible asserts, so the referee must report the disagreement
    blank_cells_quiet  the same, each blanked cell writing a line to stderr (which hid the disagreement)
    import_reference   imports autograde.reference's kd_loss when NBGRADER_EXECUTION is set
    patch_torch        right values, wrong gradient, torch.allclose / isclose always true
    read_files         prints the reference, the checks, solutions/, the gradebook, the victim's notebook
    write_files        zeroes the victim / maxes itself in every gradebook, edits a stored test source,
                       truncates the victim's submitted checkpoint, appends a line to the kit's checks
    detached           leaves a process (new session, double fork) that, from 15 s on and once its own
                       grades are merged, rewrites the gradebook every 3 s (full marks for itself, 0 for the
                       victim); the test looks for it right after the run and 20 s later
    network            connects to a TCP listener that this test opens on 127.0.0.1
    html_output        HTML with <script>, JavaScript, SVG with a script: none may be active in feedback
    probe              prints its uid and network interfaces: not root, loopback only
    copycat            honest kd_loss, the victim's artifacts: both flagged in results.json `similar_to`
    relabelled         the scratch student's checkpoint and history passed off as the KD student's
    pickle_checkpoint  student_kd.pt is a pickle whose unpickling would create a file
    fake_sweep         the kd sweep's histories edited to claim 99% accuracy
    missing_sweep      the kd sweep's checkpoints deleted

The defence this suite expects: a bubblewrap sandbox around the student's kernel and a referee
outside it; the cohort's results.json says per student `sandbox: true`, `similar_to: [students]` (identical
or nearly identical checkpoints) and `verdicts_disagree: [grade ids]` (the notebook's own test cell passed
where the referee found what that cell asserts broken). Every submission here but copycat's carries the
reference artifacts, so `similar_to` is only checked to contain copycat / victim. The kit's files are
hashed before and after, and a line the write attack appends to them is taken out again whatever happens.
"""
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import nbformat
import psutil
import pytest
import torch

from autograde import cohort, demo
from autograde.course import REPO, Course, nbgrader_id
from conftest import needs_sandbox

pytestmark = needs_sandbox()

ATTACKS = Path(__file__).parent / "redteam"
ASSIGNMENT = "kd"
COURSE_ID = "compresslab"
KIT = ("autograde", "lib", "solutions", "labs", "nbgrader_config.py")
FULL = {"test_kd_loss": 4, "test_kd_student": 3}
NO_GAIN = {"test_kd_loss": 0, "test_kd_student": 3}        # a wrong kd_loss, the reference artifacts
ARTIFACTS_FAIL = {"test_kd_loss": 4, "test_kd_student": 0}  # the reference kd_loss, bad artifacts
SECONDS_AFTER_THE_RUN = 20     # the detached attack acts from 15 s after it started (during the run) on

# student: (answer, attack file or None, expected auto-graded points or None), in grading order: the victim
# first, so that it is in the course gradebook when the others attack it; write_files last, so that the
# gradebook it damages is copied into no later worker.
STUDENTS = {
    "victim": ("honest", None, FULL),
    "detached": ("wrong", "detached", NO_GAIN),
    "copycat": ("honest", None, None),
    "honest_wrong": ("wrong", None, NO_GAIN),
    "patch_checks": ("wrong", "patch_checks", NO_GAIN),
    "blank_cells": ("visibly_wrong", "blank_cells", NO_GAIN),
    "blank_cells_quiet": ("visibly_wrong", "blank_cells_quiet", NO_GAIN),
    "import_reference": ("wrong", "import_reference", NO_GAIN),
    "patch_torch": (None, "patch_torch", NO_GAIN),
    "read_files": ("wrong", "read_files", NO_GAIN),
    "network": ("wrong", "network", NO_GAIN),
    "html_output": ("wrong", "html_output", NO_GAIN),
    "probe": ("wrong", "probe", NO_GAIN),
    "relabelled": ("honest", None, ARTIFACTS_FAIL),
    "pickle_checkpoint": ("honest", None, ARTIFACTS_FAIL),
    "fake_sweep": ("honest", None, ARTIFACTS_FAIL),
    "missing_sweep": ("honest", None, ARTIFACTS_FAIL),
    "write_files": ("wrong", "write_files", NO_GAIN),
}
NEEDS_COMMON = {"read_files", "write_files", "detached"}

# Text that only the kit's secret files hold (read_files prints them): none may reach a student.
SECRETS = {
    "Hidden checks of the knowledge-distillation assignment": "autograde/checks/kd.py",
    "### BEGIN SOLUTION": "solutions/kd/kd.ipynb",
    "CREATE TABLE": "the gradebook",
}
HIDDEN_TEST_SOURCE = ("BEGIN HIDDEN TESTS", "from autograde.checks", "check_kd_loss(", "check_kd_student(")


# ---------------------------------------------------------------------------------------------- the class

def cell_source(attack, answer, honest, fill):
    """The kd_loss cell of a submission: its answer (honest, wrong, visibly_wrong or None), then its attack."""
    parts = [honest if answer == "honest" else (ATTACKS / f"{answer}_kd_loss.py").read_text() if answer else ""]
    if attack in NEEDS_COMMON:
        parts.append((ATTACKS / "common.py").read_text())
    if attack:
        parts.append((ATTACKS / f"{attack}.py").read_text())
    return fill("\n\n".join(p for p in parts if p))


def set_cell(folder, grade_id, source):
    nb = nbformat.read(folder / f"{ASSIGNMENT}.ipynb", as_version=4)
    cells = [c for c in nb.cells if nbgrader_id(c) == grade_id]
    assert len(cells) == 1, f"no cell {grade_id} in the reference work"
    cells[0].source = source
    nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")


def relabel(artifacts):
    """The scratch student's checkpoint and history as the KD student's, with the KD run's T and alpha."""
    kd = json.loads((artifacts / "student_kd.json").read_text())
    history = json.loads((artifacts / "student_scratch.json").read_text())
    history["config"].update(T=kd["config"]["T"], alpha=kd["config"]["alpha"])
    (artifacts / "student_kd.json").write_text(json.dumps(history))
    shutil.copy(artifacts / "student_scratch.pt", artifacts / "student_kd.pt")


class _Payload:
    """Unpickled, it runs a shell command; torch.load(weights_only=True) refuses it."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def pickle_payload(marker):
    def change(artifacts):
        ckpt = torch.load(artifacts / "student_kd.pt", weights_only=True)
        payload = _Payload(f"touch {shlex.quote(str(marker))}")
        torch.save({"cfg": ckpt["cfg"], "state_dict": payload, "meta": ckpt["meta"]}, artifacts / "student_kd.pt")
    return change


def fake_sweep(artifacts):
    histories = sorted((artifacts / "sweep").glob("*.json"))
    assert histories, "the reference work has no kd sweep histories"
    for path in histories:
        history = json.loads(path.read_text())
        for record in history["records"]:
            record["val_accuracy"] = 99.0
        path.write_text(json.dumps(history))


def missing_sweep(artifacts):
    checkpoints = sorted((artifacts / "sweep").glob("*.pt"))
    assert checkpoints, "the reference work has no kd sweep checkpoints"
    for path in checkpoints:
        path.unlink()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hashes(root, names):
    """{relative path: sha256} of the files under root/<name> (pycache left out)."""
    root, hashes = Path(root), {}
    for name in names:
        top = root / name
        files = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts:
                hashes[str(path.relative_to(root))] = sha256(path)
    return hashes


def undo_kit_line(kit_line):
    """Take the write attack's line out of every kit file that got it; returns those files."""
    undone = []
    for name in KIT:
        top = REPO / name
        for path in ([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                data = path.read_bytes()
                if kit_line.encode() in data:
                    path.write_bytes(data.replace(kit_line.encode(), b""))
                    undone.append(str(path.relative_to(REPO)))
    return undone


def attack_processes(token):
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if token in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def alive(token):
    """The attack's processes still running: pid and the end of their command line."""
    running = []
    for proc in attack_processes(token):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                running.append(f"pid {proc.pid}: ...{' '.join(proc.cmdline())[-60:]!r}")
        except psutil.NoSuchProcess:
            pass
    return running


def kill_attack_processes(token):
    for proc in attack_processes(token):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


class Listener:
    """A TCP listener on 127.0.0.1 (ephemeral port) that records every connection and its first bytes."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(200)
                except OSError:
                    data = b""
            self.connections.append((peer, data))

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def gradebook_cells(db):
    """The stored cells of the assignment (sources, checksums, points): what later gradings restore from."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        sources = con.execute("SELECT name, cell_type, locked, source, checksum FROM source_cell ORDER BY name")
        grade_cells = con.execute("SELECT base_cell.name, grade_cells.max_score, grade_cells.cell_type "
                                  "FROM grade_cells JOIN base_cell ON base_cell.id = grade_cells.id ORDER BY name")
        return sources.fetchall(), grade_cells.fetchall()


def all_grades(course, students):
    """{student: {grade_id: {score, auto, manual, extra, max, code}}} read from the course gradebook (or the
    error that reading it raised, as a string)."""
    from nbgrader.api import Gradebook
    out = {}
    try:
        with Gradebook(course.gradebook_url, course_id=COURSE_ID) as gb:
            for student in students:
                try:
                    submission = gb.find_submission(ASSIGNMENT, student)
                except Exception as error:
                    out[student] = f"{type(error).__name__}: {error}"
                    continue
                out[student] = {g.name: dict(score=g.score, auto=g.auto_score, manual=g.manual_score,
                                             extra=g.extra_credit, max=g.max_score,
                                             code=g.cell.cell_type == "code")
                                for nb in submission.notebooks for g in nb.grades}
    except Exception as error:
        return {student: f"the gradebook is not readable: {type(error).__name__}: {error}" for student in students}
    return out


def points(grades):
    assert isinstance(grades, dict), grades
    return {name: g["score"] for name, g in grades.items() if g["code"]}


def points_or_fail(grades, student):
    assert isinstance(grades, dict), f"{student}: {grades}"
    return grades


def output_text(notebook):
    """Everything the cells of an autograded notebook printed or displayed, as one string."""
    nb = nbformat.read(notebook, as_version=4)
    pieces = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            pieces.append(output.get("text", ""))
            pieces.append(output.get("evalue", ""))
            pieces.extend(output.get("traceback", []))
            for value in output.get("data", {}).values():
                pieces.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(pieces)


def kd_loss_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells if nbgrader_id(c) == "kd_loss" for o in c.get("outputs", []))


@pytest.fixture(scope="module", params=["cohort", "nbgrader"])
def graded(request, class_course, reference_work, tmp_path_factory):
    """The attacks are submitted to the session's class course (tests/conftest.py), whose demo students were
    graded before them: their grades must survive the attacks too. Each check runs for both trusted paths:
    `python -m autograde.cohort kd` (parallel scratch courses, "cohort") and the course's own
    `nbgrader autograde kd` ("nbgrader"), each on fresh copies of the submissions."""
    reference = reference_work(ASSIGNMENT)
    tmp = tmp_path_factory.mktemp(f"red-{request.param}")
    token = secrets.token_hex(6)
    kit_line = f"\n# redteam-{token}: a student's cell appended this line\n"
    private = f"redteam-victim-private-{token}"
    pickle_marker = tmp / f"pickle-ran-{token}"
    course = Course.open(class_course[0])
    listener = Listener()
    honest = next(c.source for c in nbformat.read(reference / f"{ASSIGNMENT}.ipynb", as_version=4).cells
                  if nbgrader_id(c) == "kd_loss")
    child = (ATTACKS / "common.py").read_text() + "\n" + (ATTACKS / "detached_child.py").read_text()

    def filler(student):
        def fill(text):
            for name, value in (("__TOKEN__", token), ("__COURSE__", repr(str(course.root))),
                                ("__REPO__", repr(str(REPO))), ("__ME__", repr(student)),
                                ("__VICTIM__", repr("victim")), ("__PORT__", repr(listener.port)),
                                ("__KIT_LINE__", repr(kit_line))):
                text = text.replace(name, value)
            return text.replace("__CHILD__", repr(fill(child))) if "__CHILD__" in text else text
        return fill

    artifact_changes = {"relabelled": relabel, "pickle_checkpoint": pickle_payload(pickle_marker),
                        "fake_sweep": fake_sweep, "missing_sweep": missing_sweep}
    for student, (answer, attack, _) in STUDENTS.items():
        work = tmp / "work" / student
        shutil.copytree(reference, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        set_cell(work, "kd_loss", cell_source(attack, answer, honest, filler(student)))
        if student == "victim":
            set_cell(work, "answer_transfer", f"The victim's own answer ({private}).")
        if student == "copycat":
            set_cell(work, "answer_transfer", "The copycat's own words.")
            shutil.rmtree(work / "artifacts")
            shutil.copytree(tmp / "work" / "victim" / "artifacts", work / "artifacts")
        if student in artifact_changes:
            artifact_changes[student](work / "artifacts")
        course.submit(student, ASSIGNMENT, work)

    victim_files = course.root / "grading" / "submitted" / "victim" / ASSIGNMENT
    before = dict(kit=tree_hashes(REPO, KIT), victim=tree_hashes(victim_files, ["."]),
                  cells=gradebook_cells(course.root / "grading" / "gradebook.db"),
                  classmates=all_grades(course, demo.STUDENTS))
    out = dict(path=request.param, course=course, token=token, private=private, pickle_marker=pickle_marker,
               before=before)
    try:
        if request.param == "cohort":
            cohort.run(ASSIGNMENT, jobs=2, course_root=course.root, quiet=True, students=list(STUDENTS))
        else:       # every attacker's submission, in one nbgrader process; the classmates are not regraded
            classmates = sorted(p.name for p in course.submitted.iterdir() if p.name not in STUDENTS)
            out["run"] = course.nbgrader("autograde", ASSIGNMENT, "--force",
                                         f"--CourseDirectory.student_id_exclude={','.join(classmates)}",
                                         check=False, timeout=1800)
        out["grades_at_end"] = all_grades(course, STUDENTS)
        out["alive_at_end"] = alive(token)
        time.sleep(SECONDS_AFTER_THE_RUN)
        out["grades"] = all_grades(course, STUDENTS)
        out["classmates"] = all_grades(course, demo.STUDENTS)
        out["alive"] = alive(token)
        out["kit"] = tree_hashes(REPO, KIT)
        out["victim"] = tree_hashes(victim_files, ["."])
        out["cells"] = gradebook_cells(course.root / "grading" / "gradebook.db")
    finally:
        kill_attack_processes(token)
        out["kit_line_in"] = undo_kit_line(kit_line)
        listener.close()
    out["connections"] = listener.connections
    if request.param == "cohort":
        state = course.root / "grading" / "cohort" / ASSIGNMENT / "results.json"
        out["results"] = {s: r for s, r in json.loads(state.read_text()).items() if s in STUDENTS}   # this run's
    out["feedback_run"] = course.nbgrader("generate_feedback", ASSIGNMENT, check=False)
    yield out
    kill_attack_processes(token)
    undo_kit_line(kit_line)


def feedback(graded, student):
    path = graded["course"].root / "grading" / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert path.exists(), f"no feedback for {student}: {graded['feedback_run'].stderr[-2000:]}"
    return path.read_text(errors="replace")


def autograded(graded, student):
    path = graded["course"].root / "grading" / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert path.exists(), f"no autograded notebook for {student}"
    return path


# ---------------------------------------------------------------------------------------------- the checks

def test_the_secrets_looked_for_are_in_the_kit():
    """Each text the leak checks look for is really in the secret file it stands for (else they prove nothing)."""
    files = {"autograde/checks/kd.py": REPO / "autograde" / "checks" / "kd.py",
             "solutions/kd/kd.ipynb": REPO / "solutions" / "kd" / "kd.ipynb"}
    for text, where in SECRETS.items():
        if where in files:
            assert text in files[where].read_text(), f"{where} no longer holds {text!r}: update SECRETS"


def cohort_flags(graded):
    """results.json of the cohort run: the flags only the cohort runner writes (plain nbgrader has none)."""
    if graded["path"] != "cohort":
        pytest.skip("a flag of the cohort runner's results.json: plain `nbgrader autograde` writes none")
    return graded["results"]


def test_every_submission_was_graded_in_the_sandbox(graded):
    if graded["path"] == "nbgrader":        # the sandbox itself: test_the_kernel_is_not_root_and_sees_only_loopback
        run = graded["run"]
        assert run.returncode == 0, f"nbgrader autograde failed: {run.stderr[-3000:]}"
        for student in STUDENTS:
            autograded(graded, student)
        return
    results = graded["results"]
    assert set(results) == set(STUDENTS)
    not_graded = {s: (r["status"], r.get("problems")) for s, r in results.items() if r["status"] != "graded"}
    assert not not_graded, f"not graded: {not_graded}"
    unsandboxed = {s: r.get("sandbox", "(no 'sandbox' entry)") for s, r in results.items()
                   if r.get("sandbox") is not True}
    assert not unsandboxed, f"results.json does not record a sandboxed grading for {unsandboxed}"


@pytest.mark.parametrize("student", [s for s, (_, _, expected) in STUDENTS.items() if expected and s != "victim"])
def test_the_attack_gains_no_points(graded, student):
    expected = STUDENTS[student][2]
    got = points(graded["grades"][student])
    assert got == expected, (f"{student} ({STUDENTS[student][1] or 'its artifacts'}): expected {expected}, "
                             f"the gradebook says {got} after the run and the wait")


def test_the_victim_keeps_full_marks(graded):
    at_end, after = points(graded["grades_at_end"]["victim"]), points(graded["grades"]["victim"])
    assert at_end == FULL, f"right after the run the victim has {at_end}, not full marks {FULL}"
    assert after == FULL, f"{SECONDS_AFTER_THE_RUN} s after the run the victim has {after}, not full marks {FULL}"


def test_classmates_graded_before_the_attacks_keep_their_grades(graded):
    """The demo class was graded before the attackers: an attack on the gradebook would show on them too."""
    before, after = graded["before"]["classmates"], graded["classmates"]
    assert all(isinstance(g, dict) and g for g in before.values()), f"the class was not graded: {before}"
    changed = {student: (before[student], after[student]) for student in before if after[student] != before[student]}
    assert not changed, f"grades of students graded before the attacks changed (before, after): {changed}"


def test_nobody_has_a_manual_score_or_extra_credit(graded):
    """Nobody was graded by hand here: a manual score or extra credit in the gradebook was written by a student."""
    written = {(student, name): (g["manual"], g["extra"]) for student, grades in graded["grades"].items()
               for name, g in points_or_fail(grades, student).items() if g["manual"] is not None or g["extra"]}
    assert not written, f"manual scores / extra credit (manual, extra) nobody gave: {written}"


def test_the_victims_submitted_files_are_unchanged(graded):
    before, after = graded["before"]["victim"], graded["victim"]
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"files of grading/submitted/victim/kd changed by the run: {changed}"


def test_the_kits_files_are_unchanged(graded):
    before, after = graded["before"]["kit"], graded["kit"]
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not graded["kit_line_in"], (f"the write attack appended to the kit's {graded['kit_line_in']} "
                                       "(taken out again)")
    assert not changed, (f"kit files changed during the run: {changed} (if you edited them meanwhile, "
                         "run the suite again)")


def test_the_gradebooks_stored_cells_are_unchanged(graded):
    sources_before, cells_before = graded["before"]["cells"]
    sources_after, cells_after = graded["cells"]
    assert cells_after == cells_before, "the gradebook's grade cells (points) changed"
    changed = [a[0] for a, b in zip(sources_after, sources_before) if a != b]
    assert sources_after == sources_before, f"the gradebook's stored sources changed: {changed}"


def test_no_attack_process_outlives_grading(graded):
    assert not graded["alive_at_end"], f"processes started by a submission outlive the run: {graded['alive_at_end']}"
    assert not graded["alive"], (f"{SECONDS_AFTER_THE_RUN} s after the run, processes started by a submission "
                                 f"are still running: {graded['alive']}")


def test_the_loopback_listener_got_no_connection(graded):
    assert graded["connections"] == [], f"a submission reached the grader's loopback: {graded['connections']}"


def test_the_kernel_is_not_root_and_sees_only_loopback(graded):
    printed = kd_loss_outputs(autograded(graded, "probe"))
    found = re.search(r"redteam-probe (\{.*\})", printed)
    assert found, f"the probe's output is not in its autograded notebook: {printed[-1000:]!r}"
    probe = json.loads(found.group(1))
    assert probe["uid"] != 0 and probe["euid"] != 0, f"the kernel runs as root: {probe}"
    assert probe["interfaces"] == ["lo"], f"the kernel sees network interfaces {probe['interfaces']}, not only lo"
    assert probe["sys_class_net"] in (None, ["lo"]), f"/sys/class/net in the kernel: {probe['sys_class_net']}"


def test_files_outside_the_submission_do_not_reach_the_student(graded):
    html, printed = feedback(graded, "read_files"), output_text(autograded(graded, "read_files"))
    leaks = {where: text for text, where in SECRETS.items() if text in html or text in printed}
    if graded["private"] in html or graded["private"] in printed:
        leaks["the victim's submitted notebook"] = graded["private"]
    assert not leaks, f"read_files got into its feedback or its notebook's outputs: {leaks}"


def test_no_one_elses_work_is_in_anyones_feedback(graded):
    leaking = [s for s in STUDENTS if s != "victim" and graded["private"] in feedback(graded, s)]
    assert not leaking, f"the victim's private answer is in the feedback of {leaking}"


def test_no_feedback_shows_hidden_test_source(graded):
    shown = {s: [t for t in HIDDEN_TEST_SOURCE if t in feedback(graded, s)] for s in STUDENTS}
    shown = {s: found for s, found in shown.items() if found}
    assert not shown, f"hidden-test source in the feedback: {shown}"


def test_no_active_html_or_javascript_from_outputs_in_feedback(graded):
    html = feedback(graded, "html_output")
    # Escaped text (the cell's source, a sanitised output) is fine: only real tags and script bodies count.
    scripts = [s for s in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S | re.I) if "redteam_token" in s]
    tags = [t for t in re.findall(r"<[a-zA-Z][^<>]*>", html) if "redteam" in t]
    assert not scripts, f"the feedback runs the student's scripts: {[s[:200] for s in scripts]}"
    assert not tags, f"the feedback holds the student's active markup: {tags[:5]}"


def test_copied_artifacts_are_flagged(graded):
    results = cohort_flags(graded)
    assert "victim" in results["copycat"].get("similar_to", []), (
        f"copycat submitted the victim's artifacts; results.json says {results['copycat'].get('similar_to')}")
    assert "copycat" in results["victim"].get("similar_to", []), (
        f"the victim's artifacts were copied by copycat; results.json says {results['victim'].get('similar_to')}")


def test_the_pickle_payload_never_ran(graded):
    assert not graded["pickle_marker"].exists(), "a submitted checkpoint was unpickled with code execution"


@pytest.mark.parametrize("student", ["blank_cells", "blank_cells_quiet"])
def test_tampering_is_reported_as_disagreeing_verdicts(graded, student):
    """Also when the blanked test cell writes to stderr (blank_cells_quiet): the own test's verdict is whether it
    raised, not whether the student's process wrote to a stream."""
    flagged = cohort_flags(graded)[student].get("verdicts_disagree")
    assert flagged == ["test_kd_loss"], (
        f"{student} emptied its test cells (its notebook's test_kd_loss passed, though its kd_loss breaks what "
        f"that test asserts): results.json says verdicts_disagree = {flagged}")


@pytest.mark.parametrize("student", ["victim", "honest_wrong"])
def test_honest_work_is_not_reported_as_tampering(graded, student):
    flagged = cohort_flags(graded)[student].get("verdicts_disagree")
    assert not flagged, f"{student} tampered with nothing, yet verdicts_disagree = {flagged}"


def test_feedback_is_generated_for_everyone(graded):
    run = graded["feedback_run"]
    assert run.returncode == 0, f"generate_feedback failed: {run.stderr[-2000:]}"
    for student in STUDENTS:
        feedback(graded, student)
