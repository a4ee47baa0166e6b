"""`nbgrader validate` is quick and changes nothing; a missing artifact names the notebook that makes it.

Validation runs the real `nbgrader validate` (the repository's nbgrader_config.py, as a student's Validate
button would) on release notebooks, blank and filled with the reference; the folder is compared byte for byte
before and after. The table of lib.artifacts is checked against the notebooks in solutions/ and against the
files a reference run leaves.
"""
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest
import torch

from autograde.course import ASSIGNMENTS, BIN, LABS, REPO, SOLUTIONS, fill_solutions, nbgrader_id, tool_env
from lib import artifacts, plots, train
from lib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_json
from lib.models import VGG

SECONDS = 30   # the most one notebook's validation may take


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`, and every folder (as None): what validation may not change."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _cpu_seconds_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def validate(notebook):
    """(output, CPU seconds) of `nbgrader validate notebook`, run from the repository root (its nbgrader_config.py).

    The CPU seconds are nbgrader's and its kernel's: on this shared machine the wall time mostly measures
    the other processes, while training even one epoch would cost far more CPU than the 30 s allowed.
    """
    start, cpu = time.monotonic(), _cpu_seconds_of_children()
    result = subprocess.run([str(BIN / "nbgrader"), "validate", str(notebook)], cwd=REPO, capture_output=True,
                            text=True, env=tool_env(LAB_PROFILE="quick", MPLBACKEND="Agg"), timeout=300)
    wall, cpu = time.monotonic() - start, _cpu_seconds_of_children() - cpu
    print(f"nbgrader validate {Path(notebook).parent.name}/{Path(notebook).name}: {wall:.1f} s, {cpu:.1f} s CPU")
    return result.stdout + result.stderr, cpu


def validated(notebook):
    """Validate `notebook`; assert that nothing in its assignment folder (nor a sibling's) changed and that it
    took under SECONDS of CPU. Returns what nbgrader printed."""
    root = Path(notebook).parent.parent
    before = snapshot(root)
    output, seconds = validate(notebook)
    after = snapshot(root)
    changed = sorted(k for k in set(before) | set(after) if before.get(k, 0) != after.get(k, 0))
    assert not changed, f"nbgrader validate changed {changed}:\n{output[-3000:]}"
    assert seconds < SECONDS, f"validating {notebook} took {seconds:.0f} s of CPU (goal: under {SECONDS} s)"
    return output


def blank(tmp_path, assignment):
    """The release notebooks of `assignment`, as a student gets them, in tmp_path/<assignment> (no artifacts/)."""
    folder = tmp_path / assignment
    shutil.copytree(LABS / assignment, folder, ignore=shutil.ignore_patterns("artifacts"))
    return folder


def producer_text(assignment, path):
    return str(artifacts.producers(assignment)[path])


# ------------------------------------------------------------------------------- validating trains nothing

def test_validating_a_blank_kd_notebook_trains_nothing_and_names_the_teacher(tmp_path):
    output = validated(blank(tmp_path, "kd") / "kd.ipynb")
    assert "artifacts/teacher.pt is missing" in output
    assert f"It is written by {producer_text('kd', 'artifacts/teacher.pt')}" in output
    assert "kd.ipynb, section 1" in output


@pytest.mark.parametrize("notebook, needs, producer", [
    ("sparsity_train", "artifacts/sparsity_s0.pt is missing", "sparsity_train.ipynb, section 2"),
    ("vggprune", "artifacts/sparsity_s1.pt: no such checkpoint file", "sparsity_train.ipynb, section 2"),
    ("train_prune_model", "artifacts/pruned_50.pt: no such checkpoint file", "vggprune.ipynb, section 3"),
])
def test_validating_slimming_out_of_order_names_the_notebook_to_run(tmp_path, notebook, needs, producer):
    output = validated(blank(tmp_path, "slimming") / f"{notebook}.ipynb")
    assert needs in output and f"It is written by {producer}" in output, output[-3000:]


def test_validating_a_blank_sincnet_quant_notebook_names_its_float_model(tmp_path):
    output = validated(blank(tmp_path, "sincnet_quant") / "sincnet_quant.ipynb")
    assert "artifacts/sincnet_float.pt is missing" in output
    assert f"It is written by {producer_text('sincnet_quant', 'artifacts/sincnet_float.pt')}" in output


def _reference_copy(reference_work, tmp_path, assignment):
    """A copy of the executed reference work with the notebooks as solutions/ has them now (the artifacts are
    the reference run's)."""
    folder = tmp_path / assignment
    shutil.copytree(reference_work(assignment), folder)
    fill_solutions(assignment, folder)
    return folder


def test_validating_reference_work_passes_and_changes_nothing(reference_work, tmp_path):
    output = validated(_reference_copy(reference_work, tmp_path, "slimming") / "sparsity_train.ipynb")
    assert "Success! Your notebook passes all the tests." in output, output[-3000:]


def test_validating_with_a_stale_artifact_names_it_and_its_notebook(reference_work, tmp_path):
    folder = _reference_copy(reference_work, tmp_path, "kd")
    history = train.History.load(folder / "artifacts" / "student_scratch.json")
    history.config["epochs"] += 1          # as if the profile's budget had changed since this run
    history.save(folder / "artifacts" / "student_scratch.json")
    output = validated(folder / "kd.ipynb")
    assert "Validation trains nothing, and artifacts/student_scratch.json was trained with" in output
    assert f"It is written by {producer_text('kd', 'artifacts/student_scratch.pt')}" in output
    assert "kd.ipynb, section 3" in output


# ------------------------------------------------------------- the same rules from Python (no nbgrader)

def _tiny_run():
    """(model, loaders, hp) of a training run that takes a moment."""
    torch.manual_seed(0)
    model = VGG([4, 'M', 8, 'M', 8, 'M', 8, 'M'], num_classes=2)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    hp = dict(epochs=1, lr=0.01, momentum=0.9, weight_decay=0.0, milestones=(0.5, 0.75))
    return model, {"train": loader, "val": loader, "test": loader}, hp


def test_fit_or_load_under_validate_raises_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    model, loaders, hp = _tiny_run()
    path = tmp_path / "sincnet_quant" / "artifacts" / "sincnet_quant.pt"
    with pytest.raises(artifacts.ArtifactError, match="Validation trains nothing") as error:
        train.fit_or_load(model, loaders, hp, save_path=path)
    assert "sincnet_quant.ipynb, section 3" in str(error.value)
    assert not (tmp_path / "sincnet_quant").exists()


def test_the_savers_write_nothing_under_validate_and_keep_submitted_files_while_grading(tmp_path, monkeypatch):
    model, _, _ = _tiny_run()
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    save_checkpoint(tmp_path / "new.pt", model)
    train.History({}).save(tmp_path / "new.json")
    save_json(tmp_path / "cfg.json", {"cfg": model.cfg})
    plots.save_figure(plt.figure(), tmp_path / "plot.png")
    assert not any(tmp_path.iterdir())
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")            # grading fills in what is missing
    save_checkpoint(tmp_path / "new.pt", model)
    assert (tmp_path / "new.pt").is_file()


def test_a_missing_checkpoint_names_the_notebook_that_writes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint("artifacts/pruned_50.pt")     # train_prune_model opened before vggprune
    assert str(error.value) == ('artifacts/pruned_50.pt: no such checkpoint file. It is written by vggprune.ipynb, '
                                'section 3 ("Build the pruned networks"): run that notebook top to bottom first.')


# ---------------------------------------------------------------- the table agrees with the notebooks

def _sections(notebook):
    """[(section number, heading, [cells])] of a solutions notebook: its "## " headings, numbered from 1."""
    sections = [(0, "", [])]
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            sections.append((len(sections), cell.source.splitlines()[0][3:].strip(), []))
        sections[-1][2].append(cell)
    return sections


@pytest.mark.parametrize("assignment", list(artifacts.NOTEBOOKS))
def test_each_producer_cell_writes_its_files(assignment):
    """The producer's section has that number and heading, holds the cell, and the cell's code names the file."""
    for path, producer in artifacts.producers(assignment).items():
        sections = _sections(SOLUTIONS / assignment / producer.notebook)
        number, title, cells = sections[producer.section]
        assert (number, title) == (producer.section, producer.title), f"{path}: {producer} is not a section there"
        (cell,) = [c for c in cells if nbgrader_id(c) == producer.cell] or [None]
        assert cell is not None, f"{path}: no cell {producer.cell!r} in {producer}"
        # the file's name as the code spells it: its fixed parts around the run's tag, percent, seed, lambda or
        # (T, alpha), e.g. "scratch_" and "_whole_seed" of scratch_90_whole_seed0
        name = path.removeprefix("artifacts/").rsplit(".", 1)[0]
        fixed = re.sub(r"(s\d+|[\d.]+|T[\d.]+_alpha[\d.]+)(_last)?$", "", name)
        for piece in filter(None, re.split(r"\d+", fixed)):
            assert piece in cell.source, f"{path}: cell {producer.cell} of {producer.notebook} does not name {piece!r}"


@pytest.mark.parametrize("assignment", list(artifacts.NOTEBOOKS))
def test_the_table_lists_exactly_the_files_a_reference_run_writes(reference_work, assignment):
    folder = reference_work(assignment)
    written = {str(p.relative_to(folder)) for p in (folder / "artifacts").rglob("*") if p.is_file()}
    assert written == set(artifacts.producers(assignment))
    assert artifacts.missing(assignment, folder) == []
    assert artifacts.NOTEBOOKS[assignment] == ASSIGNMENTS[assignment]   # lib cannot import autograde's list


# Run names whose parts vary (a lambda, a seed, a T and alpha): written out by lib/artifacts.py only.
NAME_TEMPLATES = ("sweep/T", "sweep/sparsity_", "sweep/scratch", "_whole_seed", "baseline_finetuned_", "_seed{")


def test_no_kit_module_rebuilds_a_run_name():
    """The grader, the preflight, the benches and lib take these names from lib/artifacts.py (kd_sweep_runs,
    kd_student_runs, slimming_runs): a renamed run is then renamed everywhere (the notebooks show theirs to
    students, and test_each_producer_cell_writes_its_files holds them to the table)."""
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for folder in ("autograde", "lib", "bench") for path in sorted((REPO / folder).rglob("*.py"))
             if path != REPO / "lib" / "artifacts.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if any(t in line for t in NAME_TEMPLATES)]
    assert not found, "run names built outside lib/artifacts.py:\n" + "\n".join(found)
    assert all(t in (REPO / "lib" / "artifacts.py").read_text() for t in NAME_TEMPLATES), "a template left the table"
