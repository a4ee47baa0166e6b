"""The graders' reference answers are the solution cells themselves (autograde.reference): one source."""
import shutil

import nbformat
import pytest
import torch

import autograde.reference as reference
from autograde.course import SOLUTIONS, nbgrader_id
from autograde.reference import kd, sincnet_quant, slimming

# (module, name, solution notebook, cell)
REFERENCES = [(slimming, "update_bn", "slimming/sparsity_train", "update_bn"),
              (slimming, "build_cfg_mask", "slimming/vggprune", "build_cfg_mask"),
              (slimming, "prune_vgg", "slimming/vggprune", "prune_vgg"),
              (slimming, "absorb_constants", "slimming/vggprune", "absorb_constants"),
              (sincnet_quant, "weight_scale", "sincnet_quant/sincnet_quant", "weight_scale"),
              (kd, "kd_loss", "kd/kd", "kd_loss")]


@pytest.mark.parametrize("module, name, notebook, cell", REFERENCES, ids=[r[1] for r in REFERENCES])
def test_each_reference_is_compiled_from_its_solution_cell(module, name, notebook, cell):
    code = getattr(module, name).__code__
    assert code.co_filename == f"{SOLUTIONS / notebook}.ipynb:{cell}"


def test_the_reference_class_is_the_solution_cells():
    forward = sincnet_quant.STEQuantize.forward.__code__
    assert forward.co_filename == f"{SOLUTIONS / 'sincnet_quant' / 'sincnet_quant'}.ipynb:ste_quantize"


def test_an_edit_of_the_solution_cell_is_the_graders_reference(tmp_path, monkeypatch):
    """Change kd_loss's solution cell and nothing else: the grader's kd_loss is the changed one."""
    shutil.copytree(SOLUTIONS / "kd", tmp_path / "kd")
    path = tmp_path / "kd" / "kd.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if nbgrader_id(c) == "kd_loss")
    assert "return alpha * soft + (1 - alpha) * hard" in cell.source
    cell.source = cell.source.replace("return alpha * soft + (1 - alpha) * hard", "return 2 * hard")
    nbformat.write(nb, path)
    monkeypatch.setattr(reference, "SOLUTIONS", tmp_path)
    reference._cell.cache_clear()
    reference._solved.cache_clear()
    try:
        edited = reference.solution("kd", "kd", "kd_loss")
        s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
        assert torch.equal(edited(s, t, y, 4.0, 0.5), 2 * torch.nn.functional.cross_entropy(s, y))
    finally:
        reference._cell.cache_clear()
        reference._solved.cache_clear()


def test_hidden_test_cells_are_not_run_to_build_a_reference():
    """The cells above a solution cell lend it their imports, but not the test cells (their hidden parts
    import the graders, which import the reference: a cycle)."""
    namespace = reference.define("sincnet_quant", "sincnet_quant", "weight_scale")
    graders = {name for name, value in namespace.items() if getattr(value, "__module__", "").startswith("autograde")}
    assert not graders, graders


def test_a_missing_cell_is_named():
    with pytest.raises(KeyError, match="has no solution cell 'no_such_cell'"):
        reference.solution("kd", "kd", "no_such_cell")


def test_other_code_runs_in_the_cells_place():
    """A mutant's code runs where the solution cell would: after the imports of the cells above it."""
    code = reference.source("kd", "kd", "kd_loss").replace("return alpha * soft + (1 - alpha) * hard", "return hard")
    changed = reference.define("kd", "kd", "kd_loss", code)["kd_loss"]
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
    assert torch.equal(changed(s, t, y, 4.0, 0.5), torch.nn.functional.cross_entropy(s, y))
