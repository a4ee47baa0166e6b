"""Grading mode, in one place: how nbgrader is running the notebook, and what the kit may write then.

You never need this module in a notebook: lib's savers and lib.train.fit_or_load ask it for you.

nbgrader says how it runs a notebook in the environment variable NBGRADER_EXECUTION:
    "autograde"   while it grades (the course's grader, autograde/sandbox.py)
    "validate"    under `nbgrader validate` and the Validate button
Both use the artifacts already in artifacts/ instead of training again. They differ in what happens when one
is missing or stale (lib.train.fit_or_load: grading trains a short fallback run, validating raises an error
naming the notebook that makes it) and in what may be written (may_write below).
"""
import os
from pathlib import Path


def active() -> bool:
    """True while nbgrader runs the notebook, to grade it or to validate it: the artifacts are used as they are."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def validating() -> bool:
    """True under `nbgrader validate` (and the Validate button): validating trains nothing and writes nothing."""
    return os.environ.get("NBGRADER_EXECUTION") == "validate"


def may_write(path: str | Path) -> bool:
    """Whether the kit may write the file `path` now; every saver of lib asks (otherwise it writes nothing).

    When you run the notebook: yes. While nbgrader grades: only a file that was not submitted (a submitted
    artifact is what gets graded, re-running the notebook must not replace it). Under nbgrader validate:
    never (validating changes nothing in your folder).
    """
    if validating():
        return False
    return not (active() and Path(path).exists())
