"""Which notebook writes each file under an assignment's `artifacts/` folder, and where in it.

    producers("slimming")["artifacts/pruned_50.pt"]   Producer("vggprune.ipynb", 3, "Build the pruned networks", "prune")
    producer_of("artifacts/pruned_50.pt")             the same, the assignment taken from the path's folder
    explain("artifacts/pruned_50.pt", "...: no such checkpoint file")
                                                      '...: no such checkpoint file. It is written by vggprune.ipynb,
                                                       section 3 ("Build the pruned networks"): run that notebook top
                                                       to bottom first.'
    made_by("kd")                                     {"artifacts/teacher.pt": "kd", ...}: what the grader reads
    missing("kd", Path("labs/kd"))                    those of them a folder lacks, each with its notebook
    checkpoint_file(pruned_net(percent_tag(0.5)))     "pruned_50.pt": the names themselves, the one place they
                                                      are spelled (the grader builds its paths from them)

Notebooks run one after the other and read each other's files (vggprune prunes the network sparsity_train
saved), so a missing file is explained by its producer: the errors of lib.checkpoint and lib.train.fit_or_load
say which notebook and section to run. The names follow the active profile's table (lib.profile): its lambda
tags, pruning percents and KD grid. tests/test_validate.py checks this table against the notebooks in
solutions/ (each producing cell writes its files) and against the files a reference run leaves.
"""
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import profile

# Notebooks of each assignment, in the order a student runs them (later ones read earlier ones' artifacts).
NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "slimming": ("sparsity_train", "vggprune", "train_prune_model"),
    "sincnet_quant": ("sincnet_quant",),
    "kd": ("kd",),
}


@dataclass(frozen=True)
class Producer:
    """Where a notebook writes an artifact."""
    notebook: str            # e.g. "vggprune.ipynb", in the assignment's folder
    section: int             # its section: the place of the section's "## " heading in the notebook, from 1
    title: str               # that heading
    cell: str                # the nbgrader id of the cell that writes the file
    graded: bool = True      # read by the grader (checkpoints, histories); plots are for you to look at
    optional: bool = False   # written only in some runs (kd's copy of the slimming network)

    def __str__(self) -> str:
        return f'{self.notebook}, section {self.section} ("{self.title}")'


# ------------------------------------------------------------------------------------------------- the names
# Every file under artifacts/ is named here and nowhere else: the grader, the preflight, the mutants and lib
# build their paths from these (tests/test_artifact_names.py holds them to it), so that renaming a file here
# renames it everywhere. A run's *name* has no suffix ("sparsity_s1", "sweep/T4_alpha0.9"); fit saves it as
# two files, checkpoint_file(name) and history_file(name).

FOLDER = "artifacts"              # each assignment's folder of artifacts, next to its notebooks
CHECKPOINT_SUFFIX = ".pt"         # lib.checkpoint.save_checkpoint's files
HISTORY_SUFFIX = ".json"          # lib.train.History's files, each next to its run's checkpoint
PLOT_SUFFIX = ".png"              # lib.plots' figures


def checkpoint_file(name: str) -> str:
    """"sparsity_s1" -> "sparsity_s1.pt": the checkpoint of a run (or of a network saved without training)."""
    return name + CHECKPOINT_SUFFIX


def history_file(name: str) -> str:
    """"sparsity_s1" -> "sparsity_s1.json": the history lib.train.fit saves next to the run's checkpoint."""
    return name + HISTORY_SUFFIX


def last_checkpoint_file(name: str) -> str:
    """"sparsity_s1" -> "sparsity_s1_last.pt": the last epoch's weights, saved by fit(..., save_last=True)."""
    return checkpoint_file(name + "_last")


def plot_file(name: str) -> str:
    """"sparsity_tradeoff" -> "sparsity_tradeoff.png"."""
    return name + PLOT_SUFFIX


def run_files(name: str) -> list[str]:
    """The two files of a training run saved by lib.train.fit: its best checkpoint and its history."""
    return [checkpoint_file(name), history_file(name)]


