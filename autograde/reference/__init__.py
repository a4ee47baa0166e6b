"""The reference answer to each TODO is its solution cell: solutions/<assignment>/<notebook>.ipynb is the one
place it is written. The graders take it from there:

    from autograde.reference import solution
    kd_loss = solution("kd", "kd", "kd_loss")        # the function the cell `kd_loss` defines
    define("kd", "kd", "kd_loss", code)               # what other code defines in that cell's place

A cell is executed with the `### BEGIN/END SOLUTION` markers removed, after the import statements of the cells
above it (what the notebook has imported by then; its test cells left out, whose hidden parts import the
graders), in a namespace of its own. The modules beside this one name
each assignment's reference objects, so that a check reads `reference.prune_vgg`.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from typing import Any

import nbformat

from ..course import SOLUTIONS, nbgrader_id, reference_code


def solution(assignment: str, notebook: str, cell_id: str, name: str | None = None) -> Any:
    """The object `name` (default: `cell_id`) that solution cell `cell_id` of the solution notebook defines."""
    namespace = _solved(assignment, notebook, cell_id)
    try:
        return namespace[name or cell_id]
    except KeyError:
        raise KeyError(f"solution cell '{cell_id}' of {SOLUTIONS / assignment / notebook}.ipynb defines no "
                       f"'{name or cell_id}' (it defines {sorted(k for k in namespace if not k.startswith('__'))})")


def source(assignment: str, notebook: str, cell_id: str) -> str:
    """The code of solution cell `cell_id`, its `### BEGIN/END SOLUTION` marker lines removed."""
    return _cell(assignment, notebook, cell_id)[1]


def define(assignment: str, notebook: str, cell_id: str, code: str | None = None) -> dict[str, Any]:
    """The names that `code` (default: the solution cell's own) defines when it runs in place of cell `cell_id`:
    after the imports of the notebook's cells above it. A mutant's code is run this way too."""
    imports, reference = _cell(assignment, notebook, cell_id)
    namespace: dict[str, Any] = {"__name__": f"solutions.{assignment}.{notebook}.{cell_id}"}
    exec(compile(imports, f"{notebook}.ipynb: the imports above {cell_id}", "exec"), namespace)
    where = f"{SOLUTIONS / assignment / notebook}.ipynb:{cell_id}" if code is None else f"<{cell_id}, changed>"
    exec(compile(reference if code is None else code, where, "exec"), namespace)
    return namespace


@lru_cache(maxsize=None)
def _solved(assignment: str, notebook: str, cell_id: str) -> dict[str, Any]:
    return define(assignment, notebook, cell_id)


@lru_cache(maxsize=None)
def _cell(assignment: str, notebook: str, cell_id: str) -> tuple[str, str]:
    """(the import statements of the cells above solution cell `cell_id`, its code without the markers)."""
    path = SOLUTIONS / assignment / f"{notebook}.ipynb"
    cells = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    index = next((i for i, cell in enumerate(cells) if nbgrader_id(cell) == cell_id
                  and cell.metadata.get("nbgrader", {}).get("solution")), None)
    if index is None:
        raise KeyError(f"{path} has no solution cell '{cell_id}'")
    imports = [statement for cell in cells[:index] if not _is_test(cell) for statement in _imports(cell.source)]
    return "\n".join(imports), reference_code(cells[index])


def _imports(source: str) -> list[str]:
    """The top-level import statements of a cell's code (its IPython magics and shell lines left out)."""
    python = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return []
    return [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def _is_test(cell: Any) -> bool:
    """A grade cell that is not an answer: a test cell."""
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")
