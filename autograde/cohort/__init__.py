"""Autograde a whole class in parallel, safely: `python -m autograde.cohort ASSIGNMENT [ASSIGNMENT ...] -j 2`,
or on a Dask cluster of several machines: `... --scheduler tls://HOST:PORT`.

nbgrader grades one submission at a time, and its SQLite gradebook is not safe for concurrent writers.
So each submission is one Dask task (autograde.cluster): real `nbgrader autograde` in a scratch course of its
own, on whichever worker runs it. The modules, in the order a submission meets them:

    prepare.py    the client checks and repairs each submission, and packs it as data (Submission)
    transport.py  what travels: the course bundle out once per assignment, each graded submission back (Graded)
    task.py       the worker: nbgrader in a scratch course, under limits (Limits), its grades read as data
    gradebook.py  the client, the gradebook's only writer: one session for the run, each result read back
    results.py    what a grading found (Result): results.json, the TA's flags, the student's messages
    schedule.py   run() / run_many(): the submissions handed to the workers a few at a time, each result recorded
    cli.py        the command line

Each submission runs under a wall-clock limit (--timeout) and a memory limit (--memory, on every process
it starts, kernels included); its kernel gets its share of its machine's cores (cores / gradings at once
torch threads). A submission that breaks something (unreadable notebook, duplicated or renamed cells, a file
over the size limit, a crash, a timeout) gets zero on what it broke and a message at the top of its feedback
saying why; the others are graded as usual. Progress is saved after every submission in
grading/cohort/<assignment>/results.json: run the command again to resume. Ctrl-C stops every local worker's
nbgrader and kernel at once; the submissions being graded then are graded again on resume. A cluster worker
that dies mid-task has its submission graded again by another (Dask reschedules it); each result is merged
once. Several assignments given at once share one pool of workers.
"""
from .cli import main
from .gradebook import GradebookNotReady, check_gradebook
from .prepare import MAX_NOTEBOOK_CONTAINERS, Submission, pack_submission, prepare_submission
from .results import Result, markdown_literal, printable
from .schedule import PreflightSet, run, run_many
from .task import Limits, grade_one, grade_task

__all__ = ["GradebookNotReady", "Limits", "MAX_NOTEBOOK_CONTAINERS", "PreflightSet", "Result", "Submission",
           "check_gradebook", "grade_one", "grade_task", "main", "markdown_literal", "pack_submission",
           "prepare_submission", "printable", "run", "run_many"]
