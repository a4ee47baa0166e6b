"""The README's TA and instructor paths, run as the README prints them, on a fresh clone of the repository.

The commands are read from README.md, never retyped here: a README that promises a command which fails on a
fresh clone fails these tests. The clone holds what `git clone` would give plus this working tree's changes
(every file git tracks or would track), and uses this test run's venv as the README's activated `.venv`
(its bin/ first on PATH) instead of installing a second one.
"""
import ast
import csv
import os
import re
import shutil
import subprocess
import time

import nbformat

from autograde.course import BIN, REPO, SOLUTIONS, Course, nbgrader_id

README = REPO / "README.md"
STUDENTS = ("reference", "blank", "broken")


# ---------------------------------------------------------------------------------------------------------
# Reading the README

def readme_section(title):
    """The text of the README section `## title`, up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def code_block(section):
    """The first indented (4 spaces) code block of a README section, dedented, as a list of lines."""
    block = []
    for line in section.splitlines():
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line[4:])
        elif block:
            break
    assert block, "no indented code block in the README section"
    return [line for line in block if line.strip()]


def is_command(line):
    return not line.lstrip().startswith("#")


def ta_block():
    """The TA block's lines and the assignment it names (its first command's last word)."""
    lines = code_block(readme_section("For TAs"))
    first = next(line for line in lines if is_command(line))
    assert first.split("#")[0].split()[:2] == ["nbgrader", "generate_assignment"], (
        f"the TA block should start by registering the assignment, not with: {first}")
    return lines, first.split("#")[0].split()[2]


# ---------------------------------------------------------------------------------------------------------
# A fresh clone, and the TA's shell in it

def fresh_clone(dest):
    """Copy the repository's files as a clone holds them (tracked or trackable: nothing git ignores, so no
    grading/, no .venv) into `dest`, and commit them there: `git status` then shows what the commands wrote."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():                      # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=ta", "-c", "user.email=ta@example.org", "commit", "-q", "-m", "fresh clone")
    return dest


def git(root, *args):
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def shell(root, line, timeout=900):
    """Run one README line with bash in `root`, the venv activated; returns (exit status, output, seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(BIN.parent))
    start = time.time()
    done = subprocess.run(["bash", "-c", line], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr, time.time() - start


def make_submissions(folder, reference, release):
    """{student: the folder they hand in}: the reference work, the blank release (a copy: the TA's commands
    must not change labs/), and the reference work whose notebook was cut off halfway (not JSON any more)."""
    work = {"reference": reference, "blank": folder / "blank", "broken": folder / "broken"}
    shutil.copytree(release, work["blank"])
    shutil.copytree(reference, work["broken"])
    notebook = next(work["broken"].glob("*.ipynb"))
    notebook.write_bytes(notebook.read_bytes()[: notebook.stat().st_size // 2])
    return work


# ---------------------------------------------------------------------------------------------------------

def test_readme_ta_block_grades_a_cohort_on_a_fresh_clone(reference_work, tmp_path):
    """Every line of the README's TA block, in order, on a fresh clone: the commands run as printed, and the
    submissions go where the block says. Then the grades CSV and each student's feedback are checked."""
    lines, assignment = ta_block()
    assert assignment == "kd", f"the TA block is run as printed: keep its example on kd (cheapest), not {assignment}"
    clone = fresh_clone(tmp_path / "clone")
    submitted = f"grading/submitted/<student>/{assignment}/"
    work = make_submissions(tmp_path, reference_work(assignment), clone / "labs" / assignment)

    ran = []
    for line in lines:
        if not is_command(line):
            if submitted in line:                 # "put each submission in grading/submitted/<student>/kd/"
                for student, folder in work.items():
                    shutil.copytree(folder, clone / submitted.replace("<student>", student))
                ran.append((line, None, "", 0.0))
            continue
        status, output, seconds = shell(clone, line)
        ran.append((line, status, output, seconds))
    log = "\n".join(f"$ {line}\n(exit {status}, {seconds:.1f} s)\n{output[-3000:]}"
                    for line, status, output, seconds in ran)
    print(log)                                    # shown when the test fails

    placed = [i for i, (line, status, *_) in enumerate(ran) if status is None]
    cohort = [i for i, (line, *_) in enumerate(ran) if "autograde.cohort" in line]
    assert len(placed) == 1 and cohort and placed[0] < cohort[0], (
        f"the TA block should say where submissions go ({submitted}) before grading them:\n{log}")
    for line, status, output, _ in ran:
        if status is None:
            continue
        # The broken submission cannot be graded in full: the cohort runner exits 1 and its summary names it,
        # as the README says.
        expected = 1 if "autograde.cohort" in line else 0
        assert status == expected, f"`{line}` exited {status}, expected {expected}:\n{output[-6000:]}"
        assert "Traceback" not in output, f"`{line}` printed a traceback:\n{output[-6000:]}"
        if expected == 1:
            assert re.search(r"\bbroken\s+failed\b", output) and "2 graded, 1 failed" in output, output

    # Nothing outside the git-ignored grading/ changed: labs/ as committed, no stray grades.csv.
    assert git(clone, "status", "--porcelain") == "", "the TA block changed tracked files or wrote outside grading/"

    course = Course.open(clone)
    scores = {student: course.scores(assignment, student) for student in STUDENTS}
    assert scores["reference"] and all(score == top for score, top in scores["reference"].values()), scores
    assert all(score == 0 for student in ("blank", "broken") for score, _ in scores[student].values()), scores

    with open(clone / "grading" / "grades.csv") as table:
        rows = {row["student_id"]: row for row in csv.DictReader(table) if row["assignment"] == assignment}
    assert set(rows) == set(STUDENTS), f"grades.csv should list every student, the broken one too: {sorted(rows)}"
    full_marks = sum(top for _, top in scores["reference"].values())
    assert float(rows["reference"]["score"]) == full_marks, rows["reference"]
    assert float(rows["blank"]["score"]) == float(rows["broken"]["score"]) == 0, rows

    for student in STUDENTS:
        html = clone / "grading" / "feedback" / student / assignment / f"{assignment}.html"
        assert html.is_file(), f"no feedback for {student}: {html}"
        page = html.read_text()
        row = rows[student]
        assert f"Score: {float(row['score'])} / {float(row['max_score'])}" in page, f"{html}: not grades.csv's score"
        assert ("Message from the grader" in page) == (student == "broken"), f"{html}: grader's message"
    broken_page = (clone / "grading" / "feedback" / "broken" / assignment / f"{assignment}.html").read_text()
    assert f"{assignment}.ipynb is not a readable notebook" in broken_page


