"""`make release`: the student bundle, dist/compresslab-student/ and dist/compresslab-student.zip.

It holds labs/, lib/, data/ (embedded sets and their scripts and cards), a student README, a pyproject and
an environment.yml that install `lib` and nbgrader's student side (Validate, the Assignment List, `nbgrader
submit`), and the students' nbgrader_config.py (the course id, and the exchange folder of a shared JupyterHub:
`python -m autograde.release --exchange /path`). `python -m lib.submit <assignment>` zips work for an LMS. Before zipping, it checks that no reference code got in:
no solution regions, no hidden tests, nothing of autograde/, no artifacts.
"""
from __future__ import annotations

import argparse
import re
import shutil
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from .course import REPO

if TYPE_CHECKING:
    from collections.abc import Sequence

BUNDLE = "compresslab-student"
INCLUDE = ["labs", "lib", "data"]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "artifacts", "cifar10",
                              "speech_commands", "*.egg-info")
FORBIDDEN = [
    (re.compile(r"### BEGIN SOLUTION|### END SOLUTION"), "a solution region"),
    (re.compile(r"### BEGIN HIDDEN TESTS|### END HIDDEN TESTS"), "a hidden-test region"),
    (re.compile(r"(from|import)\s+autograde\b|autograde\.(checks|reference|mutants)"), "use of the autograde package"),
]

STUDENT_README = """# compresslab: model-compression labs

Three assignments, five notebooks, in `labs/`:

| assignment | notebooks |
|---|---|
| slimming | sparsity_train, vggprune, train_prune_model (run them in this order) |
| sincnet_quant | sincnet_quant |
| kd | kd |

## Set up (once)

In a terminal, in this folder:

    python3.11 -m venv .venv && .venv/bin/pip install -e .        # or: conda env create -f environment.yml
    source .venv/bin/activate                                     # or: conda activate compresslab

Every command below runs in this folder with that environment active (activate it in each new terminal):

    jupyter lab                         # then open labs/<assignment>/<notebook>.ipynb

Everything runs offline on a laptop CPU in the default quick profile (embedded data sets, small models,
a few minutes per notebook). On a GPU, `LAB_PROFILE=full jupyter lab` downloads CIFAR-10 and Speech
Commands and trains with the published hyperparameters.

## Check your work

Fill in the cells marked `YOUR CODE HERE` / `YOUR ANSWER HERE` and run each notebook top to bottom: it
saves its checkpoints and histories under `artifacts/`, which the grader loads instead of training again.
The **Validate** button on the notebook's toolbar (nbgrader) checks a saved notebook: failing tests, cells
left unanswered. In a terminal:

    nbgrader validate labs/kd/kd.ipynb

The grader runs more tests than the ones you see. Do not rename, delete or copy the graded cells.

## Submitting

Hand in each assignment's notebooks **with its `artifacts/` folder**. Your course collects work in one of
two ways; your instructor says which.

**By upload** (Moodle, Canvas...): zip the assignment and upload the zip.

    python -m lib.submit kd             # writes kd.zip here, from labs/kd/: upload that file

It packs the notebooks and `artifacts/` with a manifest (size and SHA-256 of every file, which the grader
checks), and lists first what would cost you points: a missing notebook or artifact (with the notebook that
writes it), or a file over the grader's size limit.

**On the course's JupyterHub** (nbgrader's exchange): in JupyterLab, *Nbgrader > Assignment List*: *Fetch*
an assignment (it lands in `compresslab/<assignment>/`), work on it there, run it, then *Submit*. The same
in a terminal:

    nbgrader fetch_assignment kd        # copies the assignment into compresslab/kd/
    nbgrader submit kd                  # hands in compresslab/kd/, artifacts/ included

`nbgrader_config.py` in this folder names the course for nbgrader (the exchange folder is the hub's, or
the one your instructor wrote there). Submit again whenever you like: the last submission is graded.
"""

STUDENT_ENVIRONMENT = """# conda env create -f environment.yml && conda activate compresslab
# Installs what pyproject.toml lists (PyTorch, JupyterLab, nbgrader's student side...), with lib in editable mode.
name: compresslab
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
      - -e .
"""

