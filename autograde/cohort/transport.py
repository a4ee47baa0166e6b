"""What travels between the client and the workers, as plain data: the workers share no filesystem with the
client. Out: a course bundle once per assignment, and each submission inside its grading task. Back: the
submission's Result, its grades and its autograded files."""
from __future__ import annotations

import ast
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import cluster
from ..course import Course
from .gradebook import NotebookGrades
from .results import Result

# Dask warns of any task over 10 MB: it suspects data that should be loaded once and shared. Ours are large by
# design: a grading task carries one submission's files, which no other task needs, and the bundle is sent once.
LARGE_GRAPH = "distributed.admin.large-graph-warning-threshold"


@dataclass
class Graded:
    """What a worker sends back for one submission: its result, the grades nbgrader gave each notebook it
    graded (none for the others) and the submission's timestamp, read from the worker's scratch gradebook, and
    its autograded notebooks, nbgrader's log and the referee's report as tar bytes."""
    result: Result
    timestamp: datetime | None = None
    notebooks: dict[str, NotebookGrades] = field(default_factory=dict)
    files: bytes = b""


def course_bundle(course: Course, assignment: str, template: Path) -> bytes:
    """What a worker needs of the course to grade `assignment`, as tar bytes: nbgrader_config.py (the
    course's configuration resolved here into plain values: a worker has the kit, not this course's files),
    source/<assignment>/, release/<assignment>/ (what students started from: the repair puts missing cells
    back from it) and grading/gradebook.db (the gradebook `template`, as it was before this run)."""
    from traitlets.config.loader import PyFileConfigLoader
    config = PyFileConfigLoader("nbgrader_config.py", str(course.root)).load_config()
    lines = [f"c.{section}.{name} = {_literal(value)!r}" for section, traits in config.items()
             for name, value in traits.items()]
    lines += ["c.CourseDirectory.source_directory = 'source'", "c.CourseDirectory.release_directory = 'release'",
              "c.CourseDirectory.db_url = 'sqlite:///grading/gradebook.db'"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(course.source / assignment, root / "source" / assignment, symlinks=True)
        if (course.release / assignment).is_dir():
            shutil.copytree(course.release / assignment, root / "release" / assignment, symlinks=True)
        (root / "grading").mkdir()
        shutil.copy(template, root / "grading" / "gradebook.db")
        (root / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n")
        return cluster.pack(root)


def _literal(value: Any) -> Any:
    """A configuration value as a Python literal: a class becomes its import path (traitlets takes either)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (list, tuple)):
        return type(value)(_literal(v) for v in value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    ast.literal_eval(repr(value))         # anything else must already be one (ValueError otherwise)
    return value


def as_is(data: bytes) -> bytes:
    """The bundle task: its data, as the client gave it."""
    return data
