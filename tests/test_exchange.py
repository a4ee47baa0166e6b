"""Both ways submissions come in, fed hostile input: what lies in the exchange or in a zip is the students'.

- `nbgrader collect` with the kit's collector (autograde.exchange.TrustedCollect): the exchange's inbound folder
  is writable by every student; one real `nbgrader collect` of records made by hand as students would leave
  them, one student posing as another.
- `nbgrader zip_collect` with the kit's pattern and extractor (nbgrader_config.py, autograde.lms): one zip that
  reaches into a classmate's submission and carries file modes of its own.
"""
import os
import pwd
import stat
import zipfile

import pytest

from autograde.course import LABS, SOLUTIONS, Course

ASSIGNMENT = "kd"
POSER = "daemon"                  # a Unix user of every Debian machine, the student id of the posed-as student


def record(inbound, student, time, tag):
    """An inbound record as `nbgrader submit` names it, holding the blank release notebook; returns its folder."""
    folder = inbound / f"{student}+{ASSIGNMENT}+2030-01-01 {time}.000000 UTC+{tag}"
    folder.mkdir()
    (folder / "kd.ipynb").write_bytes((LABS / ASSIGNMENT / "kd.ipynb").read_bytes())
    (folder / "timestamp.txt").write_text(f"2030-01-01 {time}.000000 UTC")
    return folder


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("making records owned by another user needs root (CI runs as root)")
    course = Course(tmp_path_factory.mktemp("exchange") / "course")
    inbound = course.grading / "exchange" / course.course_id / "inbound"
    inbound.mkdir(parents=True)
    record(inbound, "hana", "10:00:00", "a1")
    alice = record(inbound, "alice", "10:00:00", "a2")
    (alice / "kd.ipynb").unlink()
    (alice / "kd.ipynb").symlink_to(SOLUTIONS / ASSIGNMENT / "kd.ipynb")        # read with the TA's rights
    (alice / "artifacts").mkdir()
    (alice / "artifacts" / "teacher.pt").symlink_to(SOLUTIONS)                   # a folder, through a link
    own = record(inbound, POSER, "09:00:00", "a3")                              # the student's own, earlier
    uid = pwd.getpwnam(POSER).pw_uid
    for path in (own, *own.iterdir()):
        os.lchown(path, uid, uid)
    posed = record(inbound, POSER, "11:00:00", "a4")                            # made by another, later
    (posed / "kd.ipynb").write_text("posed")
    (inbound / f"zed+{ASSIGNMENT}+not a time+a5").mkdir()                      # a name nbgrader cannot read
    run = course.nbgrader("collect", ASSIGNMENT, check=False)
    return course, run


def test_links_in_a_submission_are_left_out_not_followed(collected):
    course, run = collected
    alice = course.submitted / "alice" / ASSIGNMENT
    assert (alice / "timestamp.txt").is_file()
    assert not (alice / "kd.ipynb").exists() and not (alice / "artifacts" / "teacher.pt").exists()
    assert "kd.ipynb: not a regular file (a symbolic link?); not collected" in run.stderr


def test_a_submission_in_a_unix_users_name_by_another_is_refused(collected):
    course, run = collected
    assert (course.submitted / POSER / ASSIGNMENT / "kd.ipynb").read_bytes() == \
        (LABS / ASSIGNMENT / "kd.ipynb").read_bytes()                             # the student's own
    assert f"submitted in the name of {POSER}" in run.stderr and "not collected" in run.stderr


def test_an_unreadable_record_name_stops_nobody_elses_collection(collected):
    course, run = collected
    assert run.returncode == 0, run.stderr
    assert "not a submission record nbgrader can read" in run.stderr
    assert (course.submitted / "hana" / ASSIGNMENT / "kd.ipynb").is_file()
    assert not (course.submitted / "zed").exists()


def zip_member(archive, name, data, mode=0o100644):
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    archive.writestr(info, data)


@pytest.fixture(scope="module")
def zip_collected(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("zips") / "course")
    downloads = course.grading / "downloaded" / ASSIGNMENT / "archive"
    downloads.mkdir(parents=True)
    notebook = (LABS / ASSIGNMENT / "kd.ipynb").read_bytes()
    with zipfile.ZipFile(downloads / "bob_1002_2002_kd.zip", "w") as bob:
        zip_member(bob, "kd/kd.ipynb", notebook)
    with zipfile.ZipFile(downloads / "alice_1001_2001_kd.zip", "w") as alice:
        zip_member(alice, "kd/kd.ipynb", notebook)
        zip_member(alice, "kd/extracted/bob_x/kd/artifacts/injected.json", b'{"written": "by alice"}')
        zip_member(alice, "kd/extracted/bob_x/kd/kd.ipynb", b"{}")     # a second kd.ipynb of bob's: nbgrader stops
        zip_member(alice, "kd/artifacts/setuid.pt", b"x", mode=0o104755)
        zip_member(alice, "kd/artifacts/unreadable.pt", b"x", mode=0o100000)
    run = course.nbgrader("zip_collect", ASSIGNMENT, check=False)
    return course, run


def test_a_zip_cannot_reach_into_another_students_submission(zip_collected):
    course, run = zip_collected
    assert run.returncode == 0, run.stderr
    bob = course.submitted / "bob" / ASSIGNMENT
    assert (bob / "kd.ipynb").read_bytes() == (LABS / ASSIGNMENT / "kd.ipynb").read_bytes()
    assert not (bob / "artifacts").exists()


def test_collected_files_have_plain_modes_whatever_the_zip_says(zip_collected):
    course, run = zip_collected
    artifacts = course.submitted / "alice" / ASSIGNMENT / "artifacts"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in artifacts.iterdir()}
    assert modes == {"setuid.pt": 0o644, "unreadable.pt": 0o644}, {k: oct(v) for k, v in modes.items()}
