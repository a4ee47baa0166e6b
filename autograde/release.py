"""`make release`: the student bundle, dist/compresslab-student/ and dist/compresslab-student.zip.

It holds labs/, lib/, data/ (embedded sets and their scripts and cards), environment.yml, a student
README and a pyproject that installs `lib` only. Before zipping, it checks that no reference code got in:
no solution regions, no hidden tests, nothing of autograde/, no artifacts.
"""
import re
import shutil
import sys
from pathlib import Path

from .course import REPO

BUNDLE = "compresslab-student"
INCLUDE = ["labs", "lib", "data", "environment.yml"]
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

    python3.11 -m venv .venv && .venv/bin/pip install -e .        # or: conda env create -f environment.yml
    .venv/bin/jupyter lab labs/

Everything runs offline on a laptop CPU in the default quick profile (embedded data sets, small models,
a few minutes per notebook). On a GPU, `LAB_PROFILE=full jupyter lab labs/` downloads CIFAR-10 and Speech
Commands and trains with the published hyperparameters.

## Submitting

Fill in the cells marked `YOUR CODE HERE` / `YOUR ANSWER HERE`, run each notebook top to bottom, and
submit the whole assignment folder, **including its `artifacts/` folder**: the grader loads your saved
checkpoints and histories instead of training again. Do not rename, delete or copy the graded cells.
"""

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


def dependencies():
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    return [d for d in re.findall(r'"([^"]+)"', block)]


def check(bundle):
    """Raise SystemExit naming every file that carries reference material."""
    leaks = []
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


def build(dist=REPO / "dist"):
    bundle = Path(dist) / BUNDLE
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    for name in INCLUDE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, bundle / name, ignore=SKIP)
        else:
            shutil.copy(source, bundle / name)
    (bundle / "README.md").write_text(STUDENT_README)
    deps = [d for d in dependencies() if not d.startswith(("nbgrader", "pytest", "selenium"))]  # grading and tests
    (bundle / "pyproject.toml").write_text(STUDENT_PYPROJECT.format(dependencies=deps).replace("'", '"'))
    check(bundle)
    archive = shutil.make_archive(str(bundle), "zip", root_dir=dist, base_dir=BUNDLE)
    print(f"Student bundle: {bundle}/ and {archive} (checked: no solutions, no hidden tests, no autograde)")
    return bundle


if __name__ == "__main__":
    build(*sys.argv[1:])
