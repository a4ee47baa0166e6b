"""Submissions uploaded to an LMS as the zips `python -m lib.submit` writes, brought in by `nbgrader zip_collect`.

    grading/downloaded/<assignment>/archive/<student>_<anything>.zip    what the TA downloads from the LMS
    nbgrader zip_collect <assignment>                                    -> grading/submitted/<student>/<assignment>/
    python -m autograde.cohort <assignment>                              checks each manifest, then grades

nbgrader_config.py sets the collector's file-name pattern and this module's extractor: an archive that is not
a readable zip (a truncated download) is skipped with a warning naming it, and the other students' archives
are collected as usual (nbgrader's own extractor stops the whole collection on it).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

from nbgrader.plugins.zipcollect import ExtractorPlugin

from lib.submit import MANIFEST, sha256


class ReadableZipsExtractor(ExtractorPlugin):
    """nbgrader's extractor, leaving out (with a warning) the archives that are not readable zip files."""

    def extract(self, archive_path: str, extracted_path: str) -> None:
        # nbgrader's extractor works on a folder of links to the readable files: the TA's downloads stay as they are
        with tempfile.TemporaryDirectory() as readable:
            for path in sorted(Path(archive_path).rglob("*")):
                if not path.is_file():
                    continue
                if path.suffix in self.zip_ext and not _readable(path):
                    self.log.warning(f"Skipped {path}: not a readable zip archive (a truncated or damaged "
                                     "download?); this student's work is not collected: ask for it again")
                    continue
                link = Path(readable) / path.relative_to(archive_path)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve())
            super().extract(readable, extracted_path)
        _plain_modes(extracted_path)


def _plain_modes(folder: str | Path) -> None:
    """rw-r--r-- files and rwxr-xr-x folders under `folder`: nbgrader's unzip gives each file the Unix mode its
    zip stores, which the student chose (set-uid, or unreadable: the collection would stop at that file)."""
    for root, folders, files in os.walk(folder):
        for name, mode in [(name, 0o755) for name in folders] + [(name, 0o644) for name in files]:
            path = os.path.join(root, name)
            if not os.path.islink(path):          # chmod follows links: never change what one points to
                os.chmod(path, mode)


def _readable(path: Path) -> bool:
    """True when `path` is a zip archive whose every member decompresses with its recorded CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def manifest_problems(folder: str | Path) -> list[str]:
    """Where the files of a submission `folder` differ from its manifest.json, as sentences ([] if it has none).

    A file that changed after `lib.submit` zipped it (its SHA-256 differs), or that the manifest lists and the
    submission lacks; files without a manifest entry are reported too.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return []
    try:
        listed = json.loads(path.read_bytes())["files"]
        entries = {str(name): (int(entry["bytes"]), str(entry["sha256"])) for name, entry in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        return [f"{MANIFEST} is not the manifest lib.submit writes ({type(error).__name__}: {str(error)[:200]}): "
                "the files could not be checked against it"]
    # Only the submission's own regular files are read: a name in the manifest is the student's text, and
    # "/etc/shadow" or "../bob/kd/kd.ipynb" must not make the grader read, or report on, anything else.
    present = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
    found: list[str] = []
    for name, (size, digest) in sorted(entries.items()):
        file = present.get(name)
        if file is None:
            found.append(f"{name} is listed in {MANIFEST} but missing from the submission")
        elif file.stat().st_size != size or sha256(file) != digest:
            found.append(f"{name} does not match {MANIFEST} (its SHA-256 differs): it changed after it was zipped")
    found += [f"{name} is not listed in {MANIFEST}: it was added after zipping"
              for name in sorted(set(present) - set(entries) - {MANIFEST, "timestamp.txt"})]
    return found
