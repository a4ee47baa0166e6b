"""labs/ is what nbgrader generates from solutions/, and the student bundle carries no reference material."""
import ast
import json

import nbformat
import pytest

from autograde import release
from autograde.course import ASSIGNMENTS, LABS, REPO, SOLUTIONS, Course, reference_code

PRESENT = [a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir()]


def comparable(path):
    nb = json.loads(path.read_text())
    return nb["cells"], nb["metadata"]


@pytest.mark.parametrize("assignment", PRESENT)
def test_labs_are_generated_from_solutions(assignment, tmp_path):
    course = Course(tmp_path / "course", release=tmp_path / "release")
    course.generate(assignment)
    for name in ASSIGNMENTS[assignment]:
        generated = tmp_path / "release" / assignment / f"{name}.ipynb"
        committed = LABS / assignment / f"{name}.ipynb"
        assert committed.exists(), f"{committed} is missing: run `make labs` and commit labs/"
        assert comparable(generated) == comparable(committed), \
            f"{committed} differs from what solutions/ generates: run `make labs` and commit labs/"


# Calls of lib helpers that a TODO's text tells students to use, and that lib itself makes (prune_sincnet, not a
# TODO, validates its masks and takes the kept indices the same way): shared helpers, not a solution.
LIB_HELPER_CALLS = {"check_cfg_mask(model, cfg, cfg_mask)", "kept = kept_indices(cfg_mask)"}


