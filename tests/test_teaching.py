"""Student-facing code reads as teaching code.

Grading mode lives in lib/grading.py and nowhere else; lib.train knows no lab; the kd teacher's loading and
cache are lib.teacher's; lib/profile.py is a table with one short line per value; every number of a summary
the student reads comes from the state it names. Fast, except the last test, which reads the executed
reference notebook (the session's shared `reference_work`).
"""
import ast
import re
from pathlib import Path

import nbformat
import pytest
import torch

from autograde.course import SOLUTIONS, nbgrader_id
from lib import profile, teacher as lib_teacher
from lib.checkpoint import load_model, save_checkpoint
from lib.models import VGG
from lib.slimming import sparsity
from lib.data import images
from lib.train import History, evaluate, last_path

LIB = Path(__file__).resolve().parents[1] / "lib"
TINY_CFG = [4, 'M', 8, 'M', 8, 'M', 8, 'M']


def _code_cells():
    """(notebook path, grade id, source) of every code cell of the solution notebooks."""
    for path in sorted(SOLUTIONS.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                yield path, nbgrader_id(cell), cell.source


def test_notebooks_never_mention_grading_mode():
    found = [f"{path.name}:{cell}" for path, cell, source in _code_cells()
             if re.search(r"NBGRADER_EXECUTION|\bgrading\(\)|validating\(\)|lib\.grading|import grading", source)]
    assert not found, f"notebook cells that handle grading mode themselves (lib/grading.py does): {found}"


def test_only_lib_grading_reads_nbgrader_execution():
    readers = sorted(p.name for p in LIB.rglob("*.py") if "NBGRADER_EXECUTION" in p.read_text()
                     and p.name != "grading.py")
    assert readers == [], f"lib modules that read NBGRADER_EXECUTION besides lib/grading.py: {readers}"


def test_lib_train_imports_no_lab_module():
    tree = ast.parse((LIB / "train.py").read_text())
    lib_imports = {node.module for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.level and node.module is not None}
    lib_imports |= {alias.name for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level and node.module is None
                    for alias in node.names}
    assert lib_imports <= {"profile", "grading", "artifacts", "checkpoint"}, (
        f"lib/train.py imports {sorted(lib_imports)}: a lab's metric is passed in (fit(..., epoch_metrics=...))")


def test_profile_tables_have_one_short_comment_per_value():
    """No comment block in lib/profile.py's tables longer than 2 lines: the measurements are in lib/CALIBRATION.md."""
    lines = (LIB / "profile.py").read_text().splitlines()
    start, end = (next(i for i, line in enumerate(lines) if line.startswith(name))
                  for name in ("FULL = {", "TABLES = {"))
    longest, run = 0, 0
    for line in lines[start:end]:
        run = run + 1 if line.strip().startswith("#") else 0
        longest = max(longest, run)
    assert longest <= 2, f"lib/profile.py has a comment block of {longest} lines inside its tables"
    assert "kd_accuracy" in (LIB / "CALIBRATION.md").read_text()


def test_profile_thresholds_show_their_measured_value():
    """Each quick accuracy threshold's line says the value it was calibrated from."""
    source = (LIB / "profile.py").read_text()
    quick = source[source.index("QUICK = {"):source.index("TABLES = {")]
    for key in ("baseline_accuracy=", "sparse_accuracy=", '"50":', '"90":', "float=", "pruned=", "quantized=",
                "kd_accuracy=", "margin="):
        line = next(line for line in quick.splitlines() if key in line)
        assert re.search(r"#.*\d", line), f"lib/profile.py, QUICK: {line.strip()!r} has no measured value"


# ------------------------------------------------------------------------------------------ the kd teacher

def _save_vgg(path, seed, hp=None):
    """A tiny VGG checkpoint at `path` (weights from `seed`) with a history of config `hp`."""
    torch.manual_seed(seed)
    save_checkpoint(path, VGG(TINY_CFG), meta=dict(epoch=1))
    History(hp or {"seed": seed}, [dict(epoch=1, val_accuracy=50.0)]).save(Path(path).with_suffix(".json"))


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_teacher_comes_from_slimming_then_from_an_earlier_run(tmp_path, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    slimming, artifacts, hp = tmp_path / "slimming", tmp_path / "artifacts", dict(profile.config("vgg"))
    _save_vgg(slimming / "sparsity_s0.pt", seed=1)
    teacher, source = lib_teacher.load_teacher(hp, slimming=slimming, artifacts=artifacts, device="cpu")
    assert "slimming" in source and not teacher.training
    assert _same_weights(teacher, load_model(slimming / "sparsity_s0.pt", VGG)[0])
    assert (artifacts / "teacher.pt").is_file() and (artifacts / "teacher.json").is_file()

    _save_vgg(artifacts / "teacher.pt", seed=2, hp=hp)     # an earlier run of the notebook trained this one
    teacher, source = lib_teacher.load_teacher(hp, slimming=tmp_path / "nothing", artifacts=artifacts,
                                               device="cpu")
    assert "earlier run" in source
    assert _same_weights(teacher, load_model(artifacts / "teacher.pt", VGG)[0])


def test_grading_uses_the_submitted_teacher_and_copies_nothing(tmp_path, monkeypatch):
    slimming, artifacts = tmp_path / "slimming", tmp_path / "artifacts"
    _save_vgg(slimming / "sparsity_s0.pt", seed=1)
    _save_vgg(artifacts / "teacher.pt", seed=2, hp={"another": "setup"})    # not trained with the profile's hp
    submitted = (artifacts / "teacher.pt").read_bytes()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    teacher, source = lib_teacher.load_teacher(slimming=slimming, artifacts=artifacts, device="cpu")
    assert source == f"the submitted {artifacts / 'teacher.pt'}"
    assert (artifacts / "teacher.pt").read_bytes() == submitted
    assert not lib_teacher.copy_from_slimming("sparsity_s0", "other", slimming, artifacts)
    assert not (artifacts / "other.pt").exists()


def test_cached_teacher_runs_the_teacher_once_per_distinct_batch():
    calls = []
    torch.manual_seed(0)
    model = VGG(TINY_CFG).eval()
    model.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    cached = lib_teacher.CachedTeacher(model)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        first = cached(a)
        assert torch.equal(cached(a.clone()), first) and cached(b).shape == (3, 10)
    assert calls == [2, 3], f"the teacher ran on batches of sizes {calls}: once per distinct batch expected"


# ------------------------------------------------------------------------- one state per number (item 2)

def _summary_table(work):
    """(header line, column names, row lines) of the table sparsity_train's "summary" cell printed in `work`."""
    nb = nbformat.read(work / "sparsity_train.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_id(c) == "summary")
    text = "".join(output.get("text", "") for output in cell.outputs)
    header, *rows = [line for line in text.splitlines() if "|" in line]
    return header, [c.strip() for c in header.split("|")], rows


def test_sparsity_train_summary_describes_the_best_checkpoint(reference_work):
    """Each row of the summary: the sparsity of sparsity_<tag>.pt (the best epoch, what vggprune prunes)
    next to that epoch's accuracy, and the last epoch's sparsity said to be the last epoch's."""
    work = reference_work("slimming")
    header, columns, rows = _summary_table(work)
    assert "last-epoch sparsity" in columns, f"the summary names no last-epoch column: {header}"
    threshold = profile.config("sparsity_threshold")
    for row in rows:
        values = dict(zip(columns, (c.strip() for c in row.split("|"))))
        path = work / "artifacts" / f"sparsity_{values['run']}.pt"
        model, meta = load_model(path, VGG)
        history = History.load(path.with_suffix(".json"))
        assert int(values["best epoch"]) == meta["epoch"] == history.best["epoch"]
        assert float(values["sparsity"]) == pytest.approx(sparsity(model, threshold), abs=5e-4), (
            f"run {values['run']}: the summary's sparsity is not that of {path.name}: {row}")
        assert float(values["last-epoch sparsity"]) == pytest.approx(history["sparsity"][-1], abs=5e-4)


def test_sparsity_train_summary_names_validation_and_test(reference_work):
    """The summary's accuracies are named for their split: "val. accuracy" is the best epoch's recorded
    validation accuracy (where the checkpoint was chosen), "test accuracy" that checkpoint on the test split."""
    work = reference_work("slimming")
    header, columns, rows = _summary_table(work)
    assert {"val. accuracy", "test accuracy"} <= set(columns), f"the summary names no split: {header}"
    test_loader = images.loaders()["test"]
    for row in rows:
        values = dict(zip(columns, (c.strip() for c in row.split("|"))))
        path = work / "artifacts" / f"sparsity_{values['run']}.pt"
        model, _ = load_model(path, VGG)
        history = History.load(path.with_suffix(".json"))
        assert float(values["val. accuracy"].rstrip("%")) == pytest.approx(history.best["val_accuracy"], abs=5e-3)
        assert float(values["test accuracy"].rstrip("%")) == pytest.approx(
            evaluate(model, test_loader, progress=False)[1], abs=5e-3), row


def test_no_notebook_calls_a_validation_figure_test_accuracy():
    """Where a solution cell shows a history's "val_accuracy" (a curve, the sweep's map, a visible test's
    message), the words are validation accuracy, never test accuracy."""
    for path in SOLUTIONS.glob("*/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "val_accuracy" not in cell.source:
                continue
            source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
            for node in ast.walk(ast.parse(source)):
                name = getattr(node, "func", None)
                name = getattr(name, "attr", getattr(name, "id", None))
                if isinstance(node, ast.Assert) or name in ("plot_curves", "plot_heatmap"):
                    segment = ast.get_source_segment(source, node)
                    assert "test accuracy" not in segment, f"{path.name}: {segment}"


def test_bench_slimming_prints_each_figure_with_the_model_it_comes_from(reference_work, capsys):
    """bench/bench_slimming.py's report: the best checkpoint's validation, test and sparsity figures, then the
    last epoch's, each measured on the checkpoint that the line names (no last-epoch sparsity next to the
    best epoch's accuracy)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_slimming", SOLUTIONS.parent / "bench" / "bench_slimming.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    artifacts = reference_work("slimming") / "artifacts"
    bench.report(artifacts)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("lambda")]
    assert len(lines) == len(profile.config("slimming")["lambdas"])
    test_loader, threshold = images.loaders()["test"], profile.config("sparsity_threshold")
    pattern = (r"best \(epoch +(\d+)\): validation +([\d.]+)% +test +([\d.]+)% +sparsity ([\d.]+) +"
               r"last \(epoch +(\d+)\): test +([\d.]+)% +sparsity ([\d.]+)")
    for line, tag in zip(lines, profile.config("slimming")["lambdas"]):
        epoch, val, test, spars, last_epoch, last_test, last_spars = re.search(pattern, line).groups()
        for path, printed in ((artifacts / f"sparsity_{tag}.pt", (epoch, test, spars)),
                              (last_path(artifacts / f"sparsity_{tag}.pt"), (last_epoch, last_test, last_spars))):
            model, meta = load_model(path, VGG)
            assert int(printed[0]) == meta["epoch"], line
            assert float(printed[1]) == pytest.approx(evaluate(model, test_loader, progress=False)[1], abs=5e-3)
            assert float(printed[2]) == pytest.approx(sparsity(model, threshold), abs=5e-3), line
        assert float(val) == pytest.approx(History.load(artifacts / f"sparsity_{tag}.json").best["val_accuracy"],
                                           abs=5e-3)


def test_every_network_a_notebook_trains_from_random_weights_is_seeded_first():
    """torch 2.9 seeds its generator at random in every new process, so a network built before any seed differs
    from run to run (sincnet_quant's float model did: six executions, QAT 53.8-72.6%). Every solution cell that
    builds a VGG or SincNet from random weights seeds first, in the same cell (test cells aside, and the TODO
    functions, whose networks receive copied weights)."""
    unseeded = []
    for path, cell, source in _code_cells():
        if cell.startswith("test_") or "### BEGIN SOLUTION" in source:
            continue
        lines = source.splitlines()
        for i, line in enumerate(lines):
            if re.search(r"=\s*(SincNet|VGG)\(", line) and not any(
                    re.search(r"seed_everything\(|manual_seed\(", earlier) for earlier in lines[:i]):
                unseeded.append(f"{path.name}:{cell}: {line.strip()}")
    assert not unseeded, f"networks built from random weights before any seed: {unseeded}"