def in_folder(file: str) -> str:
    """"pruned_50.pt" -> "artifacts/pruned_50.pt": the path relative to the assignment folder (producers' keys)."""
    return f"{FOLDER}/{file}"


# The same rules on paths, for code that holds a checkpoint's path rather than its run's name.

def history_path(path: str | Path) -> Path:
    """artifacts/run.pt -> artifacts/run.json: where the history of the checkpoint at `path` lies."""
    return Path(path).with_suffix(HISTORY_SUFFIX)


def checkpoint_path(path: str | Path) -> Path:
    """artifacts/run.json -> artifacts/run.pt: the checkpoint the history at `path` belongs to."""
    return Path(path).with_suffix(CHECKPOINT_SUFFIX)


def last_path(path: str | Path) -> Path:
    """artifacts/run.pt -> artifacts/run_last.pt: where fit(..., save_last=True) puts the last epoch's weights
    of the run whose best checkpoint is at `path`."""
    path = Path(path)
    return path.with_name(last_checkpoint_file(path.stem))


# The runs and networks, by assignment. A tag is a run's key in the profile: a lambda tag ("s1") or a
# pruning percent's percent_tag ("50").

def percent_tag(percent: float) -> str:
    """0.5 -> "50": the suffix of the artifacts of a pruning percent (pruned_50.pt, finetuned_50.pt, ...)."""
    return f"{round(percent * 100):d}"


def sparsity_run(tag: str) -> str:
    """sparsity_train's run with the lambda of `tag`: "s1" -> "sparsity_s1"."""
    return f"sparsity_{tag}"


def sweep_sparsity_run(s: float) -> str:
    """sparsity_train's trade-off sweep run with lambda `s`: 0.001 -> "sweep/sparsity_0.001"."""
    return f"sweep/sparsity_{s:g}"


def pruned_net(tag: str) -> str:
    """vggprune's pruned network, saved without training (a checkpoint, no history): "50" -> "pruned_50"."""
    return f"pruned_{tag}"


def baseline_pruned_net(tag: str) -> str:
    """vggprune's control: the lambda = 0 baseline pruned by the same percent."""
    return f"baseline_pruned_{tag}"


def finetuned_run(tag: str) -> str:
    """train_prune_model's fine-tuning of pruned_net(tag); tag "0" is the unpruned model trained on."""
    return f"finetuned_{tag}"


def baseline_finetuned_run(tag: str) -> str:
    """baseline_pruned_net(tag) fine-tuned."""
    return f"baseline_finetuned_{tag}"


def scratch_run(tag: str) -> str:
    """The cfg of pruned_net(tag) trained from random weights at the fine-tuning budget."""
    return f"scratch_{tag}"


def scratch_whole_run(tag: str, seed: int) -> str:
    """The same from scratch at the whole budget (the sparse training's epochs too), once per seed."""
    return f"{scratch_run(tag)}_whole_seed{seed}"


SINCNET_FLOAT = "sincnet_float"       # sincnet_quant's float SincNet
SINCNET_PRUNED = "sincnet_pruned"     # that network channel-pruned and fine-tuned
SINCNET_QUANT = "sincnet_quant"       # the pruned network after QAT, the first QAT seed's (qat_runs)


def qat_run(seed: int | None = None) -> str:
    """The QAT run of `seed`: SINCNET_QUANT for the first seed (None), sincnet_quant_seed<seed> for the others."""
    return SINCNET_QUANT if seed is None else f"{SINCNET_QUANT}_seed{seed}"


TEACHER = "teacher"                   # kd's teacher (a copy of slimming's baseline, or trained by kd.ipynb)
STUDENT_CFG = "student_cfg.json"      # kd's student cfg: a JSON file, not a run
STUDENT_SCRATCH = "student_scratch"   # the first seed's student trained on the labels only
STUDENT_KD = "student_kd"             # the same student distilled from the teacher
KD_SWEEP_SCRATCH = "sweep/scratch"    # the T x alpha sweep's own scratch run (with a budget of its own)
SWEEP_FOLDER = "sweep"                # the sweeps' runs (slimming's and kd's) lie in artifacts/sweep/


