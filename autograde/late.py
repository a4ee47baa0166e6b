"""The course's late policy, as an nbgrader plugin: 10% of a notebook's score per started day late.

nbgrader_config.py selects it with c.AssignLatePenalties.plugin_class. nbgrader calls it while
autograding a submission whose timestamp is after the assignment's due date.
"""
import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float


class PercentPerDay(LateSubmissionPlugin):
    percent_per_day = Float(10.0, help="Share of the score lost per started day late, in %").tag(config=True)

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        days = math.ceil(total_seconds_late / 86400)
        return min(score, score * self.percent_per_day / 100 * days)
