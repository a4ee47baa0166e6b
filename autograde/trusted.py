"""The trusted autograde pipeline, as nbgrader preprocessor names: what `nbgrader autograde` runs in this course
(nbgrader_config.py) and in each scratch course of the cohort runner (autograde.cohort). The classes live in
autograde/referee.py; this module imports nothing, so that reading the course's configuration stays cheap.

`python -m autograde.trusted` (run by `make setup`) also makes it the default of the kit's Python environment,
so that a course configuration that fails to load does not fall back to nbgrader's untrusted pipeline.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

AUTOGRADE_PREPROCESSORS = [
    "nbgrader.preprocessors.ClearHiddenTests",     # the kernel never sees a hidden test
    "autograde.referee.SandboxedExecute",
    "autograde.referee.Referee",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
    "autograde.referee.SanitizeMarkdown",           # last: what the TA and the student read, feedback and formgrader
]


def environment_config() -> str:
    """The text of the nbgrader_config.py that install() puts in the Python environment's own Jupyter config
    folder (<sys.prefix>/etc/jupyter): the trusted pipeline only, written out, importing nothing."""
    lines = ["# Written by compresslab (python -m autograde.trusted; `make setup` runs it). nbgrader skips a course's",
             "# nbgrader_config.py that raises (an import that fails...) and grades with its defaults, which run",
             "# student code unsandboxed: whatever the course's file does, autograde in this environment is trusted.",
             "c = get_config()  # noqa: F821",
             f"c.Autograde.autograde_preprocessors = {AUTOGRADE_PREPROCESSORS!r}"]
    return "\n".join(lines) + "\n"


def install() -> Path:
    """Write environment_config() to <sys.prefix>/etc/jupyter/nbgrader_config.py; returns its path."""
    import sys
    from pathlib import Path
    path = Path(sys.prefix, "etc", "jupyter", "nbgrader_config.py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(environment_config())
    return path


if __name__ == "__main__":
    print(f"the trusted autograde pipeline is the default of this environment: {install()}")