def student_run(kind: str, seed: int | None = None) -> str:
    """The kd student of `kind` ("scratch" or "kd"): STUDENT_SCRATCH / STUDENT_KD for the first seed (None),
    student_<kind>_seed<seed> for the others."""
    name = {"scratch": STUDENT_SCRATCH, "kd": STUDENT_KD}[kind]
    return name if seed is None else f"{name}_seed{seed}"


def kd_sweep_run(T: float, alpha: float) -> str:
    """A cell of the kd notebook's T x alpha sweep: (4, 0.9) -> "sweep/T4_alpha0.9"."""
    return f"sweep/T{T}_alpha{alpha}"


def in_sweep(name: str) -> bool:
    """True for a run of a sweep (its files lie in artifacts/sweep/)."""
    return name.startswith(SWEEP_FOLDER + "/")


# ------------------------------------------------------------------------------------- the producer tables

def _run(name: str) -> list[str]:
    """A training run saved by lib.train.fit: its best checkpoint and its history."""
    return [in_folder(file) for file in run_files(name)]


def _plots(*names: str) -> list[str]:
    return [in_folder(plot_file(name)) for name in names]


def slimming_runs(slim: dict[str, Any]) -> dict[str, list[str]]:
    """{role: [run names]} of the slimming notebooks' training runs (artifacts/<name>.pt and .json), for the
    profile's slimming section `slim`. Roles, with their budget:
        train      sparsity_train's runs, one per lambda tag                     the "vgg" epochs
        sweep      sparsity_train's trade-off sweep, one per sweep lambda        the "vgg" epochs
        finetune   train_prune_model's fine-tuned networks, one per percent      finetune_epochs
        controls   the unpruned model trained on, the most-pruned cfg from       finetune_epochs
                   random weights
        baseline   the lambda = 0 baseline pruned and fine-tuned, per percent   finetune_epochs
        whole      the most-pruned cfg from scratch, once per scratch seed      "vgg" + finetune_epochs
    """
    most = percent_tag(max(slim["percents"]))
    return {
        "train": [sparsity_run(tag) for tag in slim["lambdas"]],
        "sweep": [sweep_sparsity_run(s) for s in slim["sweep_lambdas"]],
        "finetune": [finetuned_run(percent_tag(p)) for p in slim["percents"]],
        "controls": [finetuned_run(percent_tag(0)), scratch_run(most)],
        "baseline": [baseline_finetuned_run(percent_tag(p)) for p in slim["percents"]],
        "whole": [scratch_whole_run(most, seed) for seed in slim["scratch_seeds"]],
    }


def _slimming(table: dict[str, Any]) -> dict[str, Producer]:
    slim = table["slimming"]
    percents = [percent_tag(p) for p in slim["percents"]]
    runs = slimming_runs(slim)
    train = Producer("sparsity_train.ipynb", 2, "Task 2: train with three strengths of the penalty", "train")
    curves = Producer("sparsity_train.ipynb", 3, "What the penalty does", "plots", graded=False)
    sweep = Producer("sparsity_train.ipynb", 4, "The trade-off: accuracy against sparsity", "lambda_sweep",
                     graded=False)
    channels = Producer("vggprune.ipynb", 2, "How many channels each layer keeps", "tables", graded=False)
    prune = Producer("vggprune.ipynb", 3, "Build the pruned networks", "prune")
    control = Producer("vggprune.ipynb", 4, "Control: prune the baseline trained without penalty", "control",
                       graded=False)
    finetune = Producer("train_prune_model.ipynb", 1, "Task: fine-tune", "finetune")
    controls = Producer("train_prune_model.ipynb", 2, "Two controls at the same cost", "controls")
    more_controls = Producer("train_prune_model.ipynb", 3, "Two more controls: the penalty, and the architecture at "
                             "the whole budget", "more_controls", graded=False)
    finetune_curves = Producer("train_prune_model.ipynb", 4, "Accuracy per epoch", "curves", graded=False)
    return {
        **{f: train for name in runs["train"] for f in _run(name) + [in_folder(last_checkpoint_file(name))]},
        **{f: curves for f in _plots("sparsity_per_epoch", "train_accuracy_per_epoch", "gamma_histograms")},
        **{f: sweep for name in runs["sweep"] for f in _run(name)},
        **{f: sweep for f in _plots("sparsity_tradeoff")},
        **{f: channels for f in _plots("channels_per_layer")},
        **{f: control for f in _plots("control_baseline_pruning")},
        **{in_folder(checkpoint_file(pruned_net(p))): prune for p in percents},
        **{f: finetune for name in runs["finetune"] for f in _run(name)},
        **{f: controls for name in runs["controls"] for f in _run(name)},
        **{in_folder(checkpoint_file(baseline_pruned_net(p))): control for p in percents},
        **{f: more_controls for name in runs["baseline"] + runs["whole"] for f in _run(name)},
        **{f: finetune_curves for f in _plots("finetune_accuracy")},
    }