# nbgrader's student side reads this file when started in the bundle's folder (Jupyter, `nbgrader submit`).
STUDENT_NBGRADER_CONFIG = '''"""nbgrader for students: the Validate button, the Assignment List, `nbgrader fetch_assignment` / `submit`.

nbgrader reads this file when Jupyter or the nbgrader command starts in this folder.
"""
c = get_config()  # noqa: F821  (nbgrader provides get_config)

c.CourseDirectory.course_id = {course_id!r}
c.Exchange.path_includes_course = {path_includes_course!r}   # fetched work goes to {course_id}/<assignment>/
{exchange_line}   # the course's shared exchange folder, where its JupyterHub keeps submissions

# Validate reports every failing cell, in full: a cell that needs a missing artifact names the notebook that
# makes it (the grade cells after it would only say NameError).
c.Validator.validate_all = {validate_all!r}
c.Validator.width = {validator_width!r}
'''

STUDENT_PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "compresslab-student"
version = "0.1.0"
requires-python = ">=3.11,<3.12"
dependencies = {dependencies}

[tool.setuptools.packages.find]
include = ["lib*"]
"""


def dependencies() -> list[str]:
    """The kit's runtime dependencies (pyproject.toml's [project] list): what students install. The grader's
    and the tests' are extras there (grading, test), which the bundle leaves out."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def check(bundle: Path) -> None:
    """Raise SystemExit naming every file that carries reference material."""
    leaks: list[str] = []
    for path in sorted(bundle.rglob("*")):
        if path.is_dir():
            if path.name in ("autograde", "solutions", "artifacts"):
                leaks.append(f"{path.relative_to(bundle)}: a folder students must not get")
            continue
        if path.suffix not in (".py", ".ipynb", ".md", ".txt", ".yml", ".toml", ".json"):
            continue
        text = path.read_text(errors="replace")
        leaks += [f"{path.relative_to(bundle)}: {what}" for pattern, what in FORBIDDEN if pattern.search(text)]
    if leaks:
        raise SystemExit("The student bundle would leak reference material:\n  " + "\n  ".join(leaks))


def student_nbgrader_config(exchange: str | Path | None = None) -> str:
    """The students' nbgrader_config.py: the kit's course id and exchange layout, and the exchange folder when
    given (otherwise the JupyterHub's own nbgrader configuration names it: this file must not override it)."""
    from traitlets.config.loader import PyFileConfigLoader
    kit = PyFileConfigLoader("nbgrader_config.py", str(REPO)).load_config()
    exchange_line = f"c.Exchange.root = {str(exchange)!r}" if exchange else '# c.Exchange.root = "/path/to/exchange"'
    return STUDENT_NBGRADER_CONFIG.format(course_id=kit.CourseDirectory.course_id,
                                          path_includes_course=kit.Exchange.path_includes_course,
                                          exchange_line=exchange_line,
                                          validate_all=kit.Validator.validate_all, validator_width=kit.Validator.width)


def build(dist: str | Path = REPO / "dist", exchange: str | Path | None = None) -> Path:
    """Write the bundle under `dist` (and its zip); `exchange`: the JupyterHub's exchange folder, if known."""
    bundle = Path(dist) / BUNDLE
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    for name in INCLUDE:
        shutil.copytree(REPO / name, bundle / name, ignore=SKIP)
    (bundle / "README.md").write_text(STUDENT_README)
    (bundle / "environment.yml").write_text(STUDENT_ENVIRONMENT)
    (bundle / "nbgrader_config.py").write_text(student_nbgrader_config(exchange))
    (bundle / "pyproject.toml").write_text(STUDENT_PYPROJECT.format(dependencies=dependencies()).replace("'", '"'))
    check(bundle)
    archive = shutil.make_archive(str(bundle), "zip", root_dir=dist, base_dir=BUNDLE)
    print(f"Student bundle: {bundle}/ and {archive} (checked: no solutions, no hidden tests, no autograde)")
    return bundle


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the student bundle dist/compresslab-student/ (+ .zip).")
    parser.add_argument("dist", nargs="?", default=str(REPO / "dist"), help="where to write it (default: dist/)")
    parser.add_argument("--exchange", help="the exchange folder of the course's JupyterHub, written into the "
                                           "students' nbgrader_config.py (default: left to the hub's config)")
    args = parser.parse_args(argv)
    build(args.dist, args.exchange)


if __name__ == "__main__":
    main()
