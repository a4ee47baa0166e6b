"""Preflight of a profile: every notebook run for one short epoch per training run, timed and projected.

    python -m autograde.preflight --profile full              # on the machine the course will train on
    python -m autograde.preflight --profile full --batches 5  # more batches per epoch: steadier timings

Before a class trains the full profile for hours on a GPU, this runs all five reference notebooks in the
course order (autograde.course: make_student_work, RUN_AFTER) with the profile's data sets, models, devices
and artifact names, but every training run lasts one epoch of a few batches (lib.profile.PREFLIGHT,
LAB_PREFLIGHT=<batches>). Then
  - the artifact checks of the grader (autograde.referee.verdicts) run on the artifacts the notebooks wrote,
    with the thresholds lowered to 0 (a few batches cannot reach them), and every checkpoint is loaded as the
    grader loads it (weights_only);
  - the training runs each notebook made are compared with the ones the profile asks for (RUNS below): a
    renamed or missing artifact shows up here, not hours into a class;
  - each run's measured seconds per batch are scaled to its full epoch (the loaders' real batch counts) and
    multiplied by the profile's epochs: the projected wall time of every notebook on this device.

The full profile needs CIFAR-10 in data/cifar10 and Speech Commands v2 in data/speech_commands (nothing is
downloaded here: a missing data set is reported with the command that fetches it, and its notebooks skipped).
Exit status: 0 when every notebook ran and its checks ran, 1 when one failed, 2 when data was missing.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from .course import ASSIGNMENTS, RUN_AFTER, execute, fill_solutions, nbgrader_id
from lib import profile as lab_profile
from lib.artifacts import (CHECKPOINT_SUFFIX, FOLDER, HISTORY_SUFFIX, SINCNET_FLOAT, SINCNET_PRUNED, STUDENT_KD,
                           STUDENT_SCRATCH, checkpoint_file, checkpoint_path, in_sweep, kd_student_runs, kd_sweep_runs,
                           qat_runs, slimming_runs)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

    from lib.train import History

DOWNLOAD = ('python -c "from lib.data import images, speech; images.loaders(\'full\'); speech.loaders(\'full\')"'
            "   # CIFAR-10 170 MB, Speech Commands 2.3 GB, into data/")
VERDICTS = ("AssertionError", "VisibleCheckFailed")   # a check's verdict, not a broken code path


# ------------------------------------------------------------------------------------- the training runs

@dataclass(frozen=True)
class Run:
    """One training run of a notebook: the checkpoint fit() saves (relative to artifacts/) and its epochs.

    timed_like: another run with the same network, data and step, whose timing this one borrows when the
    preflight does not train it (the kd sweep reuses the student runs when both have the same epochs).
    """
    notebook: str
    artifact: str
    epochs: int
    timed_like: str | None = None


def runs(profile: str, preflight: bool = False) -> list[Run]:
    """[Run] of every training run the reference notebooks make in `profile`, in order, as they decide them.

    preflight: with lib.profile's PREFLIGHT override (what this preflight trains). Kept next to the notebooks'
    code on purpose: the preflight compares it with the runs they made, so a change to either is caught.
    """
    def config(section: str) -> dict[str, Any]:
        return lab_profile.config(section, profile, preflight=preflight)

    vgg, slim, sincnet, sq, kd = (config(s) for s in ("vgg", "slimming", "sincnet", "sincnet_quant", "kd"))
    slimming = slimming_runs(slim)
    epochs = dict(train=vgg["epochs"], sweep=vgg["epochs"], finetune=slim["finetune_epochs"],
                  controls=slim["finetune_epochs"], baseline=slim["finetune_epochs"],
                  whole=vgg["epochs"] + slim["finetune_epochs"])
    notebook = dict(train="sparsity_train", sweep="sparsity_train")
    found = [Run(notebook.get(role, "train_prune_model"), checkpoint_file(name), epochs[role])
             for role, names in slimming.items() for name in names]
    found += [Run("sincnet_quant", checkpoint_file(SINCNET_FLOAT), sincnet["epochs"]),
              Run("sincnet_quant", checkpoint_file(SINCNET_PRUNED), sq["finetune"]["epochs"]),
              *(Run("sincnet_quant", checkpoint_file(name), sq["qat"]["epochs"]) for _, name in qat_runs(sq))]
    # kd: the teacher comes from the slimming assignment (run before it). The sweep trains only the runs it does
    # not reuse (lib.artifacts.kd_sweep_runs); each is timed like the student run it repeats, when there is one.
    student, sweep = kd["student"]["epochs"], kd["sweep"]["epochs"]
    found += [Run("kd", checkpoint_file(name), student) for _, _, name in kd_student_runs(kd)]
    for name, T, alpha in kd_sweep_runs(kd):
        if in_sweep(name):
            like = (checkpoint_file(STUDENT_SCRATCH) if T is None else
                    checkpoint_file(STUDENT_KD) if (T, alpha) == (kd["T"], kd["alpha"]) else None)
            found.append(Run("kd", checkpoint_file(name), sweep, like))
    return found


# ---------------------------------------------------------------------------------------------- the data

def missing_data(profile: str) -> dict[str, str]:
    """{assignment: what is missing} for the assignments whose data set is not on this machine ({} if none).

    Loads each data set the way the notebooks do, without downloading.
    """
    if profile != "full":
        return {}                                   # the quick profile's data sets are in the repository
    from lib.data import images, speech
    missing: dict[str, str] = {}
    try:
        for train in (True, False):
            images.cifar10(train, download=False)
    except RuntimeError as error:
        for assignment in ("slimming", "kd"):
            missing[assignment] = f"CIFAR-10 in {lab_profile.DATA_DIR / 'cifar10'}: {error}"
    root = lab_profile.DATA_DIR / "speech_commands"
    try:
        if not all(len(speech.SpeechCommandsKeywords(root, subset, download=False)) for subset in speech.SUBSETS):
            raise RuntimeError("a split has none of the ten keywords")
    except (RuntimeError, OSError) as error:
        missing["sincnet_quant"] = f"Speech Commands v2 in {root}: {error}"
    return missing


# ------------------------------------------------------------------------------------- running a notebook

@dataclass
class Result:
    """What the preflight found for one notebook."""
    notebook: str
    assignment: str
    seconds: float = 0.0                               # wall time of the preflight run
    error: str | None = None                           # the cell that failed, and how
    runs: dict[str, Timing | None] = field(default_factory=dict)       # artifact -> its Timing (None: not trained)
    checks: list[tuple[str, str | None]] = field(default_factory=list)  # (check, None or its verdict)
    check_seconds: float = 0.0                         # how long the grader's checks took on this machine
    skipped: str | None = None                         # why it did not run (missing data)


def allow_verdicts(notebook: str | Path) -> None:
    """Tag the notebook's grade cells "raises-exception": a test that fails on a threshold does not stop it.

    The failures stay in the cells' outputs; grade_cell_errors() tells verdicts from broken code.
    """
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
    nbformat.write(nb, notebook)


def cell_errors(notebook: str | Path) -> list[tuple[str, str, str]]:
    """[(grade_id or cell index, ename, evalue)] of every cell of an executed notebook that raised."""
    nb = nbformat.read(notebook, as_version=4)
    return [(nbgrader_id(cell) or f"cell {i}", out.ename, out.evalue)
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.output_type == "error"]


@dataclass(frozen=True)
class Timing:
    """One preflight run's measurements, scaled to a full epoch of the profile's data."""
    batch_seconds: float        # the median training step (the first pays for warm-up: memory, kernels, caches)
    batches: int                # training batches in a full epoch (the train loader's length)
    epoch_seconds: float        # batch_seconds x batches + the validation, scaled the same way


def timing(history: History) -> Timing:
    """The Timing of a preflight run, from its History's (single) record (lib.train.fit writes its fields)."""
    record = history.records[0]
    batch_seconds = statistics.median(record["batch_times"])
    validation = record["val_time"] / record["val_batches"] * record["val_batches_per_epoch"]
    return Timing(batch_seconds, record["batches_per_epoch"],
                  batch_seconds * record["batches_per_epoch"] + validation)


