"""`nbgrader collect` for the kit (nbgrader_config.py selects it): the exchange's inbound folder is writable by
every student, so what it holds is collected as evidence, not trusted.

    nbgrader collect <assignment>        -> grading/submitted/<student>/<assignment>/, as nbgrader's own, but:

- a symbolic link (or any file that is not a regular one) in a submission is left out with a warning: nbgrader
  copies the file a link points to, read with the TA's rights (the solutions, a classmate's submission);
- a submission made in the name of a Unix user of this machine by another user is refused with an error, and
  that student's own newest submission is collected instead (nbgrader only warns);
- a record whose name nbgrader cannot read (`<student>+<assignment>+<time>+<random>`) is left out with an error
  instead of stopping the collection of the whole class;
- the submission's time is the record name's time, or its files' last change time when that is later, never the
  timestamp.txt the student's side wrote into it: it is written as timestamp.txt and recorded beside submitted/
  (autograde.late.record_time), where the cohort runner reads it.

What the file-system exchange cannot do is authenticate a student whose name is not a Unix user here (a hub
whose users all run as one uid, e.g. in containers): for those, use an authenticated exchange (ngshare) or the
LMS path (autograde/lms.py).
"""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect

from . import late

if TYPE_CHECKING:
    from logging import Logger


class TrustedCollect(ExchangeCollect):

    def init_src(self) -> None:
        """nbgrader's, reading each record on its own: the newest readable, genuine record of each student
        (before the due date with --before-duedate, as nbgrader)."""
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        by_student: dict[str, list[dict[str, Any]]] = {}     # nbgrader's records, by student
        pattern = f"{self.coursedir.student_id or '*'}+{self.coursedir.assignment_id}+*"
        for path in sorted(Path(self.inbound_path).glob(pattern)):
            try:
                record = self._path_to_record(str(path))
            except Exception as error:          # nbgrader's fail(), or a time parse_utc cannot read
                self.log.error(f"{path}: not a submission record nbgrader can read ({error}); not collected")
                continue
            if self._genuine(path, record["username"]):
                by_student.setdefault(record["username"], []).append(record)
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        self.src_records = []
        for records in by_student.values():
            records = self._sort_by_timestamp(records)
            if self.duedate is not None and self.before_duedate:
                records = [r for r in records if r["timestamp"] <= self.duedate] or records
            self.src_records.append(records[0])

    def _genuine(self, path: Path, student: str) -> bool:
        """False (with an error) when `student` is a Unix user of this machine and someone else made `path`."""
        try:
            uid = pwd.getpwnam(student).pw_uid
        except KeyError:
            return True                   # not a user of this machine: nothing to check the name against
        owner = path.lstat().st_uid
        if owner != uid:
            self.log.error(f"{path}: submitted in the name of {student} (uid {uid}) by uid {owner}; not collected")
            return False
        return True

    def do_copy(self, src: str, dest: str, log: Logger | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "record"
            shutil.copytree(src, plain, ignore=self._not_regular)
            super().do_copy(str(plain), dest, log)
        # The time it came in: its name's time, or later if its files changed later (the student names the record
        # and writes its timestamp.txt; a change time is the kernel's, and no one can set it back).
        named = self._path_to_record(str(src))["timestamp"]
        named = named.replace(tzinfo=timezone.utc) if named.tzinfo is None else named
        changed = datetime.fromtimestamp(_last_change(Path(src)), timezone.utc)
        student, assignment = Path(dest).parts[-2:]
        when = late.record_time(Path(dest).parents[1], assignment, student, max(named, changed))
        (Path(dest) / "timestamp.txt").write_text(when)      # what `nbgrader collect --update` compares

    def _not_regular(self, folder: str, names: list[str]) -> list[str]:
        """copytree's ignore: the names in `folder` that are neither regular files nor folders (not followed)."""
        left_out: list[str] = []
        for name in names:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                self.log.warning(f"{os.path.join(folder, name)}: not a regular file (a symbolic link?); "
                                 "not collected")
                left_out.append(name)
        return left_out


def _last_change(folder: Path) -> float:
    """The latest change time (st_ctime) of `folder` and everything in it, links not followed."""
    latest = folder.lstat().st_ctime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            latest = max(latest, os.lstat(os.path.join(root, name)).st_ctime)
    return latest
