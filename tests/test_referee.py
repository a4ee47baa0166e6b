"""The referee reads what the sandbox leaves behind as hostile: a probe's record at a path student code knows."""
import os

import torch

from autograde.referee import read_record


def test_a_link_at_the_record_path_is_not_followed(tmp_path):
    """Student code replaced the probe's record with a link to a file only the grader (maybe root) can read;
    the referee followed it and parsed that file. Here the file is a readable record, to show it is not read."""
    secret = tmp_path / "secret.pt"
    torch.save({"secret": torch.tensor(42)}, secret)
    (tmp_path / "box").mkdir()
    record = tmp_path / "box" / "probe-1.pt"
    record.symlink_to(secret)
    assert read_record(record) == {"error": "the probe's record is not a file the grader reads (OSError)"}
    os.mkfifo(tmp_path / "box" / "probe-2.pt")              # would block a plain open() forever
    assert read_record(tmp_path / "box" / "probe-2.pt") == {"error": "the probe's record is not a regular file"}
    assert "saved no record" in read_record(tmp_path / "box" / "none.pt")["error"]
    torch.save({"value": torch.tensor(1.5)}, tmp_path / "box" / "probe-3.pt")
    assert read_record(tmp_path / "box" / "probe-3.pt") == {"value": torch.tensor(1.5)}


def test_a_course_config_that_fails_to_load_still_grades_in_the_sandbox(tmp_path):
    """nbgrader skips a course's nbgrader_config.py that raises and grades with its defaults, whose Execute runs
    the student's code on the TA's machine. The kit's environment config (`python -m autograde.trusted`, run by
    `make setup`) keeps the trusted pipeline then: here the student's code would write a file outside its folder."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import nbformat

    from autograde import trusted
    from autograde.course import BIN
    from test_cohort import good_work, toy_course

    installed = Path(sys.prefix, "etc", "jupyter", "nbgrader_config.py")
    assert installed.is_file() and installed.read_text() == trusted.environment_config(), (
        f"{installed} is missing or stale: `make setup` writes it (python -m autograde.trusted)")
    marker = tmp_path / "written-by-student-code"
    course = toy_course(tmp_path, cell_timeout=30)
    work = good_work(tmp_path / "work" / "ann")
    nb = nbformat.read(work / "toy.ipynb", as_version=4)
    nb.cells[2].source = f"open({str(marker)!r}, 'w').close()\ndef add(a, b):\n    return a + b"
    nbformat.write(nb, work / "toy.ipynb")
    course.submit("ann", "toy", work)
    # The course as nbgrader's defaults lay it out, and a configuration that raises before it sets anything.
    root = course.root
    shutil.copytree(course.source, root / "source")
    shutil.copytree(course.submitted, root / "submitted")
    shutil.copy(course.db, root / "gradebook.db")
    (root / "nbgrader_config.py").write_text("import a_module_the_ta_never_installed\n")
    done = subprocess.run([str(BIN / "nbgrader"), "autograde", "toy", "--student", "ann", "--force"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert "a_module_the_ta_never_installed" in done.stdout + done.stderr     # nbgrader said it skipped the file
    assert (root / "autograded" / "ann" / "toy" / "toy.ipynb").is_file(), done.stdout + done.stderr
    assert not marker.exists(), "the student's code ran outside the sandbox"
