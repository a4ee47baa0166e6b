"""The grader takes every artifact's file name from lib/artifacts.py, and spells none itself.

lib/artifacts.py names each file the notebooks write under artifacts/ (checkpoint_file(sparsity_run(tag)),
history_file(SINCNET_FLOAT), ...), and its producer tables are built from those names. The grader's modules
(autograde/checks, probes, mutants, preflight.py, similarity.py) build their paths and messages from them, so a
file renamed in lib is renamed for the grader too. This test reads those modules' source (ast) and fails on any
string that spells a name itself:
  - a file suffix at a word's end (".pt", ".json", ".png": lib.artifacts' CHECKPOINT_SUFFIX, ...);
  - the artifacts folder followed by a slash ("artifacts/");
  - a run or checkpoint name of the table as a word ("sincnet_float", "student_kd"), or a string that is one
    ("teacher");
  - the start of a parametrised name, before its tag: "pruned_" or "sweep/" at the end of a string or of an
    f-string's literal part (f"pruned_{tag}"), or before a digit.
The names come from the table itself (producers() of every assignment in every profile), so the test follows it.
Not read: docstrings (the first statement of a module, class or function), which document the files by name.
"""
import ast
import re
from pathlib import Path

import pytest

from lib import artifacts, profile

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted([*(REPO / "autograde" / "checks").glob("*.py"), *(REPO / "autograde" / "probes").glob("*.py"),
                  *(REPO / "autograde" / "mutants").glob("*.py"), REPO / "autograde" / "preflight.py",
                  REPO / "autograde" / "similarity.py"])

SUFFIX = re.compile("(" + "|".join(re.escape(s) for s in (artifacts.CHECKPOINT_SUFFIX, artifacts.HISTORY_SUFFIX,
                                                          artifacts.PLOT_SUFFIX)) + r")\b")
FOLDER = artifacts.FOLDER + "/"


def _reserved_words() -> set[str]:
    """Words the kit uses for something else than a file: assignments, notebooks, profile sections and keys
    (the run sincnet_quant is named after its notebook; the kd section's student_cfg is the cfg the file
    student_cfg.json holds). A name that is one of them is caught only with its suffix."""
    words = set(artifacts.NOTEBOOKS) | {nb for nbs in artifacts.NOTEBOOKS.values() for nb in nbs}
    for table in profile.TABLES.values():
        for section, settings in table.items():
            words.add(section)
            words |= set(settings) if isinstance(settings, dict) else set()
    return words


def _table_names() -> set[str]:
    """Every run and checkpoint name of the producer tables, in every profile: each path relative to artifacts/
    without its suffix ("sparsity_s1", "sparsity_s1_last", "sweep/T4_alpha0.9", "teacher"). Plots are left
    out: the grader reads none, and their names are words the kit uses otherwise (val_accuracy)."""
    names = set()
    for profile_name in profile.TABLES:
        for assignment in artifacts.NOTEBOOKS:
            for path in artifacts.producers(assignment, profile_name):
                if not path.endswith(artifacts.PLOT_SUFFIX):
                    names.add(str(Path(path).relative_to(artifacts.FOLDER).with_suffix("")))
    return names - _reserved_words()


def _stems(names: set[str]) -> set[str]:
    """The fixed start of each parametrised name: cut before its first digit ("pruned_50" -> "pruned_";
    "sparsity_s1" -> "sparsity_s"), and that cut back to its last "_" or "/" ("sparsity_", "sweep/" of
    "sweep/T4_alpha0.9"), since a tag may start with a letter."""
    stems = set()
    for name in names:
        digit = re.search(r"\d", name)
        if digit:
            cut = name[:digit.start()]
            stems |= {cut, cut[:max(cut.rfind("_"), cut.rfind("/")) + 1]}
    return stems - {""} - _reserved_words()


NAMES = _table_names()
WORDS = [re.compile(rf"(?<![\w/.]){re.escape(name)}(?![\w/])") for name in sorted(NAMES) if re.search(r"[_/]", name)]
STEMS = [re.compile(rf"(?<![\w/.]){re.escape(stem)}(?=\d|$)") for stem in sorted(_stems(NAMES))]


def spelled_name(text: str) -> str | None:
    """What in `text` (a string constant, or one literal part of an f-string) spells an artifact's name, or None."""
    if text in NAMES:
        return f"the name {text!r}"
    for rule in [SUFFIX, *WORDS, *STEMS]:
        found = rule.search(text)
        if found:
            return repr(found.group())
    return FOLDER if FOLDER in text else None


def _docstrings(tree: ast.Module) -> set[int]:
    """id() of the docstrings' constants: the first statement of the module, a class or a function."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return docstrings


def spelled_names(source: str, label: str) -> list[str]:
    """["label:line: what", ...] of the strings of the module `source` that spell an artifact's name. Every
    string is an ast.Constant, an f-string's literal parts included (ast.JoinedStr holds them as constants)."""
    tree = ast.parse(source, label)
    skipped = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            what = spelled_name(node.value)
            if what:
                found.append((node.lineno, f"{label}:{node.lineno}: {what} in {node.value!r}"))
    return [line for _, line in sorted(found)]


def test_the_rules_catch_spelled_names_and_pass_built_ones():
    source = ('"""A docstring may say sparsity_s1.pt."""\n'
                      'a = f"sparsity_{tag}"\n'
                      'b = f"{name}.json has no epochs"\n'
                      'c = "sincnet_float"\n'
                      'd = "teacher"\n'
                      'e = name.startswith("sweep/")\n'
                      'f = f"submit artifacts/ with the notebook"\n'
                      'g = f"{checkpoint_file(finetuned_run(tag))}: no such file"\n'
                      'h = profile.config("sincnet_quant")["pruning_rate"], config["student_cfg"], "the teacher"\n')
    found = spelled_names(source, "module")
    assert [line.split(":")[1] for line in found] == ["2", "3", "4", "5", "6", "7"], "\n".join(found)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_grader_module_spells_an_artifact_name(path):
    found = spelled_names(path.read_text(), str(path.relative_to(REPO)))
    assert not found, ("artifact names spelled outside lib/artifacts.py (take them from lib.artifacts):\n"
                       + "\n".join(found))


def test_the_rules_know_the_tables_names():
    """The names and stems come from the table: a renamed run changes what is looked for."""
    assert {"teacher", "student_kd", "sincnet_float", "sparsity_s1_last"} <= NAMES
    assert {"pruned_", "finetuned_", "sparsity_", "sweep/", "scratch_"} <= _stems(NAMES)
    assert "sincnet_quant" not in NAMES and "student_cfg" not in NAMES     # words of the kit: caught with a suffix
