"""Both ways an nbgrader course collects work, end to end into the cohort runner, on one course and one cohort run:

- JupyterHub: the TA runs `nbgrader release_assignment`; a student, with the student bundle's nbgrader_config.py,
  types `nbgrader fetch_assignment kd`, works, types `nbgrader submit kd`; the TA runs `nbgrader collect kd`.
- LMS upload: students run `python -m lib.submit kd` and upload the zip; the TA puts the downloads in
  grading/downloaded/kd/archive/ and runs `nbgrader zip_collect kd`. One zip is truncated, one has a file
  changed after zipping.

Then `python -m autograde.cohort kd` grades everyone in one run (4 `nbgrader autograde`s) and `nbgrader export`
writes the grades. (test_demo covers the exchange through nbgrader's Python API; here it is the commands.)
"""
import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from autograde import cohort
from autograde.course import LABS, Course
from autograde.demo import Student

ASSIGNMENT = "kd"          # the cheapest assignment to grade


def lib_submit(folder, out, cwd):
    """`python -m lib.submit kd --folder FOLDER --out OUT`, as a student runs it; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "lib.submit", ASSIGNMENT, "--folder", str(folder), "--out", str(out)],
                          cwd=cwd, capture_output=True, text=True)


def change_member(archive, name, data):
    """Rewrite `archive` with member `name` replaced by `data` (the manifest left as lib.submit wrote it)."""
    with zipfile.ZipFile(archive) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    assert name in members, f"{name} not in {archive}: {sorted(members)}"
    members[name] = data
    with zipfile.ZipFile(archive, "w") as target:
        for member, content in members.items():
            target.writestr(member, content)


@pytest.fixture(scope="module")
def graded(reference_work, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("submission_paths")
    work = reference_work(ASSIGNMENT)
    course = Course(tmp / "course")
    course.generate(ASSIGNMENT)
    run = {}

    # JupyterHub: release, fetch, work, submit, collect, with the real nbgrader commands.
    course.nbgrader("release_assignment", ASSIGNMENT)
    hana = Student(course.root, "hana")
    hana.command("fetch_assignment", ASSIGNMENT)
    fetched = hana.home / course.course_id / ASSIGNMENT
    run["fetched"] = sorted(p.name for p in fetched.iterdir())
    shutil.copytree(work, fetched, dirs_exist_ok=True)                  # her finished notebook and artifacts/
    run["hub_submit"] = hana.command("submit", ASSIGNMENT, "--student", "hana")   # the hub: her login's name
    course.nbgrader("collect", ASSIGNMENT)

    # LMS: the zips as a Canvas download names them, <login>_<ids>_<file>.
    archive = course.grading / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    run["ada"] = lib_submit(work, archive / "ada_1001_2001_kd.zip", cwd=tmp)
    run["ben"] = lib_submit(LABS / ASSIGNMENT, archive / "ben_1002_2002_kd.zip", cwd=tmp)   # the blank release
    lib_submit(work, archive / "cy_1003_2003_kd.zip", cwd=tmp)
    change_member(archive / "cy_1003_2003_kd.zip", "kd/artifacts/kd_vs_scratch.png", b"not the plot she zipped")
    data = (archive / "ada_1001_2001_kd.zip").read_bytes()
    (archive / "dan_1004_2004_kd.zip").write_bytes(data[: len(data) // 2])            # a truncated download
    run["zip_collect"] = course.nbgrader("zip_collect", ASSIGNMENT)

    output = io.StringIO()
    with contextlib.redirect_stdout(output):         # `python -m autograde.cohort kd -j 2`, in this process
        run["cohort_rc"] = cohort.main([ASSIGNMENT, "-j", "2", "--course", str(course.root)])
    run["cohort"] = output.getvalue()
    course.nbgrader("export", "--to", str(tmp / "grades.csv"))
    with open(tmp / "grades.csv") as f:
        run["grades"] = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    run["results"] = json.loads((course.grading / "cohort" / ASSIGNMENT / "results.json").read_text())
    run["full"] = sum(m for _, m in course.scores(ASSIGNMENT, "ada").values())
    return course, run


def test_hub_student_fetches_and_submits_with_the_nbgrader_commands(graded):
    course, run = graded
    assert "kd.ipynb" in run["fetched"]
    submitted = course.submitted / "hana" / ASSIGNMENT
    assert (submitted / "kd.ipynb").is_file() and (submitted / "artifacts" / "student_kd.pt").is_file()
    assert run["grades"]["hana"] == pytest.approx(run["full"]) and run["full"] > 0, run["cohort"]


def test_lib_submit_names_what_the_blank_release_lacks(graded):
    _, run = graded
    assert run["ada"].returncode == 0 and "would cost you points" not in run["ada"].stdout
    assert run["ben"].returncode == 1
    assert "missing artifacts/teacher.pt (written by kd.ipynb, section 1" in run["ben"].stdout


def test_zip_collect_skips_the_truncated_zip_and_collects_the_others(graded):
    course, run = graded
    log = run["zip_collect"].stderr
    assert "dan_1004_2004_kd.zip: not a readable zip archive" in log
    collected = {p.name for p in course.submitted.iterdir()}
    assert {"ada", "ben", "cy", "hana"} <= collected and "dan" not in collected
    assert (course.submitted / "ada" / ASSIGNMENT / "artifacts" / "sweep" / "T1_alpha0.5.pt").is_file()


def test_lms_zips_are_graded_and_a_changed_file_is_reported(graded):
    _, run = graded
    assert run["cohort_rc"] == 0, run["cohort"]
    grades, full = run["grades"], run["full"]
    assert grades["ada"] == pytest.approx(full) and grades["ben"] == 0
    assert grades["cy"] == pytest.approx(full)            # the changed plot is not graded: reported, not scored
    results = run["results"]
    assert results["cy"]["manifest_mismatch"] == [
        "artifacts/kd_vs_scratch.png does not match manifest.json (its SHA-256 differs): it changed after it was zipped"]
    assert not results["ada"]["manifest_mismatch"] and not results["hana"]["manifest_mismatch"]
    assert "cy: files differ from the manifest" in run["cohort"]


def test_the_bundles_assignment_list_lists_and_fetches_the_release(graded, tmp_path):
    """The Assignment List's server side (nbgrader's extension, which the bundle installs) in a Jupyter server
    started in the student bundle: it reads the bundle's nbgrader_config.py, lists the released kd, fetches it."""
    import socket
    import time
    import urllib.request
    from autograde import release
    from autograde.course import BIN, tool_env
    course, _ = graded
    bundle = release.build(tmp_path / "dist", exchange=course.root / "grading" / "exchange")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(BIN / "jupyter"), "server", "--no-browser", "--allow-root", f"--port={port}",
                               "--IdentityProvider.token=secret", f"--ServerApp.root_dir={bundle}"],
                              cwd=bundle, env=tool_env(HOME=str(tmp_path / "home")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def call(path, method="GET"):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                         headers={"Authorization": "token secret"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    try:
        for _ in range(120):
            try:
                call("/api/status")
                break
            except OSError:
                time.sleep(0.5)
        listed = call("/assignments?course_id=compresslab")
        assert [(a["assignment_id"], a["status"]) for a in listed["value"]] == [("kd", "released")], listed
        fetched = call("/assignments/fetch?assignment_id=kd&course_id=compresslab", method="POST")
        assert fetched["value"][0]["status"] == "fetched", fetched
        assert (bundle / "compresslab" / "kd" / "kd.ipynb").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)
