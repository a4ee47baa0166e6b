"""Cohort grading with real nbgrader: broken submissions never stop or corrupt the others.

A small assignment written here ("toy": one TODO, one test cell for it, one test cell that loads a
checkpoint with lib) is graded for a class of students, each breaking something else, in one parallel
run of autograde.cohort. Each case is its own test below.
"""
import html.parser
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from traitlets.config import Config

from autograde import cohort
from autograde.cohort import prepare, schedule, task
from autograde.cohort.gradebook import place_notebooks
from autograde.cohort.results import Result
from autograde.course import Course
from lib.checkpoint import save_checkpoint
from lib.models import VGG

CFG = [4, 'M', 4, 'M', 4, 'M', 4, 'M']


def cell(kind, grade_id, source, grade=False, solution=False, points=0):
    make = new_code_cell if kind == "code" else new_markdown_cell
    c = make(source)
    c.metadata["nbgrader"] = {"grade_id": grade_id, "grade": grade, "solution": solution,
                              "locked": not solution, "schema_version": 3}
    if grade:
        c.metadata["nbgrader"]["points"] = points
    return c


def toy_source():
    return new_notebook(cells=[
        cell("markdown", "intro", "# Toy assignment"),
        cell("code", "setup", "import torch\nfrom lib.models import VGG\nfrom lib.checkpoint import load_into"),
        cell("code", "add", "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
             solution=True),
        cell("code", "test_add", "assert add(1, 2) == 3\nassert add(-1, 1) == 0", grade=True, points=2),
        cell("code", "test_model",
             f"model = VGG({CFG!r}, num_classes=2)\nload_into(model, 'artifacts/model.pt')\n"
             "assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)", grade=True, points=1),
        cell("markdown", "why", "Why?\n\n=== BEGIN MARK SCHEME ===\nAnything.\n=== END MARK SCHEME ===",
             grade=True, solution=True, points=1),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def good_work(folder):
    nb = toy_source()
    nb.cells[2].source = "def add(a, b):\n    return a + b"
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "toy.ipynb")
    torch.manual_seed(0)
    save_checkpoint(folder / "artifacts" / "model.pt", VGG(CFG, num_classes=2))
    return folder


def with_answer(code):
    def change(folder):
        nb = nbformat.read(folder / "toy.ipynb", as_version=4)
        nb.cells[2].source = code
        nbformat.write(nb, folder / "toy.ipynb")
    return change


def edit_cells(edit):
    def change(folder):
        nb = nbformat.read(folder / "toy.ipynb", as_version=4)
        nb.cells = edit(nb.cells)
        nbformat.write(nb, folder / "toy.ipynb")
    return change


def corrupt_json(folder):
    text = (folder / "toy.ipynb").read_text()
    (folder / "toy.ipynb").write_text(text[:200])


def rename_test_add(cells):
    cells[3].metadata["nbgrader"]["grade_id"] = "my_test"
    return cells


def edit_locked(cells):
    cells[3].source = "pass  # the student 'fixed' the test"
    return cells


def wrong_architecture(folder):
    save_checkpoint(folder / "artifacts" / "model.pt", VGG([8, 'M', 8, 'M', 8, 'M', 8, 'M'], num_classes=2))


def huge_file(folder):
    with open(folder / "artifacts" / "huge.bin", "wb") as f:    # sparse: 2 GB, no disk used
        f.truncate(2 * 10**9)


def foreign_nbgrader_metadata(cells):
    """Two extra cells whose "nbgrader" metadata nbformat accepts and nbgrader's code would choke on."""
    return cells + [new_code_cell("x = 1", metadata={"nbgrader": "x"}),
                    new_code_cell("y = 2", metadata={"nbgrader": {"grade_id": ["test_add"]}})]


def lone_surrogate(folder):
    """Valid JSON that Python reads (a lone surrogate, escaped) but cannot write back as UTF-8."""
    text = (folder / "toy.ipynb").read_text()
    (folder / "toy.ipynb").write_text(text.replace('"# Toy assignment"', '"# Toy \\udcff assignment"'))


def too_many_objects(folder):
    """A 3 MB notebook of 1.2 million empty objects in one cell's metadata (nbformat would need ~1.7 GB)."""
    nb = json.loads((folder / "toy.ipynb").read_text())
    nb["cells"][0]["metadata"]["x"] = [{}] * 1_200_000
    (folder / "toy.ipynb").write_text(json.dumps(nb))


def hostile_manifest(folder):
    """A manifest.json naming files outside the submission, one that cannot be read, and a name that moves the
    TA's terminal cursor."""
    files = {"/proc/self/mem": {"bytes": 0, "sha256": "0" * 64},
             "../../../../../../../../etc/hostname": {"bytes": 1, "sha256": "0" * 64},
             "\x1b[1A\x1b[2K\udcff": {"bytes": 1, "sha256": "0" * 64}}
    (folder / "manifest.json").write_text(json.dumps({"assignment": "toy", "files": files}))


HOSTILE_NAME = "[x](javascript:alert(1)) <img src=x onerror=alert(2)>.png"
HOSTILE_ANSWER = ("Pruning <img src=x onerror=alert(3)> [see](javascript:alert(4)) <iframe src=javascript:alert(5)>"
                  "</iframe><script>alert(6)</script><svg onload=alert(7)></svg> <a href=x onclick=alert(8)>y</a>")


def hostile_markup(folder):
    """Script in a written answer, and in a file name the grader's message repeats (a file over the size limit,
    sparse: no disk used)."""
    nb = nbformat.read(folder / "toy.ipynb", as_version=4)
    nb.cells[5].source = HOSTILE_ANSWER
    nbformat.write(nb, folder / "toy.ipynb")
    with open(folder / "artifacts" / HOSTILE_NAME, "wb") as f:
        f.truncate(2 * 10**9)


CASES = {
    "good": None,
    "hostile_markup": hostile_markup,
    "foreign_metadata": edit_cells(foreign_nbgrader_metadata),
    "lone_surrogate": lone_surrogate,
    "too_many_objects": too_many_objects,
    "hostile_manifest": hostile_manifest,
    "infinite_loop": with_answer("while True:\n    pass"),
    "memory_bomb": with_answer("hog = bytearray(6 * 2**30)\ndef add(a, b):\n    return a + b"),
    "crash": with_answer("import os\nos._exit(1)"),
    # over the bounds of each grading (autograde.sandbox.Bounds, set below): stopped, with a message
    "many_processes": with_answer("import os, time\nfor _ in range(300):\n    if os.fork() == 0:\n"
                                  "        time.sleep(60)\n        os._exit(0)\ntime.sleep(60)"),
    # held for a while, as memory a notebook uses is: the watchdog samples 5 times a second, and a mapping
    # touched in a second and dropped when the notebook ends a moment later could fall between two samples
    "shared_memory": with_answer("import mmap, time\nshared = mmap.mmap(-1, 3 * 2**30, flags=mmap.MAP_SHARED)\n"
                                 "for at in range(0, len(shared), 4096):\n    shared[at] = 1\ntime.sleep(30)"),
    "disk_filler": with_answer("with open('filler.bin', 'wb') as out:\n    for _ in range(3 * 2**30 // 2**24):\n"
                               "        out.write(bytes(2**24))"),
    "syntax_error": with_answer("def add(a, b)\n    return a + b"),
    "corrupt_json": corrupt_json,
    "deleted_cell": edit_cells(lambda cells: cells[:4] + cells[5:]),
    "deleted_answer": edit_cells(lambda cells: cells[:2] + cells[3:]),       # after a locked cell: nbgrader crashed
    "duplicated_cell": edit_cells(lambda cells: cells[:4] + [cells[3]] + cells[4:]),
    "renamed_cell": edit_cells(rename_test_add),
    "edited_locked_cell": edit_cells(edit_locked),
    "missing_artifacts": lambda folder: shutil.rmtree(folder / "artifacts"),
    "wrong_architecture": wrong_architecture,
    "huge_file": huge_file,
}


def toy_course(tmp, cell_timeout):
    """A course under `tmp` whose only assignment is the toy one, generated; cells stop after `cell_timeout` s."""
    (tmp / "solutions" / "toy").mkdir(parents=True)
    nbformat.write(toy_source(), tmp / "solutions" / "toy" / "toy.ipynb")
    course = Course(tmp / "course", solutions=tmp / "solutions", extra_config={"Execute.timeout": cell_timeout})
    course.generate("toy")
    return course


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    course = toy_course(tmp, cell_timeout=20)
    for student, change in CASES.items():
        work = good_work(tmp / "work" / student)
        if change is not None:
            change(work)
        course.submit(student, "toy", work)
    from nbgrader.api import Gradebook
    opening = Gradebook.__init__

    def counted(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():   # the client's, not a local worker's
            CLIENT_GRADEBOOK_OPENS.append(args[0] if args else kwargs.get("db_url"))
        opening(self, *args, **kwargs)
    Gradebook.__init__ = counted
    try:
        results = cohort.run("toy", jobs=2, timeout=120, memory_gb=3, processes=64, disk_gb=1,
                             course_root=course.root, quiet=True)
    finally:
        Gradebook.__init__ = opening
    scores = {s: course.scores("toy", s) for s in CASES}
    return course, results, scores


CLIENT_GRADEBOOK_OPENS = []    # the gradebooks the client opened while `graded` graded the class


def test_the_client_opens_the_gradebook_once_per_run_not_per_submission(graded):
    """Opening nbgrader's gradebook runs its schema check (about half a second): the client, the single writer,
    opens it to check the assignment and once more to write every result, whatever the size of the class."""
    assert len(CASES) >= 10
    assert len(CLIENT_GRADEBOOK_OPENS) <= 2, CLIENT_GRADEBOOK_OPENS


def points(scores, student):
    return {name: score for (_, name), (score, _) in scores[student].items()}


def message(course, student):
    nb = nbformat.read(course.root / "grading" / "autograded" / student / "toy" / "toy.ipynb", as_version=4)
    first = nb.cells[0].source
    return first if first.startswith("<p><strong>Message from the grader</strong></p>") else ""


def test_good_submission_gets_full_marks(graded):
    _, results, scores = graded
    assert results["good"].status == "graded"
    assert points(scores, "good") == {"test_add": 2, "test_model": 1}


def test_every_submission_is_in_the_gradebook(graded):
    _, results, scores = graded
    assert set(results) == set(CASES)
    assert all(set(points(scores, s)) == {"test_add", "test_model"} for s in CASES)


@pytest.mark.parametrize("student", ["infinite_loop", "memory_bomb", "syntax_error"])
def test_a_broken_answer_scores_zero_only_where_it_breaks(graded, student):
    course, results, scores = graded
    assert results[student].status == "graded"
    assert points(scores, student) == {"test_add": 0, "test_model": 1}
    # The feedback shows the student why: the error is in the answer cell's output.
    nb = nbformat.read(course.root / "grading" / "autograded" / student / "toy" / "toy.ipynb", as_version=4)
    errors = [o.ename for o in nb.cells[2].outputs if o.output_type == "error"]
    expected = {"infinite_loop": "CellTimeoutError", "memory_bomb": "MemoryError", "syntax_error": "SyntaxError"}
    assert expected[student] in errors, errors


def test_a_crashing_kernel_scores_zero_with_a_message(graded):
    course, results, scores = graded
    assert points(scores, "crash") == {"test_add": 0, "test_model": 0}
    assert results["crash"].status == "failed"                # the kernel died: nbgrader gave up on the notebook
    assert "toy.ipynb was not graded: nbgrader could not grade it" in message(course, "crash")
    assert "Kernel died" in message(course, "crash")


@pytest.mark.parametrize("student, what", [("many_processes", "processes at once, over the bound of 64"),
                                           ("shared_memory", "GiB of memory (private and shared), over the bound"),
                                           ("disk_filler", "GiB to disk, over the bound of 1.00 GiB")])
def test_a_grading_over_its_bounds_is_stopped_with_a_message(graded, student, what):
    """A kernel that forks 300 processes, maps 3 GiB of shared memory (which RLIMIT_DATA does not count) or
    writes 3 GiB is stopped at its bound; the notebook scores zero and the message says which bound."""
    course, results, scores = graded
    assert results[student].status == "failed"
    assert points(scores, student) == {"test_add": 0, "test_model": 0}
    said = message(course, student)
    assert "the grader stopped this notebook" in said and what in said, said


def test_corrupt_notebook_scores_zero_with_a_message(graded):
    course, results, scores = graded
    assert results["corrupt_json"].status == "failed"
    assert points(scores, "corrupt_json") == {"test_add": 0, "test_model": 0}
    assert "is not a readable notebook" in message(course, "corrupt_json")


def test_foreign_nbgrader_metadata_is_dropped_with_a_message(graded):
    course, results, scores = graded
    assert points(scores, "foreign_metadata") == {"test_add": 2, "test_model": 1}
    assert "nbgrader metadata is not nbgrader's" in message(course, "foreign_metadata")


@pytest.mark.parametrize("student, why", [("lone_surrogate", "UnicodeEncodeError"),
                                          ("too_many_objects", "JSON objects and arrays, over the")])
def test_a_notebook_the_grader_cannot_handle_scores_zero_with_a_message(graded, student, why):
    course, results, scores = graded
    assert results[student].status == "failed"
    assert points(scores, student) == {"test_add": 0, "test_model": 0}
    assert "is not a readable notebook" in message(course, student) and why in message(course, student)


def test_a_manifest_reads_nothing_outside_the_submission(graded):
    course, results, scores = graded
    assert points(scores, "hostile_manifest") == {"test_add": 2, "test_model": 1}
    mismatch = results["hostile_manifest"].manifest_mismatch
    assert "/proc/self/mem is listed in manifest.json but missing from the submission" in mismatch
    assert "../../../../../../../../etc/hostname is listed in manifest.json but missing from the submission" in mismatch
    text = message(course, "hostile_manifest")
    assert "\\x1b[1A\\x1b[2K\\udcff is listed" in text and "\x1b" not in text     # escaped in the feedback


def test_student_text_reaches_the_console_escaped():
    assert cohort.printable("a\x1b[1A\x1b[2Kb\nc\td\udcff") == "a\\x1b[1A\\x1b[2Kb\nc\td\\udcff"


def test_feedback_never_falls_back_to_the_source_notebook(tmp_path):
    """Without a released notebook, the feedback of an ungraded notebook is an empty one, never the source,
    which holds the solutions."""
    course = toy_course(tmp_path, cell_timeout=20)
    (course.release / "toy" / "toy.ipynb").unlink()
    place_notebooks(course, "toy", Result("ann", problems={"(files)": ["no notebook"]}),
                            tmp_path / "nothing graded")
    text = (course.autograded / "ann" / "toy" / "toy.ipynb").read_text()
    assert "no notebook" in text and "return a + b" not in text and "BEGIN SOLUTION" not in text


def test_deleted_grade_cell_is_put_back_and_graded(graded):
    course, results, scores = graded
    assert points(scores, "deleted_cell") == {"test_add": 2, "test_model": 1}
    assert "cell 'test_model' was missing: the released cell was put back" in message(course, "deleted_cell")
    # a deleted answer cell that follows a locked cell (nbgrader's own put-back crashed there: KeyError, all zero)
    assert results["deleted_answer"].status == "graded"
    assert points(scores, "deleted_answer") == {"test_add": 0, "test_model": 1}
    assert "cell 'add' was missing: the released cell was put back" in message(course, "deleted_answer")


def test_duplicated_grade_cell_is_graded_once_with_a_message(graded):
    course, _, scores = graded
    assert points(scores, "duplicated_cell") == {"test_add": 2, "test_model": 1}
    assert "appears more than once" in message(course, "duplicated_cell")


def test_renamed_cell_id_gets_the_original_cell_back(graded):
    course, _, scores = graded
    assert points(scores, "renamed_cell") == {"test_add": 2, "test_model": 1}
    assert "'my_test' is not one of this notebook's cells" in message(course, "renamed_cell")


def test_an_edited_locked_cell_is_restored_before_grading(graded):
    _, _, scores = graded
    assert points(scores, "edited_locked_cell") == {"test_add": 2, "test_model": 1}


@pytest.mark.parametrize("student", ["missing_artifacts", "wrong_architecture"])
def test_bad_artifacts_score_zero_on_the_cell_that_loads_them(graded, student):
    course, _, scores = graded
    assert points(scores, student) == {"test_add": 2, "test_model": 0}
    nb = nbformat.read(course.root / "grading" / "autograded" / student / "toy" / "toy.ipynb", as_version=4)
    error = "\n".join(o.get("evalue", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    expected = "no such checkpoint file" if student == "missing_artifacts" else "was saved from a model with cfg"
    assert expected in error


def test_a_huge_file_is_left_out_with_a_message(graded):
    course, _, scores = graded
    assert points(scores, "huge_file") == {"test_add": 2, "test_model": 1}
    assert "over the 200 MB limit" in message(course, "huge_file")
    assert not (course.root / "grading" / "autograded" / "huge_file" / "toy" / "artifacts" / "huge.bin").exists()


def test_wall_clock_limit_and_resume(graded, tmp_path, monkeypatch):
    course, _, _ = graded
    graded_now = []                                   # the submissions this process hands to nbgrader
    grade_one = task.grade_one
    monkeypatch.setattr(task, "grade_one", lambda course, assignment, student, *args: (
        graded_now.append(student), grade_one(course, assignment, student, *args))[1])
    # Resume: a second run finds everyone done and grades nobody.
    again = cohort.run("toy", jobs=1, course_root=course.root, quiet=True)
    assert set(again) == set(CASES) and graded_now == []
    # A submission over the per-submission time limit is stopped, scores zero and says why.
    state = course.root / "grading" / "cohort" / "toy" / "results.json"
    results = json.loads(state.read_text())
    del results["infinite_loop"]
    state.write_text(json.dumps(results))
    temp = Path(tempfile.mkdtemp(prefix="clt-"))       # the temporary folder of this run and what it starts
    monkeypatch.setenv("TMPDIR", str(temp))             # (short: the kernel's sockets are files in it)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    try:
        rerun = cohort.run("toy", jobs=1, timeout=8, course_root=course.root, quiet=True)
        assert not list(temp.rglob("clbox-*"))          # the killed grading's box is gone too
    finally:
        shutil.rmtree(temp)
    assert graded_now == ["infinite_loop"]              # only the one taken out of the saved progress
    assert rerun["infinite_loop"].status == "timeout"
    assert points({"s": course.scores("toy", "infinite_loop")}, "s") == {"test_add": 0, "test_model": 0}
    assert "8 s limit per submission" in message(course, "infinite_loop")
    assert points({"s": course.scores("toy", "good")}, "s") == {"test_add": 2, "test_model": 1}


def test_feedback_is_generated_for_everyone(graded):
    course, _, _ = graded
    course.nbgrader("generate_feedback", "toy", "--force")
    for student in CASES:
        html = course.root / "grading" / "feedback" / student / "toy" / "toy.html"
        assert html.exists(), student
    assert "is not a readable notebook" in (course.root / "grading" / "feedback" / "corrupt_json" / "toy" /
                                            "toy.html").read_text()
    assert os.path.getsize(course.root / "grading" / "gradebook.db") > 0


def test_every_unreadable_notebook_of_a_submission_is_reported(tmp_path):
    """A two-notebook assignment whose both notebooks are corrupt: both score zero, both are named."""
    def notebook(name):
        return new_notebook(cells=[cell("code", f"test_{name}", "assert True", grade=True, points=1)],
                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                     "language": "python"}})
    (tmp_path / "solutions" / "pair").mkdir(parents=True)
    for name in ("one", "two"):
        nbformat.write(notebook(name), tmp_path / "solutions" / "pair" / f"{name}.ipynb")
    course = Course(tmp_path / "course", solutions=tmp_path / "solutions")
    course.generate("pair")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("one", "two"):
        (work / f"{name}.ipynb").write_text('{"cells": [')
    course.submit("broken", "pair", work)
    results = cohort.run("pair", course_root=course.root, quiet=True)
    assert results["broken"].status == "failed"
    assert set(results["broken"].problems) == {"one", "two"}
    assert all(len(notes) == 1 and "is not a readable notebook" in notes[0]   # one message each, the cause
               for notes in results["broken"].problems.values()), results["broken"].problems
    assert points({"s": course.scores("pair", "broken")}, "s") == {"test_one": 0, "test_two": 0}


def test_ctrl_c_stops_every_worker_and_keeps_the_progress(tmp_path):
    """SIGINT to `python -m autograde.cohort`: it exits at once, no nbgrader or kernel is left running, and
    nothing half-graded is recorded (a rerun grades those submissions again)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil
    course = toy_course(tmp_path, cell_timeout=120)
    for student in ("loop_a", "loop_b"):
        work = good_work(tmp_path / "work" / student)
        with_answer("while True:\n    pass")(work)
        course.submit(student, "toy", work)
    # A TA's terminal gives the command SIGINT's default action; under `make` or a background job (CI) the
    # suite itself may have inherited SIGINT as ignored, which a child would inherit too.
    cohort_cli = subprocess.Popen([sys.executable, "-m", "autograde.cohort", "toy", "-j", "2",
                                   "--course", str(course.root)], start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    family = []
    for _ in range(360):                       # wait (up to 3 min on a loaded machine) for both kernels
        family = psutil.Process(cohort_cli.pid).children(recursive=True)
        if sum("ipykernel" in " ".join(p.cmdline()) for p in family if p.is_running()) >= 2:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the two kernels never started")
    started = time.time()
    cohort_cli.send_signal(signal.SIGINT)
    output, _ = cohort_cli.communicate(timeout=30)
    assert cohort_cli.returncode == 130, output
    assert time.time() - started < 15
    time.sleep(1)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "left running"
    assert "run the command again to resume" in output
    state = course.root / "grading" / "cohort" / "toy" / "results.json"
    assert not state.exists() or json.loads(state.read_text()) == {}


# ---------------------------------------------------------------------------------------------------------
# What a submission brings into the grader's own process (the client, which has no memory limit).

def test_a_fifo_in_a_submission_blocks_no_one(tmp_path):
    """A FIFO named toy.ipynb (or any special file) is refused with a message; reading it blocked the cohort
    run forever, the classmates included."""
    course = toy_course(tmp_path, cell_timeout=20)
    work = good_work(tmp_path / "work" / "fifo")
    (work / "toy.ipynb").unlink()
    os.mkfifo(work / "toy.ipynb")
    os.mkfifo(work / "artifacts" / "model2.pt")
    found = {}
    worker = threading.Thread(target=lambda: found.update(
        cohort.prepare_submission(course, "toy", work, tmp_path / "staging")), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():                      # unblock the reader, then fail
        os.close(os.open(work / "toy.ipynb", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("prepare_submission blocked on a FIFO")
    assert found == {"(files)": ["toy.ipynb is not a regular file (a FIFO, socket or device): it was not read",
                                 "artifacts/model2.pt is not a regular file (a FIFO, socket or device): it was not "
                                 "read"]}
    assert sorted(p.name for p in (tmp_path / "staging").rglob("*")) == ["artifacts", "model.pt"]


def test_a_submission_too_large_in_all_is_cut_after_its_notebooks(tmp_path, monkeypatch):
    """Files each under the per-file limit but over the cap in all (2 GB of them took the client from 1.8 to 7.3
    GiB): the notebooks are kept, the files past the cap are not read, and the message says so."""
    monkeypatch.setattr(prepare, "MAX_SUBMISSION_BYTES", 3 * 10**6)
    course = toy_course(tmp_path, cell_timeout=20)
    work = good_work(tmp_path / "work" / "bulky")
    for i in range(6):
        (work / "artifacts" / f"bulk{i}.bin").write_bytes(b"\0" * 10**6)
    problems = cohort.prepare_submission(course, "toy", work, tmp_path / "staging")
    assert problems == {"(files)": ["the submission holds more than 0.003 GB or 5000 files in all: "
                                    "artifacts/bulk2.bin and the files after it were not graded"]}, problems
    kept = sorted(p.relative_to(tmp_path / "staging").as_posix() for p in (tmp_path / "staging").rglob("*.*"))
    assert kept == ["artifacts/bulk0.bin", "artifacts/bulk1.bin", "toy.ipynb"], kept
    monkeypatch.setattr(prepare, "MAX_SUBMISSION_FILES", 3)
    problems = cohort.prepare_submission(course, "toy", work, tmp_path / "staging2")
    assert "more than 0.003 GB or 3 files in all: artifacts/bulk2.bin" in problems["(files)"][0]


def test_the_clients_memory_does_not_grow_with_the_class(tmp_path, monkeypatch):
    """Five students each bring 240 MB of files (under the per-file and per-submission caps). The client packs a
    submission's files into its grading task; it keeps at most MAX_BYTES_IN_FLIGHT of them out at once (always
    one), and nothing keeps them once graded, so its peak does not grow with the class: a few copies of one
    submission in flight (the task, its pickled form, the in-process worker's), at most.
    (Before: Dask's low-level logs kept every task's arguments, 480 MB a student: +2.2 GB for four.)"""
    import psutil
    monkeypatch.setattr(schedule, "MAX_BYTES_IN_FLIGHT", 100 * 10**6)
    course = toy_course(tmp_path, cell_timeout=20)
    size = 240 * 10**6
    for student in ("bulky1", "bulky2", "bulky3", "bulky4", "bulky5"):
        work = good_work(tmp_path / "work" / student)
        for part in range(2):            # each file under the per-file limit (CourseDirectory.max_file_size)
            (work / "artifacts" / f"bulk{part}.bin").write_bytes(os.urandom(size // 2))
        course.submit(student, "toy", work)
        shutil.rmtree(work)
    me, peak, done = psutil.Process(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            done.wait(0.02)

    before = me.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        results = cohort.run("toy", jobs=2, timeout=120, course_root=course.root, quiet=True)
    finally:
        done.set()
        sampler.join()
    assert {r.status for r in results.values()} == {"graded"}, results
    assert not any(r.problems for r in results.values()), "every file should have been graded"
    grew = (peak[0] - before) / 10**6
    print(f"client memory: +{grew:.0f} MB over {before / 10**6:.0f} MB for 5 submissions of {size / 10**6:.0f} MB")
    assert grew < 3 * size / 10**6 + 300, f"the client grew by {grew:.0f} MB for 5 x {size / 10**6:.0f} MB"


class ActiveMarkup(html.parser.HTMLParser):
    """What of the attack in a page would run when a browser opens it: event handlers that call its alert(),
    javascript: URLs, frames, objects, SVG, and scripts that call its alert() (the page's own scripts and
    handlers, formgrader's toggles, are not the attack's)."""

    def __init__(self):
        super().__init__()
        self.found, self.in_script = [], False

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        if tag in ("iframe", "object", "embed", "svg"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = (value or "").strip().lower()
            if (name.startswith("on") and "alert(" in value) or value.startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script and "alert(" in data:
            self.found.append(f"<script>{data[:80]}")


def active_markup(page):
    parser = ActiveMarkup()
    parser.feed(page)
    return parser.found


def test_no_student_markup_runs_in_feedback_or_formgrader(graded):
    """A written answer and a file name full of script: the feedback page and formgrader's view of the graded
    notebook (both rendered from it) show them as text and run nothing. (Before: live onerror=, iframe and
    javascript: links, in the answer and in the grader's own message.)"""
    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    course, _, scores = graded
    assert points(scores, "hostile_markup") == {"test_add": 2, "test_model": 1}
    assert "over the 200 MB limit" in message(course, "hostile_markup")
    course.nbgrader("generate_feedback", "toy", "--student", "hostile_markup")
    page = (course.root / "grading" / "feedback" / "hostile_markup" / "toy" / "toy.html").read_text()
    assert "Pruning" in page and "over the 200 MB limit" in page
    assert active_markup(page) == [], active_markup(page)
    # formgrader: its HTMLExporter with the course's configuration and its own template
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    graded_nb = course.root / "grading" / "autograded" / "hostile_markup" / "toy" / "toy.ipynb"
    view, _ = HTMLExporter(config=config).from_filename(str(graded_nb), resources={
        "base_url": "/", "submission_id": "x", "notebook_id": "toy", "index": 0, "total": 1,
        "student": "hostile_markup", "last_name": "", "first_name": "", "notebook_path": str(graded_nb)})
    assert "Pruning" in view and active_markup(view) == [], active_markup(view)
