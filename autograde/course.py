"""Drive real nbgrader for the kit: make student work from the references, run a course, read the gradebook.

    work = make_student_work("kd", tmp / "ref")             # release notebooks + reference code, executed
    course = Course(tmp / "course")                          # an nbgrader course directory using solutions/
    course = Course.open(REPO)                               # an existing course (here the kit itself)
    course.generate("kd")
    course.submit("alice", "kd", work)
    course.autograde("kd")
    course.scores("kd", "alice")     # {("kd", "test_kd_loss"): (score, max_score), ...}

Used by the tests, the demo and the cohort runner. Everything runs in the quick profile unless told otherwise.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

from lib.artifacts import NOTEBOOKS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Protocol, Self

    from nbformat import NotebookNode

    class WorkMaker(Protocol):
        """make_student_work, or what stands in for it in reference_builder: the folder of the executed work."""

        def __call__(self, assignment: str, folder: Path, /, *, threads: int | None) -> Path: ...

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"

# Notebooks of each assignment, in the order a student runs them (later ones read earlier ones' artifacts).
# They live in lib/artifacts.py, next to the artifacts each notebook writes: `python -m lib.submit` needs both.
ASSIGNMENTS = NOTEBOOKS

# Assignments whose work reads another's from the student's folder: the kd notebook takes its teacher from
# ../slimming/artifacts when it is there. Their reference work is built after that one, side by side in one
# folder, as a student's is (make_student_work, the tests' reference_work, the demo).
RUN_AFTER = {"kd": "slimming"}

BIN = Path(sys.executable).parent   # nbgrader, and the alembic it calls, live next to this Python

# nbgrader's Gradebook runs the `alembic` command from PATH each time it opens a gradebook, in this process
# as in the nbgrader commands it starts: put the venv's bin/ on PATH, even for a .venv/bin/python started
# without activating the venv.
if str(BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def tool_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """This process's environment (the venv's bin/ on PATH, see above) plus `extra`, for a command or kernel.

    threads sets OMP_NUM_THREADS (torch's threads); None leaves it as it is.
    """
    return dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}), **extra)


def cores_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` processes running at once: the cores shared out between them
    (with more OpenMP threads than cores, every one of them waits on the others)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


SOLUTION_REGION = re.compile(r"^[ \t]*### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*\n?", re.S | re.M)


def nbgrader_id(cell: NotebookNode) -> str | None:
    """The nbgrader grade_id of a cell, or None for a cell nbgrader does not track (or whose nbgrader metadata
    is not nbgrader's: a submitted notebook's metadata can hold anything)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def reference_code(source_cell: NotebookNode) -> str:
    """A solution cell's source with the `### BEGIN/END SOLUTION` marker lines removed (the code kept)."""
    return SOLUTION_REGION.sub(r"\1", source_cell.source)


def fill_solutions(assignment: str, out_dir: str | Path, replacements: Mapping[str, str] | None = None,
                   labs: Path = LABS, solutions: Path = SOLUTIONS) -> list[Path]:
    """Write the release notebooks of `assignment` into `out_dir` with their solution cells filled in.

    A solution cell gets the reference code from solutions/, or `replacements[grade_id]` when given
    (that is how a mutant, a known-wrong answer, is planted). Returns the notebook paths, in run order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    replacements = dict(replacements or {})
    paths = []
    for name in ASSIGNMENTS[assignment]:
        release = nbformat.read(labs / assignment / f"{name}.ipynb", as_version=4)
        source = nbformat.read(solutions / assignment / f"{name}.ipynb", as_version=4)
        references = {nbgrader_id(c): reference_code(c) for c in source.cells
                      if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
        for cell in release.cells:
            cell_id = nbgrader_id(cell)
            if cell_id in replacements:
                cell.source = replacements.pop(cell_id)
            elif cell_id in references:
                cell.source = references[cell_id]
        path = out_dir / f"{name}.ipynb"
        nbformat.write(release, path)
        paths.append(path)
    if replacements:
        raise KeyError(f"no solution cell with id {sorted(replacements)} in assignment {assignment}")
    return paths


def execute(notebook: str | Path, timeout: int = 900, profile: str = "quick", threads: int | None = None,
            env: Mapping[str, str] | None = None) -> NotebookNode:
    """Run a notebook top to bottom in its own folder with nbclient (LAB_PROFILE=profile); save the outputs.

    threads sets the kernel's OMP_NUM_THREADS (torch's threads); None leaves torch's default (every core).
    env: more variables for the kernel (e.g. the preflight's LAB_PREFLIGHT). The kit's runs are pinned to
    LAB_SEED=0 (lib.train.student_seed) unless env says otherwise.
    Raises nbclient's CellExecutionError on the first failing cell (the notebook is saved up to there); a cell
    tagged "raises-exception" may fail without stopping the run (its error stays in its outputs).
    """
    from nbclient import NotebookClient
    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    kernel_env = tool_env(threads, LAB_PROFILE=profile, **{"LAB_SEED": "0", **(env or {})})
    try:
        # The kernel process's own stderr (ipykernel's start-up warnings) is not the notebook's: cell outputs
        # travel over the kernel's sockets into the notebook.
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute(env=kernel_env,
                                                                                      stderr=subprocess.DEVNULL)
    finally:
        nbformat.write(nb, notebook)
    return nb


def make_student_work(assignment: str, out_dir: str | Path, replacements: Mapping[str, str] | None = None,
                      run: bool = True, profile: str = "quick", threads: int | None = None,
                      student: str | None = None) -> Path:
    """The folder a student would submit: the filled notebooks, executed in order, and their artifacts/.

    student: run them as that student would, with the seeds drawn from their id (LAB_STUDENT); None runs the
    kit's reference work (LAB_SEED=0, what the answer keys and lib/CALIBRATION.md quote).
    """
    paths = fill_solutions(assignment, out_dir, replacements)
    env = {} if student is None else {"LAB_SEED": "", "LAB_STUDENT": student}
    if run:
        for path in paths:
            execute(path, profile=profile, threads=threads, env=env)
    return Path(out_dir)


def reference_builder(root: str | Path, make: WorkMaker | None = None, reuse: Mapping[str, str | Path] | None = None,
                      assignments: Iterable[str] | None = None, share: int = 1) -> Callable[[str], Path]:
    """build(assignment) -> the folder of `assignment`'s executed reference work, root/<assignment>.

    Each assignment is built once, whatever asks first; those in `reuse` ({assignment: folder}) are taken as
    they are. The first request builds every assignment of `assignments` (default: all) that waits for none,
    side by side, the cores shared out between them: these small models gain far less than 2x from a second
    core, so two notebooks at once finish sooner. An assignment named in RUN_AFTER is built after the one it
    reads (kd after slimming, whose teacher it takes), with every core. `share`: how many builders run at once
    (the demo's two), each taking that share of the cores. `make(assignment, folder, threads)` is
    make_student_work unless given (the demo adds progress lines, the tests give a recorder).
    """
    make = make or make_student_work
    assignments = list(ASSIGNMENTS if assignments is None else assignments)
    built = {a: Path(folder) for a, folder in (reuse or {}).items()}

    def build(assignment: str) -> Path:
        if assignment in RUN_AFTER:
            build(RUN_AFTER[assignment])
        if assignment not in built:
            side_by_side = [a for a in assignments if a not in RUN_AFTER and a not in built]
            if assignment in side_by_side:
                threads = cores_per_worker(share * len(side_by_side))
                with ThreadPoolExecutor(max_workers=len(side_by_side)) as pool:
                    built.update(zip(side_by_side, pool.map(
                        lambda a: make(a, Path(root) / a, threads=threads), side_by_side)))
            else:
                built[assignment] = make(assignment, Path(root) / assignment,
                                         threads=None if share == 1 else cores_per_worker(share))
        return built[assignment]

    return build


def course_config(root: str | Path, base: str | Path = REPO, **settings: object) -> None:
    """Write `root`/nbgrader_config.py: the course at `base`'s configuration, then `settings`.

    settings: "Class.trait" -> value (e.g. {"CourseDirectory.db_url": ...}), written as Python literals. Every
    course the kit makes (the tests', the demo's, each scratch course of the cohort runner) is configured this
    way, so each grades with exactly what a TA gets plus what it names.
    """
    lines = [f"load_subconfig('nbgrader_config.py', path={str(base)!r})"]
    lines += [f"c.{name} = {value!r}" for name, value in settings.items()]
    Path(root, "nbgrader_config.py").write_text("\n".join(lines) + "\n")


class Course:
    """An nbgrader course directory: its folders and gradebook, as its nbgrader_config.py sets them.

    Course.open(root) reads an existing course (the kit itself, a TA's course); Course(root, ...) makes a new
    one whose source is the kit's solutions/ (or `solutions`) and whose other folders lie under `root`, with
    the kit's configuration otherwise: the tests and the demo grade with exactly what a TA gets.
    """

    root: Path
    profile: str                # the LAB_PROFILE of the nbgrader commands run here
    course_id: str
    source: Path
    release: Path
    submitted: Path
    autograded: Path
    db: Path                    # the gradebook
    max_file_size: int          # bytes
    grading: Path               # nbgrader's working folders: the gradebook's

    def __init__(self, root: str | Path, solutions: str | Path = SOLUTIONS, release: str | Path = "release",
                 profile: str = "quick", extra_config: Mapping[str, object] | None = None) -> None:
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        course_config(root, base=REPO, **{
            "CourseDirectory.root": str(root),
            "CourseDirectory.source_directory": str(Path(solutions).resolve()),
            "CourseDirectory.release_directory": str(release),
            "CourseDirectory.db_url": f"sqlite:///{root / 'grading' / 'gradebook.db'}",
            "Exchange.root": str(root / "grading" / "exchange"),
            **(extra_config or {})})
        self._read(root, profile)

    @classmethod
    def open(cls, root: str | Path = REPO, profile: str | None = None) -> Self:
        course = cls.__new__(cls)
        course._read(Path(root).resolve(), profile or os.environ.get("LAB_PROFILE", "quick"))
        return course

    def _read(self, root: Path, profile: str) -> None:
        from traitlets.config.loader import PyFileConfigLoader
        self.root, self.profile = root, profile
        folders = PyFileConfigLoader("nbgrader_config.py", str(root)).load_config().CourseDirectory
        self.course_id = folders.course_id                      # the kit's: "compresslab"
        self.source = self._path(folders.source_directory)
        self.release = self._path(folders.release_directory)
        self.submitted = self._path(folders.submitted_directory)
        self.autograded = self._path(folders.autograded_directory)
        self.db = self._path(folders.db_url.removeprefix("sqlite:///"))
        self.max_file_size = folders.max_file_size * 1000       # bytes
        self.grading = self.db.parent                           # nbgrader's working folders

    def _path(self, value: str | Path) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.root / path

    @property
    def gradebook_url(self) -> str:
        return f"sqlite:///{self.db}"

    def notebooks(self, assignment: str) -> list[str]:
        return sorted(p.stem for p in (self.source / assignment).glob("*.ipynb"))

    def students(self, assignment: str) -> list[str]:
        return sorted(p.parent.name for p in self.submitted.glob(f"*/{assignment}") if p.is_dir())

    def nbgrader(self, *args: object, check: bool = True, timeout: float | None = None,
                 env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real `nbgrader` command in the course directory (or `cwd`); returns the CompletedProcess."""
        command = [str(BIN / "nbgrader"), *map(str, args)]
        environment = tool_env(threads=None, LAB_PROFILE=self.profile, **(env or {}))
        result = subprocess.run(command, cwd=cwd or self.root, env=environment, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[1:])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def generate(self, assignment: str) -> None:
        self.grading.mkdir(parents=True, exist_ok=True)
        self.nbgrader("generate_assignment", assignment, "--force")

    def submit(self, student: str, assignment: str, folder: str | Path, timestamp: str | None = None) -> Path:
        """Put `folder` where `nbgrader collect` would: <submitted>/<student>/<assignment>/; `timestamp`
        (nbgrader's text, e.g. "2030-01-01 10:00:00.000000 UTC") is recorded as the time it came in."""
        from .late import record_time
        dest = self.submitted / student / assignment
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        if timestamp is not None:
            (dest / "timestamp.txt").write_text(record_time(self.submitted, assignment, student, timestamp))
        return dest

    def autograde(self, assignment: str, student: str | None = None, check: bool = True,
                  timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        args = ["autograde", assignment, "--create", "--force"]
        if student is not None:
            args += ["--student", student]
        return self.nbgrader(*args, check=check, timeout=timeout)

    def scores(self, assignment: str, student: str) -> dict[tuple[str, str], tuple[float | None, float]]:
        """{(notebook, grade_id): (auto_score, max_score)} of the auto-graded (code) cells of a submission."""
        from nbgrader.api import Gradebook
        with Gradebook(self.gradebook_url, course_id=self.course_id) as gb:
            submission = gb.find_submission(assignment, student)
            return {(nb.name, grade.name): (grade.auto_score, grade.max_score)
                    for nb in submission.notebooks for grade in nb.grades if grade.cell.cell_type == "code"}