def trained_runs(artifacts: str | Path, copied_from: str | Path | None = None) -> dict[str, Timing]:
    """{artifact: Timing} of every run fit() saved under `artifacts` in this preflight.

    copied_from: the artifacts folder of the assignment this one reads (RUN_AFTER): a history copied from
    there (kd's teacher.json) was trained by that assignment, not by this one.
    """
    from lib.train import History
    found: dict[str, Timing] = {}
    histories = f"*{HISTORY_SUFFIX}"
    copies = {p.read_bytes() for p in Path(copied_from).rglob(histories)} if copied_from else set()
    for path in sorted(Path(artifacts).rglob(histories)):
        if path.read_bytes() in copies:
            continue
        try:
            history = History.load(path)
        except ValueError:                          # a JSON file that is not a history (kd: student_cfg.json)
            continue
        if history.records and "batch_times" in history.records[0]:
            found[checkpoint_path(path).relative_to(artifacts).as_posix()] = timing(history)
    return found


def run_checks(assignment: str, artifacts: Path) -> list[tuple[str, str | None]]:
    """[(check name, None or its verdict)]: the grader's artifact checks of `assignment` on `artifacts`.

    A check that raises anything but an AssertionError (a verdict) propagates: the grading itself is broken.
    The verdicts themselves mostly pass: the preflight's override lowers the thresholds to 0.
    Every checkpoint is also loaded as the grader loads it (lib.checkpoint, weights_only).
    """
    from lib.checkpoint import load_checkpoint
    from .referee import verdicts
    results: list[tuple[str, str | None]] = []
    for path in sorted(Path(artifacts).rglob(f"*{CHECKPOINT_SUFFIX}")):
        load_checkpoint(path)
    for verdict in verdicts(assignment).values():
        for check in verdict.checks:
            try:
                check(artifacts)
                results.append((check.__name__, None))
            except AssertionError as failure:
                results.append((check.__name__, f"{type(failure).__name__}: {failure}"))
    return results


