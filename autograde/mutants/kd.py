"""Known-wrong answers to the kd TODO (MUTANTS: each must lose the points of test_kd_loss, and only those) and
wrong workflows of the notebook (ARTIFACT_MUTANTS: each must lose the points of test_kd_student, and only those)."""
from pathlib import Path
from typing import Any

from autograde.checks.kd_runs import sweep_runs
from lib import profile
from lib.artifacts import STUDENT_KD, STUDENT_SCRATCH, run_files

from . import ArtifactMutant, Edit, Mutant, MutantBuildError, copy_run, patched, start_from


def _kd_loss(name: str, *edits: Edit) -> Mutant:
    """The reference kd_loss cell with `edits` made."""
    return Mutant(name, "kd", "kd_loss", "test_kd_loss", patched("kd", "kd", "kd_loss", *edits))


MUTANTS = [
    _kd_loss("missing T^2", ('reduction="batchmean") * T * T', 'reduction="batchmean")')),
    # KL(student || teacher): the teacher's log-probabilities as input, the student's probabilities as target
    _kd_loss("reversed KL", ("F.log_softmax(student_logits", "F.log_softmax(teacher_logits"),
             ("F.softmax(teacher_logits", "F.softmax(student_logits")),
    _kd_loss("softmax instead of log_softmax", ("F.log_softmax(student_logits", "F.softmax(student_logits")),
    _kd_loss("'mean' reduction instead of 'batchmean'", ('reduction="batchmean"', 'reduction="mean"')),
    # the student's side detached: the value is right, but no gradient reaches the student
    _kd_loss("student logits detached in the soft term",
             ("F.log_softmax(student_logits / T", "F.log_softmax(student_logits.detach() / T")),
]


# ------------------------------------------------------------------------------------ artifact mutants
#
# Wrong workflows of kd.ipynb; all are judged by test_kd_student (check_kd_student, and the checks of autograde.checks.kd_runs
# of the sweep and of the distillation). The notebook is the reference's.


def _kd_settings() -> dict[str, Any]:
    """The profile's "kd" section."""
    return profile.config("kd")


def _kd_without_teacher(reference: Path, dest: Path) -> None:
    """The KD student trained with alpha = 0 (the soft term weighted 0: the teacher never counts), its history
    recording the profile's alpha. alpha = 0 makes kd_loss the cross-entropy exactly, with the same seed and
    batches as the scratch student: the run is the scratch run, bit for bit."""
    artifacts = start_from(reference, dest)
    config = _kd_settings()
    copy_run(artifacts, STUDENT_SCRATCH, STUDENT_KD, T=config["T"], alpha=config["alpha"])


def _kd_saved_by_a_sweep_run(reference: Path, dest: Path) -> None:
    """The sweep cell saved its run with the KD student's T and the other alpha (T = 4, alpha = 0.9) under the
    name student_kd, over the KD student: student_kd is that run, and the sweep's own file was never written."""
    artifacts = start_from(reference, dest)
    config = _kd_settings()
    runs = [name for name, T, alpha, _ in sweep_runs(config)
            if T == config["T"] and alpha != config["alpha"] and name != STUDENT_KD]
    if not runs:
        raise MutantBuildError("the profile's sweep has no run with the KD student's T and another alpha")
    copy_run(artifacts, runs[0], STUDENT_KD)
    for file in run_files(runs[0]):
        (artifacts / file).unlink()


def _sweep_faked(reference: Path, dest: Path) -> None:
    """The sweep not trained: each of its files is a copy of student_kd with that run's T and alpha written
    into the history."""
    artifacts = start_from(reference, dest)
    faked = 0
    for name, T, alpha, _ in sweep_runs(_kd_settings()):
        if T is not None and name != STUDENT_KD:
            copy_run(artifacts, STUDENT_KD, name, T=T, alpha=alpha)
            faked += 1
    if not faked:
        raise MutantBuildError("the profile's sweep has no run of its own to fake")


ARTIFACT_MUTANTS = [
    ArtifactMutant("KD student trained with alpha 0 (no teacher), recorded as the profile's alpha", "kd",
                   "test_kd_student", _kd_without_teacher),
    ArtifactMutant("the sweep's T=4, alpha=0.9 run saved as the KD student's", "kd", "test_kd_student",
                   _kd_saved_by_a_sweep_run),
    ArtifactMutant("sweep faked: copies of the KD student with T and alpha edited", "kd", "test_kd_student",
                   _sweep_faked),
]