def qat_runs(sq: dict[str, Any]) -> list[tuple[int, str]]:
    """[(seed, run name)] of sincnet_quant's QAT runs, one per seed of the profile's sincnet_quant section `sq`
    (qat_seeds): the first seed's is sincnet_quant (the run the grader checks), the others sincnet_quant_seed<seed>
    (the seed spread the notebook prints)."""
    first = sq["qat_seeds"][0]
    return [(seed, qat_run(None if seed == first else seed)) for seed in sq["qat_seeds"]]


def _sincnet_quant(table: dict[str, Any]) -> dict[str, Producer]:
    notebook = "sincnet_quant.ipynb"
    float_run = Producer(notebook, 1, "Task 1: the float model", "train_float")
    float_plots = Producer(notebook, 1, "Task 1: the float model", "plot_float", graded=False)
    pruned = Producer(notebook, 2, "Task 2: channel pruning", "finetune")
    quant = Producer(notebook, 3, "Task 3: quantization-aware training", "qat")
    (_, graded_qat), *other_qat = qat_runs(table["sincnet_quant"])
    return {
        **{f: float_run for f in _run(SINCNET_FLOAT)},
        **{f: float_plots for f in _plots("float_accuracy", "float_lr", "sinc_responses", "sinc_bands")},
        **{f: pruned for f in _run(SINCNET_PRUNED)},
        **{f: replace(pruned, graded=False) for f in _plots("pruned_accuracy")},
        **{f: quant for f in _run(graded_qat)},
        **{f: replace(quant, cell="qat_seeds", graded=False) for _, name in other_qat for f in _run(name)},
        **{f: replace(quant, graded=False) for f in _plots("quant_accuracy", "val_accuracy")},
        **{f: replace(quant, cell="weight_levels", graded=False) for f in _plots("weight_levels")},
        **{f: replace(quant, cell="ptq_sweep", graded=False) for f in _plots("ptq_sweep")},
    }


def kd_student_runs(kd: dict[str, Any]) -> list[tuple[int, str, str]]:
    """[(seed, kind, artifact name)] of the kd notebook's student runs, kind "scratch" or "kd", for the seeds of
    the profile's kd section `kd`: the first seed's pair is student_scratch / student_kd (the pair the grader
    compares in detail), the others student_scratch_seed<seed> / student_kd_seed<seed> (kd.ipynb, run_name)."""
    first = kd["seeds"][0]
    return [(seed, kind, student_run(kind, None if seed == first else seed))
            for seed in kd["seeds"] for kind in ("scratch", "kd")]


