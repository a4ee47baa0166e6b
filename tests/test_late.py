"""The late policy (autograde/late.py): 10% of the score per started day late, never below zero."""
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
