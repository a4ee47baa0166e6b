"""The course's late policy, as an nbgrader plugin: 10% of a notebook's score per started day late; and the
times submissions came in, which the student cannot write.

nbgrader_config.py selects the plugin with c.AssignLatePenalties.plugin_class. nbgrader calls it while
autograding a submission whose timestamp is after the assignment's due date.
"""
from __future__ import annotations

import math
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

if TYPE_CHECKING:
    from datetime import datetime


class PercentPerDay(LateSubmissionPlugin):
    percent_per_day = Float(10.0, help="Share of the score lost per started day late, in %").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        days = math.ceil(total_seconds_late / 86400)
        return min(score, score * self.percent_per_day / 100 * days)


# When each submission came in, as the collection (nbgrader collect with the kit's collector) or the TA saw it:
# <grading>/timestamps/<assignment>/<student>.txt, beside submitted/ and never inside a student's folder. The
# cohort runner grades with this time and never with a timestamp.txt from the student's files, which the student
# writes (nbgrader submit writes one into the exchange record; a copied folder brings whatever it holds).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


def time_file(submitted_root: str | Path, assignment: str, student: str) -> Path:
    """The file that holds the time `student`'s submission of `assignment` came in (submitted_root: submitted/)."""
    return Path(submitted_root).parent / "timestamps" / assignment / f"{student}.txt"


def record_time(submitted_root: str | Path, assignment: str, student: str, when: datetime | str) -> str:
    """Record `when` (a UTC datetime, naive or aware, or nbgrader's timestamp text) as the submission's time;
    returns it as nbgrader's timestamp text."""
    if not isinstance(when, str):
        when = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
        when = when.strftime(TIME_FORMAT)
    path = time_file(submitted_root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(when)
    return when


def recorded_time(submitted_root: str | Path, assignment: str, student: str) -> str | None:
    """The recorded time of the submission as nbgrader's timestamp text, or None when none was recorded."""
    path = time_file(submitted_root, assignment, student)
    return path.read_text().strip() if path.is_file() else None
