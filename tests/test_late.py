"""The late policy (autograde/late.py): 10% of the score per started day late, never below zero."""
import shutil

import pytest

from autograde.late import PercentPerDay

HOUR, DAY = 3600, 86400


@pytest.mark.parametrize("seconds_late, days", [
    (0, 0),                    # exactly on time
    (1, 1),                    # one second late: a started day
    (23 * HOUR, 1),
    (DAY, 1),                  # exactly one day
    (25 * HOUR, 2),
    (3 * DAY + 1, 4),          # several days
    (9 * DAY + HOUR, 10),      # the tenth started day takes the last 10%
])
def test_penalty_is_ten_percent_per_started_day(seconds_late, days):
    penalty = PercentPerDay().late_submission_penalty("s", 8.0, seconds_late)
    assert penalty == pytest.approx(0.8 * days)


@pytest.mark.parametrize("seconds_late", [10 * DAY + 1, 30 * DAY, 400 * DAY])
def test_penalty_is_capped_at_the_whole_score(seconds_late):
    assert PercentPerDay().late_submission_penalty("s", 8.0, seconds_late) == 8.0


def test_the_rate_is_configurable():
    assert PercentPerDay(percent_per_day=25).late_submission_penalty("s", 8.0, 2 * DAY) == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------------------
# Submission times the student cannot write

DUE = "2030-01-01 09:00:00"
EARLY, LATE = "2029-12-31 10:00:00.000000 UTC", "2030-01-01 10:00:00.000000 UTC"     # LATE: an hour late


def test_a_forged_timestamp_txt_does_not_set_the_submission_time(tmp_path):
    """A timestamp.txt in the student's files (a copied folder, or the one nbgrader submit writes into its
    exchange record) claimed an early time and evaded the late penalty. The time now comes from the collection:
    the record's name (or its files' change time, if later), or the time the TA recorded for a copied folder."""
    from nbgrader.api import Gradebook

    from autograde import cohort, late
    from test_cohort import good_work, toy_course
    course = toy_course(tmp_path, cell_timeout=20)
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        gb.update_or_create_assignment("toy", duedate=DUE)
    forged = good_work(tmp_path / "work" / "forged")
    (forged / "timestamp.txt").write_text(EARLY)
    # 1. a copied folder: the TA records when it came in
    course.submit("copied", "toy", forged)
    late.record_time(course.submitted, "toy", "copied", LATE)
    # 2. the exchange: a record named with the late time, holding the student's early timestamp.txt
    inbound = course.grading / "exchange" / course.course_id / "inbound"
    inbound.mkdir(parents=True)
    for student in ("exchanged", "honest"):
        record = inbound / f"{student}+toy+{LATE}+x{student}"
        shutil.copytree(forged, record)
        if student == "honest":
            (record / "timestamp.txt").write_text(LATE)
    course.nbgrader("collect", "toy")
    assert (course.submitted / "exchanged" / "toy" / "timestamp.txt").read_text() == LATE
    assert late.recorded_time(course.submitted, "toy", "exchanged") == LATE
    cohort.run("toy", jobs=2, timeout=120, course_root=course.root, quiet=True)
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        penalty = {s: gb.find_submission("toy", s).late_submission_penalty for s in ("copied", "exchanged", "honest")}
    # 3 points, one started day late: 10%
    assert penalty == {"copied": pytest.approx(0.3), "exchanged": pytest.approx(0.3), "honest": pytest.approx(0.3)}