def reference_lines():
    """The code lines of every function that a solution cell defines, the graders' reference answers
    (docstrings, trivial lines and the calls of LIB_HELPER_CALLS left out)."""
    lines = set()
    for path in SOLUTIONS.glob("*/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if not cell.metadata.get("nbgrader", {}).get("solution") or cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(reference_code(cell))):
                if isinstance(node, ast.FunctionDef):
                    body = node.body[1:] if ast.get_docstring(node) else node.body
                    for statement in body:
                        text = ast.unparse(statement).splitlines()
                        lines.update(line.strip() for line in text if len(line.strip()) > 25)
    return lines - LIB_HELPER_CALLS


def test_no_reference_code_in_lib_or_labs():
    lines = reference_lines()
    assert lines, "found no reference code to look for"
    for folder in ("lib", "labs"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".ipynb"):
                text = path.read_text()
                if path.suffix == ".ipynb":
                    text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
                normalised = {line.strip() for line in text.splitlines()}
                leaked = lines & normalised
                assert not leaked, f"{path.relative_to(REPO)} contains reference code: {sorted(leaked)[:3]}"


def test_student_bundle_is_complete_and_clean(tmp_path):
    bundle = release.build(tmp_path)
    for name in ("labs", "lib", "data", "environment.yml", "README.md", "pyproject.toml"):
        assert (bundle / name).exists(), name
    assert not (bundle / "autograde").exists() and not (bundle / "solutions").exists()
    assert (tmp_path / "compresslab-student.zip").stat().st_size > 0
    assert "selenium" not in (bundle / "pyproject.toml").read_text(), "the browser test's driver is not for students"
    for grading_only in ("distributed", "dask"):
        assert grading_only not in (bundle / "pyproject.toml").read_text(), f"{grading_only} is the grader's, not for students"


def test_student_bundle_installs_nbgraders_student_side(tmp_path):
    """Validate, the Assignment List and `nbgrader submit` need nbgrader in the students' environment, and its
    config there: the kit's course id, and the exchange folder given to the release."""
    import tomllib
    from traitlets.config.loader import PyFileConfigLoader
    bundle = release.build(tmp_path, exchange="/srv/course/exchange")
    dependencies = tomllib.loads((bundle / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("nbgrader") for d in dependencies) and any(d.startswith("jupyterlab") for d in dependencies)
    assert not any(d.startswith("pytest") for d in dependencies)
    config = PyFileConfigLoader("nbgrader_config.py", str(bundle)).load_config()
    assert config.CourseDirectory.course_id == Course.open(REPO).course_id
    assert config.Exchange.root == "/srv/course/exchange" and config.Exchange.path_includes_course is True
    kit = PyFileConfigLoader("nbgrader_config.py", str(REPO)).load_config()
    assert (config.Validator.validate_all, config.Validator.width) == (kit.Validator.validate_all, kit.Validator.width), \
        "Validate in the bundle must report what it does in the course (every failing cell, in full)"
    # without an exchange folder, the bundle leaves it to the JupyterHub's configuration (a lower-priority file)
    bundle = release.build(tmp_path / "no_exchange")
    assert "root" not in PyFileConfigLoader("nbgrader_config.py", str(bundle)).load_config().Exchange


def commands(text, markdown=True):
    """The shell commands of a README's indented code lines (markdown) or of a YAML's `# ... && ...` comment:
    one list of words each (`a && b` gives two, comments dropped)."""
    if markdown:
        lines = [line[4:] for line in text.splitlines() if line.startswith("    ") and line.strip()]
    else:
        lines = [line.lstrip("# ") for line in text.splitlines() if line.startswith("# ") and "&&" in line]
    found = []
    for line in lines:
        for part in line.split("  #")[0].split("&&"):
            words = [w for w in part.split() if "=" not in w]          # drop VAR=value prefixes
            if words:
                found.append(words)
    return found


def test_student_readme_commands_refer_to_what_the_bundle_has(tmp_path):
    """Every command the student README and environment.yml print runs in the bundle: one way of calling the
    tools (all through the activated environment), only tools the bundle installs, files and modules it has."""
    bundle = release.build(tmp_path)
    dependencies = (bundle / "pyproject.toml").read_text()
    provided = {"jupyter": "jupyterlab", "nbgrader": "nbgrader"}    # command -> the package that installs it
    found = commands((bundle / "README.md").read_text()) + commands((bundle / "environment.yml").read_text(), markdown=False)
    assert found, "found no command in the student README"
    for words in found:
        tool, args = words[0], words[1:]
        where = " ".join(words)
        assert not tool.startswith(".venv/bin/") or tool == ".venv/bin/pip", \
            f"{where}: call tools through the activated environment, as the other commands do"
        assert tool in ("python3.11", ".venv/bin/pip", "conda", "source", "python") or \
            f'"{provided.get(tool, tool)}' in dependencies, f"{where}: the bundle does not install {tool}"
        if tool == "python" and args[0] == "-m":
            module = args[1].replace(".", "/")
            assert (bundle / f"{module}.py").is_file(), f"{where}: the bundle has no {module}.py"
        for arg in args:
            if "/" in arg and not arg.startswith((".venv", "compresslab/", "-")) or arg.endswith((".yml", ".ipynb")):
                assert (bundle / arg).exists(), f"{where}: the bundle has no {arg}"
    for name in ("README.md", "environment.yml"):
        assert "make " not in (bundle / name).read_text() or (bundle / "Makefile").exists(), \
            f"{name} mentions make, and the bundle has no Makefile"


def test_bundle_check_names_every_leak(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "labs").mkdir(parents=True)
    (bundle / "labs" / "a.py").write_text("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION\n")
    (bundle / "labs" / "b.ipynb").write_text('{"source": "from autograde.checks import kd"}')
    (bundle / "autograde").mkdir()
    with pytest.raises(SystemExit) as error:
        release.check(bundle)
    message = str(error.value)
    assert "labs/a.py: a solution region" in message and "labs/b.ipynb: use of the autograde package" in message
    assert "autograde: a folder students must not get" in message


def test_autograde_never_copies_artifacts_from_solutions_over_a_submission(tmp_path):
    """Should an instructor run a solution notebook in place, its artifacts/ must not replace the students':
    every course (the kit's, the tests', the cohort's scratch ones) loads the kit's exclude_overwriting."""
    from traitlets.config.loader import PyFileConfigLoader
    assignment = next(a for a in ASSIGNMENTS if (SOLUTIONS / a).is_dir())
    stray = SOLUTIONS / assignment / "artifacts" / "model.pt"
    course = Course(tmp_path / "course")
    stray.parent.mkdir()
    try:
        stray.write_bytes(b"reference weights")
        config = PyFileConfigLoader("nbgrader_config.py", str(course.root)).load_config()
    finally:
        stray.unlink()
        stray.parent.rmdir()
    assert config.Autograde.exclude_overwriting[assignment] == ["artifacts/model.pt"]
    assert config.CourseDirectory.max_file_size == 200_000        # the rest of the kit's config is loaded too


def test_reference_work_is_built_in_one_order_whatever_asks_first(tmp_path):
    from autograde.course import reference_builder
    made = []
    build = reference_builder(tmp_path, make=lambda assignment, folder, threads: made.append(assignment) or folder)
    assert build("kd") == tmp_path / "kd"
    assert sorted(made[:2]) == ["sincnet_quant", "slimming"] and made[2:] == ["kd"]   # kd reads ../slimming
    build("slimming"), build("kd"), build("sincnet_quant")
    assert len(made) == 3                             # each once