def kd_sweep_runs(kd: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """[(run name, T, alpha)] of the kd notebook's T x alpha sweep (kd.ipynb, cell "sweep"), for the profile's kd
    section `kd`; T and alpha are None for the scratch run the heat map is compared with. Every sweep run
    trains the first seed's student. With the students' budget (the quick profile) the sweep reuses the two
    runs trained before it: student_kd for the profile's (T, alpha), student_scratch for scratch; otherwise
    it trains every cell under sweep/ and a sweep/scratch of its own."""
    same_budget = kd["sweep"]["epochs"] == kd["student"]["epochs"]
    first = {kind: name for seed, kind, name in kd_student_runs(kd) if seed == kd["seeds"][0]}
    runs = [(first["kd"] if same_budget and (T, alpha) == (kd["T"], kd["alpha"]) else kd_sweep_run(T, alpha),
             T, alpha) for T in kd["sweep"]["T"] for alpha in kd["sweep"]["alpha"]]
    return runs + [(first["scratch"] if same_budget else KD_SWEEP_SCRATCH, None, None)]


def _kd(table: dict[str, Any]) -> dict[str, Producer]:
    kd = table["kd"]
    sweep_runs = [name for name, _, _ in kd_sweep_runs(kd) if in_sweep(name)]
    teacher = Producer("kd.ipynb", 1, "The teacher and the student", "teacher")
    student = Producer("kd.ipynb", 1, "The teacher and the student", "student")
    students = Producer("kd.ipynb", 3, "Scratch student versus distilled student", "train_students")
    grid = Producer("kd.ipynb", 4, "Temperature and weight", "sweep")
    return {
        **{f: teacher for f in _run(TEACHER)},
        in_folder(STUDENT_CFG): student,
        **{f: replace(student, optional=True) for f in _run(finetuned_run(percent_tag(0.9)))},
        **{f: students for _, _, run in kd_student_runs(kd) for f in _run(run)},
        **{f: Producer("kd.ipynb", 3, students.title, "curves", graded=False) for f in _plots("kd_vs_scratch")},
        **{f: grid for run in sweep_runs for f in _run(run)},
        **{f: replace(grid, graded=False) for f in _plots("sweep_heatmap")},
    }


_TABLES: dict[str, Callable[[dict[str, Any]], dict[str, Producer]]] = {
    "slimming": _slimming, "sincnet_quant": _sincnet_quant, "kd": _kd}


def producers(assignment: str, profile_name: str | None = None) -> dict[str, Producer]:
    """{artifact path relative to the assignment folder ("artifacts/pruned_50.pt"): its Producer}, every file
    the assignment's notebooks write there in the profile `profile_name` (default: the active one)."""
    if assignment not in _TABLES:
        raise KeyError(f"no assignment {assignment!r}: expected one of {', '.join(_TABLES)}")
    return _TABLES[assignment](profile.TABLES[profile_name or profile.name()])


def made_by(assignment: str, profile_name: str | None = None) -> dict[str, str]:
    """{artifact path: the notebook (without .ipynb) that writes it}, for the files the grader reads."""
    return {path: p.notebook.removesuffix(".ipynb") for path, p in producers(assignment, profile_name).items()
            if p.graded and not p.optional}


def missing(assignment: str, folder: str | Path, profile_name: str | None = None) -> list[str]:
    """The artifacts the grader reads that `folder` lacks, each with the notebook to run, as sentences."""
    return [f"{path} (written by {producers(assignment, profile_name)[path]})"
            for path in made_by(assignment, profile_name) if not (Path(folder) / path).is_file()]


def producer_of(path: str | Path) -> Producer | None:
    """The Producer of the artifact at `path` (e.g. "artifacts/pruned_50.pt", relative to the working folder),
    or None when no notebook of the kit writes it. The assignment is the folder that holds artifacts/ (a
    student's slimming/), or, when that folder has another name, the first assignment that has the file."""
    path = Path(path).absolute()
    if FOLDER not in path.parts:
        return None
    at = len(path.parts) - 1 - path.parts[::-1].index(FOLDER)
    key = "/".join((FOLDER,) + path.parts[at + 1:])
    folder = path.parts[at - 1] if at > 0 else ""
    for assignment in sorted(_TABLES, key=lambda a: a != folder):   # the folder's own assignment first
        found = producers(assignment).get(key)
        if found is not None:
            return found
    return None


def explain(path: str | Path, problem: str) -> str:
    """`problem` (e.g. "artifacts/pruned_50.pt: no such checkpoint file") and what to do about it: which
    notebook and section write `path`."""
    found = producer_of(path)
    if found is None:
        return f"{problem}. Run the cell that writes it first."
    return f"{problem}. It is written by {found}: run that notebook top to bottom first."


class ArtifactError(RuntimeError):
    """An artifact a cell needs is missing or was made by another run, and this run may not make it
    (nbgrader validate trains nothing)."""