def preflight_assignment(assignment: str, work: str | Path, profile: str, batches: int, timeout: int) -> list[Result]:
    """Run `assignment`'s notebooks in `work`/<assignment>; [Result] per notebook, in order."""
    folder = Path(work) / assignment
    shutil.rmtree(folder / FOLDER, ignore_errors=True)     # an earlier preflight's runs would be counted
    results: list[Result] = []
    for notebook in fill_solutions(assignment, folder):
        allow_verdicts(notebook)
        result = Result(notebook.stem, assignment)
        results.append(result)
        start = time.time()
        try:
            execute(notebook, timeout=timeout, profile=profile, env={lab_profile.PREFLIGHT_VARIABLE: str(batches)})
        except Exception as error:                  # nbclient's CellExecutionError, a timeout, a dead kernel
            result.error = _first_line(error)
        result.seconds = time.time() - start
        broken = [(cell, ename, evalue) for cell, ename, evalue in cell_errors(notebook) if ename not in VERDICTS]
        if broken and result.error is None:
            cell, ename, evalue = broken[0]
            result.error = f"{cell}: {ename}: {evalue}"
        if result.error:
            break                                    # the next notebooks read this one's artifacts
    artifacts = folder / FOLDER
    reads = RUN_AFTER.get(assignment)
    trained = trained_runs(artifacts, Path(work) / reads / FOLDER if reads else None)
    for result in results:
        result.runs = {run.artifact: trained.get(run.artifact) for run in runs(profile, preflight=True)
                       if run.notebook == result.notebook}
    if not any(r.error for r in results):
        try:
            start = time.time()
            results[-1].checks = run_checks(assignment, artifacts)
            results[-1].check_seconds = time.time() - start
        except Exception as error:                  # not a verdict: the grading itself broke on these artifacts
            results[-1].error = f"the grader's checks: {type(error).__name__}: {error}"[:500]
            return results
        expected = {run.artifact for run in runs(profile, preflight=True) if run.notebook in ASSIGNMENTS[assignment]}
        if set(trained) != expected:
            results[-1].error = (f"the notebooks trained {sorted(trained)}, the profile's runs are {sorted(expected)}"
                                 " (autograde/preflight.py, runs()): an artifact was renamed, added or lost")
    return results


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"[:500]


# ---------------------------------------------------------------------------------------------- the report

def device_name() -> str:
    """The device the notebooks train on here, in words (lib.profile.device)."""
    import torch
    device = lab_profile.device()
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{device.type}: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def run_timings(profile: str, results: Sequence[Result]) -> list[tuple[Run, Timing | None]]:
    """[(Run, Timing or None)] of every training run of the profile, from the preflight's measured runs."""
    measured = {artifact: found for result in results for artifact, found in result.runs.items() if found}
    return [(run, measured.get(run.artifact) or (measured.get(run.timed_like) if run.timed_like else None))
            for run in runs(profile)]


def projection(profile: str, results: Sequence[Result]) -> dict[str, tuple[int, int, float | None]]:
    """{notebook: (runs, epochs, projected seconds or None)} of the whole profile, from the measured runs."""
    table: dict[str, tuple[int, int, float | None]] = {}
    for run, found in run_timings(profile, results):
        count, epochs, total = table.get(run.notebook, (0, 0, 0.0))
        total = None if found is None or total is None else total + run.epochs * found.epoch_seconds
        table[run.notebook] = (count + 1, epochs + run.epochs, total)
    return table