def test_fresh_clone_grading_before_registering_names_the_command(tmp_path):
    """Grading on a fresh clone before registering the assignment stops with one line naming the command that
    registers it, the TA block's own first line (not a traceback); so does grading with a gradebook that
    another command created empty (`nbgrader export` run first)."""
    lines, assignment = ta_block()
    commands = [line.split("#")[0].strip() for line in lines if is_command(line)]
    register = commands[0]
    grade, export = (next(c for c in commands if word in c) for word in ("autograde.cohort", "nbgrader export"))
    clone = fresh_clone(tmp_path / "clone")
    status, output, _ = shell(clone, grade)
    assert status == 2 and "Traceback" not in output, output
    assert "gradebook.db does not exist" in output and f"`{register}`" in output, output

    assert shell(clone, export)[0] == 0                  # an empty gradebook, and an empty grades.csv
    status, output, _ = shell(clone, grade)
    assert status == 2 and "Traceback" not in output, output
    assert f"gradebook.db has no assignment '{assignment}'" in output and f"`{register}`" in output, output


def test_stray_solution_artifacts_are_never_released(tmp_path):
    """With a stray solutions/<a>/artifacts/ on a fresh clone, the TA block's plain nbgrader release command
    and the instructors' `make labs` both refuse, naming it, and labs/ stays as committed."""
    lines, assignment = ta_block()
    register = next(line for line in lines if is_command(line)).split("#")[0].strip()
    clone = fresh_clone(tmp_path / "clone")
    stray = clone / "solutions" / assignment / "artifacts"
    stray.mkdir()
    (stray / "teacher.pt").write_bytes(b"reference weights")

    status, output, _ = shell(clone, register)
    assert status != 0 and f"solutions/{assignment}/artifacts exists" in output, output
    assert not (clone / "labs" / assignment / "artifacts").exists(), "the solutions' artifacts were released"
    assert git(clone, "status", "--porcelain") == "", "labs/ changed although the release was refused"

    instructor = readme_section("For instructors")
    assert "`make labs`" in instructor and "refuses" in instructor
    # `make labs` with this run's venv (VENV=...), never installing into it (-o: its install stamp is up to date).
    venv = BIN.parent
    status, output, _ = shell(clone, f"make -o {venv}/.installed VENV={venv} labs")
    assert status != 0 and f"solutions/{assignment}/artifacts exists" in output, output
    assert "regenerated" not in output, f"make labs released something before refusing:\n{output}"
    assert git(clone, "status", "--porcelain") == ""


def test_readme_todo_table_names_every_function_students_write():
    """Each solution code cell's functions and classes appear in that notebook's row of the README's table."""
    rows = {}
    for line in readme_section("The assignments").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells[3]
    missing = []
    for path in sorted(SOLUTIONS.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
                continue
            names = [node.name for node in ast.parse(cell.source).body
                     if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
            missing += [f"{path.stem}: {name} (cell {nbgrader_id(cell)})" for name in names
                        if not re.search(rf"`{name}\b", rows.get(path.stem, ""))]
    assert not missing, f"README's TODO table omits: {missing}"
