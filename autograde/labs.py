"""Regenerate the student releases labs/<assignment>/ from solutions/ with `nbgrader generate_assignment`.

    python -m autograde.labs            # every assignment
    python -m autograde.labs kd         # one

Runs in the repository root, the course directory, so the gradebook (grading/gradebook.db) learns the
assignments' grade cells too, as nbgrader expects before `nbgrader autograde`.
"""
import subprocess
import sys
from pathlib import Path

from .course import ASSIGNMENTS, BIN, REPO, SOLUTIONS, tool_env


def refuse_stray_artifacts(assignment):
    """Stop before releasing an assignment whose solution notebooks were run in place."""
    stray = SOLUTIONS / assignment / "artifacts"
    if stray.exists():
        raise SystemExit(f"{stray} exists: the solution notebooks were run in place. Remove it (it would be "
                         "released to students) and run the notebooks on a copy instead.")


def generate(assignments=None, root=REPO):
    for assignment in assignments or [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]:
        refuse_stray_artifacts(assignment)
        (Path(root) / "grading").mkdir(exist_ok=True)
        command = [str(BIN / "nbgrader"), "generate_assignment", assignment, "--force"]
        subprocess.run(command, cwd=root, check=True, env=tool_env())
        print(f"labs/{assignment} regenerated from solutions/{assignment}")


if __name__ == "__main__":
    generate(sys.argv[1:])