def report_runs(profile: str, results: Sequence[Result], out: TextIO = sys.stdout) -> None:
    """Print one row per training run of the profile: where each notebook's hours go."""
    print(f"\n| training run | notebook | epochs ({profile}) | batches per epoch | seconds per batch | "
          "seconds per epoch | projected |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for run, found in run_timings(profile, results):
        if found is None:
            print(f"| {run.artifact} | {run.notebook} | {run.epochs} | - | - | - | - |", file=out)
            continue
        like = f" (timed as {run.timed_like})" if run.artifact not in results_runs(results) else ""
        print(f"| {run.artifact}{like} | {run.notebook} | {run.epochs} | {found.batches} | "
              f"{found.batch_seconds:.3f} | {found.epoch_seconds:.1f} | {_hours(run.epochs * found.epoch_seconds)} |",
              file=out)


def results_runs(results: Sequence[Result]) -> set[str]:
    """The artifacts of the runs the preflight trained and timed."""
    return {artifact for result in results for artifact, found in result.runs.items() if found}


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.2f} h"


def report(profile: str, batches: int, results: Sequence[Result], out: TextIO = sys.stdout) -> float | None:
    """Print the table: one row per notebook, then the whole profile; returns the projected seconds (or None).

    A notebook that did not run (no data, or it failed) has no projection ("-"), and then neither has the whole.
    """
    table = projection(profile, results)
    print(f"\n| notebook | training runs | epochs ({profile}) | seconds per epoch | projected | preflight | checks |",
          file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    total_runs = total_epochs = 0
    total_wall = 0.0
    total: float | None = 0.0
    for result in results:
        count, epochs, seconds = table.get(result.notebook, (0, 0, 0.0))
        if result.skipped or result.error:
            seconds = None
        per_epoch = "-" if seconds is None or not epochs else f"{seconds / epochs:.2f}"
        passed = sum(verdict is None for _, verdict in result.checks)
        checks = f"{passed} of {len(result.checks)} pass ({result.check_seconds:.0f} s)" if result.checks else ""
        state = "no data" if result.skipped else "FAILED" if result.error else f"{result.seconds:.0f} s"
        print(f"| {result.notebook} | {count} | {epochs} | {per_epoch} | {_hours(seconds)} | {state} | {checks} |",
              file=out)
        total_runs, total_epochs, total_wall = total_runs + count, total_epochs + epochs, total_wall + result.seconds
        total = None if total is None or seconds is None else total + seconds
    print(f"| all notebooks | {total_runs} | {total_epochs} | | {_hours(total)} | {total_wall:.0f} s | |", file=out)
    print(f"\nprojected wall time of profile '{profile}' on this device: {_hours(total)} "
          f"(each run: median seconds per batch of {batches} x batches per epoch x epochs)", file=out)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograde.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=lab_profile.PROFILES, default="full")
    parser.add_argument("--batches", type=int, default=3, help="batches per epoch of each run (default 3)")
    parser.add_argument("--work", type=Path, help="folder for the notebooks and artifacts (default: a new one "
                                                  "under the system's temporary folder, kept)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take (default 1800)")
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error("--batches must be at least 1")
    work = args.work or Path(tempfile.mkdtemp(prefix=f"preflight-{args.profile}-"))
    # The checks run in this process: they read the profile and the preflight's override from the environment.
    os.environ.update(LAB_PROFILE=args.profile, **{lab_profile.PREFLIGHT_VARIABLE: str(args.batches)})

    import torch
    print(f"preflight of profile '{args.profile}': {args.batches} batches per epoch, 1 epoch per run")
    print(f"device: {device_name()}; torch {torch.__version__}")
    print(f"notebooks and artifacts: {work}")
    start = time.time()
    missing = missing_data(args.profile)
    print(f"data sets checked in {time.time() - start:.0f} s")
    for assignment, what in missing.items():
        print(f"no data for {assignment}: {what}")
    if missing:
        print(f"download the data sets once (on a machine with internet) with:\n  {DOWNLOAD}")

    results: list[Result] = []
    for assignment, notebooks in ASSIGNMENTS.items():
        if assignment in missing:
            results += [Result(name, assignment, skipped=missing[assignment]) for name in notebooks]
            continue
        print(f"running {assignment}: {', '.join(notebooks)} ...", flush=True)
        done = preflight_assignment(assignment, work, args.profile, args.batches, args.timeout)
        done += [Result(name, assignment, error="not run: an earlier notebook failed")
                 for name in notebooks[len(done):]]
        results += done
    report_runs(args.profile, results)
    report(args.profile, args.batches, results)
    for result in results:
        if result.error:
            print(f"FAILED {result.notebook}: {result.error}")
        for check, verdict in result.checks:
            if verdict:
                print(f"check {result.assignment}/{check}: {verdict.splitlines()[0][:300]}")
    if any(r.error for r in results):
        return 1
    return 2 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
