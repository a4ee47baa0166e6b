"""`python -m lib.submit` (the students' zip for an LMS) and the grader's check of its manifest (autograde.lms).
The end-to-end path, zips into grades, is in test_submission_paths.py."""
import hashlib
import json
import zipfile

import pytest

from autograde.course import ASSIGNMENTS, REPO, Course
from autograde.lms import manifest_problems
from lib import artifacts, submit


def fake_work(folder, assignment="kd"):
    """An assignment folder with its notebooks and every artifact the grader needs (contents made up)."""
    folder.mkdir(parents=True)
    for notebook in ASSIGNMENTS[assignment]:
        (folder / f"{notebook}.ipynb").write_text("{}")
    for path in artifacts.made_by(assignment):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(path.encode())
    return folder


def test_zip_holds_the_notebooks_and_artifacts_with_their_hashes(tmp_path):
    work = fake_work(tmp_path / "kd")
    (work / "artifacts" / "kd_vs_scratch.png").write_bytes(b"a plot")
    (work / "notes.txt").write_text("not part of the submission")
    assert submit.write_zip("kd", work, tmp_path / "kd.zip") == []
    with zipfile.ZipFile(tmp_path / "kd.zip") as archive:
        names = set(archive.namelist())
        listed = json.loads(archive.read("kd/manifest.json"))["files"]
    assert names == {f"kd/{name}" for name in listed} | {"kd/manifest.json"}
    assert "kd/artifacts/kd_vs_scratch.png" in names and "kd/artifacts/teacher.pt" in names
    assert "kd/notes.txt" not in names
    assert listed["artifacts/teacher.pt"] == {"bytes": len(b"artifacts/teacher.pt"),
                                              "sha256": hashlib.sha256(b"artifacts/teacher.pt").hexdigest()}


def test_missing_artifacts_are_named_with_the_notebook_that_writes_them(tmp_path):
    work = fake_work(tmp_path / "slimming", "slimming")
    (work / "artifacts" / "pruned_50.pt").unlink()
    (work / "train_prune_model.ipynb").unlink()
    found = submit.problems("slimming", work, submit.files_to_submit(work))
    assert found == ["train_prune_model.ipynb is missing",
                     'missing artifacts/pruned_50.pt (written by vggprune.ipynb, section 3 ("Build the pruned networks"))']


def test_files_over_the_graders_limit_are_named(tmp_path, monkeypatch):
    work = fake_work(tmp_path / "kd")
    (work / "artifacts" / "teacher.pt").write_bytes(b"0" * 3000)
    monkeypatch.setattr(submit, "MAX_FILE_KB", 2)
    found = submit.problems("kd", work, submit.files_to_submit(work))
    assert found == ["artifacts/teacher.pt is 0 MB, over the grader's 0 MB per file: it would not be graded"]


def test_the_grader_takes_its_file_limit_and_file_types_from_lib_submit(tmp_path, monkeypatch):
    """One limit: what lib.submit warns about is what nbgrader drops (the kit's nbgrader_config.py reads it)."""
    from traitlets.config.loader import PyFileConfigLoader
    monkeypatch.setattr(submit, "MAX_FILE_KB", 1234)
    config = PyFileConfigLoader("nbgrader_config.py", str(REPO)).load_config()
    assert config.CourseDirectory.max_file_size == 1234
    assert Course.open(REPO).max_file_size == 1234 * 1000
    assert config.FileNameCollectorPlugin.valid_ext == list(submit.SUFFIXES)


def test_command_finds_the_assignment_and_says_what_is_missing(tmp_path, monkeypatch, capsys):
    work = fake_work(tmp_path / "kd")
    (work / "artifacts" / "teacher.json").unlink()
    monkeypatch.chdir(tmp_path)                                   # next to the kd/ folder, as after a fetch
    assert submit.main(["kd"]) == 1
    out = capsys.readouterr().out
    assert f"Wrote {tmp_path / 'kd.zip'} from {work}" in out
    assert "missing artifacts/teacher.json (written by kd.ipynb, section 1" in out


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "artifacts" / "teacher.pt").write_bytes(b"other weights"),
     "artifacts/teacher.pt does not match manifest.json (its SHA-256 differs): it changed after it was zipped"),
    (lambda d: (d / "artifacts" / "teacher.pt").unlink(),
     "artifacts/teacher.pt is listed in manifest.json but missing from the submission"),
    (lambda d: (d / "artifacts" / "extra.pt").write_bytes(b"x"),
     "artifacts/extra.pt is not listed in manifest.json: it was added after zipping"),
    (lambda d: (d / "manifest.json").write_text("[1, 2]"),
     "manifest.json is not the manifest lib.submit writes"),
])
def test_grader_reports_where_a_submission_differs_from_its_manifest(tmp_path, change, message):
    work = fake_work(tmp_path / "work")
    submit.write_zip("kd", work, tmp_path / "kd.zip")
    zipfile.ZipFile(tmp_path / "kd.zip").extractall(tmp_path / "collected")
    submitted = tmp_path / "collected" / "kd"
    (submitted / "timestamp.txt").write_text("2026-01-01 00:00:00")   # what nbgrader's collect adds
    assert manifest_problems(submitted) == []
    change(submitted)
    found = manifest_problems(submitted)
    assert len(found) == 1 and found[0].startswith(message), found
