"""Regenerate the student releases labs/<assignment>/ from solutions/ with `nbgrader generate_assignment`.

    python -m autograde.labs            # every assignment (`make labs`)
    python -m autograde.labs kd         # one

Runs in the repository root, the course directory, so the gradebook (grading/gradebook.db) learns the
assignments' grade cells too, as nbgrader expects before `nbgrader autograde`.

Whichever command releases, `make labs`, a plain `nbgrader generate_assignment` or the formgrader's button,
a solutions/<assignment>/artifacts/ folder (left by running a solution notebook in place) is refused before
anything is written or deleted: nbgrader_config.py puts RefuseStrayArtifacts first in nbgrader's release
pipeline.
"""
from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbconvert.preprocessors import Preprocessor

from .course import ASSIGNMENTS, BIN, REPO, SOLUTIONS, tool_env

if TYPE_CHECKING:
    from collections.abc import Iterable

    from nbformat import NotebookNode


def stray_artifacts(source: str | Path) -> str | None:
    """The message refusing to release the assignment folder `source`, or None when it may be released.

    A solution notebook run in place writes its checkpoints into source/artifacts/; nbgrader would copy
    that folder into the release, reference weights and all.
    """
    stray = Path(source) / "artifacts"
    if not stray.exists():
        return None
    return (f"{stray} exists: the solution notebooks were run in place. Remove it (it would be released to "
            "students) and run the notebooks on a copy instead.")


def refuse_stray_artifacts(*assignments: str) -> None:
    """Stop (SystemExit naming every stray folder) before releasing any of `assignments`."""
    problems = [p for p in (stray_artifacts(SOLUTIONS / a) for a in assignments) if p]
    if problems:
        raise SystemExit("\n".join(problems))


class RefuseStrayArtifacts(Preprocessor):
    """The release guard inside nbgrader (nbgrader_config.py lists it first in GenerateAssignment.preprocessors).

    nbgrader builds its preprocessors before it deletes the old release (`--force`) and copies the source
    folder's files: the last moment a configuration can stop a release. So the check runs on construction;
    on notebooks it changes nothing. Raises nbgrader's NbGraderException, which nbgrader reports as an
    error (exit status 1) with the log line above it, and the committed labs/ is left as it was.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from nbgrader.converters.base import NbGraderException
        coursedir = self._course_directory()
        pattern = coursedir.format_path(coursedir.source_directory, ".", coursedir.assignment_id)
        problems = [p for p in (stray_artifacts(source) for source in sorted(glob.glob(pattern))) if p]
        for problem in problems:
            self.log.error(problem)
        if problems:
            raise NbGraderException("\n".join(problems))

    def _course_directory(self) -> Any:
        """nbgrader's CourseDirectory of the command running: found up the chain exporter -> converter."""
        owner = self.parent
        while owner is not None and getattr(owner, "coursedir", None) is None:
            owner = owner.parent
        if owner is None:
            raise RuntimeError("RefuseStrayArtifacts runs inside nbgrader's GenerateAssignment only")
        return owner.coursedir

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        return nb, resources


def generate(assignments: Iterable[str] | None = None, root: str | Path = REPO) -> None:
    """`nbgrader generate_assignment --force` for each of `assignments` (default: all), in the course `root`.

    Every assignment is checked for stray artifacts before any is regenerated.
    """
    assignments = list(assignments or [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()])
    refuse_stray_artifacts(*assignments)
    for assignment in assignments:
        command = [str(BIN / "nbgrader"), "generate_assignment", assignment, "--force"]
        subprocess.run(command, cwd=root, check=True, env=tool_env())
        print(f"labs/{assignment} regenerated from solutions/{assignment}")


if __name__ == "__main__":
    generate(sys.argv[1:])
